"""Metric and data-source options: an ``Options`` dataclass built from a spec table by :mod:`probekit.declare`."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from probekit.declare import SCALAR_TYPES, Invalid, describe_type, fields_of, is_supported, parse
from probekit.errors import Problem

__all__ = ["SCALAR_TYPES", "OptionError", "describe_type", "option_fields", "parse_options", "unsupported_options"]


class OptionError(Invalid):
    """A bad option value, raised from ``Options.__post_init__`` (or returned by ``Metric.check_spec``).

    ``option``: the field's name (the spec's key is ``metrics.<label>.<option>``); ``expected``:
    what a good value is ("an integer of at least 1"); ``fix``: what to change ("set k = 10").
    """

    def __init__(self, option: str, expected: str, fix: str = "") -> None:
        super().__init__(expected, fix)
        self.option, self.fix = option, fix

    def __str__(self) -> str:
        return f"{self.option}: expected {self.expected}" + (f" ({self.fix})" if self.fix else "")

    def problem(self, options: Any) -> tuple[str, str, str]:
        """(option, found, expected) of this error for ``options`` (the values given, or the built options)."""
        value = options.get(self.option) if isinstance(options, Mapping) else getattr(options, self.option, None)
        return self.option, repr(value), self.expected + (f"; {self.fix}" if self.fix else "")


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
