"""What a spec declares, once validated: the dataclasses the engine runs from."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probekit.metrics.base import Metric
from probekit.models.finetune import FinetuneSettings

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "float64", "bfloat16", "float16")
EXECUTORS = ("local", "ray")
DEVICE_MAPS = ("auto", "balanced", "sequential")
ATTENTION_PATHS = ("auto", "recomputed", "maps")


@dataclass(frozen=True)
class RunSettings:
    """``[run]``: where and how the forward passes run (docs/specs.md)."""

    device: str = "auto"
    dtype: str = "auto"  # of the forward passes; "auto": bfloat16 on GPUs that have it, float32 elsewhere
    batch_size: int = 32
    max_length: int = 128
    cache_dir: str | None = None
    memory: int | None = None  # bytes the probe may use for models and captures; None: detected
    threads: int | None = None  # CPU threads; None: the cores this process may use
    sort_by_length: bool = True  # batch examples of similar length together (less padding)
    batch_tokens: int | None = None  # tokens per batch when sorting by length; None: batch_size x max_length
    bootstrap: int = 0  # bootstrap replicates per metric for confidence intervals; 0: none
    confidence: float = 0.95  # the intervals' level
    bootstrap_groups: int = 32  # the groups examples are dealt into (memory: one metric state per group)
    executor: str = "local"  # who runs the fine-tunes and probe groups: this process, or a Ray cluster ("ray")
    ray_address: str | None = None  # the Ray cluster; None: $RAY_ADDRESS, else a local Ray started for the run
    gpus_per_task: float | None = None  # GPUs Ray reserves per task; None: 1 when the device is cuda, else 0
    device_map: str | None = None  # "auto": each model's layers spread over the GPUs (accelerate), for models
    # larger than one device; None: each model whole on `device`
    attention: str = "auto"  # how attention rows are read: "auto" recomputed from queries and keys under an SDPA
    # forward where the family allows (eager maps elsewhere), "recomputed" (an error where it cannot), "maps" (eager)


@dataclass(frozen=True)
class SeriesPoint:
    """One checkpoint of a training trajectory: its training step and where its weights are."""

    step: int
    folder: str | None = None  # a checkpoint folder (a model, or a peft adapter of the model's ``id``)
    revision: str | None = None  # else a hub revision of the model's ``id``


@dataclass(frozen=True)
class ModelSpec:
    """A pre-trained model (``id``, with a LoRA ``adapter`` merged in or not), a fine-tune of another
    declared model (``base`` + ``train``), or a training trajectory (``checkpoints`` or ``revisions``)."""

    name: str
    id: str | None = None
    revision: str | None = None
    base: str | None = None
    train: str | None = None
    validation: str | None = None
    finetune: FinetuneSettings | None = None
    adapter: str | None = None  # a peft LoRA adapter folder or hub id, merged into ``id`` before probing
    series: tuple[SeriesPoint, ...] = ()  # a trajectory's checkpoints, by step

    @property
    def is_finetuned(self) -> bool:
        return self.base is not None

    @property
    def is_series(self) -> bool:
        return bool(self.series)

    def point(self, step: float | None) -> SeriesPoint:
        """The checkpoint at ``step``; the last one for None (a series stands for where its training ended)."""
        return self.series[-1] if step is None else next(p for p in self.series if p.step == step)


@dataclass(frozen=True)
class DataSpec:
    """A ``[data.<name>]`` table: a source (``kind`` and its validated ``options``) or a ``mix`` of others."""

    name: str
    kind: str  # a registered data source's kind, or "mix"
    options: Any = None  # the source's Options (None for a mix)
    mix: tuple[tuple[str, int | None], ...] = ()
    limit: int | None = None
    seed: int | None = None


@dataclass(frozen=True)
class MetricSpec:
    """A configured metric: ``name`` is the spec's label, ``metric`` the plugin's metric name."""

    name: str
    metric: str
    options: Any
    metric_class: type[Metric] | None = None  # the registered Metric subclass
    permutations: int = 0  # draws of the permutation null (a p-value per row); 0: none


def point_text(point: float) -> str:
    """A snapshot fraction or a checkpoint step as a name suffix: 0.25 -> "0.25", 12000.0 -> "12000"."""
    return str(int(point)) if float(point).is_integer() else f"{point:g}"


@dataclass(frozen=True)
class ModelRef:
    """A comparison side: a declared model, optionally a point of its training: for a fine-tune probekit
    trains, a snapshot (a fraction of training); for a checkpoint series, a step."""

    model: str
    snapshot: float | None = None

    def __str__(self) -> str:
        return self.model if self.snapshot is None else f"{self.model}@{point_text(self.snapshot)}"


@dataclass(frozen=True)
class ComparisonSpec:
    name: str
    a: ModelRef
    b: ModelRef
    data: str
    metrics: tuple[str, ...]
    seed_spread: tuple[str, ...] = ()  # comparisons of models that differ only by seed: what chance alone moves


@dataclass(frozen=True)
class Spec:
    path: Path
    name: str
    description: str
    text: str
    run: RunSettings
    models: dict[str, ModelSpec]
    data: dict[str, DataSpec]
    metrics: dict[str, MetricSpec]
    comparisons: tuple[ComparisonSpec, ...]
    expectations: tuple[Any, ...] = ()
    plugins: tuple[str, ...] = ()
    markers: tuple[str, ...] = ()  # pytest markers for the spec's expectation items
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.path.parent
