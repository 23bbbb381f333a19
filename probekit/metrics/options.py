"""Metric options: the types a spec may give them, and building an ``Options`` dataclass from a spec table."""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

SCALAR_TYPES = (bool, int, float, str)


def describe_type(annotation: Any) -> str:
    """A reader's name for an option type: 'int', 'one of "a", "b"', 'float or none', 'an array of int'."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("none" if a is type(None) else describe_type(a) for a in typing.get_args(annotation))
    if origin is tuple:
        return f"an array of {describe_type(typing.get_args(annotation)[0])}"
    return getattr(annotation, "__name__", str(annotation))


def is_supported(annotation: Any) -> bool:
    """Whether a spec value can be checked against ``annotation`` (what registration requires)."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return all(isinstance(v, SCALAR_TYPES) for v in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return all(a is type(None) or is_supported(a) for a in typing.get_args(annotation))
    if origin is tuple:
        arguments = typing.get_args(annotation)
        return len(arguments) == 2 and arguments[1] is Ellipsis and is_supported(arguments[0])
    return annotation in SCALAR_TYPES


def value_matches(annotation: Any, value: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return value in typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(value_matches(a, value) for a in typing.get_args(annotation))
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        return isinstance(value, list | tuple) and all(value_matches(item, v) for v in value)
    if annotation is type(None):
        return value is None
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _converted(annotation: Any, value: Any) -> Any:
    """TOML arrays become tuples (options are frozen); ints become floats where a float is declared."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        matching = next(a for a in typing.get_args(annotation) if value_matches(a, value))
        return _converted(matching, value)
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        return tuple(_converted(item, v) for v in value)
    return float(value) if annotation is float else value


def option_fields(options_cls: type) -> dict[str, tuple[Any, Any]]:
    """Option name -> (type, default) of an Options dataclass."""
    hints = typing.get_type_hints(options_cls)
    return {f.name: (hints[f.name], f.default) for f in dataclasses.fields(options_cls)}


def unsupported_options(options_cls: type) -> list[str]:
    """'name: type' for each field whose type a spec value cannot be checked against."""
    try:
        fields = option_fields(options_cls)
    except (NameError, TypeError) as error:  # an annotation that does not resolve
        return [f"its annotations do not resolve ({error})"]
    return [f"{name}: {describe_type(annotation)}" for name, (annotation, _) in fields.items()
            if not is_supported(annotation)]


def parse_options(options_cls: type, table: Mapping[str, Any]) -> tuple[Any, list[tuple[str, str, str]]]:
    """Build ``options_cls`` from a spec table.

    Returns the options (None when there were problems) and the problems as
    ``(option, found, expected)`` triples, so the caller can name the spec key.
    """
    fields = option_fields(options_cls)
    problems = []
    values = {}
    for key, value in table.items():
        if key not in fields:
            known = ", ".join(fields) or "no options"
            problems.append((key, "an unknown option", f"one of: {known}"))
            continue
        annotation, _ = fields[key]
        if value_matches(annotation, value):
            values[key] = _converted(annotation, value)
        else:
            problems.append((key, repr(value), describe_type(annotation)))
    if problems:
        return None, problems
    try:
        return options_cls(**values), []
    except (TypeError, ValueError) as error:  # an Options.__post_init__ may check ranges
        return None, [("", str(error), "options that the metric accepts")]
