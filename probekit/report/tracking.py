"""What an experiment-tracker run holds for a probekit run, drawn from the results table alone.

The built-in ``wandb`` and ``mlflow`` plugins log the same things, from here: the run's
identity and provenance as config (:func:`tracker_config`), each comparison's per-layer
values with the layer as the step and their intervals (:func:`layer_points`), the
expectations' verdicts (:func:`verdict_records`), and the run folder's files as artifacts
(:func:`run_files`). The tracker's run id goes back into the run folder, in
``tracking.json`` (:func:`record_tracker_run`), so each side names the other.
"""
from __future__ import annotations

import importlib.util

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from probekit.errors import UserError
from probekit.report.html import REPORT_FILE, Verdict
from probekit.results.events import events_of
from probekit.results.io import RESULTS_FILE, metadata
from probekit.results.layers import series_rows

#: Where a run folder keeps the tracker runs that logged it: ``{"mlflow": {"run_id": ...}, ...}``.
TRACKING_FILE = "tracking.json"
#: The run facts a tracker gets as config (file metadata keys).
CONFIG_KEYS = ("run_id", "spec_name", "spec_path", "started_at", "finished_at", "complete", "interrupted", "device",
               "dtype", "probekit_version", "torch_version", "transformers_version", "python_version")
#: The extra each tracker's package comes with.
EXTRAS = {"wandb": "probekit[wandb]", "mlflow": "probekit[mlflow]"}


@dataclass(frozen=True)
class LayerPoint:
    """One comparison's value of one metric at one layer (the layer's value, not a head's)."""

    comparison: str
    metric: str
    layer: int
    value: float
    ci_low: float | None = None
    ci_high: float | None = None

    @property
    def key(self) -> str:
        """The tracker's metric name: ``pretrained_vs_seed1/svcca`` (characters trackers refuse become ``_``)."""
        return metric_key(f"{self.comparison}/{self.metric}")


def metric_key(name: str) -> str:
    """A metric name every tracker takes: letters, digits, ``_ - . /`` and spaces."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name)


def tracker_config(table: pa.Table) -> dict[str, Any]:
    """The run's identity and provenance: its facts, the models with their identities, the metrics, the spec's text."""
    meta = metadata(table)
    config = {key: meta[key] for key in CONFIG_KEYS if meta.get(key) is not None}
    config["models"] = meta.get("models") or {}
    config["metrics"] = meta.get("metrics") or {}
    config["comparisons"] = list(meta.get("comparisons") or dict.fromkeys(table.column("comparison").to_pylist()))
    config["spec_text"] = meta.get("spec_text", "")
    config["warnings"] = [str(event) for event in events_of(meta, "note")]
    config["errors"] = [str(event) for event in events_of(meta, "error", "failure")]
    return config


def flat_params(config: dict[str, Any]) -> dict[str, str]:
    """The config as flat string parameters (``models.seed1.identity``), for trackers whose parameters are strings;
    the spec's text is left out (it goes as a file)."""
    params: dict[str, str] = {}

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                add(f"{prefix}.{key}" if prefix else str(key), inner)
        elif value is not None:
            params[metric_key(prefix)] = value if isinstance(value, str) else json.dumps(value)

    add("", {key: value for key, value in config.items() if key != "spec_text"})
    return params


def layer_points(table: pa.Table) -> list[LayerPoint]:
    """Every per-layer value of the run (heads left out), with its interval where the run drew one."""
    bands = [c for c in ("ci_low", "ci_high") if c in table.column_names]
    points = []
    for row in series_rows(table, ["comparison", "metric", "layer", "head", "value", *bands]):
        if row["head"] is None:
            points.append(LayerPoint(row["comparison"], row["metric"], row["layer"], row["value"],
                                     row.get("ci_low"), row.get("ci_high")))
    return points


def verdict_records(verdicts: Iterable[Verdict]) -> list[dict[str, Any]]:
    """One record per expectation: name, passed, reason, what it asserts, and the values that fail it."""
    return [{"name": v.name, "passed": v.passed, "reason": v.reason, "expectation": v.claim,
             "failing": [{"where": r.where, "layer": r.layer, "value": r.value, "expected": r.expected}
                         for r in v.rows if r.fails]} for v in verdicts]


def run_files(run_dir: Path) -> list[Path]:
    """The run folder's files a tracker keeps as artifacts: the results file, report.html and the figures."""
    run_dir = Path(run_dir)
    named = [run_dir / RESULTS_FILE, run_dir / REPORT_FILE]
    return [path for path in named if path.is_file()] + sorted(run_dir.glob("*.png"))


def record_tracker_run(run_dir: Path, tracker: str, info: dict[str, Any]) -> Path:
    """Add a tracker run (its id, where it is) to the run folder's ``tracking.json``; return the file."""
    path = Path(run_dir) / TRACKING_FILE
    known = json.loads(path.read_text()) if path.is_file() else {}
    known[tracker] = info
    temporary = path.with_name(f".{TRACKING_FILE}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
    temporary.replace(path)
    return path


def read_tracker_runs(run_dir: Path) -> dict[str, Any]:
    """The tracker runs a run folder's ``tracking.json`` names (empty when it has none)."""
    path = Path(run_dir) / TRACKING_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def require_tracker(name: str, log: Iterable[str]) -> None:
    """Refuse a run that asks to log to ``name`` when its package is not installed (before anything runs)."""
    if name in log and importlib.util.find_spec(name) is None:
        raise UserError(f"--log {name}: the {name} package is not installed; pip install '{EXTRAS[name]}' "
                        f"(or drop {name} from --log and [run] log); nothing was run")
