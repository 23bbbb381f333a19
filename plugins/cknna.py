"""CKNNA of hidden states, per layer (Huh et al. 2024, "The Platonic Representation Hypothesis"): centred kernel
alignment with each kernel restricted to the pairs of examples that are mutual k nearest neighbours.

The cosine kernels K = X̂X̂ᵀ and L = ŶŶᵀ of the row-normalised pooled vectors are masked to the pairs (i, j)
where j is among i's k nearest neighbours in both; CKNNA = HSIC(K∘M, L∘M) / sqrt(HSIC(K∘M_K, K∘M_K)
HSIC(L∘M_L, L∘M_L)) with the unbiased HSIC estimator (Song et al. 2012), as the authors' code computes it
(without its 1e-6 guard). 1 for identical representations.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import probekit
from probekit.functional import nearest_neighbours, unbiased_hsic


@dataclass(frozen=True)
class Options(probekit.PoolingOptions):
    k: int = 10  # neighbours per example; below the number of examples

    def __post_init__(self) -> None:
        if self.k < 2:
            raise probekit.OptionError("k", "an integer of at least 2", "set k = 10, as Huh et al. do")


def _masked_hsic(kernel_x: torch.Tensor, kernel_y: torch.Tensor, x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    n = x.shape[0]
    rows = torch.arange(n, device=x.device).unsqueeze(1)
    mask = torch.zeros(n, n, dtype=x.dtype, device=x.device)
    mask[rows, nearest_neighbours(x, k)] = 1
    other = torch.zeros_like(mask)
    other[rows, nearest_neighbours(y, k)] = 1
    mask = mask * other
    return unbiased_hsic(mask * kernel_x, mask * kernel_y)


def cknna(x: torch.Tensor, y: torch.Tensor, k: int) -> float:
    n = x.shape[0]
    if k >= n or n < 4:
        raise probekit.MetricError(f"k = {k} needs more than {max(k, 3)} examples, got {n}; lower metrics.cknna.k")
    unit_x, unit_y = torch.nn.functional.normalize(x, dim=1), torch.nn.functional.normalize(y, dim=1)
    kernel_x, kernel_y = unit_x @ unit_x.T, unit_y @ unit_y.T
    xy = _masked_hsic(kernel_x, kernel_y, x, y, k)
    xx, yy = _masked_hsic(kernel_x, kernel_x, x, x, k), _masked_hsic(kernel_y, kernel_y, y, y, k)
    if xx <= 0 or yy <= 0:
        raise probekit.MetricError(f"the neighbourhood kernel of a model has no positive HSIC with itself "
                                   f"({float(xx):.3g}, {float(yy):.3g}); raise metrics.cknna.k")
    return float(xy / torch.sqrt(xx * yy))


class CKNNA(probekit.PerExampleMetric):
    name = "cknna"
    description = "CKNNA: CKA restricted to mutual k nearest neighbours (Huh et al. 2024), per layer (0 = embeddings)"
    unit = "CKNNA"
    direction = "similarity"
    estimator = "exact, every example's pooled vector; unbiased HSIC"
    # A repeated example is its own nearest neighbour: intervals subsample without replacement.
    resampling = probekit.Resample(replace=False, fraction=0.5)
    Options = Options

    def layer_value(self, x: torch.Tensor, y: torch.Tensor) -> float:
        return cknna(x, y, self.options.k)

    @classmethod
    def check_spec(cls, options: Options, facts: probekit.SpecFacts) -> list[probekit.OptionError]:
        return cls.below_examples("k", options.k, facts)


@probekit.hookimpl
def probekit_register_metrics(register):
    register(CKNNA)
