"""Reading one TOML table of a spec, recording every problem instead of stopping at the first."""
from __future__ import annotations

from typing import Any

from probekit.errors import Problem, did_you_mean, type_name


class _Table:
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

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, *, choices=None, positive=False):
        self.seen[key] = None
        if key not in self.data:
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        is_number = float in kinds and isinstance(value, int) and not isinstance(value, bool)
        if not (isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)) and not is_number:
            expected = " or ".join(type_name(k()) for k in kinds)
            self.problem(key, f"{type_name(value)} {value!r}", expected)
            return default
        if choices is not None and value not in choices:
            self.problem(key, repr(value), "one of " + ", ".join(map(repr, choices)), did_you_mean(value, choices))
            return default
        if positive and value <= 0:
            self.problem(key, repr(value), "a positive number")
            return default
        return float(value) if is_number else value

    def finish(self, allowed: list[str] | None = None) -> None:
        allowed = allowed if allowed is not None else list(self.seen)
        for key in self.data:
            if key not in allowed:
                self.problem(key, "an unknown key", "one of " + ", ".join(allowed), did_you_mean(key, allowed))
