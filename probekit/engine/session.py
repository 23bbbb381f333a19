"""The Session: one run of one or more specs from start to end, behind every entry point.

``probekit run``, ``probekit check``, :func:`probekit.api.run` and the pytest
plugin are thin callers of it, so all of them validate, reuse cached results,
write the Parquet file, report, draw figures and judge expectations the same way.
"""
from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import platform
import secrets
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
from rich.console import Console

import probekit
from probekit.engine.examples import ExampleStore
from probekit.engine.spec_checks import spec_fact_problems
from probekit.engine.executors import Executor, executor_for
from probekit.engine.outputs import (RunOutput, check_output, claimed, check_same_spec, check_writable, fallback_folders,
                                     remove_temporaries, resumable_run, run_of)
from probekit.engine.probe import Measured, Prober, ResolvedModel, metric_metadata
from probekit.engine.resultcache import cache_dir, read_cached, results_key, write_cached
from probekit.engine.spread import with_seed_spread
from probekit.errors import ExitCode, PluginError, Problem, SpecError, UserError, write_failure
from probekit.results.events import Event, events_of, records
from probekit.say import say
from probekit.expect.evaluate import Outcome, evaluate
from probekit.expect.render import render_outcomes
from probekit.hooks.manager import PluginManager, build_manager
from probekit.models.configs import clamped, local_config, position_problem
from probekit.models.cachedir import cache_root
from probekit.models.loading import pick_device, pick_dtype
from probekit.models.manifest import CacheWarning, touch_last_used
from probekit.report.terminal import output_width
from probekit.results.history import run_folder, write_verdict
from probekit.results.io import RESULTS_FILE, metadata
from probekit.results.schema import build_table
from probekit.expect.kinds import LEARNED_MARGIN
from probekit.spec.load import declared_plugins, parse_spec, read_spec
from probekit.spec.model import TRACKERS, Spec


@dataclass
class RunResult:
    """A finished (or reused) run of one spec: what the run-finished hook and the callers get."""

    spec: Spec
    table: pa.Table
    path: Path
    cached: bool = False
    errors: list[Event] = field(default_factory=list)  # kind "error": metrics that could not measure (exit 2)
    failures: list[Event] = field(default_factory=list)  # kind "failure": plugin bugs, unsaved files (exit 3)
    tracebacks: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    log: tuple[str, ...] = ()  # the experiment trackers this run logs to: [run] log, then --log

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
                 verbose: bool = False, autoload: bool | None = None, overwrite: bool = False,
                 executor: str | None = None, ray_address: str | None = None, log: Iterable[str] = ()) -> None:
        self.plugins = tuple(plugins)
        self.log = tuple(log)  # --log: outside the overrides too, so logging a run does not recompute it
        # who runs the fine-tunes and probes (--executor, --ray-address; else the spec's [run]): outside the
        # overrides, so the results cache reuses a run whatever executor made it
        self.executor = executor
        self.ray_address = ray_address
        self.overwrite = overwrite  # write into a non-empty -o folder that is not an earlier run of the spec
        self.overrides = dict(overrides or {})
        self.reports = Path(reports)
        self.console = console or Console(stderr=True, width=output_width(sys.stderr))  # the report and the verdict
        # progress and warnings, apart from what a user may pipe; not wrapped at 80 columns in a log
        self.stderr = Console(stderr=True, width=output_width(sys.stderr))
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
        declared = declared_plugins(document)
        try:
            manager = self.manager(declared, path.parent)
        except PluginError as error:
            if error.plugin not in declared:  # a -p name: the command line's problem, not the spec's
                raise
            raise SpecError(path, [Problem("plugins", f"a plugin that cannot be used: {error}",
                                           "plugins that import and register valid hooks, metrics and data sources "
                                           "(docs/plugins.md)")]) from None
        metrics = {name: info.metric for name, info in manager.metrics.items()}
        parsed = parse_spec(document, path=path, text=text, metrics=metrics, sources=manager.sources,
                            kinds=manager.expectations, overrides=self.overrides,
                            explain_missing=manager.explain_missing_metric)
        problems = spec_fact_problems(parsed, manager.sources)
        if problems:
            raise SpecError(path, problems)
        for problem in position_problems(parsed):
            self._warn(f"{parsed.path}: {clamped(problem)}")
        return parsed, manager

    # -- running -----------------------------------------------------------------------

    def run(self, spec: str | Path | Spec, output: str | Path | None = None) -> RunResult:
        """Run one spec to its verdict: results written, report and figures drawn, expectations judged."""
        spec, manager = self.load(spec)
        for note in spec.notes:
            self._warn(f"{spec.path}: {note}")
        if output is None:  # a new folder of its own, named after the run id
            return self._run(spec, manager, None)
        with claimed(Path(output), cache_root(spec.run.cache_dir), "-o"):
            return self._run(spec, manager, output)

    def _run(self, spec: Spec, manager: PluginManager, output: str | Path | None) -> RunResult:
        replace = self.check_output(spec, output)  # before any fine-tune or probe
        log = self._starting(spec, manager)
        if replace:
            earlier = run_of(Path(output)) or {}
            what = (f"holds the earlier run {earlier.get('run_id', '?')} of {spec.name}: its"
                    if earlier.get("spec_name") == spec.name else "with --overwrite: the")
            self.stderr.print(f"probekit: -o {output} {what} results.parquet, verdict.json, report.html and *.png are replaced "
                              "by this run's; other files are kept", markup=False, highlight=False, soft_wrap=True)
        examples = ExampleStore(spec, manager.sources)
        key = results_key(spec, manager, examples) if self.use_cache else None
        result = self._reuse(spec, key, output, replace) if key else None
        if result is None:
            result = self._compute(spec, manager, output, replace)
            if key and not (result.errors or result.failures):
                self._cache(cache_dir(spec, key), result)
        result.log = log
        self._finish(result, manager)
        return result

    def _cache(self, folder: Path, result: RunResult) -> None:
        """Keep ``result`` in the results cache; a cache that cannot be written costs only the reuse."""
        try:
            write_cached(folder, result.table, result.run_dir)
        except OSError as error:
            self._warn(f"{write_failure(error, 'the results cache:', folder) or error}; the next run of "
                       f"{result.spec.name} computes again. This run's results are in {result.path}")

    def resume(self, run_dir: str | Path, spec: str | Path | Spec | None = None) -> RunResult:
        """Continue an interrupted run into its own folder: the comparisons it finished are kept (their rows
        read back from its results file), the others probed; its fine-tunes come from the checkpoint cache.

        ``spec`` defaults to the file the run recorded. A folder without a run, or a run of another
        spec or of another text of it, is refused (UserError, exit 2) before anything runs.
        """
        folder = Path(run_dir)
        table = resumable_run(folder)
        earlier = metadata(table)
        spec, manager = self.load(spec if spec is not None else _recorded_spec(folder, earlier))
        with claimed(folder, cache_root(spec.run.cache_dir), "--resume"):
            return self._resume(folder, spec, manager)

    def _resume(self, folder: Path, spec: Spec, manager: PluginManager) -> RunResult:
        table = resumable_run(folder)  # again, now that the folder is this run's: as it is, not as it was
        check_same_spec(folder, metadata(table), spec.name, spec.text)
        check_writable(folder, "--resume")
        log = self._starting(spec, manager)
        remove_temporaries(folder)
        start = _Start.resumed(spec, table)
        finished = len(spec.comparisons) - len(start.todo.comparisons)
        self.stderr.print(f"probekit: resuming run {start.run_id} of {spec.name} in {folder}: {finished} of "
                          f"{len(spec.comparisons)} comparisons finished, probing the others", markup=False,
                          highlight=False, soft_wrap=True)
        result = self._compute(spec, manager, folder, start=start)
        result.log = log
        self._finish(result, manager)
        return result

    def _starting(self, spec: Spec, manager: PluginManager) -> tuple[str, ...]:
        """The trackers the run logs to, once the run-starting hook has let it start (a plugin refuses with a
        UserError, exit 2: a tracker that is not installed); before anything is computed or reused."""
        log = tuple(dict.fromkeys((*spec.run.log, *self.log)))
        for name in log:
            if name not in TRACKERS:
                raise UserError(f"--log {name}: not a tracker probekit logs to; choose from {', '.join(TRACKERS)}")
            if manager.pm.is_blocked(name):
                raise UserError(f"--log {name}: the {name} plugin is blocked (-p no:{name}), so nothing would log "
                                f"to {name}; drop one of the two")
        manager.run_starting(spec, log)
        return log

    def check_output(self, spec: Spec, output: str | Path | None) -> bool:
        """Refuse (UserError, exit 2) an output the run could not write or would clobber, before anything runs.

        ``output`` may be new, empty, or an earlier run folder of the same spec; anything
        else needs ``overwrite``. Returns whether the folder holds files of an earlier run
        that the run clears before it writes (engine/outputs.py).
        """
        if output is None:
            check_writable(self.reports, "--reports")
            return False
        return check_output(Path(output), spec.name, self.overwrite)

    def _output(self, spec: Spec, folder: Path, run_id: str, replace: bool) -> RunOutput:
        fallbacks = fallback_folders(cache_root(spec.run.cache_dir), spec.name, run_id)
        return RunOutput(folder, fallbacks, replace=replace, on_fallback=self._warn)

    def _reuse(self, spec: Spec, key: str, output: str | Path | None, replace: bool = False) -> RunResult | None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CacheWarning)
            cached = read_cached(cache_dir(spec, key))
        for warning in caught:
            self._warn(str(warning.message))
        if cached is None:
            return None
        table, run_dir = cached
        touch_last_used(cache_dir(spec, key))
        errors: list[Event] = []
        if output:
            out = self._output(spec, Path(output), _run_id(table), replace)
            path = out.write(table)
            errors = [Event("error", f"{out.failure}; the results are saved in {path} instead")] if out.failure else []
        else:
            path = run_dir / RESULTS_FILE
        self.stderr.print(f"probekit: {spec.name}: nothing changed since run {_run_id(table)}; reusing its results "
                           f"({path.parent}); --fresh recomputes", markup=False, highlight=False, soft_wrap=True)
        return RunResult(spec, table, path, cached=True, errors=errors)

    def _compute(self, spec: Spec, manager: PluginManager, output: str | Path | None, replace: bool = False,
                 start: _Start | None = None) -> RunResult:
        start = start or _Start.new(spec)
        run_id = start.run_id
        folder = Path(output) if output else run_folder(self.reports, spec.name, run_id)
        out = self._output(spec, folder, run_id, replace)
        measured = start.measured
        info = _RunInfo(spec, manager, run_id, start.started)

        def write(complete: bool, **extra: Any) -> pa.Table:
            meta = info.metadata(measured, complete, **start.metadata, **extra)
            for note in events_of(meta, "note"):
                self._warn(str(note))
            table = build_table(with_seed_spread(measured.records, spec), meta, info.detail_types())
            out.write(table)  # falls back to <cache>/unsaved/ when the run folder cannot be written
            return table

        try:
            prober = Prober(start.todo, manager, self.stderr, run_id)  # a resumed run: only what it had not finished
            self._probe(prober, measured, on_comparison=lambda _: write(False))
        except KeyboardInterrupt:
            write(False, interrupted=True)
            self.stderr.print(f"probekit: interrupted; the comparisons finished so far are in {out.path}", markup=False)
            raise
        except Exception:
            if measured.records:
                write(False)
                self.stderr.print(f"probekit: the comparisons finished before this error are in {out.path}",
                                  markup=False, highlight=False, soft_wrap=True)
            raise
        table = write(True)
        unsaved = [Event("error", f"{out.failure}; the results are saved in {out.path} instead")] if out.failure else []
        return RunResult(spec, table, out.path, errors=[*measured.errors, *unsaved], failures=measured.failures,
                         tracebacks=measured.tracebacks)

    def _probe(self, prober: Prober, measured: Measured, on_comparison: Callable[[Measured], None]) -> None:
        """The fine-tunes and the probe, with the checkpoint cache's warnings (a corrupt entry moved aside)
        printed as probekit warnings while the progress runs."""
        with warnings.catch_warnings():
            warnings.simplefilter("always", CacheWarning)
            show = warnings.showwarning

            def shown(message, category, filename, lineno, file=None, line=None):
                if issubclass(category, CacheWarning):
                    self._warn(str(message))
                else:
                    show(message, category, filename, lineno, file, line)

            warnings.showwarning = shown
            self._executor(prober.spec).run(prober, measured, on_comparison)

    def _executor(self, spec: Spec) -> Executor:
        """This process (the default) or a Ray cluster, which rebuilds the spec with this session's plugins."""
        return executor_for(self.executor or spec.run.executor, address=self.ray_address or spec.run.ray_address,
                            plugins=self.plugins, overrides=self.overrides, autoload=self.autoload)

    def _finish(self, result: RunResult, manager: PluginManager) -> None:
        """The expectations judged, the run-finished hook (report, figures, HTML, trackers, third-party outputs)
        with them, then the verdict shown and written."""
        result.outcomes = evaluate(result.spec.expectations, result.table)
        try:
            manager.run_finished(result, self.console)
        except Exception as error:  # noqa: BLE001 - the results are written; an output plugin's bug is reported
            known = write_failure(error, "a file of the report") if isinstance(error, OSError) else None
            if known is not None:  # a full disk, a folder made read-only: the environment, not a plugin bug
                result.errors.append(Event("error", f"{known}; the results are kept in {result.path}"))
            else:
                result.failures.append(Event("failure", f"run-finished hook: plugin bug: {type(error).__name__}: "
                                                        f"{error}"))
                result.tracebacks.append(traceback.format_exc())
        say(self.console, f"results: {result.path}")
        for event in (*result.errors, *result.failures):
            say(self.console, str(event), label="error")
        if self.verbose:
            for trace in filter(None, result.tracebacks):
                self.console.print(trace, markup=False, highlight=False)
        render_outcomes(result.outcomes, self.console)
        try:  # beside the results file, which was written before the hook: `probekit ls` counts what passed
            verdicts = [{"name": o.name, "passed": o.passed, "reason": o.reason} for o in result.outcomes]
            write_verdict(result.run_dir, _run_id(result.table), verdicts)
        except OSError as error:
            known = write_failure(error, "the verdict")
            result.errors.append(Event("error", f"{known or error}; the results are kept in {result.path}"))
            say(self.console, str(result.errors[-1]), label="error")

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            say(self.stderr, message, label="warning")


@dataclass
class _Start:
    """Where a run starts: from nothing, or from what an interrupted run of the spec had finished."""

    run_id: str
    started: float
    measured: Measured  # the rows (and models, notes) of the finished comparisons
    todo: Spec  # the spec with only the comparisons left to probe
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def new(cls, spec: Spec) -> _Start:
        return cls(new_run_id(), time.time(), Measured(), spec)

    @classmethod
    def resumed(cls, spec: Spec, table: pa.Table) -> _Start:
        """The interrupted run of ``table``: a comparison is finished when every metric it names has rows;
        the others (interrupted, or with a metric that failed) are probed again whole."""
        earlier = metadata(table)
        rows = set(zip(table.column("comparison").to_pylist(), table.column("metric").to_pylist(), strict=True))
        done = {c.name for c in spec.comparisons if all((c.name, m) in rows for m in c.metrics)}
        measured = Measured(records=[r for r in table.to_pylist() if r["comparison"] in done])
        # The finished comparisons' models and notes: the metadata lists them although they are not probed again.
        measured.models = {name: ResolvedModel(m["source"], m["identity"], str(m["identity"]).startswith("finetune:"),
                                               accuracy=m.get("accuracy"), majority=m.get("majority"),
                                               chance=m.get("chance"))
                           for name, m in earlier.get("models", {}).items()}
        measured.notes = [note for note in events_of(earlier, "note") if note.comparison in done]
        todo = dataclasses.replace(spec, comparisons=tuple(c for c in spec.comparisons if c.name not in done))
        now = _iso(time.time())
        started = datetime.datetime.fromisoformat(earlier.get("started_at") or now).timestamp()
        return cls(str(earlier.get("run_id") or new_run_id()), started, measured, todo, {"resumed_at": now})


def _recorded_spec(folder: Path, earlier: dict) -> Path:
    """The spec file a run recorded, to resume it without naming the spec again."""
    path = Path(str(earlier.get("spec_path", "")))
    if not earlier.get("spec_path") or not path.is_file():
        raise UserError(f"--resume {folder}: the run's spec {earlier.get('spec_path', '(not recorded)')} is not a file "
                        f"here; name it: probekit run SPEC --resume {folder}")
    return path


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
        models = {name: {"source": r.source, "identity": r.identity, "accuracy": r.accuracy,
                         "majority": r.majority, "chance": r.chance}
                  for name, r in measured.models.items()}
        return {
            "run_id": self.run_id, "spec_name": spec.name, "spec_path": str(spec.path), "spec_text": spec.text,
            "models": models, "metrics": metric_metadata(spec, self.manager),
            "comparisons": [c.name for c in spec.comparisons], "complete": complete,
            "events": records([*measured.errors, *measured.failures, *measured.notes,
                               *(Event("note", w) for w in [*weak_models(measured.models), *checkpoint_warnings(measured.models)])]),
            "probekit_version": probekit.__version__, "torch_version": torch.__version__,
            "transformers_version": _version("transformers"), "python_version": platform.python_version(),
            "device": _device_name(device), "dtype": str(pick_dtype(spec.run.dtype, device)).removeprefix("torch."),
            "started_at": _iso(self.started), "finished_at": _iso(time.time()), **extra,
        }


def position_problems(spec: Spec) -> list[Problem]:
    """``max_length`` values longer than a declared local model can read (its config.json's position limit), known
    before anything runs; the run clamps them (probe.py, finetune.py), where they would crash the forward pass.
    A hub model is checked once it loads."""
    problems = []
    for name, model in spec.models.items():
        root = model
        while root.base is not None and root.base in spec.models:
            root = spec.models[root.base]
        source = root.id or (root.series[0].folder if root.series else None)
        config = local_config(source) if source else None
        if config is None:
            continue
        lengths = [("run.max_length", spec.run.max_length)]
        if model.finetune is not None:
            lengths.append((f"models.{name}.max_length", model.finetune.max_length))
        for key, length in lengths:
            problem = position_problem(length, config, key, f"models.{name}")
            if problem is not None:
                problems.append(problem)
    return problems


def checkpoint_warnings(models: Mapping[str, ResolvedModel]) -> list[str]:
    """What the whole models' checkpoints say of themselves (a LoRA that changed nothing), once per model."""
    return [f"models.{name}: {warning}" for name, m in models.items() if "@" not in name for warning in m.warnings]


def weak_models(models: Mapping[str, ResolvedModel], margin: float = LEARNED_MARGIN) -> list[str]:
    """A warning per fine-tuned model whose validation accuracy does not beat the majority-class rate of
    its validation data by ``margin``: its layer-wise changes then mostly show how little it moved."""
    found = []
    for name, model in models.items():
        if "@" in name or model.accuracy is None or model.majority is None:
            continue  # a training snapshot may not have learned yet; no validation data: nothing to compare
        if model.accuracy <= model.majority + margin:
            chance = f"; chance {model.chance:.1%}" if model.chance is not None else ""
            found.append(f"models.{name}: validation accuracy {model.accuracy:.1%} does not beat the majority-class "
                         f"rate of its validation data ({model.majority:.1%}{chance}) by {margin * 100:g} points: it "
                         "may not have learned the task, and its layer-wise changes then mostly show how little it "
                         f"moved (an [[expect]] learned = [\"{name}\"] makes this a failure)")
    return found


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

