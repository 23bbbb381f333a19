"""Testing probekit specs and plugins: assertion helpers, fixtures and the pytest plugin.

The helpers check the same things as a spec's ``[[expect]]`` tables and fail with
the same message as the pytest items: a one-line reason, a table of the selected
layers' values with the offending layers marked, and the run folder::

    from probekit.api import run
    from probekit.testing import assert_contrast, assert_trend

    def test_fine_tuning_moves_the_top():
        results = run("specs/finetune.toml")
        assert_trend(results, "pretrained_vs_tuned", "svcca", "all", "increasing", tolerance=0.01)
        assert_contrast(results, "pretrained_vs_tuned", "attention_js", high="last 2", low="1-4", factor=3)

Every helper takes ``results`` as a :class:`probekit.api.Results`, a pyarrow
table, or the path of a run folder / results.parquet, and returns the
:class:`probekit.expect.evaluate.Outcome` when the check passes.

This module imports nothing heavy: the pytest plugin (``probekit.testing.pytest_plugin``)
loads with every pytest session.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from probekit.api import Results
    from probekit.expect.evaluate import Outcome
    from probekit.expect.kinds import Expectation

__all__ = [
    "ExpectationFailed",
    "assert_closer",
    "assert_contrast",
    "assert_expectation",
    "assert_farther",
    "assert_layers_above",
    "assert_layers_below",
    "assert_layers_between",
    "assert_matches_baseline",
    "assert_share",
    "assert_trend",
    "check_metric",
]


class ExpectationFailed(AssertionError):
    """A failed layer expectation; ``outcome`` holds the values, ``run_dir`` where the run is."""

    def __init__(self, outcome: Outcome, run_dir: Path | str | None = None, where: str | None = None) -> None:
        self.outcome = outcome
        self.run_dir = run_dir
        super().__init__(outcome.failure_text(run_dir, where))


def check_metric(metric_cls, options=None, *, tolerance: float = 1e-9) -> None:
    """The contract test of a metric plugin, in one line (see :mod:`probekit.testing.contract`)."""
    from probekit.testing.contract import check_metric as check

    check(metric_cls, options, tolerance=tolerance)


def _results(results: Any) -> Results:
    from probekit.api import Results

    if isinstance(results, Results):
        return results
    if isinstance(results, str | Path):
        return Results.load(results)
    if hasattr(results, "schema") and hasattr(results, "column"):  # a pyarrow table
        return Results(results)
    raise TypeError(f"expected probekit.api.Results, a pyarrow table or a run folder; got {type(results).__name__}")


def assert_expectation(results: Any, expectation: Expectation) -> Outcome:
    """Evaluate one expectation (from a spec, or built by a kind's ``build``: ``probekit.Bounds.build(...)``);
    raise if it fails."""
    __tracebackhide__ = True
    from probekit.expect.evaluate import evaluate

    results = _results(results)
    outcome = evaluate([expectation], results.table)[0]
    if not outcome.passed:
        raise ExpectationFailed(outcome, results.run_dir)
    return outcome


def _check(results, kind: str, comparison, metric: str, layers, *, name: str | None, head: int | None, **fields) -> Outcome:
    """An expectation of a built-in kind (``probekit.Bounds``, ...) built from the arguments, then judged."""
    import probekit

    __tracebackhide__ = True
    expectation = getattr(probekit, kind).build(comparison, metric, layers, name=name, head=head, **fields)
    return assert_expectation(results, expectation)


def assert_layers_below(results: Any, comparison: str | Iterable[str], metric: str, layers: Any = "all",
                        value: float | None = None, *, of: str = "each", head: int | None = None,
                        name: str | None = None) -> Outcome:
    """Each selected layer's value (or their mean, ``of="mean"``) is below ``value``."""
    __tracebackhide__ = True
    if value is None:
        raise TypeError("assert_layers_below needs the bound: value=...")
    return _check(results, "Bounds", comparison, metric, layers, name=name, head=head, below=float(value), of=of)


def assert_layers_above(results: Any, comparison: str | Iterable[str], metric: str, layers: Any = "all",
                        value: float | None = None, *, of: str = "each", head: int | None = None,
                        name: str | None = None) -> Outcome:
    """Each selected layer's value (or their mean, ``of="mean"``) is above ``value``."""
    __tracebackhide__ = True
    if value is None:
        raise TypeError("assert_layers_above needs the bound: value=...")
    return _check(results, "Bounds", comparison, metric, layers, name=name, head=head, above=float(value), of=of)


def assert_layers_between(results: Any, comparison: str | Iterable[str], metric: str, layers: Any = "all", *,
                          above: float, below: float, of: str = "each", head: int | None = None,
                          name: str | None = None) -> Outcome:
    """Each selected layer's value (or their mean) is above ``above`` and below ``below``."""
    __tracebackhide__ = True
    return _check(results, "Bounds", comparison, metric, layers, name=name, head=head, above=float(above),
                  below=float(below), of=of)


def assert_trend(results: Any, comparison: str | Iterable[str], metric: str, layers: Any = "all",
                 trend: str = "increasing", *, tolerance: float = 0.0, head: int | None = None,
                 name: str | None = None) -> Outcome:
    """The selected layers' values increase (or decrease) with depth: no layer dips more than
    ``tolerance`` below the largest earlier value (above the smallest, for "decreasing")."""
    __tracebackhide__ = True
    return _check(results, "Trend", comparison, metric, layers, name=name, head=head, trend=trend,
                  tolerance=float(tolerance))


def assert_contrast(results: Any, comparison: str | Iterable[str], metric: str, *, high: Any, low: Any,
                    factor: float | None = None, margin: float | None = None, head: int | None = None,
                    name: str | None = None) -> Outcome:
    """The mean of the ``high`` layers is at least ``factor`` times (and/or ``margin`` above) the mean of ``low``."""
    __tracebackhide__ = True
    contrast = {"low": low, "factor": factor, "margin": margin}
    return _check(results, "Contrast", comparison, metric, high, name=name, head=head,
                  contrast={k: v for k, v in contrast.items() if v is not None})


def assert_closer(results: Any, comparison: str | Iterable[str], other: str, metric: str, layers: Any = "all", *,
                  of: str = "each", margin: float = 0.0, head: int | None = None, name: str | None = None) -> Outcome:
    """``comparison``'s value is below ``other``'s on each selected layer (or on their mean): the models
    of ``comparison`` stay closer to each other."""
    __tracebackhide__ = True
    return _check(results, "Ordering", comparison, metric, layers, name=name, head=head, closer_than=other, of=of,
                  margin=float(margin))


def assert_farther(results: Any, comparison: str | Iterable[str], other: str, metric: str, layers: Any = "all", *,
                   of: str = "each", margin: float = 0.0, head: int | None = None, name: str | None = None) -> Outcome:
    """``comparison``'s value is above ``other``'s on each selected layer (or on their mean)."""
    __tracebackhide__ = True
    return _check(results, "Ordering", comparison, metric, layers, name=name, head=head, farther_than=other, of=of,
                  margin=float(margin))


def assert_share(results: Any, comparison: str | Iterable[str], other: str, metric: str, layers: Any = "all", *,
                 at_least: float | None = None, at_most: float | None = None, of: str = "each",
                 head: int | None = None, name: str | None = None) -> Outcome:
    """Each selected layer's change in ``comparison`` (a distance's value, a similarity's 1 - value), or their
    mean's, is at least ``at_least`` (and/or at most ``at_most``) of ``other``'s: e.g. a checkpoint against
    the end of training, "by step 2000 the lower layers have made 90% of their final move"."""
    __tracebackhide__ = True
    if at_least is None and at_most is None:
        raise TypeError("assert_share needs a bound: at_least=... and/or at_most=...")
    bounds = {key: float(value) for key, value in (("at_least", at_least), ("at_most", at_most)) if value is not None}
    return _check(results, "Share", comparison, metric, layers, name=name, head=head, share_of=other, of=of, **bounds)


def assert_matches_baseline(results: Any, baseline: Any, metric: str, comparison: str | Iterable[str] | None = None,
                            layers: Any = "all", *, tolerance: float = 1e-6, head: int | None = None,
                            name: str | None = None) -> Outcome:
    """Every selected value is within ``tolerance`` of the ``baseline`` run's (a run folder, a
    results.parquet, or Results). ``comparison`` defaults to every comparison that ran ``metric``.

    Raises ValueError when the baseline comes from another spec or lacks the values.
    """
    __tracebackhide__ = True
    from probekit.expect.kinds import Baseline
    from probekit.results.layers import series_index

    results = _results(results)
    reference = _results(baseline)
    ours, theirs = results.metadata.get("spec_name"), reference.metadata.get("spec_name")
    if ours and theirs and ours != theirs:
        raise ValueError(f"the baseline is from spec {theirs!r}, these results from spec {ours!r}")
    if comparison is None:
        comparison = [c for c in results.comparisons if (c, metric, head) in results._series_index()]
        if not comparison:
            raise ValueError(f"no comparison in these results has {metric!r} values")
    comparisons = [comparison] if isinstance(comparison, str) else list(comparison)
    index = series_index(reference.table)
    values = {}
    for name_ in comparisons:
        series = index.get((name_, metric, head))
        if not series:
            raise ValueError(f"the baseline {reference.path or reference.run_dir} has no {metric!r} values for {name_!r}")
        values.update({(name_, layer): value for layer, value in series.items()})
    expectation = Baseline.build(comparisons, metric, layers, name=name, head=head, tolerance=float(tolerance),
                                 baseline=str(reference.path or reference.run_dir or "baseline"), reference=values)
    return assert_expectation(results, expectation)
