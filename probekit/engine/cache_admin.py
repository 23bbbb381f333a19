"""``probekit cache ls | verify | prune``: what the cache holds, whether it is intact, and removing old entries.

The cache (``$PROBEKIT_CACHE``, ``[run] cache_dir`` or ``~/.cache/probekit``) holds:

* ``finetunes/<key>/``: a fine-tune (``meta.json``, ``manifest.json``, ``final/``,
  ``snapshots/``, ``last_used``); beside them ``<key>.partial-<pid>@<host>`` (a fine-tune
  in progress, or the leftover of a killed one) and ``<key>.corrupt-<time>`` (an entry that
  failed its manifest, moved aside);
* ``results/<key>/``: a run's results kept for reuse (``results.parquet``, ``run.json``);
* ``unsaved/``: results a run could not write where it was asked to.

Entries are ordered by when they were last used (``last_used``, written on each load).
"""
from __future__ import annotations

import datetime
import json
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from probekit.engine.resultcache import CACHE_INFO_FILE
from probekit.declare import Invalid, format_size
from probekit.declare import parse_size as declared_size
from probekit.errors import ExitCode, UserError
from probekit.models.manifest import (MANIFEST_FILE, entry_problem, folder_size, last_used, leftover,
                                      manifest_problem, used_by)
from probekit.say import say
from probekit.results.io import RESULTS_FILE, metadata, read_table

FINETUNES = "finetunes"
RESULTS = "results"


@dataclass(frozen=True)
class Entry:
    """One folder of the cache."""

    kind: str  # "finetune", "results", "partial", "corrupt"
    path: Path
    size: int
    last_used: float
    info: dict  # finetune: meta.json; results: the run's metadata (spec_name, run_id, complete, rows, run_dir)
    manifest: bool = False
    stale: bool = False  # partial/corrupt: nobody will finish or use it

    @property
    def key(self) -> str:
        return self.path.name

    @property
    def removable(self) -> bool:
        return self.kind in ("finetune", "results") or self.stale


def entries(root: Path) -> list[Entry]:
    """Every fine-tune, results entry and leftover folder under ``root``, oldest use first."""
    found: list[Entry] = []
    finetunes = root / FINETUNES
    if finetunes.is_dir():
        for folder in sorted(p for p in finetunes.iterdir() if p.is_dir()):
            rest = leftover(folder)
            size, used = folder_size(folder), last_used(folder)
            if rest is not None:
                found.append(Entry(rest.kind, folder, size, used, {}, stale=rest.stale))
                continue
            found.append(Entry("finetune", folder, size, used, _json(folder / "meta.json"),
                               manifest=(folder / MANIFEST_FILE).is_file()))
    results = root / RESULTS
    if results.is_dir():
        for folder in sorted(p for p in results.iterdir() if p.is_dir()):
            found.append(Entry("results", folder, folder_size(folder), last_used(folder), _results_info(folder)))
    return sorted(found, key=lambda e: e.last_used)


def _json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _results_info(folder: Path) -> dict:
    info = {"run_dir": _json(folder / CACHE_INFO_FILE).get("run_dir")}
    try:
        table = read_table(folder / RESULTS_FILE)
    except Exception:  # noqa: BLE001 - shown as unreadable
        return {**info, "unreadable": True}
    meta = metadata(table)
    return {**info, "spec_name": meta.get("spec_name"), "run_id": meta.get("run_id"),
            "complete": meta.get("complete"), "rows": table.num_rows}


# -- verify ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    entry: Entry
    problem: str | None
    note: str = ""


def verify(root: Path) -> list[Verdict]:
    """Check every fine-tune against its manifest (a legacy entry: read every file, then write its manifest)
    and every results entry (a readable results file)."""
    verdicts = []
    for entry in entries(root):
        if entry.kind == "finetune":
            had = entry.manifest
            problem = entry_problem(entry.path)
            note = "" if had or problem else "no manifest: every file read, manifest written"
            verdicts.append(Verdict(entry, problem, note))
        elif entry.kind == "results":
            if not (entry.path / MANIFEST_FILE).is_file():  # keyed by an older cache version: never reused
                verdicts.append(Verdict(entry, None, "no manifest: an entry of an older probekit, never reused"))
                continue
            problem = manifest_problem(entry.path) or (
                "results.parquet is unreadable" if entry.info.get("unreadable") else None)
            verdicts.append(Verdict(entry, problem))
        else:
            note = "moved aside as corrupt" if entry.kind == "corrupt" else (
                "a fine-tune of a process that is gone" if entry.stale else "a fine-tune in progress")
            verdicts.append(Verdict(entry, None, note))
    return verdicts


# -- prune -----------------------------------------------------------------------------


def prune(root: Path, *, older_than: float | None = None, max_size: int | None = None, dry_run: bool = False,
          now: float | None = None) -> list[tuple[Entry, str]]:
    """Remove leftovers (corrupt entries, partial folders of dead processes), then entries last used more than
    ``older_than`` seconds ago, then the oldest entries until the cache holds at most ``max_size`` bytes.
    Returns (entry, why) for each entry removed (or that would be, with ``dry_run``)."""
    now = time.time() if now is None else now
    chosen: list[tuple[Entry, str]] = []
    kept: list[Entry] = []
    for entry in entries(root):
        if entry.kind in ("partial", "corrupt"):
            if entry.stale:
                chosen.append((entry, "never used again" if entry.kind == "corrupt" else "left by a process that is gone"))
            continue  # a live partial folder is never removed and not counted
        if older_than is not None and now - entry.last_used > older_than:
            chosen.append((entry, f"last used {format_age(now - entry.last_used)} ago"))
        else:
            kept.append(entry)
    if max_size is not None:
        total = sum(e.size for e in kept)
        for entry in list(kept):  # oldest first
            if total <= max_size:
                break
            chosen.append((entry, f"the cache held {format_size(total)}, over {format_size(max_size)}"))
            total -= entry.size
    if not dry_run:
        for entry, _ in chosen:
            shutil.rmtree(entry.path, ignore_errors=True)
    return chosen


# -- units -----------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)?\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s`` (a bare number is days) -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise UserError(f"--older-than {text!r}: expected a number and a unit: 30d, 12h, 90m, 2w")
    return float(match[1]) * _SECONDS[(match[2] or "d").lower()]


def parse_size(text: str) -> int:
    """``--max-size``: a size as a spec's ``memory`` reads it (:func:`probekit.declare.parse_size`)."""
    try:
        return declared_size(text)
    except Invalid as invalid:
        raise UserError(f"--max-size {text!r}: expected {invalid.expected}") from None


def format_age(seconds: float) -> str:
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{seconds / length:.0f}{unit}"
    return f"{max(seconds, 0):.0f}s"


def total_size(found: Iterable[Entry]) -> int:
    return sum(e.size for e in found)


# -- the command -----------------------------------------------------------------------


def run_ls(root: Path, console: Console, now: float | None = None) -> ExitCode:
    """``probekit cache ls``: a table of the fine-tunes (and leftovers), one of the results entries, the totals."""
    now = time.time() if now is None else now
    found = entries(root)
    if not found and not (root / "unsaved").is_dir():
        console.print(f"the cache {root} is empty", markup=False, highlight=False)
        return ExitCode.OK
    tunes = [e for e in found if e.kind != "results"]
    if tunes:
        table = Table(title=f"fine-tunes in {root / FINETUNES}", title_justify="left")
        for column in ("key", "model", "base", "training data", "hyper-parameters", "accuracy", "size", "last used",
                       "status"):
            table.add_column(column, overflow="fold", justify="right" if column in ("size",) else "left")
        for entry in tunes:
            meta = entry.info
            table.add_row(entry.key, _models_text(meta, entry.path), meta.get("base", ""), _data_text(meta),
                          _settings_text(meta.get("settings") or {}), _accuracy_text(meta), format_size(entry.size),
                          _used_text(entry, now), _status(entry))
        console.print(table)
    runs = [e for e in found if e.kind == "results"]
    if runs:
        table = Table(title=f"results kept for reuse in {root / RESULTS}", title_justify="left")
        for column in ("key", "spec", "run id", "complete", "rows", "size", "last used", "run folder"):
            table.add_column(column, overflow="fold", justify="right" if column in ("rows", "size") else "left")
        for entry in runs:
            info = entry.info
            complete = "unreadable" if info.get("unreadable") else {True: "yes", False: "no", None: "?"}[info.get("complete")]
            table.add_row(entry.key, str(info.get("spec_name") or ""), str(info.get("run_id") or ""), complete,
                          str(info.get("rows", "")), format_size(entry.size), _used_text(entry, now),
                          str(info.get("run_dir") or ""))
        console.print(table)
    unsaved = sorted((root / "unsaved").glob(f"*/{RESULTS_FILE}"))
    if unsaved:
        console.print(f"results of runs that could not write where they were asked to: {len(unsaved)} in "
                      f"{root / 'unsaved'} (newest: {unsaved[-1]})", markup=False, highlight=False, soft_wrap=True)
    leftovers = [e for e in tunes if e.kind != "finetune"]
    console.print(f"{len(tunes) - len(leftovers)} fine-tunes, {len(runs)} results entries"
                  + (f", {len(leftovers)} leftover folders" if leftovers else "")
                  + f"; {format_size(total_size(found))} in {root}", markup=False, highlight=False, soft_wrap=True)
    return ExitCode.OK


def run_verify(root: Path, console: Console) -> ExitCode:
    """``probekit cache verify``: every entry checked; exit 1 when one is corrupt, listing them."""
    verdicts = verify(root)
    if not verdicts:
        console.print(f"the cache {root} is empty", markup=False, highlight=False)
        return ExitCode.OK
    bad = [v for v in verdicts if v.problem]
    for verdict in verdicts:
        entry = verdict.entry
        where = f"{entry.path.parent.name}/{entry.key}"
        what = entry.info.get("description") or entry.info.get("spec_name") or ""
        label = ("CORRUPT", "bold red") if verdict.problem else (("ok", "green") if entry.kind in ("finetune", "results")
                                                                 else ("leftover", "yellow"))
        detail = verdict.problem or verdict.note
        console.print(Text.assemble(label, f" {where}", f" ({what})" if what else "", f": {detail}" if detail else ""),
                      soft_wrap=True)
    if bad:
        console.print(f"{len(bad)} of {len(verdicts)} cache entries are corrupt:", style="bold red")
        for verdict in bad:
            console.print(f"  {verdict.entry.path}", markup=False, highlight=False, soft_wrap=True)
        console.print("a run that needs one moves it aside and trains it again; `probekit cache prune` then removes it "
                      "(or delete the folders)", markup=False, highlight=False, soft_wrap=True)
        return ExitCode.EXPECTATIONS_FAILED
    leftovers = [v for v in verdicts if v.entry.kind not in ("finetune", "results")]
    say(console, f"no corrupt entry: {len(verdicts) - len(leftovers)} entries intact in {root}"
        + (f"; {len(leftovers)} leftover folders (`probekit cache prune` removes those of no live process)"
           if leftovers else ""), style="green")
    return ExitCode.OK


def run_prune(root: Path, console: Console, *, older_than: str | None, max_size: str | None,
              dry_run: bool = False) -> ExitCode:
    """``probekit cache prune [--older-than 30d] [--max-size 5GB] [--dry-run]``."""
    age = parse_duration(older_than) if older_than else None
    size = parse_size(max_size) if max_size else None
    before = total_size(entries(root))
    removed = prune(root, older_than=age, max_size=size, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for entry, why in removed:
        what = entry.info.get("description") or entry.info.get("spec_name") or \
            {"corrupt": "a corrupt entry moved aside", "partial": "a partial fine-tune"}.get(entry.kind, entry.kind)
        console.print(f"{verb} {entry.path} ({what}, {format_size(entry.size)}): {why}", markup=False,
                      highlight=False, soft_wrap=True)
    freed = sum(e.size for e, _ in removed)
    criteria = " and ".join(filter(None, [f"--older-than {older_than}" if older_than else "",
                                          f"--max-size {max_size}" if max_size else ""]))
    if not removed:
        console.print(f"nothing to remove in {root}" + (f" ({criteria})" if criteria else
                      " (no leftovers; give --older-than 30d or --max-size 5GB to remove entries)"),
                      markup=False, highlight=False, soft_wrap=True)
        return ExitCode.OK
    console.print(f"{verb} {len(removed)} entries, {format_size(freed)}; the cache "
                  f"{'would hold' if dry_run else 'holds'} {format_size(before - freed)}", markup=False,
                  highlight=False, soft_wrap=True)
    return ExitCode.OK


def _models_text(meta: dict, folder: Path) -> str:
    """Every spec's model that used the entry, the one that trained it first: ``seed_consistency.toml:
    models.seed1; sst2.toml: models.ft`` (each spec's file name, not its folder)."""
    shown = []
    for description in dict.fromkeys([str(meta.get("description", "")), *used_by(folder)]):
        spec, _, model = description.rpartition(": ")
        shown.append(f"{Path(spec).name}: {model}" if spec else model)
    return "; ".join(filter(None, shown))


def _data_text(meta: dict) -> str:
    if "n_train" not in meta:
        return ""
    text = f"{meta['n_train']} ex" + (f" {meta['train_digest'][:8]}" if meta.get("train_digest") else "")
    if meta.get("n_validation"):
        text += f", val {meta['n_validation']}"
    return text


def _settings_text(settings: dict) -> str:
    names = {"lr": "lr", "epochs": "epochs", "batch_size": "batch", "seed": "seed", "max_length": "len",
             "limit": "limit", "snapshots": "snapshots"}
    shown = []
    for key, name in names.items():
        value = settings.get(key)
        if value is None or (key in ("limit", "snapshots") and not value):
            continue
        if key == "snapshots":
            value = "/".join(f"{v:g}" for v in value)
        shown.append(f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}")
    return " ".join(shown)


def _accuracy_text(meta: dict) -> str:
    accuracy = meta.get("accuracy")
    if accuracy is None:
        return "n/a" if meta else ""
    majority = meta.get("majority")
    return f"{accuracy:.1%}" + (f" (majority {majority:.1%})" if majority is not None else "")


def _used_text(entry: Entry, now: float) -> str:
    if now - entry.last_used < 86400:
        return f"{format_age(now - entry.last_used)} ago"
    return datetime.datetime.fromtimestamp(entry.last_used).strftime("%Y-%m-%d")


def _status(entry: Entry) -> str:
    if entry.kind == "finetune":
        return "ok" if entry.manifest else "no manifest yet"
    if entry.kind == "corrupt":
        return "corrupt, moved aside"
    return "partial: process gone" if entry.stale else "partial: fine-tune in progress"
