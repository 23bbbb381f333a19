"""The figures of a run, drawn from the results table alone (PNG, matplotlib's Agg renderer).

For every metric (the table's ``metric`` column, a spec's metric label):

* ``<metric>.png``: the metric against the layer, one line per plain comparison
  (no training snapshot on either side), the layout of Hao et al. 2020,
  Figures 1-7;
  with its bootstrap interval as a band where the run drew one;
* ``<metric>_heads.png``: where the metric has per-head rows, a heat map of
  layers x heads, one panel per plain comparison, on one colour scale;
* ``<metric>_matrix.png``: for a cross-layer metric, a heat map of model a's layer x
  model b's layer, one panel per plain comparison;
* ``overview.png``: with more than one metric, one panel per metric (a grid of
  metric x layer, bands included): every view of the run on one page;
* ``<metric>_snapshots_<a>_vs_<b>_on_<data>.png``: where comparisons are against a
  model's training snapshots, a heat map of layers x training progress (the final
  model at 1.0 when there is no 1.0 snapshot), one per group (see
  :func:`probekit.report.terminal.snapshot_groups`).

matplotlib is imported inside the drawing functions, so importing this module (which the
built-in ``figures`` plugin does in every command) is cheap; figures are built with
``matplotlib.figure.Figure`` (no pyplot, no global backend change).
"""
from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from probekit.report.terminal import comparison_sides, incomplete_note, layer_values, snapshot_groups
from probekit.results.io import metadata, write_atomically
from probekit.results.layers import series_rows

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 120
MARKERS = "osD^vP*Xhp<>"
COLORMAP = "viridis"
LAYER_LABEL = "layer (0 = embeddings)"
#: Write the value in each heat-map cell when the map has at most this many cells.
ANNOTATE_CELLS = 160


def write_figures(table: pa.Table, run_dir: Path) -> list[Path]:
    """Write the run's figures into ``run_dir``; return the paths written, in order."""

    if table.num_rows == 0:
        return []
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    names = _FileNames(run_dir)
    return [save(figure, names.take(stem)) for stem, figure in iter_figures(table)]


def iter_figures(table: pa.Table) -> Iterator[tuple[str, Figure]]:
    """The run's figures, built one at a time and not saved: ``(file stem, Figure)``, in the order
    :func:`write_figures` writes them (the stem before sanitising; each figure's ``get_label()`` is it too)."""
    if table.num_rows == 0:
        return
    meta = metadata(table)
    metric_info = meta.get("metrics", {}) or {}
    accuracies = {name: m.get("accuracy") for name, m in (meta.get("models", {}) or {}).items()}
    series = layer_values(table)
    sides = comparison_sides(table)
    plain = [c for c, side in sides.items() if not side.is_snapshot]
    heads = head_values(table)
    intervals = layer_intervals(table)
    matrices = cross_layer_values(table)
    metrics = list(dict.fromkeys(table.column("metric").to_pylist()))
    overview = []
    note = incomplete_note(meta, table)

    def labelled(stem: str, figure: Figure) -> tuple[str, Figure]:
        figure.set_label(stem)
        if note:  # an interrupted run's figures say so in their titles
            title_note(figure, note)
        return stem, figure

    for metric in metrics:
        axis = axis_label(metric, metric_info.get(metric, {}))
        shown = [c for c in plain if (c, metric) in series]
        labels = legend_labels([sides[c] for c in shown])
        lines = [(label, series[(c, metric)], intervals.get((c, metric), {})) for c, label in labels.items()]
        if lines:
            overview.append((metric, axis, lines))
            yield labelled(metric, line_figure(lines, metric, axis, meta.get("spec_name")))
        shown = [c for c in plain if (c, metric) in heads]
        panels = [(label, heads[(c, metric)]) for c, label in legend_labels([sides[c] for c in shown]).items()]
        if panels:
            yield labelled(f"{metric}_heads", heads_figure(panels, metric, axis))
        shown = [c for c in plain if (c, metric) in matrices]
        panels = [(label, matrices[(c, metric)]) for c, label in legend_labels([sides[c] for c in shown]).items()]
        if panels:
            yield labelled(f"{metric}_matrix", heads_figure(panels, metric, axis, columns="layer_b"))
    if len(overview) > 1:
        yield labelled("overview", overview_figure(overview, meta.get("spec_name")))
    for group in snapshot_groups(table, series):
        axis = axis_label(group.metric, metric_info.get(group.metric, {}))
        yield labelled(f"{group.metric}_snapshots_{group.name}", snapshot_figure(group, axis, accuracies))


# -- data ----------------------------------------------------------------------------


def layer_intervals(table: pa.Table) -> dict[tuple[str, str], dict[int, tuple[float, float]]]:
    """(comparison, metric) -> {layer: (ci_low, ci_high)} for the per-layer rows that have an interval."""
    if "ci_low" not in table.column_names:
        return {}
    bands: dict[tuple[str, str], dict[int, tuple[float, float]]] = defaultdict(dict)
    for row in series_rows(table, ["comparison", "metric", "layer", "head", "ci_low", "ci_high"]):
        if row["head"] is None and row["ci_low"] is not None and row["ci_high"] is not None:
            bands[(row["comparison"], row["metric"])][row["layer"]] = (row["ci_low"], row["ci_high"])
    return bands


def cross_layer_values(table: pa.Table) -> dict[tuple[str, str], dict[tuple[int, int], float]]:
    """(comparison, metric) -> {(layer, layer_b): value} for a cross-layer metric's rows."""
    if "layer_b" not in table.column_names:
        return {}
    values: dict[tuple[str, str], dict[tuple[int, int], float]] = defaultdict(dict)
    for row in table.select(["comparison", "metric", "layer", "layer_b", "value"]).to_pylist():
        if row["layer_b"] is not None:
            values[(row["comparison"], row["metric"])][(row["layer"], row["layer_b"])] = row["value"]
    return values


def head_values(table: pa.Table) -> dict[tuple[str, str], dict[tuple[int, int], float]]:
    """(comparison, metric) -> {(layer, head): value} for the per-head rows."""
    values: dict[tuple[str, str], dict[tuple[int, int], float]] = defaultdict(dict)
    for row in table.select(["comparison", "metric", "layer", "head", "value"]).to_pylist():
        if row["head"] is not None:
            values[(row["comparison"], row["metric"])][(row["layer"], row["head"])] = row["value"]
    return values


def axis_label(metric: str, info: dict[str, Any]) -> str:
    """``attention_js (nats, 0 = identical)``: the metric label, its unit and direction from the file metadata."""
    identical = {"distance": "0 = identical", "similarity": "1 = identical"}.get(info.get("direction", ""))
    notes = [note for note in (info.get("unit"), identical) if note]
    return f"{metric} ({', '.join(notes)})" if notes else metric


def legend_labels(sides: list) -> dict[str, str]:
    """comparison -> ``pre vs rte on rte_dev``; the comparison's name is added where two of one figure read the same."""
    labels = {side.comparison: f"{side.model_a} vs {side.model_b} on {side.data}" for side in sides}
    counts = defaultdict(int)
    for label in labels.values():
        counts[label] += 1
    return {c: f"{label} ({c})" if counts[label] > 1 else label for c, label in labels.items()}


def finite(value: float | None) -> float:
    return value if value is not None and math.isfinite(value) else math.nan


def value_range(values) -> tuple[float, float]:
    """A colour or y range that starts at 0 (lower if a value is negative) and is never empty."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    low = min([0.0, *values])
    high = max([0.0, *values])
    if high <= low:
        high = low + 1.0
    return low, high


def sanitise(name: str) -> str:
    """A file-name-safe version of ``name``: letters, digits, ``.``, ``-`` and ``_``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned or "metric"


class _FileNames:
    """Sanitised, unique PNG paths in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.used: set[str] = set()

    def take(self, stem: str) -> Path:
        stem = sanitise(stem)
        candidate, n = stem, 1
        while candidate.lower() in self.used:
            n += 1
            candidate = f"{stem}_{n}"
        self.used.add(candidate.lower())
        return self.folder / f"{candidate}.png"


# -- drawing -------------------------------------------------------------------------


def title_note(figure: Figure, note: str) -> None:
    """Add ``note`` as a red second line of the figure's title (its suptitle, else its first axes' title)."""
    if suptitle := figure.get_suptitle():
        figure.suptitle(f"{suptitle}\n{note}", color="firebrick")
    elif figure.axes:
        axes = figure.axes[0]
        axes.set_title(f"{axes.get_title()}\n{note}", color="firebrick", fontsize="medium")


def save(figure: Figure, path: Path) -> Path:
    """``figure`` as a PNG at ``path``, whole or not at all (a full disk leaves no 0-byte PNG)."""
    return write_atomically(path, lambda temporary: figure.savefig(temporary, dpi=DPI, format="png"))


def layer_ticks(axes, layers: list[int], axis: str = "x") -> None:
    """Integer ticks at every layer (every few layers on deep models)."""
    if not layers:
        return
    low, high = min(layers), max(layers)
    step = max(1, math.ceil((high - low + 1) / 25))
    ticks = list(range(low, high + 1, step))
    (axes.set_xticks if axis == "x" else axes.set_yticks)(ticks)


Line = tuple[str, dict[int, float], dict[int, tuple[float, float]]]  # (label, layer -> value, layer -> interval)


def line_figure(lines: list[Line], metric: str, axis: str, spec: str | None) -> Figure:
    """One line per comparison: the metric against the layer (Hao et al. 2020, Figures 1-7), intervals as bands."""
    from matplotlib.figure import Figure

    many = len(lines) > 5
    figure = Figure(figsize=(9.5 if many else 7, 4.5), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    layers, all_values = draw_lines(axes, lines)
    missing = [f"{label}: layer {', '.join(str(layer) for layer in sorted(values) if not math.isfinite(finite(values[layer])))}"
               for label, values, _ in lines if any(not math.isfinite(finite(v)) for v in values.values())]
    if missing:
        figure.text(0.01, 0.005, "not drawn (nan/inf): " + "; ".join(missing), fontsize="x-small", color="firebrick",
                    va="bottom")
    frame_layers(axes, layers, all_values)
    axes.set_xlabel(LAYER_LABEL)
    axes.set_ylabel(axis)
    axes.set_title(f"{metric} per layer" + (f" ({spec})" if spec else ""))
    if many:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    else:
        axes.legend(loc="best", fontsize="small")
    return figure


def draw_lines(axes, lines: list[Line]) -> tuple[list[int], list[float]]:
    """Each comparison's line and, where it has intervals, its band; the layers and values drawn."""
    all_layers: set[int] = set()
    all_values: list[float] = []
    for index, (label, values, bands) in enumerate(lines):
        layers = sorted(values)
        ys = [finite(values[layer]) for layer in layers]
        all_layers.update(layers)
        all_values.extend(ys)
        colour = f"C{index % 10}"
        axes.plot(layers, ys, marker=MARKERS[index % len(MARKERS)], markersize=5, linewidth=1.6, label=label,
                  color=colour, clip_on=False, zorder=3)
        banded = [layer for layer in layers if layer in bands]
        if banded:
            low = [bands[layer][0] for layer in banded]
            high = [bands[layer][1] for layer in banded]
            axes.fill_between(banded, low, high, color=colour, alpha=0.2, linewidth=0, zorder=2)
            all_values.extend([*low, *high])
    return sorted(all_layers), all_values


def frame_layers(axes, layers: list[int], values: list[float]) -> None:
    """Layer ticks, limits with a margin above, a light grid."""
    layer_ticks(axes, layers)
    axes.set_xlim(min(layers) - 0.5, max(layers) + 0.5)
    low, high = value_range(values)
    axes.set_ylim(low, high + 0.06 * (high - low))
    axes.grid(True, alpha=0.3)


def overview_figure(panels: list[tuple[str, str, list[Line]]], spec: str | None) -> Figure:
    """Every metric of the run on one page, one panel each: the metric x layer grid, with bands."""
    from matplotlib.figure import Figure

    columns = min(len(panels), 3)
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4.6 * columns, 3.3 * rows + 0.5), dpi=DPI, layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    for index, (metric, axis, lines) in enumerate(panels):
        axes = grid[index // columns][index % columns]
        layers, values = draw_lines(axes, lines)
        frame_layers(axes, layers, values)
        axes.set_title(metric, fontsize="medium")
        axes.set_ylabel(axis, fontsize="small")
        axes.set_xlabel("layer", fontsize="small")
    for index in range(len(panels), rows * columns):
        grid[index // columns][index % columns].set_axis_off()
    handles, labels = grid[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize="small", frameon=False)
    figure.suptitle("every metric per layer" + (f" ({spec})" if spec else ""))
    return figure


def _heat(axes, matrix, low: float, high: float):
    """Draw a layers-x-columns matrix (lists of float, nan = missing); layer 0 at the bottom."""
    import matplotlib
    import numpy as np

    colormap = matplotlib.colormaps[COLORMAP].with_extremes(bad="#dddddd")
    data = np.ma.masked_invalid(np.array(matrix, dtype=float))
    return axes.imshow(data, origin="lower", aspect="auto", cmap=colormap, vmin=low, vmax=high,
                       interpolation="nearest")


def _annotate(axes, matrix, low: float, high: float) -> None:
    """Write each cell's value (one number of decimals for the whole map), dark on light cells and light on dark ones."""
    import matplotlib

    colormap = matplotlib.colormaps[COLORMAP]
    largest = max((abs(v) for row in matrix for v in row if math.isfinite(v)), default=0.0)
    decimals = min(max(2 - math.floor(math.log10(largest)), 0), 6) if largest > 0 else 2
    for row, values in enumerate(matrix):
        for column, value in enumerate(values):
            if not math.isfinite(value):
                continue
            red, green, blue, _ = colormap((value - low) / (high - low))
            light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.55
            axes.text(column, row, f"{value:.{decimals}f}", ha="center", va="center", fontsize=7,
                      color="black" if light else "white")


def heads_figure(panels: list[tuple[str, dict[tuple[int, int], float]]], metric: str, axis: str,
                 columns: str = "head") -> Figure:
    """Layers x heads (or x model b's layers: ``columns = "layer_b"``), one panel per comparison, one colour scale."""
    x_label = "head" if columns == "head" else "layer of model b"
    title = f"{metric} per head" if columns == "head" else f"{metric}: every layer of model a x every layer of model b"
    from matplotlib.figure import Figure

    n_columns = min(len(panels), 4)
    rows = math.ceil(len(panels) / n_columns)
    n_layers = max(len({layer for layer, _ in values}) for _, values in panels)
    n_heads = max(max(head for _, head in values) + 1 for _, values in panels)
    panel_height = min(max(2.6, 0.16 * n_layers + 1.0), 5.5)
    panel_width = min(max(3.2, 0.22 * n_heads + 1.2), 5.0)
    figure = Figure(figsize=(panel_width * n_columns + 1.2, panel_height * rows + 0.6), dpi=DPI, layout="constrained")
    grid = figure.subplots(rows, n_columns, squeeze=False)
    low, high = value_range(v for _, values in panels for v in values.values())
    image = None
    for index, (label, values) in enumerate(panels):
        axes = grid[index // n_columns][index % n_columns]
        layers = sorted({layer for layer, _ in values})
        n = max(head for _, head in values) + 1
        matrix = [[finite(values.get((layer, head))) for head in range(n)] for layer in layers]
        image = _heat(axes, matrix, low, high)
        axes.set_yticks(range(len(layers)), [str(layer) for layer in layers])
        if len(layers) > 25:
            step = math.ceil(len(layers) / 25)
            axes.set_yticks(range(0, len(layers), step), [str(layer) for layer in layers[::step]])
        axes.set_xticks(range(0, n, max(1, math.ceil(n / 16))))
        axes.set_xlabel(x_label)
        axes.set_ylabel("layer" if columns == "head" else "layer of model a")
        axes.set_title(label, fontsize="small")
        if len(layers) * n <= ANNOTATE_CELLS // 2 and len(panels) == 1:
            _annotate(axes, matrix, low, high)
    for index in range(len(panels), rows * n_columns):
        grid[index // n_columns][index % n_columns].set_axis_off()
    bar = figure.colorbar(image, ax=grid.ravel().tolist(), shrink=min(0.9, 0.5 + 0.4 / rows), aspect=30)
    bar.set_label(axis)
    figure.suptitle(title)
    return figure


def snapshot_figure(group, axis: str, accuracies: dict[str, float | None]) -> Figure:
    """Layers (y) x training progress (x) for one snapshot group, with a colour bar in the metric's unit."""
    from matplotlib.figure import Figure

    layers = group.layers
    columns = group.columns
    matrix = [[finite(column.values.get(layer)) for column in columns] for layer in layers]
    width = min(max(4.8, 0.75 * len(columns) + 2.8), 14.0)
    height = min(max(3.2, 0.24 * len(layers) + 1.6), 9.0)
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    low, high = value_range(v for row in matrix for v in row)
    image = _heat(axes, matrix, low, high)
    labels = []
    for column in columns:
        label = column.label if group.by_step else f"{column.progress:g}" + (" (final)" if column.final else "")
        accuracy = accuracies.get(column.model)
        labels.append(label + (f"\nacc {accuracy:.0%}" if accuracy is not None else ""))
    axes.set_xticks(range(len(columns)), labels, fontsize="small")
    step = max(1, math.ceil(len(layers) / 25))
    axes.set_yticks(range(0, len(layers), step), [str(layer) for layer in layers[::step]])
    axes.set_xlabel("training step" if group.by_step else "training progress (fraction of fine-tuning steps)")
    axes.set_ylabel(LAYER_LABEL)
    axes.set_title(f"{group.metric} over training: {group.title}", fontsize="medium")
    if len(layers) * len(columns) <= ANNOTATE_CELLS:
        _annotate(axes, matrix, low, high)
    bar = figure.colorbar(image, ax=axes)
    bar.set_label(axis)
    return figure
