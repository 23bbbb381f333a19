"""The terminal report of a run, rendered from the results table alone."""
from __future__ import annotations

import math
from collections import defaultdict

import pyarrow as pa
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from probekit.results import metadata

BAR_WIDTH = 16
EIGHTHS = " ▏▎▍▌▋▊▉█"


def bar(value: float, top: float, width: int = BAR_WIDTH) -> str:
    """A horizontal bar of ``value`` on a scale where ``top`` fills ``width`` cells."""
    if top <= 0 or not math.isfinite(value) or value <= 0:
        return ""
    eighths = round(min(value / top, 1.0) * width * 8)
    return "█" * (eighths // 8) + (EIGHTHS[eighths % 8] if eighths % 8 else "")


def layer_values(table: pa.Table) -> dict[tuple[str, str], dict[int, float]]:
    """(comparison, metric) -> {layer: value} for the per-layer rows (head is null)."""
    series: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    columns = table.select(["comparison", "metric", "layer", "head", "value"]).to_pylist()
    for row in columns:
        if row["head"] is None:
            series[(row["comparison"], row["metric"])][row["layer"]] = row["value"]
    return series


def render(table: pa.Table, console: Console) -> None:
    meta = metadata(table)
    series = layer_values(table)
    metric_info = meta.get("metrics", {})
    comparisons = list(dict.fromkeys(table.column("comparison").to_pylist()))
    metrics = list(dict.fromkeys(table.column("metric").to_pylist()))
    # One scale per metric across the run, so comparisons can be told apart by eye.
    tops = {m: max((v for (c, mm), s in series.items() if mm == m for v in s.values() if math.isfinite(v)), default=0.0)
            for m in metrics}
    described = {r["comparison"]: r for r in table.select(["comparison", "model_a", "model_b", "data"]).to_pylist()}
    console.print(Text.assemble(("probekit ", "bold"), f"{meta.get('spec_name', '?')}  run {meta.get('run_id', '?')}  "
                                f"device {meta.get('device', '?')}"))
    accuracies = {name: m["accuracy"] for name, m in meta.get("models", {}).items() if m.get("accuracy") is not None}
    if accuracies:
        console.print("fine-tuned models, validation accuracy: " + ", ".join(f"{n} {a:.1%}" for n, a in accuracies.items()))
    for comparison in comparisons:
        info = described[comparison]
        grid = Table(title=f"{comparison}: {info['model_a']} vs {info['model_b']} on {info['data']}",
                     title_justify="left", show_edge=False, pad_edge=False)
        grid.add_column("layer", justify="right")
        shown = [m for m in metrics if (comparison, m) in series]
        for metric in shown:
            unit = metric_info.get(metric, {}).get("unit", "")
            grid.add_column(f"{metric}" + (f" ({unit})" if unit else ""), justify="right")
            grid.add_column("", min_width=BAR_WIDTH, style="cyan")
        layers = sorted({layer for m in shown for layer in series[(comparison, m)]})
        for layer in layers:
            cells = [str(layer)]
            for metric in shown:
                value = series[(comparison, metric)].get(layer)
                cells += ["" if value is None else f"{value:.4f}", "" if value is None else bar(value, tops[metric])]
            grid.add_row(*cells)
        console.print(Group(Text(""), grid))
    for error in meta.get("errors", []):
        console.print(f"[red]error[/] {error}")
