"""The terminal report of a run, rendered from the results table alone.

Plain comparisons get one table each (layers as rows, one value and bar column per
metric). Comparisons against a model's training snapshots (``snapshot_a`` or
``snapshot_b`` set) are gathered instead into one heat table per metric and group
(layers as rows, training progress as columns), which :mod:`probekit.figures`
draws as heat maps too.
"""
from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
from rich.console import Console, Group
from rich.style import Style
from rich.table import Table
from rich.text import Text

from probekit.results.events import events_of
from probekit.say import say
from probekit.results.io import metadata
from probekit.results.layers import series_rows
from probekit.expect.kinds import LEARNED_MARGIN

BAR_WIDTH = 16
EIGHTHS = " ▏▎▍▌▋▊▉█"
#: One cell's shade in a heat table, low to high (readable without colour too).
SHADES = "▁▂▃▄▅▆▇█"
#: A sequential palette (viridis) for heat-table cell backgrounds, low to high.
PALETTE = ((68, 1, 84), (70, 50, 126), (54, 92, 141), (39, 127, 142),
           (31, 161, 135), (74, 193, 109), (160, 218, 57), (253, 231, 37))
#: The width of the report and the progress when they go to a file or a pipe (rich would wrap them at 80).
PLAIN_WIDTH = 200


def output_width(stream) -> int | None:
    """A Console's ``width`` for ``stream``: None (rich's choice) on a terminal or with $COLUMNS set, else PLAIN_WIDTH."""
    isatty = getattr(stream, "isatty", None)
    if os.environ.get("COLUMNS") or (isatty is not None and isatty()):
        return None
    return PLAIN_WIDTH


def format_value(value: float) -> str:
    """Four decimals, or scientific notation for small non-zero values that would read as 0.0000."""
    return f"{value:.2e}" if 0 < abs(value) < 5e-5 else f"{value:.4f}"


def movement(info: dict) -> Callable[[float], float]:
    """How far a value is from "identical": a distance itself, a similarity's 1 - value (bars show this)."""
    return (lambda value: 1.0 - value) if info.get("direction") == "similarity" else (lambda value: value)


def column_title(metric: str, info: dict) -> str:
    """``svcca (1 - mean rho)``; a similarity says its bars show 1 - value."""
    notes = [info["unit"]] if info.get("unit") else []
    if info.get("direction") == "similarity":
        notes.append("1 = identical; bars 1 - value")
    return metric + (f" ({', '.join(notes)})" if notes else "")


def bar(value: float, top: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar of ``value`` on a scale where ``top`` fills ``width`` cells."""
    if top <= 0 or not math.isfinite(value) or value <= 0:
        return ""
    eighths = round(min(value / top, 1.0) * width * 8)
    return "█" * (eighths // 8) + (EIGHTHS[eighths % 8] if eighths % 8 else "")


def layer_values(table: pa.Table) -> dict[tuple[str, str], dict[int, float]]:
    """(comparison, metric) -> {layer: value} for the per-layer rows (head is null)."""
    series: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for row in series_rows(table, ["comparison", "metric", "layer", "head", "value"]):
        if row["head"] is None:
            series[(row["comparison"], row["metric"])][row["layer"]] = row["value"]
    return series


def large_bias(row: dict) -> bool:
    """Whether the bootstrap's bias estimate is large against the interval: over a quarter of its width."""
    bias = row.get("ci_bias")
    return bias is not None and abs(bias) > (row["ci_high"] - row["ci_low"]) / 4


def layer_marks(table: pa.Table) -> dict[tuple[str, str, int], str]:
    """(comparison, metric, layer) -> what the report adds after a layer's value: its interval, p-value, seed spread."""
    wanted = [c for c in ("ci_low", "ci_high", "ci_bias", "p_value", "above_seed_spread") if c in table.column_names]
    if not wanted:
        return {}
    marks = {}
    for row in series_rows(table, ["comparison", "metric", "layer", "head", *wanted]):
        parts = []
        if row.get("ci_low") is not None and row.get("ci_high") is not None:
            parts.append(f"[{format_value(row['ci_low'])}, {format_value(row['ci_high'])}]")
            if large_bias(row):
                parts.append(f"bias {row['ci_bias']:+.2g}")
        if row.get("p_value") is not None:
            parts.append(f"p={row['p_value']:.2g}")
        if row.get("above_seed_spread") is not None:
            parts.append(SEED_MARKS[row["above_seed_spread"]])
        if row["head"] is None and parts:
            marks[(row["comparison"], row["metric"], row["layer"])] = " ".join(parts)
    return marks


#: Metrics side by side in one table of a comparison (more go into tables below it, so lines stay readable).
METRICS_PER_TABLE = 3
#: After a value: beyond the seed spread (its interval too, when it has one), or within it.
SEED_MARKS = {True: "▲", False: "≈"}


# -- training snapshots ---------------------------------------------------------------


def base_model(name: str) -> str:
    """The declared model of a comparison side: ``seed1@0.25`` -> ``seed1``."""
    return name.partition("@")[0]


@dataclass(frozen=True)
class Side:
    """Who a comparison compares: one row's identity columns."""

    comparison: str
    model_a: str
    model_b: str
    snapshot_a: float | None
    snapshot_b: float | None
    data: str
    step_a: int | None = None  # a checkpoint's training step (results files of schema 3 on)
    step_b: int | None = None

    def step(self, moving: str) -> int | None:
        return self.step_b if moving == "b" else self.step_a

    @property
    def is_snapshot(self) -> bool:
        return self.snapshot_a is not None or self.snapshot_b is not None


@dataclass(frozen=True)
class SnapshotColumn:
    """One point of training progress: a snapshot comparison, or the final model's."""

    progress: float
    comparison: str
    model: str  # the moving side's name in the table: "seed1@0.25", or "seed1" for the final model
    final: bool
    values: dict[int, float]  # layer -> value
    step: int | None = None  # a checkpoint's training step

    @property
    def label(self) -> str:
        if self.step is not None:
            return str(self.step)
        return "final" if self.final else f"{self.progress:g}"


@dataclass(frozen=True)
class SnapshotGroup:
    """One metric of one model held fixed against another model's training snapshots, on one data set."""

    metric: str
    fixed: str  # the side that does not move ("pre")
    model: str  # the base name of the side whose snapshots vary ("seed1")
    data: str
    moving: str  # "b" (the usual case) or "a": which side of the comparisons carries the snapshots
    columns: tuple[SnapshotColumn, ...]  # by training progress

    @property
    def title(self) -> str:
        moving = f"{self.model}@t"
        pair = f"{self.fixed} vs {moving}" if self.moving == "b" else f"{moving} vs {self.fixed}"
        return f"{pair} on {self.data}"

    @property
    def name(self) -> str:
        """A short key for file names: ``pre_vs_seed1_on_rte``."""
        pair = (self.fixed, self.model) if self.moving == "b" else (self.model, self.fixed)
        return f"{pair[0]}_vs_{pair[1]}_on_{self.data}"

    @property
    def layers(self) -> list[int]:
        return sorted({layer for column in self.columns for layer in column.values})

    @property
    def by_step(self) -> bool:
        """Whether every column knows its training step (results of schema 3 on); else they show fractions of training."""
        return all(column.step is not None for column in self.columns)


def comparison_sides(table: pa.Table) -> dict[str, Side]:
    """comparison -> who it compares (from its first row)."""
    sides: dict[str, Side] = {}
    names = ["comparison", "model_a", "model_b", "snapshot_a", "snapshot_b", "data"]
    names += [name for name in ("step_a", "step_b") if name in table.column_names]
    for row in table.select(names).to_pylist():
        if row["comparison"] not in sides:
            sides[row["comparison"]] = Side(**row)
    return sides


def snapshot_groups(table: pa.Table, series: dict[tuple[str, str], dict[int, float]] | None = None
                    ) -> list[SnapshotGroup]:
    """The run's training-snapshot heat maps, in the order the table first mentions them.

    Comparisons with ``snapshot_b`` set (or only ``snapshot_a``) are grouped by metric,
    the fixed side, the moving side's base model and the data; their progress is the
    snapshot fraction. The plain comparison of the same two models on the same data
    (the final model) joins the group at progress 1.0 unless a 1.0 snapshot exists.
    Only per-layer values (head null) count.
    """
    series = layer_values(table) if series is None else series
    sides = comparison_sides(table)
    metrics = list(dict.fromkeys(table.column("metric").to_pylist()))
    keys: dict[tuple[str, str, str, str], list[tuple[float, Side]]] = {}
    finals: dict[tuple[str, str, str, str], list[Side]] = defaultdict(list)
    for side in sides.values():
        if side.snapshot_b is not None:
            keys.setdefault((side.model_a, base_model(side.model_b), side.data, "b"), []).append((side.snapshot_b, side))
        elif side.snapshot_a is not None:
            keys.setdefault((side.model_b, base_model(side.model_a), side.data, "a"), []).append((side.snapshot_a, side))
        else:
            finals[(side.model_a, side.model_b, side.data, "b")].append(side)
            finals[(side.model_b, side.model_a, side.data, "a")].append(side)
    groups = []
    for metric in metrics:
        for key, snapshots in keys.items():
            columns: dict[float, SnapshotColumn] = {}
            for progress, side in sorted(snapshots, key=lambda item: item[0]):
                values = series.get((side.comparison, metric))
                if values and progress not in columns:
                    model = side.model_b if key[3] == "b" else side.model_a
                    columns[progress] = SnapshotColumn(progress, side.comparison, model, False, values, side.step(key[3]))
            if not columns:
                continue
            if not any(math.isclose(progress, 1.0) for progress in columns):
                for side in finals.get(key, []):
                    if values := series.get((side.comparison, metric)):
                        columns[1.0] = SnapshotColumn(1.0, side.comparison, key[1], True, values, side.step(key[3]))
                        break
            fixed, model, data, moving = key
            ordered = tuple(columns[p] for p in sorted(columns))
            groups.append(SnapshotGroup(metric, fixed, model, data, moving, ordered))
    return groups


def heat_color(fraction: float) -> tuple[int, int, int]:
    """The palette colour at ``fraction`` (0..1) of the scale, interpolated."""
    fraction = min(max(fraction, 0.0), 1.0) * (len(PALETTE) - 1)
    low = min(int(fraction), len(PALETTE) - 2)
    t = fraction - low
    return tuple(round(a + (b - a) * t) for a, b in zip(PALETTE[low], PALETTE[low + 1], strict=True))


def heat_cell(value: float | None, top: float, colour: bool = True) -> Text:
    """A heat-table cell: the value and a one-character shade, on a background of its colour.

    Without ``colour`` (consoles of 16 colours or none, where the palette would collapse)
    the shade alone tells the scale.
    """
    if value is None:
        return Text("")
    if not math.isfinite(value):
        return Text(f"{value}", style="red")
    fraction = value / top if top > 0 else 0.0
    fraction = min(max(fraction, 0.0), 1.0)
    shade = SHADES[min(int(fraction * len(SHADES)), len(SHADES) - 1)]
    if not colour:
        return Text(f"{format_value(value)} {shade}")
    red, green, blue = heat_color(fraction)
    dark = 0.299 * red + 0.587 * green + 0.114 * blue < 140
    style = Style(bgcolor=f"rgb({red},{green},{blue})", color="white" if dark else "black")
    return Text(f"{format_value(value)} {shade}", style=style)


def snapshot_table(group: SnapshotGroup, unit: str, top: float, accuracies: dict[str, float],
                   colour: bool = True) -> Group:
    """Layers as rows, training progress as columns: a heat map in text, with its title and scale.

    The title and the scale line are printed beside the table, not inside it, so a
    narrow table does not wrap them.
    """
    heading = f"{group.metric}" + (f" ({unit})" if unit else "")
    grid = Table(show_edge=False, pad_edge=False)
    grid.add_column("layer", justify="right")
    for column in group.columns:
        grid.add_column(Text(column.label), justify="right")
    for layer in group.layers:
        grid.add_row(str(layer), *(heat_cell(column.values.get(layer), top, colour) for column in group.columns))
    if any(accuracies.get(column.model) is not None for column in group.columns):
        grid.add_section()
        grid.add_row("accuracy", *("" if accuracies.get(column.model) is None else f"{accuracies[column.model]:.1%}"
                                   for column in group.columns), style="dim")
    title = Text(f"{heading} over training: {group.title}", style="table.title")
    columns = "training step" if group.by_step else "fraction of fine-tuning steps done"
    scale = Text(f"scale 0 {''.join(SHADES)} {top:.4g} (the run's largest {group.metric}); columns: {columns}",
                 style="dim")
    return Group(title, grid, scale)


# -- the report ----------------------------------------------------------------------


def incomplete_note(meta: dict, table: pa.Table) -> str:
    """'' for a complete run; else what the results of an interrupted or failed run hold:
    ``INCOMPLETE run (interrupted): 2 of 3 comparisons (missing a_vs_c)``. Files without a ``complete`` key count as complete."""
    if meta.get("complete", True) is not False:
        return ""
    note = f"INCOMPLETE run ({'interrupted' if meta.get('interrupted') else 'stopped before the end'})"
    planned = list(meta.get("comparisons") or [])
    if planned:
        present = set(table.column("comparison").to_pylist())
        missing = [c for c in planned if c not in present]
        note += f": {len(planned) - len(missing)} of {len(planned)} comparisons"
        if missing:
            note += " (missing " + ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "") + ")"
    return note


def compared_models(table: pa.Table, meta: dict) -> dict[str, dict]:
    """The ``models`` metadata of the models the table's comparisons use (an interrupted run resolved more)."""
    used = set(table.column("model_a").to_pylist()) | set(table.column("model_b").to_pylist())
    return {name: info for name, info in (meta.get("models") or {}).items() if name in used}


def accuracy_text(name: str, info: dict) -> str:
    """``nli 76.3% (majority 33.4%)``; a model that does not beat its majority rate by LEARNED_MARGIN says so."""
    text = f"{name} {info['accuracy']:.1%}"
    majority = info.get("majority")
    if majority is None:
        return text
    weak = info["accuracy"] <= majority + LEARNED_MARGIN
    return text + f" (majority {majority:.1%}" + (", not beaten" if weak else "") + ")"


def render(table: pa.Table, console: Console) -> None:
    meta = metadata(table)
    series = layer_values(table)
    marks = layer_marks(table)
    metric_info = meta.get("metrics", {})
    comparisons = list(dict.fromkeys(table.column("comparison").to_pylist()))
    metrics = list(dict.fromkeys(table.column("metric").to_pylist()))
    moved = {m: movement(metric_info.get(m, {})) for m in metrics}
    # One scale per metric across the run, so comparisons can be told apart by eye.
    tops = {m: max((moved[m](v) for (c, mm), s in series.items() if mm == m for v in s.values() if math.isfinite(v)),
                   default=0.0)
            for m in metrics}
    described = {r["comparison"]: r for r in table.select(["comparison", "model_a", "model_b", "data"]).to_pylist()}
    groups = snapshot_groups(table, series)
    # A snapshot comparison whose every series is in a heat table gets no table of its own;
    # the final model's comparison keeps its own (it is a comparison in its own right).
    in_heat_tables = {(column.comparison, group.metric) for group in groups for column in group.columns
                      if not column.final}
    sides = comparison_sides(table)
    hidden = {c for c in comparisons if sides[c].is_snapshot
              and all(key in in_heat_tables for key in series if key[0] == c)
              and any(key[0] == c for key in in_heat_tables)}
    note = incomplete_note(meta, table)
    console.print(Text.assemble(*([(note + "  ", "bold red")] if note else []), ("probekit ", "bold"),
                                f"{meta.get('spec_name', '?')}  run {meta.get('run_id', '?')}  "
                                f"device {meta.get('device', '?')}"))
    models = {name: m for name, m in compared_models(table, meta).items() if m.get("accuracy") is not None}
    accuracies = {name: m["accuracy"] for name, m in models.items()}
    # Snapshots' accuracies are shown under their heat-table columns instead.
    in_columns = {column.model for group in groups for column in group.columns if not column.final}
    listed = [accuracy_text(name, m) for name, m in models.items() if name not in in_columns]
    if listed:
        console.print("fine-tuned models, validation accuracy: " + ", ".join(listed), markup=False, highlight=False)
    for comparison in comparisons:
        if comparison in hidden:
            continue
        info = described[comparison]
        shown = [m for m in metrics if (comparison, m) in series]
        title = f"{comparison}: {info['model_a']} vs {info['model_b']} on {info['data']}"
        for start in range(0, len(shown), METRICS_PER_TABLE):
            part = shown[start:start + METRICS_PER_TABLE]
            # Spec and plugin text (names, units) goes in as Text: never read as rich markup.
            grid = Table(title=Text(title if start == 0 else f"{comparison} (continued)", style="table.title"),
                         title_justify="left",
                         show_edge=False, pad_edge=False)
            grid.add_column("layer", justify="right")
            for metric in part:
                grid.add_column(Text(column_title(metric, metric_info.get(metric, {}))), justify="right")
                grid.add_column("", min_width=BAR_WIDTH, style="cyan")
            layers = sorted({layer for m in part for layer in series[(comparison, m)]})
            for layer in layers:
                cells = [str(layer)]
                for metric in part:
                    value = series[(comparison, metric)].get(layer)
                    mark = marks.get((comparison, metric, layer))
                    text = "" if value is None else format_value(value) + (f" {mark}" if mark else "")
                    cells += [text, "" if value is None else bar(moved[metric](value), tops[metric])]
                grid.add_row(*cells)
            console.print(Group(Text(""), grid))
    colour = console.color_system in ("256", "truecolor")
    for group in groups:
        unit = metric_info.get(group.metric, {}).get("unit", "")
        console.print(Group(Text(""), snapshot_table(group, unit, tops[group.metric], accuracies, colour)))
    if any(mark.endswith(tuple(SEED_MARKS.values())) for mark in marks.values()):
        console.print(f"{SEED_MARKS[True]} beyond the seed spread (the change is larger than seeds alone give), "
                      f"{SEED_MARKS[False]} within it", markup=False, highlight=False)
    for event in events_of(meta, "note"):
        say(console, str(event), label="warning")
    for event in events_of(meta, "error", "failure"):
        say(console, str(event), label="error")
