"""Change in the share of attention on special tokens between two models (Clark et al. 2019, section 3.2).

Per layer l >= 1 and head h, each model's share is the mean over examples of the
mean over the example's real query tokens of sum_j p_ij over the real keys j that
``keys`` selects: "special" the batch's special tokens ([CLS], [SEP], BOS/EOS),
"cls" position 0, "sep" the special tokens after position 0. The value is model
b's share minus model a's (signed: > 0 when b attends more to them); the layer's
value is the mean over heads. ``share_a`` and ``share_b`` are on every row.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

import probekit
from probekit.functional import mean_over_rows, row_share

#: Why an example may have no key of the kind ``keys`` selects, and what to change.
NO_KEY_HINT = {
    "special": "the tokenizer adds no [CLS]/[SEP]/BOS/EOS; set keys = \"cls\" to measure attention to position 0",
    "cls": "position 0 is padding (left padding); pad on the right or set keys = \"special\"",
    "sep": "no special token follows position 0 (a tokenizer that adds only a BOS?); set keys = \"special\" or \"cls\"",
}


@dataclass(frozen=True)
class Options:
    keys: Literal["special", "cls", "sep"] = "special"  # which keys' share is measured


class AttentionSpecial(probekit.AttentionChange):
    name = "attention_special"
    description = "change in the share of attention on special tokens (b - a), per layer and head"
    unit = "share"
    statistic = "share"
    details = {"share_a": float, "share_b": float}
    Options = Options

    def batch_sums(self, a, b, batch):
        key_mask = self._key_mask(batch)
        return (self._sums(a, batch, key_mask), self._sums(b, batch, key_mask),
                batch.attention_mask.sum())

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

    def _sums(self, capture, batch, key_mask) -> torch.Tensor:
        """(layers, heads): the batch's sum over examples of the per-example share, a chunk of rows at a time."""
        try:
            return torch.stack([
                mean_over_rows(row_share(capture.rows(layer), batch.attention_mask, key_mask),
                               batch.attention_mask).sum(0)
                for layer in range(capture.attention_layers)])
        except ValueError as error:  # an example with no real token, NaN maps
            raise probekit.MetricError(str(error)) from error


@probekit.hookimpl
def probekit_register_metrics(register):
    register(AttentionSpecial)
