"""Confidence intervals and permutation p-values for the metrics that can give them (docs/reference.md).

The random-groups bootstrap: a pass's examples are dealt at random into G groups
of (nearly) equal size, and each group feeds its own instance of the metric. The
point value pools every group once; replicate r pools group g with a Poisson(1)
weight (the Poisson bootstrap, drawn over groups rather than single examples, so
memory is G metric states however many replicates are drawn). The interval is the
basic (reverse-percentile) interval [2v - q_high, 2v - q_low] of the R replicate
values around the point value v: CCA-family and CKA estimates are biased by the
sample size, replicates (which repeat examples) are biased the same way once
more, and the basic interval corrects for that shift where the percentile
interval would double it.

The permutation null: P more instances see every batch with the pairing of the
two models' datapoints shuffled within the batch; the p-value is
(1 + #{null draws at least as close as the observed value}) / (1 + P).
"""
from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from probekit.metrics.base import Metric, MetricContext, MetricError, Row, supports_bootstrap


@dataclass(frozen=True)
class Resampling:
    """How a metric is resampled: ``replicates`` bootstrap draws (0: no interval) and ``permutations`` null draws."""

    replicates: int = 0
    confidence: float = 0.95
    groups: int = 32
    permutations: int = 0
    seed: int = 0

    def applies_to(self, metric_cls: type[Metric]) -> bool:
        return self.permutations > 0 or (self.replicates > 0 and supports_bootstrap(metric_cls))


class Resampled:
    """One metric of one comparison, fed like a metric; its rows carry ``ci_low``/``ci_high`` and ``p_value``.

    ``n_examples`` is how many examples the pass will feed, in order: the deal into
    groups is drawn for them up front, so it does not depend on how they are batched.
    """

    def __init__(self, metric_cls: type[Metric], options: Any, context: MetricContext, n_examples: int,
                 settings: Resampling) -> None:
        self.metric_cls = metric_cls
        self.details = metric_cls.details
        self.direction = metric_cls.direction_of(options)
        self.settings = settings
        bootstrap = settings.replicates > 0 and supports_bootstrap(metric_cls)
        count = max(1, min(settings.groups, n_examples)) if bootstrap else 1
        rng = np.random.default_rng(settings.seed)
        self.group_of = torch.from_numpy(rng.permutation(n_examples) % count)  # (n_examples,)
        self.weights = rng.poisson(1.0, size=(settings.replicates if bootstrap else 0, count))  # (R, G)
        self.groups = [metric_cls(options, context) for _ in range(count)]
        self.nulls = [metric_cls(options, context) for _ in range(settings.permutations)]
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.seen = 0
        self.notes: list[str] = []  # why an interval could not be given; the rows stand

    def update(self, a, b, batch) -> None:
        self.update_nulls(a, b, batch)
        groups = self.group_of[self.seen:self.seen + batch.size]  # (batch,)
        self.seen += batch.size
        if len(self.groups) == 1:
            self.groups[0].update(a, b, batch)
        else:
            for group in groups.unique().tolist():
                index = torch.nonzero(groups == group).flatten().to(batch.input_ids.device)
                self.groups[group].update(a.select(index), b.select(index), batch.select(index))

    def update_nulls(self, a, b, batch) -> None:
        """Only the permutation null's instances (the groups' state is taken from another metric)."""
        for null in self.nulls:
            null.update_permuted(a, b, batch, self.generator)

    def state_key(self) -> tuple | None:
        key = self.groups[0].state_key()
        return None if key is None else (key, len(self.groups), len(self.group_of), self.settings.seed)

    def take_state(self, other: Resampled) -> None:
        for mine, theirs in zip(self.groups, other.groups, strict=True):
            mine.take_state(theirs)

    def finalize(self, on_draw: Callable[[], None] = lambda: None) -> list[Row]:
        """The point rows, with an interval and a p-value where drawn; ``on_draw`` is called after each draw."""
        rows = self.groups[0].finalize() if len(self.groups) == 1 else \
            self.metric_cls.pooled(self.groups, [1] * len(self.groups)).finalize()
        replicates = (lambda w=weights: self.metric_cls.pooled(self.groups, w.tolist()).finalize()
                      for weights in self.weights if weights.any())
        if len(self.weights) and (draws := self._draws(replicates, on_draw, "a bootstrap replicate")):
            rows = self._with_intervals(rows, draws)
        if self.nulls and (draws := self._draws((n.finalize for n in self.nulls), on_draw, "a permutation")):
            rows = self._with_p_values(rows, draws)
        return rows

    @property
    def draws(self) -> int:
        """How many finalizations :meth:`finalize` runs beyond the point value (for progress)."""
        return len(self.weights) + len(self.nulls)

    def _with_intervals(self, rows: list[Row], draws: dict) -> list[Row]:
        level = self.settings.confidence
        quantiles = ((1 - level) / 2, (1 + level) / 2)
        bounds = {key: np.quantile(values, quantiles) for key, values in draws.items()}
        return [replace(row, ci_low=2 * row.value - float(bounds[key][1]), ci_high=2 * row.value - float(bounds[key][0]))
                if (key := _cell(row)) in bounds else row for row in rows]

    def _with_p_values(self, rows: list[Row], draws: dict) -> list[Row]:
        similarity = self.direction == "similarity"
        out = []
        for row in rows:
            null = np.asarray(draws.get(_cell(row), []))
            as_close = (null >= row.value) if similarity else (null <= row.value)
            out.append(replace(row, p_value=float((1 + as_close.sum()) / (1 + len(null)))) if len(null) else row)
        return out

    def _draws(self, finalizations, on_draw: Callable[[], None], what: str) -> dict[tuple, list[float]]:
        """Each row's cell (:func:`_cell`) -> its value in every draw; empty, with a note, when a draw cannot be measured.

        Warnings are silenced: the point value already gave every warning a draw would repeat.
        """
        values = defaultdict(list)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                for finalize in finalizations:
                    for row in finalize():
                        values[_cell(row)].append(row.value)
                    on_draw()
            except MetricError as error:
                self.notes.append(f"no {'p-value' if what == 'a permutation' else 'confidence interval'}: "
                                  f"{what} could not be measured ({error})")
                return {}
        return values


def _cell(row: Row) -> tuple[int, int | None, int | None]:
    """What identifies a row among a metric's rows: its layer, model b's layer (a cross-layer cell) and head."""
    return row.layer, row.layer_b, row.head
