"""Bootstrap intervals and permutation p-values, checked against a direct resampling, and through a run."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from probekit.api import run
from probekit.data.batching import make_batches
from probekit.engine.capture import forward
from probekit.engine.resampling import Resampled, Resampling
from probekit.metrics.base import MetricContext
from probekit.metrics.options import parse_options
from probekit.plugins.attention_js import AttentionJS
from probekit.plugins.cross_layer import CrossLayer
from probekit.plugins.linear_cka import LinearCKA
from probekit.plugins.svcca import SVCCA
from probekit.results.io import metadata, read_table
from probekit.testing.fixtures import TINY_CONFIG, tiny_examples, tiny_model_pair, tiny_spec

MAX_LENGTH = TINY_CONFIG["max_position_embeddings"]
EXAMPLES = tiny_examples(60)


@pytest.fixture(scope="module")
def models():
    return tiny_model_pair()


def feed(metric, a, b, examples, batch_size: int = 16):
    needs = frozenset(type(metric).needs) if not isinstance(metric, Resampled) else frozenset(metric.metric_cls.needs)
    for batch in make_batches(examples, a.tokenizer, batch_size=batch_size, max_length=MAX_LENGTH):
        metric.update(forward(a.encoder, batch, needs), forward(b.encoder, batch, needs), batch)
    return metric


def context(a, b):
    return MetricContext("a_vs_b", a, b, a.num_layers, torch.device("cpu"))


def options(metric_cls, **given):
    parsed, problems = parse_options(metric_cls.Options, given)
    assert not problems
    return parsed


def layer_values(rows) -> dict:
    return {(row.layer, row.layer_b, row.head): row.value for row in rows}


@pytest.mark.parametrize("metric_cls", [SVCCA, LinearCKA, AttentionJS, CrossLayer])
def test_intervals_equal_a_direct_resampling_of_the_examples(models, metric_cls):
    """Replicate r is the metric of the examples of group g repeated w_rg times, fed to a fresh instance."""
    a, b = models
    settings = Resampling(replicates=12, confidence=0.9, groups=5)
    resampled = feed(Resampled(metric_cls, options(metric_cls), context(a, b), len(EXAMPLES), settings), a, b, EXAMPLES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = resampled.finalize()
        plain = layer_values(feed(metric_cls(options(metric_cls), context(a, b)), a, b, EXAMPLES).finalize())
        groups = resampled.group_of.tolist()
        draws = []
        for weights in resampled.weights:
            repeated = [e for g, w in enumerate(weights) for _ in range(w)
                        for e, group in zip(EXAMPLES, groups, strict=True) if group == g]
            draws.append(layer_values(feed(metric_cls(options(metric_cls), context(a, b)), a, b, repeated).finalize()))
    lowest, highest = metric_cls.range_of(options(metric_cls))
    lowest = -np.inf if lowest is None else lowest
    for row in rows:
        key = (row.layer, row.layer_b, row.head)
        assert row.value == pytest.approx(plain[key], rel=1e-9, abs=1e-12)
        low_q, high_q = np.quantile([d[key] for d in draws], [0.05, 0.95])
        if metric_cls.interval == "basic":  # the moment metrics: biased by the sample size
            low_q, high_q = 2 * row.value - high_q, 2 * row.value - low_q
        assert row.ci_low == pytest.approx(max(low_q, lowest), rel=1e-8, abs=1e-12)
        assert row.ci_high == pytest.approx(min(high_q, np.inf if highest is None else highest), rel=1e-8, abs=1e-12)
        assert row.ci_bias == pytest.approx(np.mean([d[key] for d in draws]) - row.value, rel=1e-8, abs=1e-12)
        assert row.ci_low < row.ci_high


def test_replicates_in_bulk_equal_replicates_one_at_a_time(models):
    """Metric.replicates of the moment metrics (pooled in one product, decomposed in one batched eigh) equals
    the default, which pools and finalizes one replicate at a time, to 1e-9."""
    from probekit.metrics.base import Metric
    from probekit.plugins.procrustes import Procrustes
    from probekit.plugins.pwcca import PWCCA

    a, b = models
    for metric_cls in (SVCCA, PWCCA, Procrustes, LinearCKA):
        resampled = feed(Resampled(metric_cls, options(metric_cls), context(a, b), len(EXAMPLES),
                                   Resampling(replicates=6, groups=5)), a, b, EXAMPLES)
        weights = resampled.weights[resampled.weights.any(axis=1)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bulk = metric_cls.replicates(resampled.groups, weights)
            one_by_one = Metric.replicates.__func__(metric_cls, resampled.groups, weights)
        assert len(bulk) == len(one_by_one) == len(weights) > 0
        for mine, theirs in zip(bulk, one_by_one, strict=True):
            assert [r.layer for r in mine] == [r.layer for r in theirs]
            assert [r.value for r in mine] == pytest.approx([r.value for r in theirs], abs=1e-9, rel=0), metric_cls.name


def test_identical_models_have_an_interval_of_exactly_the_identical_value(models):
    a, _ = models
    settings = Resampling(replicates=20, groups=4)
    for metric_cls, identical in ((SVCCA, 0.0), (LinearCKA, 1.0), (AttentionJS, 0.0)):
        rows = feed(Resampled(metric_cls, options(metric_cls), context(a, a), len(EXAMPLES), settings),
                    a, a, EXAMPLES).finalize()
        assert rows, metric_cls.name  # all() of nothing would pass
        assert all(row.value == row.ci_low == row.ci_high == identical for row in rows), metric_cls.name


def test_the_groups_do_not_depend_on_the_batch_size(models):
    a, b = models
    settings = Resampling(replicates=10, groups=6)
    runs = [feed(Resampled(SVCCA, options(SVCCA), context(a, b), len(EXAMPLES), settings), a, b, EXAMPLES, size)
            .finalize() for size in (60, 7)]
    for first, second in zip(*runs, strict=True):
        assert (first.ci_low, first.ci_high) == pytest.approx((second.ci_low, second.ci_high), rel=1e-9)


def test_the_permutation_null_gives_the_smallest_p_value_for_related_and_a_large_one_for_unrelated_data():
    """Hidden states built by hand: y a noisy copy of x (related) or independent noise (unrelated)."""
    from probekit.metrics.tensors import Batch, Capture

    generator = torch.Generator().manual_seed(3)
    n, tokens, width = 40, 6, 4
    x = torch.randn(n, tokens, width, generator=generator, dtype=torch.float64)
    related = x + 0.3 * torch.randn(n, tokens, width, generator=generator, dtype=torch.float64)
    unrelated = torch.randn(n, tokens, width, generator=generator, dtype=torch.float64)
    mask = torch.ones(n, tokens, dtype=torch.long)
    batch = Batch(torch.zeros(n, tokens, dtype=torch.long), mask, torch.zeros_like(mask))

    class Context:
        num_layers = 0

    def p_value(y):
        metric = Resampled(LinearCKA, options(LinearCKA), Context(), n, Resampling(permutations=99))
        for start in range(0, n, 10):
            part = torch.arange(start, start + 10)
            metric.update(Capture((x[part],), None), Capture((y[part],), None), batch.select(part))
        return metric.finalize()[0].p_value

    assert p_value(related) == pytest.approx(1 / 100)
    assert p_value(unrelated) > 0.05


def write_spec(folder: Path, expect: list | None = None) -> Path:
    return tiny_spec(folder, name="resampled", examples=60, run={"bootstrap": 30, "bootstrap_groups": 6, "max_length": 32},
                     metrics={"svcca": {}, "linear_cka": {"permutations": 9}, "attention_js": {}, "cross_layer": {}},
                     comparisons=[{"name": "a_vs_b", "a": "a", "b": "b", "data": "eval"}], expect=expect or [])


def test_a_run_with_bootstrap_writes_intervals_p_values_and_draws_bands(tmp_path):
    result = run(write_spec(tmp_path), reports=tmp_path / "reports", use_cache=False)
    table = read_table(result.path)
    rows = table.to_pylist()
    assert all(r["ci_low"] is not None and r["ci_high"] is not None for r in rows)
    assert {r["p_value"] for r in rows if r["metric"] == "linear_cka"} == {0.1}
    assert all(r["p_value"] is None for r in rows if r["metric"] != "linear_cka")
    cells = {(r["layer"], r["layer_b"]) for r in rows if r["metric"] == "cross_layer"}
    assert cells == {(i, j) for i in range(3) for j in range(3)}
    interval = metadata(table)["metrics"]["svcca"]["interval"]
    assert interval["replicates"] == 30 and interval["groups"] == 6 and interval["confidence"] == 0.95
    assert metadata(table)["metrics"]["svcca"]["estimator"] == "exact moments"
    written = {p.name for p in result.path.parent.iterdir()}
    assert {"overview.png", "cross_layer_matrix.png", "svcca.png"} <= written


def test_a_confidence_expectation_fails_when_the_interval_straddles_the_bound(tmp_path):
    first = run(write_spec(tmp_path / "probe"), reports=tmp_path / "reports", use_cache=False)
    # attention_js is a mean over examples, unbiased: its value lies inside its interval (a CCA-family
    # value, biased by the sample size, may not: docs/reference.md)
    row = next(r for r in read_table(first.path).to_pylist() if r["metric"] == "attention_js" and r["layer"] == 1
               and r["head"] is None)
    assert row["ci_low"] < row["value"] < row["ci_high"]
    middle = (row["ci_low"] + row["value"]) / 2  # below the value, inside the interval
    on_value = {"name": "on the value", "metric": "attention_js", "layers": "1", "above": middle}
    expect = [on_value, {**on_value, "name": "on the interval", "confidence": 0.95}]
    second = run(write_spec(tmp_path / "expect", expect), reports=tmp_path / "reports", use_cache=False)
    verdicts = {o.name: o.passed for o in second.outcomes}
    assert verdicts == {"on the value": True, "on the interval": False}
    assert second.exit_code == 1


def test_metrics_that_stream_the_same_moments_share_one_accumulation_and_give_their_own_values(tmp_path, models):
    """svcca, pwcca and linear_cka are fed once per comparison (procrustes streams only X^T Y, on its own); each
    value is what it gives alone."""
    from probekit.engine.sharing import SharedStates
    from probekit.plugins.procrustes import Procrustes
    from probekit.plugins.pwcca import PWCCA

    a, b = models
    classes = {"svcca": SVCCA, "pwcca": PWCCA, "procrustes": Procrustes, "linear_cka": LinearCKA,
               "cls_cka": LinearCKA}
    given = {"cls_cka": {"tokens": "mean"}}
    metrics = {label: cls(options(cls, **given.get(label, {})), context(a, b)) for label, cls in classes.items()}
    shared = SharedStates(metrics)
    assert shared.feeder_of == {"pwcca": "svcca", "linear_cka": "svcca"}
    needs = frozenset({"hidden_states"})
    for batch in make_batches(EXAMPLES, a.tokenizer, batch_size=16, max_length=MAX_LENGTH):
        for label, metric in metrics.items():
            shared.update(label, metric, forward(a.encoder, batch, needs), forward(b.encoder, batch, needs), batch)
    shared.settle(metrics, {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, cls in classes.items():
            alone = feed(cls(options(cls, **given.get(label, {})), context(a, b)), a, b, EXAMPLES).finalize()
            assert [r.value for r in metrics[label].finalize()] == [r.value for r in alone], label


def test_a_passenger_whose_feeder_failed_is_dropped_with_the_reason():
    from probekit.engine.sharing import SharedStates

    class Stub:
        def __init__(self, key):
            self.key = key

        def state_key(self):
            return self.key

    metrics = {"svcca": Stub(1), "pwcca": Stub(1), "attention_js": Stub(None)}
    shared = SharedStates(metrics)
    del metrics["svcca"]
    dropped = shared.settle(metrics, {"svcca": "layer 0: numerical rank 0"})
    assert dropped == [("pwcca", "shares its moments with svcca, which could not be measured: layer 0: numerical rank 0")]
    assert list(metrics) == ["attention_js"]
