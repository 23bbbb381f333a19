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

import torch

from probekit.metrics.base import Metric, MetricContext, MetricError, Row
from probekit.metrics.functional import CrossMoments, Datapoints, datapoints
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
