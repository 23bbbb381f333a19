"""The results cache: a run's results reused when nothing that determines its numbers changed.

The key covers the spec's text and overrides, every pre-trained model's identity,
the content of every data source the spec names (through each source's
``fingerprint``), the code of every plugin in use (a hash of its module files, so
an edited editable or local plugin never gets its old values back), probekit's
own code, and the versions of torch and transformers.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import inspect
import json
import os
import sys
import warnings
from pathlib import Path

import pyarrow as pa

import probekit
from probekit.engine.examples import ExampleStore
from probekit.hooks.manager import PluginManager
from probekit.models.cachedir import cache_root
from probekit.models.loading import pick_device
from probekit.models.manifest import CacheWarning, manifest_problem, write_manifest
from probekit.results.io import RESULTS_FILE, read_table, write_table
from probekit.spec.model import Spec
from probekit.spec.series import declared_identity

#: Bump when a change to how results are keyed or stored makes old cache entries wrong.
RESULTS_CACHE_VERSION = "3"  # 3: every entry has a manifest (models/manifest.py), checked on reuse
CACHE_INFO_FILE = "run.json"


def results_key(spec: Spec, manager: PluginManager, examples: ExampleStore) -> str:
    """The digest of everything that determines a spec's results."""
    used = {m.metric for m in spec.metrics.values()}
    identity = {
        "cache": RESULTS_CACHE_VERSION,
        "spec": spec.text,
        "spec_dir": str(spec.path.parent.resolve()),
        "overrides": {k: str(v) for k, v in dict(spec.overrides).items()},
        "models": {name: declared_identity(m) for name, m in spec.models.items() if not m.is_finetuned},
        "data": {name: examples.fingerprint(name) for name in spec.data},
        "metrics": {name: [info.plugin, info.distribution, info.version, plugin_code_digest(manager, info.plugin),
                           code_digest(inspect.getfile(info.metric))]
                    for name, info in manager.metrics.items() if name in used},
        "sources": {kind: plugin_code_digest(manager, plugin) for kind, plugin in manager.source_plugins.items()},
        "probekit": probekit_code_digest(),
        "device": str(pick_device(spec.run.device)),
        "versions": {"probekit": probekit.__version__, "torch": _version("torch"),
                     "transformers": _version("transformers")},
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


def cache_dir(spec: Spec, key: str) -> Path:
    return cache_root(spec.run.cache_dir) / "results" / key


def plugin_code_digest(manager: PluginManager, plugin_name: str) -> str:
    plugin = manager.pm.get_plugin(plugin_name)
    file = getattr(plugin, "__file__", None) or getattr(sys.modules.get(type(plugin).__module__), "__file__", None)
    return code_digest(file) if file else "no-file"


def code_digest(file: str | os.PathLike) -> str:
    """A digest of a module's source: its file, or every .py file of its package."""
    path = Path(file)
    files = sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
    digest = hashlib.sha256()
    for source in files:
        digest.update(source.name.encode())
        digest.update(source.read_bytes() if source.is_file() else b"")
    return digest.hexdigest()[:16]


@functools.cache
def probekit_code_digest() -> str:
    return code_digest(Path(probekit.__file__))


def read_cached(folder: Path) -> tuple[pa.Table, Path] | None:
    """The cached table and the run folder it was first written to (the cache folder if that is gone). An entry
    that does not match its manifest (an edited or damaged file) is never reused: a CacheWarning says so, and
    None has the run compute again (and replace the entry)."""
    file = folder / RESULTS_FILE
    if not file.is_file():
        return None
    problem = manifest_problem(folder)
    if problem is not None:
        warnings.warn(f"the cached results {folder} do not match their manifest ({problem}); not reusing them, "
                      "computing again", CacheWarning, stacklevel=2)
        return None
    try:
        table = read_table(file)
        info = json.loads((folder / CACHE_INFO_FILE).read_text()) if (folder / CACHE_INFO_FILE).is_file() else {}
    except Exception:  # noqa: BLE001 - a damaged cache entry is rerun, not an error
        return None
    run_dir = Path(info["run_dir"]) if info.get("run_dir") and Path(info["run_dir"]).is_dir() else folder
    return table, run_dir


def write_cached(folder: Path, table: pa.Table, run_dir: Path) -> None:
    write_table(table, folder / RESULTS_FILE)
    temporary = folder / f".{CACHE_INFO_FILE}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps({"run_dir": str(Path(run_dir).resolve())}))
    os.replace(temporary, folder / CACHE_INFO_FILE)
    write_manifest(folder)  # what reuse and `probekit cache verify` check the entry against


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"
