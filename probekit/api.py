"""The Python API: run a spec from a test or a notebook and read its results layer by layer.

    from probekit.api import run

    results = run("specs/seed_consistency.toml")
    series = results.series("pretrained_vs_seed1", "svcca")   # {layer: value}
    assert series.is_increasing(tolerance=0.01), series

A run is cached by everything that determines its numbers (the spec's text, the
identities of the pre-trained models, the data files, the versions of probekit,
torch, transformers and of the metric plugins in use), so running the same spec
again, from the API or from ``pytest``, reuses the earlier results.
docs/testing.md documents it.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from rich.console import Console

    from probekit.expect import Expectation, Outcome
    from probekit.pluginmanager import PluginManager
    from probekit.spec import Spec

#: Bump when a change to how results are keyed or stored makes old cache entries wrong.
RESULTS_CACHE_VERSION = "1"
CACHE_INFO_FILE = "run.json"


# ------------------------------------------------------------------ layer series


class SeriesNotFound(KeyError):
    """A comparison, metric, head or layer the results do not have; the message says what they have."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class LayerSeries(Mapping):
    """One comparison's values of one metric (and head), by layer: ``{layer: value}``.

    A read-only mapping, sorted by layer, with the helpers the assertions use.
    """

    def __init__(self, values: Mapping[int, float], *, comparison: str = "", metric: str = "", head: int | None = None):
        self._values = {int(layer): float(values[layer]) for layer in sorted(values)}
        self.comparison = comparison
        self.metric = metric
        self.head = head

    def __getitem__(self, layer: int) -> float:
        try:
            return self._values[layer]
        except KeyError:
            from probekit.expect import format_layers

            raise SeriesNotFound(f"layer {layer} is not in {self._label()} (layers {format_layers(self._values)})") from None

    def __iter__(self) -> Iterator[int]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def _label(self) -> str:
        head = f" head {self.head}" if self.head is not None else ""
        return f"{self.metric}{head} of {self.comparison}" if self.comparison else (self.metric or "series")

    def __repr__(self) -> str:
        values = ", ".join(f"{layer}: {value:.4g}" for layer, value in self._values.items())
        return f"LayerSeries({self._label()}: {{{values}}})"

    @property
    def layers(self) -> list[int]:
        return list(self._values)

    def select(self, layers: Any = "all") -> LayerSeries:
        """The layers a selection names ("last 2", "1-4", [1, 3], ...); KeyError if some are missing."""
        from probekit.expect import format_layers, parse_layers

        selection = parse_layers(layers)
        chosen, missing = selection.resolve(self._values)
        if missing:
            what = missing if isinstance(missing, str) else f"layers {format_layers(missing)} are missing"
            raise SeriesNotFound(f"{self._label()}: {what} (it has layers {format_layers(self._values)})")
        return LayerSeries({layer: self._values[layer] for layer in chosen}, comparison=self.comparison,
                           metric=self.metric, head=self.head)

    def mean(self, layers: Any = "all") -> float:
        chosen = self.select(layers)
        return math.fsum(chosen.values()) / len(chosen) if len(chosen) else math.nan

    def is_increasing(self, tolerance: float = 0.0, layers: Any = "all") -> bool:
        """Every layer at least the largest earlier value minus ``tolerance`` (the ``trend`` expectation's rule)."""
        from probekit.expect import trend_offenders

        return not trend_offenders(self.select(layers), True, tolerance)

    def is_decreasing(self, tolerance: float = 0.0, layers: Any = "all") -> bool:
        from probekit.expect import trend_offenders

        return not trend_offenders(self.select(layers), False, tolerance)

    def argmax(self) -> int:
        return max(self._values, key=self._values.__getitem__)

    def argmin(self) -> int:
        return min(self._values, key=self._values.__getitem__)

    def to_dict(self) -> dict[int, float]:
        return dict(self._values)


# ------------------------------------------------------------------ results


class Results:
    """A run's results: the Parquet table, its metadata, and layer series per comparison and metric."""

    def __init__(self, table: pa.Table, run_dir: Path | None = None, *, spec: Spec | None = None, cached: bool = False,
                 path: Path | None = None):
        self.table = table
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.path = path
        self.spec = spec
        self.cached = cached
        self._index = None

    @classmethod
    def load(cls, path: str | Path) -> Results:
        """The results of an earlier run: its run folder or its results.parquet."""
        from probekit.results import RESULTS_FILE, read_table

        path = Path(path)
        file = path / RESULTS_FILE if path.is_dir() else path
        return cls(read_table(file), file.parent.resolve(), path=file.resolve())

    def __repr__(self) -> str:
        where = f" in {self.run_dir}" if self.run_dir else ""
        return (f"<Results of spec {self.metadata.get('spec_name', '?')!r}, run {self.metadata.get('run_id', '?')}"
                f"{' (cached)' if self.cached else ''}{where}: {self.table.num_rows} rows>")

    @property
    def metadata(self) -> dict[str, Any]:
        """The run's ``probekit.*`` metadata, decoded (spec_name, spec_text, models, metrics, errors, ...)."""
        from probekit.results import metadata

        return metadata(self.table)

    @property
    def errors(self) -> list[str]:
        """Metrics that failed during the run ("comparison / metric: why")."""
        return list(self.metadata.get("errors", []) or [])

    @property
    def comparisons(self) -> list[str]:
        return list(dict.fromkeys(self.table.column("comparison").to_pylist()))

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys(self.table.column("metric").to_pylist()))

    def _series_index(self):
        if self._index is None:
            from probekit.expect import _index

            self._index = _index(self.table)
        return self._index

    def series(self, comparison: str, metric: str, head: int | None = None) -> LayerSeries:
        """``{layer: value}`` of one comparison and metric (label as in the spec); the layer's value unless ``head``."""
        index = self._series_index()
        values = index.get((comparison, metric, head))
        if values is None:
            from probekit.spec import did_you_mean

            if comparison not in self.comparisons:
                hint = did_you_mean(comparison, self.comparisons)
                raise SeriesNotFound(f"no comparison {comparison!r} in these results (they have {', '.join(self.comparisons)})"
                               + (f"; {hint}" if hint else ""))
            if (comparison, metric, None) not in index:
                measured = sorted({m for c, m, _ in index if c == comparison})
                failed = [e for e in self.errors if e.startswith(f"{comparison} / {metric}:")]
                raise SeriesNotFound(f"no {metric!r} values for {comparison!r}"
                               + (f": the metric failed ({failed[0]})" if failed else f" (it has {', '.join(measured)})"))
            heads = sorted(h for c, m, h in index if c == comparison and m == metric and h is not None)
            raise SeriesNotFound(f"no head {head} of {metric!r} for {comparison!r} (heads: {heads or 'none, a per-layer metric'})")
        return LayerSeries(values, comparison=comparison, metric=metric, head=head)

    def heads(self, comparison: str, metric: str) -> list[int]:
        return sorted(h for c, m, h in self._series_index() if c == comparison and m == metric and h is not None)

    def check(self, expectations: Iterable[Expectation] | None = None) -> list[Outcome]:
        """Evaluate expectations (by default the spec's ``[[expect]]``) on these results."""
        from probekit.expect import evaluate

        if expectations is None:
            if self.spec is None:
                raise ValueError("these results were loaded without their spec: pass the expectations to check")
            expectations = self.spec.expectations
        return evaluate(expectations, self.table)

    def to_pandas(self):
        return self.table.to_pandas()


# ------------------------------------------------------------------ running


def load(spec: str | Path | Mapping[str, Any], manager: PluginManager, *, overrides: Mapping[str, Any] | None = None,
         base_dir: str | Path | None = None) -> Spec:
    """Validate a spec given as a path or as a dict (relative paths in a dict resolve from ``base_dir``, else the cwd)."""
    from probekit.spec import SpecError, load_spec, parse_spec

    if isinstance(spec, Mapping):
        document = _plain(spec)
        name = document.get("name") if isinstance(document.get("name"), str) and document.get("name") else "spec"
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        path = base.resolve() / f"{_safe_name(name)}.toml"
        try:
            text = to_toml(document)
        except TypeError as error:
            from probekit.spec import Problem

            raise SpecError(path, [Problem("", str(error), "TOML values: strings, numbers, booleans, arrays and tables")]) from None
        return parse_spec(document, path=path, text=text, manager=manager, overrides=dict(overrides or {}))
    return load_spec(Path(spec), manager, overrides)


def run(
    spec: str | Path | Mapping[str, Any],
    *,
    output: str | Path | None = None,
    plugins: Iterable[str] = (),
    use_cache: bool = True,
    reports: str | Path = "reports",
    overrides: Mapping[str, Any] | None = None,
    console: Console | None = None,
    manager: PluginManager | None = None,
) -> Results:
    """Run a spec (a TOML path or a dict) and return its results.

    ``output``: the run folder to write (default ``<reports>/<spec>/<run id>``); on a cache hit
    the cached results.parquet is copied there.
    ``plugins``: extra plugin modules or files, as ``-p`` takes them.
    ``use_cache``: reuse the results of an earlier identical run, and store this
    one for next time (in ``<cache>/results/<key>/``); False runs afresh and stores nothing.
    Raises SpecError for an invalid spec, RunError / ModelError / DataError when it cannot run.
    """
    from rich.console import Console

    from probekit.pluginmanager import default_manager
    from probekit.runner import Runner

    if manager is None:
        manager = default_manager(plugins)
    else:
        manager.load_named(plugins)
    parsed = load(spec, manager, overrides=overrides)
    console = console or Console(stderr=True)
    cache_dir = results_cache_dir(parsed, manager) if use_cache else None
    if cache_dir is not None:
        cached = _read_cache(cache_dir, parsed)
        if cached is not None and output is not None:  # the caller asked for a run folder: give it one
            from probekit.results import RESULTS_FILE, write_table

            path = write_table(cached.table, Path(output) / RESULTS_FILE)
            cached = Results(cached.table, path.parent, spec=parsed, cached=True, path=path)
        if cached is not None:
            console.print(f"probekit: {parsed.name}: reusing cached results ({cached.run_dir})", markup=False, highlight=False,
                          soft_wrap=True)
            return cached
    result = Runner(parsed, manager, console).run(output=Path(output) if output else None, reports_root=Path(reports))
    if cache_dir is not None and not result.errors:
        _write_cache(cache_dir, result.table, result.run_dir)
    return Results(result.table, result.run_dir, spec=parsed, path=result.path)


def cache_key(spec: Spec, manager: PluginManager) -> str:
    """The digest of everything that determines a spec's results."""
    import probekit
    from probekit.models import model_identity, pick_device

    known = manager.metrics()
    metrics = {}
    for label, metric_spec in spec.metrics.items():
        info = known.get(metric_spec.metric)
        if info is None:
            continue
        entry = [info.metric.name, info.plugin, info.distribution, info.version]
        if info.distribution == "local file" and Path(info.version).is_file():
            entry.append(_file_digest(Path(info.version)))
        metrics[label] = entry
    data = {name: _file_digest(Path(d.source)) for name, d in spec.data.items() if d.kind == "path" and Path(d.source).is_file()}
    identity = {
        "cache": RESULTS_CACHE_VERSION,
        "spec": spec.text,
        "spec_dir": str(spec.path.parent.resolve()),
        "overrides": {k: str(v) for k, v in dict(spec.overrides).items()},
        "models": {name: model_identity(m.id, m.revision) for name, m in spec.models.items() if not m.is_finetuned},
        "data": data,
        "metrics": metrics,
        "device": str(pick_device(spec.run.device)),
        "versions": {"probekit": probekit.__version__, "torch": _version("torch"), "transformers": _version("transformers")},
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


def results_cache_dir(spec: Spec, manager: PluginManager) -> Path:
    from probekit.finetune import cache_root

    return cache_root(spec.run.cache_dir) / "results" / cache_key(spec, manager)


def _read_cache(folder: Path, spec: Spec) -> Results | None:
    from probekit.results import RESULTS_FILE, read_table

    file = folder / RESULTS_FILE
    if not file.is_file():
        return None
    try:
        table = read_table(file)
        info = json.loads((folder / CACHE_INFO_FILE).read_text()) if (folder / CACHE_INFO_FILE).is_file() else {}
    except Exception:  # noqa: BLE001 - a damaged cache entry is rerun, not an error
        return None
    run_dir = Path(info["run_dir"]) if info.get("run_dir") and Path(info["run_dir"]).is_dir() else folder
    return Results(table, run_dir, spec=spec, cached=True, path=file)


def _write_cache(folder: Path, table: pa.Table, run_dir: Path) -> None:
    import os

    from probekit.results import RESULTS_FILE, write_table

    write_table(table, folder / RESULTS_FILE)
    temporary = folder / f".{CACHE_INFO_FILE}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps({"run_dir": str(Path(run_dir).resolve())}))
    os.replace(temporary, folder / CACHE_INFO_FILE)


def _file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()[:16]


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "spec"


# ------------------------------------------------------------------ dict specs as TOML text


def _plain(value: Any) -> Any:
    """Mappings as dicts and tuples as lists, recursively; Paths as strings."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_scalar(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"{type(value).__name__} {value!r} cannot be written as TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def to_toml(document: Mapping[str, Any]) -> str:
    """A TOML text for a spec given as a dict (what the run records as ``spec_text``)."""
    lines: list[str] = []

    def table(data: Mapping[str, Any], path: list[str]) -> None:
        for key, value in data.items():
            if not isinstance(value, dict) and not _is_table_array(value):
                lines.append(f"{_key(key)} = {_scalar(value)}")
        for key, value in data.items():
            if isinstance(value, dict):
                header = ".".join(_key(p) for p in [*path, key])
                lines.extend(["", f"[{header}]"])
                table(value, [*path, key])
            elif _is_table_array(value):
                header = ".".join(_key(p) for p in [*path, key])
                for item in value:
                    lines.extend(["", f"[[{header}]]"])
                    table(item, [*path, key])

    table(document, [])
    return "\n".join(lines).lstrip("\n") + "\n"
