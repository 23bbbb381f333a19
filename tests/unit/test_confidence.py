"""Expectations with ``confidence``, Spearman trends, the seed spread, and the validation of resampling settings.

Results tables are built by hand with the results schema; no model loads.
"""
from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path

import pytest

from probekit.engine.spread import with_seed_spread
from probekit.errors import SpecError
from probekit.expect.evaluate import evaluate
from probekit.hooks.manager import build_manager
from probekit.results.schema import build_table
from probekit.expect.kinds import Bounds, Contrast, Ordering, Trend
from probekit.spec.load import parse_spec

HEAD = """
name = "demo"
[run]
bootstrap = 200
[models.pre]
id = "org/pre"
[models.tuned]
id = "org/tuned"
[data.d]
task = "sentiment"
[metrics.svcca]
[metrics.linear_cka]
[metrics.attention_js]
[[comparisons]]
name = "ab"
a = "pre"
b = "tuned"
data = "d"
[[comparisons]]
name = "ba"
a = "tuned"
b = "pre"
data = "d"
"""

KINDS = {kind.kind: kind for kind in (Bounds, Contrast, Ordering, Trend)}


@pytest.fixture(scope="module")
def manager():
    return build_manager(autoload=False)


def parse(manager, text: str):
    metrics = {name: info.metric for name, info in manager.metrics.items()}
    return parse_spec(tomllib.loads(text), path=Path("/nonexistent/demo.toml"), text=text, metrics=metrics,
                      sources=manager.sources, kinds=manager.expectations, overrides={})


def problems(manager, text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse(manager, text)
    return [str(p) for p in caught.value.problems]


def table(rows: dict, directions: dict | None = None):
    """{(comparison, metric): {layer: (value, ci_low, ci_high)}} -> a results table."""
    records = [
        {"run_id": "r", "spec": "demo", "comparison": c, "model_a": "a", "model_b": "b", "snapshot_a": None,
         "snapshot_b": None, "data": "d", "metric": m, "layer": layer, "head": None, "value": value,
         "ci_low": low, "ci_high": high, "n_examples": 10, "n_tokens": 100}
        for (c, m), layers in rows.items() for layer, (value, low, high) in layers.items()
    ]
    metrics = {m: {"direction": d} for m, d in (directions or {}).items()}
    return build_table(records, {"run_id": "r", "spec_name": "demo", "metrics": metrics})


def verdict(results, kind: str, comparison: str = "ab", metric: str = "svcca", layers="all", **settings):
    return evaluate([KINDS[kind].build(comparison, metric, layers, **settings)], results)[0]


# -- bounds: the whole interval must satisfy them ------------------------------------------

STRADDLING = table({("ab", "svcca"): {0: (0.5, 0.4, 0.6)}})


def test_a_bound_inside_the_interval_passes_on_the_value_and_fails_with_confidence():
    assert verdict(STRADDLING, "bounds", above=0.45).passed
    outcome = verdict(STRADDLING, "bounds", above=0.45, confidence=0.95)
    assert not outcome.passed
    assert "not above 0.45 at 0.95 confidence" in outcome.reason
    assert "interval 0.4 .. 0.6" in outcome.reason
    assert "[0.4, 0.6]" in outcome.table()


def test_a_bound_outside_the_interval_holds_with_confidence():
    assert verdict(STRADDLING, "bounds", above=0.35, confidence=0.95).passed
    assert verdict(STRADDLING, "bounds", below=0.65, confidence=0.95).passed
    assert not verdict(STRADDLING, "bounds", below=0.55, confidence=0.95).passed


def test_the_mean_of_layers_uses_the_mean_of_the_bounds():
    results = table({("ab", "svcca"): {0: (0.5, 0.4, 0.6), 1: (0.7, 0.65, 0.75)}})
    assert verdict(results, "bounds", above=0.5, of="mean", confidence=0.95).passed  # mean low 0.525
    assert not verdict(results, "bounds", above=0.55, of="mean", confidence=0.95).passed


def test_a_value_without_an_interval_fails_a_confidence_expectation_with_the_reason():
    results = table({("ab", "svcca"): {0: (0.5, None, None)}})
    outcome = verdict(results, "bounds", above=0.1, confidence=0.95)
    assert not outcome.passed
    assert "no confidence interval for layer 0 of svcca" in outcome.reason


# -- orderings and contrasts --------------------------------------------------------------


def test_closer_than_with_confidence_needs_the_intervals_apart():
    overlapping = table({("ab", "svcca"): {0: (0.10, 0.05, 0.21)}, ("ba", "svcca"): {0: (0.30, 0.20, 0.40)}})
    apart = table({("ab", "svcca"): {0: (0.10, 0.05, 0.15)}, ("ba", "svcca"): {0: (0.30, 0.20, 0.40)}})
    assert verdict(overlapping, "ordering", closer_than="ba").passed
    outcome = verdict(overlapping, "ordering", closer_than="ba", confidence=0.95)
    assert not outcome.passed and "with intervals apart" in outcome.reason
    assert verdict(apart, "ordering", closer_than="ba", confidence=0.95).passed


def test_closer_than_for_a_similarity_reads_the_other_ends_of_the_intervals():
    results = table({("ab", "linear_cka"): {0: (0.9, 0.85, 0.95)}, ("ba", "linear_cka"): {0: (0.7, 0.6, 0.86)}},
                    {"linear_cka": "similarity"})
    assert verdict(results, "ordering", metric="linear_cka", closer_than="ba").passed
    assert not verdict(results, "ordering", metric="linear_cka", closer_than="ba", confidence=0.95).passed


def test_a_contrast_with_confidence_sets_the_least_high_change_against_the_most_low_change():
    results = table({("ab", "svcca"): {0: (0.01, 0.005, 0.03), 1: (0.06, 0.05, 0.08)}})
    assert verdict(results, "contrast", layers="1", contrast={"low": "0", "factor": 3.0}).passed  # 0.06 >= 3 x 0.01
    outcome = verdict(results, "contrast", layers="1", contrast={"low": "0", "factor": 3.0}, confidence=0.95)
    assert not outcome.passed  # 0.05 < 3 x 0.03
    assert "the interval's least mean of layer 1 = 0.05" in outcome.reason


def test_a_similarity_contrast_with_confidence_measures_change_as_one_minus_the_interval():
    results = table({("ab", "linear_cka"): {0: (0.99, 0.985, 0.995), 1: (0.8, 0.75, 0.9)}},
                    {"linear_cka": "similarity"})
    # change: layer 1 least 1 - 0.9 = 0.1; layer 0 most 1 - 0.985 = 0.015
    assert verdict(results, "contrast", metric="linear_cka", layers="1", contrast={"low": "0", "factor": 6.0}, confidence=0.95).passed
    assert not verdict(results, "contrast", metric="linear_cka", layers="1", contrast={"low": "0", "factor": 7.0},
                       confidence=0.95).passed


# -- trends as statistics ---------------------------------------------------------------

WOBBLY = table({("ab", "svcca"): {0: (0.1, None, None), 1: (0.3, None, None), 2: (0.2, None, None),
                                  3: (0.5, None, None), 4: (0.6, None, None)}})


def test_a_spearman_trend_passes_where_a_monotone_walk_fails():
    assert not verdict(WOBBLY, "trend", trend="increasing").passed
    outcome = verdict(WOBBLY, "trend", trend="increasing", spearman=0.8)
    assert outcome.passed, outcome.reason
    assert "Spearman 0.900 with depth" in outcome.reason and "10% of layer pairs in the wrong order" in outcome.reason


def test_a_spearman_trend_fails_below_its_correlation_or_above_its_violation_rate():
    assert not verdict(WOBBLY, "trend", trend="increasing", spearman=0.95).passed
    outcome = verdict(WOBBLY, "trend", trend="increasing", violations=0.05)
    assert not outcome.passed and "more than 5% of pairs in the wrong order" in outcome.reason
    assert not verdict(WOBBLY, "trend", trend="decreasing", spearman=0.5).passed


# -- the seed spread --------------------------------------------------------------------


def seed_spec(manager):
    return parse(manager, HEAD.replace('name = "ba"', 'name = "ba"\nmetrics = ["svcca", "linear_cka"]').replace(
        'name = "ab"\na = "pre"', 'name = "ab"\nseed_spread = "ba"\na = "pre"'))


def record(comparison, metric, layer, value, low=None, high=None):
    return {"comparison": comparison, "metric": metric, "layer": layer, "head": None, "value": value,
            "ci_low": low, "ci_high": high}


def test_the_seed_spread_marks_a_distance_beyond_it_only_when_its_whole_interval_is(manager):
    spec = seed_spec(manager)
    records = [record("ab", "svcca", 0, 0.30, 0.25, 0.35), record("ab", "svcca", 1, 0.30, 0.15, 0.40),
               record("ba", "svcca", 0, 0.20), record("ba", "svcca", 1, 0.20)]
    marked = {(r["comparison"], r["layer"]): r for r in with_seed_spread(records, spec)}
    assert marked[("ab", 0)]["seed_spread"] == 0.20 and marked[("ab", 0)]["above_seed_spread"] is True
    assert marked[("ab", 1)]["above_seed_spread"] is False
    assert "seed_spread" not in marked[("ba", 0)]


def test_the_seed_spread_of_a_similarity_is_below_it(manager):
    spec = seed_spec(manager)
    records = [record("ab", "linear_cka", 0, 0.80, 0.75, 0.85), record("ba", "linear_cka", 0, 0.90)]
    marked = with_seed_spread(records, spec)[0]
    assert marked["seed_spread"] == 0.90 and marked["above_seed_spread"] is True


# -- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("bootstrap = 200", "bootstrap = 0", "run.bootstrap: found 0; expected true (200 replicates) or a number of replicates from 10 to 100000"),
    ("bootstrap = 200", "bootstrap = 10000000", "run.bootstrap: found 10000000; expected true"),
    ("bootstrap = 200", "bootstrap = 200\nconfidence = 1.5", "run.confidence: found 1.5; expected a level in (0, 1)"),
    ("bootstrap = 200", "bootstrap = 200\nbootstrap_groups = 1", "run.bootstrap_groups: found 1; expected a number of groups from 2"),
    ("[metrics.attention_js]", "[metrics.attention_js]\npermutations = 50",
     "metrics.attention_js.permutations: found 50 for 'attention_js', which has no permutation null"),
    ("[metrics.svcca]", "[metrics.svcca]\npermutations = -3", "metrics.svcca.permutations: found -3; expected a number of null draws"),
    ('name = "ba"', 'name = "ba"\nseed_spread = "nope"', "comparisons[1].seed_spread: found 'nope'; expected the name of another comparison"),
])
def test_bad_resampling_settings_name_the_key(manager, old, new, expected):
    assert old in HEAD
    found = problems(manager, HEAD.replace(old, new, 1))
    assert any(p.startswith(expected) for p in found), found


def test_a_permutation_error_lists_the_metrics_that_have_a_null(manager):
    found = problems(manager, HEAD.replace("[metrics.attention_js]", "[metrics.attention_js]\npermutations = 5"))
    assert "svcca" in found[0] and "linear_cka" in found[0] and "debiased_cka" in found[0]


@pytest.mark.parametrize(("run", "confidence", "expected"), [
    ("bootstrap = 200", "1.2", "expect[0].confidence: found 1.2; expected a level in (0, 1)"),
    ("threads = 1", "0.95", "expect[0].confidence: found 0.95; expected intervals to check: set [run] bootstrap"),
    ("bootstrap = 200", "0.9", "expect[0].confidence: found 0.9; expected the level of the run's intervals, "
                               "[run] confidence = 0.95"),
])
def test_bad_confidence_expectations_name_the_key(manager, run, confidence, expected):
    text = HEAD.replace("bootstrap = 200", run) + textwrap.dedent(f"""
        [[expect]]
        comparison = "ab"
        metric = "svcca"
        above = 0.1
        confidence = {confidence}
    """)
    found = problems(manager, text)
    assert any(p.startswith(expected) for p in found), found


def test_confidence_belongs_to_bounds_contrasts_and_orderings(manager):
    found = problems(manager, HEAD + textwrap.dedent("""
        [[expect]]
        comparison = "ab"
        metric = "svcca"
        trend = "increasing"
        confidence = 0.95
    """))
    assert any(p.startswith("expect[0].confidence: found `confidence` in a trend expectation") for p in found), found


def test_bootstrap_true_means_200_replicates(manager):
    spec = parse(manager, HEAD.replace("bootstrap = 200", "bootstrap = true"))
    assert spec.run.bootstrap == 200 and spec.run.confidence == 0.95
