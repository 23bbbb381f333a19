"""Change in the share of attention on special tokens between two models (Clark et al. 2019, section 3.2).

Per layer l >= 1 and head h, each model's share is the mean over examples of the
mean over the example's real query tokens of sum_j p_ij over the real keys j that
``keys`` selects: "special" the batch's special tokens ([CLS], [SEP], BOS/EOS),
"cls" position 0, "sep" the special tokens after position 0. The value is model
b's share minus model a's (signed: > 0 when b attends more to them); the layer's
value is the mean over heads. ``share_a`` and ``share_b`` are on every row.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Literal

import torch

import probekit
from probekit.metrics.attention import attention_share_per_example

#: Why an example may have no key of the kind ``keys`` selects, and what to change.
NO_KEY_HINT = {
    "special": "the tokenizer adds no [CLS]/[SEP]/BOS/EOS; set keys = \"cls\" to measure attention to position 0",
    "cls": "position 0 is padding (left padding); pad on the right or set keys = \"special\"",
    "sep": "no special token follows position 0 (a tokenizer that adds only a BOS?); set keys = \"special\" or \"cls\"",
}


@dataclass(frozen=True)
class Options:
    keys: Literal["special", "cls", "sep"] = "special"  # which keys' share is measured


class AttentionSpecial(probekit.Metric):
    name = "attention_special"
    description = "change in the share of attention on special tokens (b - a), per layer and head"
    unit = "share"
    needs = frozenset({"attentions"})
    direction = "distance"  # identical models give exactly 0; the sign says which way it moved
    layers = "attentions"
    per_head = True
    estimator = "per-example means"
    details = {"share_a": float, "share_b": float}
    Options = Options

    def __init__(self, options: Options, context) -> None:
        super().__init__(options, context)
        self.sums_a = None  # (layers, heads) float64: sum over examples of model a's per-example share
        self.sums_b = None  # (layers, heads) float64: the same for model b
        self.n_examples = 0
        self.n_tokens = 0

    def update(self, a, b, batch) -> None:
        key_mask = self._key_mask(batch)
        sums_a = self._sums(a.attentions, batch, key_mask)
        sums_b = self._sums(b.attentions, batch, key_mask)
        self.sums_a = sums_a if self.sums_a is None else self.sums_a + sums_a
        self.sums_b = sums_b if self.sums_b is None else self.sums_b + sums_b
        self.n_examples += batch.size
        self.n_tokens = self.n_tokens + batch.attention_mask.sum()  # a device tensor: no host sync per batch

    def _key_mask(self, batch) -> torch.Tensor:
        """(batch, key) bool: the real keys whose share is measured; MetricError for an example with none."""
        real = batch.attention_mask != 0  # (batch, key)
        special = (batch.special_tokens_mask != 0) & real  # the mask marks padding too
        first = torch.zeros_like(real)
        first[:, 0] = True
        key_mask = {"special": special, "cls": first & real, "sep": special & ~first}[self.options.keys]
        # Without a key of the kind, an example's share would be 0 by absence, not by attention.
        empty = torch.nonzero(~key_mask.any(dim=-1)).flatten().tolist()
        if empty:
            raise probekit.MetricError(f"keys = {self.options.keys!r}: examples {empty} of the batch have no such "
                                       f"key: {NO_KEY_HINT[self.options.keys]}")
        return key_mask

    def _sums(self, attentions, batch, key_mask) -> torch.Tensor:
        """(layers, heads): the batch's sum over examples of the per-example share."""
        try:
            return torch.stack([attention_share_per_example(p, batch.attention_mask, key_mask).sum(0)
                                for p in attentions])
        except ValueError as error:  # an example with no real token, NaN maps
            raise probekit.MetricError(str(error)) from error

    @classmethod
    def pooled(cls, parts, weights) -> AttentionSpecial:
        used = [(part, w) for part, w in zip(parts, weights, strict=True) if w and part.n_examples]
        metric = copy.copy(parts[0])
        metric.sums_a = sum(w * part.sums_a for part, w in used)
        metric.sums_b = sum(w * part.sums_b for part, w in used)
        metric.n_examples = sum(w * part.n_examples for part, w in used)
        metric.n_tokens = sum(w * part.n_tokens for part, w in used)
        return metric

    def finalize(self) -> list[probekit.Row]:
        share_a = (self.sums_a / self.n_examples).cpu().tolist()
        share_b = (self.sums_b / self.n_examples).cpu().tolist()
        counts = dict(n_examples=self.n_examples, n_tokens=int(self.n_tokens))
        rows = []
        for layer, (heads_a, heads_b) in enumerate(zip(share_a, share_b), start=1):
            mean_a, mean_b = math.fsum(heads_a) / len(heads_a), math.fsum(heads_b) / len(heads_b)
            changes = [hb - ha for ha, hb in zip(heads_a, heads_b)]
            rows.append(probekit.Row(layer, math.fsum(changes) / len(changes), **counts,
                                     details={"share_a": mean_a, "share_b": mean_b}))
            rows.extend(probekit.Row(layer, hb - ha, head=head, **counts, details={"share_a": ha, "share_b": hb})
                        for head, (ha, hb) in enumerate(zip(heads_a, heads_b)))
        return rows


@probekit.hookimpl
def probekit_register_metrics(register):
    register(AttentionSpecial)
