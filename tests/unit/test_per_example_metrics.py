"""mutual_knn, cknna and rsa against direct numpy / scipy computations, and their contract."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats
import torch
from probekit.plugins.cknna import CKNNA, cknna
from probekit.plugins.mutual_knn import MutualKNN, mutual_knn
from probekit.plugins.rsa import RSA, rsa

from probekit.errors import SpecError
from probekit.metrics.options import parse_options
from probekit.testing import check_metric


def pair(n=60, d=16, noise=0.7, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = x @ rng.standard_normal((d, d + 4)) + noise * rng.standard_normal((n, d + 4))
    return x, y


def knn_direct(x, k):
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def mutual_knn_direct(x, y, k):
    nx, ny = knn_direct(x, k), knn_direct(y, k)
    shared = sum(len(set(a) & set(b)) for a, b in zip(nx, ny))  # an integer: the comparison below is exact
    return shared / (len(x) * k)


def hsic_direct(K, L):
    n = len(K)
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0)
    np.fill_diagonal(L, 0)
    return (np.sum(K * L.T) + K.sum() * L.sum() / ((n - 1) * (n - 2)) - 2 * np.sum(K @ L) / (n - 2)) / (n * (n - 3))


def cknna_direct(x, y, k):
    """Huh et al.'s cknna (platonic-rep metrics.py) in numpy, on row-normalised features, without the 1e-6."""
    n = len(x)
    ux, uy = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in (x, y))
    K, L = ux @ ux.T, uy @ uy.T

    def similarity(K, L):
        mask_k, mask_l = np.zeros((n, n)), np.zeros((n, n))
        for mask, kernel in ((mask_k, K), (mask_l, L)):
            hat = kernel.copy()
            np.fill_diagonal(hat, -np.inf)
            np.put_along_axis(mask, np.argsort(-hat, axis=1, kind="stable")[:, :k], 1, axis=1)
        mask = mask_k * mask_l
        return hsic_direct(mask * K, mask * L)

    return similarity(K, L) / np.sqrt(similarity(K, K) * similarity(L, L))


def rsa_direct(x, y, distance, compare):
    dx, dy = scipy.spatial.distance.pdist(x, distance), scipy.spatial.distance.pdist(y, distance)
    return (scipy.stats.spearmanr if compare == "spearman" else scipy.stats.pearsonr)(dx, dy)[0]


@pytest.mark.parametrize("k", [1, 5, 10])
@pytest.mark.parametrize("noise", [0.1, 2.0])
def test_mutual_knn_equals_a_direct_computation_exactly(k, noise):
    x, y = pair(noise=noise)
    value = mutual_knn(torch.from_numpy(x), torch.from_numpy(y), k)
    assert value == mutual_knn_direct(x, y, k)
    assert 0 < value < 1


@pytest.mark.parametrize("k", [3, 10])
@pytest.mark.parametrize("noise", [0.1, 2.0])
def test_cknna_equals_a_direct_computation(k, noise):
    x, y = pair(noise=noise)
    assert cknna(torch.from_numpy(x), torch.from_numpy(y), k) == pytest.approx(cknna_direct(x, y, k), abs=1e-9, rel=1e-9)


@pytest.mark.parametrize("distance", ["cosine", "correlation"])
@pytest.mark.parametrize("compare", ["spearman", "pearson"])
def test_rsa_equals_scipy(distance, compare):
    x, y = pair()
    assert rsa(torch.from_numpy(x), torch.from_numpy(y), distance, compare) == \
        pytest.approx(rsa_direct(x, y, distance, compare), abs=1e-9, rel=1e-9)


def test_rsa_ranks_ties_as_scipy_does():
    x, y = pair(n=12)
    x = np.repeat(x[:6], 2, axis=0)  # repeated examples: ties among the dissimilarities
    assert rsa(torch.from_numpy(x), torch.from_numpy(y), "cosine", "spearman") == \
        pytest.approx(rsa_direct(x, y, "cosine", "spearman"), abs=1e-9)


def test_unrelated_representations_score_near_chance():
    x, _ = pair(n=200)
    _, y = pair(n=200, seed=1)
    t = lambda v: torch.from_numpy(v)
    assert mutual_knn(t(x), t(y), 10) < 0.15  # chance is k / (n - 1) = 0.05
    assert abs(rsa(t(x), t(y), "correlation", "spearman")) < 0.1


@pytest.mark.parametrize("metric_cls", [MutualKNN, CKNNA, RSA])
def test_contract(metric_cls):
    check_metric(metric_cls)


def test_k_below_one_names_the_option_and_the_fix():
    _, problems = parse_options(MutualKNN.Options, {"k": 0})
    assert [(p.key, p.found, p.expected, p.hint) for p in problems] == \
        [("k", "0", "an integer of at least 1", "set k = 10, as Huh et al. do")]


def spec_document(k, limit=100):
    return {"name": "knn", "models": {"a": {"id": "minilm"}, "b": {"id": "minilm"}},
            "data": {"d": {"task": "sentiment", "limit": limit}}, "metrics": {"mutual_knn": {"k": k}},
            "comparisons": [{"name": "ab", "a": "a", "b": "b", "data": "d"}]}


def test_k_is_checked_against_the_examples_before_any_model_loads(tmp_path):
    from probekit.api import load
    with pytest.raises(SpecError) as caught:
        load(spec_document(k=60, limit=100), base_dir=tmp_path)
    [problem] = caught.value.problems
    assert problem.key == "metrics.mutual_knn.k" and problem.found == "60"
    assert "below 50" in problem.expected and "data.d has 100 examples" in problem.expected
    assert "raise data.d.limit above 122" in problem.expected
    assert load(spec_document(k=49, limit=100), base_dir=tmp_path).metrics["mutual_knn"].options.k == 49


def test_an_option_error_of_post_init_has_the_key_path(tmp_path):
    from probekit.api import load
    with pytest.raises(SpecError) as caught:
        load(spec_document(k=0), base_dir=tmp_path)
    assert [str(p) for p in caught.value.problems] == \
        ["metrics.mutual_knn.k: found 0; expected an integer of at least 1 (set k = 10, as Huh et al. do)"]
