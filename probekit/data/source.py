"""The data-source contract: what a ``[data.<name>]`` table can name, registered through a hook.

A source is selected by its ``kind`` key (``task = "nli"``, ``path = "dev.csv"``,
...). Its ``Options`` dataclass lists the table's keys besides the ``limit`` and
``seed`` every table has, checked like a metric's options; the kind key itself is
the first field. Built-in sources (task, path, glue, hf) are plugins in
``probekit.plugins`` registered exactly as a third party registers one.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from probekit.data.example import Example
from probekit.errors import Problem


class DataSource:
    """Base class of data sources: subclass it, set ``kind`` and ``Options``, register it.

    ``validate`` checks what it can without reading the data (a task name, a
    file's existence) and returns the options to use (paths resolved against the
    spec's folder); ``load`` reads the examples, raising ``DataError`` with what
    is wrong; ``fingerprint`` is a digest of the content ``load`` would read, so a
    cached result is never reused after the data changed.
    """

    kind: ClassVar[str]
    description: ClassVar[str] = ""
    Options: ClassVar[type]

    def validate(self, options: Any, base_dir: Path) -> tuple[Any, list[Problem]]:
        return options, []

    def load(self, options: Any, where: str) -> Sequence[Example]:
        raise NotImplementedError

    def fingerprint(self, options: Any) -> str:
        raise NotImplementedError

    def validation_split(self, options: Any) -> Any | None:
        """The options of the matching validation data (for fine-tunes that name none), or None."""
        return None


def resolve_path(value: str, base_dir: Path) -> Path:
    """A path as a spec writes it: ``~`` expanded, relative to the spec's folder."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path
