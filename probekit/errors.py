"""Every error probekit raises on purpose, and the one place that maps them to exit codes.

Three families, as a user meets them:

* :class:`UserError`: the input is wrong (a spec, a data file, a model that will not
  load, a plugin that cannot be used). Exit 2, a message and no traceback.
* :class:`RunFailure`: the input was fine but part of the run failed (a metric or
  plugin bug). Exit 3; the results of everything else are written.
* An interrupt (Ctrl-C): exit 130, the partial results file marked incomplete.

An expectation that does not hold is not an error: it is the outcome the user asked
to check, exit 1.
"""
from __future__ import annotations

import difflib
import enum
import errno
import importlib.metadata
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


class ExitCode(enum.IntEnum):
    OK = 0
    EXPECTATIONS_FAILED = 1
    BAD_INPUT = 2
    RUN_FAILURE = 3
    INTERRUPTED = 130


class ProbekitError(Exception):
    """Base of every error probekit raises on purpose."""

    exit_code = ExitCode.RUN_FAILURE


class UserError(ProbekitError):
    """Bad input: the message says which file and key, what was found and what was expected."""

    exit_code = ExitCode.BAD_INPUT


class RunFailure(ProbekitError):
    """A run that could not finish as asked because of a bug in a plugin or in probekit."""

    exit_code = ExitCode.RUN_FAILURE


class PluginError(UserError):
    """A plugin that cannot be loaded, or that registered something invalid."""

    #: The name the plugin was asked for by (``-p NAME`` or a spec's ``plugins``), when it was named.
    plugin: str | None = None


class DataError(UserError):
    """A data source that cannot be read as the spec describes it."""


class ModelError(UserError):
    """A model (or tokenizer) that cannot be loaded, or two models that cannot be compared."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec: where (a key path), what was found, what was expected."""

    key: str
    found: str
    expected: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.key or '(top level)'}: found {self.found}; expected {self.expected}"
        return text + (f" ({self.hint})" if self.hint else "")


class SpecError(UserError):
    """A spec that cannot run as written. ``problems`` lists every problem found."""

    def __init__(self, path: Path | str, problems: list[Problem]) -> None:
        self.path = Path(path)
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"{self.path}: {count}\n" + "\n".join(f"  {p}" for p in problems))


def exit_code_of(error: BaseException) -> ExitCode:
    """The exit code a command ends with when ``error`` stops it (CLI and pytest plugin alike)."""
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(error, ProbekitError):
        return error.exit_code
    return ExitCode.RUN_FAILURE


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is shown as a message without a traceback (bad input)."""
    return isinstance(error, UserError)


def did_you_mean(name: object, choices: Iterable[object]) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


def type_name(value: object) -> str:
    """A reader's name for the type of a value found in a spec."""
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


class OutputError(UserError):
    """A file probekit must write could not be (a full disk, a folder without write permission): exit 2, naming
    the path, what it needs, and where what was computed is kept."""


#: What a file that could not be written needs, by errno: the environment's problems, not probekit's.
WRITE_NEEDS = {
    errno.ENOSPC: "space: the disk is full there; free some, or write elsewhere",
    errno.EDQUOT: "space: your disk quota is used up there; free some, or write elsewhere",
    errno.EACCES: "write permission: make the folder writable, or write elsewhere",
    errno.EPERM: "write permission: make the folder writable, or write elsewhere",
    errno.EROFS: "a writable file system: this one is read-only; write elsewhere",
}


def write_failure(error: OSError, what: str, path: Path | str | None = None) -> OutputError | None:
    """``error``, raised writing ``what`` (at ``path``, else the error's file), as an OutputError naming the path
    and what it needs; None when it is not a full disk or a missing permission."""
    need = WRITE_NEEDS.get(error.errno)
    if need is None:
        return None
    return OutputError(f"could not write {what} {path or error.filename}: it needs {need}")


class EnvironmentProblem(UserError):
    """The Python environment cannot run probekit's model stack (a package built for another torch, a missing
    dependency): exit 2, naming the package and the fix."""


def broken_import(error: BaseException) -> EnvironmentProblem:
    """The import failure ``error`` (or the failure inside an import that it wraps) as a message naming the package
    it happened in and how to fix it, e.g. a torchvision built for another torch breaking transformers' imports."""
    innermost = error
    while innermost.__cause__ is not None or innermost.__context__ is not None:
        innermost = innermost.__cause__ or innermost.__context__
    package = _package_of(traceback.extract_tb(innermost.__traceback__), sys.path)
    if package is None and isinstance(innermost, ImportError) and innermost.name:
        package = innermost.name.split(".")[0]
    package = package or "a dependency"
    reason = f"{type(innermost).__name__}: {str(innermost).splitlines()[0] if str(innermost) else ''}"
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = "(not installed)"
    return EnvironmentProblem(
        f"the model stack (torch, transformers) cannot be imported: {package} fails to import ({reason}). "
        f"The environment holds a {package} that does not work with torch {torch_version}: install the "
        f"{package} built for this torch (pip install --force-reinstall {package}), or uninstall it if nothing "
        f"needs it (pip uninstall {package}); `pip check` lists what else disagrees")


def _package_of(frames: traceback.StackSummary, path: list[str]) -> str | None:
    """The top-level package of the innermost frame that lies in an installed package (under a sys.path entry)."""
    roots = sorted((Path(p).resolve() for p in path if p), key=lambda r: len(str(r)), reverse=True)
    for frame in reversed(frames):
        file = Path(frame.filename).resolve()
        for root in roots:
            if root in file.parents:
                top = file.relative_to(root).parts[0]
                if top not in ("importlib", "transformers") and not top.endswith(".py"):
                    return top
                break
    return None
