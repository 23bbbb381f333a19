"""Confidence intervals and permutation p-values for the metrics that can give them (docs/reference.md).

The random-groups bootstrap: a pass's examples are dealt at random into G groups
of (nearly) equal size, and each group feeds its own instance of the metric. The
point value pools every group once; replicate r pools group g with a Poisson(1)
weight (the Poisson bootstrap, drawn over groups rather than single examples, so
memory is G metric states however many replicates are drawn). The interval is the
metric's ``interval``: the basic (reverse-percentile) interval [2v - q_high, 2v - q_low]
of the R replicate values around the point value v for the moment metrics
(CCA-family and CKA estimates are biased by the sample size, replicates, which
repeat examples, are biased the same way once more, and the basic interval corrects
for that shift where the percentile interval would double it), the percentile
interval [q_low, q_high] for means over examples; either clipped to the metric's
``value_range``. Each row records the bootstrap bias (mean of the replicates minus
v), and a value outside its own interval, or fewer than FEW_GROUPS groups, is noted.
Replicates are drawn a few at a time through ``Metric.replicates`` (the moment
metrics pool and decompose them in bulk), every metric of a pass in turn
(:func:`draw_together`), so a covariance that recurs across comparisons is
decomposed once.

The permutation null: P more instances see every batch with the pairing of the
two models' datapoints shuffled within the batch; the p-value is
(1 + #{null draws at least as close as the observed value}) / (1 + P).
"""
from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from probekit.metrics.base import Metric, MetricContext, MetricError, Row, supports_bootstrap
from probekit.metrics.per_example import is_per_example


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
        self.interval = metric_cls.interval
        self.value_range = metric_cls.range_of(options)
        self.settings = settings
        bootstrap = settings.replicates > 0 and supports_bootstrap(metric_cls)
        # Per-example state is resampled by example index at the end: one instance, no groups.
        self.per_example = is_per_example(metric_cls)
        count = max(1, min(settings.groups, n_examples)) if bootstrap and not self.per_example else 1
        rng = np.random.default_rng(settings.seed)
        self.rng = rng
        self.group_of = torch.from_numpy(rng.permutation(n_examples) % count)  # (n_examples,)
        self.weights = rng.poisson(1.0, size=(settings.replicates if bootstrap else 0, count))  # (R, G)
        self.groups = [metric_cls(options, context) for _ in range(count)]
        self.nulls = [metric_cls(options, context) for _ in range(settings.permutations)]
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.seen = 0
        self.notes: list[str] = []  # why an interval could not be given; the rows stand
        self.drawn = 0  # bootstrap replicates drawn so far (rows of weights)
        self.replicate_values: dict[tuple, list[float]] | None = defaultdict(list)  # None: no interval
        self.failure: Exception | None = None
        if bootstrap and not self.per_example and count < FEW_GROUPS:
            self.notes.append(f"the interval resamples only {count} groups of examples (bootstrap_groups = {settings.groups}, "
                              f"{n_examples} examples); below {FEW_GROUPS} groups the bootstrap's quantiles are noisy")

    def update(self, a, b, batch) -> None:
        self.update_nulls(a, b, batch)
        groups = self.group_of[self.seen:self.seen + batch.size]  # (batch,)
        self.seen += batch.size
        if len(self.groups) == 1:
            self.groups[0].update(a, b, batch)
        else:
            for group in groups.unique().tolist():
                index = torch.nonzero(groups == group).flatten().to(batch.input_ids.device)
                # Every comparison of the pass deals the batch alike: one selection (and its sums) per model and group.
                key = ("probekit.group", tuple(index.tolist()))
                self.groups[group].update(a.derived(key, lambda c=a: c.select(index)),
                                          b.derived(key, lambda c=b: c.select(index)), batch.select(index))

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
        while self.drawn < len(self.weights):
            self.draw_replicates(REPLICATES_AT_ONCE, on_draw)
        if self.failure is not None:
            raise self.failure
        if len(self.weights) and self.replicate_values:
            rows = self._with_intervals(rows, self.replicate_values)
        if self.nulls and (draws := self._draws((n.finalize for n in self.nulls), on_draw, "a permutation")):
            rows = self._with_p_values(rows, draws)
        return rows

    def draw_replicates(self, count: int, on_draw: Callable[[], None] = lambda: None) -> None:
        """Draw the next ``count`` bootstrap replicates (``Metric.replicates``, all at once), kept for :meth:`finalize`.

        After a replicate that cannot be measured (MetricError) no more are drawn and the rows get no interval
        (a note says why); any other exception is kept and raised by :meth:`finalize`.
        """
        chunk = self.weights[self.drawn:self.drawn + count]
        self.drawn += len(chunk)
        if self.failure is not None or self.replicate_values is None:
            return
        if not self.per_example:
            chunk = chunk[chunk.any(axis=1)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the point value already gave every warning a draw would repeat
            try:
                drawn = [self._drawn_by_index() for _ in chunk] if self.per_example else \
                    self.metric_cls.replicates(self.groups, chunk) if len(chunk) else []
            except MetricError as error:
                self.notes.append(f"no confidence interval: a bootstrap replicate could not be measured ({error})")
                self.replicate_values = None
                return
            except Exception as error:  # noqa: BLE001 - a plugin bug, raised where the engine guards finalize
                self.failure = error
                return
        for rows in drawn:
            for row in rows:
                self.replicate_values[_cell(row)].append(row.value)
            on_draw()

    def _drawn_by_index(self) -> list[Row]:
        """One replicate of a per-example metric: its examples drawn by index as its ``resampling`` says."""
        metric = self.groups[0]
        n, m, replace_ = self._sample_size()
        index = self.rng.integers(0, n, n) if replace_ else np.sort(self.rng.choice(n, m, replace=False))
        return metric.finalize_on(torch.from_numpy(index))

    def _sample_size(self) -> tuple[int, int, bool]:
        """n examples, m drawn per replicate, with replacement or not (the metric's ``resampling``)."""
        n, how = self.groups[0].n_examples, self.metric_cls.resampling
        if how is None or how.replace:
            return n, n, True
        return n, max(2, round(how.fraction * n)), False

    @property
    def scale(self) -> float:
        """What turns the replicates' spread into an interval for n examples: sqrt(m / n) for m of n drawn
        without replacement (the spread of m-example values is that much wider), else 1."""
        if not self.per_example:
            return 1.0
        n, m, _ = self._sample_size()
        return math.sqrt(m / n)

    @property
    def draws(self) -> int:
        """How many finalizations :meth:`finalize` has still to run beyond the point value (for progress)."""
        return len(self.weights) - self.drawn + len(self.nulls)

    def _with_intervals(self, rows: list[Row], draws: dict) -> list[Row]:
        """Each row with its interval (the metric's ``interval`` method, clipped to its range) and bias estimate;
        a note for each value that falls outside its own interval.

        With s = :attr:`scale`: basic [v - s (q_high - v), v - s (q_low - v)], percentile
        [v - s (v - q_low), v + s (q_high - v)] (s = 1: [2v - q_high, 2v - q_low] and [q_low, q_high]).
        """
        level = self.settings.confidence
        quantiles = ((1 - level) / 2, (1 + level) / 2)
        lowest, highest = self.value_range
        scale = self.scale
        out = []
        for row in rows:
            values = draws.get(_cell(row))
            if not values:
                out.append(row)
                continue
            q_low, q_high = (float(q) for q in np.quantile(values, quantiles))
            v = row.value
            low, high = (v - scale * (v - q_low), v + scale * (q_high - v)) if self.interval == "percentile" else \
                (v - scale * (q_high - v), v - scale * (q_low - v))
            low, high = max(low, lowest) if lowest is not None else low, min(high, highest) if highest is not None else high
            bias = float(np.mean(values)) - row.value
            if not low <= row.value <= high:
                self.notes.append(f"{_where(row)}: the value {row.value:.4g} lies outside its interval [{low:.4g}, {high:.4g}]"
                                  f" (bootstrap bias {bias:+.2g}: the estimate is biased at this sample size; more "
                                  "datapoints per neuron shrink it)")
            out.append(replace(row, ci_low=low, ci_high=high, ci_bias=bias))
        return out

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


#: Fewer groups than this make the bootstrap's quantiles noisy (docs/reference.md): a note says so.
FEW_GROUPS = 20

#: Bootstrap replicates a metric draws at once: what ``Metric.replicates`` holds is this many pooled states of a layer.
REPLICATES_AT_ONCE = 4


def draw_together(metrics: list[Resampled], on_draw: Callable[[], None] = lambda: None) -> None:
    """Draw the bootstrap replicates of several metrics in turn, a few replicates of each at a time.

    Comparisons of one pass share the deal into groups and the replicate weights, so replicate r of a
    model's covariance is the same matrix in every comparison (and metric) that holds the model: drawn in
    turn, it is decomposed once while it is remembered (``functional.decompose_together``).
    """
    while any(metric.drawn < len(metric.weights) for metric in metrics):
        for metric in metrics:
            metric.draw_replicates(REPLICATES_AT_ONCE, on_draw)


def _where(row: Row) -> str:
    """The row's place in words: layer (and model b's layer, head)."""
    return f"layer {row.layer}" + (f" x layer_b {row.layer_b}" if row.layer_b is not None else "") + \
        (f" head {row.head}" if row.head is not None else "")


def _cell(row: Row) -> tuple[int, int | None, int | None]:
    """What identifies a row among a metric's rows: its layer, model b's layer (a cross-layer cell) and head."""
    return row.layer, row.layer_b, row.head
