"""Probe specs: TOML files that declare models, data, metrics and comparisons.

Validation happens before any model loads and reports every problem at once,
each with the key path, what was found and what was expected. docs/specs.md
documents the format.
"""
from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from probekit.metric import parse_options
from probekit.pluginmanager import PluginError, PluginManager

EMBEDDED_ALIASES = ("minilm", "all-MiniLM-L6-v2")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("float32", "float64", "bfloat16", "float16")
DATA_KINDS = ("task", "path", "hf", "glue", "mix")


@dataclass(frozen=True)
class Problem:
    key: str
    found: str
    expected: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.key or '(top level)'}: found {self.found}; expected {self.expected}"
        return text + (f" ({self.hint})" if self.hint else "")


class SpecError(Exception):
    """A spec that cannot run as written. ``problems`` lists every problem found."""

    def __init__(self, path: Path | str, problems: list[Problem]) -> None:
        self.path = Path(path)
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"{self.path}: {count}\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class RunSettings:
    device: str = "auto"
    dtype: str = "float32"
    batch_size: int = 32
    max_length: int = 128
    cache_dir: str | None = None


@dataclass(frozen=True)
class FinetuneSettings:
    """The paper's recipe (Table 1): Adam, slanted triangular schedule, dropout 0.1."""

    lr: float = 3e-5
    batch_size: int = 32
    epochs: int = 3
    max_length: int = 128
    seed: int = 0
    warmup: float = 0.1  # cut_frac of the slanted triangular schedule
    ratio: float = 32.0  # peak / lowest learning rate
    dropout: float = 0.1
    weight_decay: float = 0.0
    limit: int | None = None  # at most this many training examples
    snapshots: tuple[float, ...] = ()  # fractions of training at which to keep a checkpoint


@dataclass(frozen=True)
class ModelSpec:
    """A pre-trained model (``id``) or a fine-tune of another declared model (``base`` + ``train``)."""

    name: str
    id: str | None = None
    revision: str | None = None
    base: str | None = None
    train: str | None = None
    validation: str | None = None
    finetune: FinetuneSettings | None = None

    @property
    def is_finetuned(self) -> bool:
        return self.base is not None


@dataclass(frozen=True)
class DataSpec:
    name: str
    kind: str  # one of DATA_KINDS
    source: str  # task name, file path, HF dataset name, GLUE task, or "" for a mix
    split: str | None = None
    config: str | None = None
    text: str = "text"
    text_pair: str | None = None
    label: str = "label"
    glue_dir: str | None = None
    mix: tuple[tuple[str, int | None], ...] = ()
    limit: int | None = None
    seed: int | None = None


@dataclass(frozen=True)
class MetricSpec:
    """A configured metric: ``name`` is the spec's label, ``metric`` the plugin's metric name."""

    name: str
    metric: str
    options: Any
    metric_class: type | None = None  # the registered Metric subclass


@dataclass(frozen=True)
class ModelRef:
    """A comparison side: a declared model, optionally one of its training snapshots."""

    model: str
    snapshot: float | None = None

    def __str__(self) -> str:
        return self.model if self.snapshot is None else f"{self.model}@{self.snapshot:g}"


@dataclass(frozen=True)
class ComparisonSpec:
    name: str
    a: ModelRef
    b: ModelRef
    data: str
    metrics: tuple[str, ...]


@dataclass(frozen=True)
class Spec:
    path: Path
    name: str
    description: str
    text: str
    run: RunSettings
    models: dict[str, ModelSpec]
    data: dict[str, DataSpec]
    metrics: dict[str, MetricSpec]
    comparisons: tuple[ComparisonSpec, ...]
    expectations: tuple[Any, ...] = ()
    plugins: tuple[str, ...] = ()
    markers: tuple[str, ...] = ()  # pytest markers for the spec's expectation items
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


class _Table:
    """Reads one TOML table, recording every problem instead of stopping at the first."""

    def __init__(self, data: Any, key: str, problems: list[Problem]) -> None:
        self.key = key
        self.problems = problems
        self.seen: dict[str, None] = {}  # ordered: messages list keys as the format reads them
        if not isinstance(data, dict):
            self.problem("", _type_name(data), "a table")
            data = {}
        self.data = data

    def path(self, key: str) -> str:
        return f"{self.key}.{key}" if self.key and key else (self.key or key)

    def problem(self, key: str, found: str, expected: str, hint: str = "") -> None:
        self.problems.append(Problem(self.path(key), found, expected, hint))

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, *, choices=None, positive=False):
        self.seen[key] = None
        if key not in self.data:
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        is_number = float in kinds and isinstance(value, int) and not isinstance(value, bool)
        if not (isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)) and not is_number:
            expected = " or ".join(_type_name(k()) for k in kinds)
            self.problem(key, f"{_type_name(value)} {value!r}", expected)
            return default
        if choices is not None and value not in choices:
            self.problem(key, repr(value), "one of " + ", ".join(map(repr, choices)), did_you_mean(value, choices))
            return default
        if positive and value <= 0:
            self.problem(key, repr(value), "a positive number")
            return default
        return float(value) if is_number else value

    def finish(self, allowed: list[str] | None = None) -> None:
        allowed = allowed if allowed is not None else list(self.seen)
        for key in self.data:
            if key not in allowed:
                self.problem(key, "an unknown key", "one of " + ", ".join(allowed), did_you_mean(key, allowed))


def _read_toml(path: Path) -> tuple[str, dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpecError(path, [Problem("", f"an unreadable file ({error.strerror})", "a readable TOML file")]) from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpecError(path, [Problem("", f"invalid TOML ({error})", "a TOML document")]) from None


def load_spec(path: str | Path, manager: PluginManager, overrides: Mapping[str, Any] | None = None) -> Spec:
    """Read and validate a spec; raise SpecError listing every problem.

    ``manager`` supplies the metrics; plugins named in the spec's ``plugins``
    are loaded into it first. ``overrides`` replace top-level ``run`` keys
    (``--device`` on the command line).
    """
    path = Path(path)
    text, document = _read_toml(path)
    return parse_spec(document, path=path, text=text, manager=manager, overrides=overrides or {})


def parse_spec(
    document: dict, *, path: Path, text: str, manager: PluginManager, overrides: Mapping[str, Any]
) -> Spec:
    problems: list[Problem] = []
    top = _Table(document, "", problems)
    name = top.get("name", str, path.stem)
    description = top.get("description", str, "")
    plugins = tuple(top.get("plugins", list, []))
    markers = tuple(top.get("markers", list, []))
    if not all(isinstance(marker, str) and marker.isidentifier() for marker in markers):
        top.problem("markers", repr(list(markers)), 'pytest marker names, e.g. ["slow"]')
        markers = ()
    try:
        manager.load_named(plugins, base_dir=path.parent)
    except PluginError as error:
        problems.append(Problem("plugins", str(error), "importable plugin modules or .py files"))

    run_table = top.get("run", dict, {})
    run = _parse_run({**run_table, **overrides}, problems)
    finetune_defaults = _parse_finetune(top.get("finetune", dict, {}), "finetune", FinetuneSettings(), problems)

    data = {key: _parse_data(key, table, path.parent, problems) for key, table in top.get("data", dict, {}).items()}
    for spec in data.values():
        for part, _ in spec.mix:
            if part not in data:
                problems.append(Problem(f"data.{spec.name}.mix", repr(part), "a declared data name", did_you_mean(part, data)))
            elif data[part].kind == "mix":
                problems.append(Problem(f"data.{spec.name}.mix", f"the mix {part!r}", "plain data sources, not mixes"))

    models = {
        key: _parse_model(key, table, path.parent, finetune_defaults, problems)
        for key, table in top.get("models", dict, {}).items()
    }
    _check_model_references(models, data, problems)

    metrics = _parse_metrics(top.get("metrics", dict, {}), manager, problems)
    comparisons = _parse_comparisons(top.get("comparisons", list, []), models, data, metrics, problems)
    expect_tables = top.get("expect", list, [])
    top.finish(["name", "description", "plugins", "markers", "run", "finetune", "models", "data", "metrics", "comparisons", "expect"])

    spec = Spec(
        path=path, name=name, description=description, text=text, run=run, models=models, data=data,
        metrics=metrics, comparisons=tuple(comparisons), plugins=plugins, markers=markers, overrides=dict(overrides),
    )
    from probekit.expect import parse_expectations

    spec = replace(spec, expectations=tuple(parse_expectations(expect_tables, spec, problems)))
    if problems:
        raise SpecError(path, problems)
    return spec


def _parse_run(table: Any, problems: list[Problem]) -> RunSettings:
    reader = _Table(table, "run", problems)
    device = reader.get("device", str, "auto")
    if device.split(":")[0] not in DEVICES:
        reader.problem("device", repr(device), "one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'", did_you_mean(device, DEVICES))
        device = "auto"
    settings = RunSettings(
        device=device,
        dtype=reader.get("dtype", str, "float32", choices=DTYPES),
        batch_size=reader.get("batch_size", int, 32, positive=True),
        max_length=reader.get("max_length", int, 128, positive=True),
        cache_dir=reader.get("cache_dir", str, None),
    )
    reader.finish()
    return settings


def _parse_finetune(table: Any, key: str, defaults: FinetuneSettings, problems: list[Problem]) -> FinetuneSettings:
    reader = _Table(table, key, problems)
    values = {}
    for f in fields(FinetuneSettings):
        default = getattr(defaults, f.name)
        if f.name == "snapshots":
            snapshots = reader.get("snapshots", list, list(default))
            good = []
            for fraction in snapshots:
                if isinstance(fraction, int | float) and not isinstance(fraction, bool) and 0 < fraction <= 1:
                    good.append(float(fraction))
                else:
                    reader.problem("snapshots", repr(fraction), "fractions of training in (0, 1], e.g. [0.25, 0.5, 1.0]")
            values["snapshots"] = tuple(sorted(set(good)))
        elif f.name in ("lr", "warmup", "ratio", "dropout", "weight_decay"):
            values[f.name] = reader.get(f.name, float, default)
        elif f.name == "limit":
            values[f.name] = reader.get(f.name, int, default, positive=True)
        else:
            values[f.name] = reader.get(f.name, int, default, positive=f.name != "seed")
    if not 0 <= values["warmup"] < 1:
        reader.problem("warmup", repr(values["warmup"]), "a fraction of steps in [0, 1)")
    if values["ratio"] < 1:
        reader.problem("ratio", repr(values["ratio"]), "a number >= 1 (peak / lowest learning rate)")
    if not 0 <= values["dropout"] < 1:
        reader.problem("dropout", repr(values["dropout"]), "a probability in [0, 1)")
    reader.finish()
    return FinetuneSettings(**values)


def _resolve_path(value: str, base_dir: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base_dir / path


def looks_like_path(model_id: str) -> bool:
    return model_id.startswith((".", "/", "~")) or model_id.endswith(("/", "\\"))


def _parse_model(key: str, table: Any, base_dir: Path, defaults: FinetuneSettings, problems: list[Problem]) -> ModelSpec:
    reader = _Table(table, f"models.{key}", problems)
    model_id = reader.get("id", str)
    revision = reader.get("revision", str)
    base = reader.get("base", str)
    train = reader.get("train", str)
    validation = reader.get("validation", str)
    if model_id is not None and base is not None:
        reader.problem("", "both `id` and `base`", "`id` for a pre-trained model or `base` + `train` for a fine-tune")
    if model_id is None and base is None and isinstance(table, dict):
        reader.problem("", "neither `id` nor `base`", "`id = \"minilm\"` (or a hub id / local folder), or `base` + `train`")
    if base is not None and train is None:
        reader.problem("train", "nothing", "the name of the [data.*] entry to fine-tune on")
    if model_id is not None and looks_like_path(model_id):
        folder = _resolve_path(model_id, base_dir)
        if not folder.is_dir():
            reader.problem("id", repr(model_id), f"an existing model folder ({folder} does not exist)")
        model_id = str(folder)
    hyper_keys = [f.name for f in fields(FinetuneSettings)]
    finetune = None
    if base is not None:
        hyper = {k: v for k, v in reader.data.items() if k in hyper_keys}
        finetune = _parse_finetune(hyper, f"models.{key}", defaults, problems)
    elif any(k in reader.data for k in hyper_keys):
        reader.problem(next(k for k in reader.data if k in hyper_keys), "a fine-tuning setting on a pre-trained model",
                       "fine-tuning settings only beside `base` and `train`")
    reader.finish(["id", "revision", "base", "train", "validation", *hyper_keys])
    return ModelSpec(key, id=model_id, revision=revision, base=base, train=train, validation=validation, finetune=finetune)


def _check_model_references(models: dict[str, ModelSpec], data: dict[str, DataSpec], problems: list[Problem]) -> None:
    for model in models.values():
        if model.base is not None and model.base not in models:
            problems.append(Problem(f"models.{model.name}.base", repr(model.base), "a declared model name", did_you_mean(model.base, models)))
        for key in ("train", "validation"):
            value = getattr(model, key)
            if value is not None and value not in data:
                problems.append(Problem(f"models.{model.name}.{key}", repr(value), "a declared data name", did_you_mean(value, data)))
    for model in models.values():  # a fine-tune of a fine-tune is fine; a cycle is not
        seen, current = {model.name}, model
        while current.base in models:
            current = models[current.base]
            if current.name in seen:
                problems.append(Problem(f"models.{model.name}.base", "a cycle of `base` references", "a chain that ends at a pre-trained `id`"))
                break
            seen.add(current.name)


def _parse_data(key: str, table: Any, base_dir: Path, problems: list[Problem]) -> DataSpec:
    reader = _Table(table, f"data.{key}", problems)
    kinds = [kind for kind in DATA_KINDS if kind in reader.data]
    if len(kinds) != 1:
        found = "none of them" if not kinds else "several: " + ", ".join(kinds)
        reader.problem("", found, "exactly one source key: task, path, hf, glue or mix")
    kind = kinds[0] if kinds else "task"
    columns = {}
    source = ""
    mix: list[tuple[str, int | None]] = []
    if kind == "task":
        from probekit.tasks import TASKS

        source = reader.get("task", str, "")
        if source and source not in TASKS:
            reader.problem("task", repr(source), "a built-in task: " + ", ".join(TASKS), did_you_mean(source, TASKS))
        split = reader.get("split", str, "train")
        if source in TASKS and split not in TASKS[source].sizes:
            reader.problem("split", repr(split), "one of " + ", ".join(TASKS[source].sizes), did_you_mean(split, TASKS[source].sizes))
    elif kind == "glue":
        from probekit.glue import GLUE_TASKS, normalize_split, normalize_task

        source = reader.get("glue", str, "")
        split = reader.get("split", str, "validation")
        try:
            source = normalize_task(source)
        except ValueError:
            reader.problem("glue", repr(source), "a GLUE task: " + ", ".join(GLUE_TASKS), did_you_mean(source, GLUE_TASKS))
        else:
            try:
                split = normalize_split(source, split)
            except ValueError as error:
                reader.problem("split", repr(split), f"a split of {source} ({error})")
        glue_dir = reader.get("glue_dir", str)
        columns["glue_dir"] = str(_resolve_path(glue_dir, base_dir)) if glue_dir else None
    elif kind == "mix":
        split = None
        raw = reader.get("mix", (list, dict), [])
        items = raw.items() if isinstance(raw, dict) else ((name, None) for name in raw)
        for part, count in items:
            if not isinstance(part, str) or not (count is None or (isinstance(count, int) and count > 0)):
                reader.problem("mix", repr(raw), 'data names, or a table of name = count, e.g. { rte_dev = 200, mrpc_dev = 200 }')
                break
            mix.append((part, count))
    else:
        split = reader.get("split", str, "train" if kind == "hf" else None)
        columns = dict(
            text=reader.get("text", str, "text"),
            text_pair=reader.get("text_pair", str),
            label=reader.get("label", str, "label"),
        )
        if kind == "path":
            source = reader.get("path", str, "")
            file = _resolve_path(source, base_dir)
            if source and not file.is_file():
                reader.problem("path", repr(source), f"an existing data file ({file} does not exist)")
            source = str(file)
        else:
            source = reader.get("hf", str, "")
            columns["config"] = reader.get("config", str)
    limit = reader.get("limit", int, None, positive=True)
    seed = reader.get("seed", int)
    reader.finish()
    return DataSpec(key, kind, source, split=split, mix=tuple(mix), limit=limit, seed=seed, **columns)


def _parse_metrics(tables: dict[str, Any], manager: PluginManager, problems: list[Problem]) -> dict[str, MetricSpec]:
    try:
        known = manager.metrics()
    except PluginError as error:
        problems.append(Problem("metrics", str(error), "plugins that register valid metrics"))
        return {}
    metrics = {}
    for label, table in tables.items():
        if not isinstance(table, dict):
            problems.append(Problem(f"metrics.{label}", _type_name(table), "a table of options"))
            continue
        options_table = dict(table)
        metric_name = options_table.pop("metric", label)
        if metric_name not in known:
            key = f"metrics.{label}" + (".metric" if "metric" in table else "")
            problems.append(Problem(key, f"the metric {metric_name!r}, which no plugin provides",
                                    "one of " + ", ".join(sorted(known)), did_you_mean(metric_name, known)))
            continue
        options, option_problems = parse_options(known[metric_name].metric, options_table)
        for option, found, expected in option_problems:
            hint = did_you_mean(option, [f for f in known[metric_name].metric.Options.__dataclass_fields__]) if found == "an unknown option" else ""
            problems.append(Problem(f"metrics.{label}.{option}".rstrip("."), found, expected, hint))
        metrics[label] = MetricSpec(label, metric_name, options, known[metric_name].metric)
    return metrics


def parse_model_ref(value: str) -> tuple[str, float | None] | None:
    """``"seed1"`` or ``"seed1@0.5"`` (a training snapshot); None when malformed."""
    model, at, fraction = value.partition("@")
    if not at:
        return model, None
    try:
        return model, float(fraction)
    except ValueError:
        return None


def _parse_comparisons(tables: list, models, data, metrics, problems: list[Problem]) -> list[ComparisonSpec]:
    comparisons = []
    for index, table in enumerate(tables):
        reader = _Table(table, f"comparisons[{index}]", problems)
        sides = []
        for side in ("a", "b"):
            value = reader.get(side, str)
            if value is None:
                reader.problem(side, "nothing", "a declared model name (optionally name@snapshot, e.g. seed1@0.5)")
                sides.append(None)
                continue
            parsed = parse_model_ref(value)
            if parsed is None:
                reader.problem(side, repr(value), "name or name@fraction, e.g. seed1@0.5")
                sides.append(None)
                continue
            model, snapshot = parsed
            if model not in models:
                reader.problem(side, repr(model), "a declared model name", did_you_mean(model, models))
            elif snapshot is not None:
                finetune = models[model].finetune
                kept = finetune.snapshots if finetune else ()
                if snapshot not in kept:
                    reader.problem(side, repr(value), f"a snapshot that models.{model} keeps: "
                                   + (", ".join(f"{model}@{s:g}" for s in kept) if kept else f"it keeps none (add snapshots = [...] to models.{model})"))
            sides.append(ModelRef(model, snapshot))
        data_name = reader.get("data", str)
        if data_name is None:
            reader.problem("data", "nothing", "a declared data name to evaluate on")
        elif data_name not in data:
            reader.problem("data", repr(data_name), "a declared data name", did_you_mean(data_name, data))
        names = reader.get("metrics", list, list(metrics))
        for metric in names:
            if metric not in metrics:
                reader.problem("metrics", repr(metric), "a metric declared under [metrics]: " + ", ".join(metrics), did_you_mean(metric, metrics))
        if not names:
            reader.problem("metrics", "no metrics", "at least one metric (declare it under [metrics.NAME])")
        default_name = f"{sides[0]}_vs_{sides[1]}" if all(sides) else f"comparison {index}"
        name = reader.get("name", str, default_name)
        if any(c.name == name for c in comparisons):
            reader.problem("name", repr(name), "a name no other comparison uses")
        every_snapshot = reader.get("every_snapshot", bool, False)
        kept = ()
        if every_snapshot and sides[1] is not None and sides[1].model in models:
            finetune = models[sides[1].model].finetune
            kept = finetune.snapshots if finetune else ()
            if not kept or sides[1].snapshot is not None:
                reader.problem("every_snapshot", "true", f"a plain fine-tuned model `b` that keeps snapshots = [...] (models.{sides[1].model})")
        reader.finish(["name", "a", "b", "data", "metrics", "every_snapshot"])
        if all(sides) and data_name in data:
            chosen = tuple(n for n in names if n in metrics)
            comparisons.append(ComparisonSpec(name, sides[0], sides[1], data_name, chosen))
            # One comparison per training snapshot shows when in training each layer moves.
            comparisons.extend(
                ComparisonSpec(f"{name}@{fraction:g}", sides[0], ModelRef(sides[1].model, fraction), data_name, chosen)
                for fraction in kept if fraction < 1.0 and sides[1].snapshot is None
            )
    if not tables:
        problems.append(Problem("comparisons", "no [[comparisons]]", "at least one comparison of two models on some data"))
    return comparisons
