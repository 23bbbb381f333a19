"""Expectations about layer trends (``[[expect]]`` in a spec), checked after a run.

An expectation selects comparison(s), a metric, layers and optionally a head, and
asserts exactly one thing about the selected values:

* bounds: ``below = x`` and/or ``above = x``, for each layer or their mean (``of``);
* a trend: ``trend = "increasing"`` or ``"decreasing"``, with a ``tolerance`` for dips,
  or as statistics: a Spearman correlation with depth of at least ``spearman`` and
  at most a share ``violations`` of layer pairs in the wrong order;
* a contrast: ``contrast = { low = "1-4", factor = 3.0 }`` (or ``margin``): the mean
  of the selected layers at least ``factor`` times (or ``margin`` above) the mean of ``low``;
* an ordering: ``closer_than = "other_comparison"`` (or ``farther_than``) on each
  selected layer, or on their mean;
* a share: ``share_of = "other_comparison"`` with ``at_least`` (and/or ``at_most``): each
  selected layer's change (a distance's value, a similarity's 1 - value), or their mean's,
  is at least that fraction of the other comparison's, e.g. "by step 2000 the lower
  layers have made 90% of their final move";
* a baseline: ``baseline = "path/to/results.parquet"`` (or a run folder), every
  selected value within ``tolerance`` of the earlier run's;
* learned: ``learned = ["seed1", "seed2"]`` (no metric, no layers): each fine-tuned
  model's validation accuracy beats the majority-class rate of its validation data by
  ``margin`` (default :data:`LEARNED_MARGIN`), so a test fails when training silently stopped working.

Bounds, contrasts and orderings take ``confidence = 0.95``: they then hold only if
the whole bootstrap interval of each value satisfies them (``[run] bootstrap``).

Validation (:func:`parse_expectations`) happens with the rest of the spec, before
any model loads; evaluation (:func:`evaluate`) needs only the results table.
docs/testing.md documents the syntax.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probekit.errors import Problem, did_you_mean, type_name
from probekit.metrics.base import supports_bootstrap
from probekit.results.io import RESULTS_FILE, metadata, read_table
from probekit.results.layers import LAYERS_SYNTAX, LayerSelection, parse_layers, selection_word, series_index

if TYPE_CHECKING:
    from probekit.spec.model import Spec

KINDS = ("bounds", "trend", "contrast", "ordering", "share", "baseline", "learned")
#: How far (a fraction: 0.02 = 2 points) a fine-tune's validation accuracy must beat the majority-class
#: rate of its validation data: the default margin of ``learned``, and where a run warns.
LEARNED_MARGIN = 0.02
TRENDS = ("increasing", "decreasing")
OF = ("each", "mean")
DEFAULT_BASELINE_TOLERANCE = 1e-6

#: Keys an ``[[expect]]`` table may have, and the kinds each belongs to (None: every kind).
KEYS: dict[str, tuple[str, ...] | None] = {
    "name": None, "comparison": None, "comparisons": None, "metric": None, "layers": None, "head": None,
    "below": ("bounds",), "above": ("bounds",), "of": ("bounds", "ordering", "share"),
    "trend": ("trend",), "tolerance": ("trend", "baseline"), "spearman": ("trend",), "violations": ("trend",),
    "confidence": ("bounds", "contrast", "ordering"),
    "contrast": ("contrast",),
    "closer_than": ("ordering",), "farther_than": ("ordering",), "margin": ("ordering", "learned"),
    "share_of": ("share",), "at_least": ("share",), "at_most": ("share",),
    "baseline": ("baseline",), "learned": ("learned",),
}
#: The keys a ``learned`` expectation takes (it reads the models' accuracies, no metric or layers).
LEARNED_KEYS = ("name", "learned", "margin")
CONTRAST_KEYS = ("low", "factor", "margin")

# ------------------------------------------------------------------ expectations


@dataclass(frozen=True)
class Expectation:
    """One validated ``[[expect]]`` table (or an assertion helper's equivalent)."""

    key: str  # "expect[2]": where it is in the spec
    name: str
    comparisons: tuple[str, ...]
    metric: str
    layers: LayerSelection
    kind: str  # one of KINDS
    head: int | None = None
    named: bool = False  # whether the spec gave it a name
    # bounds
    below: float | None = None
    above: float | None = None
    of: str = "each"
    # bounds, contrast, ordering: the interval level the whole interval must satisfy it at
    confidence: float | None = None
    # trend
    trend: str | None = None
    tolerance: float = 0.0
    spearman: float | None = None  # the least Spearman correlation of value with depth (sign by the trend)
    violations: float | None = None  # the largest share of layer pairs in the wrong order
    # contrast
    low: LayerSelection | None = None
    factor: float | None = None
    margin: float | None = None
    # ordering, share: the other comparison
    other: str | None = None
    relation: str = "closer"  # "closer": value below the other's; "farther": above
    # share: the least and most fraction of the other comparison's change
    at_least: float | None = None
    at_most: float | None = None
    # baseline
    baseline: Path | None = None
    baseline_values: Mapping[tuple[str, int], float] = field(default_factory=dict, compare=False, repr=False)
    # learned: the fine-tuned models whose validation accuracy must beat the majority-class rate by ``margin``
    models: tuple[str, ...] = ()

    @property
    def assertion(self) -> str:
        """What it asserts, in words: 'above 0.01', 'increasing (tolerance 0.005)', ..."""
        if self.kind == "trend":
            return self.trend + _trend_statistics(self)
        return self._plain_assertion() + (f" at {self.confidence:g} confidence" if self.confidence else "")

    def _plain_assertion(self) -> str:
        if self.kind == "bounds":
            parts = ([f"above {self.above:g}"] if self.above is not None else []) + (
                [f"below {self.below:g}"] if self.below is not None else [])
            return ("mean " if self.of == "mean" else "each ") + " and ".join(parts)
        if self.kind == "contrast":
            low = f"the mean of {selection_word(self.low)}"
            need = ([f"{self.factor:g}x {low}"] if self.factor is not None else []) + (
                [f"{low} + {self.margin:g}"] if self.margin is not None else [])
            return "mean at least " + " and at least ".join(need)
        if self.kind == "ordering":
            return f"{self.relation} than {self.other}" + (" on the mean" if self.of == "mean" else "") + (
                f" by {self.margin:g}" if self.margin else "")
        if self.kind == "share":
            parts = ([f"at least {self.at_least:.0%}"] if self.at_least is not None else []) + (
                [f"at most {self.at_most:.0%}"] if self.at_most is not None else [])
            return ("mean " if self.of == "mean" else "each ") + " and ".join(parts) + f" of {self.other}'s change"
        if self.kind == "learned":
            margin = LEARNED_MARGIN if self.margin is None else self.margin
            return f"validation accuracy above the majority-class rate + {margin * 100:g} points"
        return f"matches baseline {self.baseline.name if self.baseline else '?'} within {self.tolerance:g}"

    def describe(self) -> str:
        """'svcca of a_vs_b, layers last 2: each above 0.01'."""
        if self.kind == "learned":
            return f"models {', '.join(self.models)}: {self.assertion}"
        head = f" head {self.head}" if self.head is not None else ""
        return f"{self.metric}{head} of {', '.join(self.comparisons)}, layers {self.layers}: {self.assertion}"


def _trend_statistics(expectation: Expectation) -> str:
    if expectation.spearman is None and expectation.violations is None:
        return f" (tolerance {expectation.tolerance:g})" if expectation.tolerance else ""
    parts = ([f"Spearman >= {expectation.spearman:g}"] if expectation.spearman is not None else []) + (
        [f"violations <= {expectation.violations:g}"] if expectation.violations is not None else [])
    return " (" + ", ".join(parts) + ")"


def make_expectation(
    kind: str,
    comparisons: str | Iterable[str],
    metric: str,
    layers: Any = "all",
    *,
    name: str | None = None,
    key: str = "assertion",
    head: int | None = None,
    **settings: Any,
) -> Expectation:
    """An expectation built in Python (the assertion helpers use this); ValueError on bad arguments."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    comparisons = (comparisons,) if isinstance(comparisons, str) else tuple(comparisons)
    selection = layers if isinstance(layers, LayerSelection) else parse_layers(layers)
    if "low" in settings and not isinstance(settings["low"], LayerSelection):
        settings["low"] = parse_layers(settings["low"])
    if "baseline" in settings and settings["baseline"] is not None:
        settings["baseline"] = Path(settings["baseline"])
    if settings.get("of", "each") not in OF:
        raise ValueError(f"of = {settings['of']!r} is not one of {', '.join(map(repr, OF))}")
    if kind == "trend" and settings.get("trend") not in TRENDS:
        raise ValueError(f"trend {settings.get('trend')!r} is not one of {', '.join(map(repr, TRENDS))}")
    if kind == "trend" and selection.size is not None and selection.size < 2:
        raise ValueError(f"a trend needs at least 2 layers; layers {selection} selects {selection.size}")
    if kind == "contrast" and settings.get("factor") is None and settings.get("margin") is None:
        raise ValueError("a contrast needs a factor or a margin")
    if kind == "bounds" and settings.get("below") is None and settings.get("above") is None:
        raise ValueError("bounds need a value below or above")
    expectation = Expectation(key=key, name="", comparisons=comparisons, metric=metric, layers=selection, kind=kind,
                              head=head, named=name is not None, **settings)
    return replace(expectation, name=name or f"{metric} {expectation.assertion}")


def parse_expectations(tables: list, spec: Spec, problems: list[Problem]) -> list[Expectation]:
    """Validate the raw ``[[expect]]`` tables against the (otherwise complete) spec.

    Every problem is appended to ``problems`` with its key path (``expect[2].layers``);
    the expectations that validated are returned.
    """
    if not isinstance(tables, list):
        problems.append(Problem("expect", type_name(tables), "an array of tables: [[expect]]"))
        return []
    expectations: list[Expectation] = []
    names: dict[str, int] = {}
    for index, table in enumerate(tables):
        key = f"expect[{index}]"
        if not isinstance(table, dict):
            problems.append(Problem(key, type_name(table), "a table: [[expect]] with comparison, metric, layers and one assertion"))
            continue
        before = len(problems)
        expectation = _parse_one(index, table, spec, problems)
        if expectation is None or len(problems) > before:
            continue
        if expectation.name in names:
            problems.append(Problem(f"{key}.name", repr(expectation.name),
                                    f"a name no other expectation uses (expect[{names[expectation.name]}] has it)"))
            continue
        names[expectation.name] = index
        expectations.append(expectation)
    return expectations


def _parse_one(index: int, table: dict, spec: Spec, problems: list[Problem]) -> Expectation | None:
    key = f"expect[{index}]"

    def problem(sub: str, found: str, expected: str, hint: str = "") -> None:
        problems.append(Problem(f"{key}.{sub}" if sub else key, found, expected, hint))

    for unknown in [k for k in table if k not in KEYS]:
        problem(unknown, "an unknown key", "one of " + ", ".join(KEYS), did_you_mean(unknown, KEYS))

    def get(name: str, kinds: tuple[type, ...], expected: str):
        if name not in table:
            return None
        value = table[name]
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            problem(name, f"{type_name(value)} {value!r}", expected)
            return None
        return float(value) if float in kinds and not isinstance(value, str) else value

    if "learned" in table:
        return _parse_learned(key, table, spec, problem, get)

    # -- which assertion
    present = {
        "bounds": "below" in table or "above" in table,
        "trend": "trend" in table,
        "contrast": "contrast" in table,
        "ordering": "closer_than" in table or "farther_than" in table,
        "share": "share_of" in table,
        "baseline": "baseline" in table,
    }
    kinds = [kind for kind, there in present.items() if there]
    kind = kinds[0] if len(kinds) == 1 else None
    if not kinds:
        problem("", "no assertion", "exactly one of: below / above (bounds), trend, contrast, closer_than / farther_than, "
                "share_of, baseline, learned")
    elif len(kinds) > 1:
        problem("", "several assertions: " + ", ".join(kinds), "exactly one assertion per [[expect]] (split it into several)")
    for other_key, belongs in KEYS.items():
        if kind is not None and other_key in table and belongs is not None and kind not in belongs:
            problem(other_key, f"`{other_key}` in a {kind} expectation",
                    f"`{other_key}` only in " + " or ".join(f"{b} expectations" for b in belongs))

    # -- comparisons
    known = [c.name for c in spec.comparisons]
    comparisons: list[str] = []
    if "comparison" in table and "comparisons" in table:
        problem("comparisons", "both `comparison` and `comparisons`", "one of them")
    elif "comparisons" in table:
        raw = table["comparisons"]
        if not isinstance(raw, list) or not raw or not all(isinstance(c, str) for c in raw):
            problem("comparisons", f"{type_name(raw)} {raw!r}", "a non-empty array of comparison names")
        else:
            comparisons = list(dict.fromkeys(raw))
    elif "comparison" in table:
        raw = get("comparison", (str,), "a comparison name (or comparisons = [...])")
        comparisons = [raw] if raw is not None else []
    elif len(known) == 1:
        comparisons = known
    else:
        problem("comparison", "nothing", "the name of the comparison to check (or comparisons = [...]); the spec has "
                + (", ".join(known) or "no valid comparison"))
    comparison_key = "comparisons" if "comparisons" in table else "comparison"
    for name in comparisons:
        if name not in known:
            problem(comparison_key, repr(name), "a comparison of this spec: " + (", ".join(known) or "none declared validly"),
                    did_you_mean(name, known))
    # -- metric
    metric = get("metric", (str,), "a metric label declared under [metrics]")
    if "metric" not in table:
        problem("metric", "nothing", "a metric label declared under [metrics]: " + ", ".join(spec.metrics))
    elif metric is not None and metric not in spec.metrics:
        problem("metric", repr(metric), "a metric declared under [metrics]: " + ", ".join(spec.metrics),
                did_you_mean(metric, spec.metrics))
        metric = None
    if metric is not None:
        by_name = {c.name: c for c in spec.comparisons}
        for name in comparisons:
            if name in by_name and metric not in by_name[name].metrics:
                problem("metric", repr(metric), f"a metric that comparison {name!r} runs ({', '.join(by_name[name].metrics)}); "
                        f"add {metric!r} to its metrics or drop this expectation")
    metric_class = spec.metrics[metric].metric_class if metric in spec.metrics else None
    # -- layers and head
    layers = None
    try:
        layers = parse_layers(table.get("layers", "all"))
    except ValueError as error:
        problem("layers", str(error), LAYERS_SYNTAX)
    if layers is not None and metric_class is not None and metric_class.layers == "attentions" and 0 in layers.layers:
        problem("layers", repr(table.get("layers")), f"attention layers of {metric!r}, which start at 1 (layer 0 is the embedding output)")
        layers = None
    head = None
    if "head" in table:
        head = get("head", (int,), "a head number (0-based)")
        if head is not None and head < 0:
            problem("head", repr(head), "a head number >= 0")
            head = None
        if metric_class is not None and not metric_class.per_head:
            problem("head", repr(table["head"]), f"no head: {metric!r} ({metric_class.name}) has one value per layer, not per head")
            head = None

    settings: dict[str, Any] = {}
    if kind == "bounds":
        number = "a number"
        settings["below"] = get("below", (int, float), number)
        settings["above"] = get("above", (int, float), number)
        if settings["below"] is not None and settings["above"] is not None and settings["above"] >= settings["below"]:
            problem("above", repr(settings["above"]), f"a lower bound below `below` ({settings['below']:g})")
        settings["of"] = _of(table, problem)
    elif kind == "trend":
        trend = get("trend", (str,), "'increasing' or 'decreasing'")
        if trend is not None and trend not in TRENDS:
            problem("trend", repr(trend), "'increasing' or 'decreasing'", did_you_mean(trend, TRENDS))
        settings["trend"] = trend
        settings["tolerance"] = _nonnegative(get("tolerance", (int, float), "a number >= 0"), "tolerance", problem, 0.0)
        settings.update(_trend_statistics_of(get, problem))
        if layers is not None and layers.size is not None and layers.size < 2:
            problem("layers", repr(table.get("layers")), "at least 2 layers for a trend (a trend over one layer always holds)")
    elif kind == "contrast":
        raw = table["contrast"]
        if not isinstance(raw, dict):
            problem("contrast", f"{type_name(raw)} {raw!r}", '{ low = "1-4", factor = 3.0 } or { low = "1-4", margin = 0.05 }')
            return None
        unknown_keys = [k for k in raw if k not in CONTRAST_KEYS]
        for unknown in unknown_keys:
            problem(f"contrast.{unknown}", "an unknown key", "one of " + ", ".join(CONTRAST_KEYS), did_you_mean(unknown, CONTRAST_KEYS))
        if "low" not in raw:
            if not unknown_keys:
                problem("contrast.low", "nothing", 'the layers expected to stay lower, e.g. low = "1-4"')
        else:
            try:
                settings["low"] = parse_layers(raw["low"])
            except ValueError as error:
                problem("contrast.low", str(error), LAYERS_SYNTAX)
        for number in ("factor", "margin"):
            value = raw.get(number)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                problem(f"contrast.{number}", f"{type_name(value)} {value!r}", "a number")
            elif number == "factor" and value <= 0:
                problem("contrast.factor", repr(value), "a positive factor (the mean of `layers` >= factor x the mean of `low`)")
            else:
                settings[number] = float(value)
        if "factor" not in raw and "margin" not in raw and not unknown_keys:
            problem("contrast", "neither `factor` nor `margin`", "factor = F (mean >= F x mean of low) or margin = M (mean >= mean of low + M)")
    elif kind == "ordering":
        if "closer_than" in table and "farther_than" in table:
            problem("farther_than", "both `closer_than` and `farther_than`", "one of them")
            return None
        relation = "closer" if "closer_than" in table else "farther"
        other = get(f"{relation}_than", (str,), "the name of another comparison")
        if other is not None:
            if other not in known:
                problem(f"{relation}_than", repr(other), "a comparison of this spec: " + ", ".join(known), did_you_mean(other, known))
            elif other in comparisons:
                problem(f"{relation}_than", repr(other), "a comparison other than the one(s) it is ordered against")
            elif metric is not None and metric not in next(c for c in spec.comparisons if c.name == other).metrics:
                problem(f"{relation}_than", repr(other), f"a comparison that runs {metric!r}")
        settings.update(other=other, relation=relation, of=_of(table, problem))
        settings["margin"] = _nonnegative(get("margin", (int, float), "a number >= 0"), "margin", problem, 0.0)
    elif kind == "share":
        settings.update(_parse_share(table, spec, comparisons, metric, problem, get))
    elif kind == "baseline":
        settings["tolerance"] = _nonnegative(get("tolerance", (int, float), "a number >= 0"), "tolerance", problem,
                                             DEFAULT_BASELINE_TOLERANCE)
        raw = get("baseline", (str,), "the path of a results.parquet file or run folder from an earlier run of this spec")
        if raw is not None:
            check_rows = metric is not None and bool(comparisons) and all(c in known for c in comparisons)
            loaded = _load_baseline(raw, spec, comparisons if check_rows else [], metric, head, problem)
            if loaded is not None:
                settings["baseline"], settings["baseline_values"] = loaded
    if "confidence" in table and kind in ("bounds", "contrast", "ordering"):
        settings["confidence"] = _confidence(get("confidence", (int, float), "a level in (0, 1), e.g. 0.95"),
                                             spec, metric_class, problem)
    name = get("name", (str,), "a string")
    if name is not None and not name.strip():
        problem("name", "an empty name", "a name for the test, or no `name` key")
    if kind is None or layers is None or metric is None or not comparisons:
        return None
    expectation = Expectation(key=key, name="", comparisons=tuple(comparisons), metric=metric, layers=layers, kind=kind,
                              head=head, named=name is not None, **settings)
    return replace(expectation, name=name.strip() if name else f"{key}: {metric} {kind}")


def _parse_learned(key: str, table: dict, spec: Spec, problem, get) -> Expectation | None:
    """``learned = ["seed1", ...]``, optional ``margin``: fine-tuned models that must beat their majority-class rate."""
    ok = True
    for other in [k for k in table if k in KEYS and k not in LEARNED_KEYS]:
        problem(other, f"`{other}` in a learned expectation", "only " + ", ".join(LEARNED_KEYS) + ": a learned "
                "expectation checks the fine-tuned models' validation accuracy, not a metric's layers "
                "(put the other assertion in an [[expect]] of its own)")
        ok = False
    raw = table["learned"]
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        problem("learned", f"{type_name(raw)} {raw!r}", 'a fine-tuned model\'s name or an array of them, '
                'e.g. learned = ["seed1", "seed2"]')
        return None
    compared = {side.model for c in spec.comparisons for side in (c.a, c.b) if side.snapshot is None}
    snapshots_only = {side.model for c in spec.comparisons for side in (c.a, c.b)} - compared
    names = list(dict.fromkeys(names))
    for name in names:
        model = spec.models.get(name)
        if model is None:
            problem("learned", repr(name), "a model declared under [models]: " + ", ".join(spec.models),
                    did_you_mean(name, spec.models))
        elif not model.is_finetuned:
            problem("learned", repr(name), f"a fine-tuned model (models.{name} is pre-trained: probekit does not "
                    "train it, so it has no validation accuracy)")
        elif name not in compared:
            where = "only compared through its snapshots" if name in snapshots_only else "in no comparison"
            problem("learned", repr(name), f"a model a comparison uses whole (models.{name} is {where}; a run "
                    "records the validation accuracy of the models it compares)")
        else:
            continue
        ok = False
    margin = get("margin", (int, float), "a fraction of accuracy >= 0 and < 1 (0.05 = 5 points)")
    if margin is not None and not 0 <= margin < 1:
        problem("margin", repr(table["margin"]), "a fraction of accuracy >= 0 and < 1 (0.05 = 5 points)")
        ok = False
    name = get("name", (str,), "a string")
    if name is not None and not name.strip():
        problem("name", "an empty name", "a name for the test, or no `name` key")
        ok = False
    if not ok:
        return None
    return Expectation(key=key, name=name.strip() if name else f"{key}: learned ({', '.join(names)})", comparisons=(),
                       metric="", layers=parse_layers("all"), kind="learned", named=name is not None,
                       models=tuple(names), margin=LEARNED_MARGIN if margin is None else margin)


def _trend_statistics_of(get, problem) -> dict[str, float]:
    """``spearman`` in (0, 1] and ``violations`` in [0, 1): a trend judged as statistics instead of a monotone walk."""
    statistics = {}
    spearman = get("spearman", (int, float), "a correlation in (0, 1], e.g. 0.8")
    if spearman is not None:
        if 0 < spearman <= 1:
            statistics["spearman"] = spearman
        else:
            problem("spearman", repr(spearman), "a correlation in (0, 1] (the sign comes from the trend), e.g. 0.8")
    violations = get("violations", (int, float), "a share of layer pairs in [0, 1), e.g. 0.1")
    if violations is not None:
        if 0 <= violations < 1:
            statistics["violations"] = violations
        else:
            problem("violations", repr(violations), "a share of layer pairs in [0, 1), e.g. 0.1")
    return statistics


def _confidence(level, spec: Spec, metric_class, problem) -> float | None:
    """An expectation's ``confidence``: the run's interval level, on a run with intervals of a metric that has them."""
    if level is None:
        return None
    if not 0 < level < 1:
        problem("confidence", repr(level), "a level in (0, 1), e.g. 0.95")
    elif not spec.run.bootstrap:
        problem("confidence", repr(level), "intervals to check: set [run] bootstrap = true (200 replicates) or a "
                "number of replicates")
    elif level != spec.run.confidence:
        problem("confidence", repr(level), f"the level of the run's intervals, [run] confidence = {spec.run.confidence:g} "
                "(one level per run: change either)")
    elif metric_class is not None and not supports_bootstrap(metric_class):
        problem("confidence", repr(level), f"a metric with intervals; {metric_class.name!r} has none (its plugin "
                "implements no `pooled`)")
    else:
        return float(level)
    return None


def _parse_share(table: dict, spec: Spec, comparisons: list[str], metric: str | None, problem, get) -> dict:
    """``share_of = "<comparison>"`` and ``at_least`` / ``at_most``: fractions of that comparison's change."""
    known = [c.name for c in spec.comparisons]
    other = get("share_of", (str,), "the name of the comparison whose change is the whole (e.g. the final checkpoint's)")
    if other is not None:
        if other not in known:
            problem("share_of", repr(other), "a comparison of this spec: " + ", ".join(known), did_you_mean(other, known))
        elif other in comparisons:
            problem("share_of", repr(other), "a comparison other than the one(s) whose share it measures")
        elif metric is not None and metric not in next(c for c in spec.comparisons if c.name == other).metrics:
            problem("share_of", repr(other), f"a comparison that runs {metric!r}")
    bounds = {}
    for name in ("at_least", "at_most"):
        value = get(name, (int, float), "a fraction of the other comparison's change, e.g. 0.9")
        if value is not None and value < 0:
            problem(name, repr(value), "a fraction >= 0, e.g. 0.9")
        elif value is not None:
            bounds[name] = float(value)
    if not bounds and "at_least" not in table and "at_most" not in table:
        problem("share_of", repr(other), "beside at_least = F and/or at_most = F (fractions of its change)")
    return {"other": other, "of": _of(table, problem), **bounds}


def _of(table: dict, problem) -> str:
    value = table.get("of", "each")
    if value not in OF:
        problem("of", repr(value), "'each' (every selected layer) or 'mean' (their mean)", did_you_mean(str(value), OF))
        return "each"
    return value


def _nonnegative(value, key: str, problem, default: float) -> float:
    if value is None:
        return default
    if value < 0:
        problem(key, repr(value), "a number >= 0")
        return default
    return float(value)


def _load_baseline(raw: str, spec: Spec, comparisons, metric, head, problem):
    path = Path(raw).expanduser()
    path = path if path.is_absolute() else spec.path.parent / path
    file = path / RESULTS_FILE if path.is_dir() else path
    if not file.is_file():
        what = f"{path} has no {RESULTS_FILE}" if path.is_dir() else f"{path} does not exist"
        problem("baseline", repr(raw), f"a results.parquet file or run folder from an earlier run of this spec ({what})")
        return None
    try:
        table = read_table(file)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same problem for the user
        problem("baseline", repr(raw), f"a readable results.parquet file ({file}: {error})")
        return None
    baseline_spec = metadata(table).get("spec_name")
    if baseline_spec != spec.name:
        problem("baseline", f"{raw!r}, results of spec {baseline_spec!r}", f"results of this spec ({spec.name!r}); "
                "a baseline from another spec measures other models or data")
        return None
    values = {}
    index = series_index(table)
    missing = []
    for comparison in comparisons:
        series = index.get((comparison, metric, head))
        if not series:
            missing.append(comparison)
            continue
        values.update({(comparison, layer): value for layer, value in series.items()})
    if missing:
        head_text = f" head {head}" if head is not None else ""
        problem("baseline", repr(raw), f"a baseline with {metric}{head_text} results for {', '.join(missing)} "
                f"(it has: {', '.join(sorted({f'{c}/{m}' for c, m, _ in index})) or 'no results'})")
        return None
    return file, values


