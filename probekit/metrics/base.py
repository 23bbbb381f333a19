"""The metric contract: what a metric plugin declares, receives and returns.

A metric is fed batch by batch and keeps bounded state::

    metric = MetricClass(options, context)      # may raise MetricError
    for batch in data:                          # one forward pass per model per batch
        metric.update(capture_a, capture_b, batch)
    rows = metric.finalize()                    # per layer (and per head) values

Everything a plugin author must know is here, in the class attributes of
:class:`Metric`; docs/plugins.md walks through it.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from probekit.errors import UserError
from probekit.metrics.options import OptionError

if TYPE_CHECKING:
    import torch

    from probekit.metrics.tensors import Batch, Capture

#: What a metric can ask of the forward pass: ``"attentions"`` the whole eager maps,
#: ``"attention_rows"`` each layer's attention read a chunk of query rows at a time
#: (``Capture.rows``: recomputed from queries and keys under an SDPA forward where the
#: family allows, memory O(T x d) per layer instead of O(heads x T^2)), ``"models"`` both
#: models through the context, for metrics that run their own forwards.
NEEDS = frozenset({"hidden_states", "attentions", "attention_rows", "models"})

#: A distance is 0 for identical representations and grows as they differ; a
#: similarity is 1 for identical representations and falls as they differ.
Direction = Literal["distance", "similarity"]
DIRECTIONS: tuple[str, ...] = ("distance", "similarity")

#: How a bootstrap interval is read off the replicates (docs/reference.md).
Interval = Literal["basic", "percentile"]
INTERVALS: tuple[str, ...] = ("basic", "percentile")

#: Which layers a metric reports: hidden states are numbered 0 (the embeddings)
#: to L; attention maps 1 to L (the embeddings attend to nothing).
LayerRange = Literal["hidden_states", "attentions"]
LAYER_RANGES: tuple[str, ...] = ("hidden_states", "attentions")

#: What a metric's rows are: one value per layer (and head, with ``per_head``), or one per pair of layers
#: (``layer`` of model a, ``layer_b`` of model b: a layer x layer map, whose diagonal is the layer series).
Shape = Literal["layers", "layer_pairs"]
SHAPES: tuple[str, ...] = ("layers", "layer_pairs")

#: What a metric keeps between batches: "additive" (sums over examples, bounded whatever the number of
#: examples; pooled for intervals) or "per_example" (one vector per example per layer, kept by probekit once
#: per model: probekit.metrics.per_example).
StateKind = Literal["additive", "per_example"]
STATE_KINDS: tuple[str, ...] = ("additive", "per_example")

#: The types a ``details`` value may have (each key becomes a Parquet column).
DETAIL_TYPES = (int, float, str, bool)


class MetricError(UserError):
    """This metric cannot measure this comparison (the models, data or options do not allow it).

    Raised from ``__init__``, ``update`` or ``finalize``, it means one thing: the
    metric is dropped for this comparison with the message recorded, and every
    other metric goes on. Any other exception is a bug in the plugin.
    """


@dataclass(frozen=True)
class Row:
    """One measured number. ``head`` is None for a layer's value.

    ``details`` carries metric-specific values under the keys the metric declares
    in ``Metric.details`` (for SVCCA: ``k_x``, ``k_y``); each becomes a column.
    ``layer_b`` is set by metrics that compare every layer of model a (``layer``)
    with every layer of model b (a cross-layer matrix); None otherwise.
    ``ci_low``, ``ci_high`` (the bootstrap interval), ``ci_bias`` (the bootstrap's
    estimate of the value's bias: the replicates' mean minus the value) and ``p_value``
    (the permutation null's) are filled in by probekit, never by a metric.
    """

    layer: int
    value: float
    head: int | None = None
    n_examples: int = 0
    n_tokens: int = 0
    details: Mapping[str, float | int | str | bool] = field(default_factory=dict)
    layer_b: int | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    ci_bias: float | None = None


@dataclass(frozen=True)
class SpecFacts:
    """What a spec declares, for :meth:`Metric.check_spec`: of the comparisons that use the metric,
    ``examples`` (data name -> number of examples after ``limit``), ``layers`` (model -> its number
    of transformer layers L, where its config is on disk) and ``labels`` (data name -> its labels).
    ``examples`` and ``labels`` read the data on first access (never a model)."""

    examples: Mapping[str, int]
    layers: Mapping[str, int]
    labels: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class NoOptions:
    """For metrics that take no options."""


@dataclass(frozen=True)
class MetricContext:
    """What a metric instance knows about the comparison it measures.

    ``model_a`` / ``model_b`` are :class:`probekit.models.loading.LoadedModel` (name,
    encoder, tokenizer, identity); ``num_layers`` is L, the number of transformer
    layers; ``device`` is where the captures live; ``causal``: a model of the comparison is
    a decoder (each token attends only to itself and the tokens before it); ``examples``: where a
    per-example metric's vectors are stored, shared with every other metric of the pass.
    """

    comparison: str
    model_a: Any
    model_b: Any
    num_layers: int
    device: Any
    causal: bool = False
    examples: Any = None  # the pass's per-example state (metrics.per_example.ExampleVectorStore); None: the metric's own


class Metric:
    """Base class of every metric. Subclass it, set the class attributes, register it.

    ``name``: how specs refer to it. ``needs``: a subset of :data:`NEEDS`.
    ``Options``: a frozen dataclass; each field's type and default is the
    option's contract (``bool``, ``int``, ``float``, ``str``, ``Literal[...]``,
    ``tuple[T, ...]`` of those, and ``X | None``), checked at registration.
    ``unit``: the label of its values in reports. ``direction``: "distance" or
    "similarity" (expectations, reports and figures read it). ``layers``: which
    layer numbers it reports ("hidden_states": 0..L, "attentions": 1..L).
    ``per_head``: whether it reports heads too. ``details``: the extra values its
    rows carry, name -> type (int, float, str or bool). ``estimator``: how the value
    is estimated from the data ("exact moments", "per-example means", ...), recorded
    in the results metadata. ``state``: "additive" (the metric keeps sums) or "per_example"
    (subclass :class:`probekit.PerExampleMetric`: probekit keeps every example's vector).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    unit: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()
    direction: ClassVar[Direction] = "distance"
    layers: ClassVar[LayerRange] = "hidden_states"
    per_head: ClassVar[bool] = False
    details: ClassVar[Mapping[str, type]] = {}
    estimator: ClassVar[str] = ""
    state: ClassVar[StateKind] = "additive"
    shape: ClassVar[Shape] = "layers"
    Options: ClassVar[type] = NoOptions
    #: The bootstrap interval it gets (docs/reference.md): "basic", [2v - q_hi, 2v - q_lo], for a statistic
    #: biased by the sample size (the CCA family, CKA), or "percentile", [q_lo, q_hi], for means over examples.
    interval: ClassVar[Interval] = "basic"
    #: The values it can take, (lowest, highest), None where unbounded: no interval bound lies outside.
    value_range: ClassVar[tuple[float | None, float | None]] = (None, None)

    def __init__(self, options: Any, context: MetricContext) -> None:
        self.options = options
        self.context = context

    @classmethod
    def unit_of(cls, options: Any) -> str:
        """The unit of the values under these options (``unit`` unless an option changes it)."""
        return cls.unit

    @classmethod
    def range_of(cls, options: Any) -> tuple[float | None, float | None]:
        """The values it can take under these options (``value_range`` unless an option changes it)."""
        return cls.value_range

    @classmethod
    def direction_of(cls, options: Any) -> Direction:
        """The direction of the values under these options (``direction`` unless an option changes it)."""
        return cls.direction

    @classmethod
    def check_spec(cls, options: Any, facts: SpecFacts) -> list[OptionError]:
        """Problems of ``options`` given what the spec declares (``k`` below the number of examples), found at
        ``probekit check`` time: each an :class:`OptionError` naming the option, what it must be, and the fix."""
        return []

    def update(self, a: Capture, b: Capture, batch: Batch) -> None:
        raise NotImplementedError

    def finalize(self) -> list[Row]:
        raise NotImplementedError

    @classmethod
    def pooled(cls, parts: Sequence[Metric], weights: Sequence[int]) -> Metric:
        """The metric as if one instance had seen every part's examples, part i ``weights[i]`` times.

        Confidence intervals are built on it: probekit deals the examples into
        groups, feeds one instance per group, and pools the groups with the point
        weights (all 1) and with Poisson(1) weights per bootstrap replicate. The
        parts share options and context; the result is only finalized. A metric
        whose state is not a sum over examples leaves this unimplemented and gets
        no interval.
        """
        raise NotImplementedError

    @classmethod
    def replicates(cls, parts: Sequence[Metric], weights: Any) -> list[list[Row]]:
        """The rows of bootstrap replicates: row r of ``weights`` (a replicates x parts integer array) is
        ``cls.pooled(parts, weights[r]).finalize()``.

        This default pools and finalizes one replicate at a time; a metric can do all of them
        at once (the moment metrics pool a layer's replicates in one matrix product and
        decompose their covariances in one batched call). It must return what the default
        returns, up to the order of float additions.
        """
        return [cls.pooled(parts, [int(w) for w in row]).finalize() for row in weights]

    def state_key(self) -> Hashable | None:
        """A key equal for two instances whose state would be equal after the same updates, or None.

        Within a comparison probekit then feeds one instance and hands its state to the
        others with :meth:`take_state` (SVCCA, PWCCA, Procrustes and CKA stream the same
        moments: one accumulation serves them all).
        """
        return None

    def take_state(self, other: Metric) -> None:
        """Take ``other``'s accumulated state (``other.state_key() == self.state_key()``) before finalizing."""
        raise NotImplementedError

    def update_permuted(self, a: Capture, b: Capture, batch: Batch, generator: torch.Generator) -> None:
        """:meth:`update` with the pairing of a's and b's datapoints shuffled within the batch.

        One instance fed this way is one draw of the permutation null ("what value
        would two unrelated representations give"). Only metrics of paired
        datapoints implement it; the others cannot be given ``permutations``.
        """
        raise NotImplementedError


def supports_permutation_null(metric_cls: type[Metric]) -> bool:
    """Whether ``metric_cls`` implements :meth:`Metric.update_permuted` (and so can give a p-value)."""
    return metric_cls.update_permuted is not Metric.update_permuted


def supports_bootstrap(metric_cls: type[Metric]) -> bool:
    """Whether ``metric_cls`` gets confidence intervals: per-example state with a ``resampling``, or :meth:`Metric.pooled`."""
    if metric_cls.state == "per_example":
        return getattr(metric_cls, "resampling", None) is not None
    return metric_cls.pooled.__func__ is not Metric.pooled.__func__


def no_interval_reason(metric_cls: type[Metric]) -> str:
    """Why ``metric_cls`` gets no confidence interval ("" when it gets one): said in the report and the metadata."""
    if supports_bootstrap(metric_cls):
        return ""
    if metric_cls.state == "per_example":
        return f"{metric_cls.name} declares resampling = None: its value cannot be bootstrapped"
    return f"{metric_cls.name} does not implement pooled(): its state is not a sum over examples"


def layer_numbers(metric_cls: type[Metric], num_layers: int) -> range:
    """The layer numbers ``metric_cls`` reports for a model of ``num_layers`` transformer layers."""
    return range(1 if metric_cls.layers == "attentions" else 0, num_layers + 1)


def shape_problems(metric_cls: type[Metric], rows: Sequence[Row], num_layers: int) -> list[str]:
    """How ``rows`` break what ``metric_cls`` declares (its layers, ``shape`` and ``per_head``): a plugin bug."""
    layers = set(layer_numbers(metric_cls, num_layers))
    problems = []
    for row in rows:
        cell = f"layer {row.layer}" + ("" if row.layer_b is None else f" x layer_b {row.layer_b}")
        if row.layer not in layers or (row.layer_b is not None and row.layer_b not in layers):
            problems.append(f"{cell} is outside its declared layers {min(layers)}..{max(layers)} "
                            f"(layers = {metric_cls.layers!r})")
        elif (row.layer_b is not None) != (metric_cls.shape == "layer_pairs"):
            problems.append(f"{cell}: shape = {metric_cls.shape!r} " +
                            ("gives every row a layer_b" if metric_cls.shape == "layer_pairs" else "has no layer_b"))
        elif row.head is not None and not metric_cls.per_head:
            problems.append(f"{cell} head {row.head}: per_head is not declared")
        if problems:
            break
    return problems
