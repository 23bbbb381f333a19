"""What registration checks of a metric class, before any spec uses it."""
from __future__ import annotations

import dataclasses
from typing import Any

from probekit.metrics.base import (
    DETAIL_TYPES,
    DIRECTIONS,
    LAYER_RANGES,
    NEEDS,
    SHAPES,
    STATE_KINDS,
    Metric,
)
from probekit.metrics.options import unsupported_options


def check_metric_class(cls: Any) -> list[str]:
    """What is wrong with a class registered as a metric (empty when nothing is)."""
    if not (isinstance(cls, type) and issubclass(cls, Metric)):
        return [f"{cls!r} is not a subclass of probekit.Metric"]
    label = cls.__qualname__
    problems = []
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        problems.append(f"{label} has no `name`")
    unknown = set(cls.needs) - NEEDS
    if unknown:
        problems.append(f"{label}.needs has {sorted(unknown)}; expected a subset of {sorted(NEEDS)}")
    if cls.direction not in DIRECTIONS:
        problems.append(f"{label}.direction is {cls.direction!r}; expected one of {', '.join(map(repr, DIRECTIONS))}")
    if cls.layers not in LAYER_RANGES:
        problems.append(f"{label}.layers is {cls.layers!r}; expected one of {', '.join(map(repr, LAYER_RANGES))}")
    if cls.shape not in SHAPES:
        problems.append(f"{label}.shape is {cls.shape!r}; expected one of {', '.join(map(repr, SHAPES))}")
    if cls.state not in STATE_KINDS:
        problems.append(f"{label}.state is {cls.state!r}; expected one of {', '.join(map(repr, STATE_KINDS))}")
    elif cls.state == "per_example" and not callable(getattr(cls, "finalize_on", None)):
        problems.append(f"{label}.state is 'per_example' but it is not a probekit.PerExampleMetric")
    for key, kind in dict(cls.details).items():
        if kind not in DETAIL_TYPES:
            problems.append(f"{label}.details[{key!r}] is {kind!r}; expected one of int, float, str, bool")
    if not dataclasses.is_dataclass(cls.Options):
        problems.append(f"{label}.Options is not a dataclass")
    else:
        problems.extend(f"{label}.Options.{field} is not a type a spec can give (expected bool, int, float, str, "
                        "Literal[...], tuple[T, ...] of those, or X | None)" for field in unsupported_options(cls.Options))
    return problems
