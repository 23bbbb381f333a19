"""Representational similarity analysis of hidden states, per layer (Kriegeskorte et al. 2008): the rank
(Spearman) or linear (Pearson) correlation between the two models' representational dissimilarity matrices
over the examples' pooled vectors, their upper triangles (i < j). Dissimilarity: cosine distance 1 - cos, or
correlation distance 1 - Pearson r of two vectors. 1 for identical representations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

import probekit


@dataclass(frozen=True)
class Options(probekit.PoolingOptions):
    distance: Literal["cosine", "correlation"] = "correlation"
    compare: Literal["spearman", "pearson"] = "spearman"


def dissimilarities(x: torch.Tensor, distance: str) -> torch.Tensor:
    """The upper triangle (i < j, row-major) of the (n, n) dissimilarity matrix of the rows of ``x``."""
    if distance == "correlation":
        x = x - x.mean(dim=1, keepdim=True)
    gram = x @ x.T
    norms = gram.diagonal()
    upper = torch.triu_indices(len(x), len(x), offset=1, device=x.device)
    # As scipy's pdist: a copy of an example is at distance exactly 0 (x.x / sqrt(x.x x.x) = 1).
    return 1 - gram[upper[0], upper[1]] / torch.sqrt(norms[upper[0]] * norms[upper[1]])


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n, ties given their mean rank (scipy's rankdata 'average')."""
    order = values.argsort(stable=True)
    _, inverse, counts = values[order].unique_consecutive(return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).to(torch.float64)
    ranks = torch.empty_like(values, dtype=torch.float64)
    ranks[order] = (ends - (counts.to(torch.float64) - 1) / 2)[inverse]
    return ranks


def pearson(u: torch.Tensor, v: torch.Tensor) -> float:
    u, v = u - u.mean(), v - v.mean()
    return float((u @ v) / torch.sqrt((u @ u) * (v @ v)))


def rsa(x: torch.Tensor, y: torch.Tensor, distance: str, compare: str) -> float:
    if len(x) < 3:
        raise probekit.MetricError(f"RSA needs at least 3 examples, got {len(x)}")
    dx, dy = dissimilarities(x, distance), dissimilarities(y, distance)
    if compare == "spearman":
        dx, dy = average_ranks(dx), average_ranks(dy)
    return pearson(dx, dy)


class RSA(probekit.PerExampleMetric):
    name = "rsa"
    description = "RSA: correlation of the two models' dissimilarity matrices over examples, per layer (0 = embeddings)"
    unit = "RSA"
    direction = "similarity"
    estimator = "exact, every example's pooled vector"
    # A repeated example has a dissimilarity of 0 with its copy: intervals subsample without replacement.
    resampling = probekit.Resample(replace=False, fraction=0.5)
    Options = Options

    @classmethod
    def unit_of(cls, options: Options) -> str:
        return f"RSA ({options.compare}, {options.distance} distance)"

    def layer_value(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return rsa(x, y, self.options.distance, self.options.compare)


@probekit.hookimpl
def probekit_register_metrics(register):
    register(RSA)
