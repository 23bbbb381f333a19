"""The terminal report (per-comparison tables, snapshot heat tables, accuracies) and the figures of a run
(which PNGs are written, and that they are real images), from hand-built results tables."""
from __future__ import annotations

import io
import struct
import subprocess
import sys
import warnings

from rich.console import Console

from probekit.metrics.base import Row
from probekit.results import metadata
from probekit.report.figures import sanitise, write_figures
from probekit.report.terminal import heat_cell, render, snapshot_groups
from probekit.results.events import Event
from probekit.results.schema import RowContext, build_table, to_records

UNITS = {"attention_js": "nats", "svcca": "1 - mean rho"}


def add(records, comparison, a, b, data, metric, values, *, snapshot_a=None, snapshot_b=None, heads=0):
    """Rows of one (comparison, metric): ``values`` is {layer: value}; ``heads`` per-head rows per layer."""
    context = RowContext("run-1", "spec-1", comparison, a, b, snapshot_a, snapshot_b, data, metric)
    rows = []
    for layer, value in values.items():
        rows.append(Row(layer, value, n_examples=10, n_tokens=100))
        rows += [Row(layer, value * (1 + 0.1 * head), head=head) for head in range(heads)]
    records.extend(to_records(context, rows))


def js(scale: float, layers: int = 4) -> dict[int, float]:
    return {layer: scale * layer / 10 for layer in range(1, layers + 1)}


def svcca(scale: float, layers: int = 4) -> dict[int, float]:
    return {layer: scale * (0.05 + layer / 20) for layer in range(0, layers + 1)}


def sample_table(snapshots=(0.25, 0.5), final=True, extra_metrics=None):
    """Two plain comparisons x two metrics (JS with per-head rows), and pre vs rte's training snapshots."""
    records: list[dict] = []
    add(records, "pre_vs_rte", "pre", "rte", "dev", "attention_js", js(1.0), heads=3)
    add(records, "pre_vs_rte", "pre", "rte", "dev", "svcca", svcca(1.0))
    add(records, "seeds", "rte", "rte_seed2", "dev", "attention_js", js(0.5), heads=3)
    add(records, "seeds", "rte", "rte_seed2", "dev", "svcca", svcca(0.5))
    if not final:
        records = [r for r in records if r["comparison"] != "pre_vs_rte"]
    for fraction in snapshots:
        name = f"pre_vs_rte@{fraction:g}"
        add(records, name, "pre", f"rte@{fraction:g}", "dev", "attention_js", js(fraction), snapshot_b=fraction, heads=3)
        add(records, name, "pre", f"rte@{fraction:g}", "dev", "svcca", svcca(fraction), snapshot_b=fraction)
    for metric, values in (extra_metrics or {}).items():
        add(records, "pre_vs_rte", "pre", "rte", "dev", metric, values)
    models = {"pre": {"source": "p", "identity": "p", "accuracy": None},
              "rte": {"source": "r", "identity": "r", "accuracy": 0.7},
              "rte_seed2": {"source": "s", "identity": "s", "accuracy": 0.68}}
    for fraction in snapshots:
        models[f"rte@{fraction:g}"] = {"source": "r", "identity": "r", "accuracy": 0.5 + fraction / 10}
    metrics = {label: {"metric": label, "unit": unit, "plugin": "builtin"} for label, unit in UNITS.items()}
    return build_table(records, {"spec_name": "spec-1", "run_id": "run-1", "device": "cpu", "models": models,
                                 "metrics": metrics})


def rendered(table) -> str:
    console = Console(record=True, width=120, file=io.StringIO())
    render(table, console)
    return console.export_text()


def test_comparison_tables_show_layers_values_units_and_accuracies():
    text = rendered(sample_table(snapshots=()))
    assert "pre_vs_rte: pre vs rte on dev" in text
    assert "seeds: rte vs rte_seed2 on dev" in text
    assert "attention_js (nats)" in text and "svcca (1 - mean rho)" in text
    assert "validation accuracy: rte 70.0%, rte_seed2 68.0%" in text
    seeds = text[text.index("seeds: rte"):]
    rows = {line.split()[0]: line.split() for line in seeds.splitlines()[3:8]}
    assert rows["0"][:3] == ["0", "│", "│"] and "0.0250" in rows["0"]  # layer 0: SVCCA only (no attention)
    assert rows["4"][2] == "0.2000" and "0.1250" in rows["4"]
    assert "over training" not in text


def test_snapshot_table_has_layers_by_progress_with_final_model_and_accuracies():
    text = rendered(sample_table())
    title = "attention_js (nats) over training: pre vs rte@t on dev"
    assert title in text and "svcca (1 - mean rho) over training: pre vs rte@t on dev" in text
    heat = text[text.index(title):text.index("svcca (1 - mean rho) over training")]
    lines = heat.splitlines()
    assert lines[1].split() == ["layer", "┃", "0.25", "┃", "0.5", "┃", "final"]
    layer4 = next(line for line in lines if line.split()[:1] == ["4"])
    assert [cell for cell in layer4.split() if cell[0].isdigit()] == ["4", "0.1000", "0.2000", "0.4000"]
    assert any(ch in layer4 for ch in "▁▂▃▄▅▆▇█")  # the shade of each cell
    assert "accuracy │    52.5% │    55.0% │    70.0%" in heat
    # Snapshot comparisons live only in the heat tables; the final model keeps its own table.
    assert "pre_vs_rte@0.25:" not in text and "pre_vs_rte@0.5:" not in text
    assert "pre_vs_rte: pre vs rte on dev" in text
    # Snapshot accuracies are under their columns, not in the header line.
    assert "validation accuracy: rte 70.0%, rte_seed2 68.0%\n" in text


def test_snapshot_at_one_replaces_the_final_model_column():
    groups = snapshot_groups(sample_table(snapshots=(0.5, 1.0)))
    assert [(g.metric, g.fixed, g.model, g.data) for g in groups] == [("attention_js", "pre", "rte", "dev"),
                                                                        ("svcca", "pre", "rte", "dev")]
    assert [(c.progress, c.final, c.comparison) for c in groups[0].columns] == [
        (0.5, False, "pre_vs_rte@0.5"), (1.0, False, "pre_vs_rte@1")]
    assert groups[1].layers == [0, 1, 2, 3, 4] and groups[0].layers == [1, 2, 3, 4]
    text = rendered(sample_table(snapshots=(0.5, 1.0)))
    assert "final" not in text


def test_snapshots_without_a_final_comparison_and_on_side_a():
    records: list[dict] = []
    add(records, "late", "rte@0.75", "pre", "dev", "svcca", svcca(0.75), snapshot_a=0.75)
    add(records, "early", "rte@0.25", "pre", "dev", "svcca", svcca(0.25), snapshot_a=0.25)
    add(records, "final", "rte", "pre", "dev", "svcca", svcca(1.0))
    table = build_table(records, {"metrics": {"svcca": {"unit": "1 - mean rho"}}})
    (group,) = snapshot_groups(table)
    assert (group.fixed, group.model, group.moving, group.title) == ("pre", "rte", "a", "rte@t vs pre on dev")
    assert [c.label for c in group.columns] == ["0.25", "0.75", "final"]
    text = rendered(table)
    assert "svcca (1 - mean rho) over training: rte@t vs pre on dev" in text
    assert "early:" not in text and "final: rte vs pre on dev" in text
    no_final = build_table(records[: 2 * 5], {})
    assert [c.label for c in snapshot_groups(no_final)[0].columns] == ["0.25", "0.75"]


def test_heat_cell_colours_only_on_rich_consoles():
    low, high = heat_cell(0.0, 1.0), heat_cell(1.0, 1.0)
    assert low.plain == "0.0000 ▁" and high.plain == "1.0000 █"
    assert low.style.bgcolor != high.style.bgcolor
    assert heat_cell(0.5, 1.0, colour=False).style == ""
    assert heat_cell(None, 1.0).plain == "" and heat_cell(0.0, 0.0).plain == "0.0000 ▁"


def test_empty_and_error_tables_render():
    error = Event("error", "too few datapoints", "cmp", "svcca")
    table = build_table([], {"spec_name": "empty", "events": [error.record()]})
    text = rendered(table)
    assert "probekit empty" in text and "too few datapoints" in text


# ------------------------------------------------------------------ figures


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """(width, height) of a PNG, after checking its signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def check_pngs(paths, min_bytes=8_000):
    for path in paths:
        assert path.is_file(), path
        width, height = png_size(path)
        assert width >= 300 and height >= 200, (path.name, width, height)
        assert path.stat().st_size >= min_bytes, (path.name, path.stat().st_size)


def test_every_figure_of_a_run(tmp_path):
    table = sample_table(snapshots=(0.25, 0.5), extra_metrics={"replacement": {0: 0.0, 1: 0.01, 2: 0.05}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no matplotlib warnings (deprecations, empty ranges, tight layout)
        paths = write_figures(table, tmp_path / "run")
    assert [p.name for p in paths] == [
        "attention_js.png", "attention_js_heads.png", "svcca.png", "replacement.png", "overview.png",
        "attention_js_snapshots_pre_vs_rte_on_dev.png", "svcca_snapshots_pre_vs_rte_on_dev.png",
    ]
    assert all(p.parent == tmp_path / "run" for p in paths)
    check_pngs(paths)
    # Rendered at ~120 dpi: a 7 x 4.5 inch line plot.
    assert png_size(paths[0]) == (840, 540)


def test_single_layer_all_zero_and_non_finite_metrics(tmp_path):
    records: list[dict] = []
    add(records, "c1", "pre", "ft", "dev", "one_layer", {3: 0.2})
    add(records, "c1", "pre", "ft", "dev", "zeros", {0: 0.0, 1: 0.0}, heads=2)
    add(records, "c1@snap", "pre", "ft@0.5", "dev", "zeros", {0: 0.0, 1: 0.0}, snapshot_b=0.5)
    add(records, "c1", "pre", "ft", "dev", "odd/name: nan", {0: float("nan"), 1: 0.1, 2: float("inf")})
    add(records, "c1", "pre", "ft", "dev", "heads_only", {1: 0.3, 2: 0.4}, heads=2)
    records = [r for r in records if r["metric"] != "heads_only" or r["head"] is not None]
    table = build_table(records, {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = write_figures(table, tmp_path)
    assert [p.name for p in paths] == ["one_layer.png", "zeros.png", "zeros_heads.png", "odd_name_nan.png",
                                       "heads_only_heads.png", "overview.png", "zeros_snapshots_pre_vs_ft_on_dev.png"]
    check_pngs(paths, min_bytes=4_000)


def test_file_names_are_sanitised_and_unique(tmp_path):
    records: list[dict] = []
    add(records, "c", "pre", "ft", "dev", "a/b", js(1.0, layers=2))
    add(records, "c", "pre", "ft", "dev", "a:b", js(1.0, layers=2))
    paths = write_figures(build_table(records, {}), tmp_path)
    assert [p.name for p in paths] == ["a_b.png", "a_b_2.png", "overview.png"]
    assert sanitise("../x y@0.5") == "x_y_0.5" and sanitise("///") == "metric"


def test_snapshot_final_model_and_twin_comparisons(tmp_path):
    # Only snapshots and the final model, plus a second comparison of the same models (another name).
    records: list[dict] = []
    add(records, "final", "pre", "rte", "dev", "svcca", svcca(1.0))
    add(records, "again", "pre", "rte", "dev", "svcca", svcca(0.9))
    for fraction in (0.5, 0.1):
        add(records, f"s{fraction}", "pre", f"rte@{fraction:g}", "dev", "svcca", svcca(fraction), snapshot_b=fraction)
    paths = write_figures(build_table(records, {"metrics": {"svcca": {"unit": "1 - mean rho"}}}), tmp_path)
    assert [p.name for p in paths] == ["svcca.png", "svcca_snapshots_pre_vs_rte_on_dev.png"]
    check_pngs(paths)


def test_empty_table_writes_nothing(tmp_path):
    assert write_figures(build_table([], {}), tmp_path / "run") == []


def test_import_does_not_load_matplotlib():
    """The figures plugin loads in every command (``probekit check`` too): matplotlib only when drawing."""
    code = ("import sys, probekit.report.figures, probekit.plugins.figures, probekit.cli; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plugin_text_is_printed_as_written_never_as_markup():
    """A metric's message with `[metrics.x]` keeps it; one with `[/` does not crash the report; a unit too."""
    table = build_table([], {"spec_name": "s", "errors": ["c / m: set [metrics.x] k = 3", "c / m: odd [/] text [bold]"],
                             "warnings": ["c / m: warned [red]x[/red]"]})
    text = rendered(table)
    assert "set [metrics.x] k = 3" in text and "odd [/] text [bold]" in text and "warned [red]x[/red]" in text
    marked = sample_table(snapshots=(), extra_metrics={"odd": {1: 0.5}})
    meta = dict(metadata(marked))
    meta["metrics"]["odd"] = {"metric": "odd", "unit": "[bold]u[/] [/", "plugin": "p"}
    records = marked.to_pylist()
    assert "[bold]u" in rendered(build_table(records, meta))  # the header may wrap; it is shown, not parsed
