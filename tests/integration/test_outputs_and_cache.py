"""Nothing lost, nothing silently wrong (issue 12): outputs that never clobber, Ctrl-C, corrupt checkpoints,
``probekit cache``, and fine-tunes that did not learn.

Each case runs the real command (``probekit.cli.main`` in process, or ``python -m probekit`` in a
subprocess for a real SIGINT) on tiny offline models, and checks the exit code, the files present
or absent, and the message (with the path it must name).
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gates import start, wait_until_reached

from probekit import api
from probekit.cli import main
from probekit.errors import UserError
from probekit.results.events import events_of
from probekit.results.io import metadata
from probekit.testing.fixtures import WORDS, write_tiny_csv

pytestmark = pytest.mark.usefixtures("one_thread")

PRETRAINED = """
name = "{name}"
[run]
batch_size = 8
max_length = 16
[models.a]
id = "{a}"
[models.b]
id = "{b}"
[data.eval]
path = "eval.csv"
limit = 24
{metrics}
[[comparisons]]
name = "a_vs_b"
a = "a"
b = "b"
data = "eval"
"""

FINETUNED = """
name = "{name}"
[run]
batch_size = 8
max_length = 16
[models.pre]
id = "{base}"
[models.seed1]
base = "pre"
train = "train"
validation = "valid"
lr = {lr}
epochs = {epochs}
batch_size = 8
max_length = 16
{snapshots}
[data.train]
path = "{train}"
[data.valid]
path = "{valid}"
[data.eval]
path = "eval.csv"
limit = 16
[metrics.svcca]
[[comparisons]]
name = "pre_vs_seed1"
a = "pre"
b = "seed1"
data = "eval"
{expect}
"""


def cache() -> Path:
    return Path(os.environ["PROBEKIT_CACHE"])


def finetune_folders() -> list[Path]:
    folder = cache() / "finetunes"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def write_learnable(path: Path, n: int, *, seed: int = 0, ones: float = 0.5) -> Path:
    """Label 1 sentences use the first 25 words, label 0 the others: a tiny model learns it in 5 epochs."""
    rng = random.Random(seed)
    lines = ["text,label"]
    for i in range(n):
        label = int(i < ones * n)
        words = WORDS[:25] if label else WORDS[25:]
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(4, 8))) + f",{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_uninformative(path: Path, n: int, *, seed: int = 0, ones: float = 0.25) -> Path:
    """Random sentences whose labels say nothing about them, a quarter of them 1: the majority rate is 75%."""
    rng = random.Random(seed)
    lines = ["text,label"]
    for i in range(n):
        lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 8))) + f",{int(i < ones * n)}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def workspace(tmp_path, tiny_models, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_tiny_csv(tmp_path / "eval.csv", 30)
    write_learnable(tmp_path / "train.csv", 48)
    write_learnable(tmp_path / "valid.csv", 40, seed=1)
    return tmp_path


def pretrained_spec(workspace: Path, tiny_models, *, name: str = "tiny", metrics=("svcca",)) -> Path:
    path = workspace / f"{name}.toml"
    path.write_text(PRETRAINED.format(name=name, a=tiny_models[0], b=tiny_models[1],
                                      metrics="\n".join(f"[metrics.{m}]" for m in metrics)))
    return path


def finetuned_spec(workspace: Path, tiny_models, *, name: str = "ft", epochs: int = 5, lr: float = 3e-3,
                   snapshots: str = "", expect: str = "", train: str = "train.csv", valid: str = "valid.csv") -> Path:
    path = workspace / f"{name}.toml"
    path.write_text(FINETUNED.format(name=name, base=tiny_models[0], epochs=epochs, lr=lr, snapshots=snapshots,
                                     expect=expect, train=train, valid=valid))
    return path


# -- outputs never clobber ---------------------------------------------------------------


def test_output_into_a_folder_of_other_files_is_refused_before_anything_runs(workspace, tiny_models, capsys):
    spec = finetuned_spec(workspace, tiny_models)
    mine = workspace / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    assert main(["run", str(spec), "-o", str(mine)]) == 2
    err = capsys.readouterr().err
    assert f"-o {mine}: the folder is not empty" in err and "notes.txt" in err and "--overwrite" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert finetune_folders() == []  # refused before the fine-tune

    assert main(["run", str(spec), "-o", str(mine), "--overwrite"]) == 0
    assert (mine / "notes.txt").read_text() == "my notes"  # --overwrite replaces only a run's files
    assert (mine / "results.parquet").is_file() and (mine / "svcca.png").is_file()


def test_output_holding_another_specs_run_is_refused(workspace, tiny_models, capsys):
    out = workspace / "out"
    assert main(["run", str(pretrained_spec(workspace, tiny_models, name="first")), "-o", str(out)]) == 0
    before = (out / "results.parquet").read_bytes()
    capsys.readouterr()
    assert main(["run", str(pretrained_spec(workspace, tiny_models, name="second")), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"-o {out}" in err and "another spec, 'first'" in err and "--overwrite" in err
    assert (out / "results.parquet").read_bytes() == before


def test_api_run_refuses_and_overwrite_true_writes(workspace, tiny_models):
    mine = workspace / "mine"
    mine.mkdir()
    (mine / "keep.csv").write_text("a,b\n")
    spec = pretrained_spec(workspace, tiny_models)
    with pytest.raises(UserError, match="overwrite=True"):
        api.run(spec, output=mine)
    results = api.run(spec, output=mine, overwrite=True)
    assert results.path == mine / "results.parquet" and (mine / "keep.csv").is_file()


def test_rerun_into_its_run_folder_replaces_the_run_whole(workspace, tiny_models, capsys):
    out = workspace / "out"
    spec = pretrained_spec(workspace, tiny_models, metrics=("svcca", "attention_js"))
    assert main(["run", str(spec), "-o", str(out)]) == 0
    assert {"attention_js.png", "attention_js_heads.png", "svcca.png"} <= {p.name for p in out.iterdir()}
    (out / "notes.txt").write_text("mine")
    spec = pretrained_spec(workspace, tiny_models, metrics=("svcca",))  # the same spec, attention_js dropped
    assert main(["run", str(spec), "-o", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert not [n for n in names if n.startswith("attention_js")]  # no stale figure beside the new results
    assert {"svcca.png", "results.parquet", "notes.txt"} <= names
    assert set(pq.read_table(out / "results.parquet").column("metric").to_pylist()) == {"svcca"}


HOLDER = """
import sys
import time
from pathlib import Path

from probekit.engine.outputs import claimed

folder, cache, ready, release = map(Path, sys.argv[1:])
with claimed(folder, cache, "-o"):
    ready.write_text("held")
    while not release.exists():  # the gate: the test says when this run ends
        time.sleep(0.05)
"""


def test_an_output_folder_is_claimed_by_one_run_at_a_time(workspace, tiny_models, capsys):
    """A run into a folder another process is writing into is refused before anything runs, naming the process;
    once that process is gone the folder is free again."""
    out, ready, release = workspace / "out", workspace / "ready", workspace / "release"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), os.environ["PROBEKIT_CACHE"], str(ready),
                               str(release)])
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert holder.poll() is None and time.monotonic() < deadline, "the holder did not take the lock"
            time.sleep(0.05)
        assert main(["run", str(pretrained_spec(workspace, tiny_models)), "-o", str(out)]) == 2
        err = capsys.readouterr().err
        flat = " ".join(err.split())
        assert f"-o {out}: another probekit run ({holder.pid}@" in flat, err
        assert "is writing into this folder now; nothing was run" in flat, err
        assert not out.exists()
    finally:
        release.write_text("go")
        holder.wait(timeout=60)
    assert main(["run", str(pretrained_spec(workspace, tiny_models)), "-o", str(out)]) == 0
    assert pq.read_table(out / "results.parquet").num_rows > 0


def test_output_that_is_a_file_is_refused_before_any_fine_tune(workspace, tiny_models, capsys):
    spec = finetuned_spec(workspace, tiny_models)
    file = workspace / "taken"
    file.write_text("not a folder")
    assert main(["run", str(spec), "-o", str(file)]) == 2
    assert f"-o {file}: is a file" in capsys.readouterr().err
    assert main(["run", str(spec), "-o", str(file / "sub")]) == 2
    assert f"{file} is a file" in capsys.readouterr().err
    assert finetune_folders() == [] and file.read_text() == "not a folder"


def unwritable_folder(workspace: Path) -> Path:
    if os.geteuid() == 0:  # root writes through permissions; /proc takes no new files even from root
        if not Path("/proc/self").exists():
            pytest.skip("needs a folder this user cannot write")
        return Path("/proc/probekit-test-output")
    folder = workspace / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    return folder / "run"


def test_unwritable_output_is_refused_before_any_fine_tune(workspace, tiny_models, capsys):
    spec = finetuned_spec(workspace, tiny_models)
    target = unwritable_folder(workspace)
    try:
        assert main(["run", str(spec), "-o", str(target)]) == 2
    finally:
        if target.parent.name == "locked":
            target.parent.chmod(0o700)
    err = capsys.readouterr().err
    assert f"-o {target}: cannot write there" in err and "nothing was run" in err and "Traceback" not in err
    assert finetune_folders() == []


SABOTAGE = '''
import os
import shutil
from pathlib import Path

import probekit


class Sabotage(probekit.Metric):
    """Finishes by putting a file where the run folder was: the run folder cannot be written at the end."""

    name = "sabotage"
    needs = frozenset({"hidden_states"})

    def update(self, a, b, batch):
        pass

    def finalize(self):
        out = Path(os.environ["SABOTAGE_OUTPUT"])
        shutil.rmtree(out, ignore_errors=True)
        out.write_text("in the way")
        return [probekit.Row(0, 1.0)]


@probekit.hookimpl
def probekit_register_metrics(register):
    register(Sabotage)
'''


def test_results_that_cannot_be_written_at_the_end_go_to_a_fallback_file(workspace, tiny_models, capsys,
                                                                           monkeypatch):
    plugin = workspace / "sabotage.py"
    plugin.write_text(SABOTAGE)
    spec = pretrained_spec(workspace, tiny_models, metrics=("svcca", "sabotage"))
    out = workspace / "out"
    monkeypatch.setenv("SABOTAGE_OUTPUT", str(out))
    # exit 2: the environment changed under the run (a folder became a file), not a bug of probekit or a plugin
    assert main(["run", str(spec), "-o", str(out), "-p", str(plugin)]) == 2
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert f"could not write {out / 'results.parquet'}" in printed and "Traceback" not in printed
    [fallback] = (cache() / "unsaved").glob("tiny-*/results.parquet")
    assert f"results: {fallback}" in captured.out and f"saved in {fallback}" in printed
    table = pq.read_table(fallback)
    assert set(table.column("metric").to_pylist()) == {"svcca", "sabotage"}  # nothing computed was lost
    assert metadata(table)["complete"] is True and out.read_text() == "in the way"
    assert main(["cache", "ls"]) == 0
    assert f"could not write where they were asked to: 1 in {cache() / 'unsaved'}" in capsys.readouterr().out


# -- interrupts --------------------------------------------------------------------------


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PROBEKIT_CACHE": str(cache()), "HF_HUB_OFFLINE": "1",
            "PROBEKIT_DISABLE_PLUGIN_AUTOLOAD": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def test_ctrl_c_during_a_fine_tune_exits_130_marks_the_results_and_leaves_no_partial_folder(workspace, tiny_models,
                                                                                           capsys):
    """SIGINT reaches the child whatever way pytest was started (gates.start gives it the default handling), at
    a named point in the fine-tune (its second step, after an early snapshot made the partial folder)."""
    spec = finetuned_spec(workspace, tiny_models, epochs=3, lr=1e-4, snapshots="snapshots = [0.001, 0.5]")
    out, log, gates = workspace / "out", workspace / "stderr.txt", workspace / "gates"
    process = start(["run", str(spec), "-o", str(out)], gates, "training", log, subprocess_env())
    try:
        wait_until_reached(process, gates, "training", log)
        assert [p for p in (cache() / "finetunes").iterdir() if ".partial-" in p.name]  # caught mid-way
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    err = log.read_text()
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert [p.name for p in finetune_folders() if ".partial-" in p.name] == []
    assert [p.name for p in finetune_folders()] == []  # and nothing half-trained in the cache
    meta = metadata(pq.read_table(out / "results.parquet"))
    assert meta["complete"] is False and meta["interrupted"] is True

    assert main(["report", str(out)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("INCOMPLETE run (interrupted): 0 of 1 comparisons (missing pre_vs_seed1)")


def test_stale_partial_folders_of_dead_processes_are_removed_at_the_next_fine_tune(workspace, tiny_models):
    finetunes = cache() / "finetunes"
    finetunes.mkdir(parents=True)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = finetunes / f"0123456789abcdef0123.partial-{int(gone.stdout)}"
    (dead / "final").mkdir(parents=True)
    (dead / "final" / "model.safetensors").write_bytes(b"x" * 1000)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        alive = finetunes / f"fedcba9876543210fedc.partial-{sleeper.pid}"
        alive.mkdir()
        api.run(finetuned_spec(workspace, tiny_models), output=workspace / "out")
        assert not dead.exists()  # its process is gone: removed
        assert alive.is_dir()  # a fine-tune in progress elsewhere: left alone
    finally:
        sleeper.kill()
        sleeper.wait()


# -- corrupt checkpoints and probekit cache --------------------------------------------------


def entry_folder() -> Path:
    [folder] = [p for p in finetune_folders() if "." not in p.name]
    return folder


def test_a_truncated_checkpoint_is_reported_moved_aside_and_retrained(workspace, tiny_models, capsys):
    spec = finetuned_spec(workspace, tiny_models)
    assert main(["run", str(spec), "-o", str(workspace / "first")]) == 0
    folder = entry_folder()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["files"]["final/model.safetensors"]["size"] > 1000 and "meta.json" in manifest["files"]
    weights = folder / "final" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    capsys.readouterr()

    assert main(["cache", "verify"]) == 1
    out = capsys.readouterr().out
    assert f"CORRUPT finetunes/{folder.name}" in out and "final/model.safetensors is 1000 bytes" in out
    assert str(folder) in out

    assert main(["run", str(spec), "-o", str(workspace / "second"), "--fresh"]) == 0
    err = capsys.readouterr().err
    assert f"the cached fine-tune {folder} is corrupt (final/model.safetensors is 1000 bytes" in err
    [aside] = [p for p in finetune_folders() if ".corrupt-" in p.name]
    assert aside.name.startswith(f"{folder.name}.corrupt-") and f"moved it aside to {aside}" in err
    assert (folder / "final" / "model.safetensors").stat().st_size > 1000  # retrained, whole again

    assert main(["cache", "verify"]) == 0
    assert "leftover" in capsys.readouterr().out
    assert main(["cache", "prune"]) == 0
    assert f"removed {aside}" in capsys.readouterr().out and not aside.exists() and folder.is_dir()


def test_an_edited_cached_result_is_detected_by_verify_and_never_reused(workspace, tiny_models, capsys):
    """The results cache is not trusted blindly: its entries have the manifest fine-tunes have (issue 22)."""
    spec = pretrained_spec(workspace, tiny_models)
    assert main(["run", str(spec), "-o", str(workspace / "first")]) == 0
    [entry] = (Path(os.environ["PROBEKIT_CACHE"]) / "results").iterdir()
    assert "results.parquet" in json.loads((entry / "manifest.json").read_text())["files"]
    cached = pq.read_table(entry / "results.parquet")
    true_values = cached.column("value").to_pylist()
    assert true_values and all(v is not None for v in true_values)
    edited = cached.set_column(cached.schema.get_field_index("value"), "value",
                               pa.array([0.5] * cached.num_rows, pa.float64()))
    pq.write_table(edited.replace_schema_metadata(cached.schema.metadata), entry / "results.parquet")
    capsys.readouterr()

    assert main(["cache", "verify"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert f"CORRUPT results/{entry.name}" in out and "results.parquet is" in out, out

    assert main(["run", str(spec), "-o", str(workspace / "second")]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert f"the cached results {entry} do not match their manifest" in err and "computing again" in err, err
    assert "reusing its results" not in err
    assert pq.read_table(workspace / "second" / "results.parquet").column("value").to_pylist() == true_values
    assert main(["cache", "verify"]) == 0  # the entry was written again, whole


def test_an_entry_without_a_manifest_is_checked_by_reading_it_then_gets_one(workspace, tiny_models, capsys):
    spec = finetuned_spec(workspace, tiny_models)
    assert main(["run", str(spec), "-o", str(workspace / "first")]) == 0
    folder = entry_folder()
    (folder / "manifest.json").unlink()  # as an entry from before manifests
    weights = folder / "final" / "model.safetensors"
    written = weights.stat().st_mtime_ns
    assert main(["run", str(spec), "-o", str(workspace / "second"), "--fresh"]) == 0
    assert (folder / "manifest.json").is_file() and weights.stat().st_mtime_ns == written  # reused, not retrained
    assert not [p for p in finetune_folders() if ".corrupt-" in p.name]

    (folder / "manifest.json").unlink()
    weights.write_bytes(weights.read_bytes()[:1000])  # and one that does not read
    capsys.readouterr()
    assert main(["run", str(spec), "-o", str(workspace / "third"), "--fresh"]) == 0
    err = capsys.readouterr().err
    assert f"the cached fine-tune {folder} is corrupt (final/model.safetensors cannot be read" in err
    assert [p for p in finetune_folders() if ".corrupt-" in p.name]


def test_cache_ls_shows_what_each_entry_is_and_prune_removes_the_oldest(workspace, tiny_models, capsys):
    spec = finetuned_spec(workspace, tiny_models)
    assert main(["run", str(spec), "-o", str(workspace / "first")]) == 0
    capsys.readouterr()
    os.environ["COLUMNS"] = "250"
    try:
        assert main(["cache", "ls"]) == 0
    finally:
        del os.environ["COLUMNS"]
    out = capsys.readouterr().out
    folder = entry_folder()
    for shown in (folder.name, f"{spec.name}: models.seed1", "48 ex", "lr 0.003 epochs 5 batch 8", "(majority 50.0%)",
                  "kB", "ago", "results kept for reuse", "ft", "1 fine-tunes, 1 results entries"):
        assert shown in out, shown

    old = time.time() - 40 * 86400
    os.utime(folder / "last_used", (old, old))
    assert main(["cache", "prune", "--older-than", "30d", "--dry-run"]) == 0
    assert f"would remove {folder}" in capsys.readouterr().out and folder.is_dir()
    assert main(["cache", "prune", "--older-than", "30d"]) == 0
    out = capsys.readouterr().out
    assert f"removed {folder}" in out and "last used 40d ago" in out and not folder.exists()
    [results] = (cache() / "results").iterdir()
    assert main(["cache", "prune", "--max-size", "1B"]) == 0
    assert f"removed {results}" in capsys.readouterr().out and not results.exists()
    assert main(["cache", "prune", "--max-size", "lots"]) == 2


def test_a_shared_fine_tune_is_listed_under_every_spec_and_a_cached_one_reports_no_speed(workspace, tiny_models,
                                                                                       capsys):
    first, second = finetuned_spec(workspace, tiny_models, name="ft"), finetuned_spec(workspace, tiny_models, name="ft2")
    assert main(["run", str(first), "-o", str(workspace / "one")]) == 0
    trained = capsys.readouterr().err
    assert "fine-tune seed1: done in" in trained and "fine-tune seed1: trained, accuracy" in trained, trained
    assert main(["run", str(second), "-o", str(workspace / "two")]) == 0
    reused = capsys.readouterr().err
    folder = entry_folder()
    assert f"fine-tune seed1: cached ({folder}), accuracy" in reused, reused
    assert "steps/s" not in reused, reused  # nothing trained, so no speed
    os.environ["COLUMNS"] = "300"
    try:
        assert main(["cache", "ls"]) == 0
    finally:
        del os.environ["COLUMNS"]
    assert "ft.toml: models.seed1; ft2.toml: models.seed1" in capsys.readouterr().out


# -- say when the science is weak ------------------------------------------------------------


def test_a_fine_tune_that_does_not_beat_the_majority_rate_is_flagged_and_learned_fails(workspace, tiny_models, capsys):
    write_uninformative(workspace / "noise_train.csv", 48)
    write_uninformative(workspace / "noise_valid.csv", 40, seed=1)
    expect = '[[expect]]\nname = "seed1 learned"\nlearned = ["seed1"]\n'
    spec = finetuned_spec(workspace, tiny_models, name="noise", train="noise_train.csv", valid="noise_valid.csv",
                          expect=expect)
    out = workspace / "out"
    assert main(["run", str(spec), "-o", str(out)]) == 1
    captured = capsys.readouterr()
    meta = metadata(pq.read_table(out / "results.parquet"))
    seed1 = meta["models"]["seed1"]
    assert seed1["majority"] == 0.75 and seed1["chance"] == 0.5 and seed1["accuracy"] <= 0.77
    [warning] = [note.message for note in events_of(meta, "note")]
    assert warning.startswith(f"models.seed1: validation accuracy {seed1['accuracy']:.1%} does not beat the "
                              "majority-class rate of its validation data (75.0%; chance 50.0%) by 2 points")
    assert f"warning {warning}" in captured.err and f"warning {warning}" in captured.out  # live, and in the report
    assert f"seed1 {seed1['accuracy']:.1%} (majority 75.0%, not beaten)" in captured.out
    assert "FAILED seed1 learned - seed1: validation accuracy" in captured.out


def test_learned_passes_when_the_fine_tune_learned(workspace, tiny_models, capsys):
    expect = '[[expect]]\nlearned = "seed1"\nmargin = 0.05\n'
    spec = finetuned_spec(workspace, tiny_models, expect=expect)
    assert main(["run", str(spec), "-o", str(workspace / "out")]) == 0
    out = capsys.readouterr().out
    assert "PASSED expect[0]: learned (seed1) - seed1 100.0% > majority 50.0% + 5 points" in out
    assert "(majority 50.0%)" in out and "not beaten" not in out
