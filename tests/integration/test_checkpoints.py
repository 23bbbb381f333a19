"""Training trajectories: a model declared as the checkpoint folders of a real transformers Trainer run
(``checkpoint-<step>``), compared with its base at every step; the report and figures by step; expectations
over checkpoints; and bad input (a glob matching nothing, folders without weights or a step)."""
from __future__ import annotations

import io
import shutil

import pyarrow.parquet as pq
import pytest
from rich.console import Console

from probekit import api
from probekit.errors import SpecError
from probekit.expect.evaluate import evaluate
from probekit.report.terminal import render
from probekit.expect.kinds import Share
from probekit.testing.fixtures import (save_tiny_model, tiny_examples, tiny_tokenizer, trainer_checkpoints,
                                       write_tiny_csv)

pytestmark = pytest.mark.usefixtures("one_thread")
STEPS = (4, 8, 12)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("trajectory")
    save_tiny_model(root / "base", seed=0)
    trainer_checkpoints(root / "base", tiny_tokenizer(), tiny_examples(64, seed=4), root / "run", steps=STEPS[-1],
                        every=STEPS[0], lr=5e-3, max_length=16, padding="max_length")
    write_tiny_csv(root / "eval.csv", 32, seed=6)
    return root


def spec(folder, **comparison) -> dict:
    return {
        "name": "tiny_trajectory",
        "run": {"device": "cpu", "batch_size": 16, "max_length": 16},
        "models": {"base": {"id": str(folder / "base")}, "run": {"checkpoints": "run/checkpoint-*"}},
        "data": {"eval": {"path": str(folder / "eval.csv")}},
        "metrics": {"svcca": {}, "attention_js": {}},
        "comparisons": [{"name": "base_vs_run", "a": "base", "b": "run", "data": "eval", **comparison}],
    }


@pytest.fixture(scope="module")
def results(folder):
    return api.run(spec(folder), base_dir=folder, reports=folder / "reports")


def test_the_trainer_wrote_a_trajectory(folder):
    assert sorted(p.name for p in (folder / "run").glob("checkpoint-*")) == [f"checkpoint-{s}" for s in (12, 4, 8)]


def test_a_series_expands_to_one_comparison_per_checkpoint_with_its_step(results):
    table = results.table
    steps = {}
    for row in table.select(["comparison", "model_b", "snapshot_b", "step_b"]).to_pylist():
        steps[row["comparison"]] = (row["model_b"], row["snapshot_b"], row["step_b"])
    # The plain comparison is where training ended (the last checkpoint); the others are earlier steps.
    assert steps == {"base_vs_run@4": ("run@4", 4 / 12, 4), "base_vs_run@8": ("run@8", 8 / 12, 8),
                     "base_vs_run": ("run", None, 12)}
    assert pq.read_metadata(results.path).metadata[b"probekit.schema_version"] == b"3"


def test_each_checkpoint_is_the_folder_it_names(results, folder):
    """The last checkpoint's rows equal those of the same folder declared as a plain model."""
    plain = spec(folder)
    plain["models"]["last"] = {"id": str(folder / "run" / "checkpoint-12")}
    plain["comparisons"] = [{"name": "base_vs_last", "a": "base", "b": "last", "data": "eval"}]
    other = api.run(plain, base_dir=folder, reports=folder / "reports_plain")
    for metric in ("svcca", "attention_js"):
        mine = results.series("base_vs_run", metric).to_dict()
        theirs = other.series("base_vs_last", metric).to_dict()
        assert mine == pytest.approx(theirs, abs=1e-12)
    identities = results.metadata["models"]
    assert identities["run"]["identity"] == other.metadata["models"]["last"]["identity"]
    assert identities["run@4"]["identity"] != identities["run"]["identity"]


def test_the_model_moves_away_from_its_base_as_training_goes_on(results):
    """Real training: every step's SVCCA distance from the base, averaged over layers, exceeds the one before."""
    means = [sum(results.series(name, "svcca").to_dict().values()) for name in ("base_vs_run@4", "base_vs_run@8",
                                                                            "base_vs_run")]
    assert means[0] < means[1] < means[2]
    assert means[0] > 0


def test_share_of_the_final_move(results):
    """``share_of``: a checkpoint's change as a fraction of the final checkpoint's, per layer or on the mean."""
    table = results.table
    final = results.series("base_vs_run", "svcca").to_dict()
    early = results.series("base_vs_run@4", "svcca").to_dict()
    mean_share = sum(early.values()) / sum(final.values())
    holds = Share.build("base_vs_run@4", "svcca", "all", share_of="base_vs_run",
                             at_least=mean_share * 0.99, of="mean")
    fails = Share.build("base_vs_run@4", "svcca", "all", share_of="base_vs_run",
                             at_least=min(1.0, mean_share * 1.01), of="mean")
    per_layer = Share.build("base_vs_run@4", "svcca", "all", share_of="base_vs_run", at_most=0.999)
    passed, failed, each = evaluate([holds, fails, per_layer], table)
    assert passed.passed and not failed.passed
    assert f"{mean_share:.0%}" in failed.reason
    assert each.passed == all(early[layer] < 0.999 * final[layer] for layer in final)


def test_assert_share_in_a_regression_test(results):
    from probekit.testing import ExpectationFailed, assert_share

    assert_share(results, "base_vs_run@8", "base_vs_run", "svcca", "all", at_least=0.5, of="mean")
    with pytest.raises(ExpectationFailed, match=r"base_vs_run@4: 3 of 3 layers outside >= 100% of base_vs_run's change"):
        assert_share(results, "base_vs_run@4", "base_vs_run", "svcca", "all", at_least=1.0)


def test_the_report_and_figures_draw_layers_by_step(results):
    console = Console(record=True, width=160, file=io.StringIO())
    render(results.table, console)
    text = console.export_text()
    assert "svcca (1 - mean rho) over training: base vs run@t on eval" in text
    assert "columns: training step\n" in text
    header = next(line for line in text.splitlines() if line.strip().startswith("layer") and "12" in line)
    assert header.replace("┃", " ").split()[1:] == ["4", "8", "12"]
    assert any(path.name.startswith("svcca_snapshots_base_vs_run") for path in results.run_dir.glob("*.png"))


def test_expectations_select_checkpoints(folder):
    document = spec(folder)
    document["expect"] = [{"name": "by step 8 most of the move is made", "comparison": "base_vs_run@8",
                           "metric": "svcca", "layers": "all", "of": "mean", "share_of": "base_vs_run",
                           "at_least": 0.0, "at_most": 1.5}]
    outcome = api.run(document, base_dir=folder, reports=folder / "reports_expect")
    assert outcome.exit_code == 0


def test_a_pinned_checkpoint_and_every_snapshot_false(folder):
    document = spec(folder, every_snapshot=False)
    document["comparisons"].append({"name": "early", "a": "base", "b": "run@4", "data": "eval"})
    results = api.run(document, base_dir=folder, reports=folder / "reports_pinned")
    assert set(results.table.column("comparison").to_pylist()) == {"base_vs_run", "early"}


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m, f: m.update(checkpoints="nothing/checkpoint-*"), "models.run.checkpoints: found 'nothing/checkpoint-*'; expected a glob matching checkpoint folders"),
    (lambda m, f: shutil.copytree(f / "run" / "checkpoint-4", f / "run" / "checkpoint-final"),
     "several checkpoints at step 4 (checkpoint-4, checkpoint-final)"),  # the step of its trainer_state.json
    (lambda m, f: (shutil.copytree(f / "run" / "checkpoint-4", f / "run" / "last"),
                   (f / "run" / "last" / "trainer_state.json").unlink(), m.update(checkpoints="run/*")),
     "last neither ends in its training step"),
    (lambda m, f: (f / "run" / "checkpoint-16").mkdir(exist_ok=True), "checkpoint-16 is an empty folder"),
    (lambda m, f: m.update(revisions=["step1"]), "both `checkpoints` and `revisions`"),
    (lambda m, f: m.update(base="base"), "models.run.base"),
])
def test_bad_series_are_spec_problems(folder, tmp_path, edit, message):
    copy = tmp_path / "f"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("reports*"))
    document = spec(copy)
    edit(document["models"]["run"], copy)
    with pytest.raises(SpecError) as error:
        api.run(document, base_dir=copy, reports=copy / "reports")
    assert message in str(error.value)


def test_a_step_the_series_lacks(folder):
    document = spec(folder)
    document["comparisons"][0]["b"] = "run@5"
    with pytest.raises(SpecError) as error:
        api.run(document, base_dir=folder, reports=folder / "reports")
    assert "a step of models.run's checkpoints: run@4, run@8, run@12" in str(error.value)


def test_revisions_need_their_step_and_a_hub_id(folder):
    document = spec(folder)
    document["models"]["run"] = {"id": "EleutherAI/pythia-70m", "revisions": ["main"]}
    with pytest.raises(SpecError) as error:
        api.run(document, base_dir=folder, reports=folder / "reports")
    assert "revisions named with their training step" in str(error.value)
