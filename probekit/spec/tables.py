"""Reading one TOML table of a spec key by key, through the one validator (:mod:`probekit.declare`).

For tables whose keys depend on each other (a model, a data source, a comparison); sections that are
plain declarations (``[run]``, ``[finetune]``, options, expectation kinds) are parsed whole by
:func:`probekit.declare.parse`.
"""
from __future__ import annotations

from typing import Annotated, Any, Union

from probekit.declare import Rule, parse_value, positive
from probekit.errors import Problem, did_you_mean, type_name


class TableReader:
    """Reads one TOML table, recording every problem instead of stopping at the first."""

    def __init__(self, data: Any, key: str, problems: list[Problem]) -> None:
        self.key = key
        self.problems = problems
        self.seen: dict[str, None] = {}  # ordered: messages list keys as the format reads them
        if not isinstance(data, dict):
            self.problem("", type_name(data), "a table")
            data = {}
        self.data = data

    def path(self, key: str) -> str:
        return f"{self.key}.{key}" if self.key and key else (self.key or key)

    def problem(self, key: str, found: str, expected: str, hint: str = "") -> None:
        self.problems.append(Problem(self.path(key), found, expected, hint))

    def get(self, key: str, kind: Any, default: Any = None, *, choices=None, positive_only: bool = False) -> Any:
        """``key``'s value checked against ``kind`` (a type or a tuple of types); ``default`` when absent or bad."""
        self.seen[key] = None
        if key not in self.data:
            return default
        annotation = Union[kind] if isinstance(kind, tuple) else kind  # noqa: UP007 - built from a tuple
        if choices is not None:
            annotation = Annotated[annotation, Rule(lambda v: v in choices, "one of " + ", ".join(map(repr, choices)),
                                                    tuple(choices))]
        if positive_only:
            annotation = Annotated[annotation, positive]
        value = parse_value(annotation, self.data[key], self.path(key), self.problems)
        return default if value is None else value

    def finish(self, allowed: list[str] | None = None) -> None:
        allowed = allowed if allowed is not None else list(self.seen)
        for key in self.data:
            if key not in allowed:
                self.problem(key, "an unknown key", "one of " + ", ".join(allowed), did_you_mean(key, allowed))
