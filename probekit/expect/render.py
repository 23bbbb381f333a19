"""Showing expectation outcomes in a terminal: a table per failure, a summary line."""
from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.rule import Rule
from rich.text import Text

from probekit.expect.evaluate import Outcome


def format_table(outcome: Outcome) -> str:
    """comparison | layer | value | expected, one line per involved layer; '<-- fails' marks offenders."""
    if not outcome.values:
        return "(no values: " + outcome.reason + ")"
    with_groups = bool(outcome.groups)
    header = ["comparison", "layer", *(["group"] if with_groups else []), "value", "expected", ""]
    rows = []
    for comparison, values in outcome.values.items():
        for layer in sorted(values):
            key = (comparison, layer)
            value = values[layer]
            rows.append([
                comparison, str(layer), *([outcome.groups.get(key, "")] if with_groups else []),
                "nan" if value is None else f"{value:.6g}", outcome.expected.get(key, ""),
                "<-- fails" if key in outcome.offending else "",
            ])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    right = {1, 3 if with_groups else 2}

    def line(cells) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


def summary(outcomes: Iterable[Outcome]) -> str:
    """'3 passed, 1 failed'."""
    outcomes = list(outcomes)
    failed = sum(not o.passed for o in outcomes)
    passed = len(outcomes) - failed
    parts = ([f"{passed} passed"] if passed or not failed else []) + ([f"{failed} failed"] if failed else [])
    return ", ".join(parts)


def render_outcomes(outcomes: Iterable[Outcome], console: Console) -> None:
    """One line per expectation (PASSED / FAILED, name, reason), then pytest's summary line."""

    outcomes = list(outcomes)
    if not outcomes:
        return
    console.print(Text("\nexpectations", style="bold"))
    for outcome in outcomes:
        status = Text("PASSED", style="bold green") if outcome.passed else Text("FAILED", style="bold red")
        console.print(Text.assemble(status, " ", (outcome.name, "bold"), " - ", outcome.reason), soft_wrap=True)
    failed = any(not o.passed for o in outcomes)
    console.print(Rule(Text(summary(outcomes), style="bold red" if failed else "bold green"),
                       style="red" if failed else "green"))
