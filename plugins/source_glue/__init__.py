"""The ``glue`` data source: a GLUE task (SST-2, MRPC, RTE, MNLI) from a local GLUE folder or the hub.

The folder is ``glue_dir`` (relative to the spec's folder), else ``$GLUE_DIR``; with
neither, the task is loaded from the Hugging Face hub (``probekit.plugins.source_glue.reader``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import probekit
from probekit.plugins.source_glue.reader import (
    GLUE_TASKS, HF_GLUE_PATH, default_glue_dir, get_task, load_glue, normalize_split, normalize_task,
)
from probekit.sources import resolve_path


class GlueSource(probekit.DataSource):
    """``glue = "rte"``, ``split = "validation"``, optional ``glue_dir``."""

    kind = "glue"
    description = "a GLUE task (" + ", ".join(GLUE_TASKS) + ") from a GLUE folder or the Hugging Face hub"

    @dataclass(frozen=True)
    class Options:
        glue: str
        split: str = "validation"
        glue_dir: str | None = None

    def validate(self, options, base_dir: Path):
        try:
            task = normalize_task(options.glue)
        except ValueError:
            expected = "a GLUE task: " + ", ".join(GLUE_TASKS)
            return options, [probekit.Problem("glue", repr(options.glue), expected, probekit.did_you_mean(options.glue, GLUE_TASKS))]
        glue_dir = str(resolve_path(options.glue_dir, base_dir)) if options.glue_dir else None
        problems = []
        try:
            split = normalize_split(task, options.split)
        except ValueError as error:
            split = options.split
            problems.append(probekit.Problem("split", repr(options.split), f"a split of {task} ({error})"))
        return replace(options, glue=task, split=split, glue_dir=glue_dir), problems

    def load(self, options, where: str) -> list[probekit.Example]:
        try:
            return load_glue(options.glue, options.split, options.glue_dir)
        except (OSError, ValueError) as error:  # GlueFormatError is a ValueError
            raise probekit.DataError(f"{where}: {error}") from error

    def fingerprint(self, options) -> str:
        task = get_task(options.glue)
        split = normalize_split(task, options.split)
        root = Path(options.glue_dir).expanduser() if options.glue_dir else default_glue_dir()
        if root is None:
            return _hub_fingerprint(task.name, split, task.hf_splits[split])
        # The same file read_glue_folder reads; a missing one is reported by load, not here.
        path = root / task.folder / task.files[split]
        if not path.is_file():
            return _digest("missing", str(path))
        with path.open("rb") as handle:
            content = hashlib.file_digest(handle, "sha256").hexdigest()
        return _digest(task.name, split, content)

    def validation_split(self, options):
        return None if options.split == "validation" else replace(options, split="validation")


def _hub_fingerprint(task: str, split: str, hf_split: str) -> str:
    name = f"hub:{task}:{split}"
    try:
        import datasets

        dataset = datasets.load_dataset(HF_GLUE_PATH, task, split=hf_split)
    except Exception:  # noqa: BLE001 - offline or not cached: load reports the real error
        return name
    return f"{name}:{dataset._fingerprint}"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:20]


@probekit.hookimpl
def probekit_register_sources(register):
    register(GlueSource)
