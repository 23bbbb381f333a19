"""Results in a notebook: ``Results._repr_html_`` (the run's HTML report) and ``Results.plot()`` (the run's figures),
from hand-built results tables."""
from __future__ import annotations

import html

import pytest
from matplotlib.figure import Figure

from probekit.api import Figures, Results, SeriesNotFound
from probekit.metrics.base import Row
from probekit.report.figures import iter_figures, write_figures
from probekit.results.schema import RowContext, build_table, to_records


def add(records, comparison, metric, values, *, a="pre", b="ft", heads=0, snapshot_b=None):
    context = RowContext("run-1", "spec-1", comparison, a, b, None, snapshot_b, "dev", metric)
    rows = []
    for layer, value in values.items():
        rows.append(Row(layer, value, n_examples=10, n_tokens=100))
        rows += [Row(layer, value + head, head=head) for head in range(heads)]
    records.extend(to_records(context, rows))


def results(records, **meta) -> Results:
    metrics = {"svcca": {"metric": "svcca", "unit": "1 - mean rho", "direction": "distance"},
               "attention_js": {"metric": "attention_js", "unit": "nats", "direction": "distance"}}
    return Results(build_table(records, {"spec_name": "spec-1", "run_id": "run-1", "metrics": metrics,
                                         "complete": True, **meta}))


@pytest.fixture
def two_metrics() -> Results:
    records: list[dict] = []
    add(records, "pre_vs_ft", "svcca", {0: 0.1, 1: 0.25, 2: 0.5})
    add(records, "pre_vs_ft", "attention_js", {1: 0.0123456, 2: 0.02}, heads=2)
    add(records, "ft_vs_ft2", "svcca", {0: 0.05, 1: 0.1, 2: 0.2}, a="ft", b="ft2")
    return results(records)


def test_repr_html_is_the_run_report(two_metrics):
    page = two_metrics._repr_html_()
    assert page.count('<div class="probekit-report">') == 1 and "<style>" in page and "<script>" in page
    assert "probekit: spec-1" in page and "run run-1" in page and f"{two_metrics.table.num_rows} rows" in page
    tables = page.split("<h2>Values per comparison</h2>")[1].split("<h2>")[0]
    first = tables.split("<h3>")[1]
    assert first.startswith("pre_vs_ft: pre vs ft on dev</h3>")
    header = first.split("<thead>")[1].split("</thead>")[0]
    assert [cell.split(">")[1] for cell in header.split("<th")[1:]] == [
        "layer</th", "svcca (1 - mean rho, 0 = identical)</th", "attention_js (nats, 0 = identical)</th"]
    rows = first.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    assert len(rows) == 3  # layers 0-2; the per-head rows are not rows here
    assert ">0.2500<" in rows[1] and ">0.0123<" in rows[1] and rows[0].rstrip().endswith('<td class="num" data-sort=""></td></tr>')
    assert "<h3>ft_vs_ft2: ft vs ft2 on dev</h3>" in tables
    assert "<p>not judged (no verdict is known for this run)</p>" in page  # no spec, no run folder


def test_repr_html_says_incomplete_first_and_escapes_names():
    records: list[dict] = []
    for index in range(2):
        add(records, f"<b>c{index}</b>", "svcca", {0: 0.1 * index})
    page = results(records, complete=False, comparisons=["<b>c0</b>", "<b>c1</b>", "c2"])._repr_html_()
    assert "<b>c0</b>" not in page and html.escape("<b>c0</b>") in page
    body = page.split('<div class="probekit-report">')[1]
    assert body.lstrip().startswith('<div class="banner" role="alert">INCOMPLETE run (stopped before the end): '
                                    "2 of 3 comparisons (missing c2)</div>")


def test_repr_html_lists_errors():
    records: list[dict] = []
    add(records, "a_vs_b", "svcca", {0: 0.1})
    page = results(records, errors=["a_vs_b / attention_js: needs attentions"])._repr_html_()
    assert '<li class="error">a_vs_b / attention_js: needs attentions</li>' in page


def test_plot_returns_the_figures_a_run_writes(two_metrics, tmp_path):
    figures = two_metrics.plot()
    assert isinstance(figures, Figures) and all(isinstance(f, Figure) for f in figures)
    assert [f.get_label() for f in figures] == ["svcca", "attention_js", "attention_js_heads", "overview"]
    written = write_figures(two_metrics.table, tmp_path)
    assert [path.stem for path in written] == [f.get_label() for f in figures]
    titles = [f.axes[0].get_title() for f in figures[:2]]
    assert titles == ["svcca per layer (spec-1)", "attention_js per layer (spec-1)"]
    assert figures[2].get_suptitle() == "attention_js per head"
    legend = [text.get_text() for text in figures[0].axes[0].get_legend().get_texts()]
    assert legend == ["pre vs ft on dev", "ft vs ft2 on dev"]
    assert figures[0].axes[0].get_ylabel() == "svcca (1 - mean rho, 0 = identical)"


def test_plot_of_one_metric(two_metrics):
    assert [f.get_label() for f in two_metrics.plot("attention_js")] == ["attention_js", "attention_js_heads"]
    with pytest.raises(SeriesNotFound, match="no metric 'svca'.*did you mean 'svcca'"):
        two_metrics.plot("svca")


def test_figures_render_as_png_images_in_a_notebook(two_metrics):
    page = two_metrics.plot("svcca")._repr_html_()
    assert page.count('<img alt="svcca" src="data:image/png;base64,iVBORw0KGgo') == 1


def test_iter_figures_builds_without_saving(two_metrics, tmp_path):
    stems = [stem for stem, _ in iter_figures(two_metrics.table)]
    assert stems == ["svcca", "attention_js", "attention_js_heads", "overview"]
    assert list(tmp_path.iterdir()) == []
    assert list(iter_figures(two_metrics.table.slice(0, 0))) == []
