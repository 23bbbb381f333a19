"""The probe plan: which models run on which data, so each distinct model runs once per batch.

A probe can never cost less than one forward pass of each distinct model over each
distinct dataset. The plan groups a spec's comparisons by their evaluation data; in
a group every distinct model (a snapshot counts as its own model) runs once per
batch, and its capture feeds every comparison and metric that uses it. A model is
kept loaded while a later group still needs it and freed after its last group.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from probekit.spec.model import ComparisonSpec, Spec


@dataclass(frozen=True)
class ProbeGroup:
    """The comparisons on one dataset and the distinct models they need.

    ``needs[model]`` is what that model's capture must hold: the union of what the
    metrics of every comparison it takes part in need (a model whose consumers need
    no attention maps runs with fused attention).
    """

    data: str
    comparisons: tuple[ComparisonSpec, ...]
    models: tuple[str, ...]
    needs: dict[str, frozenset[str]]

    @property
    def forwards_per_batch(self) -> int:
        return len(self.models)


def plan(spec: Spec) -> list[ProbeGroup]:
    """The spec's comparisons grouped by data, in the order the spec first names each dataset."""
    by_data: dict[str, list[ComparisonSpec]] = {}
    for comparison in spec.comparisons:
        by_data.setdefault(comparison.data, []).append(comparison)
    return [_group(spec, data, comparisons) for data, comparisons in by_data.items()]


def _group(spec: Spec, data: str, comparisons: Sequence[ComparisonSpec]) -> ProbeGroup:
    needs: dict[str, frozenset[str]] = {}
    for comparison in comparisons:
        wanted = frozenset().union(*(spec.metrics[m].metric_class.needs for m in comparison.metrics))
        for side in (comparison.a, comparison.b):
            needs[str(side)] = needs.get(str(side), frozenset()) | wanted
    return ProbeGroup(data, tuple(comparisons), tuple(needs), needs)


def last_use(groups: Sequence[ProbeGroup]) -> dict[str, int]:
    """The index of the last group each model is needed in: after it, the model can be freed."""
    return {model: index for index, group in enumerate(groups) for model in group.models}


def naive_forwards(spec: Spec) -> int:
    """Forward passes per batch when each comparison runs its two models itself (the order before the plan)."""
    return 2 * len(spec.comparisons)
