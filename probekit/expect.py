"""Expectations about layer trends (``[[expect]]`` in a spec), checked after a run.

An expectation selects comparison(s), a metric, layers and optionally a head, and
asserts exactly one thing about the selected values:

* bounds: ``below = x`` and/or ``above = x``, for each layer or their mean (``of``);
* a trend: ``trend = "increasing"`` or ``"decreasing"``, with a ``tolerance`` for dips;
* a contrast: ``contrast = { low = "1-4", factor = 3.0 }`` (or ``margin``): the mean
  of the selected layers at least ``factor`` times (or ``margin`` above) the mean of ``low``;
* an ordering: ``closer_than = "other_comparison"`` (or ``farther_than``) on each
  selected layer, or on their mean;
* a baseline: ``baseline = "path/to/results.parquet"`` (or a run folder), every
  selected value within ``tolerance`` of the earlier run's.

Validation (:func:`parse_expectations`) happens with the rest of the spec, before
any model loads; evaluation (:func:`evaluate`) needs only the results table.
docs/testing.md documents the syntax.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from rich.console import Console

    from probekit.spec import Problem, Spec

KINDS = ("bounds", "trend", "contrast", "ordering", "baseline")
TRENDS = ("increasing", "decreasing")
OF = ("each", "mean")
DEFAULT_BASELINE_TOLERANCE = 1e-6
LAYERS_SYNTAX = '"all", "N", "A-B", "first N", "last N", a list such as "1-4, 7", or an array of layer numbers'

#: Keys an ``[[expect]]`` table may have, and the kinds each belongs to (None: every kind).
KEYS: dict[str, tuple[str, ...] | None] = {
    "name": None, "comparison": None, "comparisons": None, "metric": None, "layers": None, "head": None,
    "below": ("bounds",), "above": ("bounds",), "of": ("bounds", "ordering"),
    "trend": ("trend",), "tolerance": ("trend", "baseline"),
    "contrast": ("contrast",),
    "closer_than": ("ordering",), "farther_than": ("ordering",), "margin": ("ordering",),
    "baseline": ("baseline",),
}
CONTRAST_KEYS = ("low", "factor", "margin")


# ------------------------------------------------------------------ layer selections


@dataclass(frozen=True)
class LayerSelection:
    """Which layers an expectation looks at, as written: resolved against the layers a result has.

    ``mode`` is ``"all"``, ``"first"`` / ``"last"`` (``count`` layers of those the
    metric reports) or ``"explicit"`` (``layers``, by number).
    """

    text: str
    mode: str
    count: int = 0
    layers: tuple[int, ...] = ()

    @property
    def size(self) -> int | None:
        """How many layers it selects, when that is known before a model loads."""
        return None if self.mode == "all" else self.count if self.mode in ("first", "last") else len(self.layers)

    def resolve(self, available: Iterable[int]) -> tuple[list[int], list[int] | str]:
        """(selected layers that exist, the missing part: layer numbers or a reason)."""
        available = sorted(available)
        if self.mode == "all":
            return available, []
        if self.mode in ("first", "last"):
            if self.count > len(available):
                return available, f"{self.text!r} asks for {self.count} layers; the results have {len(available)}"
            return (available[: self.count] if self.mode == "first" else available[-self.count :]), []
        present = [layer for layer in self.layers if layer in set(available)]
        return present, [layer for layer in self.layers if layer not in set(available)]

    def __str__(self) -> str:
        return self.text


_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")
_FIRST_LAST = re.compile(r"^(first|last)\s+(\d+)$")


def parse_layers(value: Any) -> LayerSelection:
    """``"all"``, ``"N"``, ``"A-B"``, ``"first N"``, ``"last N"``, ``"1-4, 7"``, ``[1, 2, 5]`` or ``3``.

    Raises ValueError with what is wrong.
    """
    if isinstance(value, bool):
        raise ValueError(f"a boolean {value!r}")
    if isinstance(value, int):
        value = [value]
    if isinstance(value, list | tuple):
        if not value or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ValueError(f"the array {list(value)!r}" + (" (empty)" if not value else ""))
        if any(v < 0 for v in value):
            raise ValueError(f"the array {list(value)!r} (layer numbers start at 0)")
        layers = tuple(dict.fromkeys(value))
        return LayerSelection(format_layers(layers) if len(layers) > 1 else str(layers[0]), "explicit", layers=layers)
    if not isinstance(value, str):
        raise ValueError(f"{type(value).__name__} {value!r}")
    text = " ".join(value.strip().lower().split())
    if text == "all":
        return LayerSelection("all", "all")
    match = _FIRST_LAST.match(text)
    if match:
        count = int(match.group(2))
        if count < 1:
            raise ValueError(f"{value!r} (selects no layer)")
        return LayerSelection(text, match.group(1), count=count)
    layers: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        range_match = _RANGE.match(part)
        if part.isdigit():
            layers.append(int(part))
        elif range_match:
            start, end = int(range_match.group(1)), int(range_match.group(2))
            if start > end:
                raise ValueError(f"{value!r} (the range {part} runs backwards; write {end}-{start})")
            layers.extend(range(start, end + 1))
        else:
            raise ValueError(repr(value))
    layers = list(dict.fromkeys(layers))
    return LayerSelection(value.strip(), "explicit", layers=tuple(layers))


def format_layers(layers: Iterable[int]) -> str:
    """[1, 2, 3, 5] -> "1-3, 5"."""
    layers = sorted(set(layers))
    if not layers:
        return "none"
    parts, start, previous = [], layers[0], layers[0]
    for layer in [*layers[1:], None]:
        if layer is not None and layer == previous + 1:
            previous = layer
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}" if previous > start + 1 else f"{start}, {previous}")
        if layer is not None:
            start = previous = layer
    return ", ".join(parts)


def _selection_word(selection: LayerSelection | None) -> str:
    if selection is None:
        return "layers ?"
    return ("layer " if selection.size == 1 else "layers ") + str(selection)


def _layer_word(layers: Iterable[int]) -> str:
    layers = list(layers)
    return ("layer " if len(layers) == 1 else "layers ") + format_layers(layers)


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
    # trend
    trend: str | None = None
    tolerance: float = 0.0
    # contrast
    low: LayerSelection | None = None
    factor: float | None = None
    margin: float | None = None
    # ordering
    other: str | None = None
    relation: str = "closer"  # "closer": value below the other's; "farther": above
    # baseline
    baseline: Path | None = None
    baseline_values: Mapping[tuple[str, int], float] = field(default_factory=dict, compare=False, repr=False)

    @property
    def assertion(self) -> str:
        """What it asserts, in words: 'above 0.01', 'increasing (tolerance 0.005)', ..."""
        if self.kind == "bounds":
            parts = ([f"above {self.above:g}"] if self.above is not None else []) + (
                [f"below {self.below:g}"] if self.below is not None else [])
            return ("mean " if self.of == "mean" else "each ") + " and ".join(parts)
        if self.kind == "trend":
            return self.trend + (f" (tolerance {self.tolerance:g})" if self.tolerance else "")
        if self.kind == "contrast":
            low = f"the mean of {_selection_word(self.low)}"
            need = ([f"{self.factor:g}x {low}"] if self.factor is not None else []) + (
                [f"{low} + {self.margin:g}"] if self.margin is not None else [])
            return "mean at least " + " and at least ".join(need)
        if self.kind == "ordering":
            return f"{self.relation} than {self.other}" + (" on the mean" if self.of == "mean" else "") + (
                f" by {self.margin:g}" if self.margin else "")
        return f"matches baseline {self.baseline.name if self.baseline else '?'} within {self.tolerance:g}"

    def describe(self) -> str:
        """'svcca of a_vs_b, layers last 2: each above 0.01'."""
        head = f" head {self.head}" if self.head is not None else ""
        return f"{self.metric}{head} of {', '.join(self.comparisons)}, layers {self.layers}: {self.assertion}"


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
    from dataclasses import replace

    return replace(expectation, name=name or f"{metric} {expectation.assertion}")


def parse_expectations(tables: list, spec: Spec, problems: list[Problem]) -> list[Expectation]:
    """Validate the raw ``[[expect]]`` tables against the (otherwise complete) spec.

    Every problem is appended to ``problems`` with its key path (``expect[2].layers``);
    the expectations that validated are returned.
    """
    from probekit.spec import Problem

    if not isinstance(tables, list):
        problems.append(Problem("expect", _type_name(tables), "an array of tables: [[expect]]"))
        return []
    expectations: list[Expectation] = []
    names: dict[str, int] = {}
    for index, table in enumerate(tables):
        key = f"expect[{index}]"
        if not isinstance(table, dict):
            problems.append(Problem(key, _type_name(table), "a table: [[expect]] with comparison, metric, layers and one assertion"))
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
    from probekit.spec import Problem, did_you_mean

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
            problem(name, f"{_type_name(value)} {value!r}", expected)
            return None
        return float(value) if float in kinds and not isinstance(value, str) else value

    # -- which assertion
    present = {
        "bounds": "below" in table or "above" in table,
        "trend": "trend" in table,
        "contrast": "contrast" in table,
        "ordering": "closer_than" in table or "farther_than" in table,
        "baseline": "baseline" in table,
    }
    kinds = [kind for kind, there in present.items() if there]
    kind = kinds[0] if len(kinds) == 1 else None
    if not kinds:
        problem("", "no assertion", "exactly one of: below / above (bounds), trend, contrast, closer_than / farther_than, baseline")
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
            problem("comparisons", f"{_type_name(raw)} {raw!r}", "a non-empty array of comparison names")
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
    if layers is not None and metric_class is not None and "attentions" in metric_class.needs and 0 in layers.layers:
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
        if layers is not None and layers.size is not None and layers.size < 2:
            problem("layers", repr(table.get("layers")), "at least 2 layers for a trend (a trend over one layer always holds)")
    elif kind == "contrast":
        raw = table["contrast"]
        if not isinstance(raw, dict):
            problem("contrast", f"{_type_name(raw)} {raw!r}", '{ low = "1-4", factor = 3.0 } or { low = "1-4", margin = 0.05 }')
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
                problem(f"contrast.{number}", f"{_type_name(value)} {value!r}", "a number")
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
    elif kind == "baseline":
        settings["tolerance"] = _nonnegative(get("tolerance", (int, float), "a number >= 0"), "tolerance", problem,
                                             DEFAULT_BASELINE_TOLERANCE)
        raw = get("baseline", (str,), "the path of a results.parquet file or run folder from an earlier run of this spec")
        if raw is not None:
            check_rows = metric is not None and bool(comparisons) and all(c in known for c in comparisons)
            loaded = _load_baseline(raw, spec, comparisons if check_rows else [], metric, head, problem)
            if loaded is not None:
                settings["baseline"], settings["baseline_values"] = loaded
    name = get("name", (str,), "a string")
    if name is not None and not name.strip():
        problem("name", "an empty name", "a name for the test, or no `name` key")
    if kind is None or layers is None or metric is None or not comparisons:
        return None
    expectation = Expectation(key=key, name="", comparisons=tuple(comparisons), metric=metric, layers=layers, kind=kind,
                              head=head, named=name is not None, **settings)
    from dataclasses import replace

    return replace(expectation, name=name.strip() if name else f"{key}: {metric} {kind}")


def _of(table: dict, problem) -> str:
    value = table.get("of", "each")
    if value not in OF:
        from probekit.spec import did_you_mean

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


def _type_name(value: Any) -> str:
    from probekit.spec import _type_name as spec_type_name

    return spec_type_name(value)


def _load_baseline(raw: str, spec: Spec, comparisons, metric, head, problem):
    from probekit.results import RESULTS_FILE, metadata, read_table

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
    index = _index(table)
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


# ------------------------------------------------------------------ evaluation


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
    from probekit.results import metadata

    index = _index(table)
    errors = [str(e) for e in metadata(table).get("errors", []) or []]
    return [_evaluate_one(expectation, index, errors) for expectation in expectations]


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
        raise _Missing(f"{comparison}: {_layer_word(missing)} not in the results ({metric} has layers {have}; "
                       "is the model smaller than the spec assumes?)")
    if not layers:
        raise _Missing(f"{comparison}: layers {selection} select nothing ({metric} has layers {have})")
    return {layer: series[layer] for layer in layers}


def _evaluate_one(expectation: Expectation, index, errors) -> Outcome:
    try:
        selected = {}
        for comparison in expectation.comparisons:
            selected[comparison] = _select(_series(index, errors, comparison, expectation), expectation.layers, comparison,
                                           expectation.metric)
        for comparison, values in selected.items():
            bad = [layer for layer, value in values.items() if value is None or not math.isfinite(value)]
            if bad:
                outcome = Outcome(expectation, False, f"{comparison}: {_layer_word(bad)} {'is' if len(bad) == 1 else 'are'} "
                                  f"not a number ({', '.join(repr(values[b]) for b in bad)})", values=selected)
                outcome.offending = {(comparison, b) for b in bad}
                return outcome
        return CHECKS[expectation.kind](expectation, selected, index, errors)
    except _Missing as missing:
        return Outcome(expectation, False, str(missing))


def _fmt(value: float) -> str:
    return f"{value:.4g}" if value is not None and math.isfinite(value) and (abs(value) >= 1e-3 or value == 0) else f"{value:.3e}"


def _where(comparison: str, expectation: Expectation, layers) -> str:
    multi = len(expectation.comparisons) > 1
    return (f"{comparison} " if multi else "") + _layer_word(layers)


def _concluded(outcome: Outcome, failures: list[str], summaries: list[str]) -> Outcome:
    """The outcome passes when nothing failed; its reason lists the failures, else what held."""
    outcome.passed = not failures
    outcome.reason = "; ".join(failures or summaries)
    return outcome


def _check_bounds(expectation: Expectation, selected, index, errors) -> Outcome:
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


def trend_limits(values: Mapping[int, float], increasing: bool, tolerance: float) -> dict[int, tuple[float, int]]:
    """For each layer after the first: (the bound it must respect, the earlier layer that sets it).

    Increasing with tolerance t: each layer is at least the largest earlier value minus t
    (so small dips pass, and a run of small dips cannot add up); decreasing mirrors it.
    """
    layers = sorted(values)
    limits = {}
    best = layers[0] if layers else None
    for layer in layers[1:]:
        limits[layer] = (values[best] - tolerance if increasing else values[best] + tolerance, best)
        if (values[layer] > values[best]) if increasing else (values[layer] < values[best]):
            best = layer
    return limits


def trend_offenders(values: Mapping[int, float], increasing: bool, tolerance: float = 0.0) -> list[int]:
    """The layers that break the trend (see :func:`trend_limits`)."""
    return [layer for layer, (limit, _) in trend_limits(values, increasing, tolerance).items()
            if (values[layer] < limit if increasing else values[layer] > limit)]


def _check_trend(expectation: Expectation, selected, index, errors) -> Outcome:
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
            failures.append(f"{where} not {expectation.trend}: {_layer_word(bad)} {verb} "
                            f"{direction} an earlier layer by more than the tolerance {tolerance:g} "
                            f"(worst: layer {layer} = {_fmt(values[layer])} vs layer {earlier} = {_fmt(values[earlier])})")
        else:
            summaries.append(f"{where} {expectation.trend} ({_fmt(values[layers[0]])} .. {_fmt(values[layers[-1]])})")
    return _concluded(outcome, failures, summaries)


def _check_contrast(expectation: Expectation, selected, index, errors) -> Outcome:
    outcome = Outcome(expectation, True, "", values={})
    failures, summaries = [], []
    for comparison, high in selected.items():
        low = _select(_series(index, errors, comparison, expectation), expectation.low, comparison, expectation.metric)
        outcome.values[comparison] = dict(sorted({**low, **high}.items()))
        for layer in low:
            outcome.groups[(comparison, layer)] = "low"
        for layer in high:
            outcome.groups[(comparison, layer)] = "high" if layer not in low else "high+low"
        high_mean = math.fsum(high.values()) / len(high)
        low_mean = math.fsum(low.values()) / len(low)
        needed = max(([expectation.factor * low_mean] if expectation.factor is not None else [])
                     + ([low_mean + expectation.margin] if expectation.margin is not None else []))
        ratio = f", {high_mean / low_mean:.2f}x" if low_mean > 0 else ""
        where = f"{comparison} " if len(selected) > 1 else ""
        text = (f"{where}mean of {_layer_word(high)} = {_fmt(high_mean)} vs mean of {_layer_word(low)} = "
                f"{_fmt(low_mean)}{ratio}")
        outcome.notes.append(f"{where}high mean {_fmt(high_mean)}, low mean {_fmt(low_mean)}{ratio}; "
                             f"needed high mean >= {_fmt(needed)}")
        if high_mean >= needed:
            summaries.append(text)
        else:
            outcome.offending.update((comparison, layer) for layer in high)
            failures.append(f"{text}; expected at least {_fmt(needed)} ({expectation.assertion.removeprefix('mean ')})")
    return _concluded(outcome, failures, summaries)


def _check_ordering(expectation: Expectation, selected, index, errors) -> Outcome:
    other_name = expectation.other
    closer = expectation.relation == "closer"
    margin = expectation.margin or 0.0
    other_series = _series(index, errors, other_name, expectation)
    outcome = Outcome(expectation, True, "", values=dict(selected))
    failures, summaries = [], []
    sign = "<" if closer else ">"

    def ok(mine: float, theirs: float) -> bool:
        return mine < theirs - margin if closer else mine > theirs + margin

    for comparison, values in selected.items():
        layers = list(values)
        missing = [layer for layer in layers if layer not in other_series]
        if missing:
            raise _Missing(f"{other_name}: {_layer_word(missing)} not in the results "
                           f"({expectation.metric} has layers {format_layers(other_series)})")
        theirs = {layer: other_series[layer] for layer in layers}
        outcome.values[other_name] = {**outcome.values.get(other_name, {}), **theirs}
        bound = f" {'-' if closer else '+'} {margin:g}" if margin else ""
        if expectation.of == "mean":
            mine_mean = math.fsum(values.values()) / len(values)
            their_mean = math.fsum(theirs.values()) / len(theirs)
            text = f"mean of {comparison} {_layer_word(layers)} = {_fmt(mine_mean)} vs {other_name} {_fmt(their_mean)}"
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
            summaries.append(f"{comparison} {expectation.relation} than {other_name} on {_layer_word(layers)}")
    return _concluded(outcome, failures, summaries)


def _check_baseline(expectation: Expectation, selected, index, errors) -> Outcome:
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
            failures.append(f"{comparison}: {_layer_word(absent)} not in the baseline")
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


CHECKS = {"bounds": _check_bounds, "trend": _check_trend, "contrast": _check_contrast,
          "ordering": _check_ordering, "baseline": _check_baseline}


# ------------------------------------------------------------------ showing outcomes


def format_table(outcome: Outcome) -> str:
    """comparison | layer | value | expected, one line per involved layer; '<-- fails' marks offenders."""
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


def summary(outcomes: Iterable[Outcome]) -> str:
    """'3 passed, 1 failed'."""
    outcomes = list(outcomes)
    failed = sum(not o.passed for o in outcomes)
    passed = len(outcomes) - failed
    parts = ([f"{passed} passed"] if passed or not failed else []) + ([f"{failed} failed"] if failed else [])
    return ", ".join(parts)


def render_outcomes(outcomes: Iterable[Outcome], console: Console) -> None:
    """One line per expectation (PASSED / FAILED, name, reason), then pytest's summary line."""
    from rich.rule import Rule
    from rich.text import Text

    outcomes = list(outcomes)
    if not outcomes:
        return
    console.print(Text("\nexpectations", style="bold"))
    for outcome in outcomes:
        status = Text("PASSED", style="bold green") if outcome.passed else Text("FAILED", style="bold red")
        console.print(Text.assemble(status, " ", (outcome.name, "bold"), " - ", outcome.reason), soft_wrap=True)
    failed = any(not o.passed for o in outcomes)
    console.print(Rule(Text(summary(outcomes), style="bold red" if failed else "bold green"),
                       style="red" if failed else "green"))
