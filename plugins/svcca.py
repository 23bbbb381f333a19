"""SVCCA distance between two models' hidden states, per layer (Hao et al. 2020, section 4).

Layer 0 is the embedding output. Each layer streams its covariance blocks batch
by batch (O(hidden^2) memory, whatever the number of tokens), then truncates each
side by the ``rule`` and takes 1 - mean canonical correlation; k_x and k_y are
recorded with every value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import probekit
from probekit.metrics.functional import CrossMoments, svcca_from_moments
from probekit.metrics.moments import HiddenStateMoments, TokenOptions


@dataclass(frozen=True)
class Options(TokenOptions):
    rule: Literal["singular_values", "variance"] = "singular_values"
    threshold: float = 0.99
    k: int | None = None  # a fixed number of directions per side, instead of the rule

    def __post_init__(self):
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold = {self.threshold} is not a fraction in (0, 1]")
        if self.k is not None and self.k < 1:
            raise ValueError(f"k = {self.k} is not a positive number of directions")


class SVCCA(HiddenStateMoments):
    name = "svcca"
    description = "SVCCA distance of hidden states, per layer (0 = embeddings)"
    unit = "1 - mean rho"
    estimator = "exact moments"
    value_range = (0.0, 1.0)
    direction = "distance"
    decomposes = True
    details = {"k_x": int, "k_y": int, "rule": str, "threshold": float}
    Options = Options

    def layer_row(self, layer: int, moments: CrossMoments) -> probekit.Row:
        return svcca_row(layer, moments, self.options, self.n_examples)


def svcca_row(layer: int, moments: CrossMoments, options: Options, n_examples: int) -> probekit.Row:
    """The SVCCA distance of one layer's moments, with k_x, k_y, the rule and threshold."""
    result = svcca_from_moments(moments, rule=options.rule, threshold=options.threshold, k=options.k)
    return probekit.Row(
        layer, result.distance, n_examples=n_examples, n_tokens=moments.n,
        details={"k_x": result.k_x, "k_y": result.k_y, "rule": result.rule, "threshold": result.threshold},
    )


def svcca_rows(per_layer: list[CrossMoments], options: Options, n_examples: int) -> list[probekit.Row]:
    """One row per layer (for metrics that fill the moments their own way, as layer_replacement does)."""
    rows = []
    for layer, moments in enumerate(per_layer):
        try:
            rows.append(svcca_row(layer, moments, options, n_examples))
        except ValueError as error:  # e.g. rank 0: every [CLS] embedding is the same vector
            raise probekit.MetricError(f"layer {layer}: {error}") from error
    return rows


@probekit.hookimpl
def probekit_register_metrics(register):
    register(SVCCA)
