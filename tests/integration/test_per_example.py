"""The per-example kind of metric state: stored once per model and pooling, handed over whole, counted against
``[run] memory``, resampled by example index."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import probekit
from probekit.api import run
from probekit.data.batching import make_batches
from probekit.engine.capture import forward
from probekit.engine.resampling import Resampled, Resampling
from probekit.errors import ModelError
from probekit.testing import check_metric
from probekit.testing.fixtures import TINY_CONFIG, tiny_examples, tiny_model_pair

MAX_LENGTH = TINY_CONFIG["max_position_embeddings"]
EXAMPLES = tiny_examples(40)


class PairedCosine(probekit.PerExampleMetric):
    """The mean cosine of each example's two vectors: simple enough to check by hand."""

    name = "paired_cosine"
    direction = "similarity"

    def layer_value(self, x, y):
        return float(torch.nn.functional.cosine_similarity(x, y, dim=1).mean())


@pytest.fixture(scope="module")
def models():
    return tiny_model_pair()


def context(a, b, store=None):
    return probekit.MetricContext("a_vs_b", a, b, a.num_layers, torch.device("cpu"), examples=store)


def feed(metrics, a, b, examples=EXAMPLES, batch_size=16):
    for batch in make_batches(examples, a.tokenizer, batch_size=batch_size, max_length=MAX_LENGTH):
        capture_a, capture_b = forward(a.encoder, batch, frozenset({"hidden_states"})), \
            forward(b.encoder, batch, frozenset({"hidden_states"}))
        for metric in metrics:
            metric.update(capture_a, capture_b, batch)


def direct_vectors(model, examples=EXAMPLES):
    """Mean-pooled float64 vectors per layer, one example at a time (no padding at all)."""
    layers = []
    for example in examples:
        batch = next(iter(make_batches([example], model.tokenizer, batch_size=1, max_length=MAX_LENGTH)))
        hidden = forward(model.encoder, batch, frozenset({"hidden_states"})).hidden_states
        layers.append([h[0].double().mean(0) for h in hidden])
    return [torch.stack(layer) for layer in zip(*layers)]


def test_the_metric_gets_every_examples_pooled_vector(models):
    a, b = models
    metric = PairedCosine(probekit.PoolingOptions(), context(a, b))
    feed([metric], a, b)
    xs, ys = metric.matrices()
    for x, want in zip(xs, direct_vectors(a), strict=True):
        assert x.dtype == torch.float64 and x.shape == want.shape
        torch.testing.assert_close(x, want, rtol=1e-5, atol=1e-6)
    rows = metric.finalize()
    expected = [float(torch.nn.functional.cosine_similarity(x, y, dim=1).mean()) for x, y in zip(xs, ys)]
    assert [r.value for r in rows] == pytest.approx(expected, rel=1e-12)
    assert all(r.n_examples == len(EXAMPLES) for r in rows)


def test_one_store_serves_every_metric_and_null_instance(models):
    """Two metrics, a resampled one with 5 null draws, one store: each model's vectors are kept once."""
    a, b = models
    store = probekit.metrics.per_example.ExampleVectorStore()
    settings = Resampling(replicates=4, permutations=5)
    metrics = [PairedCosine(probekit.PoolingOptions(), context(a, b, store)),
               Resampled(PairedCosine, probekit.PoolingOptions(), context(a, b, store), len(EXAMPLES), settings)]
    feed(metrics, a, b)
    one_model = len(EXAMPLES) * (a.num_layers + 1) * a.encoder.config.hidden_size * 8
    assert store.nbytes == 2 * one_model  # a and b, once each, although 7 instances were fed
    rows = metrics[1].finalize()
    assert all(r.p_value is not None and r.ci_low <= r.value <= r.ci_high for r in rows)


def test_permuted_instances_pair_examples_shuffled(models):
    a, b = models
    metric = PairedCosine(probekit.PoolingOptions(), context(a, b))
    null = PairedCosine(probekit.PoolingOptions(), context(a, b))
    generator = torch.Generator().manual_seed(0)
    for batch in make_batches(EXAMPLES, a.tokenizer, batch_size=16, max_length=MAX_LENGTH):
        ca, cb = (forward(m.encoder, batch, frozenset({"hidden_states"})) for m in (a, b))
        metric.update(ca, cb, batch)
        null.update_permuted(ca, cb, batch, generator)
    (xs, ys), (xn, yn) = metric.matrices(), null.matrices()
    assert all(torch.equal(x, w) for x, w in zip(xs, xn))
    assert not torch.equal(ys[1], yn[1])
    assert sorted(map(tuple, yn[1].tolist())) == sorted(map(tuple, ys[1].tolist()))


class SubsampledCosine(PairedCosine):
    name = "subsampled_cosine"
    resampling = probekit.Resample(replace=False, fraction=0.5)


@pytest.mark.parametrize("metric_cls", [PairedCosine, SubsampledCosine])
def test_intervals_equal_a_direct_resampling_of_example_indices(models, metric_cls):
    a, b = models
    settings = Resampling(replicates=30, confidence=0.9, seed=3)
    resampled = Resampled(metric_cls, probekit.PoolingOptions(), context(a, b), len(EXAMPLES), settings)
    feed([resampled], a, b)
    rows = resampled.finalize()
    xs, ys = resampled.groups[0].matrices()
    rng = np.random.default_rng(3)
    rng.permutation(len(EXAMPLES)), rng.poisson(1.0, size=(30, 1))  # what the deal draws first
    n = len(EXAMPLES)
    m = n if metric_cls.resampling.replace else round(n * metric_cls.resampling.fraction)
    draws = []
    for _ in range(30):
        index = rng.integers(0, n, n) if metric_cls.resampling.replace else np.sort(rng.choice(n, m, replace=False))
        draws.append([float(torch.nn.functional.cosine_similarity(x[index], y[index], dim=1).mean())
                      for x, y in zip(xs, ys)])
    scale = math.sqrt(m / n)
    for row in rows:
        low, high = np.quantile([d[row.layer] for d in draws], [0.05, 0.95])
        assert row.ci_low == pytest.approx(row.value - scale * (high - row.value), rel=1e-9)
        assert row.ci_high == pytest.approx(row.value - scale * (low - row.value), rel=1e-9)
        assert row.ci_low < row.value < row.ci_high


SPEC = """
name = "per_example"
plugins = ["paired.py"]
[run]
device = "cpu"
memory = "{memory}"
bootstrap = {bootstrap}
[models.a]
id = "{a}"
[models.b]
id = "{b}"
[data.d]
path = "{data}"
text = "text"
label = "label"
limit = {limit}
[metrics.paired_cosine]
[metrics.fixed_cosine]
[metrics.linear_cka]
[metrics.mutual_knn]
k = 5
permutations = 9
[[comparisons]]
name = "ab"
a = "a"
b = "b"
data = "d"
"""

PLUGIN = '''
import torch
import probekit


class PairedCosine(probekit.PerExampleMetric):
    name = "paired_cosine"
    direction = "similarity"

    def layer_value(self, x, y):
        return float(torch.nn.functional.cosine_similarity(x, y, dim=1).mean())


class FixedCosine(PairedCosine):
    name = "fixed_cosine"
    resampling = None  # declares it cannot have intervals


@probekit.hookimpl
def probekit_register_metrics(register):
    register(PairedCosine)
    register(FixedCosine)
'''


def write_spec(tmp_path, tiny_models, memory, limit=30, bootstrap="false"):
    from probekit.testing.fixtures import write_tiny_csv
    data = write_tiny_csv(tmp_path / "d.csv", 40)
    (tmp_path / "paired.py").write_text(PLUGIN)
    path = tmp_path / "spec.toml"
    path.write_text(SPEC.format(memory=memory, bootstrap=bootstrap, a=tiny_models[0], b=tiny_models[1], data=data, limit=limit))
    return path


def test_a_run_refuses_per_example_state_over_memory_before_loading_a_model(tmp_path, tiny_models, capsys):
    """3 layers x 32 numbers x 8 bytes x 30 examples x 2 models = 46080 bytes, over a budget of 40 KB."""
    with pytest.raises(ModelError) as caught:
        run(write_spec(tmp_path, tiny_models, memory="40KB"), reports=tmp_path / "reports")
    message = str(caught.value)
    assert "metrics.paired_cosine, metrics.fixed_cosine, metrics.mutual_knn" in message and "30 examples" in message and "3 layers x 32 numbers" in message
    assert "limit" in message and "[run] memory" in message
    assert "probe " not in capsys.readouterr().out  # nothing loaded, nothing probed


def test_a_run_gives_per_example_metrics_intervals_and_p_values_and_names_those_without(tmp_path, tiny_models):
    results = run(write_spec(tmp_path, tiny_models, memory="1GB", bootstrap=10), reports=tmp_path / "reports")
    table = results.to_pandas()
    for metric in ("paired_cosine", "mutual_knn"):
        rows = table[table.metric == metric]
        assert len(rows) == 3 and rows.ci_low.notna().all() and (rows.ci_low <= rows.ci_high).all()
    knn = table[table.metric == "mutual_knn"]
    assert knn.p_value.between(0.1, 1).all() and ((knn.value > 0) & (knn.value <= 1)).all()
    assert table[table.metric == "fixed_cosine"].ci_low.isna().all()
    metrics = results.metadata["metrics"]
    assert metrics["paired_cosine"]["state"] == "per_example" and metrics["linear_cka"]["state"] == "additive"
    assert metrics["mutual_knn"]["interval"]["method"].startswith("subsampling: m = 0.5 n")
    assert "resampling = None" in metrics["fixed_cosine"]["interval"]["none"]
    assert any(n.metric == "fixed_cosine" and n.message.startswith("no confidence interval") for n in results.notes)


class OffTheMap(PairedCosine):
    """A plugin bug: a row for a layer the metric does not declare, and a layer_b without shape = "layer_pairs"."""

    name = "off_the_map"

    def measure(self, xs, ys):
        return [*super().measure(xs, ys), probekit.Row(len(xs), 0.5), probekit.Row(0, 0.5, layer_b=1)]


def test_rows_outside_the_declared_shape_are_a_plugin_bug():
    problems = probekit.metrics.base.shape_problems(OffTheMap, [probekit.Row(3, 0.5)], 2)
    assert problems == ["layer 3 is outside its declared layers 0..2 (layers = 'hidden_states')"]
    assert probekit.metrics.base.shape_problems(OffTheMap, [probekit.Row(0, 0.5, layer_b=1)], 2) == \
        ["layer 0 x layer_b 1: shape = 'layers' has no layer_b"]
    with pytest.raises(AssertionError, match="outside its declared layers"):
        check_metric(OffTheMap)
