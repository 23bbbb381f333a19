"""The Session: one run of one or more specs from start to end, behind every entry point.

``probekit run``, ``probekit check``, :func:`probekit.api.run` and the pytest
plugin are thin callers of it, so all of them validate, reuse cached results,
write the Parquet file, report, draw figures and judge expectations the same way.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import platform
import secrets
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from rich.console import Console

import probekit
from probekit.engine.examples import ExampleStore
from probekit.engine.probe import Measured, Prober, metric_metadata
from probekit.engine.resultcache import cache_dir, read_cached, results_key, write_cached
from probekit.errors import ExitCode, PluginError, Problem, SpecError
from probekit.expect.evaluate import Outcome, evaluate
from probekit.expect.render import render_outcomes
from probekit.hooks.manager import PluginManager, build_manager
from probekit.models.loading import pick_device, pick_dtype
from probekit.results.io import RESULTS_FILE, metadata, write_table
from probekit.results.schema import build_table
from probekit.spec.load import declared_plugins, parse_spec, read_spec
from probekit.spec.model import Spec


@dataclass
class RunResult:
    """A finished (or reused) run of one spec: what the run-finished hook and the callers get."""

    spec: Spec
    table: pa.Table
    path: Path
    cached: bool = False
    errors: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    @property
    def exit_code(self) -> ExitCode:
        if self.failures:
            return ExitCode.RUN_FAILURE
        if self.errors:
            return ExitCode.BAD_INPUT
        if any(not outcome.passed for outcome in self.outcomes):
            return ExitCode.EXPECTATIONS_FAILED
        return ExitCode.OK


class Session:
    """Loads each spec with its own plugin set, then runs it: cache, fine-tunes, probes, outputs, verdict."""

    def __init__(self, *, plugins: Iterable[str] = (), overrides: Mapping[str, Any] | None = None,
                 reports: str | Path = "reports", console: Console | None = None, use_cache: bool = True,
                 verbose: bool = False, autoload: bool | None = None) -> None:
        self.plugins = tuple(plugins)
        self.overrides = dict(overrides or {})
        self.reports = Path(reports)
        self.console = console or Console(stderr=True)  # the report and the verdict
        self.stderr = Console(stderr=True)  # progress and warnings, apart from what a user may pipe
        self.use_cache = use_cache
        self.verbose = verbose
        self.autoload = autoload
        self._warned: set[str] = set()

    # -- loading -----------------------------------------------------------------------

    def manager(self, extra: Iterable[str] = (), base_dir: Path | None = None) -> PluginManager:
        """The plugin set: built-ins, entry points, this session's ``-p`` names, then ``extra``."""
        return build_manager([*self.plugins, *extra], base_dir, autoload=self.autoload, on_warning=self._warn)

    def load(self, spec: str | Path | Spec, document: dict | None = None, text: str | None = None) -> tuple[Spec, PluginManager]:
        """A validated spec and the plugin set it was validated against (its own ``plugins`` included)."""
        if isinstance(spec, Spec):
            return spec, self.manager(spec.plugins, spec.base_dir)
        path = Path(spec)
        if document is None:
            text, document = read_spec(path)
        try:
            manager = self.manager(declared_plugins(document), path.parent)
        except PluginError as error:
            raise SpecError(path, [Problem("plugins", str(error), "importable plugin modules or .py files")]) from None
        metrics = {name: info.metric for name, info in manager.metrics.items()}
        try:
            parsed = parse_spec(document, path=path, text=text, metrics=metrics, sources=manager.sources,
                                overrides=self.overrides)
        except SpecError as error:
            raise self._explained(error, manager) from None
        return parsed, manager

    def _explained(self, error: SpecError, manager: PluginManager) -> SpecError:
        """A missing metric's problem gains why: a block, or a plugin that failed to load."""
        why = manager.explain_missing_metric("")
        if not why:
            return error
        problems = [Problem(p.key, p.found, p.expected, "; ".join(filter(None, [p.hint, why])))
                    if "which no plugin provides" in p.found else p for p in error.problems]
        return SpecError(error.path, problems)

    # -- running -----------------------------------------------------------------------

    def run(self, spec: str | Path | Spec, output: str | Path | None = None) -> RunResult:
        """Run one spec to its verdict: results written, report and figures drawn, expectations judged."""
        spec, manager = self.load(spec)
        examples = ExampleStore(spec, manager.sources)
        key = results_key(spec, manager, examples) if self.use_cache else None
        result = self._reuse(spec, key, output) if key else None
        if result is None:
            result = self._compute(spec, manager, output)
            if key and not (result.errors or result.failures):
                write_cached(cache_dir(spec, key), result.table, result.run_dir)
        self._finish(result, manager)
        return result

    def _reuse(self, spec: Spec, key: str, output: str | Path | None) -> RunResult | None:
        cached = read_cached(cache_dir(spec, key))
        if cached is None:
            return None
        table, run_dir = cached
        path = write_table(table, Path(output) / RESULTS_FILE) if output else run_dir / RESULTS_FILE
        self.stderr.print(f"probekit: {spec.name}: nothing changed since run {_run_id(table)}; reusing its results "
                           f"({path.parent}); --fresh recomputes", markup=False, highlight=False, soft_wrap=True)
        return RunResult(spec, table, path, cached=True)

    def _compute(self, spec: Spec, manager: PluginManager, output: str | Path | None) -> RunResult:
        run_id = new_run_id()
        started = time.time()
        path = Path(output) / RESULTS_FILE if output else self.reports / spec.name / run_id / RESULTS_FILE
        measured = Measured()
        info = _RunInfo(spec, manager, run_id, started)

        def write(complete: bool, **extra: Any) -> pa.Table:
            table = build_table(measured.records, info.metadata(measured, complete, **extra), info.detail_types())
            write_table(table, path)
            return table

        try:
            Prober(spec, manager, self.stderr, run_id).run(measured, on_comparison=lambda _: write(False))
        except KeyboardInterrupt:
            write(False, interrupted=True)
            self.stderr.print(f"probekit: interrupted; the comparisons finished so far are in {path}", markup=False)
            raise
        except Exception:
            if measured.records:
                write(False)
            raise
        table = write(True)
        return RunResult(spec, table, path, errors=measured.errors, failures=measured.failures,
                         tracebacks=measured.tracebacks)

    def _finish(self, result: RunResult, manager: PluginManager) -> None:
        """The run-finished hook (report, figures, third-party outputs), then the expectations' verdict."""
        try:
            manager.run_finished(result, self.console)
        except Exception as error:  # noqa: BLE001 - the results are written; an output plugin's bug is reported
            result.failures.append(f"run-finished hook: plugin bug: {type(error).__name__}: {error}")
            result.tracebacks.append(traceback.format_exc())
        self.console.print(f"results: {result.path}", markup=False, highlight=False, soft_wrap=True)
        for line in (*result.errors, *result.failures):
            self.console.print(f"[red]error[/] {line}", highlight=False, soft_wrap=True)
        if self.verbose:
            for trace in filter(None, result.tracebacks):
                self.console.print(trace, markup=False, highlight=False)
        result.outcomes = evaluate(result.spec.expectations, result.table)
        render_outcomes(result.outcomes, self.console)

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self.stderr.print(f"[yellow]warning[/] {message}", highlight=False, soft_wrap=True)


@dataclass
class _RunInfo:
    """The metadata a results file carries about its run."""

    spec: Spec
    manager: PluginManager
    run_id: str
    started: float

    def detail_types(self) -> dict[str, type]:
        return {key: kind for m in self.spec.metrics.values() for key, kind in dict(m.metric_class.details).items()}

    def metadata(self, measured: Measured, complete: bool, **extra: Any) -> dict[str, Any]:
        spec = self.spec
        device = pick_device(spec.run.device)
        models = {name: {"source": r.source, "identity": r.identity, "accuracy": r.accuracy}
                  for name, r in measured.models.items()}
        return {
            "run_id": self.run_id, "spec_name": spec.name, "spec_path": str(spec.path), "spec_text": spec.text,
            "models": models, "metrics": metric_metadata(spec, self.manager),
            "errors": [*measured.errors, *measured.failures], "failures": measured.failures, "complete": complete,
            "probekit_version": probekit.__version__, "torch_version": torch.__version__,
            "transformers_version": _version("transformers"), "python_version": platform.python_version(),
            "device": _device_name(device), "dtype": str(pick_dtype(spec.run.dtype, device)).removeprefix("torch."),
            "started_at": _iso(self.started), "finished_at": _iso(time.time()), **extra,
        }


def new_run_id() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def _run_id(table: pa.Table) -> str:
    return str(metadata(table).get("run_id", "?"))


def _version(package: str) -> str:
    return importlib.metadata.version(package)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")

