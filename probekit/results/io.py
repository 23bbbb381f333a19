"""Reading and writing results files: one Parquet file per run, its metadata as JSON."""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from probekit.errors import UserError

RESULTS_FILE = "results.parquet"
#: The columns without which a table is not a probekit results table (files of older versions may lack later ones).
ESSENTIAL_COLUMNS = ("comparison", "metric", "layer", "value")


def write_table(table: pa.Table, path: Path) -> Path:
    """Write under a temporary name and rename: a crash never leaves a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(path, lambda temporary: pq.write_table(table, temporary))


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """``write`` the file ``path`` under a temporary name, then rename it into place: a crash, a full disk or a
    missing permission never leaves a half file, nor the temporary one (an OSError is re-raised as it came)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            error.filename = str(path)  # the file asked for, not its temporary name
        raise
    return path


def read_table(path: str | Path) -> pa.Table:
    """A results file, or the results file of a run folder."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise UserError(f"{path}: no results file (expected a run folder holding {RESULTS_FILE}, or the file)")
    expected = f"expected the {RESULTS_FILE} of a probekit run (or its run folder)"
    if path.suffix.lower() == ".toml":
        raise UserError(f"{path}: a spec, not results; {expected}: `probekit run {path}` writes one")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: an empty file (0 bytes), not results; {expected}")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as error:  # truncated, corrupted, or no Parquet at all
        reason = re.sub(r"^Could not open Parquet input source '.*?': ", "", str(error).strip()).splitlines()
        reason = reason[0] if reason else type(error).__name__
        raise UserError(f"{path}: not a readable Parquet file, truncated or corrupted ({reason}); {expected}") from None
    lacks = [] if any(key.startswith(b"probekit.") for key in (table.schema.metadata or {})) else ["no probekit metadata"]
    missing = [name for name in ESSENTIAL_COLUMNS if name not in table.column_names]
    lacks += [f"no column {', '.join(missing)}"] if missing else []
    if lacks:
        columns = ", ".join(table.column_names[:8]) + (", ..." if table.num_columns > 8 else "")
        raise UserError(f"{path}: a Parquet file probekit did not write ({'; '.join(lacks)}; its columns are: "
                        f"{columns or 'none'}); {expected}")
    return table


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
