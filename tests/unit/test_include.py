"""Composing specs: ``include`` (the including file wins, tables merge key by key) and ``--set`` overrides."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from probekit.cli import main
from probekit.engine.session import Session
from probekit.errors import SpecError

SPECS = Path(__file__).resolve().parents[2] / "specs"

RECIPE = """
[finetune]
lr = 1e-4
epochs = 2
max_length = 64

[data.train]
task = "sentiment"
split = "train"
limit = 100
"""

SPEC = """
name = "composed"
include = "shared/recipe.toml"
[finetune]
epochs = 1
[models.pretrained]
id = "minilm"
[models.tuned]
base = "pretrained"
train = "train"
[data.eval]
task = "sentiment"
split = "validation"
[metrics.svcca]
[[comparisons]]
a = "pretrained"
b = "tuned"
data = "eval"
"""


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder / "spec.toml"


def test_the_including_file_wins_key_by_key(tmp_path):
    spec, _ = Session().load(write(tmp_path, {"spec.toml": SPEC, "shared/recipe.toml": RECIPE}))
    settings = spec.models["tuned"].finetune
    assert (settings.lr, settings.epochs, settings.max_length) == (1e-4, 1, 64)  # epochs from the spec, the rest included
    assert spec.data["train"].limit == 100 and set(spec.data) == {"train", "eval"}
    assert "# -- included from shared/recipe.toml:" in spec.text and "# lr = 1e-4" in spec.text


def test_a_later_include_wins_over_an_earlier_and_includes_nest(tmp_path):
    files = {"spec.toml": SPEC.replace('include = "shared/recipe.toml"', 'include = ["shared/recipe.toml", "fast.toml"]')
             .replace("[finetune]\nepochs = 1\n", ""),
             "shared/recipe.toml": 'include = "base.toml"\n' + RECIPE, "shared/base.toml": "[finetune]\nseed = 7\nlr = 1.0\n",
             "fast.toml": "[finetune]\nlr = 5e-5\n"}
    spec, _ = Session().load(write(tmp_path, files))
    settings = spec.models["tuned"].finetune
    assert (settings.lr, settings.seed, settings.epochs) == (5e-5, 7, 2)


def test_an_include_cycle_or_a_missing_file_is_named(tmp_path):
    cycle = {"spec.toml": SPEC, "shared/recipe.toml": 'include = "../spec.toml"\n' + RECIPE}
    with pytest.raises(SpecError, match=r"include: found '../spec.toml'; expected a file that does not include this "
                                        r"one back \(spec.toml -> recipe.toml -> spec.toml\)"):
        Session().load(write(tmp_path, cycle))
    with pytest.raises(SpecError, match=r"include: found \['a'\]|include: found 'shared/recipe.toml'; expected an existing"):
        Session().load(write(tmp_path / "missing", {"spec.toml": SPEC}))


def test_set_overrides_every_file_and_is_validated_like_it(tmp_path):
    path = write(tmp_path, {"spec.toml": SPEC, "shared/recipe.toml": RECIPE})
    spec, _ = Session(overrides={"finetune.lr": 2e-5, "run.batch_size": 4}).load(path)
    assert spec.models["tuned"].finetune.lr == 2e-5 and spec.run.batch_size == 4
    with pytest.raises(SpecError) as caught:
        Session(overrides={"finetune.lr": -1}).load(path)
    assert [str(p) for p in caught.value.problems] == [
        "--set finetune.lr: found -1; expected a positive learning rate, e.g. 3e-5"]


def test_check_takes_set_on_the_command_line(tmp_path, capsys):
    path = write(tmp_path, {"spec.toml": SPEC, "shared/recipe.toml": RECIPE})
    assert main(["check", str(path), "--set", "finetune.epochs=3", "--set", "run.device=cpu"]) == 0
    assert main(["check", str(path), "--set", "finetune.epochs=0"]) == 2
    assert "--set finetune.epochs: found 0; expected a positive number" in capsys.readouterr().out


#: Every fine-tuned model's settings and training data in the figure specs as main resolved them at 753b941, before
#: the specs included specs/shared/recipe.toml: the fine-tunes (and so the checkpoint cache keys, which hash these
#: settings and the training examples) must not change.
BEFORE = json.loads((Path(__file__).parent / "data" / "figure_finetunes.json").read_text())


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_the_figure_specs_fine_tune_as_before_the_shared_recipe(name):
    path = SPECS / f"{name}.toml"
    assert 'include = "shared/recipe.toml"' in path.read_text()
    spec, _ = Session().load(path)
    tuned = {m.name: m for m in spec.models.values() if m.is_finetuned}
    assert set(tuned) == set(BEFORE[name]) and tuned
    for model in tuned.values():
        settings = json.loads(json.dumps(dataclasses.asdict(model.finetune)))  # tuples as the JSON file's lists
        assert settings == BEFORE[name][model.name]["finetune"], model.name
        # word_tags (added later, default False) changes no generated example: the stored repr predates it.
        assert repr(spec.data[model.train]).replace(", word_tags=False", "") == BEFORE[name][model.name]["train"], \
            model.name
