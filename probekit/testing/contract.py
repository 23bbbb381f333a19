"""The contract test of a metric plugin, in one line::

    from probekit.testing import check_metric

    def test_my_metric_keeps_the_contract():
        check_metric(MyMetric)                      # or check_metric(MyMetric, {"tokens": "cls"})

:func:`check_metric` runs the metric on two tiny random BERT encoders built in
process (2 layers, hidden size 32, 2 heads, eager attention; nothing is
downloaded) and checks the properties every metric must have:

* it registers: ``check_metric_class`` finds no problem, and no ``details`` key
  is a column of every results table;
* options round-trip: the defaults build, and each default given as a spec
  value builds the same options;
* rows are well formed: ``finalize()`` returns a list of :class:`probekit.Row`
  with one layer row per number of ``layer_numbers``, finite values, head rows
  only if ``per_head``, declared ``details`` of the declared types, and
  ``n_examples`` equal to the number of examples fed;
* identical inputs give the identical value: a model against itself gives 0
  for a distance, 1 for a similarity, on every row;
* results do not depend on the batch size: the same examples in batches of
  48, 16, 4 and 7 give the same rows;
* pooling adds up (for a metric that implements ``pooled``, so gets confidence
  intervals): three groups of the examples pooled with weights 2, 0, 1 give the
  rows of one instance fed the first group twice and the third once; for a
  per-example metric, ``finalize_on`` those example indices gives the rows of a
  fresh instance fed those examples;
* intervals and the permutation null are drawn: fed as a run with ``bootstrap``
  and ``permutations`` feeds it (``update_permuted`` included), every row gets an
  interval and a p-value.

A cross-layer metric (rows with ``layer_b``) is checked on its diagonal where a
layer-wise metric is checked on its layers; its other cells must cover every
pair of layers.

A failure is an ``AssertionError`` naming the metric and the property.

The tiny models and examples are those of :mod:`probekit.testing.fixtures`.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from probekit.data.batching import make_batches
from probekit.data.example import label_names
from probekit.engine.capture import forward
from probekit.engine.resampling import Resampled, Resampling
from probekit.hooks.manager import RESERVED_COLUMNS
from probekit.metrics.base import (
    Metric,
    MetricContext,
    MetricError,
    Row,
    layer_numbers,
    shape_problems,
    supports_bootstrap,
    supports_permutation_null,
)
from probekit.metrics.checks import check_metric_class
from probekit.errors import Problem
from probekit.metrics.options import SCALAR_TYPES, option_fields, parse_options
from probekit.metrics.per_example import is_per_example
from probekit.models.families import family_of
from probekit.models.loading import LoadedModel
from probekit.results.schema import detail_problems
from probekit.testing.fixtures import (
    TINY_CONFIG,
    tiny_encoder,
    tiny_examples,
    tiny_tokenizer,
)

__all__ = ["check_metric"]

REGISTERS = "it registers"
OPTIONS = "options round-trip"
RUNS = "it measures two tiny models"
ROWS = "rows are well formed"
IDENTICAL = "identical inputs give the identical value"
BATCH_SIZE = "results do not depend on the batch size"
POOLING = "pooling adds up"
RESAMPLING = "intervals and the permutation null are drawn"
#: Draws of the resampling check: enough to see an interval and a p-value, few enough to stay fast.
REPLICATES, PERMUTATIONS = 8, 4

#: Absolute tolerance of the identical-inputs check: the metric's own floating point.
IDENTICAL_TOLERANCE = 1e-6
N_EXAMPLES = 48
#: The first is the reference (one batch); 7 leaves a short last batch, so a mean of
#: per-batch means is caught even when it weights batches by examples.
BATCH_SIZES = (48, 16, 4, 7)
IDENTICAL_BATCH_SIZE = 16
MAX_LENGTH = TINY_CONFIG["max_position_embeddings"]
#: At most this many problems are listed in a failure message.
MAX_LISTED = 8

def check_metric(metric_cls: type[Metric], options: Any = None, *, tolerance: float = 1e-9) -> None:
    """Check that ``metric_cls`` keeps the metric contract; raise ``AssertionError`` naming what it breaks.

    ``options``: None for the defaults, a mapping as a spec's ``[metrics.x]`` table
    gives it, or an instance of ``metric_cls.Options``. ``tolerance``: relative
    and absolute, for the batch-size check (the identical-inputs check allows at
    least ``IDENTICAL_TOLERANCE``).
    """
    __tracebackhide__ = True
    _check_registers(metric_cls)
    parsed = _options_to_run(metric_cls, options, _check_options(metric_cls))
    tokenizer = tiny_tokenizer()
    examples = tiny_examples(N_EXAMPLES)
    same = _tiny_model("a", 0, tokenizer)
    rows = _measure(metric_cls, parsed, same, same, examples, IDENTICAL_BATCH_SIZE)
    _check_rows(metric_cls, rows, same, len(examples), _run_label(same, same, IDENTICAL_BATCH_SIZE))
    _check_identical(metric_cls, parsed, rows, max(IDENTICAL_TOLERANCE, tolerance))
    a, b = _tiny_model("a", 0, tokenizer), _tiny_model("b", 1, tokenizer)
    runs = {size: _measure(metric_cls, parsed, a, b, examples, size) for size in BATCH_SIZES}
    for size, rows in runs.items():
        _check_rows(metric_cls, rows, a, len(examples), _run_label(a, b, size))
    _check_batch_sizes(metric_cls, runs, tolerance)
    if supports_bootstrap(metric_cls) and not is_per_example(metric_cls):
        _check_pooling(metric_cls, parsed, a, b, examples, runs[BATCH_SIZES[0]], tolerance)
    if supports_bootstrap(metric_cls) and is_per_example(metric_cls):
        _check_example_resampling(metric_cls, parsed, a, b, examples, tolerance)
    if supports_bootstrap(metric_cls) or supports_permutation_null(metric_cls):
        _check_resampled(metric_cls, parsed, a, b, examples)


def _message(cls: Any, prop: str, problems: Sequence[str], note: str | None = None) -> str:
    name = getattr(cls, "name", None)
    qualname = f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls)!s}"
    label = f"metric {name!r} ({qualname})" if isinstance(name, str) else qualname
    listed = [f"  - {p}" for p in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        listed.append(f"  ... and {len(problems) - MAX_LISTED} more")
    return "\n".join([f"{label} fails the contract check '{prop}':", *listed, *([f"  {note}"] if note else [])])


def _fail(cls: Any, prop: str, problems: Sequence[str], note: str | None = None) -> None:
    __tracebackhide__ = True
    raise AssertionError(_message(cls, prop, problems, note))


def _check_registers(cls: Any) -> None:
    __tracebackhide__ = True
    problems = check_metric_class(cls)
    if not problems:
        problems = [f"details key {key!r} is a column of every results table; rename it"
                    for key in dict(cls.details) if key in RESERVED_COLUMNS]
    if problems:
        _fail(cls, REGISTERS, problems)


def _field_values(options: Any) -> tuple:
    # Field by field, not ==: an Options dataclass may be declared with eq=False.
    return tuple(getattr(options, f.name) for f in dataclasses.fields(options))


def _as_toml(value: Any) -> Any:
    """``value`` as a spec would spell it, or None when a spec cannot."""
    if isinstance(value, SCALAR_TYPES):
        return value
    if isinstance(value, tuple) and all(isinstance(v, SCALAR_TYPES) for v in value):
        return list(value)
    return None


def _describe(problems: list[Problem]) -> str:
    return "; ".join(f"{p.key or 'options'}: found {p.found}, expected {p.expected}" for p in problems)


def _check_options(cls: type[Metric]) -> Any:
    """The default options, after checking that each default given back as a spec value builds them."""
    __tracebackhide__ = True
    defaults, problems = parse_options(cls.Options, {})
    if problems:
        _fail(cls, OPTIONS, [f"the default options do not build from an empty table: {_describe(problems)}"])
    failures = []
    for name, (_, default) in option_fields(cls.Options).items():
        value = _as_toml(default)
        if value is None:
            continue
        again, problems = parse_options(cls.Options, {name: value})
        if problems:
            failures.append(f"{name} = {value!r} (its default) is refused: {_describe(problems)}")
        elif _field_values(again) != _field_values(defaults):
            failures.append(f"{name} = {value!r} (its default) gives {again!r}, not the defaults {defaults!r}")
    if failures:
        _fail(cls, OPTIONS, failures)
    return defaults


def _options_to_run(cls: type[Metric], options: Any, defaults: Any) -> Any:
    __tracebackhide__ = True
    if options is None:
        return defaults
    if isinstance(options, cls.Options):
        return options
    if not isinstance(options, Mapping):
        raise TypeError(f"check_metric: options must be None, a mapping or a {cls.Options.__qualname__}; "
                        f"got {type(options).__name__}")
    parsed, problems = parse_options(cls.Options, options)
    if problems:
        _fail(cls, OPTIONS, [f"the options given to check_metric do not build: {_describe(problems)}"])
    return parsed


def _tiny_model(name: str, seed: int, tokenizer) -> LoadedModel:
    """A random tiny BERT as the engine wraps models; the same seed gives the same weights.

    float64: float32 forwards of differently padded batches differ by rounding
    (~1e-11 measured), which the batch-size check would charge to the metric.
    """
    encoder = tiny_encoder(len(tokenizer), seed=seed).double()
    return LoadedModel(name, encoder, tokenizer, identity=f"contract:{seed}")


def _measure(cls: type[Metric], options: Any, a, b, examples: list, batch_size: int) -> list:
    """What the engine does for one comparison and one metric, on CPU."""
    __tracebackhide__ = True
    return _guarded(cls, a, b, batch_size, lambda phase: _fed(cls, options, a, b, examples, batch_size, phase).finalize())


def _fed(cls: type[Metric], options: Any, a, b, examples: list, batch_size: int, phase: list[str]) -> Metric:
    """An instance of ``cls`` fed ``examples``; ``phase`` says how far it got."""
    needs = frozenset(cls.needs)
    phase[0] = "__init__"
    metric = cls(options, MetricContext(f"{a.name}_vs_{b.name}", a, b, a.num_layers, torch.device("cpu"),
                                        causal=any(family_of(m.encoder).causal for m in (a, b))))
    phase[0] = "update"
    # As the engine does: labelled examples carry their label ids (probing metrics read them).
    for batch in make_batches(examples, a.tokenizer, batch_size=batch_size, max_length=MAX_LENGTH,
                              labels=label_names(examples)):
        capture_a = forward(a.encoder, batch, needs, a.name)
        # As the engine does: a model runs once per batch, its capture serves both sides.
        metric.update(capture_a, capture_a if b is a else forward(b.encoder, batch, needs, b.name), batch)
    phase[0] = "finalize"
    return metric


def _guarded(cls: type[Metric], a, b, batch_size: int, measure) -> list:
    """``measure(phase)``'s rows, its exceptions turned into contract failures naming the phase."""
    __tracebackhide__ = True
    where = _run_label(a, b, batch_size)
    phase = ["__init__"]
    try:
        return measure(phase)
    except MetricError as error:
        phase = phase[0]
        problem = (f"{phase} raised MetricError ({where}): {error}; check_metric needs a metric that can "
                   "measure two random BERT encoders")
        raise AssertionError(_message(cls, RUNS, [problem])) from error
    except Exception as error:
        phase = phase[0]
        problem = (f"{phase} raised {type(error).__name__} ({where}): {error}; only MetricError may say "
                   "that a comparison cannot be measured")
        raise AssertionError(_message(cls, RUNS, [problem])) from error


def _batching(size: int) -> str:
    return f"in one batch of {size}" if size >= N_EXAMPLES else f"in batches of {size}"


def _run_label(a, b, size: int) -> str:
    models = f"model {a.name} against itself" if a is b else f"models {a.name} and {b.name}"
    return f"{models}, {_batching(size)}"


def _where(row: Row) -> str:
    cell = f"layer {row.layer}" if row.layer_b is None else f"layer {row.layer} x layer_b {row.layer_b}"
    return cell if row.head is None else f"{cell} head {row.head}"


def _on_diagonal(row: Row) -> bool:
    """A layer-wise row, or a cross-layer matrix's cell of a layer with itself."""
    return row.layer_b is None or row.layer_b == row.layer


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_rows(cls: type[Metric], rows: Any, model, n_examples: int, run: str) -> None:
    __tracebackhide__ = True
    if not isinstance(rows, list):
        _fail(cls, ROWS, [f"finalize() returned a {type(rows).__name__} ({run}), not a list of probekit.Row"])
    strays = [f"item {i} is a {type(row).__name__}, not probekit.Row" for i, row in enumerate(rows)
              if not isinstance(row, Row)]
    if strays:
        _fail(cls, ROWS, [f"finalize() ({run}): {stray}" for stray in strays])
    problems = shape_problems(cls, rows, model.num_layers) + _layer_problems(cls, rows, model.num_layers) + \
        _head_problems(cls, rows, model)
    for row in rows:
        problems.extend(f"{_where(row)}: {p}" for p in _row_problems(cls, row, n_examples))
    if problems:
        _fail(cls, ROWS, [f"{p} ({run})" for p in problems])


def _layer_problems(cls: type[Metric], rows: list[Row], num_layers: int) -> list[str]:
    expected = list(layer_numbers(cls, num_layers))
    found = [row.layer for row in rows if row.head is None and _on_diagonal(row)]
    cells = {(row.layer, row.layer_b) for row in rows if row.layer_b is not None}
    if cells:
        missing = [(i, j) for i in expected for j in expected if (i, j) not in cells]
        if missing:
            return [f"no cross-layer row for layer {i} x layer_b {j} (a matrix covers every pair of {expected})"
                    for i, j in missing]
    problems = [f"no row for layer {layer} (layers = {cls.layers!r}: expected one row for each of {expected})"
                for layer in expected if layer not in found]
    problems += [f"a row for layer {layer!r}, which is not one of {expected} (layers = {cls.layers!r})"
                 for layer in dict.fromkeys(found) if layer not in expected]
    problems += [f"{found.count(layer)} rows for layer {layer} with head None; expected one"
                 for layer in dict.fromkeys(found) if found.count(layer) > 1]
    return problems


def _head_problems(cls: type[Metric], rows: list[Row], model) -> list[str]:
    heads = [row for row in rows if row.head is not None]
    if heads and not cls.per_head:
        return [f"{len(heads)} rows have a head (e.g. {_where(heads[0])}), but per_head is False"]
    expected = layer_numbers(cls, model.num_layers)
    num_heads = model.encoder.config.num_attention_heads
    problems = [f"{_where(row)}: head {row.head!r} is not a head number in 0..{num_heads - 1}"
                for row in heads if not (_is_int(row.head) and 0 <= row.head < num_heads)]
    problems += [f"{_where(row)}: layer {row.layer!r} is not one of {list(expected)}"
                 for row in heads if row.layer not in expected]
    keys = [(row.layer, row.head) for row in heads]
    problems += [f"{keys.count(key)} rows for layer {key[0]} head {key[1]}; expected one"
                 for key in dict.fromkeys(keys) if keys.count(key) > 1]
    return problems


def _row_problems(cls: type[Metric], row: Row, n_examples: int) -> list[str]:
    problems = []
    if not _is_int(row.layer):
        problems.append(f"layer {row.layer!r} is not an int")
    if not (isinstance(row.value, numbers.Real) and not isinstance(row.value, bool) and math.isfinite(row.value)):
        problems.append(f"value {row.value!r} is not a finite float")
    if row.n_examples != n_examples:
        problems.append(f"n_examples = {row.n_examples!r}, but {n_examples} examples were fed")
    if not (_is_int(row.n_tokens) and row.n_tokens >= 0):
        problems.append(f"n_tokens = {row.n_tokens!r} is not a count")
    if not isinstance(row.details, Mapping):
        return [*problems, f"details is a {type(row.details).__name__}, not a mapping"]
    return problems + detail_problems([row], dict(cls.details))


def _check_identical(cls: type[Metric], options: Any, rows: list[Row], tolerance: float) -> None:
    __tracebackhide__ = True
    direction = cls.direction_of(options)
    expected = 0.0 if direction == "distance" else 1.0
    problems = [f"{_where(row)}: {row.value!r}, expected {expected:g} for a {direction} (within {tolerance:g})"
                for row in rows if _on_diagonal(row) and not abs(row.value - expected) <= tolerance]
    if problems:
        _fail(cls, IDENTICAL, problems, "(a model against itself)")


def _same(a: Any, b: Any, tolerance: float) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        both_nan = isinstance(a, numbers.Real) and isinstance(b, numbers.Real) and math.isnan(a) and math.isnan(b)
        return both_nan or math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)
    return a == b


def _differences(reference: Row, row: Row, tolerance: float) -> list[tuple[str, Any, Any]]:
    """(what, reference value, this value) for each number of ``row`` that differs."""
    pairs = [("value", reference.value, float(row.value)), ("n_tokens", reference.n_tokens, row.n_tokens)]
    keys = dict.fromkeys([*reference.details, *row.details])
    pairs += [(f"details[{key!r}]", reference.details.get(key), row.details.get(key)) for key in keys]
    return [(what, x, y) for what, x, y in pairs if not _same(x, y, tolerance)]


def _check_batch_sizes(cls: type[Metric], runs: dict[int, list[Row]], tolerance: float) -> None:
    __tracebackhide__ = True
    first, *others = runs
    reference = {(row.layer, row.layer_b, row.head): row for row in runs[first]}
    problems = []
    for size in others:
        rows = {(row.layer, row.layer_b, row.head): row for row in runs[size]}
        if rows.keys() != reference.keys():
            problems.append(f"{_batching(size)} the rows are for other layers/heads than {_batching(first)}")
            continue
        for key, row in rows.items():
            problems += [f"{_where(row)}: {what} = {x!r} {_batching(first)}, {y!r} {_batching(size)}"
                         for what, x, y in _differences(reference[key], row, tolerance)]
    if problems:
        _fail(cls, BATCH_SIZE, problems, f"(tolerance {tolerance:g}, relative and absolute; models a and b "
                                         f"on the same {N_EXAMPLES} examples)")


def _check_pooling(cls: type[Metric], options: Any, a, b, examples: list, whole: list[Row], tolerance: float) -> None:
    """Three groups pooled with weights 1, 1, 1 give the whole run; with 2, 0, 1, the first group fed twice."""
    __tracebackhide__ = True
    third = len(examples) // 3
    groups = [examples[:third], examples[third:2 * third], examples[2 * third:]]
    size = BATCH_SIZES[2]

    def pooled(weights: list[int]):
        return lambda phase: cls.pooled([_fed(cls, options, a, b, g, size, phase) for g in groups], weights).finalize()

    repeated = groups[0] + groups[0] + groups[2]
    cases = {"1, 1, 1": (pooled([1, 1, 1]), whole),
             "2, 0, 1": (pooled([2, 0, 1]), _guarded(cls, a, b, size, lambda phase: _fed(
                 cls, options, a, b, repeated, size, phase).finalize()))}
    problems = []
    for weights, (measure, expected) in cases.items():
        rows = {(row.layer, row.layer_b, row.head): row for row in _guarded(cls, a, b, size, measure)}
        for reference in expected:
            row = rows.get((reference.layer, reference.layer_b, reference.head))
            if row is None:
                problems.append(f"weights {weights}: no row for {_where(reference)}")
                continue
            problems += [f"{_where(row)}: weights {weights}: {what} = {y!r}, expected {x!r}"
                         for what, x, y in _differences(reference, row, tolerance)]
    if problems:
        _fail(cls, POOLING, problems, f"(tolerance {tolerance:g}; three groups of the {len(examples)} examples, "
                                      "each fed to its own instance, then pooled)")


def _check_example_resampling(cls: type[Metric], options: Any, a, b, examples: list, tolerance: float) -> None:
    """Per-example state: the rows on example indices (first third twice, then the last third) are those of a
    fresh instance fed those examples."""
    __tracebackhide__ = True
    third = len(examples) // 3
    index = [*range(third), *range(third), *range(2 * third, len(examples))]
    size = BATCH_SIZES[2]
    resampled = _guarded(cls, a, b, size, lambda phase: _fed(cls, options, a, b, examples, size, phase).finalize_on(
        torch.tensor(index)))
    direct = _guarded(cls, a, b, size, lambda phase: _fed(cls, options, a, b, [examples[i] for i in index], size,
                                                           phase).finalize())
    rows = {(row.layer, row.layer_b, row.head): row for row in resampled}
    problems = [f"{_where(row)}: {what} = {y!r}, expected {x!r}" for reference in direct
                if (row := rows.get((reference.layer, reference.layer_b, reference.head))) is not None
                for what, x, y in _differences(reference, row, tolerance)]
    if problems or len(rows) != len(direct):
        _fail(cls, RESAMPLING, problems or ["finalize_on(index) gives other cells than a fresh instance"],
              "(finalize_on(index) must measure the examples at index, repeats included)")


def _check_resampled(cls: type[Metric], options: Any, a, b, examples: list) -> None:
    """As a run with bootstrap and permutations: every row gets an interval around its value and a p-value."""
    __tracebackhide__ = True
    context = MetricContext(f"{a.name}_vs_{b.name}", a, b, a.num_layers, torch.device("cpu"))
    settings = Resampling(replicates=REPLICATES if supports_bootstrap(cls) else 0,
                          permutations=PERMUTATIONS if supports_permutation_null(cls) else 0, groups=4)

    def measure(phase):
        resampled = Resampled(cls, options, context, len(examples), settings)
        phase[0] = "update / update_permuted"
        needs = frozenset(cls.needs)
        for batch in make_batches(examples, a.tokenizer, batch_size=BATCH_SIZES[1], max_length=MAX_LENGTH):
            resampled.update(forward(a.encoder, batch, needs, a.name), forward(b.encoder, batch, needs, b.name), batch)
        phase[0] = "finalize (with resampling)"
        return resampled.finalize(), resampled.notes

    rows, notes = _guarded(cls, a, b, BATCH_SIZES[1], measure)
    # Notes that qualify an interval (few groups, a value outside it) are no contract failure; a missing one is.
    problems = [f"no interval or p-value: {note}" for note in notes if note.startswith("no ")]
    for row in rows:
        if settings.replicates and not (row.ci_low is not None and row.ci_high is not None and row.ci_low <= row.ci_high):
            problems.append(f"{_where(row)}: interval [{row.ci_low}, {row.ci_high}]")
        if settings.permutations and not (row.p_value is not None and 0 < row.p_value <= 1):
            problems.append(f"{_where(row)}: p_value {row.p_value}")
    if problems:
        _fail(cls, RESAMPLING, problems, f"({REPLICATES} bootstrap replicates, {PERMUTATIONS} permutations)")
