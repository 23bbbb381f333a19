"""Checking expectations against a results table: one :class:`Outcome` per expectation.

Evaluation needs only the table (and its metadata), never a model. Each expectation kind
(:mod:`probekit.expect.kinds`) judges itself through :meth:`Expectation.evaluate`; this module
holds what every kind shares: the outcome, the run's values (:class:`RunView`), the selection
of a comparison's layers, and the wording of numbers.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from probekit.results.io import metadata
from probekit.results.layers import (
    LayerSelection,
    format_layers,
    interval_index,
    layer_word,
    series_index,
)



class Expectation(Protocol):
    """What judging and its report need of an expectation (expect/kinds.py's Expectation implements it): named
    here, not imported from kinds, which imports this module: no import cycle, even for annotations."""

    name: str
    key: str

    def describe(self) -> str: ...

    def keywords(self) -> set[str]: ...

    def evaluate(self, run: RunView) -> Outcome: ...


@dataclass
class Outcome:
    """The verdict on one expectation.

    ``values``: comparison -> layer -> value of the layers involved; ``offending``:
    the (comparison, layer) pairs that break it; ``expected``: per (comparison,
    layer), what was expected there, in words; ``notes``: lines under the table
    (means, ratios); ``groups``: a label per (comparison, layer) for contrasts.
    """

    expectation: Expectation
    passed: bool
    reason: str
    values: dict[str, dict[int, float]] = field(default_factory=dict)
    offending: set[tuple[str, int]] = field(default_factory=set)
    expected: dict[tuple[str, int], str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    groups: dict[tuple[str, int], str] = field(default_factory=dict)
    # learned: model -> {"accuracy", "majority", "chance", "needed"} (None where the results lack it)
    accuracies: dict[str, dict[str, float | None]] = field(default_factory=dict)
    offending_models: set[str] = field(default_factory=set)
    # with ``confidence``: (comparison, layer) -> the interval the check used
    intervals: dict[tuple[str, int], tuple[float, float]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.expectation.name

    def table(self) -> str:
        """The involved layers' values as a small text table, offending layers marked."""
        return format_table(self)

    def failure_text(self, run_dir: str | Path | None = None, where: str | None = None) -> str:
        """What a failed check shows: the reason, what was expected, the table, where the run is."""
        expectation = self.expectation
        about = f"{where}: " if where else ""
        lines = [self.reason, f"expectation: {about}{expectation.describe()}", "",
                 *_indent(self.table()), *[f"  {note}" for note in self.notes]]
        if run_dir is not None:
            lines += ["", f"run folder: {run_dir}"]
        return "\n".join(lines)


def format_table(outcome: Outcome) -> str:
    """comparison | layer | value | expected, one line per involved layer; '<-- fails' marks offenders."""
    if outcome.accuracies:
        return _accuracy_table(outcome)
    if not outcome.values:
        return "(no values: " + outcome.reason + ")"
    with_groups = bool(outcome.groups)
    header = ["comparison", "layer", *(["group"] if with_groups else []), "value", "expected", ""]
    rows = []
    for comparison, values in outcome.values.items():
        for layer in sorted(values):
            key = (comparison, layer)
            value = values[layer]
            shown = "nan" if value is None else f"{value:.6g}"
            if key in outcome.intervals:
                shown += " [{:.4g}, {:.4g}]".format(*outcome.intervals[key])
            rows.append([
                comparison, str(layer), *([outcome.groups.get(key, "")] if with_groups else []),
                shown, outcome.expected.get(key, ""),
                "<-- fails" if key in outcome.offending else "",
            ])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    right = {1, 3 if with_groups else 2}

    def line(cells) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


def _accuracy_table(outcome: Outcome) -> str:
    """model | accuracy | majority | chance | needed, for a ``learned`` expectation."""
    def percent(value: float | None) -> str:
        return "?" if value is None else f"{value:.1%}"

    header = ["model", "accuracy", "majority", "chance", "needed", ""]
    rows = [[name, *(percent(info.get(k)) for k in ("accuracy", "majority", "chance")), f"> {percent(info.get('needed'))}",
             "<-- fails" if name in outcome.offending_models else ""] for name, info in outcome.accuracies.items()]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) if i in (0, 5) else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
                     for r in [header, *rows])


def _indent(text: str) -> list[str]:
    return [f"  {line}" if line else line for line in text.splitlines()]


def evaluate(expectations: Iterable[Expectation], table: pa.Table) -> list[Outcome]:
    """Check each expectation against a results table.

    Missing data (a metric that failed, a layer beyond the model, a head that
    does not exist) make the expectation fail with that reason, never pass.
    """
    meta = metadata(table)
    run = RunView(index=series_index(table), errors=run_events(meta, "error"),
                  directions={label: info.get("direction", "distance") for label, info in (meta.get("metrics") or {}).items()},
                  models=dict(meta.get("models") or {}), intervals=interval_index(table))
    outcomes = []
    for expectation in expectations:
        try:
            outcomes.append(expectation.evaluate(run))
        except Missing as missing:
            outcomes.append(Outcome(expectation, False, str(missing)))
    return outcomes


def run_events(meta: dict, kind: str) -> list[dict[str, Any]]:
    """The run's events of one kind ("error", "failure", "note") as records: comparison, metric, kind, message."""
    return [event for event in meta.get("events") or [] if isinstance(event, dict) and event.get("kind") == kind]


@dataclass(frozen=True)
class RunView:
    """What a kind's evaluation reads from a run: the values, failed metrics, which way each metric points,
    the fine-tuned models' accuracies and the bootstrap intervals."""

    index: dict  # (comparison, metric, head) -> {layer: value}
    errors: list[dict[str, Any]] = field(default_factory=list)  # the run's error events
    directions: dict[str, str] = field(default_factory=dict)
    models: dict[str, dict] = field(default_factory=dict)  # the results' ``models`` metadata
    intervals: dict = field(default_factory=dict)  # (comparison, metric, head) -> {layer: (ci_low, ci_high)}

    def is_similarity(self, metric: str) -> bool:
        return self.directions.get(metric) == "similarity"

    def spans(self, expectation: Any, comparison: str, values: dict[int, float],
              outcome: Outcome) -> dict[int, tuple[float, float]]:
        """layer -> (low, high): the bootstrap interval with ``confidence``, else (value, value)."""
        if getattr(expectation, "confidence", None) is None:
            return {layer: (value, value) for layer, value in values.items()}
        known = self.intervals.get((comparison, expectation.metric, expectation.head), {})
        missing = [layer for layer in values if layer not in known]
        if missing:
            raise Missing(f"{comparison}: no confidence interval for {layer_word(missing)} of {expectation.metric} "
                          "(the results have none there: see the run's warnings)")
        outcome.intervals.update({(comparison, layer): known[layer] for layer in values})
        return {layer: known[layer] for layer in values}

    def series(self, comparison: str, metric: str, head: int | None) -> dict[int, float]:
        """layer -> value of one comparison's metric; :class:`Missing` saying why there is none."""
        series = self.index.get((comparison, metric, head))
        if series:
            return series
        what = f"{metric}" + (f" head {head}" if head is not None else "")
        failed = [e for e in self.errors if e.get("comparison") == comparison and e.get("metric") == metric]
        if failed:
            raise Missing(f"no {what} results for {comparison}: the metric failed ({failed[0].get('message', '')})")
        if head is not None and self.index.get((comparison, metric, None)):
            heads = sorted(h for (c, m, h) in self.index if c == comparison and m == metric and h is not None)
            raise Missing(f"no {what} results for {comparison}: "
                          + (f"the heads are {format_layers(heads)}" if heads else f"{metric} has no per-head values"))
        there = sorted({c for c, m, _ in self.index if m == metric})
        raise Missing(f"no {what} results for {comparison} in the results table"
                      + (f" (it has {metric} for {', '.join(there)})" if there else f" (it has no {metric} rows)"))


class Missing(Exception):
    """The results lack what an expectation needs; the message says what."""


def select(series: dict[int, float], selection: LayerSelection, comparison: str, metric: str) -> dict[int, float]:
    """The selected layers' values of one comparison; :class:`Missing` when the results lack some."""
    layers, missing = selection.resolve(series)
    have = format_layers(series)
    if missing:
        if isinstance(missing, str):
            raise Missing(f"{comparison}: {missing} ({metric} has layers {have})")
        raise Missing(f"{comparison}: {layer_word(missing)} not in the results ({metric} has layers {have}; "
                      "is the model smaller than the spec assumes?)")
    if not layers:
        raise Missing(f"{comparison}: layers {selection} select nothing ({metric} has layers {have})")
    return {layer: series[layer] for layer in layers}


def fmt(value: float) -> str:
    """A value as the verdicts print it: 4 significant digits, scientific below 1e-3."""
    return f"{value:.4g}" if value is not None and math.isfinite(value) and (abs(value) >= 1e-3 or value == 0) else f"{value:.3e}"


def concluded(outcome: Outcome, failures: list[str], summaries: list[str]) -> Outcome:
    """The outcome passes when nothing failed; its reason lists the failures, else what held."""
    outcome.passed = not failures
    outcome.reason = "; ".join(failures or summaries)
    return outcome


def mean_of(spans: dict[int, tuple[float, float]]) -> tuple[float, float]:
    """The mean of the lows and the mean of the highs: a conservative interval of the mean of the layers."""
    return (math.fsum(low for low, _ in spans.values()) / len(spans),
            math.fsum(high for _, high in spans.values()) / len(spans))


def mean_span(spans: dict[int, tuple[float, float]]) -> str:
    low, high = mean_of(spans)
    return "" if low == high else f" [{fmt(low)}, {fmt(high)}]"
