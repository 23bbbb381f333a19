"""Executors: who runs a spec's fine-tunes and probe groups.

``local`` (the default) runs them in this process, in order; ``ray`` runs them as tasks on a
Ray cluster and gathers their rows here (executors/ray.py, docs/scale-out.md). Either way the
Session writes the results, the report and the figures.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from probekit.engine.executors.local import LocalExecutor
from probekit.engine.executors.ray import RayExecutor

Executor = LocalExecutor | RayExecutor


def executor_for(name: str, *, address: str | None, plugins: Iterable[str], overrides: Mapping[str, Any],
                 autoload: bool | None) -> Executor:
    """The executor called ``name`` ([run] executor, --executor); the Ray one rebuilds the spec on its workers with
    the session's plugins and overrides."""
    if name == "ray":
        return RayExecutor(address, tuple(plugins), dict(overrides), autoload)
    return LocalExecutor()
