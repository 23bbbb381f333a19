"""Reading and writing results files: one Parquet file per run, its metadata as JSON."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from probekit.errors import UserError

RESULTS_FILE = "results.parquet"


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
        raise UserError(f"{path}: no results file (expected a run folder holding {RESULTS_FILE}, or the file)")
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise UserError(f"{path}: not a readable results file ({error}); expected a Parquet file a probekit run wrote") from None


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
