"""What a spec declares, once validated: the dataclasses the engine runs from."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from probekit.declare import SIZE, Convert, Invalid, Rule, between, positive

from probekit.metrics.base import Metric
from probekit.models.settings import FinetuneSettings

DEVICES = ("auto", "cpu", "cuda", "mps")
Dtype = Literal["auto", "float32", "float64", "bfloat16", "float16"]
DeviceMap = Literal["auto", "balanced", "sequential"]
AttentionPath = Literal["auto", "recomputed", "maps"]
DTYPES, DEVICE_MAPS, ATTENTION_PATHS = get_args(Dtype), get_args(DeviceMap), get_args(AttentionPath)
#: The experiment trackers a run may log to (``[run] log``, ``--log``); each is a built-in output plugin of that name.
Tracker = Literal["wandb", "mlflow"]
TRACKERS = get_args(Tracker)
#: Draws per bootstrap or permutation null: below 10 a percentile is meaningless, above this a typo.
MAX_DRAWS = 100_000
DEFAULT_REPLICATES = 200
#: ``[run]`` keys only the Ray executor reads: with the local executor they change nothing (a note says so).
RAY_KEYS = ("ray_address", "gpus_per_task")


def _replicates(value: bool | int) -> int:
    """``bootstrap = true`` (200 replicates), ``false`` (none) or a number of replicates."""
    if isinstance(value, bool):
        return DEFAULT_REPLICATES if value else 0
    if not 10 <= value <= MAX_DRAWS:
        raise Invalid(_REPLICATES)
    return value


_REPLICATES = (f"true ({DEFAULT_REPLICATES} replicates) or a number of replicates from 10 to {MAX_DRAWS} "
               f"(e.g. {DEFAULT_REPLICATES})")
Device = Annotated[str, Rule(lambda d: d.split(":")[0] in DEVICES, "one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'",
                             DEVICES)]
Gpus = Annotated[float, Rule(lambda g: math.isfinite(g) and g >= 0 and (g <= 1 or g.is_integer()),
                             "a number of GPUs per task >= 0: a share of one up to 1 (0.5: two tasks per GPU), "
                             "else a whole number")]
RayAddress = Annotated[str, Rule(lambda a: bool(a.strip()), 'a Ray address such as "10.0.0.1:6379", '
                                 '"ray://head:10001" or "auto"; leave it out for $RAY_ADDRESS or a local Ray')]


@dataclass(frozen=True)
class RunSettings:
    """``[run]``: where and how the forward passes run (docs/specs.md). Each default is stated here only."""

    device: Device = "auto"
    dtype: Dtype = "auto"  # of the forward passes; "auto":
    # bfloat16 on GPUs that have it, float32 elsewhere
    batch_size: Annotated[int, positive] = 32
    max_length: Annotated[int, positive] = 128
    cache_dir: str | None = None
    memory: Annotated[int | None, SIZE] = None  # bytes the probe may use for models and captures; None: detected
    threads: Annotated[int | None, positive] = None  # CPU threads; None: the cores this process may use
    sort_by_length: bool = True  # batch examples of similar length together (less padding)
    batch_tokens: Annotated[int | None, positive] = None  # tokens per batch when sorting by length; None: batch_size
    # x max_length
    bootstrap: Annotated[int, Convert(bool | int, _replicates, _REPLICATES)] = 0  # bootstrap replicates per metric
    # for confidence intervals; 0: none
    confidence: Annotated[float, between(0, 1, "a level in (0, 1), e.g. 0.95", open_low=True, open_high=True)] = 0.95
    bootstrap_groups: Annotated[int, between(2, 10_000, "a number of groups from 2 to 10000 (e.g. 32)")] = 32  # the
    # groups examples are dealt into (memory: one metric state per group)
    executor: Literal["local", "ray"] = "local"  # who runs the fine-tunes and probe groups: this process, or Ray
    ray_address: RayAddress | None = None  # the Ray cluster; None: $RAY_ADDRESS, else a local Ray started for the run
    gpus_per_task: Gpus | None = None  # GPUs Ray reserves per task; None: 1 when the device is cuda, else 0
    device_map: DeviceMap | None = None  # "auto": each model's layers spread over
    # the GPUs (accelerate), for models larger than one device; None: each model whole on `device`
    attention: AttentionPath = "auto"  # how attention rows are read: "auto" recomputed from queries and keys under
    # an SDPA forward where the family allows (eager maps elsewhere), "recomputed" (an error where it cannot), "maps"
    log: tuple[Tracker, ...] = ()  # experiment trackers this run also logs to (docs/results.md), with --log


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
    notes: tuple[str, ...] = ()  # what validation noticed that does not stop the run (shown by check and run)

    @property
    def base_dir(self) -> Path:
        return self.path.parent
