"""The integrity of the checkpoint cache: manifests, corrupt entries, leftovers of interrupted fine-tunes.

Every cached fine-tune holds ``manifest.json``: each file's relative path, size and
sha256 (and each symlink's target), written before the entry is renamed into place.
Loading an entry checks it (:func:`entry_problem`); an entry that does not match is
moved aside as ``<key>.corrupt-<timestamp>`` (:func:`move_aside`) and trained again,
never used. An entry written before manifests existed is checked by reading every
file it has (JSON parsed, every safetensors tensor read); when that works its manifest
is written then.

A fine-tune in progress holds the lock ``<cache>/locks/<key>.lock`` (its owner's
``<pid>@<host>`` in ``<key>.owner`` beside it) and writes into ``<key>.partial-<pid>@<host>``;
a partial folder whose process is gone (an interrupt that could not clean up, a killed
job) is removed by the next fine-tune in that cache (:func:`remove_stale_partials`).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

MANIFEST_FILE = "manifest.json"
LAST_USED_FILE = "last_used"
#: Who used an entry (a spec's model, "spec.toml: models.x"), one per line: several specs share a fine-tune.
USED_BY_FILE = "used_by"
#: Files of an entry that the manifest does not cover: they change when the entry is used.
UNTRACKED = frozenset({MANIFEST_FILE, LAST_USED_FILE, USED_BY_FILE})
MANIFEST_VERSION = 1
#: A partial folder of another host is left alone unless untouched for this long (a shared cache).
FOREIGN_PARTIAL_AGE = 2 * 24 * 3600

_PARTIAL = re.compile(r"^(?P<key>.+)\.partial-(?P<pid>\d+)(?:@(?P<host>.+))?$")
_CORRUPT = re.compile(r"^(?P<key>.+)\.corrupt-(?P<when>.+)$")


class CacheWarning(UserWarning):
    """Something wrong with the checkpoint cache that probekit handled (a corrupt entry moved aside)."""


class CorruptEntry(Exception):
    """A cache entry whose files do not match its manifest, or that cannot be read."""


# -- writing -------------------------------------------------------------------------


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _walk(folder: Path):
    """(relative posix path, path, is_link) of every file and symlink under ``folder``, links not followed."""
    for directory, subdirectories, files in os.walk(folder):
        here = Path(directory)
        for name in sorted([*files, *(d for d in subdirectories if (here / d).is_symlink())]):
            path = here / name
            relative = path.relative_to(folder).as_posix()
            if relative in UNTRACKED:
                continue
            yield relative, path, path.is_symlink()
        subdirectories[:] = sorted(d for d in subdirectories if not (here / d).is_symlink())


def write_manifest(folder: Path) -> Path:
    """Record every file of ``folder`` (size, sha256) and symlink (target) in ``folder/manifest.json``."""
    files: dict[str, dict] = {}
    for relative, path, is_link in _walk(folder):
        if is_link:
            files[relative] = {"link": os.readlink(path)}
        else:
            files[relative] = {"size": path.stat().st_size, "sha256": sha256_of(path)}
    document = {"version": MANIFEST_VERSION, "written_at": _now(), "files": files}
    temporary = folder / f".{MANIFEST_FILE}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps(document, indent=1, sort_keys=True))
    os.replace(temporary, folder / MANIFEST_FILE)
    return folder / MANIFEST_FILE


# -- checking ------------------------------------------------------------------------


def manifest_problem(folder: Path) -> str | None:
    """What does not match ``folder``'s manifest (the first problem found), or None when every file does."""
    try:
        document = json.loads((folder / MANIFEST_FILE).read_text())
        files = document["files"]
        if not isinstance(files, dict) or not files:
            return f"{MANIFEST_FILE} lists no files"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{MANIFEST_FILE} is unreadable ({type(error).__name__}: {error})"
    for relative, expected in files.items():
        path = folder / relative
        if "link" in expected:
            if not path.is_symlink() or os.readlink(path) != expected["link"]:
                return f"{relative} is not the link to {expected['link']} the manifest lists"
            continue
        if not path.is_file():
            return f"{relative} is missing"
        size = path.stat().st_size
        if size != expected.get("size"):
            return f"{relative} is {size} bytes; the manifest says {expected.get('size')}"
        if sha256_of(path) != expected.get("sha256"):
            return f"{relative} has another sha256 than the manifest's (its content changed)"
    return None


def load_problem(folder: Path) -> str | None:
    """Whether an entry without a manifest reads: ``meta.json`` and every JSON file parse, every
    safetensors tensor reads, and the final model has weights. None when all of that works."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if not isinstance(meta, dict) or "accuracy" not in meta or "snapshot_accuracy" not in meta:
            return "meta.json lacks accuracy or snapshot_accuracy"
    except (OSError, ValueError) as error:
        return f"meta.json is unreadable ({type(error).__name__}: {error})"
    folders = [folder / "final", *(folder / "snapshots" / f for f in meta["snapshot_accuracy"])]
    for model_folder in folders:
        relative = model_folder.relative_to(folder).as_posix()
        if not model_folder.is_dir():
            return f"{relative} is missing"
        weights = sorted(model_folder.glob("*.safetensors"))
        if not weights and not (model_folder / "pytorch_model.bin").is_file():
            return f"{relative} has no weights file"
        for file in sorted(model_folder.glob("*.json")):
            try:
                json.loads(file.read_text())
            except (OSError, ValueError) as error:
                return f"{file.relative_to(folder).as_posix()} is unreadable ({type(error).__name__})"
        for file in weights:
            try:
                with safe_open(str(file), framework="pt") as handle:
                    for name in handle.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
                        handle.get_tensor(name)
            except Exception as error:  # noqa: BLE001 - any failure to read is the same finding
                return f"{file.relative_to(folder).as_posix()} cannot be read ({type(error).__name__}: {error})"
    return None


def entry_problem(folder: Path, *, write_missing: bool = True) -> str | None:
    """Why the cache entry ``folder`` cannot be trusted, or None.

    With a manifest: every file must match it. Without one (an entry written before
    manifests): every file must read; then the manifest is written (``write_missing``).
    """
    if (folder / MANIFEST_FILE).is_file():
        return manifest_problem(folder)
    problem = load_problem(folder)
    if problem is None and write_missing:
        try:
            write_manifest(folder)
        except OSError:
            pass  # a read-only cache: checked again next time
    return problem


def move_aside(folder: Path) -> Path:
    """Rename a corrupt entry to ``<key>.corrupt-<timestamp>`` (kept for inspection; ``cache prune`` removes it)."""
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    target = folder.with_name(f"{folder.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = folder.with_name(f"{folder.name}.corrupt-{stamp}-{n}")
    os.replace(folder, target)
    return target


def touch_last_used(folder: Path, user: str | None = None) -> None:
    """Record that an entry was used now (``cache ls`` shows it; ``cache prune --older-than`` reads it), and by
    whom (``user``, e.g. "spec.toml: models.seed1"), once per user."""
    try:
        (folder / LAST_USED_FILE).write_text(_now() + "\n")
        if user is not None and user not in used_by(folder):
            with (folder / USED_BY_FILE).open("a", encoding="utf-8") as handle:
                handle.write(user.replace("\n", " ") + "\n")
    except OSError:
        pass  # a read-only cache still works


def used_by(folder: Path) -> list[str]:
    """The users :func:`touch_last_used` recorded for an entry, first first."""
    try:
        return [line for line in (folder / USED_BY_FILE).read_text(encoding="utf-8").splitlines() if line]
    except OSError:
        return []


def last_used(folder: Path) -> float:
    """When an entry was last used: its ``last_used`` file, else its manifest's or the folder's mtime."""
    for name in (LAST_USED_FILE, MANIFEST_FILE, "meta.json", "results.parquet"):
        try:
            return (folder / name).stat().st_mtime
        except OSError:
            continue
    try:
        return folder.stat().st_mtime
    except OSError:
        return 0.0


def folder_size(folder: Path) -> int:
    """Bytes of the files under ``folder`` (symlinks not followed)."""
    total = 0
    for directory, _, files in os.walk(folder):
        for name in files:
            path = Path(directory) / name
            if not path.is_symlink():
                try:
                    total += path.stat().st_size
                except OSError:
                    pass
    return total


# -- leftovers -----------------------------------------------------------------------


def owner_id() -> str:
    """This process as the cache names it (a partial folder, a training lock's owner): ``<pid>@<host>``."""
    return f"{os.getpid()}@{socket.gethostname()}"


def partial_name(key: str) -> str:
    """The folder a fine-tune in progress writes into: ``<key>.partial-<pid>@<host>``."""
    return f"{key}.partial-{owner_id()}"


@dataclass(frozen=True)
class Leftover:
    """A folder of the fine-tune cache that is not an entry: a fine-tune in progress, or a corrupt entry moved aside."""

    path: Path
    kind: str  # "partial" or "corrupt"
    key: str
    pid: int | None = None
    host: str | None = None

    @property
    def stale(self) -> bool:
        """Whether nobody will finish it: a corrupt entry, or a partial folder whose process is gone."""
        if self.kind == "corrupt":
            return True
        if self.host and self.host != socket.gethostname():
            return time.time() - last_used(self.path) > FOREIGN_PARTIAL_AGE
        return self.pid is None or not pid_alive(self.pid)


def leftover(path: Path) -> Leftover | None:
    if match := _PARTIAL.match(path.name):
        return Leftover(path, "partial", match["key"], int(match["pid"]), match["host"])
    if match := _CORRUPT.match(path.name):
        return Leftover(path, "corrupt", match["key"])
    return None


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OSError:
        return False
    return True


def remove_stale_partials(finetunes: Path) -> list[Path]:
    """Remove the partial folders of fine-tunes whose process is gone; return what was removed."""
    removed = []
    try:
        children = list(finetunes.iterdir())
    except OSError:
        return removed
    for child in children:
        found = leftover(child)
        if found is not None and found.kind == "partial" and found.pid != os.getpid() and found.stale:
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
    return removed


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
