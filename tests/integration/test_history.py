"""The run history on real runs of tiny specs: ``probekit ls``, ``probekit diff`` (a drift check: exit 1 on a
change beyond the tolerance, 0 on none, 2 on bad input), ``reports/`` as one Hive-partitioned dataset read by
duckdb and pyarrow without probekit, and the notes a run prints (a `limit` above the data, unwrapped output)."""
from __future__ import annotations

import glob
import json
import re
import shutil

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from probekit.cli import main
from probekit.report.terminal import PLAIN_WIDTH, output_width
from probekit.results.history import diff_tables, find_runs, read_record
from probekit.results.io import metadata, read_table
from probekit.testing.fixtures import save_tiny_model, write_tiny_csv

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = """
name = "tiny"
[run]
device = "cpu"
batch_size = 16

[models.a]
id = "./m_a"
[models.b]
id = "./m_b"

[data.d]
path = "d.csv"
limit = 40
seed = {seed}

[metrics.svcca]
[metrics.attention_js]

[[comparisons]]
name = "a_vs_b"
a = "a"
b = "b"
data = "d"

[[expect]]
name = "svcca below 1"
metric = "svcca"
layers = "all"
below = 1.0

[[expect]]
name = "attention below 0"
metric = "attention_js"
layers = "all"
below = 0.0
"""

OTHER = """
name = "other"
[run]
device = "cpu"
[models.a]
id = "./m_a"
[models.b]
id = "./m_b"
[data.d]
path = "d.csv"
limit = 20
[metrics.attention_js]
[[comparisons]]
name = "b_vs_a"
a = "b"
b = "a"
data = "d"
"""


@pytest.fixture(scope="module")
def history(tmp_path_factory, one_thread):
    """reports/ with three runs of "tiny" (data seeds 1, 2, then 1 again) and one of "other"."""
    folder = tmp_path_factory.mktemp("history")
    save_tiny_model(folder / "m_a", seed=0)
    save_tiny_model(folder / "m_b", seed=1)
    write_tiny_csv(folder / "d.csv", 80)
    reports = folder / "reports"
    for name, text in (("seed1", SPEC.format(seed=1)), ("seed2", SPEC.format(seed=2)), ("other", OTHER)):
        (folder / f"{name}.toml").write_text(text)
    codes, order = [], []
    for name in ("seed1", "seed2", "seed1", "other"):
        codes.append(main(["run", str(folder / f"{name}.toml"), "--reports", str(reports), "--fresh"]))
        # Runs started within one second sort by their random id suffix: keep the order they ran in.
        order += [run.run_id for run in find_runs(reports)[0] if run.run_id not in order]
    assert codes == [1, 1, 1, 0]  # the spec's second expectation fails on purpose
    tiny, _ = find_runs(reports, "tiny")
    tiny.sort(key=lambda run: order.index(run.run_id))
    [other], _ = find_runs(reports, "other")
    return folder, reports, tiny, other


def run_cli(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# ------------------------------------------------------------------ the layout


def test_runs_are_hive_partitions(history):
    _, reports, tiny, other = history
    assert len(tiny) == 3
    for run in (*tiny, other):
        assert run.run_dir == reports / f"spec_name={run.spec}" / f"run={run.run_id}"
        assert {p.name for p in run.run_dir.iterdir()} >= {"results.parquet", "verdict.json", "attention_js.png"}


def test_verdict_is_written_beside_the_results(history):
    seed1 = history[2][0]
    verdict = json.loads((seed1.run_dir / "verdict.json").read_text())
    assert verdict["run_id"] == seed1.run_id and (verdict["passed"], verdict["total"]) == (1, 2)
    assert [(e["name"], e["passed"]) for e in verdict["expectations"]] == [
        ("svcca below 1", True), ("attention below 0", False)]
    assert verdict["expectations"][1]["reason"]  # what the terminal verdict says
    assert (seed1.passed, seed1.expectations, seed1.verdict) == (1, 2, "1/2 passed")
    assert history[3].verdict == "none declared"


# ------------------------------------------------------------------ ls


def test_ls_lists_every_run(history, capsys):
    folder, reports, tiny, other = history
    code, out = run_cli(capsys, "ls", "--reports", reports)
    assert code == 0
    for run in (*tiny, other):
        line = next(line for line in out.splitlines() if run.run_id in line)
        assert run.spec in line and "complete" in line and ", ".join(run.models) in line and run.date in line
        assert set(run.models) == {"a", "b"}
        assert f"run={run.run_id}" in out  # the folder (its column may fold)
    assert out.count("1/2 passed") == 3 and "none declared" in out
    ids = [re.search(r"\d{8}T\d{6}Z-[0-9a-f]{4}", line).group() for line in out.splitlines()
           if re.search(r"\d{8}T\d{6}Z-[0-9a-f]{4}", line)]
    assert ids == [r.run_id for r in sorted((*tiny, other), key=lambda r: (r.started_at, r.run_id))]


def test_ls_of_one_spec_by_name_or_file(history, capsys):
    folder, reports, tiny, other = history
    for spec in ("tiny", folder / "seed2.toml"):
        code, out = run_cli(capsys, "ls", spec, "--reports", reports)
        assert code == 0 and all(run.run_id in out for run in tiny) and other.run_id not in out
    code, out = run_cli(capsys, "ls", "tiyn", "--reports", reports)
    assert code == 0 and "no runs of spec 'tiyn'" in out and "specs with runs: other, tiny" in out
    code, out = run_cli(capsys, "ls", "--reports", folder / "nowhere")
    assert code == 0 and "no runs under" in out
    code, out = run_cli(capsys, "ls", folder / "missing.toml", "--reports", reports)
    assert code == 2 and "missing.toml" in out


def test_ls_shows_an_interrupted_run_and_skips_a_broken_file(history, tmp_path, capsys):
    _, reports, tiny, _ = history
    copy = tmp_path / "reports"
    shutil.copytree(reports, copy)
    table = read_table(tiny[0].path)
    meta = {k: v for k, v in (table.schema.metadata or {}).items()}
    meta.update({b"probekit.complete": b"false", b"probekit.interrupted": b"true", b"probekit.run_id": b"cut"})
    cut = copy / "spec_name=tiny" / "run=cut"
    cut.mkdir()
    pq.write_table(table.replace_schema_metadata(meta), cut / "results.parquet")
    (copy / "spec_name=tiny" / "run=broken").mkdir()
    (copy / "spec_name=tiny" / "run=broken" / "results.parquet").write_bytes(b"not parquet")
    code, out = run_cli(capsys, "ls", "--reports", copy)
    assert code == 0
    line = next(line for line in out.splitlines() if " cut " in line)
    assert "interrupted" in line and "not judged" in line
    assert "skipped" in out and "run=broken" in out and "not a readable results file" in out


# ------------------------------------------------------------------ diff


def test_diff_of_runs_with_different_data_seeds_exits_1(history, capsys):
    _, reports, (seed1, seed2, _), _ = history
    code, out = run_cli(capsys, "diff", seed1.run_dir, seed2.run_dir)
    assert code == 1
    assert f"A: tiny run {seed1.run_id}" in out and f"B: tiny run {seed2.run_id}" in out
    a, b = read_table(seed1.path), read_table(seed2.path)
    diff = diff_tables(a, b)
    before = {r["layer"]: r["value"] for r in a.to_pylist() if r["metric"] == "svcca" and r["head"] is None}
    after = {r["layer"]: r["value"] for r in b.to_pylist() if r["metric"] == "svcca" and r["head"] is None}
    svcca = [row for row in diff.rows if row.metric == "svcca"]
    assert [row.layer for row in svcca] == [0, 1, 2]
    for row in svcca:
        assert (row.a, row.b) == (before[row.layer], after[row.layer]) and row.delta == after[row.layer] - before[row.layer]
        assert row.exceeds == (abs(row.delta) > 1e-6)
        line = next(line for line in out.splitlines() if re.search(rf"a_vs_b\s*│\s*svcca\s*│\s*{row.layer}\s*│", line))
        assert f"{row.a:.6g}" in line and f"{row.b:.6g}" in line and f"{row.delta:+.3g}" in line
        assert ("changed" in line) == row.exceeds
    assert diff.changed and f"{len(diff.changed)} of {len(diff.rows)} values changed beyond 1e-06 (absolute)" in out
    assert [(row.metric, row.layer) for row in diff.rows if row.metric == "attention_js"] == [("attention_js", 1),
                                                                                             ("attention_js", 2)]


def test_diff_of_identical_runs_exits_0(history, capsys):
    _, reports, (seed1, _, again), _ = history
    code, out = run_cli(capsys, "diff", seed1.run_id, again.run_id[:-1], "--reports", reports)  # ids, a unique start
    assert code == 0 and "no change beyond 1e-06 (absolute) in 5 values" in out and "changed" not in out
    code, out = run_cli(capsys, "diff", seed1.path, again.run_dir, "--heads")
    assert code == 0 and "in 9 values" in out  # 3 svcca layers, 2 JS layers, 2 x 2 JS heads


def test_diff_tolerance_absolute_relative_and_changed_only(history, capsys):
    _, _, (seed1, seed2, _), _ = history
    code, out = run_cli(capsys, "diff", seed1.run_dir, seed2.run_dir, "--tolerance", "1")
    assert code == 0 and "no change beyond 1 (absolute)" in out
    code, out = run_cli(capsys, "diff", seed1.run_dir, seed2.run_dir, "--tolerance", "0.5", "--relative")
    assert code == 0 and "(relative)" in out
    code, out = run_cli(capsys, "diff", seed1.run_dir, seed2.run_dir, "--changed")
    rows = [line for line in out.splitlines() if "a_vs_b" in line and "│" in line]
    assert code == 1 and rows and all("changed" in line for line in rows)


@pytest.mark.parametrize("case", ["not a run", "not parquet", "unknown id", "no common comparison",
                                  "negative tolerance", "foreign parquet"])
def test_diff_bad_input_exits_2(history, tmp_path, capsys, case):
    folder, reports, (seed1, *_), other = history
    second = {"not a run": tmp_path, "unknown id": "20990101T000000Z-ffff", "no common comparison": other.run_dir,
              "negative tolerance": seed1.run_dir}.get(case)
    if case == "not parquet":
        second = tmp_path / "results.parquet"
        second.write_text("a,b\n1,2\n")
    if case == "foreign parquet":
        second = tmp_path / "data.parquet"
        pq.write_table(pa.table({"x": [1]}), second)
    extra = ["--tolerance", "-1"] if case == "negative tolerance" else []
    code, out = run_cli(capsys, "diff", seed1.run_dir, second, "--reports", reports, *extra)
    assert code == 2 and "Traceback" not in out
    expected = {"not a run": "not a run folder", "not parquet": "results.parquet",
                "unknown id": "not a run folder, a results file or the id of a run",
                "no common comparison": "no comparison and metric in common",
                "negative tolerance": "expected a finite number >= 0",
                "foreign parquet": "data.parquet"}[case]
    assert expected in out


# ------------------------------------------------------------------ reports/ as one dataset


def test_duckdb_queries_across_runs_and_specs(history):
    _, reports, tiny, other = history
    source = f"read_parquet('{reports}/*/*/results.parquet', hive_partitioning = true, union_by_name = true)"
    per_run = duckdb.sql(f"""
        SELECT spec_name, run, count(*) AS n, bool_and(spec = spec_name AND run_id = run) AS keys_agree
        FROM {source} GROUP BY ALL ORDER BY run""").fetchall()
    assert [(s, r) for s, r, _, _ in per_run] == sorted(((x.spec, x.run_id) for x in (*tiny, other)), key=lambda p: p[1])
    assert all(agree for *_, agree in per_run)
    assert {s: n for s, _, n, _ in per_run} == {"tiny": 9, "other": 6}  # rows per run: 3 + 2 + 2x2; 2 + 2x2
    # the query docs/results.md shows: one metric's layer values of every run of a spec, side by side
    drift = duckdb.sql(f"""
        SELECT run, layer, value FROM {source}
        WHERE spec_name = 'tiny' AND metric = 'svcca' AND head IS NULL ORDER BY run, layer""").fetchall()
    assert len(drift) == 9 and {r for r, _, _ in drift} == {x.run_id for x in tiny}
    expected = {(r["layer"], r["value"]) for r in read_table(tiny[1].path).to_pylist()
                if r["metric"] == "svcca" and r["head"] is None}
    assert {(layer, value) for r, layer, value in drift if r == tiny[1].run_id} == expected
    # a column only some runs have (svcca's k_x) reads as null in the others
    k_x = duckdb.sql(f"SELECT spec_name, count(k_x) FROM {source} GROUP BY ALL ORDER BY 1").fetchall()
    assert k_x == [("other", 0), ("tiny", 9)]


def test_pyarrow_reads_reports_as_one_dataset(history):
    _, reports, tiny, other = history
    files = sorted(glob.glob(f"{reports}/*/*/results.parquet"))  # the recipe of docs/results.md
    keys = ds.partitioning(pa.schema([("spec_name", pa.string()), ("run", pa.string())]), flavor="hive")
    schema = pa.unify_schemas([pq.read_schema(f) for f in files] + [keys.schema])
    runs = ds.dataset(files, partitioning=keys, partition_base_dir=str(reports), schema=schema)
    table = runs.to_table(filter=ds.field("spec_name") == "tiny")
    assert table.num_rows == 27 and set(table.column("run").to_pylist()) == {r.run_id for r in tiny}
    assert table.column("run").to_pylist() == table.column("run_id").to_pylist()
    assert "k_x" in runs.schema.names and runs.to_table().num_rows == 27 + 6


def test_a_numeric_spec_name_keeps_the_spec_column_text(history, tmp_path):
    """Why the folder keys are not named `spec` and `run_id`: a key named like a column must agree with its type."""
    _, _, tiny, _ = history
    table = read_table(tiny[0].path)
    table = table.set_column(table.schema.get_field_index("spec"), "spec", pa.array(["2024"] * table.num_rows))
    for name in ("2024", "tiny"):
        (tmp_path / f"spec_name={name}" / "run=x").mkdir(parents=True)
        pq.write_table(table, tmp_path / f"spec_name={name}" / "run=x" / "results.parquet")
    types = dict(duckdb.sql(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet("
                            f"'{tmp_path}/*/*/results.parquet', hive_partitioning = true))").fetchall())
    assert types["spec"] == "VARCHAR" and types["run_id"] == "VARCHAR"


# ------------------------------------------------------------------ what a run says


def test_a_limit_above_the_data_is_said_once(history, tmp_path, capsys):
    folder = history[0]
    spec = tmp_path / "big.toml"
    spec.write_text(OTHER.replace("limit = 20", "limit = 300").replace('"./', f'"{folder}/')
                    .replace('path = "d.csv"', f'path = "{folder}/d.csv"'))
    code, out = run_cli(capsys, "run", spec, "-o", tmp_path / "run", "--fresh")
    assert code == 0
    warnings = [line for line in out.splitlines() if "data.d.limit" in line and "warning" in line]
    assert len(warnings) == 1, out
    assert "data.d.limit" in warnings[0] and "300" in warnings[0] and "80" in warnings[0]
    assert metadata(read_table(tmp_path / "run"))["complete"] is True
    assert read_record(tmp_path / "run" / "results.parquet").verdict == "none declared"


def test_output_to_a_pipe_is_not_wrapped_at_80_columns(history, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    folder = history[0]
    long_name = "pretrained_model_a_against_the_other_random_model_b_on_the_tiny_evaluation_data"
    spec = tmp_path / "long.toml"
    spec.write_text(SPEC.format(seed=1).replace('name = "a_vs_b"', f'name = "{long_name}"')
                    .replace('"./', f'"{folder}/').replace('path = "d.csv"', f'path = "{folder}/d.csv"'))
    assert main(["run", str(spec), "-o", str(tmp_path / "run"), "--fresh"]) == 1
    lines = capsys.readouterr().out.splitlines()
    # at 80 columns the title wraps after the name and the headers wrap inside their cells
    assert any(f"{long_name}: a vs b" in line for line in lines), lines
    assert any("svcca (1 - mean rho)" in line and "attention_js (nats)" in line for line in lines), lines
    with (tmp_path / "log").open("w") as log:
        assert output_width(log) == PLAIN_WIDTH
        monkeypatch.setenv("COLUMNS", "100")
        assert output_width(log) is None  # $COLUMNS wins: rich reads it
