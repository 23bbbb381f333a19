"""Mutual k-nearest-neighbour alignment of hidden states, per layer (Huh et al. 2024, "The Platonic Representation
Hypothesis"): for each example, the share of its k nearest neighbours (cosine) among the other examples that both
models agree on, averaged over the examples. 1 = the same neighbourhoods; about k / n for unrelated representations.

A per-example metric: probekit keeps every example's pooled vector and hands them over at the end.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import probekit
from probekit.functional import nearest_neighbours


@dataclass(frozen=True)
class Options(probekit.PoolingOptions):
    k: int = 10  # neighbours per example; below the number of examples

    def __post_init__(self) -> None:
        if self.k < 1:
            raise probekit.OptionError("k", "an integer of at least 1", "set k = 10, as Huh et al. do")


def mutual_knn(x: torch.Tensor, y: torch.Tensor, k: int) -> float:
    """The mean over examples of |kNN_x(i) ∩ kNN_y(i)| / k."""
    n = x.shape[0]
    if k >= n:
        raise probekit.MetricError(f"k = {k} needs more than {k} examples, got {n}; lower metrics.mutual_knn.k")
    rows = torch.arange(n, device=x.device).unsqueeze(1)
    in_x = torch.zeros(n, n, dtype=torch.bool, device=x.device)
    in_y = torch.zeros(n, n, dtype=torch.bool, device=x.device)
    in_x[rows, nearest_neighbours(x, k)] = True
    in_y[rows, nearest_neighbours(y, k)] = True
    return float((in_x & in_y).sum(dtype=torch.float64) / (n * k))


class MutualKNN(probekit.PerExampleMetric):
    name = "mutual_knn"
    description = "mutual k-NN alignment of pooled hidden states (Huh et al. 2024), per layer (0 = embeddings)"
    unit = "mutual k-NN"
    direction = "similarity"
    estimator = "exact, every example's pooled vector"
    # A repeated example is its own nearest neighbour: intervals subsample without replacement.
    resampling = probekit.Resample(replace=False, fraction=0.5)
    Options = Options

    def layer_value(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return mutual_knn(x, y, self.options.k)

    @classmethod
    def check_spec(cls, options: Options, facts: probekit.SpecFacts) -> list[probekit.OptionError]:
        return cls.below_examples("k", options.k, facts)


@probekit.hookimpl
def probekit_register_metrics(register):
    register(MutualKNN)
