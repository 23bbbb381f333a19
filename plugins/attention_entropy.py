"""Change in attention entropy between two models (Clark et al. 2019, section 3.3).

Per layer l >= 1 and head h, each model's entropy is the mean over examples of
the mean over the example's real query tokens of H(i) = -sum_j p_ij log p_ij over
real keys. The value is model b's entropy minus model a's (signed: > 0 when b's
attention is broader); the layer's value is the mean over heads. ``entropy_a``
and ``entropy_b`` are on every row. Natural log by default; ``base = 2`` gives bits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

import probekit
from probekit.functional import mean_over_rows, query_rows, row_plogp


@dataclass(frozen=True)
class Options:
    base: float | None = None  # logarithm base; None = natural log (nats)
    exclude_special: bool = False  # skip [CLS]/[SEP] query rows
    exclude_first: bool = False  # skip each example's first real query row: a decoder's attention sink

    def __post_init__(self):
        if self.base is not None and (self.base <= 0 or self.base == 1):
            raise ValueError(f"base = {self.base} is not a logarithm base (expected > 0 and != 1)")


class AttentionEntropy(probekit.AttentionChange):
    name = "attention_entropy"
    description = "change in attention entropy (b - a), per layer and head"
    statistic = "entropy"
    details = {"entropy_a": float, "entropy_b": float}
    Options = Options

    @classmethod
    def unit_of(cls, options: Options) -> str:
        return "nats" if options.base is None else "bits" if options.base == 2 else f"log base {options.base:g}"

    def batch_sums(self, a, b, batch):
        query_mask = query_rows(batch.attention_mask, batch.special_tokens_mask,
                                exclude_special=self.options.exclude_special, exclude_first=self.options.exclude_first)
        return self._sums(a, batch, query_mask), self._sums(b, batch, query_mask), query_mask.sum()

    def _sums(self, capture, batch, query_mask) -> torch.Tensor:
        """(layers, heads): the batch's sum over examples of the per-example entropy, a chunk of rows at a time."""
        scale = 1.0 if self.options.base is None else math.log(self.options.base)
        try:
            return torch.stack([
                mean_over_rows(-shared_row_plogp(capture, layer, batch), batch.attention_mask, query_mask).sum(0)
                / scale
                for layer in range(capture.attention_layers)
            ])
        except ValueError as error:  # an example of special tokens only under exclude_special, NaN maps
            leaving_out = [f"{name} = true leaves out {rows}" for name, rows, on in (
                ("exclude_special", "[CLS]/[SEP] rows", self.options.exclude_special),
                ("exclude_first", "each example's first row", self.options.exclude_first)) if on]
            emptied = leaving_out and "no selected query tokens" in str(error)
            hint = f" ({'; '.join(leaving_out)}; set it to false)" if emptied else ""
            raise probekit.MetricError(f"{error}{hint}") from error


def shared_row_plogp(capture, layer: int, batch) -> torch.Tensor:
    """A layer's sum_j p log p per attention row, computed once per capture for every comparison of the model."""
    return capture.derived(("probekit.attention_row_plogp", layer),
                           lambda: row_plogp(capture.rows(layer), batch.attention_mask))


@probekit.hookimpl
def probekit_register_metrics(register):
    register(AttentionEntropy)
