"""Where a run writes: checked before anything runs, never clobbering, never losing what was computed.

* ``-o DIR`` (``output=``) may be a new folder, an empty one, or an earlier run folder of
  the same spec (its ``results.parquet`` metadata names the spec); anything else is refused
  before a model loads, unless ``--overwrite`` (``overwrite=True``).
* Writing into an earlier run folder (or, with ``--overwrite``, into any folder) first removes
  the files a run writes there — ``results.parquet``, ``verdict.json``, ``report.html``, ``tracking.json`` and the ``*.png``
  figures — and nothing else, so no stale figure stays beside the new results.
* The folder (or, for a new one, its nearest existing parent) must take a file: a temporary
  file is created and removed before any fine-tune or probe starts.
* If writing fails anyway later (a full disk, a folder removed during the run), the results go
  to a fallback file, ``<cache>/unsaved/<spec>-<run id>/results.parquet`` (else under the
  current folder, else the temporary folder), and the run says where.
* A run folder is claimed by one run at a time: ``-o DIR`` and ``--resume DIR`` hold an OS lock
  (``<cache>/locks/output-<digest of DIR>.lock``, released by the kernel when the process dies) from the
  checks until the verdict; a second run into the same folder is refused, naming the process that holds it.
* ``--resume DIR`` continues the run in DIR: it must hold a readable ``results.parquet`` of
  the same spec, the same text (by sha256) included; a killed writer's temporary files there
  are removed first.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from filelock import FileLock, Timeout

from probekit.errors import OutputError, UserError, write_failure
from probekit.models.manifest import owner_id
from probekit.report.html import REPORT_FILE
from probekit.report.tracking import TRACKING_FILE
from probekit.results.history import VERDICT_FILE
from probekit.results.io import RESULTS_FILE, metadata, read_table, write_table

#: The cache's folder of locks (shared with the fine-tunes' training locks).
LOCKS = "locks"
#: Files a run writes into its folder besides the figures (``*.png``).
RUN_FILES = (RESULTS_FILE, VERDICT_FILE, REPORT_FILE, TRACKING_FILE)
UNSAVED = "unsaved"


def run_of(folder: Path) -> dict | None:
    """The metadata of the run whose results a folder holds, or None when it holds no readable results file."""
    file = folder / RESULTS_FILE
    if not file.is_file():
        return None
    try:
        return metadata(read_table(file))
    except Exception:  # noqa: BLE001 - an unreadable file is not a run folder
        return None


def check_writable(folder: Path, what: str) -> None:
    """Refuse (UserError) unless a file can be created in ``folder``, or in its nearest existing parent."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        if probe == folder:
            raise UserError(f"{what} {folder}: is a file, not a folder; give a folder for the run's "
                            f"{RESULTS_FILE} and figures (a new or empty one)")
        raise UserError(f"{what} {folder}: {probe} is a file, so the folder cannot be created there; "
                        "give another folder")
    try:
        handle, name = tempfile.mkstemp(prefix=".probekit-write-test-", dir=probe)
        os.close(handle)
        os.unlink(name)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        where = f"{probe}" if probe == folder else f"{probe} (where {folder} would be created)"
        raise UserError(f"{what} {folder}: cannot write there ({reason}: {where}); choose a folder you can "
                        "write, nothing was run") from None


def check_output(folder: Path, spec_name: str, overwrite: bool) -> bool:
    """Check ``-o folder`` before anything runs; return whether an earlier run's files must be cleared first."""
    check_writable(folder, "-o")
    if not folder.is_dir():
        return False
    entries = sorted(p.name for p in folder.iterdir())
    if not entries:
        return False
    earlier = run_of(folder)
    if earlier is not None and earlier.get("spec_name") == spec_name:
        return True
    if overwrite:
        return True
    if earlier is not None:
        what = f"the results of another spec, {earlier.get('spec_name')!r} (run {earlier.get('run_id', '?')})"
    else:
        shown = ", ".join(entries[:5]) + (f", ... ({len(entries)} entries)" if len(entries) > 5 else "")
        what = f"files that are not a run of spec {spec_name!r} ({shown})"
    raise UserError(f"-o {folder}: the folder is not empty: it holds {what}; nothing was run. Give a new or empty "
                    f"folder, or pass --overwrite (overwrite=True in probekit.api.run) to write there: it replaces "
                    f"{RESULTS_FILE}, {VERDICT_FILE}, {REPORT_FILE} and the *.png files and leaves every other file alone")


def clear_run_files(folder: Path) -> list[Path]:
    """Remove the files a run wrote into ``folder`` (results, verdict, figures, temporary files); return them."""
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        name = path.name
        ours = name in RUN_FILES or name.lower().endswith(".png") or _temporary(name)
        if ours and (path.is_file() or path.is_symlink()):
            path.unlink()
            removed.append(path)
    return removed


def _temporary(name: str) -> bool:
    """Whether ``name`` is a file a run writes before renaming it into place (``.results.parquet.<pid>.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp") and any(f".{f}." in name for f in RUN_FILES)


# -- resuming ------------------------------------------------------------------------


def resumable_run(folder: Path) -> pa.Table:
    """The results table of the interrupted run in ``folder``; UserError (exit 2) when the folder holds no run."""
    what = f"--resume {folder}"
    if not folder.is_dir():
        raise UserError(f"{what}: no such folder; give the folder of an interrupted run (it holds {RESULTS_FILE})")
    if not (folder / RESULTS_FILE).is_file():
        raise UserError(f"{what}: not a run folder: it holds no {RESULTS_FILE}. A run stopped before its first "
                        f"comparison finished leaves none: run the spec again (-o {folder}), its finished fine-tunes "
                        "come from the cache")
    try:
        table = read_table(folder / RESULTS_FILE)
    except UserError as error:
        raise UserError(f"{what}: not a run folder: {error}") from None
    return table


def remove_temporaries(folder: Path) -> None:
    """Remove what a writer killed mid-write left (``.results.parquet.<pid>.tmp``): results/io.py writes
    atomically, so the run's results are the renamed file alone."""
    for path in folder.iterdir():
        if _temporary(path.name) and path.is_file():
            path.unlink()


def check_same_spec(folder: Path, earlier: dict, spec_name: str, spec_text: str) -> None:
    """Refuse (UserError) to resume a run of another spec, or of another version of the spec (its text's sha256)."""
    what = f"--resume {folder}"
    if earlier.get("spec_name") != spec_name:
        raise UserError(f"{what}: a run of spec {earlier.get('spec_name')!r}, not of {spec_name!r}; nothing was run")
    before, now = _sha256(str(earlier.get("spec_text", ""))), _sha256(spec_text)
    if before != now:
        raise UserError(f"{what}: a run of another version of spec {spec_name!r} (the run's spec text has sha256 "
                        f"{before[:12]}, the spec's now {now[:12]}); resuming would mix the results of two specs, "
                        "nothing was run. Run the spec anew (-o a new folder)")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class RunOutput:
    """The results file of one run: the folder asked for, or a fallback when writing there fails."""

    folder: Path
    fallbacks: tuple[Path, ...]  # folders to try, in order, when writing into ``folder`` fails
    replace: bool = False  # clear an earlier run's files before the first write
    on_fallback: Callable[[str], None] | None = None
    failure: str | None = None  # why writing into ``folder`` failed, once it has
    _fallback: Path | None = field(default=None, repr=False)

    @property
    def path(self) -> Path:
        """Where the results file is (or will be)."""
        return self._fallback or self.folder / RESULTS_FILE

    def write(self, table: pa.Table) -> Path:
        if self._fallback is None:
            try:
                if self.replace:
                    clear_run_files(self.folder)
                    self.replace = False
                return write_table(table, self.folder / RESULTS_FILE)
            except OSError as error:
                known = write_failure(error, "the results", self.folder / RESULTS_FILE)
                self.failure = str(known) if known else (f"could not write {self.folder / RESULTS_FILE} "
                                                         f"({type(error).__name__}: {error})")
        return self._write_fallback(table)

    def _write_fallback(self, table: pa.Table) -> Path:
        errors = []
        candidates = [self._fallback] if self._fallback else [folder / RESULTS_FILE for folder in self.fallbacks]
        for path in candidates:
            try:
                written = write_table(table, path)
            except OSError as error:
                errors.append(f"{path}: {error}")
                continue
            if self._fallback is None:
                self._fallback = written
                if self.on_fallback is not None:
                    self.on_fallback(f"{self.failure}; the results are saved in {written} instead")
            return written
        raise OutputError(f"{self.failure}; no fallback could be written either ({'; '.join(errors)}): the results "
                          "of this run are lost, nothing else was changed")


def fallback_folders(cache: Path, spec_name: str, run_id: str) -> tuple[Path, ...]:
    """Where the results go when the run folder cannot be written: the cache, the current folder, the temp folder."""
    name = f"{_safe(spec_name)}-{run_id}"
    return (cache / UNSAVED / name, Path.cwd() / f"probekit-unsaved-{name}", Path(tempfile.gettempdir()) / f"probekit-unsaved-{name}")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "spec"


@contextmanager
def claimed(folder: Path, cache: Path, what: str) -> Iterator[None]:
    """Hold the lock of run folder ``folder`` while a run writes there; UserError naming the holder when another
    process holds it (two runs into one folder would leave one's results beside the other's figures)."""
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:20]
    try:
        (cache / LOCKS).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_failure(error, "the lock of the run folder in", cache / LOCKS) or error from None
    lock_file = cache / LOCKS / f"output-{digest}.lock"
    owner_file = lock_file.with_suffix(".owner")
    lock = FileLock(lock_file)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            owner = owner_file.read_text().strip() or "another process"
        except OSError:
            owner = "another process"
        raise UserError(f"{what} {folder}: another probekit run ({owner}) is writing into this folder now; nothing "
                        "was run. Wait for it to finish, or give this run another folder") from None
    try:
        owner_file.write_text(f"{owner_id()}\n")
        yield
    finally:
        owner_file.unlink(missing_ok=True)
        lock.release()
