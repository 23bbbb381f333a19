"""report.html: written beside a real (tiny) run, self-contained, opened in headless Chromium (no console error,
no request, the verdicts, tables, figures and the layer x step view found in the rendered text, hover and sort
working), re-rendered from the Parquet file alone, side by side for two runs, an interrupted run's said first,
and the notebook view built from the same parts."""
from __future__ import annotations

import re
import shutil

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from probekit import api
from probekit.cli import main
from probekit.report.html import REPORT_FILE
from probekit.results.io import RESULTS_FILE, read_table
from probekit.testing.browser import find_chromium, open_page
from probekit.testing.fixtures import save_tiny_model, write_tiny_csv

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.servers]
needs_browser = pytest.mark.skipif(find_chromium() is None, reason="no Chromium on this machine (apt-get install "
                                   "chromium; .ci/run installs it as root): the page cannot be opened in a browser")
HOSTILE = "<script>window.pwned = 1</script> & <b>bold</b>"


def tiny_spec(root) -> dict:
    """A fine-tune with a snapshot and validation accuracy, a checkpoint series, a plain pair, intervals, and two
    expectations (one fails); a hostile expectation name that must stay text."""
    return {
        "name": "tiny_share",
        "description": HOSTILE,
        "run": {"device": "cpu", "batch_size": 8, "max_length": 16, "bootstrap": 20, "bootstrap_groups": 4},
        "models": {"pre": {"id": str(root / "pre")}, "other": {"id": str(root / "other")},
                   "ft": {"base": "pre", "train": "train", "validation": "valid", "epochs": 1, "lr": 5e-3,
                          "batch_size": 8, "max_length": 16, "snapshots": [0.5]},
                   "run": {"checkpoints": "run/checkpoint-*"}},
        "data": {"train": {"path": str(root / "train.csv")}, "valid": {"path": str(root / "valid.csv")},
                 "eval": {"path": str(root / "eval.csv"), "limit": 24}},
        "metrics": {"svcca": {}, "attention_js": {}},
        "comparisons": [{"name": "pre_vs_ft", "a": "pre", "b": "ft", "data": "eval"},
                        {"name": "pre_vs_ft@0.5", "a": "pre", "b": "ft@0.5", "data": "eval"},
                        {"name": "pre_vs_other", "a": "pre", "b": "other", "data": "eval"},
                        {"name": "pre_vs_run", "a": "pre", "b": "run", "data": "eval"}],
        "expect": [{"name": HOSTILE, "comparison": "pre_vs_other", "metric": "attention_js", "below": 0.6931},
                   {"name": "other is identical to pre", "comparison": "pre_vs_other", "metric": "svcca",
                    "below": 1e-9}],
    }


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("share")
    save_tiny_model(root / "pre", seed=0)
    save_tiny_model(root / "other", seed=1)
    for step, seed in ((4, 2), (8, 3), (12, 4)):
        save_tiny_model(root / "run" / f"checkpoint-{step}", seed=seed)
    write_tiny_csv(root / "train.csv", 48, seed=1)
    write_tiny_csv(root / "valid.csv", 24, seed=2)
    write_tiny_csv(root / "eval.csv", 32, seed=3)
    return api.run(tiny_spec(root), base_dir=root, output=root / "out")


def test_report_html_is_beside_the_run_and_needs_nothing_else(tiny_run):
    page = (tiny_run.run_dir / REPORT_FILE).read_text()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "a reference to another host"
    assert "@import" not in page and "url(http" not in page
    assert HOSTILE not in page and "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in page
    assert page.count("<svg") >= 5  # the figures inline (the PNGs' count), text kept as text
    assert len(list(tiny_run.run_dir.glob("*.png"))) == page.count("<figcaption>")


@needs_browser
def test_report_renders_in_chromium_with_no_error_and_no_request(tiny_run, tmp_path):
    seen = open_page(tiny_run.run_dir / REPORT_FILE, screenshot=tmp_path / "report.png", scripts=INTERACTIONS)
    assert seen.console_errors == [] and seen.requests == []
    text = seen.text
    assert text.startswith("probekit: tiny_share")
    assert "Expectations: 1 passed, 1 failed" in text
    failing = text[text.index("FAILED other is identical to pre"):]
    other = tiny_run.series("pre_vs_other", "svcca")
    assert f"{other[2]:.6g}" in failing.split("PASSED")[0]  # the failing values, as judged
    assert HOSTILE in text and seen.results["pwned"] is None  # shown as text, never run
    for heading in ("Fine-tuned models: validation accuracy", "Per layer", "Values per comparison",
                    "Over training: layer x step", "Figures", "Provenance", "Spec"):
        assert heading in text.splitlines(), heading
    accuracy = tiny_run.metadata["models"]["ft"]
    assert f"{accuracy['accuracy']:.1%}" in text and f"{accuracy['majority']:.1%}" in text
    assert "svcca.png" in text and "overview.png" in text
    assert seen.results["charts"] == 2 and seen.results["lines"] >= 6
    assert re.match(r"layer 1\n.*pre vs ft on eval: \d\.\d{4} \[\d\.\d{4}, \d\.\d{4}\]", seen.results["hover"])
    assert seen.results["sorted"] == sorted(seen.results["sorted"], reverse=True)
    assert seen.screenshot.stat().st_size > 20_000
    shutil.copy(seen.screenshot, tiny_run.run_dir.parent / "screenshot.png")


#: Run in the page: how many charts and lines were drawn, the tooltip at layer 1 of the first chart, the
#: layer column after two clicks on its header (descending), and whether the hostile text ran.
INTERACTIONS = {
    "charts": "document.querySelectorAll('div.chart svg').length",
    "lines": "document.querySelectorAll('div.chart polyline').length",
    "hover": """(() => { const svg = document.querySelector('div.chart svg'); const r = svg.getBoundingClientRect();
        const dot = svg.querySelector('g').querySelectorAll('circle')[1];  // the first line's layer 1
        const x = r.left + Number(dot.getAttribute('cx')) * r.width / 720;
        svg.dispatchEvent(new MouseEvent('mousemove', {clientX: x, clientY: r.top + 50, bubbles: true}));
        return svg.parentElement.querySelector('.tip').innerText; })()""",
    "sorted": """(() => { const table = [...document.querySelectorAll('h3')].find(h => h.textContent.startsWith('pre_vs_ft:'))
        .nextElementSibling; const th = table.querySelector('th'); th.click(); th.click();
        return [...table.tBodies[0].rows].map(r => Number(r.cells[0].textContent)); })()""",
    "pwned": "window.pwned === undefined ? null : window.pwned",
}


def test_report_html_rerenders_from_the_parquet_file_alone(tiny_run, tmp_path, capsys):
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(tiny_run.path, alone / RESULTS_FILE)  # no figures, no verdict.json
    assert main(["report", str(alone), "--html"]) == 0
    page = (alone / REPORT_FILE).read_text()
    assert "1 passed, 1 failed" in page and page.count("<figcaption>") == len(list(tiny_run.run_dir.glob("*.png")))
    assert str(alone / REPORT_FILE) in capsys.readouterr().out
    assert list(alone.glob("*.png")) == []  # --html writes the page alone


@needs_browser
def test_an_interrupted_run_says_so_first(tiny_run, tmp_path):
    table = read_table(tiny_run.path)
    kept = table.filter(pc.not_equal(table.column("comparison"), "pre_vs_run"))  # the series final point
    meta = dict(table.schema.metadata)
    meta.update({b"probekit.complete": b"false", b"probekit.interrupted": b"true"})
    folder = tmp_path / "interrupted"
    folder.mkdir()
    pq.write_table(kept.replace_schema_metadata(meta), folder / RESULTS_FILE)
    assert main(["report", str(folder), "--html"]) == 0
    seen = open_page(folder / REPORT_FILE)
    assert seen.text.startswith("INCOMPLETE run (interrupted): 5 of 6 comparisons (missing pre_vs_run)")
    assert seen.console_errors == [] and seen.requests == []


@needs_browser
def test_diff_html_puts_two_runs_side_by_side(tiny_run, tmp_path):
    other = tmp_path / "b"
    other.mkdir()
    table = read_table(tiny_run.path)
    values = table.column("value").to_pylist()
    values[0] += 0.5  # one value drifts
    pq.write_table(table.set_column(table.column_names.index("value"), "value", [values]), other / RESULTS_FILE)
    page = tmp_path / "diff.html"
    assert main(["diff", str(tiny_run.run_dir), str(other), "--html", str(page)]) == 1
    seen = open_page(page, scripts={"lines": "document.querySelectorAll('div.chart polyline').length"})
    assert seen.console_errors == [] and seen.requests == []
    assert "A: tiny_share" in seen.text and "B: tiny_share" in seen.text
    assert re.search(r"1 of \d+ values changed beyond 1e-06", seen.text) and "changed" in seen.text
    assert seen.results["lines"] >= 12  # A's and B's lines on the same charts


def test_no_html_blocks_the_report(tiny_run, tmp_path):
    root = tiny_run.run_dir.parent
    spec = tiny_spec(root)
    spec.update(comparisons=spec["comparisons"][2:3], expect=[], run={"device": "cpu", "max_length": 16})
    out = tmp_path / "plain"
    api.run(spec, base_dir=root, output=out, plugins=["no:html"])
    assert (out / RESULTS_FILE).is_file() and not (out / REPORT_FILE).exists()


def test_the_notebook_view_is_the_report_body(tiny_run):
    loaded = api.Results.load(tiny_run.run_dir)
    view = loaded._repr_html_()
    page = (tiny_run.run_dir / REPORT_FILE).read_text()
    assert view.count('<div class="probekit-report">') == 1
    # report.html's sections, built by the same code, with the verdicts read back from verdict.json
    assert "1 passed, 1 failed</span></h2>" in view
    shared = page.split("<h2>Fine-tuned")[1].split('<script type="application/json"')[0]
    assert shared.count("<figcaption>") == len(list(tiny_run.run_dir.glob("*.png"))) and shared in view
