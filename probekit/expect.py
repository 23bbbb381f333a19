"""Expectations about layer trends (``[[expect]]`` in a spec)."""
from __future__ import annotations


def parse_expectations(tables, spec, problems):
    from probekit.spec import Problem

    for index, table in enumerate(tables):
        if not isinstance(table, dict):
            problems.append(Problem(f"expect[{index}]", type(table).__name__, "a table"))
    return [t for t in tables if isinstance(t, dict)]
