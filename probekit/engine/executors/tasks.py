"""A run as tasks an executor schedules: each fine-tune, then each probe group, with what each waits for and needs.

The local executor does not need them (it runs everything in order in this process); a
distributed one runs independent tasks at once. A task's worker rebuilds the spec from the
driver's text (:class:`Recipe`): a spec's metric classes may come from plugin files, which
do not pickle by reference, but the text and the plugin names do.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probekit.engine.plan import plan
from probekit.hooks.manager import PluginManager, build_manager
from probekit.models.loading import pick_device
from probekit.spec.load import declared_plugins, document_of, parse_spec
from probekit.spec.model import Spec


@dataclass(frozen=True)
class Task:
    """A fine-tune (``model``) or a probe group (``group``: its index in ``plan(spec)``, ``comparisons``: its own)."""

    name: str  # "fine-tune seed1", "probe dev": what `after` and the progress lines call it
    after: tuple[str, ...]  # the tasks whose results it needs
    num_cpus: int
    num_gpus: float
    model: str | None = None
    group: int | None = None
    comparisons: tuple[str, ...] = ()


def task_plan(spec: Spec) -> list[Task]:
    """The fine-tunes the comparisons need, bases first (a fine-tune of a fine-tune waits for its base's), then
    the probe groups of ``plan(spec)`` in plan order, each after the fine-tunes of its models."""
    cpus, gpus = spec.run.threads or 1, gpus_per_task(spec)
    finetunes: dict[str, Task] = {}

    def add(model: str) -> None:
        declared = spec.models[model]
        if not declared.is_finetuned or model in finetunes:
            return
        add(declared.base)
        after = (f"fine-tune {declared.base}",) if declared.base in finetunes else ()
        finetunes[model] = Task(f"fine-tune {model}", after, cpus, gpus, model=model)

    for comparison in spec.comparisons:
        add(comparison.a.model)
        add(comparison.b.model)
    probes = []
    for index, group in enumerate(plan(spec)):
        needed = dict.fromkeys(finetunes[side.model].name for c in group.comparisons for side in (c.a, c.b)
                               if side.model in finetunes)
        probes.append(Task(f"probe {group.data}", tuple(needed), cpus, gpus, group=index,
                           comparisons=tuple(c.name for c in group.comparisons)))
    return [*finetunes.values(), *probes]


def gpus_per_task(spec: Spec) -> float:
    """``[run] gpus_per_task``; by default one GPU per task when the spec runs on cuda (``auto`` resolved here)."""
    if spec.run.gpus_per_task is not None:
        return spec.run.gpus_per_task
    return 1.0 if pick_device(spec.run.device).type == "cuda" else 0.0


@dataclass(frozen=True)
class Recipe:
    """How a worker rebuilds the driver's spec and plugin set, and where the shared cache is."""

    path: Path  # absolute: the spec's relative paths (data, model folders, plugin files) resolve on any node
    shown: Path  # the path as the driver names it, in messages
    text: str
    plugins: tuple[str, ...]  # the session's -p names
    overrides: Mapping[str, Any]
    autoload: bool | None
    run_id: str
    cache: Path  # the driver's checkpoint cache, absolute: every node must see it there
    driver: str  # the driver's host, for messages

    def rebuild(self, task: Task) -> tuple[Spec, PluginManager]:
        """The spec a task runs: the driver's text and overrides, the shared cache, only the task's comparisons."""
        document = document_of(self.text, self.path)
        # The driver has shown the plugin set's warnings already.
        manager = build_manager([*self.plugins, *declared_plugins(document)], self.path.parent, autoload=self.autoload,
                                on_warning=lambda _: None)
        spec = parse_spec(document, path=self.path, text=self.text, sources=manager.sources, overrides=self.overrides,
                          metrics={name: info.metric for name, info in manager.metrics.items()},
                          kinds=manager.expectations)
        device = "cuda" if spec.run.device.startswith("cuda") else spec.run.device  # a task's GPU is its cuda:0
        run = dataclasses.replace(spec.run, cache_dir=str(self.cache), device=device)
        comparisons = tuple(c for c in spec.comparisons if c.name in task.comparisons)
        return dataclasses.replace(spec, path=self.shown, run=run, comparisons=comparisons), manager
