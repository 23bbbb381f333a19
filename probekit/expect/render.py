"""Showing expectation outcomes in a terminal: a table per failure, a summary line."""
from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.rule import Rule
from rich.text import Text

from probekit.expect.evaluate import Outcome, format_table  # noqa: F401 - format_table is part of this module's surface


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
