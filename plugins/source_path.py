"""The ``path`` data source: a local data file (CSV, TSV, JSON lines or Parquet), one example per row."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import probekit
from probekit.sources import (
    FILE_SUFFIXES,
    Columns,
    read_rows,
    resolve_path,
    rows_to_examples,
)


class PathSource(probekit.DataSource):
    """``path = "dev.csv"`` (relative to the spec's folder) and the ``text``/``text_pair``/``label`` columns; a
    ``.txt`` file is one unlabelled text per line."""

    kind = "path"
    description = "a local data file: " + ", ".join(FILE_SUFFIXES)

    @dataclass(frozen=True)
    class Options:
        path: str
        text: str = "text"
        text_pair: str | None = None
        label: str = "label"

    def validate(self, options, base_dir: Path):
        if not options.path:
            return options, [probekit.Problem("path", repr(options.path), "the path of a data file")]
        file = resolve_path(options.path, base_dir)
        problems = []
        if file.is_dir():
            problems.append(probekit.Problem("path", repr(options.path), f"a data file ({file} is a folder, not a file)"))
        elif not file.is_file():
            problems.append(probekit.Problem("path", repr(options.path), f"an existing data file ({file} does not exist)"))
        elif file.suffix.lower() not in FILE_SUFFIXES:
            problems.append(probekit.Problem("path", repr(options.path), "a file ending in " + ", ".join(FILE_SUFFIXES)))
        elif file.stat().st_size == 0:
            problems.append(probekit.Problem("path", repr(options.path), f"a data file with rows ({file} is empty: 0 bytes)"))
        return replace(options, path=str(file)), problems

    def load(self, options, where: str) -> list[probekit.Example]:
        where = f"{where} ({options.path})"
        try:
            table = read_rows(Path(options.path))
            return rows_to_examples(table.columns, table.rows, _columns(options), where, places=table.places)
        except probekit.DataError as error:
            if where in str(error):
                raise
            # The file's own errors start with its path, which `where` already names.
            raise probekit.DataError(f"{where}: {str(error).removeprefix(f'{options.path}: ')}") from error
        except (OSError, ValueError) as error:  # an unreadable file
            raise probekit.DataError(f"{where}: {error}") from error

    def fingerprint(self, options) -> str:
        file = Path(options.path)
        if not file.is_file():
            return _digest("missing", str(file))
        with file.open("rb") as handle:
            content = hashlib.file_digest(handle, "sha256").hexdigest()
        # The columns chosen change the examples read from the same bytes.
        return _digest(content, options.text, str(options.text_pair), options.label)


def _columns(options) -> Columns:
    if Path(options.path).suffix.lower() == ".txt":  # one unlabelled text per line
        return Columns(text="text", text_pair=None, label=None)
    return Columns(text=options.text, text_pair=options.text_pair, label=options.label)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:20]


@probekit.hookimpl
def probekit_register_sources(register):
    register(PathSource)
