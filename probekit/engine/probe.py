"""Fine-tuning what a spec declares and probing its comparisons: the rows and the errors of a run.

One forward pass per model per batch feeds every metric of a comparison. A metric
that raises :class:`MetricError` cannot measure that comparison and is dropped
with its message; any other exception is a bug in its plugin, recorded as a
failure (with its traceback); either way the other metrics go on.
"""
from __future__ import annotations

import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from probekit.data.batching import make_batches
from probekit.engine.capture import forward
from probekit.engine.examples import ExampleStore
from probekit.errors import ModelError
from probekit.hooks.manager import PluginManager
from probekit.metrics.base import Metric, MetricContext, MetricError, Row
from probekit.models import loading
from probekit.models.finetune import Checkpoint, FinetuneJob, cache_root, finetune
from probekit.results.schema import RowContext, detail_problems, to_records
from probekit.spec.model import ComparisonSpec, MetricSpec, ModelRef, Spec


@dataclass(frozen=True)
class ResolvedModel:
    """Where a comparison side's weights come from."""

    source: str
    identity: str
    finetuned: bool
    revision: str | None = None
    accuracy: float | None = None


@dataclass
class Measured:
    """What probing produced so far: result records, metrics that could not measure, plugin failures."""

    records: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "comparison / metric: why" (MetricError)
    failures: list[str] = field(default_factory=list)  # "comparison / metric: plugin bug: ..."
    tracebacks: list[str] = field(default_factory=list)
    models: dict[str, ResolvedModel] = field(default_factory=dict)


def progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(bar_width=16), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console, transient=False,
    )


class Prober:
    """Runs one validated spec: its fine-tunes (through the checkpoint cache), then every comparison."""

    def __init__(self, spec: Spec, manager: PluginManager, console: Console, run_id: str) -> None:
        self.spec = spec
        self.run_id = run_id
        self.manager = manager
        self.console = console
        self.device = loading.pick_device(spec.run.device)
        self.dtype = loading.DTYPE_BY_NAME[spec.run.dtype]
        self.cache = cache_root(spec.run.cache_dir)
        self.examples = ExampleStore(spec, manager.sources)
        self._checkpoints: dict[str, Checkpoint] = {}

    def run(self, measured: Measured, on_comparison: Callable[[Measured], None]) -> Measured:
        """Resolve every model (fine-tuning as needed), then probe each comparison, reporting after each."""
        with progress_bar(self.console) as progress:
            for comparison in self.spec.comparisons:
                for ref in (comparison.a, comparison.b):
                    measured.models[str(ref)] = self.resolve(ref, progress)
            for comparison in self.spec.comparisons:
                self.probe(comparison, measured, progress)
                on_comparison(measured)
        return measured

    # -- models ------------------------------------------------------------------------

    def checkpoint(self, name: str, progress: Progress) -> Checkpoint:
        """The fine-tune of ``models.<name>``, trained now or taken from the cache."""
        if name in self._checkpoints:
            return self._checkpoints[name]
        model = self.spec.models[name]
        base = self.resolve(ModelRef(model.base), progress)
        train = self.examples[model.train]
        if model.finetune.limit is not None:
            train = train[: model.finetune.limit]
        validation_name = model.validation or self.examples.validation_counterpart(model.train)
        validation = self.examples[validation_name] if validation_name else []
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

    def resolve(self, ref: ModelRef, progress: Progress) -> ResolvedModel:
        model = self.spec.models[ref.model]
        if not model.is_finetuned:
            return ResolvedModel(loading.resolve(model.id), loading.model_identity(model.id, model.revision),
                                 finetuned=False, revision=model.revision)
        checkpoint = self.checkpoint(ref.model, progress)
        if ref.snapshot is None:
            return ResolvedModel(str(checkpoint.folder), checkpoint.identity, True, accuracy=checkpoint.accuracy)
        return ResolvedModel(str(checkpoint.snapshots[ref.snapshot]), f"{checkpoint.identity}@{ref.snapshot:g}", True,
                             accuracy=checkpoint.snapshot_accuracy[ref.snapshot])

    def load(self, ref: ModelRef, resolved: ResolvedModel, eager: bool) -> loading.LoadedModel:
        description = f"{self.spec.path}: models.{ref.model}"
        encoder = loading.load_encoder(
            resolved.source, description, revision=resolved.revision, eager=eager,
            device=self.device, dtype=self.dtype, finetuned=resolved.finetuned,
        )
        tokenizer = loading.load_tokenizer(resolved.source, description, resolved.revision)
        return loading.LoadedModel(str(ref), encoder, tokenizer, resolved.identity, resolved.accuracy)

    # -- probing -----------------------------------------------------------------------

    def probe(self, comparison: ComparisonSpec, measured: Measured, progress: Progress) -> None:
        """One comparison: a forward pass per model per batch feeds every metric."""
        metric_specs = [self.spec.metrics[name] for name in comparison.metrics]
        needs = frozenset().union(*(m.metric_class.needs for m in metric_specs))
        model_a = self.load(comparison.a, measured.models[str(comparison.a)], "attentions" in needs)
        model_b = self.load(comparison.b, measured.models[str(comparison.b)], "attentions" in needs)
        check_comparable(self.spec, comparison.name, model_a, model_b)
        context = MetricContext(comparison.name, model_a, model_b, model_a.num_layers, self.device)
        guard = _Guard(comparison.name, measured)
        metrics = {m.name: metric for m in metric_specs
                   if (metric := guard.call(m.name, lambda m=m: m.metric_class(m.options, context))) is not None}
        examples = self.examples[comparison.data]
        task = progress.add_task(f"probe {comparison.name}", total=len(examples), status="")
        for batch in make_batches(examples, model_a.tokenizer, batch_size=self.spec.run.batch_size,
                                  max_length=self.spec.run.max_length):
            batch = batch.to(self.device)
            capture_a = forward(model_a.encoder, batch, needs, model_a.name)
            capture_b = forward(model_b.encoder, batch, needs, model_b.name)
            for label, metric in list(metrics.items()):
                if not guard.call(label, lambda metric=metric: metric.update(capture_a, capture_b, batch) or True):
                    del metrics[label]
            progress.advance(task, batch.size)
        for label, metric in metrics.items():
            rows = self._finalize(label, metric, guard)
            if rows is not None:
                context_row = RowContext(self.run_id, self.spec.name,
                                         comparison.name, str(comparison.a), str(comparison.b), comparison.a.snapshot,
                                         comparison.b.snapshot, comparison.data, label)
                measured.records.extend(to_records(context_row, rows))

    def _finalize(self, label: str, metric: Metric, guard: _Guard) -> list[Row] | None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rows = guard.call(label, metric.finalize)
        for warning in {str(w.message) for w in caught}:
            self.console.print(f"[yellow]warning[/] {guard.comparison} / {label}: {warning}")
        if rows is None:
            return None
        problems = detail_problems(rows, type(metric).details)
        if problems:
            guard.failed(label, f"rows break the metric's contract: {problems[0]}", "")
            return None
        return rows


class _Guard:
    """Calls into a metric, sorting what it raises into 'cannot measure' and 'plugin bug'."""

    def __init__(self, comparison: str, measured: Measured) -> None:
        self.comparison = comparison
        self.measured = measured

    def call(self, label: str, function: Callable):
        try:
            return function()
        except MetricError as error:
            self.measured.errors.append(f"{self.comparison} / {label}: {error}")
        except Exception as error:  # noqa: BLE001 - a plugin bug must not lose the other metrics' rows
            self.failed(label, f"{type(error).__name__}: {error}", traceback.format_exc())
        return None

    def failed(self, label: str, why: str, trace: str) -> None:
        self.measured.failures.append(f"{self.comparison} / {label}: plugin bug: {why}")
        self.measured.tracebacks.append(trace)


def check_comparable(spec: Spec, comparison: str, model_a: loading.LoadedModel, model_b: loading.LoadedModel) -> None:
    """Token-aligned metrics compare position i of one model with position i of the other."""
    fingerprint_a = loading.tokenizer_fingerprint(model_a.tokenizer)
    fingerprint_b = loading.tokenizer_fingerprint(model_b.tokenizer)
    if fingerprint_a != fingerprint_b or model_a.num_layers != model_b.num_layers:
        what = "tokenizers (vocabularies)" if fingerprint_a != fingerprint_b else "numbers of layers"
        raise ModelError(
            f"{spec.path}: comparison {comparison!r}: {model_a.name} and {model_b.name} have different {what}; "
            "the metrics compare the same tokens and layers of both models"
        )


def metric_metadata(spec: Spec, manager: PluginManager) -> dict[str, dict]:
    """Per metric label: what the results file records of it (unit, direction, layers, plugin, ...)."""
    return {label: _metric_entry(m, manager) for label, m in spec.metrics.items()}


def _metric_entry(metric: MetricSpec, manager: PluginManager) -> dict:
    info = manager.metrics[metric.metric]
    cls = metric.metric_class
    return {"metric": metric.metric, "unit": cls.unit_of(metric.options), "direction": cls.direction,
            "layers": cls.layers, "per_head": cls.per_head, "plugin": info.plugin,
            "distribution": info.distribution, "version": info.version}
