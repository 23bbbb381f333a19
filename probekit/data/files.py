"""Reading examples from tables: local files (CSV, TSV, JSON lines, Parquet, plain text) and row sequences.

Errors name the file and, for text files, the line: a user fixes a data file in an editor.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from probekit.data.example import Example
from probekit.errors import DataError

FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt")
#: At most this many bad rows are listed in one message.
LISTED_ROWS = 5


@dataclass(frozen=True)
class Columns:
    """Which column holds the text, the optional second text, and the label (None: unlabelled text)."""

    text: str = "text"
    text_pair: str | None = None
    label: str | None = "label"


@dataclass(frozen=True)
class TableRows:
    """A data file's column names and rows, and where each row is in the file (``line 3``, ``row 3``)."""

    columns: list[str]
    rows: list[dict]
    places: list[str]


def read_table_file(path: Path) -> tuple[list[str], list[dict]]:
    """The column names and rows of a data file."""
    table = read_rows(path)
    return table.columns, table.rows


def read_rows(path: Path) -> TableRows:
    """The rows of a data file; DataError naming the file (and the line) when it cannot be read, or has no rows."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        table = _read_csv(path, "\t" if suffix == ".tsv" else ",")
    elif suffix in (".jsonl", ".json"):
        table = _read_json(path)
    elif suffix == ".txt":  # unlabelled text, one example per line: what a language model fine-tunes on
        lines = [(number, line) for number, line in enumerate(_text(path).splitlines(), start=1) if line.strip()]
        table = TableRows(["text"], [{"text": line} for _, line in lines], [f"line {number}" for number, _ in lines])
    elif suffix == ".parquet":
        try:
            parquet = pq.read_table(path)
        except (pa.ArrowException, OSError) as error:
            raise DataError(f"{path}: not a readable Parquet file ({str(error).splitlines()[0]})") from None
        table = TableRows(parquet.column_names, parquet.to_pylist(), [f"row {i + 1}" for i in range(parquet.num_rows)])
    else:
        raise DataError(f"{path}: unknown file type {suffix!r}; expected one of {', '.join(FILE_SUFFIXES)}")
    if not table.rows:
        if suffix == ".txt":  # a text file has no header: what it holds is blank lines
            what = "only blank lines (a .txt file holds one example per non-blank line)"
        else:
            what = f"only a header ({', '.join(table.columns)})" if table.columns else "nothing"
        raise DataError(f"{path}: has no rows: the file holds {what}; a data file needs one row per example")
    return table


def _text(path: Path) -> str:
    """A text data file's content (UTF-8, a byte-order mark dropped); DataError naming the line of a bad byte."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line}: byte 0x{raw[error.start]:02x} is not UTF-8 text; save the file as "
                        "UTF-8 (it is latin-1 or cp1252, most likely)") from None


def _read_csv(path: Path, delimiter: str) -> TableRows:
    reader = csv.DictReader(io.StringIO(_text(path), newline=""), delimiter=delimiter)
    rows, places = [], []
    try:
        for row in reader:
            rows.append(row)
            places.append(f"line {reader.line_num}")
    except csv.Error as error:
        raise DataError(f"{path}: line {reader.line_num}: {error}") from None
    return TableRows(list(reader.fieldnames or []), rows, places)


def _read_json(path: Path) -> TableRows:
    text = _text(path)
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):  # one JSON array of objects
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: line {error.lineno}, column {error.colno}: invalid JSON ({error.msg})") from None
        rows, places = document, [f"item {i + 1}" for i in range(len(document))]
    else:  # JSON lines: one object per line, blank lines skipped
        rows, places = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise DataError(f"{path}: line {number}, column {error.colno}: invalid JSON ({error.msg}); "
                                "a JSON lines file holds one JSON object per line") from None
            places.append(f"line {number}")
    for row, place in zip(rows, places):
        if not isinstance(row, dict):
            raise DataError(f"{path}: {place}: found {type(row).__name__} {str(row)[:40]}; expected a JSON object "
                            '(one example: {"text": ..., "label": ...})')
    return TableRows(sorted({key for row in rows for key in row}), rows, places)


def rows_to_examples(columns: Sequence[str], rows, wanted: Columns, where: str,
                     names: Sequence[str] | None = None, *, places: Sequence[str] | None = None) -> list[Example]:
    """Examples from rows (mappings); ``names`` turns integer labels into class names.

    A row without a text or with an empty label is refused, naming the row (``places[i]``,
    else ``row i+1``) and the column: an empty label would otherwise become a class of its own.
    """
    chosen: Mapping[str, str | None] = {"text": wanted.text, "text_pair": wanted.text_pair, "label": wanted.label}
    missing = [f"{key} = {column!r}" for key, column in chosen.items() if column is not None and column not in columns]
    if missing:
        raise DataError(f"{where}: no column for {', '.join(missing)}; the columns are: {', '.join(map(str, columns))}")
    examples, bad = [], []
    for index, row in enumerate(rows):
        problems = [_value_problem(row, column, label=column == wanted.label)
                    for column in (wanted.text, wanted.text_pair, wanted.label) if column is not None]
        problems = [problem for problem in problems if problem]
        if problems:
            bad.append(f"{places[index] if places else f'row {index + 1}'}: {' and '.join(problems)}")
            continue
        label = None if wanted.label is None else row[wanted.label]
        examples.append(Example(
            text=str(row[wanted.text]),
            text_pair=None if wanted.text_pair is None else str(row[wanted.text_pair]),
            label=names[label] if names and label is not None else label,
        ))
    if bad:
        more = f"; and {len(bad) - LISTED_ROWS} more rows" if len(bad) > LISTED_ROWS else ""
        listed = "; ".join(bad[:LISTED_ROWS]) + more
        fix = "fill it in or remove the row" if len(bad) == 1 else "fill them in or remove those rows"
        raise DataError(f"{where}: {listed}; every example needs its text and a label ({fix})")
    return examples


def _value_problem(row: Mapping, column: str, *, label: bool) -> str:
    """What is wrong with one value of a row ('' when nothing): absent, null, or (a label) empty text."""
    if column not in row:
        return f"a row has no {column!r} column"
    value = row[column]
    if value is None:
        return f"column {column!r} is empty"
    if label and isinstance(value, str) and not value.strip():  # it would become a class of its own
        return f"column {column!r} is empty"
    return ""
