"""Metric and data-source options: an ``Options`` dataclass built from a spec table by :mod:`probekit.declare`."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from probekit.declare import SCALAR_TYPES, describe_type, fields_of, is_supported, parse
from probekit.errors import Problem

__all__ = ["SCALAR_TYPES", "describe_type", "option_fields", "parse_options", "unsupported_options"]


def option_fields(options_cls: type) -> dict[str, tuple[Any, Any]]:
    """Option name -> (type, default) of an Options dataclass."""
    return fields_of(options_cls)


def unsupported_options(options_cls: type) -> list[str]:
    """'name: type' for each field whose type a spec value cannot be checked against."""
    try:
        fields = option_fields(options_cls)
    except (NameError, TypeError) as error:  # an annotation that does not resolve
        return [f"its annotations do not resolve ({error})"]
    return [f"{name}: {getattr(annotation, '__name__', annotation)}" for name, (annotation, _) in fields.items()
            if not is_supported(annotation)]


def parse_options(options_cls: type, table: Mapping[str, Any], path: str = "") -> tuple[Any, list[Problem]]:
    """Build ``options_cls`` from a spec table: the options (None when there were problems) and the
    problems, each under ``path`` (the spec key of the table, e.g. ``metrics.svcca``)."""
    problems: list[Problem] = []
    options = parse(options_cls, table, path, problems)
    return options, problems
