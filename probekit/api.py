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

import base64
import functools
import html
import io
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import torch
from rich.console import Console

from probekit.data.batching import make_batches
from probekit.data.example import Example
from probekit.engine.capture import forward
from probekit.engine.probe import Prober
from probekit.engine.progress import make_progress
from probekit.engine.session import Session
from probekit.errors import ExitCode, Problem, SpecError, did_you_mean
from probekit.results.events import Event, events_of
from probekit.expect.evaluate import Outcome, evaluate
from probekit.models.loading import load_encoder, load_tokenizer, pick_device, resolve
from probekit.report.figures import iter_figures
from probekit.report.html import notebook_view, verdicts_from_outcomes, verdicts_from_record
from probekit.results.history import read_verdict
from probekit.results.io import RESULTS_FILE, metadata, read_table
from probekit.results.layers import format_layers, parse_layers, series_index, trend_offenders
from probekit.expect.kinds import Expectation
from probekit.spec.model import ModelRef, Spec


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
        return not trend_offenders(self.select(layers), True, tolerance)

    def is_decreasing(self, tolerance: float = 0.0, layers: Any = "all") -> bool:
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
                 path: Path | None = None, outcomes: list[Outcome] | None = None, exit_code: ExitCode | None = None):
        self.table = table
        self.outcomes = outcomes or []
        self.exit_code = exit_code
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.path = path
        self.spec = spec
        self.cached = cached
        self._index = None

    @classmethod
    def load(cls, path: str | Path) -> Results:
        """The results of an earlier run: its run folder or its results.parquet."""
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
        return metadata(self.table)

    @property
    def errors(self) -> list[Event]:
        """What failed during the run: metrics that could not measure and plugin bugs, as events
        (``kind``, ``comparison``, ``metric``, ``message``; ``str(event)`` reads "comparison / metric: why")."""
        return events_of(self.metadata, "error", "failure")

    @property
    def notes(self) -> list[Event]:
        """What the run noted beside its rows (a metric without an interval, a model that did not learn)."""
        return events_of(self.metadata, "note")

    @property
    def comparisons(self) -> list[str]:
        return list(dict.fromkeys(self.table.column("comparison").to_pylist()))

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys(self.table.column("metric").to_pylist()))

    def _series_index(self):
        if self._index is None:
            self._index = series_index(self.table)
        return self._index

    def series(self, comparison: str, metric: str, head: int | None = None) -> LayerSeries:
        """``{layer: value}`` of one comparison and metric (label as in the spec); the layer's value unless ``head``."""
        index = self._series_index()
        values = index.get((comparison, metric, head))
        if values is None:
            if comparison not in self.comparisons:
                hint = did_you_mean(comparison, self.comparisons)
                raise SeriesNotFound(f"no comparison {comparison!r} in these results (they have {', '.join(self.comparisons)})"
                               + (f"; {hint}" if hint else ""))
            if (comparison, metric, None) not in index:
                measured = sorted({m for c, m, _ in index if c == comparison})
                failed = [str(e) for e in self.errors if (e.comparison, e.metric) == (comparison, metric)]
                raise SeriesNotFound(f"no {metric!r} values for {comparison!r}"
                               + (f": the metric failed ({failed[0]})" if failed else f" (it has {', '.join(measured)})"))
            heads = sorted(h for c, m, h in index if c == comparison and m == metric and h is not None)
            raise SeriesNotFound(f"no head {head} of {metric!r} for {comparison!r} (heads: {heads or 'none, a per-layer metric'})")
        return LayerSeries(values, comparison=comparison, metric=metric, head=head)

    def heads(self, comparison: str, metric: str) -> list[int]:
        return sorted(h for c, m, h in self._series_index() if c == comparison and m == metric and h is not None)

    def check(self, expectations: Iterable[Expectation] | None = None) -> list[Outcome]:
        """Evaluate expectations (by default the spec's ``[[expect]]``) on these results."""
        if expectations is None:
            if self.spec is None:
                raise ValueError("these results were loaded without their spec: pass the expectations to check")
            expectations = self.spec.expectations
        return evaluate(expectations, self.table)

    def to_pandas(self):
        return self.table.to_pandas()

    # -- notebooks -------------------------------------------------------------------

    def _repr_html_(self) -> str:
        """Jupyter's view: the run's HTML report (report.html's content), its expectations judged when known."""
        if self.outcomes or self.spec is not None:
            verdicts = verdicts_from_outcomes(self.outcomes)
        else:  # loaded from a run folder: the verdict.json beside it, if judging finished
            record = read_verdict(self.run_dir) if self.run_dir else None
            verdicts = verdicts_from_record(record) if record is not None else None
        where = f"{'cached, ' if self.cached else ''}in {self.run_dir}" if self.run_dir else ""
        return notebook_view(self.table, verdicts, note=where)

    def plot(self, metric: str | None = None) -> Figures:
        """The matplotlib figures a run writes (``Figure.get_label()`` is the PNG's name), of one metric if given."""
        table = self.table
        if metric is not None:
            if metric not in self.metrics:
                hint = did_you_mean(metric, self.metrics)
                raise SeriesNotFound(f"no metric {metric!r} in these results (they have {', '.join(self.metrics)})"
                                     + (f"; {hint}" if hint else ""))
            table = table.filter(pc.equal(table.column("metric"), metric))
        return Figures(figure for _, figure in iter_figures(table))


class Figures(list):
    """A list of matplotlib figures that Jupyter shows one under the other."""

    def _repr_html_(self) -> str:
        images = []
        for figure in self:
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png")
            encoded = base64.b64encode(buffer.getvalue()).decode()
            images.append(f'<img alt="{_h(figure.get_label())}" src="data:image/png;base64,{encoded}"/>')
        return "<div>" + "<br/>".join(images) + "</div>" if images else "<p>no figures</p>"


def _h(value: Any) -> str:
    return html.escape(str(value))


# ------------------------------------------------------------------ running


def load(spec: str | Path | Mapping[str, Any], *, plugins: Iterable[str] = (), overrides: Mapping[str, Any] | None = None,
         base_dir: str | Path | None = None) -> Spec:
    """Validate a spec given as a path or as a dict (relative paths in a dict resolve from ``base_dir``, else the cwd)."""
    session = Session(plugins=plugins, overrides=overrides)
    if isinstance(spec, Mapping):
        return session.load(*_document(spec, base_dir))[0]
    return session.load(Path(spec))[0]


def run(
    spec: str | Path | Mapping[str, Any],
    *,
    output: str | Path | None = None,
    plugins: Iterable[str] = (),
    use_cache: bool = True,
    reports: str | Path = "reports",
    overrides: Mapping[str, Any] | None = None,
    console: Console | None = None,
    base_dir: str | Path | None = None,
    overwrite: bool = False,
    log: Iterable[str] = (),
) -> Results:
    """Run a spec (a TOML path or a dict) exactly as ``probekit run`` does, and return its results.

    ``output``: the run folder to write (default ``<reports>/spec_name=<spec>/run=<run id>``): a new or empty
    folder, or an earlier run folder of the same spec (its files are replaced); anything else
    raises a UserError before anything runs, unless ``overwrite`` (``--overwrite``).
    ``plugins``: extra plugin modules or files, as ``-p`` takes them (``no:NAME`` blocks one).
    ``use_cache``: reuse the results of an earlier identical run (False: ``--fresh``).
    ``log``: experiment trackers to log the run to besides the spec's ``[run] log`` (``--log``: "wandb", "mlflow").
    Raises a :class:`probekit.errors.UserError` for a spec or input that cannot run.
    """
    session = Session(plugins=plugins, overrides=overrides, reports=reports, console=console, use_cache=use_cache,
                      overwrite=overwrite, log=log)
    if isinstance(spec, Mapping):
        parsed = session.load(*_document(spec, base_dir))[0]
    else:
        parsed = Path(spec)
    result = session.run(parsed, output=output)
    return Results(result.table, result.run_dir, spec=result.spec, cached=result.cached, path=result.path,
                   outcomes=result.outcomes, exit_code=result.exit_code)


def activations(model: str | Path, texts: Sequence[str], *, layers: Iterable[int] | None = None,
                batch_size: int = 32, max_length: int = 128, device: str = "auto", per_text: bool = False,
                spec: str | Path | None = None, console: Console | None = None) -> dict[int, Any]:
    """Hidden states of a model on some texts, per layer (0 = embeddings): ``{layer: (real tokens, hidden)}``.

    ``model`` is what a spec's ``id`` takes (``"minilm"``, a hub id, a folder), or with ``spec``
    the name of a model that spec declares (``activations("seed1", texts, spec="specs/x.toml")``:
    a fine-tune comes from the checkpoint cache, trained first if it is not there). Padding is
    dropped, float64 on the CPU: the datapoints the token-level metrics see, for checking a metric
    by hand. ``per_text``: each layer maps to a list with one ``(tokens, hidden)`` tensor per text,
    in order; else the texts' tokens are concatenated in order. A model is loaded once however many
    calls ask for it (the last two stay loaded); progress is shown for more than one batch.
    """
    target = pick_device(device)
    console = console or Console(stderr=True)
    source = _declared_source(spec, str(model), console) if spec is not None else resolve(str(model))
    encoder, tokenizer = _loaded(source, str(model), str(target))
    examples = [Example(text, None, 0) for text in texts]
    chosen: dict[int, list[torch.Tensor]] = {}
    with make_progress(console) as progress:
        task = progress.add_task(f"activations of {model}", total=len(examples), status="") \
            if len(examples) > batch_size else None
        for batch in make_batches(examples, tokenizer, batch_size=batch_size, max_length=max_length):
            batch = batch.to(target)
            capture = forward(encoder, batch, frozenset({"hidden_states"}), str(model))
            mask = batch.attention_mask.bool()
            for layer in range(len(capture.hidden_states)) if layers is None else layers:
                hidden = capture.hidden_states[layer].double().cpu()
                # (batch, tokens, hidden) -> one (real tokens, hidden) per text, or all texts' real tokens
                chosen.setdefault(layer, []).extend([h[m] for h, m in zip(hidden, mask.cpu())] if per_text
                                                    else [hidden[mask.cpu()]])
            if task is not None:
                progress.advance(task, batch.size)
    return {layer: parts if per_text else torch.cat(parts) for layer, parts in chosen.items()}


@functools.lru_cache(maxsize=2)
def _loaded(source: str, name: str, device: str):
    """An encoder and its tokenizer, loaded once per source and device (texts of many calls share it)."""
    encoder = load_encoder(source, name, eager=False, device=torch.device(device), dtype=torch.float32)
    return encoder, load_tokenizer(source, name)


def _declared_source(spec: str | Path, name: str, console: Console) -> str:
    """Where ``models.<name>`` of ``spec`` has its weights: its id, or its fine-tune's folder (trained if not cached)."""
    session = Session(console=console)
    parsed, manager = session.load(Path(spec))
    if name not in parsed.models:
        raise SpecError(parsed.path, [Problem("models", repr(name), "a model the spec declares: " +
                                              ", ".join(parsed.models), did_you_mean(name, parsed.models))])
    prober = Prober(parsed, manager, console, run_id="activations")
    with make_progress(console) as progress:
        return prober.resolve(ModelRef(name), progress).source


def _document(spec: Mapping[str, Any], base_dir: str | Path | None) -> tuple[Path, dict, str]:
    """A dict spec as the (path, document, text) a TOML file would give."""
    document = _plain(spec)
    name = document.get("name") if isinstance(document.get("name"), str) and document.get("name") else "spec"
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    path = base.resolve() / f"{_safe_name(name)}.toml"
    try:
        text = to_toml(document)
    except TypeError as error:
        raise SpecError(path, [Problem("", str(error), "TOML values: strings, numbers, booleans, arrays and tables")]) from None
    return path, document, text


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
