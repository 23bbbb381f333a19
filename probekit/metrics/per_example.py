"""The per-example kind of metric state: one pooled vector per example per layer, kept once per model.

Metrics such as mutual k-NN alignment, CKNNA, RSA and probing classifiers need every
example's vector at the end, not a running sum. A :class:`PerExampleMetric` declares
that it keeps them; probekit then stores each model's vectors once per pass and
pooling (:class:`ExampleVectorStore`), shared by every comparison, metric and
permutation-null instance that asks, counts them against ``[run] memory``, and hands
the metric the full float64 matrices at the end::

    class MyMetric(probekit.PerExampleMetric):
        name = "my_metric"
        def layer_value(self, x, y):          # x, y: (examples, hidden) float64, one layer
            return float(...)

Memory: ``examples x (L + 1) x hidden x 8`` bytes per model and pooling
(:func:`vector_bytes`), whatever the number of metrics, comparisons or null draws.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from probekit.metrics.base import Metric, MetricContext, MetricError, Row, SpecFacts
from probekit.metrics.functional import datapoints
from probekit.metrics.options import OptionError
from probekit.metrics.tensors import Batch, Capture

#: Bytes of one stored number (float64).
BYTES_PER_NUMBER = 8


@dataclass(frozen=True)
class PoolingOptions:
    """How an example's tokens become its one vector: [CLS] (the first real token), the last real token, or the mean."""

    tokens: Literal["cls", "last", "mean"] = "mean"


@dataclass(frozen=True)
class Resample:
    """How the bootstrap draws examples for a per-example metric.

    ``replace=True`` (the default): n of n with replacement, the ordinary bootstrap.
    ``replace=False``: m = ``fraction`` x n without replacement (subsampling, Politis and
    Romano 1994), for metrics that a repeated example biases (k-NN: a copy of an example
    is its own nearest neighbour); the spread of the m-example values around the
    n-example value is scaled by sqrt(m / n) into an interval for n examples.
    """

    replace: bool = True
    fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.fraction < 1:
            raise ValueError(f"Resample.fraction must be in (0, 1), got {self.fraction}")

    def describe(self) -> str:
        if self.replace:
            return "bootstrap: n of n examples with replacement, basic interval"
        return (f"subsampling: m = {self.fraction:g} n examples without replacement, "
                "interval of the m-example spread scaled by sqrt(m / n)")


def vector_bytes(n_examples: int, num_layers: int, hidden_size: int) -> int:
    """Bytes of one model's stored vectors: one float64 vector per example for each layer 0..L."""
    return n_examples * (num_layers + 1) * hidden_size * BYTES_PER_NUMBER


class ExampleVectors:
    """One model's pooled vectors under one pooling: per layer, a float64 row per example, in the order fed.

    :meth:`add` appends a capture once however many metrics, comparisons and null
    instances call it (through ``Capture.derived``).
    """

    def __init__(self, tokens: str) -> None:
        self.tokens = tokens
        self._parts: list[tuple[torch.Tensor, ...]] = []
        self._matrices: tuple[torch.Tensor, ...] | None = None
        self.n = 0

    def add(self, capture: Capture, batch: Batch) -> None:
        capture.derived(("probekit.example_vectors.stored", self), lambda: self._append(pooled(capture, batch, self.tokens)))

    def _append(self, layers: tuple[torch.Tensor, ...]) -> bool:
        if self._matrices is not None:
            raise RuntimeError("vectors added after they were read")
        self._parts.append(layers)
        self.n += layers[0].shape[0]
        return True

    def matrices(self) -> tuple[torch.Tensor, ...]:
        """Per layer 0..L, the (examples, hidden) float64 matrix of every example fed."""
        if self._matrices is None:
            if not self._parts:
                raise MetricError("no examples were fed")
            self._matrices = tuple(torch.cat(layer) for layer in zip(*self._parts))
            self._parts = []
        return self._matrices

    @property
    def nbytes(self) -> int:
        stored = self._matrices if self._matrices is not None else [t for part in self._parts for t in part]
        return sum(t.numel() * t.element_size() for t in stored)


class ExampleVectorStore:
    """The per-example state of one pass: an :class:`ExampleVectors` per model and pooling, made on first request."""

    def __init__(self) -> None:
        self._vectors: dict[tuple[str, str], ExampleVectors] = {}

    def vectors(self, model: str, tokens: str) -> ExampleVectors:
        return self._vectors.setdefault((model, tokens), ExampleVectors(tokens))

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self._vectors.values())


def pooled(capture: Capture, batch: Batch, tokens: str) -> tuple[torch.Tensor, ...]:
    """Each layer's (batch, hidden) float64 pooled vectors of ``capture``, computed once per capture and pooling."""
    return capture.derived(("probekit.example_vectors", tokens), lambda: tuple(
        datapoints(h.to(torch.float64), batch.attention_mask, tokens) for h in capture.hidden_states))


class PerExampleMetric(Metric):
    """A metric of every example's pooled vector per layer: the per-example kind of state.

    A subclass sets ``layer_value(x, y)`` (one layer's (n, hidden) float64 matrices of
    models a and b, row i = example i) or overrides ``measure(xs, ys)`` for rows of
    another shape. probekit gives it bootstrap intervals by resampling example indices
    (``resampling`` says how) and a permutation null by shuffling the pairing of a's and
    b's examples. Its ``Options`` must have the ``tokens`` field of :class:`PoolingOptions`.
    """

    state = "per_example"
    needs = frozenset({"hidden_states"})
    layers = "hidden_states"
    Options = PoolingOptions
    resampling: ClassVar[Resample] = Resample()

    def __init__(self, options: Any, context: MetricContext) -> None:
        super().__init__(options, context)
        store = context.examples if context.examples is not None else ExampleVectorStore()
        self.vectors_a = store.vectors(_model_key(context.model_a, "a"), options.tokens)
        self.vectors_b = store.vectors(_model_key(context.model_b, "b"), options.tokens)
        self.n_examples = 0
        self._shuffles: list[torch.Tensor] = []  # a null instance's pairing, batch by batch

    def update(self, a: Capture, b: Capture, batch: Batch) -> None:
        self.vectors_a.add(a, batch)
        self.vectors_b.add(b, batch)
        self.n_examples += batch.size

    def update_permuted(self, a: Capture, b: Capture, batch: Batch, generator: torch.Generator) -> None:
        self._shuffles.append(torch.randperm(batch.size, generator=generator) + self.n_examples)
        self.update(a, b, batch)

    def matrices(self) -> tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]:
        """Every example's vectors per layer of a and of b (b's rows shuffled for a null instance)."""
        xs, ys = self.vectors_a.matrices(), self.vectors_b.matrices()
        if len(xs[0]) != self.n_examples or len(ys[0]) != self.n_examples:
            raise RuntimeError(f"{self.n_examples} examples fed, {len(xs[0])} and {len(ys[0])} stored")
        if self._shuffles:
            order = torch.cat(self._shuffles).to(ys[0].device)
            ys = tuple(y[order] for y in ys)
        return xs, ys

    def finalize(self) -> list[Row]:
        return self.finalize_on(None)

    def finalize_on(self, index: torch.Tensor | None) -> list[Row]:
        """The rows on the examples at ``index`` (a 1-D tensor of positions, repeats allowed; None: all)."""
        xs, ys = self.matrices()
        if index is not None:
            index = index.to(xs[0].device)
            xs, ys = [x[index] for x in xs], [y[index] for y in ys]
        return self.measure(xs, ys)

    def measure(self, xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> list[Row]:
        """The rows of these matrices: by default one row per layer of ``layer_value``."""
        n = len(xs[0])
        return [Row(layer, self.layer_value(x, y), n_examples=n, n_tokens=n)
                for layer, (x, y) in enumerate(zip(xs, ys, strict=True))]

    def layer_value(self, x: torch.Tensor, y: torch.Tensor) -> float:
        raise NotImplementedError

    @classmethod
    def below_examples(cls, option: str, value: int, facts: SpecFacts) -> list[OptionError]:
        """For ``check_spec``: ``value`` (a count of neighbours, say) must stay below the examples of every dataset
        the metric measures, and of the subsamples its intervals draw."""
        if not facts.examples:
            return []
        data, n = min(facts.examples.items(), key=lambda item: item[1])
        subsampled = cls.resampling is not None and not cls.resampling.replace
        m = round(n * cls.resampling.fraction) if subsampled else n
        if value < m:
            return []
        held = f"; interval subsamples hold {m}" if subsampled else ""
        return [OptionError(option, f"an integer below {m} (data.{data} has {n} examples{held})",
                            f"lower {option}, or raise data.{data}.limit above {math.ceil((value + 1) * n / m)}")]


def is_per_example(metric_cls: type[Metric]) -> bool:
    """Whether ``metric_cls`` keeps the per-example kind of state."""
    return getattr(metric_cls, "state", "additive") == "per_example"


def _model_key(model: Any, side: str) -> str:
    return str(getattr(model, "name", side))
