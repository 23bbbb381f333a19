"""The results table: one row per measured number, written as one Parquet file per run.

docs/results.md documents the columns and the file metadata.
"""
from __future__ import annotations

import json
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from probekit.metrics.base import Row

SCHEMA_VERSION = "3"

#: Columns every results file has, in order; metric details follow as extra columns.
COLUMNS = pa.schema([
    ("run_id", pa.string()),
    ("spec", pa.string()),
    ("comparison", pa.string()),
    ("model_a", pa.string()),
    ("model_b", pa.string()),
    ("snapshot_a", pa.float64()),
    ("snapshot_b", pa.float64()),
    ("step_a", pa.int64()),  # the training step of a checkpoint series' (or a training snapshot's) side
    ("step_b", pa.int64()),
    ("data", pa.string()),
    ("metric", pa.string()),
    ("layer", pa.int32()),
    ("layer_b", pa.int32()),  # a cross-layer matrix's layer of model b (null for layer-wise metrics)
    ("head", pa.int32()),
    ("value", pa.float64()),
    ("ci_low", pa.float64()),  # the bootstrap interval at [run] confidence (null without [run] bootstrap)
    ("ci_high", pa.float64()),
    ("ci_bias", pa.float64()),  # the bootstrap's bias estimate: the replicates' mean minus the value (null without)
    ("p_value", pa.float64()),  # the permutation null's (null without permutations)
    ("seed_spread", pa.float64()),  # what the comparison's seed_spread comparisons reach here (null without)
    ("above_seed_spread", pa.bool_()),  # whether the value (its whole interval) is beyond that
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
    step_a: int | None = None
    step_b: int | None = None


#: The Arrow type of a ``details`` column, by the Python type a metric declares for it.
DETAIL_ARROW_TYPES = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}


def to_records(context: RowContext, rows: Iterable[Row]) -> list[dict[str, Any]]:
    base = {name: getattr(context, name) for name in RowContext.__dataclass_fields__}
    return [
        {**base, "layer": row.layer, "layer_b": row.layer_b, "head": row.head, "value": float(row.value),
         "ci_low": row.ci_low, "ci_high": row.ci_high, "ci_bias": row.ci_bias, "p_value": row.p_value,
         "n_examples": row.n_examples, "n_tokens": row.n_tokens, **row.details}
        for row in rows
    ]


def detail_problems(rows: Iterable[Row], declared: Mapping[str, type]) -> list[str]:
    """What in the rows' ``details`` breaks the metric's declaration (an undeclared key, a value of another type)."""
    problems = []
    for row in rows:
        for key, value in row.details.items():
            kind = declared.get(key)
            if kind is None:
                problems.append(f"details key {key!r} is not declared in the metric's `details`")
            elif not (value is None or _is_kind(value, kind)):
                problems.append(f"details[{key!r}] = {value!r} is not {kind.__name__} as declared")
        if problems:
            return problems
    return problems


def _is_kind(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, {int: numbers.Integral, float: numbers.Real}.get(kind, kind))


def build_table(records: list[dict[str, Any]], metadata: Mapping[str, Any],
                detail_types: Mapping[str, type] | None = None) -> pa.Table:
    """The run's table: the fixed columns first, then each declared detail column (null where absent)."""
    detail_types = dict(detail_types or {})
    undeclared = {key for record in records for key in record} - set(COLUMNS.names) - set(detail_types)
    detail_types.update({key: None for key in undeclared})
    columns = {field.name: pa.array([r.get(field.name) for r in records], type=field.type) for field in COLUMNS}
    for name in sorted(detail_types):
        kind = detail_types[name]
        columns[name] = pa.array([r.get(name) for r in records], type=DETAIL_ARROW_TYPES.get(kind))
    table = pa.table(columns)
    encoded = {f"probekit.{key}": json.dumps(value) if not isinstance(value, str) else value
               for key, value in {"schema_version": SCHEMA_VERSION, **metadata}.items()}
    return table.replace_schema_metadata(encoded)
