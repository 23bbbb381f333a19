"""A base for metrics of hidden states computed from streamed moments (SVCCA, PWCCA, Procrustes, ...).

Each layer 0..L keeps one :class:`CrossMoments` of the two models' datapoints, so
memory is O(hidden^2) per layer whatever the number of tokens; a subclass turns a
layer's moments into its row with ``layer_row``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from probekit.metrics.base import Metric, MetricContext, MetricError, Row
from probekit.metrics.functional import CrossMoments, datapoints
from probekit.metrics.tensors import Batch, Capture


@dataclass(frozen=True)
class TokenOptions:
    """Which datapoints a layer contributes: every real token, [CLS] only, or the mean per example."""

    tokens: Literal["all", "cls", "mean"] = "all"


class HiddenStateMoments(Metric):
    """Streams each layer's datapoints into float64 moments; ``layer_row`` makes a row of them.

    A metric whose row is just one number of the moments sets ``of_moments`` to that
    function (``pwcca_from_moments``); others override ``layer_row``.
    """

    needs = frozenset({"hidden_states"})
    layers = "hidden_states"
    Options = TokenOptions
    of_moments: ClassVar[Callable[[CrossMoments], float] | None] = None

    def __init__(self, options: Any, context: MetricContext) -> None:
        super().__init__(options, context)
        self.moments = [CrossMoments() for _ in range(context.num_layers + 1)]
        self.n_examples = 0

    def update(self, a: Capture, b: Capture, batch: Batch) -> None:
        for layer, (moments, x, y) in enumerate(zip(self.moments, a.hidden_states, b.hidden_states, strict=True)):
            try:
                # (batch, tokens, hidden) -> (datapoints, hidden), padding excluded
                moments.update(datapoints(x, batch.attention_mask, self.options.tokens),
                               datapoints(y, batch.attention_mask, self.options.tokens))
            except ValueError as error:  # e.g. NaN activations
                raise MetricError(f"layer {layer}: {error}") from error
        self.n_examples += batch.size

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
