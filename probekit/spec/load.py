"""Probe specs: TOML files that declare models, data, metrics and comparisons.

Validation happens before any model loads and reports every problem at once,
each with the key path, what was found and what was expected. The metrics and
data sources a spec may name come from its plugin set (the caller loads it,
including the spec's own ``plugins = [...]``). docs/specs.md documents the format.
"""
from __future__ import annotations

import codecs
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from probekit.data.source import DataSource, resolve_path
from probekit.declare import parse
from probekit.errors import Problem, SpecError, did_you_mean, type_name
from probekit.metrics.base import Metric, supports_permutation_null
from probekit.metrics.options import option_fields, parse_options
from probekit.models.adapters import ADAPTER_CONFIG
from probekit.models.settings import LORA_KEYS, FinetuneSettings
from probekit.spec.expectations import parse_expectations
from probekit.spec.include import blamed_on_overrides, resolve_includes, with_includes_text, with_overrides
from probekit.spec.model import (
    MAX_DRAWS,
    RAY_KEYS,
    ComparisonSpec,
    DataSpec,
    MetricSpec,
    ModelRef,
    ModelSpec,
    RunSettings,
    Spec,
    point_text,
)
from probekit.spec.series import SERIES_KEYS, model_folder_problem, parse_series
from probekit.spec.tables import TableReader

TOP_LEVEL_KEYS = ("name", "description", "plugins", "markers", "run", "finetune", "models", "data", "metrics",
                  "comparisons", "expect", "include")


def _read_toml(path: Path) -> tuple[str, dict]:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise SpecError(path, [Problem("", f"an unreadable file ({error.strerror})", "a readable TOML file")]) from None
    text = _decode_spec(path, raw)
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpecError(path, [Problem("", f"invalid TOML ({error})", "a TOML document")]) from None


_UTF8 = "UTF-8 text (TOML files are UTF-8: save the spec as UTF-8 in your editor)"


def _decode_spec(path: Path, raw: bytes) -> str:
    """A spec's text: UTF-8, a leading byte-order mark dropped; SpecError saying what the file is otherwise."""
    if raw.startswith(codecs.BOM_UTF8):  # editors on Windows write one; TOML itself has no use for it
        raw = raw[len(codecs.BOM_UTF8):]
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or _looks_utf16(raw):
        raise SpecError(path, [Problem("", "a UTF-16 file", _UTF8)])
    if b"\0" in raw:
        raise SpecError(path, [Problem("", "a binary file (it holds NUL bytes)", "a TOML spec (UTF-8 text)")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        found = (f"bytes that are not UTF-8 (byte 0x{raw[error.start]:02x} at line {line}, column {column}; "
                 "latin-1 or cp1252, most likely)")
        raise SpecError(path, [Problem("", found, _UTF8)]) from None


def _looks_utf16(raw: bytes) -> bool:
    """UTF-16 without a byte-order mark: ASCII text with a NUL byte beside every character."""
    even, odd = raw[:400:2], raw[1:400:2]
    if len(odd) < 2:
        return False
    shares = sorted((even.count(0) / len(even), odd.count(0) / len(odd)))
    return shares[0] < 0.1 and shares[1] > 0.8


def read_spec(path: str | Path) -> tuple[str, dict]:
    """A spec file's text and TOML document, its ``include`` files merged in (spec/include.py: the including
    file wins); SpecError naming the file when it cannot be read. The text carries the included files' too."""
    path = Path(path)
    text, document = _read_toml(path)
    document, included = resolve_includes(document, path, _read_toml)
    return with_includes_text(text, included, path.parent.resolve()), document


def document_of(text: str, path: Path) -> dict:
    """The TOML document of a spec's recorded text (its includes read again from beside ``path``)."""
    return resolve_includes(tomllib.loads(text), path, _read_toml)[0]


def declared_plugins(document: Any) -> tuple[str, ...]:
    """The plugins a spec document names (``plugins = [...]``), before any validation."""
    plugins = document.get("plugins", []) if isinstance(document, dict) else []
    # An empty name is left to validation, which names the key (``plugins``) and the fix.
    return tuple(p for p in plugins if isinstance(p, str) and p.strip()) if isinstance(plugins, list) else ()


def parse_spec(
    document: dict, *, path: Path, text: str, metrics: Mapping[str, type[Metric]],
    sources: Mapping[str, DataSource], kinds: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None, explain_missing: Callable[[str], str] | None = None,
) -> Spec:
    """Validate a spec document against a plugin set's metrics, data sources and expectation ``kinds``;
    SpecError lists every problem. ``explain_missing(metric)``: why no plugin provides a metric (a block, a
    plugin that failed to load), added to that problem."""
    overrides = dict(overrides or {})
    problems: list[Problem] = []
    document = with_overrides(document, overrides) if isinstance(document, dict) else document
    top = TableReader(document, "", problems)
    name = top.get("name", str, path.stem)
    description = top.get("description", str, "")
    plugins = top.get("plugins", list, [])
    if not all(isinstance(plugin, str) and plugin for plugin in plugins):
        top.problem("plugins", repr(plugins), 'plugin module names or .py files, e.g. ["my_metric.py"]')
    markers = tuple(top.get("markers", list, []))
    if not all(isinstance(marker, str) and marker.isidentifier() for marker in markers):
        top.problem("markers", repr(list(markers)), 'pytest marker names, e.g. ["slow"]')
        markers = ()

    run = parse(RunSettings, top.get("run", dict, {}), "run", problems) or RunSettings()
    finetune_defaults = parse(FinetuneSettings, top.get("finetune", dict, {}), "finetune", problems) or FinetuneSettings()

    data = {key: _parse_data(key, table, path.parent, sources, problems)
            for key, table in top.get("data", dict, {}).items()}
    _check_mixes(data, problems)
    models = {
        key: _parse_model(key, table, path.parent, finetune_defaults, problems)
        for key, table in top.get("models", dict, {}).items()
    }
    _check_model_references(models, data, problems)

    metric_tables = top.get("metrics", dict, {})
    metric_specs = _parse_metrics(metric_tables, metrics, problems, explain_missing or (lambda _: ""))
    comparisons = _parse_comparisons(top.get("comparisons", list, []), models, data, metric_specs, problems,
                                     declared_metrics=tuple(metric_tables))
    expect_tables = top.get("expect", list, [])
    top.finish(list(TOP_LEVEL_KEYS))

    spec = Spec(
        path=path, name=name, description=description, text=text, run=run, models=models, data=data,
        metrics=metric_specs, comparisons=tuple(comparisons), plugins=tuple(p for p in plugins if isinstance(p, str)),
        markers=markers, overrides=overrides,
    )
    spec = replace(spec, expectations=tuple(parse_expectations(expect_tables, spec, kinds, problems)),
                   notes=tuple(_spec_checks(spec, top.data, problems)))
    if problems:
        raise SpecError(path, blamed_on_overrides(problems, overrides))
    return spec


def looks_like_path(model_id: str) -> bool:
    return model_id.startswith((".", "/", "~")) or model_id.endswith(("/", "\\"))


def _parse_model(key: str, table: Any, base_dir: Path, defaults: FinetuneSettings, problems: list[Problem]) -> ModelSpec:
    reader = TableReader(table, f"models.{key}", problems)
    model_id = reader.get("id", str)
    revision = reader.get("revision", str)
    base = reader.get("base", str)
    train = reader.get("train", str)
    validation = reader.get("validation", str)
    if model_id is not None and base is not None:
        reader.problem("", "both `id` and `base`", "`id` for a pre-trained model or `base` + `train` for a fine-tune")
    if model_id is None and base is None and "checkpoints" not in reader.data and isinstance(table, dict):
        reader.problem("", "neither `id` nor `base`", "`id = \"minilm\"` (or a hub id / local folder), `base` + `train`, "
                       "or `checkpoints = \"<folder glob>\"`")
    if base is not None and train is None:
        reader.problem("train", "nothing", "the name of the [data.*] entry to fine-tune on")
    if model_id is not None and looks_like_path(model_id):
        folder = resolve_path(model_id, base_dir)
        if not folder.exists():
            reader.problem("id", repr(model_id), f"an existing model folder ({folder} does not exist)")
        elif (why := model_folder_problem(folder)) is not None:
            reader.problem("id", repr(model_id), f"a model folder holding config.json and weights ({why})")
        model_id = str(folder)
    adapter = _parse_adapter(reader, base_dir, on_finetune=base is not None)
    series = parse_series(reader, base_dir, model_id)
    if series and (base is not None or adapter is not None or revision is not None):
        clash = "base" if base is not None else "adapter" if adapter is not None else "revision"
        reader.problem(clash, f"`{clash}` beside a checkpoint series", "a series of its own checkpoints "
                       "(`checkpoints` or `revisions`) without `base`, `adapter` or `revision`")
    hyper_keys = [f.name for f in fields(FinetuneSettings)]
    finetune = None
    if base is not None:
        hyper = {k: v for k, v in reader.data.items() if k in hyper_keys}
        own = parse(FinetuneSettings, hyper, f"models.{key}", problems)
        finetune = replace(defaults, **{k: getattr(own, k) for k in hyper}) if own is not None else defaults
        stray = [k for k in LORA_KEYS if k in hyper]
        if stray and finetune.method == "full":
            reader.problem(stray[0], "a LoRA setting on a full fine-tune",
                           'LoRA settings beside method = "lora" (here or under [finetune])')
    elif any(k in reader.data for k in hyper_keys):
        reader.problem(next(k for k in reader.data if k in hyper_keys), "a fine-tuning setting on a pre-trained model",
                       "fine-tuning settings only beside `base` and `train`")
    reader.finish(["id", "revision", "adapter", "base", "train", "validation", *SERIES_KEYS, *hyper_keys])
    return ModelSpec(key, id=model_id, revision=revision, base=base, train=train, validation=validation,
                     finetune=finetune, adapter=adapter, series=series)


def _parse_adapter(reader: TableReader, base_dir: Path, *, on_finetune: bool) -> str | None:
    """``adapter``: a peft LoRA adapter (a folder or a hub id), merged into the pre-trained ``id`` beside it."""
    adapter = reader.get("adapter", str)
    if adapter is None:
        return None
    if on_finetune:
        reader.problem("adapter", repr(adapter), 'an adapter beside `id`, the pre-trained model it was trained on '
                       '(a fine-tune trains an adapter of its own with method = "lora")')
        return None
    if not looks_like_path(adapter):
        return adapter  # a hub id: read when it loads
    folder = resolve_path(adapter, base_dir)
    if not folder.is_dir():
        reader.problem("adapter", repr(adapter), f"an existing adapter folder ({folder} does not exist)")
    elif not (folder / ADAPTER_CONFIG).is_file():
        reader.problem("adapter", repr(adapter), f"a peft adapter folder holding {ADAPTER_CONFIG} ({folder} has none)")
    return str(folder)


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


def _parse_data(key: str, table: Any, base_dir: Path, sources: Mapping[str, DataSource],
                problems: list[Problem]) -> DataSpec:
    reader = TableReader(table, f"data.{key}", problems)
    kinds = [kind for kind in (*sources, "mix") if kind in reader.data]
    if len(kinds) != 1:
        found = "none of them" if not kinds else "several: " + ", ".join(kinds)
        reader.problem("", found, "exactly one source key: " + ", ".join((*sources, "mix")))
        return DataSpec(key, "mix")
    kind = kinds[0]
    limit = reader.get("limit", int, None, positive_only=True)
    seed = reader.get("seed", int)
    if kind == "mix":
        mix = _parse_mix(reader)
        reader.finish(["mix", "limit", "seed"])
        return DataSpec(key, "mix", mix=mix, limit=limit, seed=seed)
    source = sources[kind]
    keys = list(option_fields(source.Options))
    table_options = {k: v for k, v in reader.data.items() if k in keys}
    options, option_problems = parse_options(source.Options, table_options, f"data.{key}")
    problems.extend(option_problems)
    reader.finish([*keys, "limit", "seed"])
    if options is None:
        return DataSpec(key, kind, limit=limit, seed=seed)
    options, source_problems = source.validate(options, base_dir)
    for problem in source_problems:
        reader.problem(problem.key, problem.found, problem.expected, problem.hint)
    return DataSpec(key, kind, options=options, limit=limit, seed=seed)


def _parse_mix(reader: TableReader) -> tuple[tuple[str, int | None], ...]:
    raw = reader.get("mix", (list, dict), [])
    items = raw.items() if isinstance(raw, dict) else ((name, None) for name in raw)
    mix = []
    for part, count in items:
        if not isinstance(part, str):
            reader.problem("mix", repr(raw), "data names, or a table of name = count with positive counts, "
                           "e.g. { rte_dev = 200, mrpc_dev = 200 }")
            break
        if count is not None and not (isinstance(count, int) and not isinstance(count, bool) and count > 0):
            found = f"{type_name(count)} {count!r}" if not isinstance(count, int) or isinstance(count, bool) else repr(count)
            reader.problem(f"mix.{part}", found, f"a positive number of {part!r} examples (counts must be positive), "
                           "e.g. { rte_dev = 200, mrpc_dev = 200 }")
            continue
        mix.append((part, count))
    return tuple(mix)


def _check_mixes(data: dict[str, DataSpec], problems: list[Problem]) -> None:
    for spec in data.values():
        for part, _ in spec.mix:
            if part not in data:
                problems.append(Problem(f"data.{spec.name}.mix", repr(part), "a declared data name", did_you_mean(part, data)))
            elif data[part].kind == "mix":
                problems.append(Problem(f"data.{spec.name}.mix", f"the mix {part!r}", "plain data sources, not mixes"))


#: What a spec's ``name`` may hold: it names the run folders (reports/spec_name=<name>/), so no path separators,
#: no leading dot, nothing a shell or a file system reads specially.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def _spec_checks(spec: Spec, document: dict, problems: list[Problem]) -> list[str]:
    """Checks across sections: the name that becomes a folder, bootstrap groups against the examples declared;
    the notes (settings that change nothing) are returned."""
    if not NAME_PATTERN.fullmatch(spec.name) or ".." in spec.name:
        given = "name" in document
        problems.append(Problem("name", repr(spec.name) + ("" if given else f" (from the file name {spec.path.name})"),
                                "a name of letters, digits, '_', '-' and '.', not starting with '.', up to 100 "
                                "characters: it names the run folder under reports/ (e.g. name = \"glue_probe\")"))
    # Only a declared number is refused: the default is capped at the examples a pass has (a note says so).
    if spec.run.bootstrap and "bootstrap_groups" in (document.get("run") or {}):
        for name, data in spec.data.items():
            if data.limit is not None and data.limit < spec.run.bootstrap_groups and any(
                    c.data == name for c in spec.comparisons):
                problems.append(Problem("run.bootstrap_groups", f"{spec.run.bootstrap_groups}, more groups than the "
                                        f"{data.limit} examples data.{name} declares (limit)", "at most as many groups as "
                                        "examples, each group a share of them (e.g. 16 or 32)"))
    notes = []
    if spec.run.executor == "local":
        ray_only = [key for key in RAY_KEYS if getattr(spec.run, key) is not None]
        if ray_only:
            notes.append(f"[run] {', '.join(ray_only)}: read by the Ray executor only; this spec runs locally "
                         '(executor = "ray" or --executor ray reads it)')
    return notes


def _parse_metrics(tables: dict[str, Any], known: Mapping[str, type[Metric]], problems: list[Problem],
                   explain_missing: Callable[[str], str]) -> dict[str, MetricSpec]:
    metrics = {}
    for label, table in tables.items():
        if not isinstance(table, dict):
            problems.append(Problem(f"metrics.{label}", type_name(table), "a table of options"))
            continue
        options_table = dict(table)
        metric_name = options_table.pop("metric", label)
        permutations = options_table.pop("permutations", 0)
        if metric_name not in known:
            key = f"metrics.{label}" + (".metric" if "metric" in table else "")
            hint = "; ".join(filter(None, [did_you_mean(metric_name, known), explain_missing(metric_name)]))
            problems.append(Problem(key, f"the metric {metric_name!r}, which no plugin provides",
                                    "one of " + ", ".join(sorted(known)), hint))
            continue
        metric_cls = known[metric_name]
        options, option_problems = parse_options(metric_cls.Options, options_table, f"metrics.{label}")
        problems.extend(option_problems)
        permutations = _check_permutations(label, metric_cls, permutations, known, problems)
        metrics[label] = MetricSpec(label, metric_name, options, metric_cls, permutations)
    return metrics


def _check_permutations(label: str, metric_cls: type[Metric], value: Any, known: Mapping[str, type[Metric]],
                        problems: list[Problem]) -> int:
    key = f"metrics.{label}.permutations"
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DRAWS:
        problems.append(Problem(key, repr(value), f"a number of null draws from 1 to {MAX_DRAWS} (e.g. 100), or 0 "
                                "for none (as when it is left out)"))
        return 0
    if value and not supports_permutation_null(metric_cls):
        having = ", ".join(sorted(n for n, c in known.items() if supports_permutation_null(c)))
        problems.append(Problem(key, f"{value} for {metric_cls.name!r}, which has no permutation null "
                                "(it compares no paired datapoints: its plugin implements no `update_permuted`)",
                                f"permutations only on a metric that has one: {having}"))
        return 0
    return value


def parse_model_ref(value: str) -> tuple[str, float | None] | None:
    """``"seed1"`` or ``"seed1@0.5"`` (a training snapshot); None when malformed."""
    model, at, fraction = value.partition("@")
    if not at:
        return model, None
    try:
        return model, float(fraction)
    except ValueError:
        return None


def _parse_comparisons(tables: list, models, data, metrics, problems: list[Problem],
                       declared_metrics: tuple[str, ...] = ()) -> list[ComparisonSpec]:
    """``declared_metrics``: every [metrics.*] label, valid or not (an invalid one is reported once, under [metrics])."""
    comparisons: list[ComparisonSpec] = []
    positions: dict[str, int] = {}  # comparison name -> its [[comparisons]] table, for messages
    for index, table in enumerate(tables):
        reader = TableReader(table, f"comparisons[{index}]", problems)
        sides = [_parse_side(reader, side, models) for side in ("a", "b")]
        data_name = reader.get("data", str)
        if data_name is None:
            reader.problem("data", "nothing", "a declared data name to evaluate on")
        elif data_name not in data:
            reader.problem("data", repr(data_name), "a declared data name", did_you_mean(data_name, data))
        names = reader.get("metrics", list, list(metrics))
        for metric in names:
            if metric not in metrics and metric not in declared_metrics:
                reader.problem("metrics", repr(metric), "a metric declared under [metrics]: " + ", ".join(metrics),
                               did_you_mean(metric, metrics))
        if not names and not (set(declared_metrics) - set(metrics)):  # not when [metrics] has a problem of its own
            reader.problem("metrics", "no metrics", "at least one metric (declare it under [metrics.NAME])")
        name = reader.get("name", str, f"{sides[0]}_vs_{sides[1]}" if all(sides) else f"comparison {index}")
        if any(c.name == name for c in comparisons):
            reader.problem("name", repr(name), "a name no other comparison uses")
        moving = _series_side(reader, sides, models)
        kept = _points_kept(reader, sides, models, moving)
        spread = reader.get("seed_spread", (str, list), [])
        reader.finish(["name", "a", "b", "data", "metrics", "every_snapshot", "seed_spread"])
        if all(sides) and data_name in data:
            chosen = tuple(n for n in names if n in metrics)
            comparison = ComparisonSpec(name, sides[0], sides[1], data_name, chosen,
                                        (spread,) if isinstance(spread, str) else tuple(spread))
            comparisons += [comparison, *_along_training(comparison, kept, moving)]
            positions[name] = index
    if not tables:
        problems.append(Problem("comparisons", "no [[comparisons]]", "at least one comparison of two models on some data"))
    _check_seed_spreads(comparisons, positions, problems)
    return comparisons


def _parse_side(reader: TableReader, side: str, models: dict[str, ModelSpec]) -> ModelRef | None:
    """``a`` or ``b``: a declared model, optionally ``@`` a snapshot it keeps or a step of its checkpoints."""
    value = reader.get(side, str)
    if value is None:
        reader.problem(side, "nothing", "a declared model name (optionally name@snapshot, e.g. seed1@0.5)")
        return None
    parsed = parse_model_ref(value)
    if parsed is None:
        reader.problem(side, repr(value), "name or name@fraction, e.g. seed1@0.5")
        return None
    model, snapshot = parsed
    if model not in models:
        reader.problem(side, repr(model), "a declared model name", did_you_mean(model, models))
    elif snapshot is not None and models[model].is_series:
        steps = [point.step for point in models[model].series]
        if snapshot not in steps:
            reader.problem(side, repr(value), f"a step of models.{model}'s checkpoints: "
                           + ", ".join(f"{model}@{step}" for step in steps))
    elif snapshot is not None:
        kept = models[model].finetune.snapshots if models[model].finetune else ()
        if snapshot not in kept:
            reader.problem(side, repr(value), f"a snapshot that models.{model} keeps: " + (
                ", ".join(f"{model}@{s:g}" for s in kept) if kept else
                f"it keeps none (add snapshots = [...] to models.{model})"))
    return ModelRef(model, snapshot)


def _points_kept(reader: TableReader, sides: list[ModelRef | None], models: dict[str, ModelSpec],
                 moving: int | None) -> tuple[float, ...]:
    """``every_snapshot``: the earlier checkpoints of the moving series, or the snapshots fine-tuned `b` keeps."""
    every_snapshot = reader.get("every_snapshot", bool, moving is not None)
    if moving is not None:
        return tuple(float(point.step) for point in models[sides[moving].model].series[:-1]) if every_snapshot else ()
    if not (every_snapshot and sides[1] is not None and sides[1].model in models):
        return ()
    finetune = models[sides[1].model].finetune
    kept = finetune.snapshots if finetune else ()
    if not kept or sides[1].snapshot is not None:
        reader.problem("every_snapshot", "true", f"a plain fine-tuned model `b` that keeps snapshots = [...] "
                       f"(models.{sides[1].model}), or a checkpoint series")
    return tuple(point for point in kept if point < 1.0 and sides[1].snapshot is None)


def _along_training(comparison: ComparisonSpec, kept: tuple[float, ...], moving: int | None) -> list[ComparisonSpec]:
    """One comparison per training snapshot (or earlier checkpoint): when in training each layer moves; the plain
    comparison is the end of training."""
    moved = 1 if moving is None else moving
    found = []
    for point in kept:
        pair = [comparison.a, comparison.b]
        pair[moved] = ModelRef(pair[moved].model, point)
        found.append(ComparisonSpec(f"{comparison.name}@{point_text(point)}", pair[0], pair[1], comparison.data,
                                    comparison.metrics))
    return found


def _series_side(reader: TableReader, sides: list[ModelRef | None], models: dict[str, ModelSpec]) -> int | None:
    """Which side (0: a, 1: b) is a checkpoint series not pinned to a step; None when neither is."""
    unpinned = [index for index, side in enumerate(sides)
                if side is not None and side.model in models and models[side.model].is_series and side.snapshot is None]
    if len(unpinned) > 1:
        reader.problem("b", "two checkpoint series", "at most one side moving along its checkpoints: pin the other "
                       f"to a step (e.g. {sides[0].model}@{models[sides[0].model].series[-1].step})")
        return None
    return unpinned[0] if unpinned else None


def _check_seed_spreads(comparisons: list[ComparisonSpec], positions: dict[str, int], problems: list[Problem]) -> None:
    """``seed_spread`` names other comparisons, on the same data, that share a metric with this one."""
    by_name = {c.name: (index, c) for index, c in enumerate(comparisons)}
    for comparison in comparisons:
        key = f"comparisons[{positions.get(comparison.name, '?')}].seed_spread"
        for name in comparison.seed_spread:
            if not isinstance(name, str) or name not in by_name or name == comparison.name:
                problems.append(Problem(key, repr(name), "the name of another comparison, of two fine-tunes that differ "
                                        "only by seed (e.g. \"seed1_vs_seed2\")",
                                        did_you_mean(str(name), [n for n in by_name if n != comparison.name])))
                continue
            other = by_name[name][1]
            if other.data != comparison.data:
                problems.append(Problem(key, f"{name!r}, measured on data {other.data!r}",
                                        f"a comparison on the same data as this one ({comparison.data!r})"))
            elif not set(other.metrics) & set(comparison.metrics):
                problems.append(Problem(key, f"{name!r}, which runs {', '.join(other.metrics)}",
                                        f"a comparison that runs a metric of this one ({', '.join(comparison.metrics)})"))
