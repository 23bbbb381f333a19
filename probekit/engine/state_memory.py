"""What per-example metric state costs, counted against ``[run] memory``.

A per-example metric (``probekit.PerExampleMetric``) has probekit keep one float64
vector per example per layer of each of its models: ``examples x (L + 1) x hidden x 8``
bytes per model and pooling, shared by every metric, comparison and null draw of a pass
(metrics/per_example.py). A pass whose stored vectors and model weights exceed the
budget is refused: before any model loads when every size is known from the models'
configs, else when the pass's models are loaded (the per-example metrics of that pass
alone are then dropped; everything else is measured).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from probekit.errors import ModelError
from probekit.metrics.per_example import is_per_example, vector_bytes
from probekit.models import loading
from probekit.spec.model import ComparisonSpec, Spec


@dataclass(frozen=True)
class StoredVectors:
    """One model's vectors under one pooling, and the metrics (spec labels) that ask for them."""

    model: str
    tokens: str
    metrics: tuple[str, ...]


def stored_vectors(spec: Spec, comparisons: Iterable[ComparisonSpec]) -> list[StoredVectors]:
    """What a pass over ``comparisons`` stores: each model and pooling once, whoever asks."""
    askers: dict[tuple[str, str], list[str]] = {}
    for comparison in comparisons:
        for label in comparison.metrics:
            metric = spec.metrics[label]
            if metric.metric_class is None or not is_per_example(metric.metric_class):
                continue
            for side in (str(comparison.a), str(comparison.b)):
                askers.setdefault((side, metric.options.tokens), []).append(label)
    return [StoredVectors(model, tokens, tuple(dict.fromkeys(labels))) for (model, tokens), labels in askers.items()]


def state_bytes(stored: Iterable[StoredVectors], n_examples: int, shape_of: Callable[[str], tuple[int, int]]) -> int:
    """Bytes of a pass's stored vectors; ``shape_of(model)`` is (transformer layers, hidden size)."""
    return sum(vector_bytes(n_examples, *shape_of(s.model)) for s in stored)


def refusal(spec: Spec, data: str, stored: list[StoredVectors], n_examples: int,
            shape_of: Callable[[str], tuple[int, int]], budget: int, weights: int) -> str:
    """The one-screen message of a pass whose per-example state does not fit, or "" when it fits."""
    total = state_bytes(stored, n_examples, shape_of)
    if total + weights <= budget:
        return ""
    metrics = ", ".join(f"metrics.{label}" for label in dict.fromkeys(m for s in stored for m in s.metrics))
    layers, hidden = shape_of(stored[0].model)
    return (f"{spec.path}: {metrics} keep one float64 vector per example per layer: {n_examples} examples of "
            f"data.{data.partition(':')[0]} x {layers + 1} layers x {hidden} numbers x 8 bytes x {len(stored)} "
            f"model(s) = {_gb(total)}, and [run] memory = {_gb(budget)} leaves {_gb(max(budget - weights, 0))} "
            f"after {_gb(weights)} of weights; fix: lower data.{data.partition(':')[0]}.limit below "
            f"{max(n_examples * max(budget - weights, 0) // max(total, 1), 0)} or raise [run] memory")


def check_before_loading(spec: Spec, groups, examples: Mapping[str, list], budget: int) -> None:
    """ModelError (exit 2) for a pass whose per-example state cannot fit, when every size is known from configs."""
    for group in groups:
        stored = stored_vectors(spec, group.comparisons)
        if not stored:
            continue
        shapes = {s.model: declared_shape(spec, s.model) for s in stored}
        sizes = [declared_weights(spec, model) for model in group.models]
        if any(shape is None for shape in shapes.values()):
            continue  # checked again once the models are loaded
        weights = sum(size or 0 for size in sizes)
        message = refusal(spec, group.data, stored, len(examples[group.data]), shapes.__getitem__, budget, weights)
        if message:
            raise ModelError(message)


def declared_shape(spec: Spec, ref: str) -> tuple[int, int] | None:
    """(layers, hidden size) of a comparison side from its config on disk; a fine-tune has its base's shape."""
    source = _declared_source(spec, ref.partition("@")[0])
    return None if source is None else loading.saved_shape(source)


def declared_weights(spec: Spec, ref: str) -> int | None:
    source = _declared_source(spec, ref.partition("@")[0])
    return None if source is None else loading.weights_size(source)


def _declared_source(spec: Spec, name: str) -> str | None:
    model = spec.models[name]
    if model.is_finetuned:
        return _declared_source(spec, model.base)
    if model.is_series:
        point = model.series[-1]
        return point.folder if model.id is None and point.folder else model.id
    return model.id


def _gb(size: int) -> str:
    return f"{size / 2**30:.3f} GB"
