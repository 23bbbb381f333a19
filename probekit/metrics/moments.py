"""A base for metrics of hidden states computed from streamed moments (SVCCA, PWCCA, Procrustes, ...).

Each layer 0..L keeps one :class:`CrossMoments` of the two models' datapoints, so
memory is O(hidden^2) per layer whatever the number of tokens; a subclass turns a
layer's moments into its row with ``layer_row``.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from probekit.metrics.base import Metric, MetricContext, MetricError, Row
from probekit.metrics.functional import (
    CrossMoments,
    Datapoints,
    datapoints,
    decompose_together,
    svcca_from_moments,
)
from probekit.metrics.options import OptionError
from probekit.metrics.tensors import Batch, Capture


@dataclass(frozen=True)
class TokenOptions:
    """Which datapoints a layer contributes: every real token, [CLS] (the first) or the last
    real token, or the mean per example (``functional.datapoints``)."""

    tokens: Literal["all", "cls", "last", "mean"] = "all"

    def check_model(self, context: MetricContext) -> None:
        """MetricError for ``tokens = "cls"`` on a decoder: its first token has seen only itself."""
        if self.tokens == "cls" and context.causal:
            raise MetricError("tokens = 'cls': decoders have no [CLS] (their first token sees only itself); "
                              "use tokens = 'last' or 'mean'")


@dataclass(frozen=True)
class SVCCAOptions(TokenOptions):
    """SVCCA's options: how many directions each side keeps (a rule and threshold, or a fixed ``k``)."""

    rule: Literal["singular_values", "variance"] = "singular_values"
    threshold: float = 0.99
    k: int | None = None  # a fixed number of directions per side, instead of the rule

    def __post_init__(self):
        if not 0 < self.threshold <= 1:
            raise OptionError("threshold", "a fraction in (0, 1]", "set threshold = 0.99, as Raghu et al. do")
        if self.k is not None and self.k < 1:
            raise OptionError("k", "a positive number of directions, or none", "remove k to use the rule")


class HiddenStateMoments(Metric):
    """Streams each layer's datapoints into float64 moments; ``layer_row`` makes a row of them.

    A metric whose row is just one number of the moments sets ``of_moments`` to that
    function (``pwcca_from_moments``); others override ``layer_row``.
    """

    needs = frozenset({"hidden_states"})
    layers = "hidden_states"
    Options = TokenOptions
    of_moments: ClassVar[Callable[[Any], float] | None] = None
    #: What each layer streams into: anything with ``add(x, y)`` of two :class:`Datapoints` and the classmethod
    #: ``pooled(parts, weights)``.
    accumulator: ClassVar[type] = CrossMoments
    #: Whether ``layer_row`` decomposes each side's covariance (SVCCA, PWCCA, CCA): bootstrap replicates
    #: then decompose a layer's covariances in one batched call (``functional.decompose_together``).
    decomposes: ClassVar[bool] = False

    def __init__(self, options: Any, context: MetricContext) -> None:
        super().__init__(options, context)
        if isinstance(options, TokenOptions):
            options.check_model(context)
        self.moments = [self.accumulator() for _ in range(context.num_layers + 1)]
        self.n_examples = 0

    def update(self, a: Capture, b: Capture, batch: Batch) -> None:
        self._update(a, b, batch, generator=None)

    def state_key(self) -> tuple:
        return (type(self).accumulator, type(self)._update, self.options.tokens, self.context.num_layers)

    def take_state(self, other: HiddenStateMoments) -> None:
        self.moments, self.n_examples = other.moments, other.n_examples

    def update_permuted(self, a: Capture, b: Capture, batch: Batch, generator: torch.Generator) -> None:
        self._update(a, b, batch, generator)

    def _update(self, a: Capture, b: Capture, batch: Batch, generator: torch.Generator | None) -> None:
        shuffle = None
        for layer, moments in enumerate(self.moments):
            x, y = layer_datapoints(a, layer, batch, self.options.tokens), layer_datapoints(b, layer, batch, self.options.tokens)
            if generator is not None:
                shuffle = torch.randperm(y.n, generator=generator) if shuffle is None else shuffle
                y = Datapoints(y.x[shuffle.to(y.x.device)])
            try:
                moments.add(x, y)
            except ValueError as error:  # e.g. NaN activations
                raise MetricError(f"layer {layer}: {error}") from error
        self.n_examples += batch.size

    @classmethod
    def pooled(cls, parts: Sequence[HiddenStateMoments], weights: Sequence[int]) -> HiddenStateMoments:
        return pooled_layer_moments(parts, weights)

    @classmethod
    def replicates(cls, parts: Sequence[HiddenStateMoments], weights: Any) -> list[list[Row]]:
        """:meth:`Metric.replicates`, layer by layer: the layer's replicates pooled in one matrix product
        (``PooledSums.pooled_many``) and, for a metric that ``decomposes`` its covariances, those
        decomposed in one batched call (``functional.decompose_together``) before each replicate's
        ``layer_row``. Memory: one layer's replicates at a time. A metric that overrides ``finalize``
        gets the default."""
        weights = np.asarray(weights, dtype=np.int64).reshape(-1, len(parts))
        if cls.finalize is not HiddenStateMoments.finalize:
            return super().replicates(parts, weights)
        counts = np.array([part.n_examples for part in parts], dtype=np.int64)
        replicas = []
        for row in weights:
            replica = copy.copy(parts[0])
            replica.n_examples = int(row @ counts)
            replicas.append(replica)
        rows: list[list[Row]] = [[] for _ in replicas]
        for layer, states in enumerate(zip(*(part.moments for part in parts))):
            pools = type(states[0]).pooled_many(list(states), weights)
            if cls.decomposes:
                decompose_together(pools)
            for replica, moments, out in zip(replicas, pools, rows, strict=True):
                try:
                    out.append(replica.layer_row(layer, moments))
                except ValueError as error:
                    raise MetricError(f"layer {layer}: {error}") from error
        return rows

    def finalize(self) -> list[Row]:
        rows = []
        for layer, moments in enumerate(self.moments):
            try:
                rows.append(self.layer_row(layer, moments))
            except ValueError as error:  # rank 0, fewer datapoints than neurons, ...
                raise MetricError(f"layer {layer}: {error}") from error
        return rows

    def layer_row(self, layer: int, moments: CrossMoments) -> Row:
        value = type(self).of_moments(moments)
        return Row(layer, value, n_examples=self.n_examples, n_tokens=moments.n)


def layer_datapoints(capture: Capture, layer: int, batch: Batch, tokens: str) -> Datapoints:
    """A layer's datapoints (padding excluded) as :class:`Datapoints`, made once per capture for every metric and comparison."""
    return capture.derived(("probekit.datapoints", layer, tokens),
                           lambda: Datapoints(datapoints(capture.hidden_states[layer], batch.attention_mask, tokens)))


def pooled_layer_moments(parts: Sequence[Metric], weights: Sequence[int]) -> Metric:
    """:meth:`Metric.pooled` for a metric whose state is ``moments`` (one accumulator per layer) and ``n_examples``."""
    metric = copy.copy(parts[0])
    metric.moments = [type(layer[0]).pooled(list(layer), list(weights)) for layer in zip(*(p.moments for p in parts))]
    metric.n_examples = sum(w * p.n_examples for p, w in zip(parts, weights, strict=True))
    return metric


def svcca_row(layer: int, moments: CrossMoments, options: SVCCAOptions, n_examples: int) -> Row:
    """The SVCCA distance of one layer's moments, with k_x, k_y, the rule and threshold."""
    result = svcca_from_moments(moments, rule=options.rule, threshold=options.threshold, k=options.k)
    return Row(
        layer, result.distance, n_examples=n_examples, n_tokens=moments.n,
        details={"k_x": result.k_x, "k_y": result.k_y, "rule": result.rule, "threshold": result.threshold},
    )


def svcca_rows(per_layer: list[CrossMoments], options: SVCCAOptions, n_examples: int) -> list[Row]:
    """One row per layer (for metrics that fill the moments their own way, as layer_replacement does)."""
    rows = []
    for layer, moments in enumerate(per_layer):
        try:
            rows.append(svcca_row(layer, moments, options, n_examples))
        except ValueError as error:  # e.g. rank 0: every [CLS] embedding is the same vector
            raise MetricError(f"layer {layer}: {error}") from error
    return rows
