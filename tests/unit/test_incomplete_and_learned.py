"""Reports that say when a run is incomplete or a fine-tune did not learn, the ``learned`` expectation, and the
pure parts of outputs and the cache (units, manifests), on hand-built tables and folders: no model loads."""
from __future__ import annotations

import io
import json
import tomllib
from pathlib import Path

import pytest
from rich.console import Console

from probekit.engine.cache_admin import format_size, parse_duration, parse_size
from probekit.engine.outputs import check_output, clear_run_files
from probekit.errors import SpecError, UserError
from probekit.results.events import Event
from probekit.expect.evaluate import evaluate
from probekit.hooks.manager import build_manager
from probekit.metrics.base import Row
from probekit.models.manifest import entry_problem, manifest_problem, write_manifest
from probekit.report.figures import iter_figures
from probekit.report.terminal import render
from probekit.results.io import write_table
from probekit.results.schema import RowContext, build_table, to_records
from probekit.spec.load import parse_spec

MODELS = {"pre": {"source": "p", "identity": "p", "accuracy": None},
          "nli": {"source": "n", "identity": "n", "accuracy": 0.763, "majority": 0.334, "chance": 1 / 3},
          "rte": {"source": "r", "identity": "r", "accuracy": 0.487, "majority": 0.527, "chance": 0.5},
          "mrpc": {"source": "m", "identity": "m", "accuracy": 0.713, "majority": 0.697, "chance": 0.5}}


def table(comparisons=("pre_vs_nli", "pre_vs_rte"), planned=("pre_vs_nli", "pre_vs_rte", "pre_vs_mrpc"), **meta):
    records = []
    for name in comparisons:
        context = RowContext("run-1", "glue", name, "pre", name.removeprefix("pre_vs_"), None, None, "dev", "svcca")
        records += to_records(context, [Row(layer, 0.1 * layer, n_examples=8, n_tokens=80) for layer in range(3)])
    return build_table(records, {"spec_name": "glue", "run_id": "run-1", "device": "cpu", "models": MODELS,
                                 "metrics": {"svcca": {"metric": "svcca", "unit": "1 - mean rho"}},
                                 "comparisons": list(planned), **meta})


def rendered(results) -> str:
    console = Console(record=True, width=160, file=io.StringIO())
    render(results, console)
    return console.export_text()


def test_an_interrupted_run_says_so_first_and_lists_no_accuracy_outside_the_table():
    text = rendered(table(complete=False, interrupted=True))
    first = text.splitlines()[0]
    assert first.startswith("INCOMPLETE run (interrupted): 2 of 3 comparisons (missing pre_vs_mrpc)")
    assert "probekit glue  run run-1" in first
    assert "nli 76.3% (majority 33.4%)" in text and "rte 48.7% (majority 52.7%, not beaten)" in text
    assert "mrpc 71.3%" not in text and "mrpc" not in text.splitlines()[1]  # resolved before the interrupt, never compared


def test_a_complete_run_or_an_older_file_is_not_called_incomplete():
    for results in (table(complete=True), table()):
        assert "INCOMPLETE" not in rendered(results)


def test_warnings_of_the_run_are_in_the_report():
    note = Event("note", "models.rte: validation accuracy 48.7% does not beat ...")
    text = rendered(table(complete=True, events=[note.record()]))
    assert "warning models.rte: validation accuracy 48.7% does not beat" in text


def test_figures_of_an_incomplete_run_say_so_in_their_titles():
    [(stem, figure)] = list(iter_figures(table(complete=False)))
    assert stem == "svcca"
    assert "INCOMPLETE run (stopped before the end): 2 of 3 comparisons" in figure.axes[0].get_title()
    [(_, figure)] = list(iter_figures(table(complete=True)))
    assert "INCOMPLETE" not in figure.axes[0].get_title()


# -- the learned expectation ---------------------------------------------------------------

SPEC = """
name = "glue"
[models.pre]
id = "org/pre"
[models.nli]
base = "pre"
train = "d"
[models.rte]
base = "pre"
train = "d"
snapshots = [0.5]
[data.d]
task = "sentiment"
[metrics.svcca]
[[comparisons]]
name = "pre_vs_nli"
a = "pre"
b = "nli"
data = "d"
[[comparisons]]
name = "pre_vs_rte_half"
a = "pre"
b = "rte@0.5"
data = "d"
"""


def parse(expect: str):
    manager = build_manager(autoload=False)
    text = SPEC + expect
    return parse_spec(tomllib.loads(text), path=Path("/nonexistent/glue.toml"), text=text,
                      metrics={name: info.metric for name, info in manager.metrics.items()},
                      sources=manager.sources, kinds=manager.expectations, overrides={})


def problems(expect: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse(expect)
    return [str(p) for p in caught.value.problems]


def test_learned_parses_with_a_default_margin():
    [expectation] = parse('[[expect]]\nlearned = ["nli"]\n').expectations
    assert expectation.kind == "learned" and expectation.models == ("nli",) and expectation.margin == 0.02
    assert expectation.name == "expect[0]: learned (nli)"
    [expectation] = parse('[[expect]]\nname = "nli learns"\nlearned = "nli"\nmargin = 0.05\n').expectations
    assert expectation.margin == 0.05 and expectation.describe().startswith("models nli: validation accuracy above")


def test_learned_mistakes_are_found_before_any_model_loads():
    assert problems('[[expect]]\nlearned = ["nil"]\n') == [
        "expect[0].learned: found 'nil'; expected a model declared under [models]: pre, nli, rte (did you mean 'nli'?)"]
    assert "a fine-tuned model (models.pre is pre-trained" in problems('[[expect]]\nlearned = ["pre"]\n')[0]
    assert "models.rte is only compared through its snapshots" in problems('[[expect]]\nlearned = ["rte"]\n')[0]
    assert problems('[[expect]]\nlearned = ["nli"]\nmetric = "svcca"\n')[0].startswith(
        "expect[0].metric: found `metric` in a learned expectation; expected only name, learned, margin")
    assert "a fraction of accuracy >= 0 and < 1" in problems('[[expect]]\nlearned = ["nli"]\nmargin = 5\n')[0]
    assert "e.g. learned = [\"seed1\", \"seed2\"]" in problems("[[expect]]\nlearned = []\n")[0]


def test_learned_passes_above_the_majority_rate_and_fails_at_it():
    spec = parse('[[expect]]\nlearned = ["nli"]\n[[expect]]\nname = "by 50 points"\nlearned = ["nli"]\nmargin = 0.5\n')
    passed, failed = evaluate(spec.expectations, table(complete=True))
    assert passed.passed and passed.reason == "nli 76.3% > majority 33.4% + 2 points"
    assert not failed.passed and "nli: validation accuracy 76.3% does not beat the majority-class rate 33.4% by " \
                                 "50 points" in failed.reason
    assert "<-- fails" in failed.table() and "majority" in failed.table()


def test_learned_fails_without_a_majority_rate_or_accuracy():
    spec = parse('[[expect]]\nlearned = ["nli"]\n')
    old = {"nli": {"source": "n", "identity": "n", "accuracy": 0.8}}
    [outcome] = evaluate(spec.expectations, build_table([], {"models": old}))
    assert not outcome.passed and "no majority-class rate" in outcome.reason
    [outcome] = evaluate(spec.expectations, build_table([], {"models": {}}))
    assert not outcome.passed and "no accuracy in these results" in outcome.reason


# -- outputs -------------------------------------------------------------------------------------


def test_output_folders_new_empty_or_an_earlier_run_of_the_spec_pass(tmp_path):
    assert check_output(tmp_path / "new" / "run", "glue", overwrite=False) is False
    (tmp_path / "empty").mkdir()
    assert check_output(tmp_path / "empty", "glue", overwrite=False) is False
    run = tmp_path / "run"
    write_table(table(complete=True), run / "results.parquet")
    (run / "svcca.png").write_bytes(b"png")
    (run / "notes.md").write_text("mine")
    assert check_output(run, "glue", overwrite=False) is True
    with pytest.raises(UserError, match="another spec, 'glue'"):
        check_output(run, "other", overwrite=False)
    assert check_output(run, "other", overwrite=True) is True
    assert sorted(p.name for p in clear_run_files(run)) == ["results.parquet", "svcca.png"]
    assert [p.name for p in run.iterdir()] == ["notes.md"]


def test_sizes_and_durations():
    assert parse_size("5GB") == 5 * 10**9 and parse_size("2GiB") == 2 * 2**30 and parse_size("500mb") == 5 * 10**8
    assert parse_size("1024") == 1024 and parse_duration("30d") == 30 * 86400 and parse_duration("12h") == 43200
    assert format_size(1_234_567) == "1.2 MB"
    for bad in ("lots", "-1GB"):
        with pytest.raises(UserError, match="--max-size"):
            parse_size(bad)
    with pytest.raises(UserError, match="--older-than"):
        parse_duration("soon")


# -- manifests ---------------------------------------------------------------------------------


def test_a_manifest_catches_truncation_changed_content_and_missing_files(tmp_path):
    entry = tmp_path / "entry"
    (entry / "final").mkdir(parents=True)
    (entry / "final" / "model.safetensors").write_bytes(b"w" * 100)
    (entry / "meta.json").write_text(json.dumps({"accuracy": 0.5, "snapshot_accuracy": {}}))
    (entry / "snapshots").mkdir()
    (entry / "snapshots" / "1").symlink_to(Path("..") / "final")
    write_manifest(entry)
    files = json.loads((entry / "manifest.json").read_text())["files"]
    assert set(files) == {"final/model.safetensors", "meta.json", "snapshots/1"} and files["snapshots/1"] == {"link": "../final"}
    assert manifest_problem(entry) is None
    (entry / "last_used").write_text("now")  # not covered: it changes on every use
    assert manifest_problem(entry) is None
    (entry / "final" / "model.safetensors").write_bytes(b"w" * 99)
    assert manifest_problem(entry) == "final/model.safetensors is 99 bytes; the manifest says 100"
    (entry / "final" / "model.safetensors").write_bytes(b"x" * 100)
    assert "another sha256" in manifest_problem(entry)
    (entry / "final" / "model.safetensors").unlink()
    assert manifest_problem(entry) == "final/model.safetensors is missing"


def test_an_entry_without_a_manifest_must_read(tmp_path):
    entry = tmp_path / "entry"
    (entry / "final").mkdir(parents=True)
    (entry / "meta.json").write_text(json.dumps({"accuracy": 0.5, "snapshot_accuracy": {}}))
    (entry / "final" / "model.safetensors").write_bytes(b"not safetensors")
    assert "final/model.safetensors cannot be read" in entry_problem(entry)
    assert not (entry / "manifest.json").exists()
