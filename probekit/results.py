"""The results table: one row per measured number, written as one Parquet file per run.

docs/results.md documents the columns and the file metadata.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from probekit.metric import Row

SCHEMA_VERSION = "1"
RESULTS_FILE = "results.parquet"

#: Columns every results file has, in order; metric details follow as extra columns.
COLUMNS = pa.schema([
    ("run_id", pa.string()),
    ("spec", pa.string()),
    ("comparison", pa.string()),
    ("model_a", pa.string()),
    ("model_b", pa.string()),
    ("snapshot_a", pa.float64()),
    ("snapshot_b", pa.float64()),
    ("data", pa.string()),
    ("metric", pa.string()),
    ("layer", pa.int32()),
    ("head", pa.int32()),
    ("value", pa.float64()),
    ("n_examples", pa.int64()),
    ("n_tokens", pa.int64()),
])


@dataclass(frozen=True)
class RowContext:
    """Who measured a batch of rows: the identity columns the plugin cannot get wrong."""

    run_id: str
    spec: str
    comparison: str
    model_a: str
    model_b: str
    snapshot_a: float | None
    snapshot_b: float | None
    data: str
    metric: str


def to_records(context: RowContext, rows: Iterable[Row]) -> list[dict[str, Any]]:
    base = {name: getattr(context, name) for name in RowContext.__dataclass_fields__}
    return [
        {**base, "layer": row.layer, "head": row.head, "value": float(row.value),
         "n_examples": row.n_examples, "n_tokens": row.n_tokens, **row.details}
        for row in rows
    ]


def build_table(records: list[dict[str, Any]], metadata: Mapping[str, Any]) -> pa.Table:
    """The run's table: the fixed columns first, then every metric detail column (null where absent)."""
    detail_columns = sorted({key for record in records for key in record} - set(COLUMNS.names))
    columns = {field.name: pa.array([r.get(field.name) for r in records], type=field.type) for field in COLUMNS}
    for name in detail_columns:
        columns[name] = pa.array([r.get(name) for r in records])
    table = pa.table(columns)
    encoded = {f"probekit.{key}": json.dumps(value) if not isinstance(value, str) else value
               for key, value in {"schema_version": SCHEMA_VERSION, **metadata}.items()}
    return table.replace_schema_metadata(encoded)


def write_table(table: pa.Table, path: Path) -> Path:
    """Write under a temporary name and rename: a crash never leaves a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, temporary)
    os.replace(temporary, path)
    return path


def read_table(path: str | Path) -> pa.Table:
    """A results file, or the results file of a run folder."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results file (expected a run folder holding {RESULTS_FILE}, or the file)")
    return pq.read_table(path)


def metadata(table: pa.Table) -> dict[str, Any]:
    """The probekit metadata of a results table, decoded (``spec_text``, ``models``, ``metrics``, ...)."""
    decoded = {}
    for key, value in (table.schema.metadata or {}).items():
        key = key.decode()
        if key.startswith("probekit."):
            value = value.decode()
            try:
                decoded[key.removeprefix("probekit.")] = json.loads(value)
            except json.JSONDecodeError:
                decoded[key.removeprefix("probekit.")] = value
    return decoded
