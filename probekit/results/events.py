"""A run's events: errors (a metric that could not measure), failures (a plugin bug) and notes, as records.

Each is stored in the results' metadata (``events``) and kept in a ``RunResult`` as an :class:`Event`, never
as prose to be parsed back: a comparison named ``"a / b"`` stays one comparison.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

EventKind = Literal["error", "failure", "note"]


@dataclass(frozen=True)
class Event:
    """One thing a run reports: ``kind`` "error" (bad input: exit 2), "failure" (a plugin bug or a file that could
    not be written: exit 3) or "note" (the rows stand); ``comparison`` and ``metric`` are "" where none applies."""

    kind: EventKind
    message: str
    comparison: str = ""
    metric: str = ""

    def __str__(self) -> str:
        """'comparison / metric: message', for people (never read back)."""
        where = " / ".join(part for part in (self.comparison, self.metric) if part)
        return f"{where}: {self.message}" if where else self.message

    def record(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> Event:
        return cls(kind=record.get("kind", "note"), message=str(record.get("message", "")),
                   comparison=str(record.get("comparison") or ""), metric=str(record.get("metric") or ""))


_LEGACY_KEYS: tuple[tuple[str, EventKind], ...] = (("errors", "error"), ("failures", "failure"), ("warnings", "note"))


def events_of(meta: Mapping[str, Any], *kinds: EventKind) -> list[Event]:
    """The events of a results file's metadata, of the given kinds (every kind when none is given)."""
    found = [Event.of(r) for r in meta.get("events") or [] if isinstance(r, Mapping)]
    # Files written before events (schema 3 and older) kept plain strings: each stays one whole message.
    found += [Event(kind, str(message)) for key, kind in _LEGACY_KEYS for message in meta.get(key) or []]
    return [e for e in found if not kinds or e.kind in kinds]


def records(events: Iterable[Event]) -> list[dict[str, str]]:
    return [event.record() for event in events]
