"""Running a spec: fine-tune what it declares, probe every comparison, write the results.

One forward pass per model per batch feeds every metric of a comparison.
"""
from __future__ import annotations

import datetime
import platform
import secrets
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import probekit
from probekit import models as model_loading
from probekit.capture import forward
from probekit.data import DataError, load_examples, make_batches
from probekit.finetune import Checkpoint, FinetuneJob, cache_root, finetune
from probekit.metric import MetricContext
from probekit.pluginmanager import PluginManager
from probekit.results import RESULTS_FILE, RowContext, build_table, to_records, write_table
from probekit.spec import ModelRef, Spec


class RunError(RuntimeError):
    """A spec that validated but could not run (a model or data source that fails to load)."""


@dataclass(frozen=True)
class ResolvedModel:
    """Where a comparison side's weights come from."""

    source: str
    identity: str
    finetuned: bool
    revision: str | None = None
    accuracy: float | None = None


@dataclass
class RunResult:
    spec: Spec
    run_id: str
    table: pa.Table
    path: Path
    models: dict[str, dict]
    errors: list[str] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return self.path.parent


def new_run_id() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(bar_width=16), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console, transient=False,
    )


class Runner:
    def __init__(self, spec: Spec, manager: PluginManager, console: Console | None = None) -> None:
        self.spec = spec
        self.manager = manager
        self.console = console or Console(stderr=True)
        self.device = model_loading.pick_device(spec.run.device)
        self.dtype = model_loading.DTYPE_BY_NAME[spec.run.dtype]
        self.cache = cache_root(spec.run.cache_dir)
        self._examples: dict[str, list] = {}
        self._checkpoints: dict[str, Checkpoint] = {}

    # -- data and models -------------------------------------------------------------

    def examples(self, name: str) -> list:
        if name not in self._examples:
            self._examples[name] = load_examples(self.spec, name)
            if not self._examples[name]:
                raise DataError(f"{self.spec.path}: data.{name}: has no examples")
        return self._examples[name]

    def checkpoint(self, name: str, progress: Progress) -> Checkpoint:
        """The fine-tune of ``models.<name>``, trained now or taken from the cache."""
        if name in self._checkpoints:
            return self._checkpoints[name]
        model = self.spec.models[name]
        base = self.resolve(ModelRef(model.base), progress)
        train = self.examples(model.train)
        if model.finetune.limit is not None:
            train = train[: model.finetune.limit]
        validation_name = model.validation or self._validation_counterpart(model.train)
        validation = self.examples(validation_name) if validation_name else []
        job = FinetuneJob(f"{self.spec.path}: models.{name}", base.source, base.identity, train, validation, model.finetune)
        task = progress.add_task(f"fine-tune {name}", total=None, status="")

        def on_step(step: int, total: int, loss: float) -> None:
            progress.update(task, completed=step, total=total, status=f"loss {loss:.3f}")

        checkpoint = finetune(job, self.cache, self.device, on_step=on_step)
        status = "cached" if progress.tasks[task].total is None else "trained"
        accuracy = "n/a" if checkpoint.accuracy is None else f"{checkpoint.accuracy:.1%}"
        progress.update(task, total=1, completed=1, status=f"{status}, accuracy {accuracy}")
        self._checkpoints[name] = checkpoint
        return checkpoint

    def _validation_counterpart(self, train_name: str) -> str | None:
        """Built-in tasks and GLUE have a validation split: use it when none is named."""
        train = self.spec.data[train_name]
        if train.kind not in ("task", "glue") or train.split == "validation":
            return None
        name = f"{train_name}:validation"
        if name not in self._examples:
            counterpart = replace(train, name=name, split="validation", limit=1000, seed=None)
            spec = replace(self.spec, data={**self.spec.data, name: counterpart})
            self._examples[name] = load_examples(spec, name)
        return name

    def resolve(self, ref: ModelRef, progress: Progress) -> ResolvedModel:
        model = self.spec.models[ref.model]
        if not model.is_finetuned:
            return ResolvedModel(model_loading.resolve(model.id), model_loading.model_identity(model.id, model.revision),
                                 finetuned=False, revision=model.revision)
        checkpoint = self.checkpoint(ref.model, progress)
        if ref.snapshot is None:
            return ResolvedModel(str(checkpoint.folder), checkpoint.identity, True, accuracy=checkpoint.accuracy)
        return ResolvedModel(str(checkpoint.snapshots[ref.snapshot]), f"{checkpoint.identity}@{ref.snapshot:g}", True,
                             accuracy=checkpoint.snapshot_accuracy[ref.snapshot])

    def load(self, ref: ModelRef, resolved: ResolvedModel, eager: bool) -> model_loading.LoadedModel:
        description = f"{self.spec.path}: models.{ref.model}"
        encoder = model_loading.load_encoder(
            resolved.source, description, revision=resolved.revision, eager=eager,
            device=self.device, dtype=self.dtype, finetuned=resolved.finetuned,
        )
        tokenizer = model_loading.load_tokenizer(resolved.source, description, resolved.revision)
        return model_loading.LoadedModel(str(ref), encoder, tokenizer, resolved.identity, resolved.accuracy)

    def _instantiate(self, metric_cls, metric_spec, context: MetricContext):
        try:
            return metric_cls(metric_spec.options, context)
        except ValueError as error:  # a metric that cannot measure these models says why
            raise RunError(f"{self.spec.path}: metrics.{metric_spec.name} on {context.comparison!r}: {error}") from error

    # -- the run -------------------------------------------------------------------------

    def run(self, output: Path | None = None, reports_root: Path = Path("reports")) -> RunResult:
        """Fine-tune what the spec declares, probe every comparison, write the results.

        The results file is rewritten (atomically) after each comparison, so an
        interrupted run keeps every comparison it finished; ``complete`` in the
        file's metadata tells the two apart.
        """
        spec = self.spec
        run_id = new_run_id()
        started = time.time()
        path = output / RESULTS_FILE if output else reports_root / spec.name / run_id / RESULTS_FILE
        records: list[dict] = []
        errors: list[str] = []
        resolved: dict[str, ResolvedModel] = {}
        with progress_bar(self.console) as progress:
            for comparison in spec.comparisons:
                for ref in (comparison.a, comparison.b):
                    resolved[str(ref)] = self.resolve(ref, progress)
            for comparison in spec.comparisons:
                records.extend(self.probe(comparison, resolved, run_id, errors, progress))
                write_table(self._table(records, errors, resolved, run_id, started, complete=False), path)
        table = self._table(records, errors, resolved, run_id, started, complete=True)
        write_table(table, path)
        return RunResult(spec, run_id, table, path, self._models_metadata(resolved), errors)

    def probe(self, comparison, resolved, run_id: str, errors: list[str], progress: Progress) -> list[dict]:
        """One comparison: a forward pass per model per batch feeds every metric; their rows as records."""
        spec = self.spec
        metric_specs = [spec.metrics[name] for name in comparison.metrics]
        needs = frozenset().union(*(m.metric_class.needs for m in metric_specs))
        model_a = self.load(comparison.a, resolved[str(comparison.a)], "attentions" in needs)
        model_b = self.load(comparison.b, resolved[str(comparison.b)], "attentions" in needs)
        check_same_tokenizer(spec, comparison.name, model_a, model_b)
        context = MetricContext(comparison.name, model_a, model_b, model_a.num_layers, self.device)
        metrics = {m.name: self._instantiate(m.metric_class, m, context) for m in metric_specs}
        examples = self.examples(comparison.data)
        task = progress.add_task(f"probe {comparison.name}", total=len(examples), status="")
        for batch in make_batches(examples, model_a.tokenizer, batch_size=spec.run.batch_size,
                                  max_length=spec.run.max_length):
            batch = batch.to(self.device)
            capture_a = forward(model_a.encoder, batch, needs, model_a.name)
            capture_b = forward(model_b.encoder, batch, needs, model_b.name)
            for label, metric in list(metrics.items()):
                try:
                    metric.update(capture_a, capture_b, batch)
                except ValueError as error:  # this metric stops; the others go on
                    errors.append(f"{comparison.name} / {label}: {error}")
                    del metrics[label]
            progress.advance(task, batch.size)
        records = []
        for label, metric in metrics.items():
            row_context = RowContext(run_id, spec.name, comparison.name, str(comparison.a), str(comparison.b),
                                     comparison.a.snapshot, comparison.b.snapshot, comparison.data, label)
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    rows = metric.finalize()
            except (ValueError, RuntimeError) as error:
                errors.append(f"{comparison.name} / {label}: {error}")
                continue
            for warning in {str(w.message) for w in caught}:
                self.console.print(f"[yellow]warning[/] {comparison.name} / {label}: {warning}")
            records.extend(to_records(row_context, rows))
        return records

    def _models_metadata(self, resolved: dict[str, ResolvedModel]) -> dict[str, dict]:
        return {name: {"source": r.source, "identity": r.identity, "accuracy": r.accuracy} for name, r in resolved.items()}

    def _table(self, records, errors, resolved, run_id: str, started: float, *, complete: bool) -> pa.Table:
        spec = self.spec
        known = self.manager.metrics()
        metrics_meta = {
            label: {"metric": m.metric, "unit": m.metric_class.unit_of(m.options), "plugin": known[m.metric].plugin,
                    "distribution": known[m.metric].distribution, "version": known[m.metric].version}
            for label, m in spec.metrics.items()
        }
        return build_table(records, {
            "run_id": run_id, "spec_name": spec.name, "spec_path": str(spec.path), "spec_text": spec.text,
            "models": self._models_metadata(resolved), "metrics": metrics_meta, "errors": errors,
            "complete": complete,
            "probekit_version": probekit.__version__, "torch_version": torch.__version__,
            "transformers_version": _version("transformers"), "python_version": platform.python_version(),
            "device": _device_name(self.device), "dtype": spec.run.dtype,
            "started_at": _iso(started), "finished_at": _iso(time.time()),
        })


def check_same_tokenizer(spec: Spec, comparison: str, model_a, model_b) -> None:
    """Token-aligned metrics compare position i of one model with position i of the other."""
    fingerprint_a = model_loading.tokenizer_fingerprint(model_a.tokenizer)
    fingerprint_b = model_loading.tokenizer_fingerprint(model_b.tokenizer)
    if fingerprint_a != fingerprint_b or model_a.num_layers != model_b.num_layers:
        what = "tokenizers (vocabularies)" if fingerprint_a != fingerprint_b else "numbers of layers"
        raise RunError(
            f"{spec.path}: comparison {comparison!r}: {model_a.name} and {model_b.name} have different {what}; "
            "the metrics compare the same tokens and layers of both models"
        )


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")
