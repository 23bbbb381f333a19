"""A base for metrics that compare one statistic of each model's attention: b's value minus a's.

Per layer l >= 1 and head h, each model's statistic is a mean over examples, kept as
running float64 sums; the row's value is model b's mean minus model a's (signed,
exactly 0 for identical models), the layer's value the mean over heads, and both
models' means ride along as ``<statistic>_a`` / ``<statistic>_b`` details.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from probekit.metrics.base import Metric, MetricContext, Row
from probekit.metrics.tensors import Batch, Capture


class AttentionChange(Metric):
    """Subclasses set ``statistic`` (the details' prefix) and implement :meth:`batch_sums`."""

    needs = frozenset({"attention_rows"})
    direction = "distance"  # identical models give exactly 0; the sign says which way it moved
    layers = "attentions"
    per_head = True
    estimator = "per-example means"
    interval = "percentile"  # a difference of means over examples: unbiased, no shift to correct
    statistic: ClassVar[str]

    def __init__(self, options: Any, context: MetricContext) -> None:
        super().__init__(options, context)
        self.sums_a = None  # (layers, heads) float64: sum over examples of model a's per-example statistic
        self.sums_b = None  # (layers, heads) float64: the same for model b
        self.n_examples = 0
        self.n_tokens = 0

    def batch_sums(self, a: Capture, b: Capture, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sums_a, sums_b, query tokens): each model's (layers, heads) sum over the batch's examples."""
        raise NotImplementedError

    def update(self, a: Capture, b: Capture, batch: Batch) -> None:
        sums_a, sums_b, tokens = self.batch_sums(a, b, batch)
        self.sums_a = sums_a if self.sums_a is None else self.sums_a + sums_a
        self.sums_b = sums_b if self.sums_b is None else self.sums_b + sums_b
        self.n_examples += batch.size
        self.n_tokens = self.n_tokens + tokens  # a device tensor: no host sync per batch

    @classmethod
    def pooled(cls, parts: Sequence[AttentionChange], weights: Sequence[int]) -> AttentionChange:
        used = [(part, w) for part, w in zip(parts, weights, strict=True) if w and part.n_examples]
        metric = copy.copy(parts[0])
        metric.sums_a = sum(w * part.sums_a for part, w in used)
        metric.sums_b = sum(w * part.sums_b for part, w in used)
        metric.n_examples = sum(w * part.n_examples for part, w in used)
        metric.n_tokens = sum(w * part.n_tokens for part, w in used)
        return metric

    def finalize(self) -> list[Row]:
        means_a = (self.sums_a / self.n_examples).cpu().tolist()
        means_b = (self.sums_b / self.n_examples).cpu().tolist()
        counts = dict(n_examples=self.n_examples, n_tokens=int(self.n_tokens))
        key_a, key_b = f"{self.statistic}_a", f"{self.statistic}_b"
        rows = []
        for layer, (heads_a, heads_b) in enumerate(zip(means_a, means_b), start=1):
            changes = [hb - ha for ha, hb in zip(heads_a, heads_b)]
            rows.append(Row(layer, math.fsum(changes) / len(changes), **counts,
                            details={key_a: math.fsum(heads_a) / len(heads_a), key_b: math.fsum(heads_b) / len(heads_b)}))
            rows.extend(Row(layer, hb - ha, head=head, **counts, details={key_a: ha, key_b: hb})
                        for head, (ha, hb) in enumerate(zip(heads_a, heads_b)))
        return rows
