"""GLUE tasks (SST-2, MRPC, RTE, MNLI): read a local GLUE folder or the Hugging Face hub.

Two sources, one result (a list of :class:`probekit.Example`):

* :func:`read_glue_folder` reads the ``.tsv`` files as GLUE distributes them
  (``$GLUE_DIR/SST-2/train.tsv`` ...). Lines are split on tab only, with no
  quote processing -- exactly what GLUE's own processors do -- so a stray ``"``
  in a sentence never merges lines. Columns are located by header name. A row
  whose field count differs from the header's raises :class:`GlueFormatError`.
* :func:`load_glue_hub` loads the same task through ``datasets.load_dataset``
  and converts it with :func:`examples_from_hf_rows`.

Labels are returned raw, as the source spells them: the local files give
``"0"``/``"1"`` (SST-2, MRPC) or class names (RTE, MNLI); the hub gives the
class names of its ``ClassLabel`` feature. Label ids are assigned later, from
the data (sorted distinct raw labels), never here.

MNLI rows whose ``gold_label`` is ``"-"`` (annotators reached no consensus)
are skipped, as GLUE's processors do; hub rows with label ``-1`` (unlabelled
test splits) are dropped.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probekit import DataError, Example, did_you_mean

__all__ = [
    "GLUE_TASKS",
    "HF_GLUE_PATH",
    "GlueFileNotFoundError",
    "GlueFormatError",
    "GlueTask",
    "default_glue_dir",
    "examples_from_hf_rows",
    "get_task",
    "load_glue",
    "load_glue_hub",
    "normalize_split",
    "normalize_task",
    "read_glue_folder",
]

#: Hub id of the GLUE dataset. ``"glue"`` is the legacy name; the hub redirects
#: it to this repository, which is the canonical (parquet) one.
HF_GLUE_PATH = "nyu-mll/glue"


@dataclass(frozen=True)
class GlueTask:
    """How one GLUE task is laid out locally and on the hub."""

    name: str  # "sst2" -- also the HF config name
    folder: str  # "SST-2": sub-folder of the GLUE dir
    files: dict[str, str]  # split -> file name inside ``folder``
    hf_splits: dict[str, str]  # split -> HF split name
    text_fields: tuple[str, ...]  # HF column names: (text,) or (text, text_pair)
    # Local tsv columns: (text column, text_pair column or None, label column).
    tsv_text: str = "sentence"
    tsv_text_pair: str | None = None
    tsv_label: str = "label"
    skip_labels: tuple[str, ...] = ()  # raw local labels whose rows are skipped

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.files)


_TWO_SPLITS = {"train": "train.tsv", "validation": "dev.tsv"}
_TWO_HF_SPLITS = {"train": "train", "validation": "validation"}

GLUE_TASKS: dict[str, GlueTask] = {
    "sst2": GlueTask(
        name="sst2",
        folder="SST-2",
        files=dict(_TWO_SPLITS),
        hf_splits=dict(_TWO_HF_SPLITS),
        text_fields=("sentence",),
        tsv_text="sentence",
        tsv_label="label",
    ),
    "mrpc": GlueTask(
        name="mrpc",
        folder="MRPC",
        files=dict(_TWO_SPLITS),
        hf_splits=dict(_TWO_HF_SPLITS),
        text_fields=("sentence1", "sentence2"),
        tsv_text="#1 String",
        tsv_text_pair="#2 String",
        tsv_label="Quality",
    ),
    "rte": GlueTask(
        name="rte",
        folder="RTE",
        files=dict(_TWO_SPLITS),
        hf_splits=dict(_TWO_HF_SPLITS),
        text_fields=("sentence1", "sentence2"),
        tsv_text="sentence1",
        tsv_text_pair="sentence2",
        tsv_label="label",
    ),
    "mnli": GlueTask(
        name="mnli",
        folder="MNLI",
        files={
            "train": "train.tsv",
            "validation": "dev_matched.tsv",
            "validation_mismatched": "dev_mismatched.tsv",
        },
        hf_splits={
            "train": "train",
            "validation": "validation_matched",
            "validation_mismatched": "validation_mismatched",
        },
        text_fields=("premise", "hypothesis"),
        tsv_text="sentence1",
        tsv_text_pair="sentence2",
        tsv_label="gold_label",
        skip_labels=("-",),
    ),
}

# Spellings of split names accepted besides the canonical ones.
_SPLIT_ALIASES = {
    "dev": "validation",
    "val": "validation",
    "valid": "validation",
    "validation_matched": "validation",
    "dev_matched": "validation",
    "dev_mismatched": "validation_mismatched",
}


class GlueFormatError(DataError, ValueError):
    """A GLUE file or hub dataset does not have the expected shape.

    The message names the file, the line number, what was found and what was
    expected.
    """


class GlueFileNotFoundError(FileNotFoundError):
    """A GLUE folder or file is missing; the message names the path, task,
    split and the expected layout."""


# --------------------------------------------------------------------- names


def _did_you_mean(word: str, choices) -> str:
    """probekit's one did-you-mean (errors.did_you_mean), as a sentence after a message."""
    hint = did_you_mean(word, choices)
    return f" {hint[0].upper()}{hint[1:]}" if hint else ""


def normalize_task(task: str) -> str:
    """``"SST-2"``, ``"sst_2"``, ``"Sst2"`` -> ``"sst2"``; ValueError if unknown."""
    if not isinstance(task, str):
        raise ValueError(f"GLUE task must be a string, got {task!r}")
    key = task.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    if key in GLUE_TASKS:
        return key
    valid = ", ".join(GLUE_TASKS)
    raise ValueError(
        f"unknown GLUE task {task!r}; valid tasks: {valid}."
        + _did_you_mean(key or task, GLUE_TASKS)
    )


def get_task(task: str | GlueTask) -> GlueTask:
    """The :class:`GlueTask` for a (case-insensitive, ``sst-2``-tolerant) name."""
    if isinstance(task, GlueTask):
        return task
    return GLUE_TASKS[normalize_task(task)]


def normalize_split(task: str | GlueTask, split: str) -> str:
    """Canonical split name for ``task`` (``"dev"`` -> ``"validation"``); ValueError if unknown."""
    t = get_task(task)
    if not isinstance(split, str):
        raise ValueError(f"GLUE split must be a string, got {split!r}")
    key = split.strip().lower().replace("-", "_")
    key = _SPLIT_ALIASES.get(key, key)
    if key in t.files:
        return key
    valid = ", ".join(t.files)
    note = (
        " (GLUE test splits are unlabelled and not supported)" if key.startswith("test") else ""
    )
    raise ValueError(
        f"unknown split {split!r} for GLUE task {t.name!r}; valid splits: {valid}"
        f" ('dev' means 'validation'){note}."
        + _did_you_mean(key or split, list(t.files))
    )


def default_glue_dir() -> Path | None:
    """``$GLUE_DIR`` as a Path (``~`` expanded) when set and non-empty, else None."""
    value = os.environ.get("GLUE_DIR", "").strip()
    return Path(value).expanduser() if value else None


# -------------------------------------------------------------- local folder


def _layout(t: GlueTask) -> str:
    files = ", ".join(f"<glue_dir>/{t.folder}/{name}" for name in t.files.values())
    return f"expected layout (as GLUE distributes it): {files}"


def _split_line(raw: str) -> list[str]:
    # Strip the line terminator only; tabs are the sole separator, quotes are text.
    if raw.endswith("\n"):
        raw = raw[:-1]
    if raw.endswith("\r"):
        raw = raw[:-1]
    return raw.split("\t")


def read_glue_folder(glue_dir: str | os.PathLike | None, task: str, split: str) -> list[Example]:
    """Read ``<glue_dir>/<folder>/<file>`` for ``task``/``split`` into examples.

    ``glue_dir`` None means :func:`default_glue_dir` (``$GLUE_DIR``). Labels are
    raw strings. MNLI rows with gold_label ``"-"`` are skipped.
    """
    t = get_task(task)
    split = normalize_split(t, split)
    if glue_dir is None:
        glue_dir = default_glue_dir()
        if glue_dir is None:
            raise GlueFileNotFoundError(
                f"no GLUE folder given for task {t.name!r}, split {split!r}, and $GLUE_DIR "
                f"is not set; {_layout(t)}"
            )
    root = Path(glue_dir).expanduser()
    folder = root / t.folder
    path = folder / t.files[split]
    if not path.is_file():
        if not root.is_dir():
            missing = f"GLUE folder {str(root)!r} does not exist"
        elif not folder.is_dir():
            missing = f"task folder {str(folder)!r} does not exist"
        else:
            missing = f"file {str(path)!r} does not exist"
        raise GlueFileNotFoundError(
            f"{missing} (GLUE task {t.name!r}, split {split!r}); {_layout(t)}"
        )
    return _read_tsv(path, t)


def _read_tsv(path: Path, t: GlueTask) -> list[Example]:
    where = str(path)
    examples: list[Example] = []
    lineno = 0
    # newline="\n": lines end at \n only (a stray \r inside text is kept as text);
    # utf-8-sig drops a leading byte-order mark (MRPC ships with one).
    with open(path, encoding="utf-8-sig", newline="\n") as f:
        try:
            header_line = f.readline()
            lineno = 1
            if not header_line.strip():
                raise GlueFormatError(
                    f"{where}: line 1: found an empty header; expected a tab-separated "
                    f"header with columns {_wanted(t)}"
                )
            header = [h.strip() for h in _split_line(header_line)]
            cols = _locate_columns(where, header, t)
            n = len(header)
            blank_at: int | None = None
            for lineno, raw in enumerate(f, start=2):
                if raw.strip("\r\n") == "":
                    if blank_at is None:
                        blank_at = lineno
                    continue
                if blank_at is not None:
                    raise GlueFormatError(
                        f"{where}: line {blank_at}: found an empty line followed by more "
                        f"data (line {lineno}); expected one row of {n} tab-separated "
                        f"fields per line (empty lines only at the end of the file)"
                    )
                fields = _split_line(raw)
                if len(fields) != n:
                    raise GlueFormatError(
                        f"{where}: line {lineno}: found {len(fields)} tab-separated fields, "
                        f"expected {n} (as in the header: {_show_header(header)}); "
                        f"line starts {raw.rstrip(chr(13) + chr(10))[:80]!r}"
                    )
                ex = _row_to_example(where, lineno, fields, cols, t)
                if ex is not None:
                    examples.append(ex)
        except UnicodeDecodeError as e:
            raise GlueFormatError(
                f"{where}: at or after line {lineno + 1}: found bytes that are not valid UTF-8 "
                f"({e.reason}); "
                f"expected a UTF-8 text file"
            ) from e
    return examples


def _wanted(t: GlueTask) -> list[str]:
    return [c for c in (t.tsv_text, t.tsv_text_pair, t.tsv_label) if c is not None]


def _show_header(header: Sequence[str]) -> str:
    shown = ", ".join(repr(h) for h in header[:16])
    return f"[{shown}{', ...' if len(header) > 16 else ''}]"


def _locate_columns(where: str, header: list[str], t: GlueTask) -> tuple[int, int | None, int]:
    index: dict[str, int] = {}
    for i, name in enumerate(header):
        index.setdefault(name, i)
    found: list[int | None] = []
    for col in (t.tsv_text, t.tsv_text_pair, t.tsv_label):
        if col is None:
            found.append(None)
            continue
        if col not in index:
            raise GlueFormatError(
                f"{where}: line 1: missing column {col!r} for GLUE task {t.name!r}; "
                f"found header {_show_header(header)}; expected columns {_wanted(t)}"
                + _did_you_mean(col, header)
            )
        found.append(index[col])
    text_i, pair_i, label_i = found
    assert text_i is not None and label_i is not None
    return text_i, pair_i, label_i


def _row_to_example(
    where: str, lineno: int, fields: list[str], cols: tuple[int, int | None, int], t: GlueTask
) -> Example | None:
    text_i, pair_i, label_i = cols
    label = fields[label_i].strip()
    if label in t.skip_labels:
        return None
    if label == "":
        raise GlueFormatError(
            f"{where}: line {lineno}: found an empty {t.tsv_label!r} field; expected a label"
        )
    return Example(
        text=fields[text_i],
        text_pair=fields[pair_i] if pair_i is not None else None,
        label=label,
    )


# ----------------------------------------------------------------------- hub


def load_glue_hub(task: str, split: str) -> list[Example]:
    """Load ``task``/``split`` with ``datasets.load_dataset`` (needs internet or the HF cache)."""
    t = get_task(task)
    split = normalize_split(t, split)
    import datasets  # heavy; only needed for this path

    ds = datasets.load_dataset(HF_GLUE_PATH, t.name, split=t.hf_splits[split])
    return examples_from_hf_rows(t.name, ds)


def _class_names(rows: Any) -> list[str] | None:
    features = getattr(rows, "features", None)
    if not features or "label" not in features:
        return None
    names = getattr(features["label"], "names", None)
    return list(names) if names else None


def examples_from_hf_rows(
    task: str, rows: Iterable[Mapping[str, Any]], names: Sequence[str] | None = None
) -> list[Example]:
    """Convert hub rows (a ``datasets.Dataset`` or any iterable of dicts) to examples.

    ``label`` becomes the class name from ``names`` or, when not given, from the
    dataset's ``ClassLabel`` feature; otherwise the raw value. Rows labelled -1
    (unlabelled test splits) are dropped.
    """
    t = get_task(task)
    if names is None:
        names = _class_names(rows)
    names = list(names) if names is not None else None
    fields = t.text_fields
    out: list[Example] = []
    for i, row in enumerate(rows):
        missing = [c for c in (*fields, "label") if c not in row]
        if missing:
            raise GlueFormatError(
                f"hub rows for GLUE task {t.name!r}: row {i}: missing column(s) {missing}; "
                f"found columns {sorted(row)}; expected {list(fields) + ['label']}"
            )
        raw = row["label"]
        if raw is None or (isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw == -1):
            continue
        label: str | int = raw
        if names is not None and isinstance(raw, int) and not isinstance(raw, bool):
            if not 0 <= raw < len(names):
                raise GlueFormatError(
                    f"hub rows for GLUE task {t.name!r}: row {i}: found label id {raw}; "
                    f"expected -1 or an id in 0..{len(names) - 1} for class names {names}"
                )
            label = names[raw]
        out.append(
            Example(
                text=row[fields[0]],
                text_pair=row[fields[1]] if len(fields) > 1 else None,
                label=label,
            )
        )
    return out


# ------------------------------------------------------------------ dispatch


def load_glue(task: str, split: str, glue_dir: str | os.PathLike | None = None) -> list[Example]:
    """``glue_dir`` if given, else ``$GLUE_DIR`` if set, else the hub."""
    t = get_task(task)
    split = normalize_split(t, split)
    if glue_dir is None:
        glue_dir = default_glue_dir()
    if glue_dir is not None:
        return read_glue_folder(glue_dir, t.name, split)
    return load_glue_hub(t.name, split)
