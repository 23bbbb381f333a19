"""Expectations: parsing and validation against a spec, evaluation on small results tables.

No model loads here: specs name hub ids (never fetched at validation) and the
results are tables built by hand with the results schema.
"""
from __future__ import annotations

import io
import math
import textwrap
import tomllib
from pathlib import Path

import pytest
from rich.console import Console

from probekit.errors import SpecError
from probekit.results.events import Event
from probekit.results.layers import parse_layers
from probekit.expect.evaluate import evaluate
from probekit.expect.render import render_outcomes, summary
from probekit.hooks.manager import build_manager
from probekit.results.io import write_table
from probekit.results.schema import build_table
from probekit.expect.kinds import Baseline, Bounds, Contrast, Ordering, Share, Trend
from probekit.spec.load import parse_spec

SPEC_HEAD = """
name = "demo"
[models.pre]
id = "org/pre"
[models.other]
id = "org/other"
[data.d]
task = "sentiment"
[metrics.svcca]
[metrics.attention_js]
[[comparisons]]
name = "ab"
a = "pre"
b = "other"
data = "d"
[[comparisons]]
name = "ba"
a = "other"
b = "pre"
data = "d"
metrics = ["svcca"]
[[comparisons]]
name = "aa"
a = "pre"
b = "pre"
data = "d"
"""


@pytest.fixture(scope="module")
def manager():
    return build_manager(autoload=False)


def parse_text(manager, text: str, path: Path):
    metrics = {name: info.metric for name, info in manager.metrics.items()}
    return parse_spec(tomllib.loads(text), path=path, text=text, metrics=metrics, sources=manager.sources,
                      kinds=manager.expectations,
                      overrides={})


def parse(manager, expect_toml: str, tmp_path=None, head: str = SPEC_HEAD):
    text = head + textwrap.dedent(expect_toml)
    folder = tmp_path if tmp_path is not None else Path("/nonexistent")
    return parse_text(manager, text, folder / "demo.toml")


def problems_of(manager, expect_toml: str, tmp_path=None) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse(manager, expect_toml, tmp_path)
    return [str(p) for p in caught.value.problems]


def make_table(series: dict, errors=(), spec: str = "demo"):
    """{(comparison, metric, head): {layer: value}} -> a results table."""
    records = [
        {"run_id": "r1", "spec": spec, "comparison": c, "model_a": "a", "model_b": "b", "snapshot_a": None,
         "snapshot_b": None, "data": "d", "metric": m, "layer": layer, "head": h, "value": value,
         "n_examples": 10, "n_tokens": 100}
        for (c, m, h), values in series.items() for layer, value in values.items()
    ]
    return build_table(records, {"run_id": "r1", "spec_name": spec, "events": [e.record() for e in errors]})


SVCCA_AB = {0: 0.01, 1: 0.02, 2: 0.03, 3: 0.05, 4: 0.20, 5: 0.40}
TABLE = make_table({
    ("ab", "svcca", None): SVCCA_AB,
    ("ba", "svcca", None): {0: 0.02, 1: 0.03, 2: 0.04, 3: 0.06, 4: 0.30, 5: 0.50},
    ("aa", "svcca", None): {layer: 0.0 for layer in range(6)},
    ("ab", "attention_js", None): {1: 0.001, 2: 0.002, 3: 0.002, 4: 0.010, 5: 0.030},
    ("ab", "attention_js", 0): {1: 0.001, 2: 0.001, 3: 0.002, 4: 0.012, 5: 0.020},
    ("ab", "attention_js", 1): {1: 0.001, 2: 0.003, 3: 0.002, 4: 0.008, 5: 0.040},
})


KINDS = {kind.kind: kind for kind in (Bounds, Trend, Contrast, Ordering, Share, Baseline)}


def check(kind, comparisons, metric, layers="all", table=TABLE, **fields):
    return evaluate([KINDS[kind].build(comparisons, metric, layers, **fields)], table)[0]


# ------------------------------------------------------------------ validation


def test_valid_expectations_parse(manager):
    spec = parse(manager, """
        [[expect]]
        name = "top layers move"
        comparison = "ab"
        metric = "attention_js"
        layers = "last 2"
        above = 0.005
        [[expect]]
        comparisons = ["ab", "ba"]
        metric = "svcca"
        trend = "increasing"
        tolerance = 0.01
        [[expect]]
        comparison = "ab"
        metric = "attention_js"
        head = 1
        layers = "4-5"
        contrast = { low = "1-3", factor = 3.0 }
        [[expect]]
        comparison = "aa"
        metric = "svcca"
        closer_than = "ab"
        of = "mean"
    """)
    names = [e.name for e in spec.expectations]
    assert names == ["top layers move", "expect[1]: svcca trend", "expect[2]: attention_js contrast",
                     "expect[3]: svcca ordering"]
    first, second, third, fourth = spec.expectations
    assert (first.kind, first.comparisons, first.above, first.of) == ("bounds", ("ab",), 0.005, "each")
    assert second.comparisons == ("ab", "ba") and second.tolerance == 0.01
    assert third.head == 1 and third.contrast.factor == 3.0 and third.low.layers == (1, 2, 3)
    assert fourth.other == "ab" and fourth.relation == "closer" and fourth.of == "mean"
    assert isinstance(first, Bounds) and isinstance(fourth, Ordering)


def test_single_comparison_is_the_default(manager):
    head = SPEC_HEAD.split("[[comparisons]]")[0] + '[[comparisons]]\nname = "only"\na = "pre"\nb = "other"\ndata = "d"\n'
    text = head + '[[expect]]\nmetric = "svcca"\nbelow = 1\n'
    spec = parse_text(manager, text, Path("/x/demo.toml"))
    assert spec.expectations[0].comparisons == ("only",)


def test_validation_names_every_problem_with_its_key(manager):
    found = problems_of(manager, """
        [[expect]]
        comparison = "abc"
        metric = "svca"
        below = 1
        [[expect]]
        comparison = "ba"
        metric = "attention_js"
        layers = "1-x"
        above = 0.1
        [[expect]]
        comparison = "ab"
        metric = "svcca"
        head = 0
        trend = "increasing"
        layers = "3"
        tolerence = 0.1
        [[expect]]
        comparison = "ab"
        metric = "attention_js"
        layers = "0-2"
        below = 1
    """)
    assert found == [
        "expect[0].comparison: found 'abc'; expected a comparison of this spec: ab, ba, aa (did you mean 'ab'?)",
        "expect[0].metric: found 'svca'; expected a metric declared under [metrics]: svcca, attention_js (did you mean 'svcca'?)",
        "expect[1].metric: found 'attention_js'; expected a metric that comparison 'ba' runs (svcca); "
        "add 'attention_js' to its metrics or drop this expectation",
        "expect[1].layers: found '1-x'; expected \"all\", \"N\", \"A-B\", \"first N\", \"last N\", "
        "a list such as \"1-4, 7\", or an array of layer numbers",
        "expect[2].head: found 0; expected no head: 'svcca' (svcca) has one value per layer, not per head",
        # the keys of the kind the table is (a trend); its layers are checked once its keys are right
        "expect[2].tolerence: found an unknown key; expected one of name, comparison, comparisons, metric, layers, "
        "head, trend, tolerance, spearman, violations (did you mean 'tolerance'?)",
        "expect[3].layers: found '0-2'; expected attention layers of 'attention_js', which start at 1 "
        "(layer 0 is the embedding output)",
    ]


@pytest.mark.parametrize(("toml", "expected"), [
    ('comparison = "ab"\nmetric = "svcca"',
     "expect[0]: found no assertion; expected exactly one of: below / above (bounds), trend, contrast, "
     "closer_than / farther_than (ordering), share_of (share), baseline, learned"),
    ('comparison = "ab"\nmetric = "svcca"\nbelow = 1\ntrend = "increasing"',
     "expect[0]: found several assertions: bounds, trend; expected exactly one assertion per [[expect]] (split it into several)"),
    ('comparison = "ab"\nmetric = "svcca"\nbelow = 1\ntolerance = 0.1',
     "expect[0].tolerance: found `tolerance` in a bounds expectation; expected `tolerance` only in trend expectations "
     "or baseline expectations"),
    ('comparison = "ab"\nmetric = "svcca"\ntrend = "up"',
     "expect[0].trend: found 'up'; expected one of 'increasing', 'decreasing'"),
    ('comparison = "ab"\nmetric = "svcca"\nbelow = 1\nof = "median"',
     "expect[0].of: found 'median'; expected one of 'each', 'mean' (did you mean 'mean'?)"),
    ('comparison = "ab"\nmetric = "svcca"\nabove = 2\nbelow = 1',
     "expect[0].above: found 2.0; expected a lower bound below `below` (1)"),
    ('comparison = "ab"\nmetric = "svcca"\ncontrast = { lo = "1-2", factor = 2 }',
     "expect[0].contrast.lo: found an unknown key; expected one of low, factor, margin (did you mean 'low'?)"),
    ('comparison = "ab"\nmetric = "svcca"\ncontrast = { low = "1-2" }',
     "expect[0].contrast: found neither `factor` nor `margin`; expected factor = F (mean >= F x mean of low) "
     "or margin = M (mean >= mean of low + M)"),
    ('comparison = "ab"\nmetric = "svcca"\ncloser_than = "ab"',
     "expect[0].closer_than: found 'ab'; expected a comparison other than the one(s) it is ordered against"),
    ('comparison = "ab"\nmetric = "attention_js"\nfarther_than = "ba"',
     "expect[0].farther_than: found 'ba'; expected a comparison that runs 'attention_js'"),
    ('comparison = "ab"\nmetric = "svcca"\ncloser_than = "bab"',
     "expect[0].closer_than: found 'bab'; expected a comparison of this spec: ab, ba, aa (did you mean 'ba'?)"),
    ('metric = "svcca"\nbelow = 1',
     "expect[0].comparison: found nothing; expected the name of the comparison to check (or comparisons = [...]); "
     "the spec has ab, ba, aa"),
    ('comparison = "ab"\nbelow = 1',
     "expect[0].metric: found nothing; expected a metric label declared under [metrics]: svcca, attention_js"),
])
def test_one_problem_per_mistake(manager, toml, expected):
    assert problems_of(manager, "[[expect]]\n" + toml) == [expected]


def test_trend_over_a_single_layer_is_refused(manager):
    for layers in ('"last 1"', '"4"', "[2]", '"first 1"'):
        found = problems_of(manager, f'[[expect]]\ncomparison = "ab"\nmetric = "svcca"\ntrend = "increasing"\nlayers = {layers}')
        assert found == [f"expect[0].layers: found {str(parse_layers(tomllib.loads('x = ' + layers)['x']))!r}; expected at least 2 layers "
                         "for a trend (a trend over one layer always holds)"]


def test_duplicate_names_are_refused(manager):
    found = problems_of(manager, """
        [[expect]]
        name = "x"
        comparison = "ab"
        metric = "svcca"
        below = 1
        [[expect]]
        name = "x"
        comparison = "ab"
        metric = "svcca"
        above = 0
    """)
    assert found == ["expect[1].name: found 'x'; expected a name no other expectation uses (expect[0] has it)"]


def test_baseline_must_exist_and_come_from_the_same_spec(manager, tmp_path):
    found = problems_of(manager, '[[expect]]\ncomparison = "ab"\nmetric = "svcca"\nbaseline = "base/missing.parquet"',
                        tmp_path)
    assert found == [f"expect[0].baseline: found 'base/missing.parquet'; expected a results.parquet file or run folder "
                     f"from an earlier run of this spec ({tmp_path}/base/missing.parquet does not exist)"]
    write_table(make_table({("ab", "svcca", None): SVCCA_AB}, spec="another"), tmp_path / "other" / "results.parquet")
    found = problems_of(manager, '[[expect]]\ncomparison = "ab"\nmetric = "svcca"\nbaseline = "other"', tmp_path)
    assert found == ["expect[0].baseline: found 'other', results of spec 'another'; expected results of this spec "
                     "('demo'); a baseline from another spec measures other models or data"]
    write_table(make_table({("ba", "svcca", None): SVCCA_AB}), tmp_path / "mine" / "results.parquet")
    found = problems_of(manager, '[[expect]]\ncomparison = "ab"\nmetric = "svcca"\nbaseline = "mine"', tmp_path)
    assert found == ["expect[0].baseline: found 'mine'; expected a baseline with svcca results for ab (it has: ba/svcca)"]


# ------------------------------------------------------------------ evaluation, kind by kind


def test_bounds_each():
    passed = check("bounds", "ab", "attention_js", "1-3", below=0.005)
    assert passed.passed and passed.reason == "layers 1-3 all below 0.005 (range 0.001 .. 0.002)"
    failed = check("bounds", "ab", "svcca", "last 3", above=0.1)
    assert not failed.passed
    assert failed.reason == "layers 3-5: 1 of 3 not above 0.1 (layer 3: 0.05)"
    assert failed.offending == {("ab", 3)}
    assert failed.values == {"ab": {3: 0.05, 4: 0.20, 5: 0.40}}


def test_bounds_mean_and_band():
    assert check("bounds", "ab", "svcca", "last 2", above=0.25, of="mean").passed
    failed = check("bounds", "ab", "svcca", "0-2", above=0.005, below=0.015, of="mean")
    assert failed.reason == "mean of layers 0-2 is 0.02, expected above 0.005 and below 0.015"
    assert failed.offending == {("ab", 0), ("ab", 1), ("ab", 2)}


def test_bounds_over_several_comparisons_name_them():
    failed = check("bounds", ["ab", "ba"], "svcca", "last 1", below=0.45)
    assert failed.reason == "ba layer 5: 1 of 1 not below 0.45 (layer 5: 0.5)"
    assert failed.offending == {("ba", 5)}


def test_trend_with_tolerance():
    assert check("trend", "ab", "svcca", "all", trend="increasing").passed
    # attention layer 3 equals layer 2: no dip; head 1 dips by 0.001 at layer 3
    assert check("trend", "ab", "attention_js", "all", trend="increasing").passed
    failed = check("trend", "ab", "attention_js", "all", trend="increasing", head=1)
    assert not failed.passed and failed.offending == {("ab", 3)}
    assert failed.reason == ("layers 1-5 not increasing: layer 3 dips below an earlier layer by more than the tolerance 0 "
                             "(worst: layer 3 = 0.002 vs layer 2 = 0.003)")
    assert check("trend", "ab", "attention_js", "all", trend="increasing", head=1, tolerance=0.0015).passed
    decreasing = check("trend", "ab", "svcca", "all", trend="decreasing")
    assert decreasing.offending == {("ab", layer) for layer in range(1, 6)}


def test_contrast_factor_and_margin():
    passed = check("contrast", "ab", "attention_js", "last 2", contrast={"low": "1-3", "factor": 3})
    assert passed.passed
    assert passed.reason == "mean of layers 4, 5 = 0.02 vs mean of layers 1-3 = 0.001667, 12.00x"
    failed = check("contrast", "ab", "attention_js", "last 2", contrast={"low": "1-3", "factor": 20})
    assert not failed.passed
    assert failed.reason == ("mean of layers 4, 5 = 0.02 vs mean of layers 1-3 = 0.001667, 12.00x; expected at least "
                             "0.03333 (at least 20x the mean of layers 1-3)")
    assert failed.offending == {("ab", 4), ("ab", 5)}
    assert failed.groups == {("ab", 1): "low", ("ab", 2): "low", ("ab", 3): "low", ("ab", 4): "high", ("ab", 5): "high"}
    assert check("contrast", "ab", "svcca", "last 1", contrast={"low": "0-3", "margin": 0.3}).passed
    assert not check("contrast", "ab", "svcca", "last 1", contrast={"low": "0-3", "margin": 0.4}).passed


def test_ordering_each_and_mean():
    passed = check("ordering", "ab", "svcca", "last 2", closer_than="ba")
    assert passed.passed and passed.reason == "ab closer than ba on layers 4, 5"
    failed = check("ordering", "ba", "svcca", "last 2", closer_than="ab")
    assert failed.reason == "ba not closer than ab on 2 of 2 layers (layer 4: 0.3 vs 0.2, layer 5: 0.5 vs 0.4)"
    assert failed.values == {"ba": {4: 0.3, 5: 0.5}, "ab": {4: 0.2, 5: 0.4}}
    assert failed.offending == {("ba", 4), ("ba", 5)}
    assert check("ordering", "ba", "svcca", "all", farther_than="ab", of="mean").passed
    assert not check("ordering", "ba", "svcca", "all", farther_than="ab", margin=0.5).passed


def test_baseline_within_tolerance(tmp_path):
    baseline = {("ab", layer): value for layer, value in SVCCA_AB.items()}
    assert check("baseline", "ab", "svcca", baseline=str(tmp_path), reference=baseline, tolerance=1e-9).passed
    drifted = dict(baseline)
    drifted[("ab", 4)] = 0.2005
    failed = check("baseline", "ab", "svcca", baseline=str(tmp_path), reference=drifted, tolerance=1e-4)
    assert failed.reason == ("layers 0-5: 1 of 6 drifted from the baseline by more than 0.0001 "
                             "(worst: layer 4 = 0.2 vs 0.2005)")
    assert failed.offending == {("ab", 4)}
    del drifted[("ab", 5)]
    assert "layer 5 not in the baseline" in check("baseline", "ab", "svcca", baseline=str(tmp_path), reference=drifted).reason


def test_baseline_from_a_spec_is_checked_end_to_end(manager, tmp_path):
    write_table(TABLE, tmp_path / "base" / "results.parquet")
    spec = parse(manager, '[[expect]]\ncomparisons = ["ab", "ba"]\nmetric = "svcca"\nbaseline = "base"\ntolerance = 1e-3',
                 tmp_path)
    assert evaluate(spec.expectations, TABLE)[0].passed
    shifted = make_table({("ab", "svcca", None): {k: v + 0.01 for k, v in SVCCA_AB.items()},
                          ("ba", "svcca", None): {0: 0.02, 1: 0.03, 2: 0.04, 3: 0.06, 4: 0.30, 5: 0.50}})
    outcome = evaluate(spec.expectations, shifted)[0]
    assert not outcome.passed and {c for c, _ in outcome.offending} == {"ab"}


# ------------------------------------------------------------------ missing data fails, never passes


def test_a_failed_metric_fails_the_expectation():
    table = make_table({("ab", "svcca", None): SVCCA_AB},
                       errors=[Event("error", "the model returned no attention maps", "ab", "attention_js")])
    outcome = check("bounds", "ab", "attention_js", below=1, table=table)
    assert not outcome.passed
    assert outcome.reason == "no attention_js results for ab: the metric failed (the model returned no attention maps)"


def test_layers_beyond_the_model_fail():
    outcome = check("bounds", "ab", "svcca", "4-8", below=1)
    assert not outcome.passed
    assert outcome.reason == ("ab: layers 6-8 not in the results (svcca has layers 0-5; is the model smaller than "
                              "the spec assumes?)")
    assert not check("trend", "ab", "svcca", "last 9", trend="increasing").passed


def test_missing_head_and_comparison_fail():
    assert check("bounds", "ab", "attention_js", head=7, below=1).reason == "no attention_js head 7 results for ab: the heads are 0, 1"
    assert not check("bounds", "zz", "svcca", below=1).passed


def test_trend_over_all_of_a_one_layer_result_fails():
    table = make_table({("ab", "svcca", None): {0: 0.1}})
    outcome = check("trend", "ab", "svcca", "all", trend="increasing", table=table)
    assert not outcome.passed and "needs at least 2 layers" in outcome.reason


def test_nan_fails():
    table = make_table({("ab", "svcca", None): {0: 0.1, 1: math.nan}})
    outcome = check("bounds", "ab", "svcca", below=1, table=table)
    assert not outcome.passed and outcome.offending == {("ab", 1)} and "not a number" in outcome.reason


# ------------------------------------------------------------------ showing outcomes


def test_failure_text_has_the_table_with_offenders_marked():
    outcome = check("bounds", "ab", "svcca", "last 3", above=0.1, name="top layers move")
    text = outcome.failure_text("/runs/x", where="expect[0] of demo.toml")
    assert text.splitlines() == [
        "layers 3-5: 1 of 3 not above 0.1 (layer 3: 0.05)",
        "expectation: expect[0] of demo.toml: svcca of ab, layers last 3: each above 0.1",
        "",
        "  comparison  layer  value  expected",
        "  ab              3   0.05  > 0.1     <-- fails",
        "  ab              4    0.2  > 0.1",
        "  ab              5    0.4  > 0.1",
        "",
        "run folder: /runs/x",
    ]


def test_render_outcomes_prints_one_line_each_and_a_summary():
    outcomes = [check("bounds", "ab", "svcca", "last 3", above=0.1, name="top"),
                check("trend", "ab", "svcca", trend="increasing", name="deeper moves more"),
                check("bounds", "aa", "svcca", below=1e-9, name="same model")]
    buffer = io.StringIO()
    render_outcomes(outcomes, Console(file=buffer, width=200, color_system=None))
    lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
    assert lines[1] == "FAILED top - layers 3-5: 1 of 3 not above 0.1 (layer 3: 0.05)"
    assert lines[2].startswith("PASSED deeper moves more - layers 0-5 increasing")
    assert lines[3].startswith("PASSED same model - layers 0-5 all below 1e-09")
    assert "2 passed, 1 failed" in lines[4]
    assert summary(outcomes[1:]) == "2 passed"
