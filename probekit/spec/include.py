"""Composing a spec: ``include`` of shared files, and ``--set key=value`` overrides.

``include = "shared/recipe.toml"`` (or an array of files, read in order) merges other TOML files into a spec.
The rule, the same at every depth: **the including file wins**. Tables merge key by key (a spec's
``[finetune] lr`` replaces the recipe's ``lr`` and keeps its other keys); any other value, arrays of tables
(``[[comparisons]]``, ``[[expect]]``) included, is replaced whole. Of several included files, a later one wins
over an earlier one. An included file may include others; paths are relative to the file that names them,
while paths inside an included file's tables (data files, model folders) are read relative to the spec.

``--set finetune.lr=2e-5`` (and the API's ``overrides``) then wins over everything: the value is read as a
TOML value (``2e-5``, ``true``, ``"text"``, ``[0.5, 1.0]``) or, when it is not one, as a string (``cpu``).
"""
from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from probekit.errors import Problem, SpecError, type_name


def merged(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: tables merge key by key, every other value of ``top`` replaces ``base``'s."""
    result = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def resolve_includes(document: dict, path: Path, read: Callable[[Path], tuple[str, dict]],
                     chain: tuple[Path, ...] = ()) -> tuple[dict, list[tuple[Path, str]]]:
    """``document`` with its ``include`` files merged under it, and the (file, text) of every included file.

    ``read`` reads one TOML file (SpecError naming it); a missing file or a cycle is a SpecError naming
    ``include`` in the file that names it."""
    raw = document.get("include")
    if raw is None:
        return document, []
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise SpecError(path, [Problem("include", f"{type_name(raw)} {raw!r}", 'a TOML file or an array of them, '
                                       'relative to this spec, e.g. include = "shared/recipe.toml"')])
    base: dict = {}
    texts: list[tuple[Path, str]] = []
    for name in names:
        file = (path.parent / name).expanduser().resolve()
        if file in (*chain, path.resolve()):
            raise SpecError(path, [Problem("include", repr(name), f"a file that does not include this one back "
                                           f"({' -> '.join(p.name for p in (*chain, path.resolve(), file))})")])
        if not file.is_file():
            raise SpecError(path, [Problem("include", repr(name), f"an existing TOML file ({file} is not a file)")])
        text, included = read(file)
        included, deeper = resolve_includes(included, file, read, (*chain, path.resolve()))
        base = merged(base, included)
        texts += [(file, text), *deeper]
    own = {key: value for key, value in document.items() if key != "include"}
    return merged(base, own), texts


def with_includes_text(text: str, included: list[tuple[Path, str]], root: Path) -> str:
    """The spec's text followed by each included file's, commented: what the run records and what keys its
    cached results (an edit to the recipe is an edit to every spec that includes it)."""
    parts = [text]
    for file, content in included:
        shown = file.relative_to(root) if file.is_relative_to(root) else file
        parts.append(f"\n# -- included from {shown}:\n" + "".join(f"# {line}\n" for line in content.splitlines()))
    return "".join(parts)


def set_value(text: str) -> Any:
    """A ``--set`` value: a TOML value, else the text itself (``--set run.device=cpu``)."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def override_path(key: str) -> tuple[str, ...]:
    """An override's key path: ``finetune.lr`` -> (finetune, lr); a bare ``device`` is ``run.device``."""
    parts = tuple(key.split("."))
    return parts if len(parts) > 1 else ("run", *parts)


def with_overrides(document: dict, overrides: Mapping[str, Any]) -> dict:
    """``document`` with each override (dotted key -> value) set, tables created where missing."""
    for key, value in overrides.items():
        *tables, last = override_path(key)
        top: dict = {last: value}
        for table in reversed(tables):
            top = {table: top}
        document = merged(document, top)
    return document


def blamed_on_overrides(problems: list[Problem], overrides: Mapping[str, Any]) -> list[Problem]:
    """Problems at an overridden key name it as the command line gave it (``--set finetune.lr``)."""
    paths = {".".join(override_path(key)) for key in overrides}
    return [Problem(f"--set {p.key}", p.found, p.expected, p.hint)
            if any(p.key == k or p.key.startswith(k + ".") for k in paths) else p for p in problems]
