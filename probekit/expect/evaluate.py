"""Checking expectations against a results table: one :class:`Outcome` per expectation.

Evaluation needs only the table (and its metadata), never a model.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from probekit.results.io import metadata
from probekit.results.layers import (
    LayerSelection,
    format_layers,
    interval_index,
    layer_word,
    series_index,
    trend_limits,
    trend_statistics,
)
from probekit.spec.expectations import LEARNED_MARGIN, Expectation


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
    index = series_index(table)
    meta = metadata(table)
    run = _Run(errors=[str(e) for e in meta.get("errors", []) or []],
               directions={label: info.get("direction", "distance") for label, info in (meta.get("metrics") or {}).items()},
               models=dict(meta.get("models") or {}), intervals=interval_index(table))
    return [_evaluate_one(expectation, index, run) for expectation in expectations]


@dataclass(frozen=True)
class _Run:
    """What the checks need from the run besides the values: failed metrics and which way each metric points."""

    errors: list[str]
    directions: dict[str, str]
    models: dict[str, dict] = field(default_factory=dict)  # the results' ``models`` metadata
    intervals: dict = field(default_factory=dict)  # (comparison, metric, head) -> {layer: (ci_low, ci_high)}

    def is_similarity(self, metric: str) -> bool:
        return self.directions.get(metric) == "similarity"

    def spans(self, expectation: Expectation, comparison: str, values: dict[int, float],
              outcome: Outcome) -> dict[int, tuple[float, float]]:
        """layer -> (low, high): the bootstrap interval with ``confidence``, else (value, value)."""
        if expectation.confidence is None:
            return {layer: (value, value) for layer, value in values.items()}
        known = self.intervals.get((comparison, expectation.metric, expectation.head), {})
        missing = [layer for layer in values if layer not in known]
        if missing:
            raise _Missing(f"{comparison}: no confidence interval for {layer_word(missing)} of {expectation.metric} "
                           "(the results have none there: see the run's warnings)")
        outcome.intervals.update({(comparison, layer): known[layer] for layer in values})
        return {layer: known[layer] for layer in values}


class _Missing(Exception):
    """The results lack what an expectation needs; the message says what."""


def _series(index, errors, comparison: str, expectation: Expectation) -> dict[int, float]:
    head = expectation.head
    series = index.get((comparison, expectation.metric, head))
    if series:
        return series
    what = f"{expectation.metric}" + (f" head {head}" if head is not None else "")
    failed = [e for e in errors if e.startswith(f"{comparison} / {expectation.metric}:")]
    if failed:
        raise _Missing(f"no {what} results for {comparison}: the metric failed ({failed[0].split(':', 1)[1].strip()})")
    if head is not None and index.get((comparison, expectation.metric, None)):
        heads = sorted(h for (c, m, h) in index if c == comparison and m == expectation.metric and h is not None)
        raise _Missing(f"no {what} results for {comparison}: "
                       + (f"the heads are {format_layers(heads)}" if heads else f"{expectation.metric} has no per-head values"))
    there = sorted({c for c, m, _ in index if m == expectation.metric})
    raise _Missing(f"no {what} results for {comparison} in the results table"
                   + (f" (it has {expectation.metric} for {', '.join(there)})" if there else f" (it has no {expectation.metric} rows)"))


def _select(series: dict[int, float], selection: LayerSelection, comparison: str, metric: str) -> dict[int, float]:
    layers, missing = selection.resolve(series)
    have = format_layers(series)
    if missing:
        if isinstance(missing, str):
            raise _Missing(f"{comparison}: {missing} ({metric} has layers {have})")
        raise _Missing(f"{comparison}: {layer_word(missing)} not in the results ({metric} has layers {have}; "
                       "is the model smaller than the spec assumes?)")
    if not layers:
        raise _Missing(f"{comparison}: layers {selection} select nothing ({metric} has layers {have})")
    return {layer: series[layer] for layer in layers}


def _evaluate_one(expectation: Expectation, index, run: _Run) -> Outcome:
    try:
        selected = {}
        for comparison in expectation.comparisons:
            selected[comparison] = _select(_series(index, run.errors, comparison, expectation), expectation.layers, comparison,
                                           expectation.metric)
        for comparison, values in selected.items():
            bad = [layer for layer, value in values.items() if value is None or not math.isfinite(value)]
            if bad:
                outcome = Outcome(expectation, False, f"{comparison}: {layer_word(bad)} {'is' if len(bad) == 1 else 'are'} "
                                  f"not a number ({', '.join(repr(values[b]) for b in bad)})", values=selected)
                outcome.offending = {(comparison, b) for b in bad}
                return outcome
        return CHECKS[expectation.kind](expectation, selected, index, run)
    except _Missing as missing:
        return Outcome(expectation, False, str(missing))


def _fmt(value: float) -> str:
    return f"{value:.4g}" if value is not None and math.isfinite(value) and (abs(value) >= 1e-3 or value == 0) else f"{value:.3e}"


def _where(comparison: str, expectation: Expectation, layers) -> str:
    multi = len(expectation.comparisons) > 1
    return (f"{comparison} " if multi else "") + layer_word(layers)


def _concluded(outcome: Outcome, failures: list[str], summaries: list[str]) -> Outcome:
    """The outcome passes when nothing failed; its reason lists the failures, else what held."""
    outcome.passed = not failures
    outcome.reason = "; ".join(failures or summaries)
    return outcome


def _check_bounds(expectation: Expectation, selected, index, run: _Run) -> Outcome:
    def ok(span: tuple[float, float]) -> bool:
        low, high = span
        return (expectation.below is None or high < expectation.below) and (expectation.above is None or low > expectation.above)

    bound = " and ".join(([f"> {expectation.above:g}"] if expectation.above is not None else [])
                         + ([f"< {expectation.below:g}"] if expectation.below is not None else []))
    words = expectation.assertion.removeprefix("each ").removeprefix("mean ")
    outcome = Outcome(expectation, True, "", values=selected)
    failures, summaries = [], []
    for comparison, values in selected.items():
        where = _where(comparison, expectation, values)
        spans = run.spans(expectation, comparison, values, outcome)
        if expectation.of == "mean":
            mean = math.fsum(values.values()) / len(values)
            outcome.notes.append(f"mean of {where}: {_fmt(mean)}{_mean_span(spans)} (expected {bound})")
            if not ok(_mean_of(spans)):
                outcome.offending.update((comparison, layer) for layer in values)
                failures.append(f"mean of {where} is {_fmt(mean)}, expected {words}")
            else:
                summaries.append(f"mean of {where} is {_fmt(mean)}, {words}")
        else:
            for layer in values:
                outcome.expected[(comparison, layer)] = bound
            bad = [layer for layer in values if not ok(spans[layer])]
            outcome.offending.update((comparison, layer) for layer in bad)
            if bad:
                shown = ", ".join(f"layer {layer}: {_fmt(values[layer])}{_span_text(expectation, spans[layer])}"
                                  for layer in bad[:4]) + (", ..." if len(bad) > 4 else "")
                failures.append(f"{where}: {len(bad)} of {len(values)} not {words} ({shown})")
            else:
                lo, hi = min(values.values()), max(values.values())
                summaries.append(f"{where} all {words} (range {_fmt(lo)} .. {_fmt(hi)})")
    return _concluded(outcome, failures, summaries)



def _mean_of(spans: dict[int, tuple[float, float]]) -> tuple[float, float]:
    """The mean of the lows and the mean of the highs: a conservative interval of the mean of the layers."""
    return (math.fsum(low for low, _ in spans.values()) / len(spans),
            math.fsum(high for _, high in spans.values()) / len(spans))


def _mean_span(spans: dict[int, tuple[float, float]]) -> str:
    low, high = _mean_of(spans)
    return "" if low == high else f" [{_fmt(low)}, {_fmt(high)}]"


def _span_text(expectation: Expectation, span: tuple[float, float]) -> str:
    return "" if expectation.confidence is None else f" (interval {_fmt(span[0])} .. {_fmt(span[1])})"


def _check_trend(expectation: Expectation, selected, index, run: _Run) -> Outcome:
    if expectation.spearman is not None or expectation.violations is not None:
        return _check_trend_statistics(expectation, selected)
    increasing = expectation.trend == "increasing"
    tolerance = expectation.tolerance
    outcome = Outcome(expectation, True, "", values=selected)
    failures, summaries = [], []
    for comparison, values in selected.items():
        layers = sorted(values)
        where = _where(comparison, expectation, layers)
        if len(layers) < 2:
            failures.append(f"{where}: a trend needs at least 2 layers; the selection has {len(layers)}")
            continue
        limits = trend_limits(values, increasing, tolerance)
        worst = None  # (layer, earlier layer, dip)
        for layer, (limit, earlier) in limits.items():
            outcome.expected[(comparison, layer)] = f"{'>=' if increasing else '<='} {limit:.6g}"
            dip = (limit - values[layer]) if increasing else (values[layer] - limit)
            if dip > 0:
                outcome.offending.add((comparison, layer))
                if worst is None or dip > worst[2]:
                    worst = (layer, earlier, dip + tolerance)
        if worst is not None:
            layer, earlier, dip = worst
            bad = sorted(l for c, l in outcome.offending if c == comparison)
            direction = "below" if increasing else "above"
            verb = ("dips" if increasing else "rises") if len(bad) == 1 else ("dip" if increasing else "rise")
            failures.append(f"{where} not {expectation.trend}: {layer_word(bad)} {verb} "
                            f"{direction} an earlier layer by more than the tolerance {tolerance:g} "
                            f"(worst: layer {layer} = {_fmt(values[layer])} vs layer {earlier} = {_fmt(values[earlier])})")
        else:
            summaries.append(f"{where} {expectation.trend} ({_fmt(values[layers[0]])} .. {_fmt(values[layers[-1]])})")
    return _concluded(outcome, failures, summaries)


def _check_trend_statistics(expectation: Expectation, selected) -> Outcome:
    """The Spearman correlation of value with depth, and the share of layer pairs in the wrong order."""
    increasing = expectation.trend == "increasing"
    outcome = Outcome(expectation, True, "", values=selected)
    failures, summaries = [], []
    for comparison, values in selected.items():
        where = _where(comparison, expectation, sorted(values))
        rho, wrong = trend_statistics(values, increasing)
        text = f"{where}: Spearman {rho:.3f} with depth ({expectation.trend}), {wrong:.0%} of layer pairs in the wrong order"
        outcome.notes.append(text)
        short = [] if expectation.spearman is None or rho >= expectation.spearman else [f"Spearman below {expectation.spearman:g}"]
        if expectation.violations is not None and wrong > expectation.violations:
            short.append(f"more than {expectation.violations:.0%} of pairs in the wrong order")
        if math.isnan(rho) and expectation.spearman is not None:
            short = ["no Spearman correlation: every selected value is the same"]
        if short:
            outcome.offending.update((comparison, layer) for layer in values)
            failures.append(f"{text}; expected {expectation.assertion} ({'; '.join(short)})")
        else:
            summaries.append(text)
    return _concluded(outcome, failures, summaries)


def _check_contrast(expectation: Expectation, selected, index, run: _Run) -> Outcome:
    outcome = Outcome(expectation, True, "", values={})
    failures, summaries = [], []
    for comparison, high in selected.items():
        low = _select(_series(index, run.errors, comparison, expectation), expectation.low, comparison, expectation.metric)
        outcome.values[comparison] = dict(sorted({**low, **high}.items()))
        for layer in low:
            outcome.groups[(comparison, layer)] = "low"
        for layer in high:
            outcome.groups[(comparison, layer)] = "high" if layer not in low else "high+low"
        # A contrast compares how much layers changed: a distance's value, a similarity's 1 - value; with
        # confidence, the high layers' least change against the low layers' most.
        similarity = run.is_similarity(expectation.metric)
        change = (lambda v: 1.0 - v) if similarity else (lambda v: v)
        high_spans = run.spans(expectation, comparison, high, outcome)
        low_spans = run.spans(expectation, comparison, low, outcome)
        high_mean = math.fsum(change(high_spans[l][1] if similarity else high_spans[l][0]) for l in high) / len(high)
        low_mean = math.fsum(change(low_spans[l][0] if similarity else low_spans[l][1]) for l in low) / len(low)
        needed = max(([expectation.factor * low_mean] if expectation.factor is not None else [])
                     + ([low_mean + expectation.margin] if expectation.margin is not None else []))
        ratio = f", {high_mean / low_mean:.2f}x" if low_mean > 0 else ""
        where = f"{comparison} " if len(selected) > 1 else ""
        what = "change (1 - value)" if similarity else "mean"
        least, most = ("the interval's least ", "the interval's most ") if expectation.confidence else ("", "")
        text = (f"{where}{least}{what} of {layer_word(high)} = {_fmt(high_mean)} vs {most}{what} of "
                f"{layer_word(low)} = {_fmt(low_mean)}{ratio}")
        outcome.notes.append(f"{where}high mean {_fmt(high_mean)}, low mean {_fmt(low_mean)}{ratio}; "
                             f"needed high mean >= {_fmt(needed)}")
        if high_mean >= needed:
            summaries.append(text)
        else:
            outcome.offending.update((comparison, layer) for layer in high)
            failures.append(f"{text}; expected at least {_fmt(needed)} ({expectation.assertion.removeprefix('mean ')})")
    return _concluded(outcome, failures, summaries)


def _other_values(other_name: str, other_series: dict[int, float], values: dict[int, float],
                  expectation: Expectation, outcome: Outcome) -> dict[int, float]:
    """The other comparison's values on the layers of ``values``, added to the outcome's table."""
    missing = [layer for layer in values if layer not in other_series]
    if missing:
        raise _Missing(f"{other_name}: {layer_word(missing)} not in the results "
                       f"({expectation.metric} has layers {format_layers(other_series)})")
    theirs = {layer: other_series[layer] for layer in values}
    outcome.values[other_name] = {**outcome.values.get(other_name, {}), **theirs}
    return theirs


def _check_ordering(expectation: Expectation, selected, index, run: _Run) -> Outcome:
    other_name = expectation.other
    # "closer" is a lower distance but a higher similarity.
    lower = (expectation.relation == "closer") != run.is_similarity(expectation.metric)
    margin = expectation.margin or 0.0
    other_series = _series(index, run.errors, other_name, expectation)
    outcome = Outcome(expectation, True, "", values=dict(selected))
    failures, summaries = [], []
    sign = "<" if lower else ">"

    def ok(mine: tuple[float, float], theirs: tuple[float, float]) -> bool:
        """With confidence the intervals must not overlap: the whole of mine on the right side of theirs."""
        return mine[1] < theirs[0] - margin if lower else mine[0] > theirs[1] + margin

    for comparison, values in selected.items():
        layers = list(values)
        theirs = _other_values(other_name, other_series, values, expectation, outcome)
        mine_spans = run.spans(expectation, comparison, values, outcome)
        their_spans = run.spans(expectation, other_name, theirs, outcome)
        bound = f" {'-' if lower else '+'} {margin:g}" if margin else ""
        if expectation.of == "mean":
            mine_mean = math.fsum(values.values()) / len(values)
            their_mean = math.fsum(theirs.values()) / len(theirs)
            text = (f"mean of {comparison} {layer_word(layers)} = {_fmt(mine_mean)}{_mean_span(mine_spans)} vs "
                    f"{other_name} {_fmt(their_mean)}{_mean_span(their_spans)}")
            outcome.notes.append(f"{text} (expected {sign} {_fmt(their_mean)}{bound})")
            if ok(_mean_of(mine_spans), _mean_of(their_spans)):
                summaries.append(text)
            else:
                outcome.offending.update((comparison, layer) for layer in layers)
                failures.append(f"{text}; expected {expectation.relation}"
                                + (" with intervals apart" if expectation.confidence else ""))
            continue
        for layer in layers:
            outcome.expected[(comparison, layer)] = f"{sign} {theirs[layer]:.6g}{bound} ({other_name})"
        bad = [layer for layer in layers if not ok(mine_spans[layer], their_spans[layer])]
        outcome.offending.update((comparison, layer) for layer in bad)
        if bad:
            shown = ", ".join(f"layer {layer}: {_fmt(values[layer])}{_span_text(expectation, mine_spans[layer])} vs "
                              f"{_fmt(theirs[layer])}{_span_text(expectation, their_spans[layer])}" for layer in bad[:3])
            apart = " with intervals apart" if expectation.confidence else ""
            failures.append(f"{comparison} not {expectation.relation} than {other_name}{apart} on {len(bad)} of "
                            f"{len(layers)} {'layer' if len(layers) == 1 else 'layers'} ({shown}{', ...' if len(bad) > 3 else ''})")
        else:
            summaries.append(f"{comparison} {expectation.relation} than {other_name} on {layer_word(layers)}")
    return _concluded(outcome, failures, summaries)


def _check_share(expectation: Expectation, selected, index, run: _Run) -> Outcome:
    """Each layer's change (or the layers' mean change) as a fraction of the other comparison's."""
    other_name = expectation.other
    change = (lambda v: 1.0 - v) if run.is_similarity(expectation.metric) else (lambda v: v)
    low, high = expectation.at_least, expectation.at_most
    other_series = _series(index, run.errors, other_name, expectation)
    outcome = Outcome(expectation, True, "", values=dict(selected))
    failures, summaries = [], []
    for comparison, values in selected.items():
        whole = _other_values(other_name, other_series, values, expectation, outcome)
        if expectation.of == "mean":
            parts = {"mean": (math.fsum(map(change, values.values())), math.fsum(map(change, whole.values())))}
        else:
            parts = {layer: (change(values[layer]), change(whole[layer])) for layer in values}
        shares = {part: mine / theirs if theirs > 0 else math.nan for part, (mine, theirs) in parts.items()}
        wanted = " and ".join(([f">= {low:.0%}"] if low is not None else []) + ([f"<= {high:.0%}"] if high is not None else []))
        bad = [part for part, share in shares.items()
               if not (math.isfinite(share) and (low is None or share >= low) and (high is None or share <= high))]
        for part, share in shares.items():
            text = f"{share:.0%} of {other_name}'s change" if math.isfinite(share) else f"{other_name} did not change"
            if part == "mean":
                outcome.notes.append(f"{comparison}: the mean change of {layer_word(values)} is {text} (expected {wanted})")
            else:
                outcome.expected[(comparison, part)] = f"{wanted} of {_fmt(whole[part])} (now {text})"
        if bad and expectation.of == "mean":
            outcome.offending.update((comparison, layer) for layer in values)
            failures.append(f"{comparison}: mean change {_share_text(shares['mean'], other_name)}, expected {wanted}")
        elif bad:
            outcome.offending.update((comparison, layer) for layer in bad)
            shown = ", ".join(f"layer {layer}: {_share_text(shares[layer], other_name)}" for layer in bad[:3])
            failures.append(f"{comparison}: {len(bad)} of {len(values)} layers outside {wanted} of {other_name}'s "
                            f"change ({shown}{', ...' if len(bad) > 3 else ''})")
        else:
            summaries.append(f"{comparison} {layer_word(values)} at {wanted} of {other_name}'s change")
    return _concluded(outcome, failures, summaries)


def _share_text(share: float, other: str) -> str:
    return f"{share:.0%}" if math.isfinite(share) else f"undefined ({other} has no change there)"


def _check_baseline(expectation: Expectation, selected, index, run: _Run) -> Outcome:
    tolerance = expectation.tolerance
    reference = expectation.baseline_values
    if not reference and expectation.baseline is not None:
        raise _Missing(f"the baseline {expectation.baseline} holds no values for this expectation")
    outcome = Outcome(expectation, True, "", values=selected)
    failures, summaries = [], []
    for comparison, values in selected.items():
        where = _where(comparison, expectation, values)
        absent = [layer for layer in values if (comparison, layer) not in reference]
        if absent:
            outcome.offending.update((comparison, layer) for layer in absent)
            failures.append(f"{comparison}: {layer_word(absent)} not in the baseline")
        drifted, worst = [], 0.0
        for layer, value in values.items():
            if (comparison, layer) not in reference:
                continue
            expected = reference[(comparison, layer)]
            outcome.expected[(comparison, layer)] = f"{expected:.6g} ± {tolerance:g}"
            difference = abs(value - expected)
            worst = max(worst, difference)
            if not difference <= tolerance:
                drifted.append(layer)
        outcome.offending.update((comparison, layer) for layer in drifted)
        if drifted:
            layer = max(drifted, key=lambda l: abs(values[l] - reference[(comparison, l)]))
            failures.append(f"{where}: {len(drifted)} of {len(values)} drifted from the baseline by more than {tolerance:g} "
                            f"(worst: layer {layer} = {values[layer]:.6g} vs {reference[(comparison, layer)]:.6g})")
        elif not absent:
            summaries.append(f"{where} within {tolerance:g} of the baseline (largest difference {worst:.3g})")
    return _concluded(outcome, failures, summaries)


def _check_learned(expectation: Expectation, selected, index, run: _Run) -> Outcome:
    """Each model's validation accuracy above the majority-class rate of its validation data + margin."""
    margin = LEARNED_MARGIN if expectation.margin is None else expectation.margin
    outcome = Outcome(expectation, True, "")
    failures, summaries = [], []
    for name in expectation.models:
        info = run.models.get(name)
        if info is None:
            outcome.accuracies[name] = {}
            outcome.offending_models.add(name)
            failures.append(f"{name}: no accuracy in these results (the run compared no side models.{name})")
            continue
        accuracy, majority, chance = info.get("accuracy"), info.get("majority"), info.get("chance")
        needed = None if majority is None else majority + margin
        outcome.accuracies[name] = {"accuracy": accuracy, "majority": majority, "chance": chance, "needed": needed}
        if accuracy is None:
            failures.append(f"{name}: no validation accuracy (fine-tuned without validation data: give "
                            f"[models.{name}] validation = \"<data>\")")
        elif majority is None:
            failures.append(f"{name}: accuracy {accuracy:.1%} but no majority-class rate in these results "
                            "(written by an older probekit; rerun with --fresh)")
        elif accuracy > needed:
            summaries.append(f"{name} {accuracy:.1%} > majority {majority:.1%} + {margin * 100:g} points")
            continue
        else:
            failures.append(f"{name}: validation accuracy {accuracy:.1%} does not beat the majority-class rate "
                            f"{majority:.1%} by {margin * 100:g} points (chance "
                            f"{'?' if chance is None else f'{chance:.1%}'}): training did not learn the task")
        outcome.offending_models.add(name)
    return _concluded(outcome, failures, summaries)


CHECKS = {"bounds": _check_bounds, "trend": _check_trend, "contrast": _check_contrast,
          "ordering": _check_ordering, "share": _check_share, "baseline": _check_baseline, "learned": _check_learned}


