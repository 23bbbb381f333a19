"""Public: what a data-source plugin builds on: resolving paths, reading table files, the built-in tasks and GLUE.

Like pytest's ``pytest`` re-exporting ``_pytest``, this module names what plugin authors
may import (docs/plugins.md, "The public surface").
"""
from __future__ import annotations

from probekit.data import tasks as task_generators
from probekit.data.files import FILE_SUFFIXES, Columns, read_rows, rows_to_examples
from probekit.data.glue import (
    GLUE_TASKS,
    HF_GLUE_PATH,
    default_glue_dir,
    get_task,
    load_glue,
    normalize_split,
    normalize_task,
)
from probekit.data.source import resolve_path
from probekit.data.tasks import TASKS, load_task

__all__ = [
    "FILE_SUFFIXES", "GLUE_TASKS", "HF_GLUE_PATH", "TASKS", "Columns", "default_glue_dir", "get_task", "load_glue",
    "load_task", "normalize_split", "normalize_task", "read_rows", "resolve_path", "rows_to_examples",
    "task_generators",
]
