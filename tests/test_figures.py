"""The figures of a run: which PNGs are written, and that they are real images (hand-built results tables)."""
from __future__ import annotations

import struct
import subprocess
import sys
import warnings

from test_report import add, js, sample_table, svcca

from probekit.report.figures import sanitise, write_figures
from probekit.results.schema import build_table

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
        "attention_js.png", "attention_js_heads.png", "svcca.png", "replacement.png",
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
                                       "heads_only_heads.png", "zeros_snapshots_pre_vs_ft_on_dev.png"]
    check_pngs(paths, min_bytes=4_000)


def test_file_names_are_sanitised_and_unique(tmp_path):
    records: list[dict] = []
    add(records, "c", "pre", "ft", "dev", "a/b", js(1.0, layers=2))
    add(records, "c", "pre", "ft", "dev", "a:b", js(1.0, layers=2))
    paths = write_figures(build_table(records, {}), tmp_path)
    assert [p.name for p in paths] == ["a_b.png", "a_b_2.png"]
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
    code = "import sys, probekit.figures; assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)
