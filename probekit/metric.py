"""The metric interface every plugin implements, and the validation of its options.

A metric is fed batch by batch and keeps bounded state::

    metric = MetricClass(options, context)
    for batch in data:                      # one forward pass per model per batch
        metric.update(capture_a, capture_b, batch)
    rows = metric.finalize()                # per layer (and per head) values
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from probekit.capture import Batch, Capture
    from probekit.models import LoadedModel

#: What a metric can ask of the forward pass (``"models"`` hands it both models
#: through the context, for metrics that run their own forwards).
NEEDS = frozenset({"hidden_states", "attentions", "models"})


@dataclass(frozen=True)
class Row:
    """One measured number. ``head`` is None for a layer's value.

    ``details`` carries metric-specific numbers (for SVCCA: ``k_x``, ``k_y``); each
    key becomes a column of the results table.
    """

    layer: int
    value: float
    head: int | None = None
    n_examples: int = 0
    n_tokens: int = 0
    details: Mapping[str, float | int | str] = field(default_factory=dict)


@dataclass(frozen=True)
class NoOptions:
    """For metrics that take no options."""


@dataclass(frozen=True)
class MetricContext:
    """What a metric instance knows about the comparison it measures."""

    comparison: str
    model_a: LoadedModel
    model_b: LoadedModel
    num_layers: int
    device: Any


class Metric:
    """Base class of every metric. Subclass it, set the class attributes, register it.

    ``name``: how specs refer to it. ``needs``: a subset of :data:`NEEDS`.
    ``Options``: a frozen dataclass; each field's type and default is the
    option's contract (``bool``, ``int``, ``float``, ``str``, ``Literal[...]`` and
    ``X | None`` are checked). ``unit``: the label of its values in reports.
    ``per_head``: whether it reports heads too (expectations may then select a ``head``).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    unit: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()
    per_head: ClassVar[bool] = False  # True when finalize also emits per-head rows
    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Any, context: MetricContext) -> None:
        self.options = options
        self.context = context

    @classmethod
    def unit_of(cls, options: Any) -> str:
        """The unit of the values under these options (``unit`` unless an option changes it)."""
        return cls.unit

    def update(self, a: Capture, b: Capture, batch: Batch) -> None:
        raise NotImplementedError

    def finalize(self) -> list[Row]:
        raise NotImplementedError


def check_metric_class(cls: Any) -> list[str]:
    """What is wrong with a class registered as a metric (empty when nothing is)."""
    if not (isinstance(cls, type) and issubclass(cls, Metric)):
        return [f"{cls!r} is not a subclass of probekit.Metric"]
    problems = []
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        problems.append(f"{cls.__qualname__} has no `name`")
    unknown = set(cls.needs) - NEEDS
    if unknown:
        problems.append(f"{cls.__qualname__}.needs has {sorted(unknown)}; expected a subset of {sorted(NEEDS)}")
    if not dataclasses.is_dataclass(cls.Options):
        problems.append(f"{cls.__qualname__}.Options is not a dataclass")
    return problems


def describe_type(annotation: Any) -> str:
    """A reader's name for an option type: 'int', 'one of "a", "b"', 'float or none'."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("none" if a is type(None) else describe_type(a) for a in typing.get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def value_matches(annotation: Any, value: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return value in typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(value_matches(a, value) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def option_fields(metric_cls: type[Metric]) -> dict[str, tuple[Any, Any]]:
    """Option name -> (type, default) of a metric's Options dataclass."""
    hints = typing.get_type_hints(metric_cls.Options)
    return {f.name: (hints[f.name], f.default) for f in dataclasses.fields(metric_cls.Options)}


def parse_options(metric_cls: type[Metric], table: Mapping[str, Any]) -> tuple[Any, list[tuple[str, str, str]]]:
    """Build ``metric_cls.Options`` from a spec table.

    Returns the options (None when there were problems) and the problems as
    ``(option, found, expected)`` triples, so the caller can name the spec key.
    """
    fields = option_fields(metric_cls)
    problems = []
    values = {}
    for key, value in table.items():
        if key not in fields:
            known = ", ".join(fields) or "no options"
            problems.append((key, "an unknown option", f"one of: {known}"))
            continue
        annotation, _ = fields[key]
        if value_matches(annotation, value):
            values[key] = float(value) if annotation is float else value
        else:
            problems.append((key, repr(value), describe_type(annotation)))
    if problems:
        return None, problems
    try:
        return metric_cls.Options(**values), []
    except (TypeError, ValueError) as error:  # an Options.__post_init__ may check ranges
        return None, [("", str(error), "options that the metric accepts")]
