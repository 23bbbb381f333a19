"""Fine-tuning what a spec declares and probing its comparisons: the rows and the errors of a run.

Probing follows the plan (engine/plan.py): each distinct model runs once per batch
of each dataset, and its capture feeds every comparison and metric that uses it;
models stay loaded while a later group needs them. A metric
that raises :class:`MetricError` cannot measure that comparison and is dropped
with its message; any other exception is a bug in its plugin, recorded as a
failure (with its traceback); either way the other metrics go on.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from rich.console import Console
from rich.progress import Progress

from probekit.data.batching import length_sorted_batches, make_batches
from probekit.data.example import label_names, tag_names
from probekit.engine.capture import forward
from probekit.engine.examples import ExampleStore
from probekit.engine.plan import ProbeGroup, last_use, plan
from probekit.engine.progress import make_progress
from probekit.engine.resampling import Resampled, Resampling, draw_together
from probekit.engine.sharing import SharedStates
from probekit.declare import format_size
from probekit.engine.state_memory import check_before_loading, refusal, stored_vectors
from probekit.errors import ModelError
from probekit.results.events import Event
from probekit.say import say
from probekit.hooks.manager import PluginManager
from probekit.metrics.base import (
    Metric,
    MetricContext,
    MetricError,
    Row,
    no_interval_reason,
    shape_problems,
    supports_bootstrap,
)
from probekit.metrics.per_example import ExampleVectorStore, is_per_example, vector_bytes
from probekit.metrics.tensors import ROW_BYTES, Batch
from probekit.models import loading
from probekit.models.attention import RECOMPUTED, attention_path
from probekit.models.configs import clamped, position_limit, position_problem
from probekit.models.families import family_of
from probekit.models.cachedir import cache_root
from probekit.models.finetune import AdapterJob, Checkpoint, FinetuneJob, finetune, training_precision
from probekit.results.schema import RowContext, detail_problems, to_records
from probekit.spec.model import ComparisonSpec, MetricSpec, ModelRef, Spec
from probekit.spec.series import declared_identity, point_identity


#: The most the attention statistics' chunk of query rows takes, however much the budget leaves: larger chunks
#: are no faster, and what a probe does not need stays with the rest of the machine.
CHUNK_BYTES = 2**30


@dataclass(frozen=True)
class ResolvedModel:
    """Where a comparison side's weights come from."""

    source: str
    identity: str
    finetuned: bool
    revision: str | None = None
    accuracy: float | None = None
    majority: float | None = None  # a fine-tune's validation data: the majority-class rate (what one guess scores)
    chance: float | None = None  # 1 / the number of classes
    warnings: tuple[str, ...] = ()  # what the checkpoint says of itself (a LoRA that changed nothing)


@dataclass
class Measured:
    """What probing produced so far: result records, metrics that could not measure, plugin failures."""

    records: list[dict] = field(default_factory=list)
    errors: list[Event] = field(default_factory=list)  # metrics that could not measure (MetricError)
    failures: list[Event] = field(default_factory=list)  # plugin bugs
    tracebacks: list[str] = field(default_factory=list)
    notes: list[Event] = field(default_factory=list)  # e.g. why a metric has no interval (its rows stand)
    models: dict[str, ResolvedModel] = field(default_factory=dict)


class Prober:
    """Runs one validated spec: its fine-tunes (through the checkpoint cache), then its probe plan."""

    def __init__(self, spec: Spec, manager: PluginManager, console: Console, run_id: str) -> None:
        self.spec = spec
        self.run_id = run_id
        self.manager = manager
        self.console = console
        self.device = loading.pick_device(spec.run.device)
        self.dtype = loading.pick_dtype(spec.run.dtype, self.device)
        self.threads = loading.pick_threads(spec.run.threads)
        self.budget = loading.memory_budget(spec.run.memory, self.device)
        self.cache = cache_root(spec.run.cache_dir)
        self.examples = ExampleStore(spec, manager.sources,
                                     warn=lambda m: say(console, m, label="warning"))
        self._checkpoints: dict[str, Checkpoint] = {}
        self._layers: dict[str, int] = {}  # comparison -> its models' number of layers (rows are checked against it)

    def run(self, measured: Measured, on_comparison: Callable[[Measured], None]) -> Measured:
        """Resolve every model (fine-tuning as needed), then probe group by group, reporting after each."""
        groups = plan(self.spec)
        check_before_loading(self.spec, groups, self.examples, self.budget)
        with self._threads(), make_progress(self.console) as progress:
            self.resolve_all(measured, progress)
            pool = _ModelPool(self, measured.models)
            ends = last_use(groups)
            for index, group in enumerate(groups):
                passes = self._passes(group, measured.models)
                for models, comparisons in passes:
                    self.probe_pass(group, models, comparisons, pool, measured, progress)
                    if len(passes) > 1:  # memory is short: keep nothing loaded between passes
                        pool.release(models)
                pool.release([model for model, end in ends.items() if end == index])
                on_comparison(measured)
        return measured

    def _passes(self, group: ProbeGroup, resolved: dict[str, ResolvedModel]):
        """The group in one pass, or one pass per comparison when its models do not fit the memory budget together."""
        sizes = {model: loading.weights_size(resolved[model].source) or 0 for model in group.models}
        for model, size in sizes.items():
            if size > self.budget and self.spec.run.device_map is None:  # a device map spreads it over the devices
                raise ModelError(f"{self.spec.path}: [run] memory: {format_size(self.budget)} cannot hold models.{model} "
                                 f"({format_size(size)} of weights); raise memory or use a smaller dtype")
        if sum(sizes.values()) <= self.budget or len(group.comparisons) == 1:
            return [(group.models, group.comparisons)]
        say(self.console, f"probekit: the {len(group.models)} models on {group.data} ({format_size(sum(sizes.values()))}) "
            f"do not fit [run] memory = {format_size(self.budget)} together: two at a time")
        return [((str(c.a), str(c.b)), (c,)) for c in group.comparisons]

    @contextlib.contextmanager
    def _threads(self):
        """The run's CPU threads, given back afterwards: a notebook or test process keeps its own setting."""
        before = torch.get_num_threads()
        if self.device.type == "cpu":
            torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    # -- models ------------------------------------------------------------------------

    def resolve_all(self, measured: Measured, progress: Progress) -> None:
        """Where every comparison side's weights come from, fine-tuning what is not cached yet."""
        for comparison in self.spec.comparisons:
            for ref in (comparison.a, comparison.b):
                measured.models[str(ref)] = self.resolve(ref, progress)

    def finetune_alone(self, name: str) -> Checkpoint:
        """The fine-tune of ``models.<name>`` (and of its fine-tuned bases) as one task of an executor."""
        with self._threads(), make_progress(self.console) as progress:
            return self.checkpoint(name, progress)

    def adopt(self, name: str, checkpoint: Checkpoint) -> None:
        """Use ``checkpoint``, trained by another process (an executor's task), as the fine-tune of ``models.<name>``."""
        self._checkpoints[name] = checkpoint

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
        job = FinetuneJob(f"{self.spec.path}: models.{name}", base.source, base.identity, train, validation, model.finetune,
                          precision=training_precision(self.device))
        task = progress.add_task(f"fine-tune {name}", total=None, status="")

        def on_step(step: int, total: int, loss: float) -> None:
            progress.update(task, completed=step, total=total, status=f"loss {loss:.3f}")

        def on_wait(status: str) -> None:  # another process trains this fine-tune into the shared cache
            progress.update(task, status=status)
            self.console.print(f"probekit: models.{name}: {status}", markup=False, highlight=False)

        checkpoint = finetune(job, self.cache, self.device, on_step=on_step, on_wait=on_wait)
        accuracy = "n/a" if checkpoint.accuracy is None else f"{checkpoint.accuracy:.1%}"
        steps = progress.tasks[task].total
        if steps is None:  # taken from the cache: no step ran, so no speed to report
            progress.remove_task(task)
            self.console.print(f"fine-tune {name}: cached ({checkpoint.folder.parent}), accuracy {accuracy}",
                               markup=False, highlight=False, soft_wrap=True)
        else:
            progress.update(task, total=steps, completed=steps, status=f"trained, accuracy {accuracy}")
        self._checkpoints[name] = checkpoint
        return checkpoint

    def resolve(self, ref: ModelRef, progress: Progress) -> ResolvedModel:
        model = self.spec.models[ref.model]
        if model.is_series:
            return self.series_point(ref)
        if model.adapter is not None:
            return self.merged(ref.model, model.adapter)
        if not model.is_finetuned:
            return ResolvedModel(loading.resolve(model.id), declared_identity(model), finetuned=False,
                                 revision=model.revision)
        checkpoint = self.checkpoint(ref.model, progress)
        rates = {"majority": checkpoint.majority, "chance": checkpoint.chance, "warnings": checkpoint.warnings}
        if ref.snapshot is None:
            return ResolvedModel(str(checkpoint.folder), checkpoint.identity, True, accuracy=checkpoint.accuracy, **rates)
        return ResolvedModel(str(checkpoint.snapshots[ref.snapshot]), f"{checkpoint.identity}@{ref.snapshot:g}", True,
                             accuracy=checkpoint.snapshot_accuracy[ref.snapshot], **rates)

    def series_point(self, ref: ModelRef) -> ResolvedModel:
        """A checkpoint of a series (the last one for a plain reference): a folder, an adapter of ``id``, a revision."""
        model = self.spec.models[ref.model]
        point = model.point(ref.snapshot)
        if point.revision is not None:
            return ResolvedModel(loading.resolve(model.id), point_identity(model, point), False, revision=point.revision)
        if model.id is not None:
            return self.merged(ref.model, point.folder)
        return ResolvedModel(point.folder, point_identity(model, point), False)

    def merged(self, name: str, adapter: str) -> ResolvedModel:
        """``models.<name>``'s ``id`` with a LoRA ``adapter`` merged in, through the checkpoint cache."""
        model = self.spec.models[name]
        job = AdapterJob(f"{self.spec.path}: models.{name}", loading.resolve(model.id),
                         loading.model_identity(model.id, model.revision), adapter, model.revision)
        checkpoint = finetune(job, self.cache, self.device)
        return ResolvedModel(str(checkpoint.folder), checkpoint.identity, False, warnings=checkpoint.warnings)

    def load(self, ref: ModelRef, resolved: ResolvedModel, eager: bool) -> loading.LoadedModel:
        description = f"{self.spec.path}: models.{ref.model}"
        encoder = loading.load_encoder(
            resolved.source, description, revision=resolved.revision, eager=eager,
            device=self.device, dtype=self.dtype, finetuned=resolved.finetuned, device_map=self.spec.run.device_map,
        )
        tokenizer = loading.load_tokenizer(resolved.source, description, resolved.revision)
        return loading.LoadedModel(str(ref), encoder, tokenizer, resolved.identity, resolved.accuracy)

    # -- probing -----------------------------------------------------------------------

    def probe_pass(self, group: ProbeGroup, models: tuple[str, ...], comparisons: tuple[ComparisonSpec, ...],
                   pool: _ModelPool, measured: Measured, progress: Progress) -> None:
        """Every model of the pass runs once per batch; its capture feeds every comparison that uses it.

        A comparison whose two models cannot be compared (different tokenizers or
        depths) is recorded as an error and left out; comparisons whose models share
        a tokenizer share batches.
        """
        loaded = {model: pool.get(model, group.needs[model]) for model in models}
        by_tokenizer: dict[str, list[ComparisonSpec]] = {}
        for comparison in comparisons:
            a, b = loaded[str(comparison.a)], loaded[str(comparison.b)]
            problem = comparability_problem(a, b)
            if problem:
                measured.errors.append(Event("error", f"{self.spec.path}: {problem}", comparison.name))
                continue
            by_tokenizer.setdefault(a.vocabulary, []).append(comparison)
        for sharing in by_tokenizer.values():
            used = {model: loaded[model] for model in dict.fromkeys(str(s) for c in sharing for s in (c.a, c.b))}
            self._probe_batches(group, used, sharing, measured, progress)

    def _probe_batches(self, group: ProbeGroup, loaded: dict[str, loading.LoadedModel],
                       comparisons: list[ComparisonSpec], measured: Measured, progress: Progress) -> None:
        examples = self.examples[group.data]
        weights = sum(_parameter_bytes(m.encoder) for m in loaded.values())
        store, kept = ExampleVectorStore(), self._state_room(group.data, loaded, comparisons, len(examples), weights,
                                                              measured)
        metrics = {comparison.name: self._instantiate(comparison, loaded, len(examples), measured, store, kept)
                   for comparison in comparisons}
        tokenizer = next(iter(loaded.values())).tokenizer
        label = f"probe {comparisons[0].name}" if len(comparisons) == 1 else \
            f"probe {len(comparisons)} comparisons on {group.data}"
        task = progress.add_task(label, total=len(examples), status=f"{len(loaded)} forwards/batch")
        guards = {comparison.name: _Guard(comparison.name, measured) for comparison in comparisons}
        # What the budget leaves for captures once the pass's weights are loaded.
        room = max(self.budget - weights - (kept or 0), 1)
        shared = {comparison.name: SharedStates(metrics[comparison.name]) for comparison in comparisons}
        failed: dict[str, dict[str, str]] = {comparison.name: {} for comparison in comparisons}
        for batch in self._batches(examples, tokenizer, self._max_length(loaded, measured)):
            for part, captures in self._captured(self._fitting(batch, loaded, group, room), loaded, group, room):
                for comparison in comparisons:
                    guard, feeds = guards[comparison.name], shared[comparison.name]
                    a, b = captures[str(comparison.a)], captures[str(comparison.b)]
                    for name, metric in list(metrics[comparison.name].items()):
                        if not guard.call(name, lambda n=name, m=metric: feeds.update(n, m, a, b, part) or True):
                            del metrics[comparison.name][name]
                            failed[comparison.name][name] = guard.last
                del captures
            release_freed_memory()
            progress.advance(task, batch.size)
        for comparison in comparisons:
            dropped = shared[comparison.name].settle(metrics[comparison.name], failed[comparison.name])
            measured.errors.extend(Event("error", why, comparison.name, label) for label, why in dropped)
        self._draw_replicates([m for c in comparisons for m in metrics[c.name].values()], progress)
        for comparison in comparisons:
            self._record(comparison, metrics[comparison.name], measured, progress)

    def _draw_replicates(self, metrics: list[Metric | Resampled], progress: Progress) -> None:
        """The pass's bootstrap replicates, every metric's in turn (so that they share decompositions)."""
        resampled = [m for m in metrics if isinstance(m, Resampled) and len(m.weights)]
        if resampled:
            task = progress.add_task(f"bootstrap {len(resampled)} metrics", total=sum(len(m.weights) for m in resampled),
                                     status="")
            draw_together(resampled, on_draw=lambda: progress.advance(task))

    def _state_room(self, data: str, loaded: dict[str, loading.LoadedModel], comparisons: list[ComparisonSpec],
                    n_examples: int, weights: int, measured: Measured) -> int | None:
        """Bytes the pass's per-example state will take; None (each such metric recorded as an error) if it cannot fit."""
        stored = stored_vectors(self.spec, comparisons)
        if not stored:
            return 0
        shape_of = lambda model: (loaded[model].num_layers, loaded[model].encoder.config.hidden_size)  # noqa: E731
        message = refusal(self.spec, data, stored, n_examples, shape_of, self.budget, weights)
        if not message:
            return sum(vector_bytes(n_examples, *shape_of(s.model)) for s in stored)
        labels = dict.fromkeys(m for s in stored for m in s.metrics)
        measured.errors.extend(Event("error", message, c.name, label) for c in comparisons for label in c.metrics
                               if label in labels)
        return None

    def _instantiate(self, comparison: ComparisonSpec, loaded: dict[str, loading.LoadedModel], n_examples: int,
                     measured: Measured, store: ExampleVectorStore, kept: int | None) -> dict[str, Metric | Resampled]:
        model_a, model_b = loaded[str(comparison.a)], loaded[str(comparison.b)]
        self._layers[comparison.name] = model_a.num_layers
        context = MetricContext(comparison.name, model_a, model_b, model_a.num_layers, self.device,
                                causal=any(family_of(m.encoder).causal for m in (model_a, model_b)), examples=store)
        guard = _Guard(comparison.name, measured)

        def make(m: MetricSpec) -> Metric | Resampled:
            settings = self.resampling(m)
            if settings.replicates and (why := no_interval_reason(m.metric_class)):
                measured.notes.append(Event("note", f"no confidence interval: {why}", comparison.name, m.name))
            if settings.applies_to(m.metric_class):
                return Resampled(m.metric_class, m.options, context, n_examples, settings)
            return m.metric_class(m.options, context)

        metric_specs = [self.spec.metrics[name] for name in comparison.metrics
                        if kept is not None or not is_per_example(self.spec.metrics[name].metric_class)]
        return {m.name: metric for m in metric_specs if (metric := guard.call(m.name, lambda m=m: make(m))) is not None}

    def resampling(self, metric: MetricSpec) -> Resampling:
        run = self.spec.run
        return Resampling(run.bootstrap, run.confidence, run.bootstrap_groups, metric.permutations)

    def _max_length(self, loaded: dict[str, loading.LoadedModel], measured: Measured) -> int:
        """``run.max_length``, clamped to the fewest positions a model of the pass can read, with a warning (the
        one ``probekit check`` gives for a local folder): longer texts would crash the forward pass."""
        length = self.spec.run.max_length
        for name, model in loaded.items():
            config = model.encoder.config.to_dict()
            problem = position_problem(self.spec.run.max_length, config, "run.max_length", f"models.{name}")
            if problem is not None:
                length = min(length, position_limit(config) or length)
                note = Event("note", f"{self.spec.path}: {clamped(problem)}")
                if note not in measured.notes:
                    measured.notes.append(note)
        return length

    def _batches(self, examples, tokenizer, max_length: int):
        run = self.spec.run
        # Label ids for labelled data and word alignments for token-level data: what probing metrics read.
        labels = label_names(examples) if all(e.label is not None for e in examples) else None
        tags = tag_names(examples) if any(e.words is not None for e in examples) else None
        if not run.sort_by_length:
            return make_batches(examples, tokenizer, batch_size=run.batch_size, max_length=max_length,
                                labels=labels, tags=tags)
        return length_sorted_batches(examples, tokenizer, max_length=max_length, labels=labels, tags=tags,
                                     batch_tokens=run.batch_tokens or run.batch_size * max_length)

    def _fitting(self, batch: Batch, loaded: dict[str, loading.LoadedModel], group: ProbeGroup,
                 room: int) -> list[Batch]:
        """The batch on the device, split into micro-batches when its captures would not fit in ``room`` bytes."""
        batch = batch.to(self.device)
        need = sum(capture_bytes(m.encoder.config, batch, group.needs[name], self.dtype) for name, m in loaded.items())
        need += _row_bytes(batch, loaded, group)  # and the attention statistics' chunk of at least one query row
        step = max(1, min(batch.size, batch.size * room // max(need, 1)))  # examples whose captures fit in room
        return [batch.rows(start, start + step) for start in range(0, batch.size, step)]

    def _captured(self, parts: list[Batch], loaded: dict[str, loading.LoadedModel], group: ProbeGroup, room: int):
        """(micro-batch, captures by model); a device out of memory halves the micro-batch once."""
        for part in parts:
            try:
                yield part, self._capture(part, loaded, group, room)
            except torch.OutOfMemoryError:
                if part.size == 1:
                    raise self._out_of_memory(part) from None
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                half = -(-part.size // 2)
                for smaller in (part.rows(0, half), part.rows(half, part.size)):
                    try:
                        yield smaller, self._capture(smaller, loaded, group, room)
                    except torch.OutOfMemoryError:
                        raise self._out_of_memory(smaller) from None

    def _capture(self, part: Batch, loaded: dict[str, loading.LoadedModel], group: ProbeGroup, room: int):
        chunk = self._attention_chunk(part, loaded, group, room)
        return {model: forward(m.encoder, part, group.needs[model], model, chunk) for model, m in loaded.items()}

    def _attention_chunk(self, part: Batch, loaded: dict[str, loading.LoadedModel], group: ProbeGroup,
                         room: int) -> int | None:
        """Query rows per step of the attention statistics: as many as the room left by the captures holds."""
        per_row = _row_bytes(part, loaded, group)
        if not per_row:
            return None
        captured = sum(capture_bytes(m.encoder.config, part, group.needs[name], self.dtype)
                       for name, m in loaded.items())
        tokens = part.input_ids.shape[1]
        chunk = min(tokens, (room - captured) // per_row, max(1, CHUNK_BYTES // per_row))
        if chunk < 1:
            raise ModelError(
                f"{self.spec.path}: [run] memory = {_size(self.budget)} cannot hold the attention statistics at "
                f"T = {tokens} tokens: with the weights loaded, {_size(room)} is left; the captures of "
                f"{part.size} example(s) take {_size(captured)}, and a chunk of 1 query row needs {_size(per_row)} "
                "more; raise memory or lower max_length (finished comparisons are kept)")
        return chunk

    def _out_of_memory(self, part: Batch) -> ModelError:
        return ModelError(f"{self.spec.path}: out of device memory on a batch of {part.size} examples x "
                          f"{part.input_ids.shape[1]} tokens within [run] memory = {format_size(self.budget)}; "
                          "lower [run] batch_size / batch_tokens or memory (finished comparisons are kept)")

    def _record(self, comparison: ComparisonSpec, metrics: dict[str, Metric | Resampled], measured: Measured,
                progress: Progress) -> None:
        guard = _Guard(comparison.name, measured)
        for label, metric in metrics.items():
            rows = self._finalize(label, metric, guard, progress)
            if rows is not None:
                (snapshot_a, step_a), (snapshot_b, step_b) = self.position(comparison.a), self.position(comparison.b)
                context = RowContext(self.run_id, self.spec.name, comparison.name, str(comparison.a), str(comparison.b),
                                     snapshot_a, snapshot_b, comparison.data, label, step_a, step_b)
                measured.records.extend(to_records(context, rows))

    def position(self, ref: ModelRef) -> tuple[float | None, int | None]:
        """Where in training a side is: the fraction of training (None at its end) and the optimizer step (None for
        a pre-trained model).

        A checkpoint's fraction is its step over the series' last, so trajectories and probekit's own
        snapshots draw on one training-progress axis.
        """
        model = self.spec.models[ref.model]
        if model.is_finetuned:
            checkpoint = self._checkpoints[ref.model]
            return ref.snapshot, checkpoint.snapshot_step(1.0 if ref.snapshot is None else ref.snapshot)
        if not model.is_series:
            return ref.snapshot, None
        step, last = model.point(ref.snapshot).step, model.series[-1].step
        return (None if ref.snapshot is None else step / last if last else 0.0), step

    def _finalize(self, label: str, metric: Metric | Resampled, guard: _Guard, progress: Progress) -> list[Row] | None:
        finalize = metric.finalize
        if isinstance(metric, Resampled):
            task = progress.add_task(f"resample {guard.comparison} / {label}", total=metric.draws, status="")
            finalize = lambda: metric.finalize(on_draw=lambda: progress.advance(task))  # noqa: E731
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rows = guard.call(label, finalize)
        for warning in dict.fromkeys(str(w.message) for w in caught):
            say(self.console, f"{guard.comparison} / {label}: {warning}", label="warning")
        # The session prints these with the run's other warnings, and records them in the results.
        guard.measured.notes.extend(Event("note", note, guard.comparison, label) for note in getattr(metric, "notes", []))
        if rows is None:
            return None
        cls = metric.metric_cls if isinstance(metric, Resampled) else type(metric)
        problems = shape_problems(cls, rows, self._layers[guard.comparison]) or detail_problems(rows, metric.details)
        if problems:
            guard.failed(label, f"rows break the metric's contract: {problems[0]}", "")
            return None
        return rows


class _ModelPool:
    """The loaded models of a run: each loaded once, kept while a later group needs it, then freed.

    A model serves every group with its attention implementation switched to what
    the group needs: eager when a metric reads attention maps, SDPA recording its queries
    and keys when metrics read attention rows ([run] attention, the family's table entry),
    plain SDPA otherwise.
    """

    def __init__(self, prober: Prober, resolved: dict[str, ResolvedModel]) -> None:
        self.prober = prober
        self.resolved = resolved
        self.refs = {str(side): side for c in prober.spec.comparisons for side in (c.a, c.b)}
        self.loaded: dict[str, loading.LoadedModel] = {}

    def get(self, model: str, needs: frozenset[str]) -> loading.LoadedModel:
        attention = bool({"attentions", "attention_rows"} & needs)
        if model not in self.loaded:
            self.loaded[model] = self.prober.load(self.refs[model], self.resolved[model], attention)
        encoder = self.loaded[model].encoder
        wanted = "eager" if "attentions" in needs else "sdpa"
        if "attention_rows" in needs and "attentions" not in needs:
            path = attention_path(encoder, self.prober.spec.run.attention, f"{self.prober.spec.path}: models.{model}")
            wanted = RECOMPUTED if path == "recomputed" else "eager"
        if getattr(encoder.config, "_attn_implementation", wanted) != wanted:
            encoder.set_attn_implementation(wanted)
        return self.loaded[model]

    def release(self, models) -> None:
        for model in models:
            self.loaded.pop(model, None)
        if self.prober.device.type == "cuda":
            torch.cuda.empty_cache()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library is another."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Give the memory of a batch's freed tensors back to the system.

    glibc keeps freed buffers below its mmap threshold (which it raises as large blocks
    come and go) for reuse, so a probe's resident memory crept up with the number of
    batches although nothing outlives its batch (docs/performance.md, bench_memory).
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def capture_bytes(config, batch: Batch, needs: frozenset[str], dtype: torch.dtype) -> int:
    """What one model's capture of ``batch`` holds: every layer's hidden states and, if asked, attention maps or the
    queries and keys attention rows are recomputed from (and the model's masks, one per kind of layer)."""
    size = torch.finfo(dtype).bits // 8
    tokens = batch.input_ids.shape[1]
    layers = getattr(config, "num_hidden_layers", 12)
    hidden = getattr(config, "hidden_size", 768)
    total = 0
    if "hidden_states" in needs:
        total += (layers + 1) * batch.size * tokens * hidden * size
    recomputed = getattr(config, "_attn_implementation", None) == RECOMPUTED
    if "attentions" in needs or ("attention_rows" in needs and not recomputed):
        total += layers * batch.size * _heads(config) * tokens * tokens * size
    elif "attention_rows" in needs:
        heads = _heads(config)
        key_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or hidden // heads
        total += layers * batch.size * tokens * (heads + key_heads) * head_dim * size + 2 * batch.size * tokens**2
    return total


def _heads(config) -> int:
    return getattr(config, "num_attention_heads", 12)


def _row_bytes(batch: Batch, loaded: dict[str, loading.LoadedModel], group: ProbeGroup) -> int:
    """What the attention statistics hold per query row of a chunk (0 when no metric reads attention rows)."""
    heads = [_heads(m.encoder.config) for name, m in loaded.items() if "attention_rows" in group.needs[name]]
    return ROW_BYTES * batch.size * max(heads) * batch.input_ids.shape[1] if heads else 0


def _size(size: int) -> str:
    """Bytes in the largest unit that keeps a digit before the point (GB, MB or KB)."""
    for unit, scale in (("GB", 2**30), ("MB", 2**20)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size / 2**10:.2f} KB"


def _parameter_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


class _Guard:
    """Calls into a metric, sorting what it raises into 'cannot measure' and 'plugin bug'."""

    def __init__(self, comparison: str, measured: Measured) -> None:
        self.comparison = comparison
        self.measured = measured
        self.last = ""  # why the last failed call failed

    def call(self, label: str, function: Callable):
        try:
            return function()
        except MetricError as error:
            self.last = str(error)
            self.measured.errors.append(Event("error", str(error), self.comparison, label))
        except Exception as error:  # noqa: BLE001 - a plugin bug must not lose the other metrics' rows
            self.last = f"plugin bug: {type(error).__name__}: {error}"
            self.failed(label, f"{type(error).__name__}: {error}", traceback.format_exc())
        return None

    def failed(self, label: str, why: str, trace: str) -> None:
        self.measured.failures.append(Event("failure", f"plugin bug: {why}", self.comparison, label))
        self.measured.tracebacks.append(trace)


def comparability_problem(model_a: loading.LoadedModel, model_b: loading.LoadedModel) -> str:
    """Why two models cannot be compared token by token and layer by layer ("" when they can)."""
    families = family_of(model_a.encoder).name, family_of(model_b.encoder).name
    if families[0] != families[1]:  # even with one vocabulary and depth, their layers are not each other's
        what = f"model families ({families[0]} and {families[1]})"
    elif model_a.vocabulary != model_b.vocabulary:
        what = "tokenizers (vocabularies)"
    elif model_a.num_layers != model_b.num_layers:
        what = f"numbers of layers ({model_a.num_layers} and {model_b.num_layers})"
    else:
        return ""
    return (f"models.{model_a.name} and models.{model_b.name} have different {what}; "
            "the metrics compare the same tokens and layers of both models")


def metric_metadata(spec: Spec, manager: PluginManager) -> dict[str, dict]:
    """Per metric label: what the results file records of it (unit, direction, layers, plugin, ...)."""
    return {label: _metric_entry(spec, m, manager) for label, m in spec.metrics.items()}


def _metric_entry(spec: Spec, metric: MetricSpec, manager: PluginManager) -> dict:
    info = manager.metrics[metric.metric]
    cls = metric.metric_class
    run = spec.run
    bootstrap = run.bootstrap and supports_bootstrap(cls)
    interval = {"method": _interval_method(cls), "replicates": run.bootstrap,
                "groups": 1 if is_per_example(cls) else run.bootstrap_groups, "confidence": run.confidence} \
        if bootstrap else ({"none": no_interval_reason(cls)} if run.bootstrap else None)
    return {"metric": metric.metric, "unit": cls.unit_of(metric.options), "direction": cls.direction_of(metric.options),
            "layers": cls.layers, "per_head": cls.per_head, "estimator": cls.estimator, "interval": interval,
            "state": cls.state,
            "permutations": metric.permutations, "plugin": info.plugin,
            "distribution": info.distribution, "version": info.version}


def _interval_method(cls: type[Metric]) -> str:
    if is_per_example(cls):
        return cls.resampling.describe()
    return f"random-groups Poisson bootstrap, {cls.interval} interval"
