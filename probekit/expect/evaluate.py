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
from probekit.results.layers import LayerSelection, format_layers, layer_word, series_index, trend_limits
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
            rows.append([
                comparison, str(layer), *([outcome.groups.get(key, "")] if with_groups else []),
                "nan" if value is None else f"{value:.6g}", outcome.expected.get(key, ""),
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


def _index(table: pa.Table) -> dict[tuple[str, str, int | None], dict[int, float]]:
    """(comparison, metric, head) -> {layer: value}."""
    index: dict[tuple[str, str, int | None], dict[int, float]] = {}
    rows = table.select(["comparison", "metric", "layer", "head", "value"]).to_pylist()
    for row in rows:
        index.setdefault((row["comparison"], row["metric"], row["head"]), {})[row["layer"]] = row["value"]
    return index


def evaluate(expectations: Iterable[Expectation], table: pa.Table) -> list[Outcome]:
    """Check each expectation against a results table.

    Missing data (a metric that failed, a layer beyond the model, a head that
    does not exist) make the expectation fail with that reason, never pass.
    """
    index = series_index(table)
    meta = metadata(table)
    run = _Run(errors=[str(e) for e in meta.get("errors", []) or []],
               directions={label: info.get("direction", "distance") for label, info in (meta.get("metrics") or {}).items()},
               models=dict(meta.get("models") or {}))
    return [_evaluate_one(expectation, index, run) for expectation in expectations]


@dataclass(frozen=True)
class _Run:
    """What the checks need from the run besides the values: failed metrics and which way each metric points."""

    errors: list[str]
    directions: dict[str, str]
    models: dict[str, dict] = field(default_factory=dict)  # the results' ``models`` metadata

    def is_similarity(self, metric: str) -> bool:
        return self.directions.get(metric) == "similarity"


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
    def ok(value: float) -> bool:
        return (expectation.below is None or value < expectation.below) and (expectation.above is None or value > expectation.above)

    bound = " and ".join(([f"> {expectation.above:g}"] if expectation.above is not None else [])
                         + ([f"< {expectation.below:g}"] if expectation.below is not None else []))
    words = expectation.assertion.removeprefix("each ").removeprefix("mean ")
    outcome = Outcome(expectation, True, "", values=selected)
    failures, summaries = [], []
    for comparison, values in selected.items():
        where = _where(comparison, expectation, values)
        if expectation.of == "mean":
            mean = math.fsum(values.values()) / len(values)
            outcome.notes.append(f"mean of {where}: {_fmt(mean)} (expected {bound})")
            if not ok(mean):
                outcome.offending.update((comparison, layer) for layer in values)
                failures.append(f"mean of {where} is {_fmt(mean)}, expected {words}")
            else:
                summaries.append(f"mean of {where} is {_fmt(mean)}, {words}")
        else:
            for layer in values:
                outcome.expected[(comparison, layer)] = bound
            bad = [layer for layer, value in values.items() if not ok(value)]
            outcome.offending.update((comparison, layer) for layer in bad)
            if bad:
                shown = ", ".join(f"layer {layer}: {_fmt(values[layer])}" for layer in bad[:4]) + (", ..." if len(bad) > 4 else "")
                failures.append(f"{where}: {len(bad)} of {len(values)} not {words} ({shown})")
            else:
                lo, hi = min(values.values()), max(values.values())
                summaries.append(f"{where} all {words} (range {_fmt(lo)} .. {_fmt(hi)})")
    return _concluded(outcome, failures, summaries)



def _check_trend(expectation: Expectation, selected, index, run: _Run) -> Outcome:
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
        # A contrast compares how much layers changed: a distance's value, a similarity's 1 - value.
        change = (lambda v: 1.0 - v) if run.is_similarity(expectation.metric) else (lambda v: v)
        high_mean = math.fsum(map(change, high.values())) / len(high)
        low_mean = math.fsum(map(change, low.values())) / len(low)
        needed = max(([expectation.factor * low_mean] if expectation.factor is not None else [])
                     + ([low_mean + expectation.margin] if expectation.margin is not None else []))
        ratio = f", {high_mean / low_mean:.2f}x" if low_mean > 0 else ""
        where = f"{comparison} " if len(selected) > 1 else ""
        what = "change (1 - value)" if run.is_similarity(expectation.metric) else "mean"
        text = (f"{where}{what} of {layer_word(high)} = {_fmt(high_mean)} vs {what} of {layer_word(low)} = "
                f"{_fmt(low_mean)}{ratio}")
        outcome.notes.append(f"{where}high mean {_fmt(high_mean)}, low mean {_fmt(low_mean)}{ratio}; "
                             f"needed high mean >= {_fmt(needed)}")
        if high_mean >= needed:
            summaries.append(text)
        else:
            outcome.offending.update((comparison, layer) for layer in high)
            failures.append(f"{text}; expected at least {_fmt(needed)} ({expectation.assertion.removeprefix('mean ')})")
    return _concluded(outcome, failures, summaries)


def _check_ordering(expectation: Expectation, selected, index, run: _Run) -> Outcome:
    other_name = expectation.other
    # "closer" is a lower distance but a higher similarity.
    lower = (expectation.relation == "closer") != run.is_similarity(expectation.metric)
    margin = expectation.margin or 0.0
    other_series = _series(index, run.errors, other_name, expectation)
    outcome = Outcome(expectation, True, "", values=dict(selected))
    failures, summaries = [], []
    sign = "<" if lower else ">"

    def ok(mine: float, theirs: float) -> bool:
        return mine < theirs - margin if lower else mine > theirs + margin

    for comparison, values in selected.items():
        layers = list(values)
        missing = [layer for layer in layers if layer not in other_series]
        if missing:
            raise _Missing(f"{other_name}: {layer_word(missing)} not in the results "
                           f"({expectation.metric} has layers {format_layers(other_series)})")
        theirs = {layer: other_series[layer] for layer in layers}
        outcome.values[other_name] = {**outcome.values.get(other_name, {}), **theirs}
        bound = f" {'-' if lower else '+'} {margin:g}" if margin else ""
        if expectation.of == "mean":
            mine_mean = math.fsum(values.values()) / len(values)
            their_mean = math.fsum(theirs.values()) / len(theirs)
            text = f"mean of {comparison} {layer_word(layers)} = {_fmt(mine_mean)} vs {other_name} {_fmt(their_mean)}"
            outcome.notes.append(f"{text} (expected {sign} {_fmt(their_mean)}{bound})")
            if ok(mine_mean, their_mean):
                summaries.append(text)
            else:
                outcome.offending.update((comparison, layer) for layer in layers)
                failures.append(f"{text}; expected {expectation.relation}")
            continue
        for layer in layers:
            outcome.expected[(comparison, layer)] = f"{sign} {theirs[layer]:.6g}{bound} ({other_name})"
        bad = [layer for layer in layers if not ok(values[layer], theirs[layer])]
        outcome.offending.update((comparison, layer) for layer in bad)
        if bad:
            shown = ", ".join(f"layer {layer}: {_fmt(values[layer])} vs {_fmt(theirs[layer])}" for layer in bad[:3])
            failures.append(f"{comparison} not {expectation.relation} than {other_name} on {len(bad)} of {len(layers)} "
                            f"{'layer' if len(layers) == 1 else 'layers'} ({shown}{', ...' if len(bad) > 3 else ''})")
        else:
            summaries.append(f"{comparison} {expectation.relation} than {other_name} on {layer_word(layers)}")
    return _concluded(outcome, failures, summaries)


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
          "ordering": _check_ordering, "baseline": _check_baseline, "learned": _check_learned}


