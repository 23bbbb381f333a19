"""The ``task`` data source: probekit's built-in tasks, generated offline by this plugin's ``generator``."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import astuple, dataclass, replace
from pathlib import Path

import probekit
from probekit.plugins.source_task.generator import TASKS, load_task
from probekit.plugins.source_task.tags import with_word_tags


class TaskSource(probekit.DataSource):
    """``task = "nli"``, ``split = "train"`` (or ``"validation"``)."""

    kind = "task"
    description = "a built-in task generated offline: " + ", ".join(TASKS)

    @dataclass(frozen=True)
    class Options:
        task: str
        split: str = "train"
        word_tags: bool = False  # each word tagged with its category (plugins/source_task/tags.py)

    def validate(self, options, base_dir: Path):
        if options.task not in TASKS:
            expected = "a built-in task: " + ", ".join(TASKS)
            return options, [probekit.Problem("task", repr(options.task), expected, probekit.did_you_mean(options.task, TASKS))]
        splits = TASKS[options.task].sizes
        if options.split not in splits:
            expected = "one of " + ", ".join(splits)
            return options, [probekit.Problem("split", repr(options.split), expected, probekit.did_you_mean(options.split, splits))]
        if options.word_tags and TASKS[options.task].pair:
            single = ", ".join(name for name, info in TASKS.items() if not info.pair)
            return options, [probekit.Problem("word_tags", "true", f"a single-sentence task ({single}): "
                                              f"{options.task!r} is a task of sentence pairs")]
        return options, []

    def load(self, options, where: str) -> list[probekit.Example]:
        try:
            examples = load_task(options.task, options.split)
        except ValueError as error:
            raise probekit.DataError(f"{where}: {error}") from error
        return with_word_tags(examples) if options.word_tags else examples

    def fingerprint(self, options) -> str:
        # The generated examples themselves, not the generator's source: an edit that leaves every
        # example as it was (a comment, a refactor) keeps cached results; one that changes any does not.
        return examples_digest(self.load(options, "fingerprint"))

    def validation_split(self, options):
        return None if options.split == "validation" else replace(options, split="validation")


def examples_digest(examples: Iterable[probekit.Example]) -> str:
    """A digest of examples' content (texts, labels, word tags), in order."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(repr(astuple(example)).encode("utf-8"))
    return digest.hexdigest()[:20]


@probekit.hookimpl
def probekit_register_sources(register):
    register(TaskSource)
