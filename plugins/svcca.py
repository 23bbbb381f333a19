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
from probekit.metrics.functional import CrossMoments, datapoints, svcca_from_moments


@dataclass(frozen=True)
class Options:
    rule: Literal["singular_values", "variance"] = "singular_values"
    threshold: float = 0.99
    k: int | None = None  # a fixed number of directions per side, instead of the rule
    tokens: Literal["all", "cls", "mean"] = "all"  # datapoints: every real token, [CLS] only, or the mean per example

    def __post_init__(self):
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold = {self.threshold} is not a fraction in (0, 1]")
        if self.k is not None and self.k < 1:
            raise ValueError(f"k = {self.k} is not a positive number of directions")


class SVCCA(probekit.Metric):
    name = "svcca"
    description = "SVCCA distance of hidden states, per layer (0 = embeddings)"
    unit = "1 - mean rho"
    needs = frozenset({"hidden_states"})
    direction = "distance"
    layers = "hidden_states"
    details = {"k_x": int, "k_y": int, "rule": str, "threshold": float}
    Options = Options

    def __init__(self, options: Options, context) -> None:
        super().__init__(options, context)
        self.moments = [CrossMoments() for _ in range(context.num_layers + 1)]
        self.n_examples = 0

    def update(self, a, b, batch) -> None:
        for layer, (moments, x, y) in enumerate(zip(self.moments, a.hidden_states, b.hidden_states, strict=True)):
            try:
                moments.update(
                    datapoints(x, batch.attention_mask, self.options.tokens),
                    datapoints(y, batch.attention_mask, self.options.tokens),
                )
            except ValueError as error:  # e.g. NaN activations
                raise probekit.MetricError(f"layer {layer}: {error}") from error
        self.n_examples += batch.size

    def finalize(self) -> list[probekit.Row]:
        return svcca_rows(self.moments, self.options, self.n_examples)


def svcca_rows(per_layer: list[CrossMoments], options: Options, n_examples: int) -> list[probekit.Row]:
    """One row per layer: the SVCCA distance of its moments, with k_x, k_y, the rule and threshold."""
    rows = []
    for layer, moments in enumerate(per_layer):
        try:
            result = svcca_from_moments(moments, rule=options.rule, threshold=options.threshold, k=options.k)
        except ValueError as error:  # e.g. rank 0: every [CLS] embedding is the same vector
            raise probekit.MetricError(f"layer {layer}: {error}") from error
        rows.append(probekit.Row(
            layer, result.distance, n_examples=n_examples, n_tokens=moments.n,
            details={"k_x": result.k_x, "k_y": result.k_y, "rule": result.rule, "threshold": result.threshold},
        ))
    return rows


@probekit.hookimpl
def probekit_register_metrics(register):
    register(SVCCA)
