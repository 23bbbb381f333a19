"""Metric options checked against what a spec declares (``Metric.check_spec``), at ``probekit check`` time.

The one place spec validation asks the metrics: after the spec parses, each metric sees the
facts of the comparisons that use it (examples after ``limit``, layer counts, labels) and
returns its problems as ``OptionError``s, reported under ``metrics.<label>.<option>``. Data is
read only when a metric asks for it; no model loads.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from probekit.engine.examples import ExampleStore
from probekit.engine.state_memory import declared_shape
from probekit.errors import Problem
from probekit.metrics.base import SpecFacts
from probekit.spec.model import Spec


class _Lazy(Mapping):
    """A mapping whose values are computed on first access (reading data only for a metric that asks)."""

    def __init__(self, keys: tuple[str, ...], compute: Callable[[str], Any]) -> None:
        self._keys, self._compute, self._values = keys, compute, {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._keys:
            raise KeyError(key)
        if key not in self._values:
            self._values[key] = self._compute(key)
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def spec_fact_problems(spec: Spec, sources: Mapping[str, Any]) -> list[Problem]:
    """Every metric's problems with the spec's facts, as spec problems with the option's key path."""
    examples = ExampleStore(spec, sources)
    problems = []
    for label, metric in spec.metrics.items():
        if metric.metric_class is None or metric.options is None:
            continue
        using = [c for c in spec.comparisons if label in c.metrics]
        data = tuple(dict.fromkeys(c.data for c in using))
        models = tuple(dict.fromkeys(str(side) for c in using for side in (c.a, c.b)))
        layers = {m: shape[0] for m in models if (shape := declared_shape(spec, m)) is not None}
        facts = SpecFacts(_Lazy(data, lambda d: len(examples[d])), layers,
                          _Lazy(data, lambda d: tuple(sorted({str(e.label) for e in examples[d] if e.label is not None}))))
        for error in metric.metric_class.check_spec(metric.options, facts):
            option, found, expected = error.problem(metric.options)
            problems.append(Problem(f"metrics.{label}.{option}", found, expected))
    return problems
