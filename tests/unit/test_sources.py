"""The built-in data sources (task, glue, path, hf): validation, loading, fingerprints, validation splits."""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

import probekit
from probekit.errors import Problem
from probekit.metrics.options import parse_options
from probekit.plugins import source_task
from probekit.plugins.source_glue import GlueSource
from probekit.plugins.source_glue.reader import GlueFormatError
from probekit.plugins.source_hf import HfSource
from probekit.plugins.source_path import PathSource
from probekit.plugins.source_task import TaskSource, generator
from probekit.plugins.source_task.generator import TASKS, load_task

WHERE = "specs/x.toml: data.dev"


def make(source: probekit.DataSource, **table):
    options, problems = parse_options(source.Options, table)
    assert problems == []
    return options


def validated(source: probekit.DataSource, base_dir: Path, **table):
    options, problems = source.validate(make(source, **table), base_dir)
    assert problems == []
    return options


def problem_keys(problems: list[Problem]) -> list[str]:
    return [p.key for p in problems]


@pytest.mark.parametrize("source", [TaskSource(), GlueSource(), PathSource(), HfSource()])
def test_every_source_is_a_data_source_whose_first_option_is_its_kind(source):
    assert isinstance(source, probekit.DataSource)
    assert next(iter(source.Options.__dataclass_fields__)) == source.kind


@pytest.mark.parametrize(
    "module, cls",
    [("source_task", TaskSource), ("source_glue", GlueSource), ("source_path", PathSource), ("source_hf", HfSource)],
)
def test_each_plugin_registers_its_source(module, cls):
    import importlib

    registered = []
    importlib.import_module(f"probekit.plugins.{module}").probekit_register_sources(registered.append)
    assert registered == [cls]


# ------------------------------------------------------------------------ task


def test_task_unknown_name_suggests_the_closest(tmp_path):
    _, problems = TaskSource().validate(make(TaskSource(), task="nil"), tmp_path)
    assert problems == [Problem("task", "'nil'", "a built-in task: " + ", ".join(TASKS), "did you mean 'nli'?")]


def test_task_bad_split_names_the_splits(tmp_path):
    _, problems = TaskSource().validate(make(TaskSource(), task="nli", split="trian"), tmp_path)
    assert problems == [Problem("split", "'trian'", "one of train, validation", "did you mean 'train'?")]


def test_task_defaults_to_train_and_loads_the_generated_examples(tmp_path):
    options = validated(TaskSource(), tmp_path, task="sentiment")
    assert options.split == "train"
    examples = TaskSource().load(make(TaskSource(), task="sentiment", split="validation"), WHERE)
    assert examples == load_task("sentiment", "validation")
    assert len(examples) == TASKS["sentiment"].sizes["validation"]
    assert {e.label for e in examples} == set(TASKS["sentiment"].labels)
    assert all(e.text_pair is None for e in examples)


def test_task_load_of_an_unknown_task_raises_data_error_naming_where():
    with pytest.raises(probekit.DataError, match="specs/x.toml: data.dev: unknown built-in task"):
        TaskSource().load(make(TaskSource(), task="nope"), WHERE)


def test_task_fingerprint_depends_on_name_split_and_generated_examples(tmp_path, monkeypatch):
    source = TaskSource()
    train = source.fingerprint(make(source, task="nli"))
    assert train == source.fingerprint(make(source, task="nli", split="train"))
    assert train != source.fingerprint(make(source, task="nli", split="validation"))
    assert train != source.fingerprint(make(source, task="entailment"))
    # An edit of the generator's source that generates the same examples (a comment here) keeps the identity.
    edited = tmp_path / "generator.py"
    edited.write_bytes(Path(generator.__file__).read_bytes() + b"\n# a comment\n")
    monkeypatch.setattr(generator, "__file__", str(edited))
    assert source.fingerprint(make(source, task="nli")) == train
    # One generated example changed (its label): a new identity.
    examples = load_task("nli", "train")
    changed = [replace(examples[0], label="neutral" if examples[0].label != "neutral" else "entailment"), *examples[1:]]
    monkeypatch.setattr(source_task, "load_task", lambda task, split: changed)
    assert source.fingerprint(make(source, task="nli")) != train
    monkeypatch.setattr(source_task, "load_task", lambda task, split: list(examples))
    assert source.fingerprint(make(source, task="nli")) == train


def test_task_validation_split():
    source = TaskSource()
    assert source.validation_split(make(source, task="nli")) == make(source, task="nli", split="validation")
    assert source.validation_split(make(source, task="nli", split="validation")) is None


# ------------------------------------------------------------------------ glue


@pytest.fixture
def glue_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("GLUE_DIR", raising=False)
    folder = tmp_path / "glue" / "SST-2"
    folder.mkdir(parents=True)
    (folder / "dev.tsv").write_text('sentence\tlabel\nit is "good\t1\nit is bad\t0\n', encoding="utf-8")
    return tmp_path / "glue"


def test_glue_unknown_task_suggests_the_closest(tmp_path):
    _, problems = GlueSource().validate(make(GlueSource(), glue="sst3"), tmp_path)
    assert len(problems) == 1
    assert problems[0].key == "glue"
    assert problems[0].found == "'sst3'"
    assert problems[0].expected == "a GLUE task: sst2, mrpc, rte, mnli"
    assert problems[0].hint == "did you mean 'sst2'?"


def test_glue_bad_split_is_a_split_problem(tmp_path):
    _, problems = GlueSource().validate(make(GlueSource(), glue="rte", split="test"), tmp_path)
    assert problem_keys(problems) == ["split"]
    assert problems[0].found == "'test'"
    assert "a split of rte" in problems[0].expected and "unlabelled" in problems[0].expected


def test_glue_validate_normalizes_names_and_resolves_glue_dir(tmp_path):
    options = validated(GlueSource(), tmp_path, glue="SST-2", split="dev", glue_dir="glue")
    assert options == make(GlueSource(), glue="sst2", split="validation", glue_dir=str(tmp_path / "glue"))
    assert validated(GlueSource(), tmp_path, glue="rte").glue_dir is None


def test_glue_defaults_to_validation(tmp_path):
    assert validated(GlueSource(), tmp_path, glue="mrpc").split == "validation"


def test_glue_loads_a_local_folder(glue_dir, tmp_path):
    options = validated(GlueSource(), tmp_path, glue="sst2", glue_dir=str(glue_dir))
    assert GlueSource().load(options, WHERE) == [
        probekit.Example('it is "good', None, "1"),
        probekit.Example("it is bad", None, "0"),
    ]


def test_glue_uses_glue_dir_from_the_environment(glue_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GLUE_DIR", str(glue_dir))
    options = validated(GlueSource(), tmp_path, glue="sst2")
    assert len(GlueSource().load(options, WHERE)) == 2
    explicit = validated(GlueSource(), tmp_path, glue="sst2", glue_dir=str(glue_dir))
    assert GlueSource().fingerprint(options) == GlueSource().fingerprint(explicit)


def test_glue_missing_file_raises_data_error_naming_where(glue_dir, tmp_path):
    options = validated(GlueSource(), tmp_path, glue="sst2", split="train", glue_dir=str(glue_dir))
    with pytest.raises(probekit.DataError, match=r"specs/x.toml: data.dev: .*train.tsv.* does not exist"):
        GlueSource().load(options, WHERE)


def test_glue_bad_row_raises_a_data_error_naming_where(glue_dir, tmp_path):
    (glue_dir / "SST-2" / "dev.tsv").write_text("sentence\tlabel\none\ttoo\tmany\n", encoding="utf-8")
    options = validated(GlueSource(), tmp_path, glue="sst2", glue_dir=str(glue_dir))
    with pytest.raises(probekit.DataError, match=r"^specs/x.toml: data.dev: .*line 2: found 3 tab-separated fields"):
        GlueSource().load(options, WHERE)
    assert issubclass(GlueFormatError, probekit.DataError) and issubclass(GlueFormatError, ValueError)


def test_glue_fingerprint_follows_the_file_content(glue_dir, tmp_path):
    source = GlueSource()
    options = validated(source, tmp_path, glue="sst2", glue_dir=str(glue_dir))
    before = source.fingerprint(options)
    assert source.fingerprint(options) == before
    (glue_dir / "SST-2" / "dev.tsv").write_text("sentence\tlabel\nit is good\t0\n", encoding="utf-8")
    assert source.fingerprint(options) != before


def test_glue_fingerprint_of_a_missing_file_does_not_raise(glue_dir, tmp_path):
    source = GlueSource()
    train = source.fingerprint(validated(source, tmp_path, glue="sst2", split="train", glue_dir=str(glue_dir)))
    dev = source.fingerprint(validated(source, tmp_path, glue="sst2", glue_dir=str(glue_dir)))
    assert train != dev
    (glue_dir / "SST-2" / "train.tsv").write_text("sentence\tlabel\nok\t1\n", encoding="utf-8")
    assert source.fingerprint(validated(source, tmp_path, glue="sst2", split="train", glue_dir=str(glue_dir))) != train


def test_glue_hub_fingerprint_offline_names_task_and_split(tmp_path, monkeypatch, offline):
    monkeypatch.delenv("GLUE_DIR", raising=False)
    fingerprint = GlueSource().fingerprint(validated(GlueSource(), tmp_path, glue="rte", split="train"))
    assert fingerprint.startswith("hub:rte:train")


def test_glue_validation_split():
    source = GlueSource()
    train = make(source, glue="mnli", split="train", glue_dir="/data/glue")
    assert source.validation_split(train) == make(source, glue="mnli", split="validation", glue_dir="/data/glue")
    assert source.validation_split(make(source, glue="mnli")) is None


# ------------------------------------------------------------------------ path


def test_path_missing_file_names_the_absolute_path(tmp_path):
    options, problems = PathSource().validate(make(PathSource(), path="nope.csv"), tmp_path)
    assert problems == [Problem("path", "'nope.csv'", f"an existing data file ({tmp_path / 'nope.csv'} does not exist)")]
    assert options.path == str(tmp_path / "nope.csv")


def test_path_unknown_file_type_is_a_problem(tmp_path):
    (tmp_path / "data.xlsx").write_text("text,label\n", encoding="utf-8")
    _, problems = PathSource().validate(make(PathSource(), path="data.xlsx"), tmp_path)
    assert problem_keys(problems) == ["path"]
    assert ".csv" in problems[0].expected


def test_path_resolves_relative_to_the_spec_folder_and_keeps_absolute_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "dev.csv").write_text("text,label\na,1\n", encoding="utf-8")
    assert validated(PathSource(), tmp_path, path="sub/dev.csv").path == str(tmp_path / "sub" / "dev.csv")
    absolute = str(tmp_path / "sub" / "dev.csv")
    assert validated(PathSource(), tmp_path / "elsewhere", path=absolute).path == absolute


def test_path_loads_csv_with_default_columns(tmp_path):
    (tmp_path / "dev.csv").write_text('text,label\n"hello, world",pos\nbye,neg\n', encoding="utf-8")
    options = validated(PathSource(), tmp_path, path="dev.csv")
    assert PathSource().load(options, WHERE) == [
        probekit.Example("hello, world", None, "pos"),
        probekit.Example("bye", None, "neg"),
    ]


def test_path_loads_jsonl_with_named_columns(tmp_path):
    rows = [{"premise": "a", "hypothesis": "b", "gold": 1}, {"premise": "c", "hypothesis": "d", "gold": 0}]
    (tmp_path / "dev.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    options = validated(PathSource(), tmp_path, path="dev.jsonl", text="premise", text_pair="hypothesis", label="gold")
    assert PathSource().load(options, WHERE) == [probekit.Example("a", "b", 1), probekit.Example("c", "d", 0)]


def test_path_loads_tsv(tmp_path):
    (tmp_path / "dev.tsv").write_text("sentence\ty\nit is \"fine\"\t1\n", encoding="utf-8")
    options = validated(PathSource(), tmp_path, path="dev.tsv", text="sentence", label="y")
    assert PathSource().load(options, WHERE) == [probekit.Example('it is "fine"', None, "1")]


def test_path_missing_column_raises_data_error_naming_where_and_columns(tmp_path):
    (tmp_path / "dev.csv").write_text("sentence,label\na,1\n", encoding="utf-8")
    options = validated(PathSource(), tmp_path, path="dev.csv")
    with pytest.raises(probekit.DataError, match=r"^specs/x.toml: data.dev .*no column for text = 'text'.*sentence"):
        PathSource().load(options, WHERE)


def test_path_bad_json_and_missing_row_keys_raise_data_error_naming_where(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "a", "label": 1}\n{not json\n', encoding="utf-8")
    with pytest.raises(probekit.DataError, match=r"^specs/x.toml: data.dev"):
        PathSource().load(validated(PathSource(), tmp_path, path="bad.jsonl"), WHERE)
    (tmp_path / "ragged.jsonl").write_text('{"text": "a", "label": 1}\n{"text": "b"}\n', encoding="utf-8")
    with pytest.raises(probekit.DataError, match=r"^specs/x.toml: data.dev .*a row has no 'label' column"):
        PathSource().load(validated(PathSource(), tmp_path, path="ragged.jsonl"), WHERE)


def test_path_load_of_a_file_deleted_after_validation_raises_data_error(tmp_path):
    (tmp_path / "dev.csv").write_text("text,label\na,1\n", encoding="utf-8")
    options = validated(PathSource(), tmp_path, path="dev.csv")
    (tmp_path / "dev.csv").unlink()
    with pytest.raises(probekit.DataError, match=r"^specs/x.toml: data.dev"):
        PathSource().load(options, WHERE)


def test_path_fingerprint_follows_the_file_content(tmp_path):
    file = tmp_path / "dev.csv"
    file.write_text("text,label\na,1\n", encoding="utf-8")
    source = PathSource()
    options = validated(source, tmp_path, path="dev.csv")
    before = source.fingerprint(options)
    assert source.fingerprint(options) == before
    assert all(c in "0123456789abcdef" for c in before)
    file.write_text("text,label\na,0\n", encoding="utf-8")
    changed = source.fingerprint(options)
    assert changed != before
    file.write_text("text,label\na,1\n", encoding="utf-8")
    assert source.fingerprint(options) == before
    assert source.fingerprint(validated(source, tmp_path, path="dev.csv", label="text")) != before


def test_path_has_no_validation_split(tmp_path):
    (tmp_path / "dev.csv").write_text("text,label\na,1\n", encoding="utf-8")
    assert PathSource().validation_split(validated(PathSource(), tmp_path, path="dev.csv")) is None


# -------------------------------------------------------------------------- hf


@pytest.fixture
def offline(monkeypatch):
    """No hub access, even when ``datasets`` was imported before the environment changed."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_hf_validate_accepts_the_table_with_its_defaults(tmp_path):
    table = {"hf": "nyu-mll/glue", "config": "rte", "text": "sentence1", "text_pair": "sentence2"}
    options = validated(HfSource(), tmp_path, **table)
    assert (options.split, options.label) == ("train", "label")
    assert options == make(HfSource(), **table)


def test_hf_validate_rejects_an_empty_name(tmp_path):
    _, problems = HfSource().validate(make(HfSource(), hf=""), tmp_path)
    assert problem_keys(problems) == ["hf"]


def test_hf_unknown_option_is_rejected_by_parse_options():
    _, problems = parse_options(HfSource.Options, {"hf": "x", "colums": "y"})
    assert [p.key for p in problems] == ["colums"]


def test_hf_load_of_a_missing_dataset_raises_data_error_naming_where(offline):
    options = make(HfSource(), hf="probekit-tests/no-such-dataset")
    with pytest.raises(probekit.DataError, match=r"^specs/x.toml: data.dev: .*'probekit-tests/no-such-dataset'"):
        HfSource().load(options, WHERE)


def test_hf_fingerprint_falls_back_to_the_name_when_it_cannot_load(offline):
    source = HfSource()
    first = source.fingerprint(make(source, hf="probekit-tests/no-such-dataset"))
    assert first == source.fingerprint(make(source, hf="probekit-tests/no-such-dataset"))
    assert first != source.fingerprint(make(source, hf="probekit-tests/no-such-dataset", split="test"))


def test_hf_has_no_validation_split():
    assert HfSource().validation_split(make(HfSource(), hf="imdb")) is None


@pytest.fixture
def local_hf_dataset(tmp_path, monkeypatch, offline):
    """A dataset folder ``load_dataset`` reads offline (a parquet file keeps the ClassLabel names)."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    folder = tmp_path / "hf_dataset"
    folder.mkdir()

    def write(labels: list[int]) -> str:
        features = datasets.Features(text=datasets.Value("string"), label=datasets.ClassLabel(names=["neg", "pos"]))
        rows = {"text": [f"t{i}" for i in range(len(labels))], "label": labels}
        file = folder / "train.parquet"
        stamp = file.stat().st_mtime + 10 if file.exists() else None
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(file))
        if stamp is not None:  # datasets keys local files on mtime: make a rewrite visible at any clock resolution
            os.utime(file, (stamp, stamp))
        return str(folder)

    return write


def test_hf_load_maps_class_label_ids_to_names(local_hf_dataset):
    options = make(HfSource(), hf=local_hf_dataset([0, 1, 0]))
    assert HfSource().load(options, WHERE) == [
        probekit.Example("t0", None, "neg"), probekit.Example("t1", None, "pos"), probekit.Example("t2", None, "neg"),
    ]


def test_hf_load_refuses_unlabelled_rows(local_hf_dataset):
    options = make(HfSource(), hf=local_hf_dataset([0, -1]))
    with pytest.raises(probekit.DataError, match=r"^specs/x.toml: data.dev: .*unlabelled rows"):
        HfSource().load(options, WHERE)


def test_hf_fingerprint_follows_the_dataset_content(local_hf_dataset):
    source = HfSource()
    options = make(source, hf=local_hf_dataset([0, 1]))
    before = source.fingerprint(options)
    assert source.fingerprint(options) == before
    local_hf_dataset([1, 1])
    assert source.fingerprint(options) != before
