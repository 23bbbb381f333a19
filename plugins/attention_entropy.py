"""Change in attention entropy between two models (Clark et al. 2019, section 3.3).

Per layer l >= 1 and head h, each model's entropy is the mean over examples of
the mean over the example's real query tokens of H(i) = -sum_j p_ij log p_ij over
real keys. The value is model b's entropy minus model a's (signed: > 0 when b's
attention is broader); the layer's value is the mean over heads. ``entropy_a``
and ``entropy_b`` are on every row. Natural log by default; ``base = 2`` gives bits.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

import probekit
from probekit.metrics.attention import attention_entropy_per_example


@dataclass(frozen=True)
class Options:
    base: float | None = None  # logarithm base; None = natural log (nats)
    exclude_special: bool = False  # skip [CLS]/[SEP] query rows

    def __post_init__(self):
        if self.base is not None and (self.base <= 0 or self.base == 1):
            raise ValueError(f"base = {self.base} is not a logarithm base (expected > 0 and != 1)")


class AttentionEntropy(probekit.Metric):
    name = "attention_entropy"
    description = "change in attention entropy (b - a), per layer and head"
    needs = frozenset({"attentions"})
    direction = "distance"  # identical models give exactly 0; the sign says which way it moved
    layers = "attentions"
    per_head = True
    estimator = "per-example means"
    details = {"entropy_a": float, "entropy_b": float}
    Options = Options

    def __init__(self, options: Options, context) -> None:
        super().__init__(options, context)
        self.sums_a = None  # (layers, heads) float64: sum over examples of model a's per-example entropy
        self.sums_b = None  # (layers, heads) float64: the same for model b
        self.n_examples = 0
        self.n_tokens = 0

    @classmethod
    def unit_of(cls, options: Options) -> str:
        return "nats" if options.base is None else "bits" if options.base == 2 else f"log base {options.base:g}"

    def update(self, a, b, batch) -> None:
        query_mask = batch.attention_mask
        if self.options.exclude_special:
            query_mask = query_mask * (1 - batch.special_tokens_mask)
        sums_a = self._sums(a.attentions, batch, query_mask)
        sums_b = self._sums(b.attentions, batch, query_mask)
        self.sums_a = sums_a if self.sums_a is None else self.sums_a + sums_a
        self.sums_b = sums_b if self.sums_b is None else self.sums_b + sums_b
        self.n_examples += batch.size
        self.n_tokens = self.n_tokens + query_mask.sum()  # a device tensor: no host sync per batch

    def _sums(self, attentions, batch, query_mask) -> torch.Tensor:
        """(layers, heads): the batch's sum over examples of the per-example entropy."""
        try:
            return torch.stack([
                attention_entropy_per_example(p, batch.attention_mask, base=self.options.base,
                                              query_mask=query_mask).sum(0)
                for p in attentions
            ])
        except ValueError as error:  # an example of special tokens only under exclude_special, NaN maps
            emptied = self.options.exclude_special and "no selected query tokens" in str(error)
            hint = " (exclude_special = true leaves out [CLS]/[SEP] rows; set it to false)" if emptied else ""
            raise probekit.MetricError(f"{error}{hint}") from error

    @classmethod
    def pooled(cls, parts, weights) -> AttentionEntropy:
        used = [(part, w) for part, w in zip(parts, weights, strict=True) if w and part.n_examples]
        metric = copy.copy(parts[0])
        metric.sums_a = sum(w * part.sums_a for part, w in used)
        metric.sums_b = sum(w * part.sums_b for part, w in used)
        metric.n_examples = sum(w * part.n_examples for part, w in used)
        metric.n_tokens = sum(w * part.n_tokens for part, w in used)
        return metric

    def finalize(self) -> list[probekit.Row]:
        entropy_a = (self.sums_a / self.n_examples).cpu().tolist()
        entropy_b = (self.sums_b / self.n_examples).cpu().tolist()
        counts = dict(n_examples=self.n_examples, n_tokens=int(self.n_tokens))
        rows = []
        for layer, (heads_a, heads_b) in enumerate(zip(entropy_a, entropy_b), start=1):
            mean_a, mean_b = math.fsum(heads_a) / len(heads_a), math.fsum(heads_b) / len(heads_b)
            changes = [hb - ha for ha, hb in zip(heads_a, heads_b)]
            rows.append(probekit.Row(layer, math.fsum(changes) / len(changes), **counts,
                                     details={"entropy_a": mean_a, "entropy_b": mean_b}))
            rows.extend(probekit.Row(layer, hb - ha, head=head, **counts, details={"entropy_a": ha, "entropy_b": hb})
                        for head, (ha, hb) in enumerate(zip(heads_a, heads_b)))
        return rows


@probekit.hookimpl
def probekit_register_metrics(register):
    register(AttentionEntropy)
