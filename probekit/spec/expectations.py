"""``[[expect]]`` tables: each picks one registered expectation kind by its trigger keys, which validates itself.

The kinds (bounds, trend, contrast, ordering, share, baseline, learned and any a plugin adds through
``probekit_register_expectations``) are classes that own their fields, checks, wording and evaluation
(:mod:`probekit.expect.kinds`); this module only dispatches a table to its kind, passed in as a mapping
(kind name -> class) from the spec's plugin set, and refuses two expectations of one name.
docs/testing.md documents the syntax.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from probekit.declare import fields_of
from probekit.errors import Problem, type_name

if TYPE_CHECKING:
    from probekit.spec.model import Spec

#: Keys every kind about layers shares; a kind that takes none of them (learned) names them itself.
_SHARED = ("name", "comparison", "comparisons", "metric", "layers", "head")


def parse_expectations(tables: Any, spec: Spec, kinds: Mapping[str, Any], problems: list[Problem]) -> list[Any]:
    """Validate the raw ``[[expect]]`` tables against the (otherwise complete) spec; every problem is appended
    to ``problems`` with its key path (``expect[2].layers``); the expectations that validated are returned."""
    if not isinstance(tables, list):
        problems.append(Problem("expect", type_name(tables), "an array of tables: [[expect]]"))
        return []
    expectations: list[Any] = []
    names: dict[str, int] = {}
    for index, table in enumerate(tables):
        key = f"expect[{index}]"
        if not isinstance(table, dict):
            problems.append(Problem(key, type_name(table), "a table: [[expect]] with comparison, metric, layers and "
                                    "one assertion"))
            continue
        expectation = _parse_table(key, table, spec, kinds, problems)
        if expectation is None:
            continue
        if expectation.name in names:
            problems.append(Problem(f"{key}.name", repr(expectation.name), "a name no other expectation uses "
                                    f"(expect[{names[expectation.name]}] has it)"))
            continue
        names[expectation.name] = index
        expectations.append(expectation)
    return expectations


def _parse_table(key: str, table: dict, spec: Spec, kinds: Mapping[str, Any], problems: list[Problem]) -> Any:
    chosen = [kind for kind in kinds.values() if any(trigger in table for trigger in kind.triggers)]
    if len(chosen) != 1:
        triggers = ", ".join(" / ".join(kind.triggers) + ("" if name in kind.triggers else f" ({name})")
                             for name, kind in kinds.items())
        found = "no assertion" if not chosen else "several assertions: " + ", ".join(kind.kind for kind in chosen)
        expected = (f"exactly one of: {triggers}" if not chosen else
                    "exactly one assertion per [[expect]] (split it into several)")
        problems.append(Problem(key, found, expected))
        return None
    kind = chosen[0]
    name = table.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        problems.append(Problem(f"{key}.name", repr(name), "a name for the test, or no `name` key"))
        return None
    own = set(fields_of(kind))
    strays = {k: [n for n, other in kinds.items() if k in fields_of(other)] for k in table if k not in own}
    strays = {k: owners for k, owners in strays.items() if owners and k not in _SHARED}
    for stray, owners in strays.items():
        problems.append(Problem(f"{key}.{stray}", f"`{stray}` in a {kind.kind} expectation",
                                f"`{stray}` only in " + " or ".join(f"{o} expectations" for o in owners)))
    found = kind.from_table({k: v for k, v in table.items() if k not in strays}, key, spec, problems)
    return None if strays else found
