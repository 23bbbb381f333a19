"""Linear CKA between two models' hidden states, per layer (Kornblith et al., 2019), as the metric ``example_cka``.

probekit has a built-in ``linear_cka``; this distribution exists to show a third-party
plugin written only against probekit's public contract, so its metric has its own name.

For each layer 0 (the embeddings) .. L, with X (n x dx) and Y (n x dy) the two
models' datapoints over the same tokens, centred per neuron:

    CKA(X, Y) = ||Cxy||_F^2 / (||Cxx||_F ||Cyy||_F)

with Cxx, Cyy, Cxy the (cross-)covariances (the 1 / (n - 1) factors cancel).
The moments are streamed batch by batch in float64 (``probekit.CrossMoments``),
so the value is exact whatever the batching, in O(d^2) memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

import probekit

__version__ = "0.1.0"
__all__ = ["LinearCKA", "Options", "cka_from_moments", "datapoints", "linear_cka"]


@dataclass(frozen=True)
class Options:
    tokens: Literal["all", "cls", "mean"] = "all"  # datapoints: every real token, [CLS] only, or the mean per example


def datapoints(hidden: torch.Tensor, attention_mask: torch.Tensor, tokens: str) -> torch.Tensor:
    """(batch, tokens, hidden) -> (datapoints, hidden), padding excluded: the rule SVCCA uses."""
    if tokens == "cls":
        return hidden[:, 0]
    if tokens == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (batch, tokens, 1)
        return (hidden * mask).sum(1) / mask.sum(1)
    return hidden[attention_mask.bool()]


def cka_from_moments(moments: probekit.CrossMoments) -> float:
    """Linear CKA of the streamed X and Y; ValueError when it is undefined (n < 2, a constant side)."""
    cxx, cyy, cxy = moments.covariances()  # (dx, dx), (dy, dy), (dx, dy) float64
    denominator = torch.linalg.matrix_norm(cxx) * torch.linalg.matrix_norm(cyy)
    if denominator == 0:
        raise ValueError("a side is constant over the datapoints: CKA is undefined")
    return float(cxy.square().sum() / denominator)


def linear_cka(x, y) -> float:
    """Linear CKA between ``x`` (n x dx) and ``y`` (n x dy), numpy or torch, rows the same datapoints."""
    moments = probekit.CrossMoments()
    moments.update(x, y)
    return cka_from_moments(moments)


class LinearCKA(probekit.Metric):
    name = "example_cka"
    description = "Linear CKA of hidden states, per layer (0 = embeddings)"
    unit = "CKA"
    needs = frozenset({"hidden_states"})
    direction = "similarity"
    layers = "hidden_states"
    details = {"n_datapoints": int}
    Options = Options

    def __init__(self, options: Options, context) -> None:
        super().__init__(options, context)
        self.moments = [probekit.CrossMoments() for _ in range(context.num_layers + 1)]
        self.n_examples = 0
        self.n_tokens = 0

    def update(self, a, b, batch) -> None:
        if len(a.hidden_states) != len(b.hidden_states):
            raise probekit.MetricError(
                f"example_cka: the models have {len(a.hidden_states) - 1} and {len(b.hidden_states) - 1} "
                "layers; CKA compares layer l with layer l"
            )
        tokens = self.options.tokens
        for moments, x, y in zip(self.moments, a.hidden_states, b.hidden_states, strict=True):
            moments.update(datapoints(x, batch.attention_mask, tokens), datapoints(y, batch.attention_mask, tokens))
        self.n_examples += batch.size
        self.n_tokens += int(batch.attention_mask.sum())

    def finalize(self) -> list[probekit.Row]:
        rows = []
        for layer, moments in enumerate(self.moments):
            try:
                value = cka_from_moments(moments)
            except ValueError as error:  # too few datapoints, a constant layer, NaN activations
                raise probekit.MetricError(f"example_cka, layer {layer}: {error}{self._hint(layer)}") from error
            rows.append(probekit.Row(layer, value, n_examples=self.n_examples, n_tokens=self.n_tokens,
                                     details={"n_datapoints": moments.n}))
        return rows

    def _hint(self, layer: int) -> str:
        if self.options.tokens == "cls" and layer == 0:
            return ('; with tokens = "cls", layer 0 is the [CLS] embedding, which BERT-family models give '
                    'every example alike: use tokens = "all" or "mean"')
        return ""


@probekit.hookimpl
def probekit_register_metrics(register):
    register(LinearCKA)
