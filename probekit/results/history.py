"""The run history: the runs under a reports folder, their verdicts, and the difference between two runs.

A run folder is ``<reports>/spec_name=<spec>/run=<run id>/`` (:func:`run_folder`): the
folder keys are Hive partitions, so duckdb, polars and pyarrow read ``reports/`` as one
dataset with ``spec_name`` and ``run`` columns beside the file's own ``spec`` and
``run_id`` (docs/results.md). The keys are named apart from those columns on purpose: a
key named like a file column must agree with it in type, and a spec named ``2024`` would
then make pyarrow refuse the dataset and duckdb retype the column.

Beside ``results.parquet`` a finished run has ``verdict.json``: its expectations' outcomes,
written after they are judged (the results file is written before the run-finished hook).
"""
from __future__ import annotations

import datetime
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from probekit.errors import UserError
from probekit.results.events import events_of
from probekit.results.io import RESULTS_FILE, metadata, write_atomically
from probekit.results.layers import series_rows

SPEC_KEY = "spec_name"
RUN_KEY = "run"
VERDICT_FILE = "verdict.json"


def run_folder(reports: str | os.PathLike, spec_name: str, run_id: str) -> Path:
    """Where a run of ``spec_name`` writes by default: ``<reports>/spec_name=<spec>/run=<run id>``."""
    return Path(reports) / f"{SPEC_KEY}={spec_name}" / f"{RUN_KEY}={run_id}"


# -- verdicts ------------------------------------------------------------------------


def write_verdict(run_dir: str | os.PathLike, run_id: str, outcomes: Sequence[Mapping[str, Any]]) -> Path:
    """Write ``verdict.json`` into a run folder: each expectation's ``name``, ``passed`` and ``reason``."""
    entries = [{"name": str(o["name"]), "passed": bool(o["passed"]), "reason": str(o.get("reason", ""))}
               for o in outcomes]
    document = {"run_id": run_id, "total": len(entries), "passed": sum(e["passed"] for e in entries),
                "judged_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "expectations": entries}
    text = json.dumps(document, indent=2) + "\n"
    return write_atomically(Path(run_dir) / VERDICT_FILE, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def read_verdict(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """A run folder's verdict, or None when it has none (judging never finished) or it is unreadable."""
    try:
        document = json.loads((Path(run_dir) / VERDICT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("expectations"), list):
        return None
    return document


# -- listing -------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRecord:
    """One run found under a reports folder, from its results file's metadata and its verdict."""

    path: Path  # the results file
    spec: str
    run_id: str
    started_at: str
    complete: bool | None  # None: the file does not say (written by an older probekit)
    interrupted: bool
    errors: int
    models: tuple[str, ...]
    passed: int | None  # expectations that held; None when the run has no verdict
    expectations: int | None

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    @property
    def date(self) -> str:
        """``2026-11-27 18:30:00Z`` from ``started_at`` (UTC), or what the file has."""
        try:
            moment = datetime.datetime.fromisoformat(self.started_at)
        except ValueError:
            return self.started_at or "?"
        return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")

    @property
    def status(self) -> str:
        """``complete``, ``incomplete``, ``interrupted``, with ``, N errors`` when metrics failed."""
        state = {True: "complete", False: "interrupted" if self.interrupted else "incomplete", None: "?"}[self.complete]
        return state + (f", {self.errors} error{'s' if self.errors != 1 else ''}" if self.errors else "")

    @property
    def verdict(self) -> str:
        """``2/3 passed``, ``none declared``, or ``not judged``."""
        if self.expectations is None:
            return "not judged"
        if self.expectations == 0:
            return "none declared"
        return f"{self.passed}/{self.expectations} passed"


def read_record(path: str | os.PathLike) -> RunRecord:
    """The record of one results file (its footer only: the rows are not read)."""
    path = Path(path)
    try:
        meta = metadata(pq.read_schema(path).empty_table())
    except (pa.ArrowException, OSError) as error:
        raise UserError(f"{path}: not a readable results file ({error})") from None
    if "run_id" not in meta:
        raise UserError(f"{path}: not a probekit results file (no probekit.run_id metadata)")
    verdict = read_verdict(path.parent)
    outcomes = verdict["expectations"] if verdict else None
    complete = meta.get("complete")
    return RunRecord(
        path=path, spec=str(meta.get("spec_name", "?")), run_id=str(meta["run_id"]),
        started_at=str(meta.get("started_at", "")), complete=complete if isinstance(complete, bool) else None,
        interrupted=bool(meta.get("interrupted")), errors=len(events_of(meta, "error", "failure")),
        models=tuple(meta.get("models") or {}),
        passed=None if outcomes is None else sum(bool(o.get("passed")) for o in outcomes if isinstance(o, dict)),
        expectations=None if outcomes is None else len(outcomes),
    )


def find_runs(reports: str | os.PathLike, spec: str | None = None) -> tuple[list[RunRecord], list[str]]:
    """The runs under ``reports`` (any depth, hidden folders skipped), oldest first; and the files that could not be read."""
    root = Path(reports)
    records: list[RunRecord] = []
    unreadable: list[str] = []
    if not root.is_dir():
        return records, unreadable
    for folder, names, files in os.walk(root):
        names[:] = sorted(n for n in names if not n.startswith("."))
        if RESULTS_FILE not in files:
            continue
        try:
            record = read_record(Path(folder) / RESULTS_FILE)
        except UserError as error:
            unreadable.append(str(error))
            continue
        if spec is None or record.spec == spec:
            records.append(record)
    records.sort(key=lambda r: (r.started_at, r.run_id))
    return records, unreadable


def resolve_run(given: str | os.PathLike, reports: str | os.PathLike) -> Path:
    """The results file a user names: a run folder, a results file, or a run id (or its unique start) under ``reports``."""
    path = Path(given)
    if path.is_dir() and (path / RESULTS_FILE).is_file():
        return path / RESULTS_FILE
    if path.is_file():
        return path
    if path.is_dir():
        raise UserError(f"{path}: not a run folder (it has no {RESULTS_FILE})")
    text = str(given)
    runs, _ = find_runs(reports)
    exact = [r for r in runs if r.run_id == text]
    matches = (exact or [r for r in runs if r.run_id.startswith(text)]) if text else []
    if len(matches) == 1:
        return matches[0].path
    if len(matches) > 1:
        listed = ", ".join(f"{r.run_id} ({r.spec})" for r in matches[:6])
        raise UserError(f"{text}: names {len(matches)} runs under {reports} ({listed}); give more of the run id or the folder")
    latest = ", ".join(r.run_id for r in runs[-3:])
    raise UserError(f"{text}: not a run folder, a results file or the id of a run under {reports}"
                    + (f" (latest runs: {latest}; `probekit ls` lists them)" if runs else " (it holds no runs)"))


# -- differences ---------------------------------------------------------------------


@dataclass(frozen=True)
class LayerDelta:
    """One (comparison, metric, layer[, head]) in two runs; ``None`` where a run lacks the value."""

    comparison: str
    metric: str
    layer: int
    head: int | None
    a: float | None
    b: float | None
    exceeds: bool

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a


@dataclass
class RunDiff:
    """The values two runs share, layer by layer, and what only one of them has."""

    rows: list[LayerDelta]
    tolerance: float
    relative: bool
    only_a: list[tuple[str, str]] = field(default_factory=list)
    only_b: list[tuple[str, str]] = field(default_factory=list)

    @property
    def changed(self) -> list[LayerDelta]:
        return [row for row in self.rows if row.exceeds]

    def largest(self) -> LayerDelta | None:
        """The changed row with the largest finite |delta| (a missing or non-finite value counts as largest)."""
        def size(row: LayerDelta) -> float:
            delta = row.delta
            return math.inf if delta is None or not math.isfinite(delta) else abs(delta)
        return max(self.changed, key=size, default=None)


def exceeds(a: float | None, b: float | None, tolerance: float, relative: bool = False) -> bool:
    """Whether ``a`` -> ``b`` is a change beyond ``tolerance`` (absolute, or relative to the larger magnitude).

    Two NaNs are the same value; a value on one side only, or NaN against a number, is a change.
    """
    if a is None or b is None:
        return a is not b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) != math.isnan(b)
    if a == b:  # equal infinities too
        return False
    change = abs(b - a)
    if relative:
        scale = max(abs(a), abs(b))
        return math.isinf(scale) or change > tolerance * scale
    return not change <= tolerance


def diff_tables(a: pa.Table, b: pa.Table, *, tolerance: float = 1e-6, relative: bool = False,
                heads: bool = False) -> RunDiff:
    """Layer values of the (comparison, metric) pairs both tables have; per-head values too when ``heads``.

    Raises :class:`UserError` when they share no (comparison, metric) pair.
    """
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise UserError(f"--tolerance {tolerance}: expected a finite number >= 0")
    values_a, values_b = _values(a, heads), _values(b, heads)
    pairs_a = list(dict.fromkeys(key[:2] for key in values_a))
    pairs_b = list(dict.fromkeys(key[:2] for key in values_b))
    order = {pair: index for index, pair in enumerate(p for p in pairs_a if p in set(pairs_b))}
    if not order:
        raise UserError(f"the two runs have no comparison and metric in common (A: {_pairs(pairs_a)}; B: {_pairs(pairs_b)})")
    keys = sorted({key for key in (*values_a, *values_b) if key[:2] in order},
                  key=lambda k: (order[k[:2]], k[2], -1 if k[3] is None else k[3]))
    rows = []
    for key in keys:
        before, after = values_a.get(key), values_b.get(key)
        rows.append(LayerDelta(*key, before, after, exceeds(before, after, tolerance, relative)))
    return RunDiff(rows, tolerance, relative, only_a=[p for p in pairs_a if p not in order],
                   only_b=[p for p in pairs_b if p not in order])


def _values(table: pa.Table, heads: bool) -> dict[tuple[str, str, int, int | None], float]:
    rows = series_rows(table, ["comparison", "metric", "layer", "head", "value"])
    return {(r["comparison"], r["metric"], int(r["layer"]), r["head"]): (math.nan if r["value"] is None else float(r["value"]))
            for r in rows if heads or r["head"] is None}


def _pairs(pairs: Iterable[tuple[str, str]]) -> str:
    listed = [f"{c}/{m}" for c, m in pairs]
    return ", ".join(listed[:6]) + (f", ... ({len(listed)} in all)" if len(listed) > 6 else "") if listed else "nothing"
