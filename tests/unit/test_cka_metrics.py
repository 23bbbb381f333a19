"""Linear and debiased CKA, from streamed sums and as plugins, agree with direct float64 n x n formulas."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import probekit
from probekit.engine.capture import forward
from probekit.metrics.base import MetricContext
from probekit.metrics.functional import (
    CrossMoments,
    HSICMoments,
    debiased_cka,
    debiased_cka_from_moments,
    linear_cka,
    linear_cka_from_moments,
)
from probekit.plugins import debiased_cka as debiased_cka_plugin
from probekit.plugins import linear_cka as linear_cka_plugin
from probekit.plugins.debiased_cka import DebiasedCKA
from probekit.plugins.linear_cka import LinearCKA
from probekit.testing import check_metric
from probekit.testing.fixtures import run_metric, tiny_batches, tiny_model_pair, tiny_tokenizer

RNG = np.random.default_rng(11)


def direct_linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al.'s CKA with the biased HSIC: <HKH, HLH> / (||HKH|| ||HLH||), K = XX^T, L = YY^T (n x n)."""
    h = np.eye(len(x)) - 1.0 / len(x)  # (n, n) centring matrix
    k, l = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
    return float((k * l).sum() / np.sqrt((k * k).sum() * (l * l).sum()))


def direct_hsic(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. (2012), eq. 5, on n x n Gram matrices with their diagonals zeroed (K~, L~)."""
    n = len(k)
    k, l = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
    ones = np.ones(n)
    return float((np.trace(k @ l) + (ones @ k @ ones) * (ones @ l @ ones) / ((n - 1) * (n - 2))
                  - 2.0 / (n - 2) * (ones @ k @ l @ ones)) / (n * (n - 3)))


def direct_hsics(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    k, l = x @ x.T, y @ y.T  # (n, n) linear kernels
    return direct_hsic(k, k), direct_hsic(l, l), direct_hsic(k, l)


def direct_debiased_cka(x: np.ndarray, y: np.ndarray) -> float:
    xx, yy, xy = direct_hsics(x, y)
    return xy / np.sqrt(xx * yy)


def centred(a: np.ndarray) -> np.ndarray:
    return a - a.mean(0)


CASES = {
    "random": (RNG.standard_normal((600, 20)), RNG.standard_normal((600, 15))),
    "related": (lambda a: (a, a @ RNG.standard_normal((20, 20)) + 0.3 * RNG.standard_normal((600, 20))))(
        RNG.standard_normal((600, 20))),
    "rank_deficient": (lambda a: (np.hstack([a, a[:, :3]]), RNG.standard_normal((600, 12))))(
        RNG.standard_normal((600, 10))),
    "offset_means": (lambda a: (a + 1e3, a[:, :6] @ RNG.standard_normal((6, 8)) + RNG.standard_normal((600, 8)) - 50))(
        RNG.standard_normal((600, 8))),
}


@pytest.mark.parametrize("case", CASES)
def test_linear_cka_matches_the_direct_formula(case):
    x, y = CASES[case]
    assert linear_cka(x, y) == pytest.approx(direct_linear_cka(x, y), rel=1e-9)


@pytest.mark.parametrize("case", CASES)
def test_debiased_cka_matches_the_direct_formula(case):
    x, y = CASES[case]
    # The reference sees centred data: its n x n Gram matrices of +1e3 offsets lose 3 digits in float64
    # (measured 0.6082 for 0.6044), and centring changes nothing (test_the_unbiased_hsic_is_shift_invariant).
    assert debiased_cka(x, y) == pytest.approx(direct_debiased_cka(centred(x), centred(y)), rel=1e-9)


def test_the_unbiased_hsic_is_shift_invariant():
    x, y = CASES["related"]
    shift_x, shift_y = RNG.normal(scale=3.0, size=x.shape[1]), RNG.normal(scale=3.0, size=y.shape[1])
    # the estimator itself, evaluated directly on shifted data ...
    assert direct_hsics(x + shift_x, y + shift_y) == pytest.approx(direct_hsics(x, y), rel=1e-9)
    # ... and the streamed sums, at offsets that dwarf the spread, as BERT's neurons have
    assert debiased_cka(x + 1e3 * shift_x, y - 1e3 * shift_y) == pytest.approx(debiased_cka(x, y), rel=1e-9)


@pytest.mark.parametrize("measure", [linear_cka, debiased_cka])
def test_a_representation_against_itself_gives_exactly_one(measure):
    x = RNG.standard_normal((300, 10))
    assert measure(x, x) == 1.0
    rotation = np.linalg.qr(RNG.standard_normal((10, 10)))[0]  # (10, 10) orthogonal
    assert measure(x, 2.5 * x @ rotation) == pytest.approx(1.0, abs=1e-9)


def test_unrelated_representations_give_a_debiased_cka_near_zero_and_possibly_negative():
    rng = np.random.default_rng(1)  # its own seed: a sample whose value is negative
    x, y = rng.standard_normal((60, 20)), rng.standard_normal((60, 20))
    value = debiased_cka(x, y)
    assert value == pytest.approx(direct_debiased_cka(x, y), rel=1e-9)
    assert -0.05 < value < 0  # not clamped
    assert linear_cka(x, y) > 0.2  # biased upwards at 3 datapoints per neuron


@pytest.mark.parametrize(("kind", "from_moments", "measure"), [
    (CrossMoments, linear_cka_from_moments, linear_cka),
    (HSICMoments, debiased_cka_from_moments, debiased_cka),
])
@pytest.mark.parametrize("chunk", [1, 37, 600])
def test_results_do_not_depend_on_the_batch_size(kind, from_moments, measure, chunk):
    x, y = CASES["offset_means"]
    streamed = kind()
    for start in range(0, len(x), chunk):
        streamed.update(x[start : start + chunk], y[start : start + chunk])
    assert from_moments(streamed) == pytest.approx(measure(x, y), rel=1e-9)


def streamed_parts(pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[HSICMoments]:
    parts = [HSICMoments() for _ in pairs]
    for part, (x, y) in zip(parts, pairs):
        part.update(x, y)
    return parts


def check_pooled(pairs: list[tuple[np.ndarray, np.ndarray]], weightings: list[list[int]]) -> None:
    """Pooling the parts of ``pairs`` equals the rows repeated by their weights, every time."""
    parts = streamed_parts(pairs)
    alone = [h for part in parts if part.n for h in part.hsic()]
    for weights in weightings:  # more than once: parts are re-expressed in place the first time
        pooled = HSICMoments.pooled(parts, weights)
        xs, ys = (np.concatenate([pair[side] for pair, w in zip(pairs, weights) for _ in range(w)]) for side in (0, 1))
        assert pooled.n == len(xs)
        assert pooled.hsic() == pytest.approx(direct_hsics(centred(xs), centred(ys)), rel=1e-9)
    assert [h for part in parts if part.n for h in part.hsic()] == pytest.approx(alone, rel=1e-9)  # unchanged


def test_pooled_sums_equal_the_sums_of_the_rows_repeated_by_their_weights():
    x, y = CASES["offset_means"]
    pairs = [(x[rows], y[rows]) for rows in (slice(0, 100), slice(100, 250), slice(250, 250), slice(250, 600))]
    check_pooled(pairs, [[2, 1, 3, 1], [0, 3, 1, 2]])


def test_pooled_sums_spell_out_y_for_a_part_whose_x_and_y_were_identical():
    # Not "offset_means": that part's Y side would be X's data, 1e3 spreads from Y's offsets.
    x, y = CASES["related"]
    pairs = [(x[:200], y[:200]), (x[200:260], x[200:260]), (x[260:], y[260:])]
    check_pooled(pairs, [[1, 2, 1], [0, 1, 3]])
    same = streamed_parts([(x[:50], x[:50])] * 2)
    assert HSICMoments.pooled(same, [1, 2]).identical
    assert debiased_cka_from_moments(HSICMoments.pooled(same, [1, 2])) == 1.0


def test_debiased_cka_on_three_datapoints_is_a_clear_error():
    x, y = CASES["related"]
    with pytest.raises(ValueError, match=r"^debiased CKA needs at least 4 datapoints \(the unbiased HSIC divides "
                                         r"by n\(n-3\)\); got n=3$"):
        debiased_cka(x[:3], y[:3])


@pytest.mark.parametrize(("measure", "message"), [
    (linear_cka, "constant over the datapoints"),
    (debiased_cka, r"HSIC\(X, X\) = 0 and HSIC\(Y, Y\) = .* must both be positive"),
])
def test_a_constant_side_is_an_error(measure, message):
    x = np.full((100, 4), 3.0)
    with pytest.raises(ValueError, match=message):
        measure(x, RNG.standard_normal((100, 4)))
    with pytest.raises(ValueError, match=message):  # 0 / 0 also against itself
        measure(x, x)


@pytest.mark.parametrize("measure", [linear_cka, debiased_cka])
def test_nan_activations_are_an_error(measure):
    x, y = CASES["related"]
    x = x.copy()
    x[5, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        measure(x, y)


# ------------------------------------------------------------------ the plugins


@pytest.mark.parametrize(("metric_cls", "options"), [
    (LinearCKA, None), (LinearCKA, {"tokens": "mean"}), (DebiasedCKA, None), (DebiasedCKA, {"tokens": "all"}),
])
def test_the_plugins_keep_the_metric_contract(metric_cls, options):
    check_metric(metric_cls, options)


@pytest.mark.parametrize("metric_cls", [LinearCKA, DebiasedCKA])
def test_cls_datapoints_make_layer_0_a_metric_error(metric_cls):
    # Every example's layer-0 [CLS] is the same vector ([CLS] embedding, position 0), so CKA is 0 / 0 there;
    # this is also why check_metric cannot pass with tokens = "cls".
    tokenizer = tiny_tokenizer()
    with pytest.raises(probekit.MetricError, match="^layer 0: "):
        run_metric(metric_cls, *tiny_model_pair(tokenizer=tokenizer), tiny_batches(tokenizer), tokens="cls")


def test_debiased_cka_of_three_examples_is_a_metric_error_from_finalize():
    tokenizer = tiny_tokenizer()
    with pytest.raises(probekit.MetricError, match=r"^layer 0: debiased CKA needs at least 4 datapoints .* got n=3$"):
        run_metric(DebiasedCKA, *tiny_model_pair(tokenizer=tokenizer), tiny_batches(tokenizer, n_examples=3))


def hidden_state_datapoints(models, batches, layer: int, tokens: str) -> tuple[np.ndarray, np.ndarray]:
    """Each model's (datapoints, hidden) float64 at ``layer``, over all batches, by the ``tokens`` rule."""
    sides = ([], [])
    with torch.inference_mode():
        for batch in batches:
            mask = batch.attention_mask.bool()  # (batch, tokens)
            for side, model in zip(sides, models):
                hidden = forward(model.encoder, batch, frozenset({"hidden_states"})).hidden_states[layer].double()
                if tokens == "mean":  # (batch, tokens, hidden) -> (batch, hidden): mean over real tokens
                    side.append(((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)).numpy())
                else:  # (batch, tokens, hidden) -> (real tokens, hidden)
                    side.append(hidden[mask].numpy())
    return np.concatenate(sides[0]), np.concatenate(sides[1])


def direct(metric_cls, x: np.ndarray, y: np.ndarray) -> float:
    return direct_linear_cka(x, y) if metric_cls is LinearCKA else direct_debiased_cka(centred(x), centred(y))


@pytest.fixture(scope="module")
def float64_models():
    tokenizer = tiny_tokenizer()
    models = tiny_model_pair(0, 1, tokenizer=tokenizer)
    for model in models:  # float64 forwards: the same values in both passes
        model.encoder.double()
    return models, tiny_batches(tokenizer, n_examples=120, batch_size=16)


@pytest.mark.parametrize(("metric_cls", "tokens"), [(LinearCKA, "all"), (DebiasedCKA, "mean"), (DebiasedCKA, "all")])
def test_the_plugins_agree_with_the_direct_formula_on_model_activations(float64_models, metric_cls, tokens):
    models, batches = float64_models
    rows = run_metric(metric_cls, *models, batches, tokens=tokens)
    assert [row.layer for row in rows] == [0, 1, 2]
    for row in rows:
        x, y = hidden_state_datapoints(models, batches, row.layer, tokens)
        assert row.n_tokens == len(x)
        assert row.value == pytest.approx(direct(metric_cls, x, y), rel=1e-9)


def fed(metric_cls, models, batches):
    """An instance of ``metric_cls`` that has seen ``batches``, not finalized."""
    a, b = models
    metric = metric_cls(metric_cls.Options(), MetricContext("a_vs_b", a, b, a.num_layers, torch.device("cpu")))
    for batch in batches:  # as the engine does: forward() runs in inference mode, update() outside it
        metric.update(forward(a.encoder, batch, metric_cls.needs), forward(b.encoder, batch, metric_cls.needs), batch)
    return metric


@pytest.mark.parametrize("metric_cls", [LinearCKA, DebiasedCKA])
def test_pooled_plugins_equal_one_instance_fed_the_batches_repeated_by_their_weights(float64_models, metric_cls):
    models, batches = float64_models
    groups = [batches[:3], batches[3:5], batches[5:]]
    weights = [2, 0, 1]
    pooled = metric_cls.pooled([fed(metric_cls, models, group) for group in groups], weights).finalize()
    repeated = fed(metric_cls, models, [b for group, w in zip(groups, weights) for _ in range(w) for b in group])
    for got, expected in zip(pooled, repeated.finalize(), strict=True):
        assert (got.layer, got.n_examples, got.n_tokens) == (expected.layer, expected.n_examples, expected.n_tokens)
        assert got.value == pytest.approx(expected.value, rel=1e-9)


@pytest.mark.parametrize(("module", "metric_cls"), [(linear_cka_plugin, LinearCKA), (debiased_cka_plugin, DebiasedCKA)])
def test_each_plugin_registers_its_metric(module, metric_cls):
    registered = []
    module.probekit_register_metrics(register=registered.append)
    assert registered == [metric_cls]
