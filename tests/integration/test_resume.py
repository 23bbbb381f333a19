"""``probekit run --resume RUN_DIR`` (issue 11): an interrupted run continued into its own folder, and a killed
driver that leaves only whole files behind.

The spec fine-tunes one tiny model and compares it with its base on three datasets: three probe groups, so the
results file is rewritten after each. Its ``pause`` metric (a plugin file beside the spec) raises KeyboardInterrupt
(what Ctrl-C raises) on the comparison named by $PAUSE_INTERRUPT. A killed driver is killed where it stands at a
named point (gates.py), never after a delay.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gates import POINTS, kill, start, wait_until_reached

from probekit.cli import main
from probekit.models.manifest import entry_problem, leftover
from probekit.results.io import metadata, read_table, write_table
from probekit.results.schema import build_table
from probekit.testing.fixtures import write_tiny_csv

pytestmark = pytest.mark.usefixtures("one_thread")

PAUSE = '''
import os

import probekit


class Pause(probekit.Metric):
    """One row per comparison; a KeyboardInterrupt on the comparison $PAUSE_INTERRUPT names."""

    name = "pause"
    needs = frozenset({"hidden_states"})

    def update(self, a, b, batch):
        pass

    def finalize(self):
        if self.context.comparison == os.environ.get("PAUSE_INTERRUPT"):
            raise KeyboardInterrupt
        return [probekit.Row(0, 1.0)]


@probekit.hookimpl
def probekit_register_metrics(register):
    register(Pause)
'''

SPEC = """
name = "{name}"
plugins = ["pause.py"]
[run]
batch_size = 8
max_length = 16
threads = 1
[models.pre]
id = "{base}"
[models.seed1]
base = "pre"
train = "train"
lr = 3e-3
epochs = 3
batch_size = 8
max_length = 16
[data.train]
path = "train.csv"
{data}
[metrics.svcca]
[metrics.pause]
{comparisons}
"""
DATA = ("eval1", "eval2", "eval3")
COMPARISONS = tuple(f"on_{data}" for data in DATA)


@pytest.fixture
def spec(tmp_path, tiny_models, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PAUSE_INTERRUPT", raising=False)
    (tmp_path / "pause.py").write_text(PAUSE)
    write_tiny_csv(tmp_path / "train.csv", 48, seed=7)
    for seed, data in enumerate(DATA):
        write_tiny_csv(tmp_path / f"{data}.csv", 16, seed=seed)
    return write_spec(tmp_path, tiny_models, "resumable")


def write_spec(folder: Path, tiny_models, name: str, extra: str = "") -> Path:
    data = "\n".join(f'[data.{d}]\npath = "{d}.csv"' for d in DATA)
    comparisons = "\n".join(f'[[comparisons]]\nname = "on_{d}"\na = "pre"\nb = "seed1"\ndata = "{d}"' for d in DATA)
    path = folder / f"{name}.toml"
    path.write_text(SPEC.format(name=name, base=tiny_models[0], data=data, comparisons=comparisons) + extra)
    return path


def cache() -> Path:
    return Path(os.environ["PROBEKIT_CACHE"])


def start_driver(spec: Path, out: Path, log: Path, gates: Path, stop_at: str) -> subprocess.Popen:
    """``probekit run spec -o out`` in a child that stops at the named point ``stop_at`` (gates.py)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "PROBEKIT_DISABLE_PLUGIN_AUTOLOAD": "1",
           "HF_HUB_OFFLINE": "1"}
    return start(["run", str(spec), "-o", str(out)], gates, stop_at, log, env)


def rows(path: Path) -> list[tuple]:
    """(comparison, metric, layer, head, value) of every row, sorted: what two runs must agree on."""
    table = pq.read_table(path)
    return sorted(zip(*(table.column(c).to_pylist() for c in ("comparison", "metric", "layer", "head", "value")),
                      strict=True), key=lambda row: tuple(str(v) for v in row[:4]))


def comparisons_in(path: Path) -> set[str]:
    return set(pq.read_table(path).column("comparison").to_pylist())


def test_resume_after_sigkill_finishes_the_run_as_an_uninterrupted_run_would(spec, tmp_path, capsys):
    out, log, gates = tmp_path / "out", tmp_path / "driver.log", tmp_path / "gates"
    driver = start_driver(spec, out, log, gates, "first-comparison-saved")
    try:
        wait_until_reached(driver, gates, "first-comparison-saved", log)
    finally:
        kill(driver)
    assert "fine-tune seed1: trained" in log.read_text()
    killed = metadata(read_table(out))
    assert killed["complete"] is False and comparisons_in(out / "results.parquet") == {COMPARISONS[0]}
    [entry] = [p for p in (cache() / "finetunes").iterdir() if p.is_dir()]

    assert main(["run", str(spec), "--resume", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"resuming run {killed['run_id']} of resumable in {out}: 1 of 3 comparisons finished" in err
    assert "fine-tune seed1: cached (" in err and "trained" not in err  # not trained again
    assert [p for p in (cache() / "finetunes").iterdir() if p.is_dir()] == [entry]
    resumed = metadata(read_table(out))
    assert resumed["complete"] is True and resumed["run_id"] == killed["run_id"] and "resumed_at" in resumed
    assert set(resumed["models"]) == {"pre", "seed1"}
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # no temporary file left
    assert (out / "verdict.json").is_file() and (out / "svcca.png").is_file()

    reference = tmp_path / "reference"
    assert main(["run", str(spec), "-o", str(reference), "--fresh"]) == 0
    assert rows(out / "results.parquet") == rows(reference / "results.parquet")  # the same values, exactly


def test_resume_after_ctrl_c_probes_only_the_missing_comparisons(spec, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv("PAUSE_INTERRUPT", COMPARISONS[1])
    assert main(["run", str(spec), "-o", str(out)]) == 130
    assert metadata(read_table(out))["interrupted"] is True
    # on_eval2 was interrupted between its two metrics: its svcca rows are written, its pause rows are not
    assert {(r[0], r[1]) for r in rows(out / "results.parquet")} == {
        ("on_eval1", "svcca"), ("on_eval1", "pause"), ("on_eval2", "svcca")}
    finished = [r for r in rows(out / "results.parquet") if r[0] == "on_eval1"]
    monkeypatch.delenv("PAUSE_INTERRUPT")
    capsys.readouterr()

    assert main(["run", "--resume", str(out)]) == 0  # the spec: the file the run recorded
    err = capsys.readouterr().err
    assert "1 of 3 comparisons finished" in err and "probe on_eval1" not in err and "probe on_eval2" in err
    resumed = metadata(read_table(out))
    assert resumed["complete"] is True and "interrupted" not in resumed
    final = rows(out / "results.parquet")
    assert {r[0] for r in final} == set(COMPARISONS) and len({r[:4] for r in final}) == len(final)  # no row twice
    assert set(finished) <= set(final)  # the finished comparison's rows, kept as they were

    capsys.readouterr()
    assert main(["run", "--resume", str(out)]) == 0  # a finished run: nothing left to probe
    assert "3 of 3 comparisons finished" in capsys.readouterr().err


@pytest.mark.parametrize("point", POINTS)
def test_a_driver_killed_at_a_named_point_leaves_only_whole_files(spec, tmp_path, point):
    """Wherever SIGKILL lands (in the fine-tune, with a results file written but not yet renamed, after the first
    comparison is saved), every results file and checkpoint there is is whole: a partial checkpoint only under
    its .partial- name, a partial results file only as a temporary; and the run resumes from there."""
    out, log, gates = tmp_path / "out", tmp_path / "driver.log", tmp_path / "gates"
    driver = start_driver(spec, out, log, gates, point)
    try:
        wait_until_reached(driver, gates, point, log)
    finally:
        kill(driver)
    where = f"killed at {point}; the driver's log:\n{log.read_text()}"
    finetunes = cache() / "finetunes"
    if point == "training":  # killed mid-way through the fine-tune: nothing of it whole yet
        assert not (out / "results.parquet").exists(), where
        assert not [p for p in finetunes.iterdir() if leftover(p) is None] if finetunes.is_dir() else True, where
    else:
        assert (out / "results.parquet").exists() or any(p.name.endswith(".tmp") for p in out.iterdir()), where

    if (out / "results.parquet").exists():
        table = read_table(out)  # a whole Parquet file with its metadata, or this raises
        assert comparisons_in(out / "results.parquet") <= set(COMPARISONS), where
        assert metadata(table)["spec_name"] == "resumable", where
    for path in out.iterdir() if out.is_dir() else ():
        assert path.suffix == ".png" or path.name in ("results.parquet", "verdict.json") or (
            path.name.startswith(".results.parquet.") and path.name.endswith(".tmp")), (path, where)
    finetunes = cache() / "finetunes"
    for path in finetunes.iterdir() if finetunes.is_dir() else ():
        if leftover(path) is None:
            assert entry_problem(path, write_missing=False) is None, (path, where)
        else:
            assert leftover(path).kind == "partial", (path, where)

    if (out / "results.parquet").exists():  # and the run goes on from there
        assert main(["run", str(spec), "--resume", str(out)]) == 0, where
        assert comparisons_in(out / "results.parquet") == set(COMPARISONS), where
        assert not [p for p in out.iterdir() if p.name.startswith(".")], where
        assert not [p for p in finetunes.iterdir() if ".partial-" in p.name], where


# -- bad input ---------------------------------------------------------------------------------


def fake_run(folder: Path, spec_name: str, spec_text: str) -> Path:
    """A results file of a run of ``spec_name`` with the text ``spec_text``, and no rows."""
    return write_table(build_table([], {"run_id": "20240101T000000Z-abcd", "spec_name": spec_name,
                                        "spec_text": spec_text, "complete": False}), folder / "results.parquet")


def test_resume_of_a_folder_that_holds_no_run_is_bad_input(spec, tmp_path, capsys):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert main(["run", str(spec), "--resume", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"--resume {folder}: not a run folder: it holds no results.parquet" in err and "Traceback" not in err

    (folder / "results.parquet").write_bytes(b"PAR1 not really")
    assert main(["run", "--resume", str(folder)]) == 2
    assert f"--resume {folder}: not a run folder: " in capsys.readouterr().err

    missing = tmp_path / "missing"
    assert main(["run", "--resume", str(missing)]) == 2
    assert f"--resume {missing}: no such folder" in capsys.readouterr().err

    assert main(["run", str(spec), "--resume", str(folder), "-o", str(tmp_path / "elsewhere")]) == 2
    assert f"--resume {folder} writes into that run folder" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "results.parquet"]
    assert not (cache() / "finetunes").exists()  # refused before anything ran


def test_resume_of_another_specs_run_is_bad_input(spec, tmp_path, tiny_models, capsys):
    other = tmp_path / "other"
    other.mkdir()
    fake_run(other, "another", "name = 'another'\n")
    assert main(["run", str(spec), "--resume", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"--resume {other}: a run of spec 'another', not of 'resumable'; nothing was run" in err

    changed = tmp_path / "changed"
    changed.mkdir()
    fake_run(changed, "resumable", spec.read_text())
    edited = write_spec(tmp_path, tiny_models, "resumable", extra="# a comment: another text\n")
    assert main(["run", str(edited), "--resume", str(changed)]) == 2
    err = capsys.readouterr().err
    assert f"--resume {changed}: a run of another version of spec 'resumable'" in err and "sha256" in err
    assert not (cache() / "finetunes").exists()

    assert main(["run", "--resume", str(other)]) == 2  # no spec given, and the run recorded none
    assert f"--resume {other}: the run's spec (not recorded) is not a file here" in capsys.readouterr().err
