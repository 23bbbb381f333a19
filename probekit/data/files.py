"""Reading examples from tables: local files (CSV, TSV, JSON lines, Parquet) and row sequences."""
from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from probekit.data.example import Example
from probekit.errors import DataError

FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


@dataclass(frozen=True)
class Columns:
    """Which column holds the text, the optional second text, and the label."""

    text: str = "text"
    text_pair: str | None = None
    label: str = "label"


def read_table_file(path: Path) -> tuple[list[str], list[dict]]:
    """The column names and rows of a data file."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")
            return list(reader.fieldnames or []), list(reader)
    if suffix in (".jsonl", ".json"):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return sorted({key for row in rows for key in row}), rows
    if suffix == ".parquet":
        table = pq.read_table(path)
        return table.column_names, table.to_pylist()
    raise DataError(f"{path}: unknown file type {suffix!r}; expected one of {', '.join(FILE_SUFFIXES)}")


def rows_to_examples(columns: Sequence[str], rows, wanted: Columns, where: str,
                     names: Sequence[str] | None = None) -> list[Example]:
    """Examples from rows (mappings); ``names`` turns integer labels into class names."""
    chosen: Mapping[str, str | None] = {"text": wanted.text, "text_pair": wanted.text_pair, "label": wanted.label}
    missing = [f"{key} = {column!r}" for key, column in chosen.items() if column is not None and column not in columns]
    if missing:
        raise DataError(f"{where}: no column for {', '.join(missing)}; the columns are: {', '.join(map(str, columns))}")
    return [
        Example(
            text=str(row[wanted.text]),
            text_pair=None if wanted.text_pair is None else str(row[wanted.text_pair]),
            label=names[row[wanted.label]] if names else row[wanted.label],
        )
        for row in rows
    ]
