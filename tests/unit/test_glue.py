"""Tests for probekit.plugins.source_glue.reader: local GLUE folders (offline) and hub-row conversion."""
from __future__ import annotations

from pathlib import Path

import pytest

from probekit.data.example import Example
from probekit.plugins.source_glue.reader import (
    GLUE_TASKS,
    GlueFileNotFoundError,
    GlueFormatError,
    default_glue_dir,
    examples_from_hf_rows,
    get_task,
    load_glue,
    load_glue_hub,
    normalize_split,
    normalize_task,
    read_glue_folder,
)


def write(path: Path, lines: list[str], *, bom: bool = False, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = newline.join(lines) + newline
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data.encode("utf-8"))
    return path


def tsv(*fields: str) -> str:
    return "\t".join(fields)


@pytest.fixture
def glue(tmp_path: Path) -> Path:
    root = tmp_path / "glue"
    # SST-2: unbalanced quotes must not merge lines.
    write(root / "SST-2" / "train.tsv", [
        tsv("sentence", "label"),
        tsv('"the film opens with a quote ', "1"),
        tsv("a dull , lifeless movie", "0"),
        tsv('it \'s "great', "1"),
    ])
    write(root / "SST-2" / "dev.tsv", [tsv("sentence", "label"), tsv("fine .", "1"), "", ""])
    # MRPC with a UTF-8 BOM before the header.
    mrpc_header = tsv("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
    write(root / "MRPC" / "train.tsv", [
        mrpc_header,
        tsv("1", "702876", "702977", "He said \"yes.", "He agreed."),
        tsv("0", "2108705", "2108831", "Shares rose.", "Shares fell 3%."),
    ], bom=True)
    write(root / "MRPC" / "dev.tsv", [mrpc_header, tsv("1", "1", "2", "a", "b")], bom=True)
    # RTE with quotes, including a sentence2 that opens a quote and never closes it.
    rte_header = tsv("index", "sentence1", "sentence2", "label")
    write(root / "RTE" / "train.tsv", [
        rte_header,
        tsv("0", '"No Weapons of Mass Destruction Found in Iraq Yet.', '"Weapons found', "not_entailment"),
        tsv("1", "A place of sorrow.", "Sorrow is a place.", "entailment"),
        tsv("2", 'He said: "go', "He spoke.", "entailment"),
    ], newline="\r\n")
    write(root / "RTE" / "dev.tsv", [rte_header, tsv("0", "x", "y", "entailment")])
    # MNLI: columns shuffled, extra label columns, a "-" gold label.
    mnli_cols = ["gold_label", "pairID", "sentence2", "genre", "index", "sentence1_parse",
                 "label1", "sentence1", "promptID", "label2"]

    def mnli_row(s1: str, s2: str, gold: str, i: int) -> str:
        values = {"gold_label": gold, "pairID": f"{i}e", "sentence2": s2, "genre": "fiction",
                  "index": str(i), "sentence1_parse": "(ROOT (S ...))", "label1": gold,
                  "sentence1": s1, "promptID": str(100 + i), "label2": gold}
        return tsv(*(values[c] for c in mnli_cols))

    write(root / "MNLI" / "dev_matched.tsv", [
        tsv(*mnli_cols),
        mnli_row("The cat sat.", "A cat sat.", "entailment", 0),
        mnli_row('"Open quote', "Nobody spoke.", "-", 1),
        mnli_row("It rained.", "It was dry.", "contradiction", 2),
        mnli_row("He left.", "He left early.", "neutral", 3),
    ])
    write(root / "MNLI" / "dev_mismatched.tsv", [
        tsv(*mnli_cols), mnli_row("Letters.", "Mail.", "neutral", 9),
    ])
    write(root / "MNLI" / "train.tsv", [tsv(*mnli_cols), mnli_row("a", "b", "entailment", 0)])
    return root


# ------------------------------------------------------------------ names


def test_task_table_matches_spec():
    assert set(GLUE_TASKS) == {"sst2", "mrpc", "rte", "mnli"}
    assert GLUE_TASKS["sst2"].folder == "SST-2"
    assert GLUE_TASKS["mnli"].files == {
        "train": "train.tsv",
        "validation": "dev_matched.tsv",
        "validation_mismatched": "dev_mismatched.tsv",
    }
    assert GLUE_TASKS["mnli"].hf_splits["validation"] == "validation_matched"
    assert GLUE_TASKS["rte"].files == {"train": "train.tsv", "validation": "dev.tsv"}
    assert GLUE_TASKS["mrpc"].text_fields == ("sentence1", "sentence2")
    assert GLUE_TASKS["mnli"].text_fields == ("premise", "hypothesis")
    assert GLUE_TASKS["sst2"].text_fields == ("sentence",)


@pytest.mark.parametrize("spelling", ["sst2", "SST-2", "sst-2", "Sst_2", " SST2 "])
def test_task_name_normaliser(spelling):
    assert normalize_task(spelling) == "sst2"
    assert get_task(spelling) is GLUE_TASKS["sst2"]


def test_unknown_task_lists_valid_and_suggests():
    with pytest.raises(ValueError) as e:
        normalize_task("mprc")
    msg = str(e.value)
    assert "'mprc'" in msg and "sst2, mrpc, rte, mnli" in msg and "Did you mean 'mrpc'" in msg


def test_split_normaliser_and_unknown_split():
    assert normalize_split("rte", "dev") == "validation"
    assert normalize_split("mnli", "validation_matched") == "validation"
    assert normalize_split("mnli", "dev-mismatched") == "validation_mismatched"
    with pytest.raises(ValueError) as e:
        normalize_split("rte", "validaton")
    msg = str(e.value)
    assert "train, validation" in msg and "Did you mean 'validation'" in msg
    with pytest.raises(ValueError, match="valid splits: train, validation .*unlabelled"):
        normalize_split("sst2", "test")
    with pytest.raises(ValueError, match="validation_mismatched"):
        read_glue_folder("/nonexistent", "mnli", "tset")


def test_default_glue_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("GLUE_DIR", raising=False)
    assert default_glue_dir() is None
    monkeypatch.setenv("GLUE_DIR", str(tmp_path))
    assert default_glue_dir() == tmp_path


# ------------------------------------------------------------ local files


def test_sst2_quotes_do_not_merge_lines(glue):
    exs = read_glue_folder(glue, "sst2", "train")
    assert exs == [
        Example('"the film opens with a quote ', None, "1"),
        Example("a dull , lifeless movie", None, "0"),
        Example('it \'s "great', None, "1"),
    ]


def test_trailing_empty_lines_are_fine(glue):
    assert read_glue_folder(glue, "SST-2", "dev") == [Example("fine .", None, "1")]


def test_mrpc_bom_and_columns_by_name(glue):
    exs = read_glue_folder(str(glue), "mrpc", "train")
    assert exs == [
        Example('He said "yes.', "He agreed.", "1"),
        Example("Shares rose.", "Shares fell 3%.", "0"),
    ]


def test_rte_quotes_and_crlf(glue):
    exs = read_glue_folder(glue, "rte", "train")
    assert len(exs) == 3
    assert exs[0] == Example(
        '"No Weapons of Mass Destruction Found in Iraq Yet.', '"Weapons found', "not_entailment"
    )
    assert exs[2].text == 'He said: "go' and exs[2].label == "entailment"
    assert {e.label for e in exs} == {"entailment", "not_entailment"}


def test_mnli_shuffled_columns_and_no_consensus_skipped(glue):
    exs = read_glue_folder(glue, "mnli", "validation")
    assert exs == [
        Example("The cat sat.", "A cat sat.", "entailment"),
        Example("It rained.", "It was dry.", "contradiction"),
        Example("He left.", "He left early.", "neutral"),
    ]
    assert read_glue_folder(glue, "mnli", "validation_mismatched") == [
        Example("Letters.", "Mail.", "neutral")
    ]
    assert len(read_glue_folder(glue, "mnli", "train")) == 1


def test_glue_dir_from_env(glue, monkeypatch):
    monkeypatch.setenv("GLUE_DIR", str(glue))
    assert len(read_glue_folder(None, "rte", "validation")) == 1
    assert load_glue("RTE", "dev") == [Example("x", "y", "entailment")]
    assert load_glue("sst2", "validation", glue_dir=glue) == [Example("fine .", None, "1")]


def test_extra_tab_is_malformed(glue):
    path = write(glue / "SST-2" / "train.tsv", [
        tsv("sentence", "label"), tsv("ok", "1"), tsv("bad", "extra", "0"),
    ])
    with pytest.raises(GlueFormatError) as e:
        read_glue_folder(glue, "sst2", "train")
    msg = str(e.value)
    assert str(path) in msg and "line 3" in msg and "found 3" in msg and "expected 2" in msg


def test_missing_field_is_malformed(glue):
    path = write(glue / "RTE" / "dev.tsv", [
        tsv("index", "sentence1", "sentence2", "label"),
        tsv("0", "a", "b", "entailment"),
        tsv("1", "a", "entailment"),
    ])
    with pytest.raises(GlueFormatError) as e:
        read_glue_folder(glue, "rte", "validation")
    msg = str(e.value)
    assert str(path) in msg and "line 3" in msg and "found 3" in msg and "expected 4" in msg


def test_line_number_counts_bom_header_as_line_1(glue):
    write(glue / "MRPC" / "dev.tsv", [
        tsv("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
        tsv("1", "1", "2", "a", "b"),
        tsv("1", "1", "2", "a\tb", "c"),
    ], bom=True)
    with pytest.raises(GlueFormatError, match=r"line 3: found 6 .*expected 5"):
        read_glue_folder(glue, "mrpc", "validation")


def test_empty_line_in_the_middle_is_malformed(glue):
    write(glue / "SST-2" / "dev.tsv", [tsv("sentence", "label"), tsv("a", "1"), "", tsv("b", "0")])
    with pytest.raises(GlueFormatError, match=r"dev\.tsv: line 3: found an empty line"):
        read_glue_folder(glue, "sst2", "validation")


def test_missing_column_names_file_column_and_header(glue):
    path = write(glue / "RTE" / "dev.tsv", [
        tsv("index", "sentence1", "sentence2", "gold"), tsv("0", "a", "b", "entailment"),
    ])
    with pytest.raises(GlueFormatError) as e:
        read_glue_folder(glue, "rte", "validation")
    msg = str(e.value)
    assert str(path) in msg and "'label'" in msg and "'gold'" in msg and "'sentence1'" in msg


def test_missing_file_names_path_task_split_and_layout(glue):
    (glue / "MNLI" / "dev_mismatched.tsv").unlink()
    with pytest.raises(GlueFileNotFoundError) as e:
        read_glue_folder(glue, "mnli", "validation_mismatched")
    msg = str(e.value)
    assert str(glue / "MNLI" / "dev_mismatched.tsv") in msg
    assert "'mnli'" in msg and "'validation_mismatched'" in msg
    assert "MNLI/dev_matched.tsv" in msg  # the expected layout
    assert isinstance(e.value, FileNotFoundError)


def test_missing_task_folder_and_root(tmp_path):
    with pytest.raises(GlueFileNotFoundError, match=r"task folder .*SST-2.*'sst2'.*'train'"):
        read_glue_folder(tmp_path, "sst2", "train")
    with pytest.raises(GlueFileNotFoundError, match=r"GLUE folder .*nope.* does not exist"):
        read_glue_folder(tmp_path / "nope", "rte", "train")


def test_no_glue_dir_and_no_env(monkeypatch):
    monkeypatch.delenv("GLUE_DIR", raising=False)
    with pytest.raises(GlueFileNotFoundError, match=r"GLUE_DIR.*RTE/train\.tsv"):
        read_glue_folder(None, "rte", "train")


def test_invalid_utf8(glue):
    (glue / "SST-2" / "dev.tsv").write_bytes(b"sentence\tlabel\nbad \xff\t1\n")
    with pytest.raises(GlueFormatError, match=r"dev\.tsv.*UTF-8"):
        read_glue_folder(glue, "sst2", "validation")


# -------------------------------------------------------------------- hub


def test_hf_rows_classlabel_names_and_test_labels_dropped():
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({
        "premise": datasets.Value("string"),
        "hypothesis": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
        "idx": datasets.Value("int32"),
    })
    ds = datasets.Dataset.from_dict({
        "premise": ["p0", "p1", "p2", "p3"],
        "hypothesis": ["h0", "h1", "h2", "h3"],
        "label": [0, 2, -1, 1],
        "idx": [0, 1, 2, 3],
    }, features=features)
    assert examples_from_hf_rows("mnli", ds) == [
        Example("p0", "h0", "entailment"),
        Example("p1", "h1", "contradiction"),
        Example("p3", "h3", "neutral"),
    ]


def test_hf_rows_single_sentence_and_explicit_names():
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"sentence": ["good", "bad", "?"], "label": [1, 0, -1]})
    # Plain int column (no ClassLabel): raw values kept.
    assert examples_from_hf_rows("SST-2", ds) == [Example("good", None, 1), Example("bad", None, 0)]
    assert examples_from_hf_rows("sst2", ds, names=["negative", "positive"]) == [
        Example("good", None, "positive"), Example("bad", None, "negative"),
    ]


def test_hf_rows_plain_dicts_and_errors():
    rows = [{"sentence1": "a", "sentence2": "b", "label": "equivalent", "idx": 0}]
    assert examples_from_hf_rows("mrpc", rows) == [Example("a", "b", "equivalent")]
    with pytest.raises(GlueFormatError, match=r"'rte'.*row 0.*'sentence2'"):
        examples_from_hf_rows("rte", [{"sentence1": "a", "label": 0}])
    with pytest.raises(GlueFormatError, match=r"label id 5"):
        examples_from_hf_rows("rte", [{"sentence1": "a", "sentence2": "b", "label": 5}],
                              names=["entailment", "not_entailment"])


def test_load_glue_hub_validates_before_network():
    with pytest.raises(ValueError, match="unknown GLUE task"):
        load_glue_hub("cola", "train")
    with pytest.raises(ValueError, match="unknown split"):
        load_glue_hub("mnli", "test_matched")


def test_load_glue_hub_calls_datasets(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(path, name, split):
        calls.append((path, name, split))
        return datasets.Dataset.from_dict(
            {"premise": ["p"], "hypothesis": ["h"], "label": [1]},
            features=datasets.Features({
                "premise": datasets.Value("string"),
                "hypothesis": datasets.Value("string"),
                "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
            }),
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.delenv("GLUE_DIR", raising=False)
    assert load_glue("MNLI", "dev") == [Example("p", "h", "neutral")]
    assert calls == [("nyu-mll/glue", "mnli", "validation_matched")]
