"""Spec validation: every problem at once, each naming the key, what was found and what was expected."""
from __future__ import annotations

import subprocess
import sys

import pytest

from probekit.cli import main
from probekit.engine.examples import ExampleStore
from probekit.engine.session import Session
from probekit.errors import DataError, SpecError

VALID = """
name = "valid"
[finetune]
epochs = 1
[models.pretrained]
id = "minilm"
[models.seed1]
base = "pretrained"
train = "train"
seed = 1
snapshots = [0.5, 1.0]
[data.train]
task = "sentiment"
split = "train"
limit = 100
[data.eval]
task = "sentiment"
split = "validation"
[data.rte]
task = "entailment"
split = "validation"
[data.mixed]
mix = { eval = 20, rte = 20 }
[metrics.attention_js]
base = 2
[metrics.svcca_cls]
metric = "svcca"
tokens = "cls"
[[comparisons]]
a = "pretrained"
b = "seed1"
data = "mixed"
every_snapshot = true
"""


def load_spec(path):
    """The validated spec and the examples it names, as a run reads them."""
    spec, manager = Session().load(path)
    return spec, ExampleStore(spec, manager.sources)


def problems_of(tmp_path, text: str) -> list[str]:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(path) in str(caught.value)
    return [str(p) for p in caught.value.problems]


def test_valid_spec_parses(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(VALID)
    spec, _ = load_spec(path)
    assert spec.name == "valid"
    assert spec.models["seed1"].finetune.seed == 1 and spec.models["seed1"].finetune.epochs == 1
    assert spec.data["mixed"].mix == (("eval", 20), ("rte", 20))
    assert spec.metrics["svcca_cls"].metric == "svcca" and spec.metrics["svcca_cls"].options.tokens == "cls"
    assert spec.metrics["attention_js"].options.base == 2.0
    assert [c.name for c in spec.comparisons] == ["pretrained_vs_seed1", "pretrained_vs_seed1@0.5"]
    assert str(spec.comparisons[1].b) == "seed1@0.5"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("limit = 100", "limt = 100"), "data.train.limt: found an unknown key; expected one of task, split, word_tags, limit, seed (did you mean 'limit'?)"),
        (("seed = 1", "seed = 'one'"), "models.seed1.seed: found a string 'one'; expected an integer"),
        (('b = "seed1"', 'b = "seed3"'), "comparisons[0].b: found 'seed3'; expected a declared model name (did you mean 'seed1'?)"),
        (('data = "mixed"', 'data = "mixd"'), "comparisons[0].data: found 'mixd'; expected a declared data name (did you mean 'mixed'?)"),
        (('task = "sentiment"\nsplit = "train"', 'task = "sentimnt"\nsplit = "train"'), "data.train.task: found 'sentimnt'; expected a built-in task: "),
        (('split = "validation"\n[data.rte]', 'split = "test"\n[data.rte]'), "data.eval.split: found 'test'; expected one of train, validation"),
        (("[metrics.attention_js]", "[metrics.attention_jss]"), "metrics.attention_jss: found the metric 'attention_jss', which no plugin provides; expected one of attention_entropy, attention_js, "),
        (("base = 2", "bsae = 2"), "metrics.attention_js.bsae: found an unknown key; expected one of base, exclude_special, exclude_first (did you mean 'base'?)"),
        (('tokens = "cls"', 'tokens = "first"'), "metrics.svcca_cls.tokens: found 'first'; expected one of 'all', 'cls', 'last', 'mean'"),
        (("snapshots = [0.5, 1.0]", "snapshots = [0.5, 1.5]"), "models.seed1.snapshots: found 1.5; expected fractions of training in (0, 1]"),
        (('b = "seed1"', 'b = "seed1@0.3"'), "comparisons[0].b: found 'seed1@0.3'; expected a snapshot that models.seed1 keeps: seed1@0.5, seed1@1"),
        (('id = "minilm"', 'id = "./no/such/folder"'), "models.pretrained.id: found './no/such/folder'; expected an existing model folder"),
        (("mix = { eval = 20, rte = 20 }", "mix = { eval = 20, rtee = 20 }"), "data.mixed.mix: found 'rtee'; expected a declared data name (did you mean 'rte'?)"),
    ],
)
def test_bad_input_names_key_found_and_expected(tmp_path, change, expected):
    old, new = change
    assert old in VALID
    found = problems_of(tmp_path, VALID.replace(old, new, 1))
    assert any(p.startswith(expected) for p in found), found


def test_every_problem_is_reported_at_once(tmp_path):
    text = VALID.replace("limit = 100", "limt = 100").replace('b = "seed1"', 'b = "seed3"').replace("base = 2", "bsae = 2")
    assert len(problems_of(tmp_path, text)) == 3


def test_not_toml(tmp_path):
    [problem] = problems_of(tmp_path, "name = [unclosed")
    assert "invalid TOML" in problem


def test_check_exit_code_and_no_traceback(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(VALID.replace("limit = 100", "limt = 100"))
    result = subprocess.run([sys.executable, "-m", "probekit", "check", str(path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert "did you mean 'limit'?" in result.stdout
    good = tmp_path / "good.toml"
    good.write_text(VALID)
    assert main(["check", str(good)]) == 0


def test_run_on_bad_spec_exits_2_without_traceback(tmp_path, capsys):
    path = tmp_path / "spec.toml"
    path.write_text(VALID.replace('b = "seed1"', 'b = "seed3"'))
    assert main(["run", str(path)]) == 2
    assert "comparisons[0].b" in capsys.readouterr().err


def test_mix_asking_for_more_than_a_source_has(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(VALID.replace("mix = { eval = 20, rte = 20 }", "mix = { eval = 20, train = 101 }"))
    _, examples = load_spec(path)
    with pytest.raises(DataError, match=r"data\.mixed\.mix: asks for 101 examples of 'train', which has 100"):
        examples["mixed"]


def test_mix_takes_exact_counts_in_order(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(VALID)
    _, examples = load_spec(path)
    mixed = examples["mixed"]
    assert len(mixed) == 40
    assert mixed[:20] == examples["eval"][:20] and mixed[20:] == examples["rte"][:20]
