"""The ``task`` data source: probekit's built-in tasks, generated offline (``probekit.data.tasks``)."""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import probekit
from probekit.sources import TASKS, load_task
from probekit.sources import task_generators as tasks_module


class TaskSource(probekit.DataSource):
    """``task = "nli"``, ``split = "train"`` (or ``"validation"``)."""

    kind = "task"
    description = "a built-in task generated offline: " + ", ".join(TASKS)

    @dataclass(frozen=True)
    class Options:
        task: str
        split: str = "train"

    def validate(self, options, base_dir: Path):
        if options.task not in TASKS:
            expected = "a built-in task: " + ", ".join(TASKS)
            return options, [probekit.Problem("task", repr(options.task), expected, probekit.did_you_mean(options.task, TASKS))]
        splits = TASKS[options.task].sizes
        if options.split not in splits:
            expected = "one of " + ", ".join(splits)
            return options, [probekit.Problem("split", repr(options.split), expected, probekit.did_you_mean(options.split, splits))]
        return options, []

    def load(self, options, where: str) -> list[probekit.Example]:
        try:
            return load_task(options.task, options.split)
        except ValueError as error:
            raise probekit.DataError(f"{where}: {error}") from error

    def fingerprint(self, options) -> str:
        return _digest(options.task, options.split, _generator_version())

    def validation_split(self, options):
        return None if options.split == "validation" else replace(options, split="validation")


@functools.cache
def _generator_version() -> str:
    # The generator's templates define the examples, so any edit to them is a new version.
    return hashlib.sha256(Path(tasks_module.__file__).read_bytes()).hexdigest()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:20]


@probekit.hookimpl
def probekit_register_sources(register):
    register(TaskSource)
