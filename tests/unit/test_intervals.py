"""Honest intervals: clipped to the metric's range, with the bootstrap bias, notes where they mislead, and coverage
of known population values on synthetic data (Gaussian pairs with set canonical correlations; attention rows
whose JS divergence is known).

The coverage study proper (200 datasets per case, 95% +- 4%) is marked slow; the default run draws a few
datasets per case and asks a loose band, so that a broken interval still fails it.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from probekit.engine.resampling import FEW_GROUPS, Resampled, Resampling
from probekit.metrics.base import Row
from probekit.metrics.options import parse_options
from probekit.metrics.tensors import Batch, Capture
from probekit.plugins.attention_js import AttentionJS
from probekit.plugins.linear_cka import LinearCKA
from probekit.plugins.pwcca import PWCCA
from probekit.plugins.svcca import SVCCA

WIDTH = 6
RHO = np.linspace(0.3, 0.9, WIDTH)  # the population canonical correlations
JS_DISJOINT = 0.3  # the share of attention rows on which the two models attend to disjoint keys

#: The population value of each metric for :func:`gaussian_pairs` (identity covariances, Cxy = diag(RHO)):
#: every direction kept, canonical weights the identity, so PWCCA's projection weights are equal.
POPULATION = {
    "svcca": 1 - RHO.mean(),
    "pwcca": 1 - RHO.mean(),
    "linear_cka": float((RHO**2).mean()),
    "attention_js": JS_DISJOINT * math.log(2),
}
CLASSES = {"svcca": SVCCA, "pwcca": PWCCA, "linear_cka": LinearCKA, "attention_js": AttentionJS}


@dataclass
class Context:
    num_layers: int
    causal: bool = False


def options(metric_cls):
    parsed, problems = parse_options(metric_cls.Options, {})
    assert not problems
    return parsed


def gaussian_pairs(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n datapoints of x ~ N(0, I) and y = RHO x + sqrt(1 - RHO^2) noise: canonical correlations RHO."""
    x = rng.standard_normal((n, WIDTH))
    y = RHO * x + np.sqrt(1 - RHO**2) * rng.standard_normal((n, WIDTH))
    return torch.as_tensor(x)[:, None, :], torch.as_tensor(y)[:, None, :]  # (examples, 1 token, width)


def disjoint_rows(n: int, tokens: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention maps (examples, 1 head, tokens, tokens): each row equal in both models, or (with probability
    JS_DISJOINT) on disjoint keys, where JS = ln 2; the population value is JS_DISJOINT ln 2."""
    p = torch.full((n, 1, tokens, tokens), 1.0 / tokens, dtype=torch.float64)
    q = p.clone()
    disjoint = torch.as_tensor(rng.random((n, tokens)) < JS_DISJOINT)
    half = tokens // 2
    first = torch.zeros(tokens, dtype=torch.float64)
    first[:half] = 1.0 / half
    second = torch.zeros(tokens, dtype=torch.float64)
    second[half:] = 1.0 / (tokens - half)
    p[:, 0][disjoint] = first
    q[:, 0][disjoint] = second
    return p, q


def resampled_rows(name: str, n: int, rng: np.random.Generator, replicates: int, groups: int = 32) -> list[Row]:
    metric_cls = CLASSES[name]
    attention = name == "attention_js"
    tokens = 8 if attention else 1
    a, b = disjoint_rows(n, tokens, rng) if attention else gaussian_pairs(n, rng)
    metric = Resampled(metric_cls, options(metric_cls), Context(num_layers=1 if attention else 0), n,
                       Resampling(replicates=replicates, groups=groups, seed=int(rng.integers(2**31))))
    mask = torch.ones(n, tokens, dtype=torch.long)
    batch = Batch(torch.zeros(n, tokens, dtype=torch.long), mask, torch.zeros_like(mask))
    for start in range(0, n, 50):
        part = torch.arange(start, min(start + 50, n))
        captured = [Capture(None, (side[part],)) if attention else Capture((side[part],), None) for side in (a, b)]
        metric.update(*captured, batch.select(part))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FewDatapointsWarning at 20 per neuron: what is being measured
        rows = metric.finalize()
    return [row for row in rows if row.head is None], metric.notes


def coverage(name: str, per_neuron: int, datasets: int, replicates: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    n = per_neuron * WIDTH
    covered = 0
    for _ in range(datasets):
        rows, _ = resampled_rows(name, n, rng, replicates)
        (row,) = rows
        covered += row.ci_low <= POPULATION[name] <= row.ci_high
    return covered / datasets


@pytest.mark.parametrize("name", list(CLASSES))
def test_intervals_cover_the_population_value_often(name):
    """A fast check: 10 datasets at 50 datapoints per neuron; 95% intervals must cover in at least 7 of them
    (a binomial(10, 0.95) falls below 7 with probability 0.1%)."""
    assert coverage(name, per_neuron=50, datasets=10, replicates=40) >= 0.7


@pytest.mark.slow
@pytest.mark.parametrize("per_neuron", [20, 50])
@pytest.mark.parametrize("name", list(CLASSES))
def test_intervals_cover_the_population_value_in_95_percent_of_datasets(name, per_neuron):
    """The coverage study of docs/reference.md: 200 datasets, 200 replicates, 32 groups, 95% +- 4%."""
    measured = coverage(name, per_neuron=per_neuron, datasets=200, replicates=200)
    print(f"coverage {name} at {per_neuron} per neuron: {measured:.3f}")
    assert 0.91 <= measured <= 0.99


def test_no_bound_lies_outside_the_metric_range_and_the_bias_is_recorded():
    """Linear CKA near 1 with replicates below it: the basic interval would pass 1; it is clipped to [0, 1]."""
    metric = Resampled(LinearCKA, options(LinearCKA), Context(0), 100, Resampling(replicates=4, groups=20))
    (row,) = metric._with_intervals([Row(2, 0.999)], {(2, None, None): [0.990, 0.992, 0.994, 0.996]})
    assert row.ci_high == 1.0 and row.ci_low == pytest.approx(2 * 0.999 - np.quantile([0.990, 0.992, 0.994, 0.996], 0.975))
    assert row.ci_bias == pytest.approx(-0.006)
    js = Resampled(AttentionJS, options(AttentionJS), Context(1), 100, Resampling(replicates=4, groups=20))
    (row,) = js._with_intervals([Row(1, 0.001)], {(1, None, None): [-0.002, 0.0, 0.001, 0.002]})
    assert row.ci_low == 0.0  # a percentile interval, clipped at the divergence's floor


def test_too_few_groups_and_a_value_outside_its_interval_are_noted():
    rng = np.random.default_rng(2)
    _, notes = resampled_rows("svcca", 10 * WIDTH, rng, replicates=20, groups=8)
    assert any("only 8 groups" in note and f"below {FEW_GROUPS}" in note for note in notes)
    # replicates all well below the value: the basic interval lies above it
    metric = Resampled(SVCCA, options(SVCCA), Context(0), 100, Resampling(replicates=4, groups=20))
    (row,) = metric._with_intervals([Row(3, 0.30)], {(3, None, None): [0.20, 0.21, 0.22, 0.23]})
    assert row.ci_low > row.value and row.ci_bias == pytest.approx(-0.085)
    assert metric.notes == ["layer 3: the value 0.3 lies outside its interval [0.3707, 0.3992] (bootstrap bias -0.085: "
                            "the estimate is biased at this sample size; more datapoints per neuron shrink it)"]
