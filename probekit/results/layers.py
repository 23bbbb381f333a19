"""Layer selections ("last 2", "1-4, 7", ...) and the layer-series helpers shared by expectations and the API."""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

LAYERS_SYNTAX = '"all", "N", "A-B", "first N", "last N", a list such as "1-4, 7", or an array of layer numbers'

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


def selection_word(selection: LayerSelection | None) -> str:
    if selection is None:
        return "layers ?"
    return ("layer " if selection.size == 1 else "layers ") + str(selection)


def layer_word(layers: Iterable[int]) -> str:
    layers = list(layers)
    return ("layer " if len(layers) == 1 else "layers ") + format_layers(layers)


def series_rows(table: pa.Table, columns: list[str]) -> list[dict[str, Any]]:
    """``columns`` of the rows that make layer series: all but a cross-layer matrix's off-diagonal cells.

    A cross-layer metric's diagonal (layer i of a against layer i of b) is its layer
    series, so reports, expectations and diffs read it like any layer-wise metric.
    """
    extra = ["layer_b"] if "layer_b" in table.column_names and "layer_b" not in columns else []
    rows = table.select([*columns, *extra]).to_pylist()
    return [row for row in rows if row.get("layer_b") is None or row["layer_b"] == row["layer"]]


def series_index(table: pa.Table) -> dict[tuple[str, str, int | None], dict[int, float]]:
    """(comparison, metric, head) -> {layer: value}."""
    index: dict[tuple[str, str, int | None], dict[int, float]] = {}
    for row in series_rows(table, ["comparison", "metric", "layer", "head", "value"]):
        index.setdefault((row["comparison"], row["metric"], row["head"]), {})[row["layer"]] = row["value"]
    return index


def interval_index(table: pa.Table) -> dict[tuple[str, str, int | None], dict[int, tuple[float, float]]]:
    """(comparison, metric, head) -> {layer: (ci_low, ci_high)}, for the rows that have an interval."""
    if "ci_low" not in table.column_names:  # results written before intervals existed
        return {}
    index: dict[tuple[str, str, int | None], dict[int, tuple[float, float]]] = {}
    for row in series_rows(table, ["comparison", "metric", "layer", "head", "ci_low", "ci_high"]):
        if row["ci_low"] is not None and row["ci_high"] is not None:
            index.setdefault((row["comparison"], row["metric"], row["head"]), {})[row["layer"]] = (row["ci_low"], row["ci_high"])
    return index


def trend_statistics(values: Mapping[int, float], increasing: bool) -> tuple[float, float]:
    """(Spearman correlation of value with depth, share of layer pairs i < j in the wrong order).

    The sign of the correlation is the trend's: +1 is a perfect increase when
    ``increasing``, a perfect decrease otherwise. Ties are not violations.
    """
    import scipy.stats  # here, not at the top: `probekit ls` and `diff` read results without it (~2 s of a start)

    layers = sorted(values)
    series = [values[layer] for layer in layers]
    rho = float(scipy.stats.spearmanr(layers, series).statistic) if len(set(series)) > 1 else math.nan
    pairs = [(a, b) for i, a in enumerate(series) for b in series[i + 1:]]
    wrong = sum((b < a) if increasing else (b > a) for a, b in pairs)
    return (rho if increasing else -rho), wrong / len(pairs)


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

