"""Every layer of model a against every layer of model b: an (L+1) x (L+1) matrix per comparison.

"Which pre-trained layer does fine-tuned layer 10 resemble most?" Rows carry the
layer of model a in ``layer`` and the layer of model b in ``layer_b``; the diagonal
(layer i against layer i) is the metric's layer series, equal to the layer-wise
metric of the same ``measure``. All layers stream side by side into one set of
float64 moments, (datapoints, (L+1) x hidden), so one GEMM per batch fills every
pair; memory is O(((L+1) x hidden)^2).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

import probekit
from probekit.functional import (
    CrossMoments,
    datapoints,
    linear_cka_from_moments,
    procrustes_from_moments,
    pwcca_from_moments,
    svcca_from_moments,
)

#: measure -> (its value from a pair's moments, its direction, its unit)
MEASURES: dict[str, tuple[Callable[[CrossMoments], float], str, str]] = {
    "linear_cka": (linear_cka_from_moments, "similarity", "CKA"),
    "svcca": (lambda m: svcca_from_moments(m).distance, "distance", "1 - mean rho"),
    "pwcca": (pwcca_from_moments, "distance", "1 - weighted mean rho"),
    "procrustes": (procrustes_from_moments, "distance", "2 - 2 ||X'Y||_*"),
}


@dataclass(frozen=True)
class Options(probekit.TokenOptions):
    measure: Literal["linear_cka", "svcca", "pwcca", "procrustes"] = "linear_cka"


class CrossLayer(probekit.HiddenStateMoments):
    shape = "layer_pairs"  # every layer of a against every layer of b
    name = "cross_layer"
    description = "a similarity measure between every layer of model a and every layer of model b"
    direction = "similarity"
    estimator = "exact moments"
    Options = Options

    @classmethod
    def unit_of(cls, options: Options) -> str:
        return MEASURES[options.measure][2]

    @classmethod
    def direction_of(cls, options: Options) -> str:
        return MEASURES[options.measure][1]

    @classmethod
    def range_of(cls, options: Options) -> tuple[float, float]:
        return (0.0, 2.0) if options.measure == "procrustes" else (0.0, 1.0)

    def __init__(self, options: Options, context) -> None:
        super().__init__(options, context)
        self.moments = [CrossMoments()]  # one for all layers side by side; pooling treats it as one "layer"

    def _update(self, a, b, batch, generator) -> None:
        tokens = self.options.tokens
        # (batch, tokens, hidden) per layer -> (datapoints, (L+1) x hidden)
        x = torch.cat([datapoints(h, batch.attention_mask, tokens) for h in a.hidden_states], dim=1)
        y = torch.cat([datapoints(h, batch.attention_mask, tokens) for h in b.hidden_states], dim=1)
        if generator is not None:
            y = y[torch.randperm(len(y), generator=generator).to(y.device)]
        try:
            self.moments[0].update(x, y)
        except ValueError as error:
            raise probekit.MetricError(str(error)) from error
        self.n_examples += batch.size

    def finalize(self) -> list[probekit.Row]:
        moments = self.moments[0]
        layers = self.context.num_layers + 1
        width_a, width_b = moments.dx // layers, moments.dy // layers
        value_of = MEASURES[self.options.measure][0]
        rows = []
        for i in range(layers):
            for j in range(layers):
                block = moments.block(slice(i * width_a, (i + 1) * width_a), slice(j * width_b, (j + 1) * width_b))
                try:
                    value = value_of(block)
                except ValueError as error:
                    raise probekit.MetricError(f"layer {i} x layer_b {j}: {error}") from error
                rows.append(probekit.Row(i, value, layer_b=j, n_examples=self.n_examples, n_tokens=moments.n))
        return rows


@probekit.hookimpl
def probekit_register_metrics(register):
    register(CrossLayer)
