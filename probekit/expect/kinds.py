"""Expectation kinds: each a frozen dataclass that owns its fields, its checks against the spec, its wording and
its evaluation. The built-in kinds register through ``probekit_register_expectations`` (the ``expectations``
plugin), exactly as a third party's kind does; docs/plugins.md shows one.

A kind's dataclass fields are its ``[[expect]]`` keys, typed and validated by :mod:`probekit.declare`;
:class:`LayerExpectation` adds what every kind about a metric's layers shares (``comparison(s)``, ``metric``,
``layers``, ``head``). A kind is chosen by its ``triggers``: the keys whose presence selects it.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from probekit.declare import Convert, Rule, between, fields_of, non_negative, parse
from probekit.errors import Problem, did_you_mean
from probekit.expect.evaluate import (
    Missing,
    Outcome,
    RunView,
    concluded,
    fmt,
    mean_of,
    mean_span,
    select,
)
from probekit.metrics.base import supports_bootstrap
from probekit.results.io import RESULTS_FILE, metadata, read_table
from probekit.results.layers import (
    LAYERS_SYNTAX,
    LayerSelection,
    format_layers,
    layer_word,
    parse_layers,
    selection_word,
    series_index,
    trend_limits,
    trend_statistics,
)

if TYPE_CHECKING:
    from probekit.spec.model import Spec

#: Reports a problem under the expectation's key: ``problem(sub_key, found, expected, hint="")``.
Report = Callable[..., None]
#: How far (a fraction: 0.02 = 2 points) a fine-tune's validation accuracy must beat the majority-class
#: rate of its validation data: the default margin of ``learned``, and where a run warns.
LEARNED_MARGIN = 0.02
Of = Literal["each", "mean"]
Level = Annotated[float, between(0, 1, "a level in (0, 1), e.g. 0.95", open_low=True, open_high=True)]
Tolerance = Annotated[float, non_negative]
COMMON_KEYS = ("name", "comparison", "comparisons", "metric", "layers", "head")


@dataclass(frozen=True, kw_only=True)
class Expectation:
    """The base of every kind: where it is in the spec (``key``) and its name (a test's name)."""

    kind: ClassVar[str]
    triggers: ClassVar[tuple[str, ...]]  # keys whose presence in an [[expect]] table selects this kind
    key: str = "assertion"
    name: str = ""

    @property
    def assertion(self) -> str:
        """What it asserts, in words: 'each above 0.01', 'increasing (tolerance 0.005)', ..."""
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.key}: {self.assertion}"

    def keywords(self) -> set[str]:
        """The words ``pytest -k`` matches besides the name: the kind and what it is about."""
        return {self.kind}

    def checked(self, spec: Spec, problem: Report) -> Expectation:
        """This expectation checked against the rest of the spec (problems reported; may load what it needs)."""
        return self

    def evaluate(self, run: RunView) -> Outcome:
        raise NotImplementedError

    @classmethod
    def from_table(cls, table: dict, key: str, spec: Spec, problems: list[Problem]) -> Expectation | None:
        """The kind's own keys of an [[expect]] table, validated, then checked against the spec."""
        before = len(problems)
        own = {k: v for k, v in table.items() if k != "name"}
        expectation = parse(cls, own, key, problems, given={"key": key, "name": table.get("name", "")})
        if expectation is None or len(problems) > before:
            return None
        expectation = expectation.checked(spec, _reporter(key, problems))
        return None if len(problems) > before else expectation


def _reporter(key: str, problems: list[Problem]) -> Report:
    def problem(sub: str, found: str, expected: str, hint: str = "") -> None:
        problems.append(Problem(f"{key}.{sub}" if sub else key, found, expected, hint))
    return problem


@dataclass(frozen=True, kw_only=True)
class LayerExpectation(Expectation):
    """A kind about a metric's values on some layers of one or more comparisons."""

    comparisons: tuple[str, ...] = ()
    metric: str = ""
    layers: LayerSelection = field(default_factory=lambda: parse_layers("all"))
    head: int | None = None

    def keywords(self) -> set[str]:
        return {self.kind, self.metric, *self.comparisons}

    def describe(self) -> str:
        """'svcca of a_vs_b, layers last 2: each above 0.01'."""
        head = f" head {self.head}" if self.head is not None else ""
        return f"{self.metric}{head} of {', '.join(self.comparisons)}, layers {self.layers}: {self.assertion}"

    def evaluate(self, run: RunView) -> Outcome:
        selected = {c: select(run.series(c, self.metric, self.head), self.layers, c, self.metric) for c in self.comparisons}
        for comparison, values in selected.items():
            bad = [layer for layer, value in values.items() if value is None or not math.isfinite(value)]
            if bad:
                outcome = Outcome(self, False, f"{comparison}: {layer_word(bad)} {'is' if len(bad) == 1 else 'are'} "
                                  f"not a number ({', '.join(repr(values[b]) for b in bad)})", values=selected)
                outcome.offending = {(comparison, b) for b in bad}
                return outcome
        return self.judge(selected, run)

    def judge(self, selected: dict[str, dict[int, float]], run: RunView) -> Outcome:
        """The verdict on the selected values: comparison -> layer -> value."""
        raise NotImplementedError

    def where(self, comparison: str, layers: Iterable[int]) -> str:
        return (f"{comparison} " if len(self.comparisons) > 1 else "") + layer_word(list(layers))

    @classmethod
    def from_table(cls, table: dict, key: str, spec: Spec, problems: list[Problem]) -> Expectation | None:
        before = len(problems)
        common = _common(table, key, spec, problems)
        own = {k: v for k, v in table.items() if k not in COMMON_KEYS}
        expectation = parse(cls, own, key, problems, given={"key": key, **common}, known=COMMON_KEYS)
        if expectation is None or len(problems) > before:
            return None
        name = table.get("name") or f"{key}: {expectation.metric} {cls.kind}"
        expectation = replace(expectation, name=name.strip()).checked(spec, _reporter(key, problems))
        return None if len(problems) > before else expectation

    @classmethod
    def build(cls, comparisons: str | Iterable[str], metric: str, layers: Any = "all", *, name: str | None = None,
              head: int | None = None, key: str = "assertion", **fields: Any) -> LayerExpectation:
        """The kind built in Python (the ``assert_*`` helpers): its fields validated as a spec's are;
        ValueError naming each problem."""
        problems: list[Problem] = []
        given = {"key": key, "comparisons": (comparisons,) if isinstance(comparisons, str) else tuple(comparisons),
                 "metric": metric, "head": head,
                 "layers": layers if isinstance(layers, LayerSelection) else parse_layers(layers)}
        declared = fields_of(cls)
        table = {k: v for k, v in fields.items() if v is not None and k in declared}
        expectation = parse(cls, table, "", problems, given=given)
        if expectation is None:
            raise ValueError("; ".join(str(p) for p in problems))
        # Fields a spec never gives (a baseline's values) are set as they are.
        expectation = replace(expectation, **{k: v for k, v in fields.items() if k not in declared})
        return replace(expectation, name=name or f"{metric} {expectation.assertion}")

    def check_other(self, key: str, other: str, spec: Spec, problem: Report, role: str) -> None:
        """``key = "<other comparison>"``: a comparison of this spec, not one of ours, that runs our metric."""
        known = [c.name for c in spec.comparisons]
        if other not in known:
            problem(key, repr(other), "a comparison of this spec: " + ", ".join(known), did_you_mean(other, known))
        elif other in self.comparisons:
            problem(key, repr(other), f"a comparison other than the one(s) {role}")
        elif self.metric not in next(c for c in spec.comparisons if c.name == other).metrics:
            problem(key, repr(other), f"a comparison that runs {self.metric!r}")

    def check_confidence(self, level: float | None, spec: Spec, problem: Report) -> None:
        """``confidence``: the run's interval level, on a run with intervals of a metric that has them."""
        if level is None:
            return
        metric = spec.metrics.get(self.metric)
        metric_class = metric.metric_class if metric else None
        if not spec.run.bootstrap:
            problem("confidence", repr(level), "intervals to check: set [run] bootstrap = true (200 replicates) or "
                    "a number of replicates")
        elif level != spec.run.confidence:
            problem("confidence", repr(level), f"the level of the run's intervals, [run] confidence = "
                    f"{spec.run.confidence:g} (one level per run: change either)")
        elif metric_class is not None and not supports_bootstrap(metric_class):
            problem("confidence", repr(level), f"a metric with intervals; {metric_class.name!r} has none (its plugin "
                    "implements no `pooled`)")


def _common(table: dict, key: str, spec: Spec, problems: list[Problem]) -> dict[str, Any]:
    """``comparison(s)``, ``metric``, ``layers`` and ``head``, checked against the spec's comparisons and metrics."""
    problem = _reporter(key, problems)
    comparisons, where = _comparisons(table, spec, problem)
    metric = table.get("metric")
    names = list(spec.metrics)
    if metric is None:
        problem("metric", "nothing", "a metric label declared under [metrics]: " + ", ".join(names))
    elif not isinstance(metric, str) or metric not in spec.metrics:
        problem("metric", repr(metric), "a metric declared under [metrics]: " + ", ".join(names),
                did_you_mean(metric, names))
    else:
        for name in comparisons:
            runs = next((c.metrics for c in spec.comparisons if c.name == name), None)
            if runs is not None and metric not in runs:
                problem("metric", repr(metric), f"a metric that comparison {name!r} runs ({', '.join(runs)}); add "
                        f"{metric!r} to its metrics or drop this expectation")
    metric_class = spec.metrics[metric].metric_class if isinstance(metric, str) and metric in spec.metrics else None
    try:
        layers = parse_layers(table.get("layers", "all"))
    except ValueError as error:
        problem("layers", str(error), LAYERS_SYNTAX)
        layers = parse_layers("all")
    else:
        if metric_class is not None and metric_class.layers == "attentions" and 0 in layers.layers:
            problem("layers", repr(table.get("layers")), f"attention layers of {metric!r}, which start at 1 (layer 0 "
                    "is the embedding output)")
    head = table.get("head")
    if head is not None:
        if isinstance(head, bool) or not isinstance(head, int) or head < 0:
            problem("head", repr(head), "a head number >= 0")
        elif metric_class is not None and not metric_class.per_head:
            problem("head", repr(head), f"no head: {metric!r} ({metric_class.name}) has one value per layer, not per head")
    return {"comparisons": tuple(comparisons), "metric": metric if isinstance(metric, str) else "", "layers": layers,
            "head": head}


def _comparisons(table: dict, spec: Spec, problem: Report) -> tuple[list[str], str]:
    known = [c.name for c in spec.comparisons]
    if "comparison" in table and "comparisons" in table:
        problem("comparisons", "both `comparison` and `comparisons`", "one of them")
        return [], "comparisons"
    if "comparisons" in table:
        raw, key = table["comparisons"], "comparisons"
        if not isinstance(raw, list) or not raw or not all(isinstance(c, str) for c in raw):
            problem(key, repr(raw), "a non-empty array of comparison names")
            return [], key
        names = list(dict.fromkeys(raw))
    elif "comparison" in table:
        key, names = "comparison", [table["comparison"]]
    elif len(known) == 1:
        return known, "comparison"
    else:
        problem("comparison", "nothing", "the name of the comparison to check (or comparisons = [...]); the spec has "
                + (", ".join(known) or "no valid comparison"))
        return [], "comparison"
    for name in names:
        if name not in known:
            problem(key, repr(name), "a comparison of this spec: " + (", ".join(known) or "none declared validly"),
                    did_you_mean(name, known))
    return names, key


# ------------------------------------------------------------------ bounds


@dataclass(frozen=True, kw_only=True)
class Bounds(LayerExpectation):
    """``below = x`` and/or ``above = x``, for each selected layer or their mean (``of``)."""

    kind: ClassVar[str] = "bounds"
    triggers: ClassVar[tuple[str, ...]] = ("below", "above")
    below: float | None = None
    above: float | None = None
    of: Of = "each"
    confidence: Level | None = None

    @property
    def assertion(self) -> str:
        parts = ([f"above {self.above:g}"] if self.above is not None else []) + (
            [f"below {self.below:g}"] if self.below is not None else [])
        return ("mean " if self.of == "mean" else "each ") + " and ".join(parts) + _at(self.confidence)

    def checked(self, spec: Spec, problem: Report) -> Bounds:
        if self.below is not None and self.above is not None and self.above >= self.below:
            problem("above", repr(self.above), f"a lower bound below `below` ({self.below:g})")
        self.check_confidence(self.confidence, spec, problem)
        return self

    def holds(self, span: tuple[float, float]) -> bool:
        low, high = span
        return (self.below is None or high < self.below) and (self.above is None or low > self.above)

    def judge(self, selected: dict[str, dict[int, float]], run: RunView) -> Outcome:
        bound = " and ".join(([f"> {self.above:g}"] if self.above is not None else [])
                             + ([f"< {self.below:g}"] if self.below is not None else []))
        words = self.assertion.removeprefix("each ").removeprefix("mean ")
        outcome = Outcome(self, True, "", values=selected)
        failures, summaries = [], []
        for comparison, values in selected.items():
            where = self.where(comparison, values)
            spans = run.spans(self, comparison, values, outcome)
            if self.of == "mean":
                mean = math.fsum(values.values()) / len(values)
                outcome.notes.append(f"mean of {where}: {fmt(mean)}{mean_span(spans)} (expected {bound})")
                if not self.holds(mean_of(spans)):
                    outcome.offending.update((comparison, layer) for layer in values)
                    failures.append(f"mean of {where} is {fmt(mean)}, expected {words}")
                else:
                    summaries.append(f"mean of {where} is {fmt(mean)}, {words}")
                continue
            outcome.expected.update({(comparison, layer): bound for layer in values})
            bad = [layer for layer in values if not self.holds(spans[layer])]
            outcome.offending.update((comparison, layer) for layer in bad)
            if bad:
                shown = ", ".join(f"layer {layer}: {fmt(values[layer])}{_span_text(self.confidence, spans[layer])}"
                                  for layer in bad[:4]) + (", ..." if len(bad) > 4 else "")
                failures.append(f"{where}: {len(bad)} of {len(values)} not {words} ({shown})")
            else:
                summaries.append(f"{where} all {words} (range {fmt(min(values.values()))} .. {fmt(max(values.values()))})")
        return concluded(outcome, failures, summaries)


def _at(confidence: float | None) -> str:
    return f" at {confidence:g} confidence" if confidence else ""


def _span_text(confidence: float | None, span: tuple[float, float]) -> str:
    return "" if confidence is None else f" (interval {fmt(span[0])} .. {fmt(span[1])})"


# ------------------------------------------------------------------ trend


@dataclass(frozen=True, kw_only=True)
class Trend(LayerExpectation):
    """``trend = "increasing"`` (or decreasing) with a ``tolerance`` for dips, or judged as statistics: a Spearman
    correlation with depth of at least ``spearman``, at most a share ``violations`` of pairs in the wrong order."""

    kind: ClassVar[str] = "trend"
    triggers: ClassVar[tuple[str, ...]] = ("trend",)
    trend: Literal["increasing", "decreasing"]
    tolerance: Tolerance = 0.0
    spearman: Annotated[float, between(0, 1, "a correlation in (0, 1] (the sign comes from the trend), e.g. 0.8",
                                       open_low=True)] | None = None
    violations: Annotated[float, between(0, 1, "a share of layer pairs in [0, 1), e.g. 0.1", open_high=True)] | None = None

    @property
    def assertion(self) -> str:
        if self.spearman is None and self.violations is None:
            return self.trend + (f" (tolerance {self.tolerance:g})" if self.tolerance else "")
        parts = ([f"Spearman >= {self.spearman:g}"] if self.spearman is not None else []) + (
            [f"violations <= {self.violations:g}"] if self.violations is not None else [])
        return f"{self.trend} (" + ", ".join(parts) + ")"

    def checked(self, spec: Spec, problem: Report) -> Trend:
        if self.layers.size is not None and self.layers.size < 2:
            problem("layers", repr(str(self.layers)), "at least 2 layers for a trend (a trend over one layer always holds)")
        return self

    def judge(self, selected: dict[str, dict[int, float]], run: RunView) -> Outcome:
        if self.spearman is not None or self.violations is not None:
            return self._statistics(selected)
        increasing = self.trend == "increasing"
        outcome = Outcome(self, True, "", values=selected)
        failures, summaries = [], []
        for comparison, values in selected.items():
            layers = sorted(values)
            where = self.where(comparison, layers)
            if len(layers) < 2:
                failures.append(f"{where}: a trend needs at least 2 layers; the selection has {len(layers)}")
                continue
            worst = None  # (layer, earlier layer, dip)
            for layer, (limit, earlier) in trend_limits(values, increasing, self.tolerance).items():
                outcome.expected[(comparison, layer)] = f"{'>=' if increasing else '<='} {limit:.6g}"
                dip = (limit - values[layer]) if increasing else (values[layer] - limit)
                if dip > 0:
                    outcome.offending.add((comparison, layer))
                    if worst is None or dip > worst[2]:
                        worst = (layer, earlier, dip + self.tolerance)
            if worst is None:
                summaries.append(f"{where} {self.trend} ({fmt(values[layers[0]])} .. {fmt(values[layers[-1]])})")
                continue
            layer, earlier, _ = worst
            bad = sorted(l for c, l in outcome.offending if c == comparison)
            verb = ("dips" if increasing else "rises") if len(bad) == 1 else ("dip" if increasing else "rise")
            failures.append(f"{where} not {self.trend}: {layer_word(bad)} {verb} {'below' if increasing else 'above'} "
                            f"an earlier layer by more than the tolerance {self.tolerance:g} (worst: layer {layer} = "
                            f"{fmt(values[layer])} vs layer {earlier} = {fmt(values[earlier])})")
        return concluded(outcome, failures, summaries)

    def _statistics(self, selected: dict[str, dict[int, float]]) -> Outcome:
        """The Spearman correlation of value with depth, and the share of layer pairs in the wrong order."""
        outcome = Outcome(self, True, "", values=selected)
        failures, summaries = [], []
        for comparison, values in selected.items():
            rho, wrong = trend_statistics(values, self.trend == "increasing")
            text = (f"{self.where(comparison, sorted(values))}: Spearman {rho:.3f} with depth ({self.trend}), "
                    f"{wrong:.0%} of layer pairs in the wrong order")
            outcome.notes.append(text)
            short = [] if self.spearman is None or rho >= self.spearman else [f"Spearman below {self.spearman:g}"]
            if self.violations is not None and wrong > self.violations:
                short.append(f"more than {self.violations:.0%} of pairs in the wrong order")
            if math.isnan(rho) and self.spearman is not None:
                short = ["no Spearman correlation: every selected value is the same"]
            if short:
                outcome.offending.update((comparison, layer) for layer in values)
                failures.append(f"{text}; expected {self.assertion} ({'; '.join(short)})")
            else:
                summaries.append(text)
        return concluded(outcome, failures, summaries)


# ------------------------------------------------------------------ contrast


@dataclass(frozen=True)
class ContrastTable:
    """``contrast = { low = "1-4", factor = 3.0 }`` (or ``margin``)."""

    low: str | int | tuple[int, ...]  # a layer selection, as `layers` takes it
    factor: Annotated[float, Rule(lambda v: v > 0, "a positive factor (the mean of `layers` >= factor x the mean of "
                                  "`low`)")] | None = None
    margin: float | None = None


@dataclass(frozen=True, kw_only=True)
class Contrast(LayerExpectation):
    """The mean change of the selected layers at least ``factor`` times (or ``margin`` above) that of ``low``."""

    kind: ClassVar[str] = "contrast"
    triggers: ClassVar[tuple[str, ...]] = ("contrast",)
    contrast: ContrastTable
    confidence: Level | None = None

    @property
    def low(self) -> LayerSelection:
        return parse_layers(self.contrast.low)

    @property
    def assertion(self) -> str:
        low, factor, margin = f"the mean of {selection_word(self.low)}", self.contrast.factor, self.contrast.margin
        need = ([f"{factor:g}x {low}"] if factor is not None else []) + ([f"{low} + {margin:g}"] if margin is not None else [])
        return "mean at least " + " and at least ".join(need) + _at(self.confidence)

    def checked(self, spec: Spec, problem: Report) -> Contrast:
        try:
            parse_layers(self.contrast.low)
        except ValueError as error:
            problem("contrast.low", str(error), LAYERS_SYNTAX)
        if self.contrast.factor is None and self.contrast.margin is None:
            problem("contrast", "neither `factor` nor `margin`", "factor = F (mean >= F x mean of low) or margin = M "
                    "(mean >= mean of low + M)")
        self.check_confidence(self.confidence, spec, problem)
        return self

    def judge(self, selected: dict[str, dict[int, float]], run: RunView) -> Outcome:
        outcome = Outcome(self, True, "", values={})
        failures, summaries = [], []
        factor, margin = self.contrast.factor, self.contrast.margin
        for comparison, high in selected.items():
            low = select(run.series(comparison, self.metric, self.head), self.low, comparison, self.metric)
            outcome.values[comparison] = dict(sorted({**low, **high}.items()))
            outcome.groups.update({(comparison, layer): "low" for layer in low})
            outcome.groups.update({(comparison, layer): "high" if layer not in low else "high+low" for layer in high})
            # A contrast compares how much layers changed: a distance's value, a similarity's 1 - value; with
            # confidence, the high layers' least change against the low layers' most.
            similarity = run.is_similarity(self.metric)
            change = (lambda v: 1.0 - v) if similarity else (lambda v: v)
            high_spans, low_spans = run.spans(self, comparison, high, outcome), run.spans(self, comparison, low, outcome)
            high_mean = math.fsum(change(high_spans[l][1] if similarity else high_spans[l][0]) for l in high) / len(high)
            low_mean = math.fsum(change(low_spans[l][0] if similarity else low_spans[l][1]) for l in low) / len(low)
            needed = max(([factor * low_mean] if factor is not None else [])
                         + ([low_mean + margin] if margin is not None else []))
            ratio = f", {high_mean / low_mean:.2f}x" if low_mean > 0 else ""
            where = f"{comparison} " if len(selected) > 1 else ""
            what = "change (1 - value)" if similarity else "mean"
            least, most = ("the interval's least ", "the interval's most ") if self.confidence else ("", "")
            text = (f"{where}{least}{what} of {layer_word(list(high))} = {fmt(high_mean)} vs {most}{what} of "
                    f"{layer_word(list(low))} = {fmt(low_mean)}{ratio}")
            outcome.notes.append(f"{where}high mean {fmt(high_mean)}, low mean {fmt(low_mean)}{ratio}; "
                                 f"needed high mean >= {fmt(needed)}")
            if high_mean >= needed:
                summaries.append(text)
            else:
                outcome.offending.update((comparison, layer) for layer in high)
                failures.append(f"{text}; expected at least {fmt(needed)} ({self.assertion.removeprefix('mean ')})")
        return concluded(outcome, failures, summaries)


# ------------------------------------------------------------------ ordering and share


def other_values(other: str, other_series: dict[int, float], values: dict[int, float], metric: str,
                 outcome: Outcome) -> dict[int, float]:
    """The other comparison's values on the layers of ``values``, added to the outcome's table."""
    missing = [layer for layer in values if layer not in other_series]
    if missing:
        raise Missing(f"{other}: {layer_word(missing)} not in the results ({metric} has layers "
                      f"{format_layers(other_series)})")
    theirs = {layer: other_series[layer] for layer in values}
    outcome.values[other] = {**outcome.values.get(other, {}), **theirs}
    return theirs


@dataclass(frozen=True, kw_only=True)
class Ordering(LayerExpectation):
    """``closer_than = "<comparison>"`` (or ``farther_than``) on each selected layer, or on their mean."""

    kind: ClassVar[str] = "ordering"
    triggers: ClassVar[tuple[str, ...]] = ("closer_than", "farther_than")
    closer_than: str | None = None
    farther_than: str | None = None
    of: Of = "each"
    margin: Tolerance = 0.0
    confidence: Level | None = None

    @property
    def relation(self) -> str:
        return "closer" if self.closer_than is not None else "farther"

    @property
    def other(self) -> str:
        return self.closer_than if self.closer_than is not None else self.farther_than or ""

    @property
    def assertion(self) -> str:
        return (f"{self.relation} than {self.other}" + (" on the mean" if self.of == "mean" else "")
                + (f" by {self.margin:g}" if self.margin else "") + _at(self.confidence))

    def checked(self, spec: Spec, problem: Report) -> Ordering:
        if self.closer_than is not None and self.farther_than is not None:
            problem("farther_than", "both `closer_than` and `farther_than`", "one of them")
        else:
            self.check_other(f"{self.relation}_than", self.other, spec, problem, "it is ordered against")
        self.check_confidence(self.confidence, spec, problem)
        return self

    def judge(self, selected: dict[str, dict[int, float]], run: RunView) -> Outcome:
        # "closer" is a lower distance but a higher similarity.
        lower = (self.relation == "closer") != run.is_similarity(self.metric)
        other_series = run.series(self.other, self.metric, self.head)
        outcome = Outcome(self, True, "", values=dict(selected))
        failures, summaries = [], []
        for comparison, values in selected.items():
            theirs = other_values(self.other, other_series, values, self.metric, outcome)
            mine_spans = run.spans(self, comparison, values, outcome)
            their_spans = run.spans(self, self.other, theirs, outcome)
            judge = self._mean if self.of == "mean" else self._each
            failure, summary = judge(comparison, values, theirs, mine_spans, their_spans, lower, outcome)
            (failures.append(failure) if failure else summaries.append(summary))
        return concluded(outcome, failures, summaries)

    def _holds(self, mine: tuple[float, float], theirs: tuple[float, float], lower: bool) -> bool:
        """With confidence the intervals must not overlap: the whole of mine on the right side of theirs."""
        return mine[1] < theirs[0] - self.margin if lower else mine[0] > theirs[1] + self.margin

    def _mean(self, comparison, values, theirs, mine_spans, their_spans, lower, outcome) -> tuple[str, str]:
        mine_mean, their_mean = math.fsum(values.values()) / len(values), math.fsum(theirs.values()) / len(theirs)
        bound = f" {'-' if lower else '+'} {self.margin:g}" if self.margin else ""
        text = (f"mean of {comparison} {layer_word(list(values))} = {fmt(mine_mean)}{mean_span(mine_spans)} vs "
                f"{self.other} {fmt(their_mean)}{mean_span(their_spans)}")
        outcome.notes.append(f"{text} (expected {'<' if lower else '>'} {fmt(their_mean)}{bound})")
        if self._holds(mean_of(mine_spans), mean_of(their_spans), lower):
            return "", text
        outcome.offending.update((comparison, layer) for layer in values)
        return f"{text}; expected {self.relation}" + (" with intervals apart" if self.confidence else ""), ""

    def _each(self, comparison, values, theirs, mine_spans, their_spans, lower, outcome) -> tuple[str, str]:
        layers = list(values)
        bound = f" {'-' if lower else '+'} {self.margin:g}" if self.margin else ""
        for layer in layers:
            outcome.expected[(comparison, layer)] = f"{'<' if lower else '>'} {theirs[layer]:.6g}{bound} ({self.other})"
        bad = [layer for layer in layers if not self._holds(mine_spans[layer], their_spans[layer], lower)]
        outcome.offending.update((comparison, layer) for layer in bad)
        if not bad:
            return "", f"{comparison} {self.relation} than {self.other} on {layer_word(layers)}"
        shown = ", ".join(f"layer {layer}: {fmt(values[layer])}{_span_text(self.confidence, mine_spans[layer])} vs "
                          f"{fmt(theirs[layer])}{_span_text(self.confidence, their_spans[layer])}" for layer in bad[:3])
        apart = " with intervals apart" if self.confidence else ""
        return (f"{comparison} not {self.relation} than {self.other}{apart} on {len(bad)} of {len(layers)} "
                f"{'layer' if len(layers) == 1 else 'layers'} ({shown}{', ...' if len(bad) > 3 else ''})"), ""


@dataclass(frozen=True, kw_only=True)
class Share(LayerExpectation):
    """``share_of = "<comparison>"`` with ``at_least`` and/or ``at_most``: each selected layer's change (a distance's
    value, a similarity's 1 - value), or their mean's, as a fraction of the other comparison's."""

    kind: ClassVar[str] = "share"
    triggers: ClassVar[tuple[str, ...]] = ("share_of",)
    share_of: str
    at_least: Annotated[float, Rule(lambda v: v >= 0, "a fraction >= 0, e.g. 0.9")] | None = None
    at_most: Annotated[float, Rule(lambda v: v >= 0, "a fraction >= 0, e.g. 0.9")] | None = None
    of: Of = "each"

    @property
    def assertion(self) -> str:
        parts = ([f"at least {self.at_least:.0%}"] if self.at_least is not None else []) + (
            [f"at most {self.at_most:.0%}"] if self.at_most is not None else [])
        return ("mean " if self.of == "mean" else "each ") + " and ".join(parts) + f" of {self.share_of}'s change"

    def checked(self, spec: Spec, problem: Report) -> Share:
        self.check_other("share_of", self.share_of, spec, problem, "whose share it measures")
        if self.at_least is None and self.at_most is None:
            problem("share_of", repr(self.share_of), "beside at_least = F and/or at_most = F (fractions of its change)")
        elif self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            problem("at_least", repr(self.at_least), f"a band that some value can meet: at_least <= at_most "
                    f"({self.at_most!r})")
        return self

    def judge(self, selected: dict[str, dict[int, float]], run: RunView) -> Outcome:
        change = (lambda v: 1.0 - v) if run.is_similarity(self.metric) else (lambda v: v)
        low, high, other = self.at_least, self.at_most, self.share_of
        other_series = run.series(other, self.metric, self.head)
        outcome = Outcome(self, True, "", values=dict(selected))
        failures, summaries = [], []
        wanted = " and ".join(([f">= {low:.0%}"] if low is not None else []) + ([f"<= {high:.0%}"] if high is not None else []))
        for comparison, values in selected.items():
            whole = other_values(other, other_series, values, self.metric, outcome)
            if self.of == "mean":
                parts = {"mean": (math.fsum(map(change, values.values())), math.fsum(map(change, whole.values())))}
            else:
                parts = {layer: (change(values[layer]), change(whole[layer])) for layer in values}
            shares = {part: mine / theirs if theirs > 0 else math.nan for part, (mine, theirs) in parts.items()}
            bad = [part for part, share in shares.items()
                   if not (math.isfinite(share) and (low is None or share >= low) and (high is None or share <= high))]
            for part, share in shares.items():
                text = f"{share:.0%} of {other}'s change" if math.isfinite(share) else f"{other} did not change"
                if part == "mean":
                    outcome.notes.append(f"{comparison}: the mean change of {layer_word(list(values))} is {text} "
                                         f"(expected {wanted})")
                else:
                    outcome.expected[(comparison, part)] = f"{wanted} of {fmt(whole[part])} (now {text})"
            if bad and self.of == "mean":
                outcome.offending.update((comparison, layer) for layer in values)
                failures.append(f"{comparison}: mean change {_share_text(shares['mean'], other)}, expected {wanted}")
            elif bad:
                outcome.offending.update((comparison, layer) for layer in bad)
                shown = ", ".join(f"layer {layer}: {_share_text(shares[layer], other)}" for layer in bad[:3])
                failures.append(f"{comparison}: {len(bad)} of {len(values)} layers outside {wanted} of {other}'s "
                                f"change ({shown}{', ...' if len(bad) > 3 else ''})")
            else:
                summaries.append(f"{comparison} {layer_word(list(values))} at {wanted} of {other}'s change")
        return concluded(outcome, failures, summaries)


def _share_text(share: float, other: str) -> str:
    return f"{share:.0%}" if math.isfinite(share) else f"undefined ({other} has no change there)"


# ------------------------------------------------------------------ baseline


@dataclass(frozen=True, kw_only=True)
class Baseline(LayerExpectation):
    """``baseline = "path/to/results.parquet"`` (or a run folder): every selected value within ``tolerance``."""

    kind: ClassVar[str] = "baseline"
    triggers: ClassVar[tuple[str, ...]] = ("baseline",)
    baseline: str
    tolerance: Tolerance = 1e-6
    # (comparison, layer) -> value, read from the baseline file when the spec is checked
    reference: dict = field(default_factory=dict, compare=False, repr=False, metadata={"declared": False})

    @property
    def assertion(self) -> str:
        return f"matches baseline {Path(self.baseline).name} within {self.tolerance:g}"

    def checked(self, spec: Spec, problem: Report) -> Baseline:
        path = Path(self.baseline).expanduser()
        path = path if path.is_absolute() else spec.path.parent / path
        file = path / RESULTS_FILE if path.is_dir() else path
        if not file.is_file():
            what = f"{path} has no {RESULTS_FILE}" if path.is_dir() else f"{path} does not exist"
            problem("baseline", repr(self.baseline), f"a results.parquet file or run folder from an earlier run of "
                    f"this spec ({what})")
            return self
        try:
            table = read_table(file)
        except Exception as error:  # noqa: BLE001 - any unreadable file is the same problem for the user
            problem("baseline", repr(self.baseline), f"a readable results.parquet file ({file}: {error})")
            return self
        if (their_spec := metadata(table).get("spec_name")) != spec.name:
            problem("baseline", f"{self.baseline!r}, results of spec {their_spec!r}", f"results of this spec "
                    f"({spec.name!r}); a baseline from another spec measures other models or data")
            return self
        index = series_index(table)
        missing = [c for c in self.comparisons if not index.get((c, self.metric, self.head))]
        if missing:
            head = f" head {self.head}" if self.head is not None else ""
            problem("baseline", repr(self.baseline), f"a baseline with {self.metric}{head} results for "
                    f"{', '.join(missing)} (it has: {', '.join(sorted({f'{c}/{m}' for c, m, _ in index})) or 'no results'})")
            return self
        values = {(c, layer): v for c in self.comparisons for layer, v in index[(c, self.metric, self.head)].items()}
        return replace(self, baseline=str(file), reference=values)

    def judge(self, selected: dict[str, dict[int, float]], run: RunView) -> Outcome:
        tolerance, reference = self.tolerance, self.reference
        if not reference:
            raise Missing(f"the baseline {self.baseline} holds no values for this expectation")
        outcome = Outcome(self, True, "", values=selected)
        failures, summaries = [], []
        for comparison, values in selected.items():
            where = self.where(comparison, values)
            absent = [layer for layer in values if (comparison, layer) not in reference]
            if absent:
                outcome.offending.update((comparison, layer) for layer in absent)
                failures.append(f"{comparison}: {layer_word(absent)} not in the baseline")
            there = {layer: reference[(comparison, layer)] for layer in values if (comparison, layer) in reference}
            outcome.expected.update({(comparison, l): f"{v:.6g} ± {tolerance:g}" for l, v in there.items()})
            drifted = [layer for layer, expected in there.items() if not abs(values[layer] - expected) <= tolerance]
            worst = max((abs(values[l] - v) for l, v in there.items()), default=0.0)
            outcome.offending.update((comparison, layer) for layer in drifted)
            if drifted:
                layer = max(drifted, key=lambda l: abs(values[l] - there[l]))
                failures.append(f"{where}: {len(drifted)} of {len(values)} drifted from the baseline by more than "
                                f"{tolerance:g} (worst: layer {layer} = {values[layer]:.6g} vs {there[layer]:.6g})")
            elif not absent:
                summaries.append(f"{where} within {tolerance:g} of the baseline (largest difference {worst:.3g})")
        return concluded(outcome, failures, summaries)


# ------------------------------------------------------------------ learned


@dataclass(frozen=True, kw_only=True)
class Learned(Expectation):
    """``learned = ["seed1", ...]``: each fine-tuned model's validation accuracy beats the majority-class rate of its
    validation data by ``margin``, so a test fails when training silently stopped working."""

    kind: ClassVar[str] = "learned"
    triggers: ClassVar[tuple[str, ...]] = ("learned",)
    learned: Annotated[tuple[str, ...], Convert(str | tuple[str, ...], lambda v: (v,) if isinstance(v, str) else tuple(v),
                                                'a fine-tuned model\'s name or an array of them, e.g. learned = ["seed1", "seed2"]')]
    margin: Annotated[float, between(0, 1, "a fraction of accuracy >= 0 and < 1 (0.05 = 5 points)", open_high=True)] = LEARNED_MARGIN

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.learned))

    @property
    def assertion(self) -> str:
        return f"validation accuracy above the majority-class rate + {self.margin * 100:g} points"

    def describe(self) -> str:
        return f"models {', '.join(self.models)}: {self.assertion}"

    def keywords(self) -> set[str]:
        return {self.kind, *self.models}

    def checked(self, spec: Spec, problem: Report) -> Learned:
        if not self.models:
            problem("learned", "[]", 'a fine-tuned model\'s name or an array of them, e.g. learned = ["seed1", "seed2"]')
        compared = {side.model for c in spec.comparisons for side in (c.a, c.b) if side.snapshot is None}
        snapshots_only = {side.model for c in spec.comparisons for side in (c.a, c.b)} - compared
        for name in self.models:
            model = spec.models.get(name)
            if model is None:
                problem("learned", repr(name), "a model declared under [models]: " + ", ".join(spec.models),
                        did_you_mean(name, spec.models))
            elif not model.is_finetuned:
                problem("learned", repr(name), f"a fine-tuned model (models.{name} is pre-trained: probekit does not "
                        "train it, so it has no validation accuracy)")
            elif model.finetune is not None and model.finetune.objective == "lm":
                problem("learned", repr(name), f"a classification fine-tune (models.{name} trains a language model: "
                        "it has no labels, so no majority-class rate to beat)")
            elif name not in compared:
                where = "only compared through its snapshots" if name in snapshots_only else "in no comparison"
                problem("learned", repr(name), f"a model a comparison uses whole (models.{name} is {where}; a run "
                        "records the validation accuracy of the models it compares)")
        name = self.name or f"{self.key}: learned ({', '.join(self.models)})"
        return replace(self, name=name.strip())

    @classmethod
    def from_table(cls, table: dict, key: str, spec: Spec, problems: list[Problem]) -> Expectation | None:
        strays = [k for k in table if k in COMMON_KEYS and k != "name"]
        for stray in strays:
            problems.append(Problem(f"{key}.{stray}", f"`{stray}` in a learned expectation", "only name, learned, "
                                    "margin: a learned expectation checks the fine-tuned models' validation accuracy, "
                                    "not a metric's layers (put the other assertion in an [[expect]] of its own)"))
        found = super().from_table({k: v for k, v in table.items() if k not in strays}, key, spec, problems)
        return None if strays else found

    def evaluate(self, run: RunView) -> Outcome:
        outcome = Outcome(self, True, "")
        failures, summaries = [], []
        for name in self.models:
            info = run.models.get(name) or {}
            accuracy, majority, chance = info.get("accuracy"), info.get("majority"), info.get("chance")
            needed = None if majority is None else majority + self.margin
            outcome.accuracies[name] = {"accuracy": accuracy, "majority": majority, "chance": chance, "needed": needed}
            if name not in run.models:
                failures.append(f"{name}: no accuracy in these results (the run compared no side models.{name})")
            elif accuracy is None:
                failures.append(f"{name}: no validation accuracy (fine-tuned without validation data: give "
                                f"[models.{name}] validation = \"<data>\")")
            elif majority is None:
                failures.append(f"{name}: accuracy {accuracy:.1%} but no majority-class rate in these results "
                                "(written by an older probekit; rerun with --fresh)")
            elif accuracy > needed:
                summaries.append(f"{name} {accuracy:.1%} > majority {majority:.1%} + {self.margin * 100:g} points")
                continue
            else:
                failures.append(f"{name}: validation accuracy {accuracy:.1%} does not beat the majority-class rate "
                                f"{majority:.1%} by {self.margin * 100:g} points (chance "
                                f"{'?' if chance is None else f'{chance:.1%}'}): training did not learn the task")
            outcome.offending_models.add(name)
        return concluded(outcome, failures, summaries)




