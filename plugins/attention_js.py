"""Jensen-Shannon divergence between two models' attention distributions (Hao et al. 2020, section 3).

Per layer l >= 1 and head h: the average over examples of the average over the
example's real query tokens of JS(A_a^h(i) || A_b^h(i)). The layer's value is the
mean over heads. Natural log by default (at most ln 2); ``base = 2`` gives bits.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

import probekit
from probekit.functional import mean_over_rows, query_rows, row_js


@dataclass(frozen=True)
class Options:
    base: float | None = None  # logarithm base; None = natural log (nats)
    exclude_special: bool = False  # skip [CLS]/[SEP] query rows (the paper counts them)
    exclude_first: bool = False  # skip each example's first real query row: a decoder's attention sink

    def __post_init__(self):
        if self.base is not None and (self.base <= 0 or self.base == 1):
            raise ValueError(f"base = {self.base} is not a logarithm base (expected > 0 and != 1)")


class AttentionJS(probekit.Metric):
    name = "attention_js"
    description = "JS divergence of attention distributions, per layer and head"
    needs = frozenset({"attention_rows"})
    direction = "distance"
    layers = "attentions"
    per_head = True
    estimator = "per-example means"
    interval = "percentile"  # a mean over examples: unbiased, no shift to correct
    value_range = (0.0, None)
    Options = Options

    def __init__(self, options: Options, context) -> None:
        super().__init__(options, context)
        self.sums = None  # (layers, heads) float64: sum over examples of per-example values
        self.n_examples = 0
        self.n_tokens = 0

    @classmethod
    def unit_of(cls, options: Options) -> str:
        return "nats" if options.base is None else "bits" if options.base == 2 else f"log base {options.base:g}"

    def update(self, a, b, batch) -> None:
        query_mask = query_rows(batch.attention_mask, batch.special_tokens_mask,
                                exclude_special=self.options.exclude_special, exclude_first=self.options.exclude_first)
        if a.attention_layers != b.attention_layers:
            raise probekit.MetricError(f"the models have {a.attention_layers} and {b.attention_layers} attention layers")
        scale = 1.0 if self.options.base is None else math.log(self.options.base)
        try:  # both models' rows a chunk at a time: never a whole map of either
            per_layer = [
                mean_over_rows(row_js(a.rows(layer), b.rows(layer), batch.attention_mask), batch.attention_mask,
                               query_mask).sum(0) / scale
                for layer in range(a.attention_layers)
            ]
        except ValueError as error:  # no query token left (exclude_special on [CLS] x [SEP]), NaN maps
            raise probekit.MetricError(str(error)) from error
        sums = torch.stack(per_layer)
        self.sums = sums if self.sums is None else self.sums + sums
        self.n_examples += batch.size
        self.n_tokens = self.n_tokens + query_mask.sum()  # a device tensor: no host sync per batch

    @classmethod
    def pooled(cls, parts, weights) -> AttentionJS:
        used = [(part, w) for part, w in zip(parts, weights, strict=True) if w and part.n_examples]
        metric = copy.copy(parts[0])
        metric.sums = sum(w * part.sums for part, w in used)
        metric.n_examples = sum(w * part.n_examples for part, w in used)
        metric.n_tokens = sum(w * part.n_tokens for part, w in used)
        return metric

    def finalize(self) -> list[probekit.Row]:
        per_head = (self.sums / self.n_examples).cpu().tolist()
        rows = []
        for layer, heads in enumerate(per_head, start=1):
            counts = dict(n_examples=self.n_examples, n_tokens=int(self.n_tokens))
            rows.append(probekit.Row(layer, math.fsum(heads) / len(heads), **counts))
            rows.extend(probekit.Row(layer, value, head=head, **counts) for head, value in enumerate(heads))
        return rows


@probekit.hookimpl
def probekit_register_metrics(register):
    register(AttentionJS)
