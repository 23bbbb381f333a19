"""PWCCA and Procrustes, from streamed moments and as plugins, agree with direct float64 implementations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from probekit.metrics.functional import (
    CrossMoments,
    CrossProducts,
    pwcca as pwcca_of,
    svcca,
    procrustes,
    procrustes_from_moments,
    pwcca,
    pwcca_from_moments,
)
from probekit.engine.capture import forward
from probekit.plugins.procrustes import Procrustes
from probekit.plugins.pwcca import PWCCA
from probekit.testing import check_metric
from probekit.testing.fixtures import run_metric, tiny_batches, tiny_model_pair, tiny_tokenizer

RNG = np.random.default_rng(7)


def direct_procrustes(x: np.ndarray, y: np.ndarray) -> float:
    """Centre, scale to unit Frobenius norm, solve for the best orthogonal map, measure what is left."""
    x, y = x - x.mean(0), y - y.mean(0)
    x, y = x / np.linalg.norm(x), y / np.linalg.norm(y)
    width = max(x.shape[1], y.shape[1])
    x = np.pad(x, ((0, 0), (0, width - x.shape[1])))
    y = np.pad(y, ((0, 0), (0, width - y.shape[1])))
    u, _, vt = np.linalg.svd(y.T @ x)
    return float(np.linalg.norm(x - y @ (u @ vt)) ** 2)


def direct_pwcca(x: np.ndarray, y: np.ndarray) -> float:
    """Morcos et al.'s weighting, computed in data space: canonical variates from the SVD of the data."""
    x, y = x - x.mean(0), y - y.mean(0)

    def basis(a: np.ndarray) -> np.ndarray:
        """Orthonormal basis of the directions holding >= 1e-10 of the largest variance, (n, rank)."""
        u, s, _ = np.linalg.svd(a, full_matrices=False)
        return u[:, s**2 >= 1e-10 * s[0] ** 2]

    ux, uy = basis(x), basis(y)
    p, rho, _ = np.linalg.svd(ux.T @ uy, full_matrices=False)
    variates = ux @ p  # (n, k) unit-norm canonical variates of X
    alpha = np.abs(variates.T @ x).sum(axis=1)
    return float(1.0 - (alpha * np.clip(rho, 0, 1)).sum() / alpha.sum())


CASES = {
    "random": (RNG.standard_normal((600, 20)), RNG.standard_normal((600, 15))),
    "related": (lambda a: (a, a @ RNG.standard_normal((20, 20)) + 0.3 * RNG.standard_normal((600, 20))))(
        RNG.standard_normal((600, 20))),
    "rank_deficient": (lambda a: (np.hstack([a, a[:, :3]]), RNG.standard_normal((600, 12))))(
        RNG.standard_normal((600, 10))),
    "offset_means": (RNG.standard_normal((600, 8)) + 1e3, RNG.standard_normal((600, 8)) - 50),
}


@pytest.mark.parametrize("case", CASES)
def test_procrustes_matches_the_direct_formula(case):
    x, y = CASES[case]
    assert procrustes(x, y) == pytest.approx(direct_procrustes(x, y), abs=1e-9)


@pytest.mark.parametrize("case", CASES)
def test_pwcca_matches_the_direct_formula(case):
    x, y = CASES[case]
    assert pwcca(x, y) == pytest.approx(direct_pwcca(x, y), abs=1e-9)


@pytest.mark.parametrize("measure", [procrustes, pwcca])
def test_a_representation_against_itself_is_at_distance_zero(measure):
    x = RNG.standard_normal((300, 10))
    assert measure(x, x) == 0.0
    assert measure(x, x @ np.linalg.qr(RNG.standard_normal((10, 10)))[0]) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("measure", [procrustes, pwcca])
def test_values_do_not_depend_on_how_the_rows_are_batched(measure):
    x, y = CASES["related"]
    streamed = CrossMoments()
    for start in range(0, 600, 37):
        streamed.update(x[start : start + 37], y[start : start + 37])
    from_moments = {procrustes: procrustes_from_moments, pwcca: pwcca_from_moments}[measure]
    assert from_moments(streamed) == pytest.approx(measure(x, y), abs=1e-12)


@pytest.mark.parametrize(("n", "dx", "dy"), [(60, 128, 128), (5, 40, 30), (2, 3, 3)])
def test_procrustes_is_measured_with_fewer_datapoints_than_neurons(n, dx, dy):
    """Nothing is inverted, so the distance exists for any n >= 2 (scipy returns it on a 60 x 128 input too)."""
    x, y = RNG.standard_normal((n, dx)), RNG.standard_normal((n, dy))
    assert procrustes(x, y) == pytest.approx(direct_procrustes(x, y), abs=1e-9)


def test_the_cca_family_still_refuses_fewer_datapoints_than_neurons():
    x, y = RNG.standard_normal((60, 128)), RNG.standard_normal((60, 128))
    for measure in (lambda: svcca(x, y), lambda: pwcca_of(x, y)):
        with pytest.raises(ValueError, match="CCA is meaningless"):
            measure()


def test_procrustes_streams_and_pools_only_the_cross_products():
    """CrossProducts keeps X^T Y and two traces; streamed in batches and pooled with weights it equals the direct value."""
    x, y = CASES["offset_means"]
    parts = [CrossProducts() for _ in range(3)]
    for i, start in enumerate(range(0, 600, 200)):
        for chunk in range(start, start + 200, 70):
            parts[i].update(x[chunk:min(chunk + 70, start + 200)], y[chunk:min(chunk + 70, start + 200)])
    assert parts[0]._sxy.shape == (8, 8) and not hasattr(parts[0], "_sxx")
    pooled = CrossProducts.pooled(parts, [2, 0, 1])
    repeated = np.concatenate([x[:200], x[:200], x[400:]]), np.concatenate([y[:200], y[:200], y[400:]])
    assert procrustes_from_moments(pooled) == pytest.approx(direct_procrustes(*repeated), abs=1e-12)
    many = CrossProducts.pooled_many(parts, [[2, 0, 1], [1, 1, 1]])
    assert procrustes_from_moments(many[0]) == pytest.approx(procrustes_from_moments(pooled), abs=1e-12)
    assert procrustes_from_moments(many[1]) == pytest.approx(direct_procrustes(x, y), abs=1e-12)


def test_procrustes_of_a_constant_side_is_an_error():
    with pytest.raises(ValueError, match="constant over the datapoints"):
        procrustes(np.ones((100, 4)), RNG.standard_normal((100, 4)))


# ------------------------------------------------------------------ the plugins


@pytest.mark.parametrize("metric_cls", [PWCCA, Procrustes])
def test_the_plugins_keep_the_metric_contract(metric_cls):
    check_metric(metric_cls)


def test_procrustes_keeps_the_contract_on_mean_pooled_datapoints():
    # Not PWCCA: 48 mean-pooled datapoints for 32 neurons leave canonical correlations near 1 and
    # nearly tied, and the projection weights of tied directions depend on rounding (docs/reference.md).
    check_metric(Procrustes, {"tokens": "mean"})


@pytest.mark.parametrize(("metric_cls", "direct"), [(PWCCA, direct_pwcca), (Procrustes, direct_procrustes)])
def test_the_plugins_agree_with_the_direct_formula_on_model_activations(metric_cls, direct):
    tokenizer = tiny_tokenizer()
    model_a, model_b = tiny_model_pair(0, 1, tokenizer=tokenizer)
    model_a.encoder.double(), model_b.encoder.double()  # float64 forwards: the same values in both passes
    batches = tiny_batches(tokenizer, n_examples=120, batch_size=16)
    rows = run_metric(metric_cls, model_a, model_b, batches)
    with torch.inference_mode():
        captured = [(forward(model_a.encoder, b, frozenset({"hidden_states"})),
                     forward(model_b.encoder, b, frozenset({"hidden_states"})), b) for b in batches]
    for row in rows:
        # (batch, tokens, hidden) -> (real tokens of all batches, hidden), float64
        x = np.concatenate([a.hidden_states[row.layer][b.attention_mask.bool()].double().numpy() for a, _, b in captured])
        y = np.concatenate([c.hidden_states[row.layer][b.attention_mask.bool()].double().numpy() for _, c, b in captured])
        assert row.value == pytest.approx(direct(x, y), abs=1e-9)
