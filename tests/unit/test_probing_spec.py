"""specs/probing.toml's expectations hold on the values its run measured, and each fails when its claim is false.

The values are those of a run of the spec (docs/probing.md, measured 2026-12-08 on a 2-core CPU VM); the spec
itself runs with `pytest -m slow specs/probing.toml`.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from probekit.expect.evaluate import evaluate
from probekit.hooks.manager import build_manager
from probekit.metrics.base import Row
from probekit.results.schema import RowContext, build_table, to_records
from probekit.spec.load import parse_spec, read_spec

SPEC = Path(__file__).resolve().parents[2] / "specs" / "probing.toml"
COMPARISON = "pretrained_vs_sentiment"
MEASURED = {  # metric label -> layer -> (value, ci_low, ci_high), from the run of 2026-12-08 (run 20261208T050936Z)
    "sentence_probe": {0: (-0.0201, -0.0403, 0.0049), 1: (0.0000, -0.0278, 0.0280), 2: (0.0268, -0.0233, 0.0726),
                       3: (0.0671, 0.0063, 0.1193), 4: (0.0336, -0.0318, 0.1089), 5: (0.1007, 0.0261, 0.1818),
                       6: (0.1074, 0.0160, 0.1856)},
    "word_probe": {0: (0.0000, 0.0000, 0.0000), 1: (0.0004, -0.0012, 0.0021), 2: (-0.0004, -0.0028, 0.0016),
                   3: (-0.0055, -0.0085, -0.0022), 4: (-0.0055, -0.0100, -0.0008), 5: (-0.0182, -0.0258, -0.0121),
                   6: (-0.0335, -0.0457, -0.0239)},
    "word_selectivity_b": {0: (0.0212, 0.0156, 0.0279), 1: (0.0347, 0.0265, 0.0422), 2: (0.0572, 0.0466, 0.0672),
                           3: (0.0902, 0.0797, 0.1007), 4: (0.1559, 0.1372, 0.1739), 5: (0.1876, 0.1698, 0.2090),
                           6: (0.2084, 0.1865, 0.2322)},
}
MODELS = {"pretrained": {"source": "minilm", "identity": "p", "accuracy": None},
          "sentiment": {"source": "finetune", "identity": "s", "accuracy": 0.78, "majority": 0.53,
                        "chance": 0.5}}


@pytest.fixture(scope="module")
def spec():
    manager = build_manager(autoload=False)
    text, document = read_spec(SPEC)
    return parse_spec(document, path=SPEC, text=text, metrics={n: i.metric for n, i in manager.metrics.items()},
                      sources=manager.sources, kinds=manager.expectations, overrides={})


def table(measured, models=MODELS):
    records = []
    for label, layers in measured.items():
        context = RowContext("run-1", "probing", COMPARISON, "pretrained", "sentiment", None, None, "probe_sentences",
                             label)
        records += to_records(context, [Row(layer, value, n_examples=200, ci_low=low, ci_high=high)
                                        for layer, (value, low, high) in layers.items()])
    metrics = {label: {"metric": "linear_probe", "unit": "score b - a", "direction": "distance"} for label in measured}
    return build_table(records, {"spec_name": "probing", "run_id": "run-1", "device": "cpu", "models": models,
                                 "metrics": metrics, "errors": [], "comparisons": [COMPARISON]})


def changed(label, layer, value, low, high):
    measured = {name: dict(layers) for name, layers in MEASURED.items()}
    measured[label][layer] = (value, low, high)
    return measured


def outcomes(spec, measured, models=MODELS):
    return {outcome.expectation.name: outcome for outcome in evaluate(spec.expectations, table(measured, models))}


def test_the_measured_values_meet_every_expectation(spec):
    results = outcomes(spec, MEASURED)
    assert len(results) == 4 and all(o.passed for o in results.values()), {n: o.reason for n, o in results.items()}


FALSE_CLAIMS = {
    "the sentiment fine-tune is learned": None,
    "the sentence probe of sentiment rises in the top layers after fine-tuning": ("sentence_probe", 6, 0.01, -0.02, 0.04),
    "the word-category probe of the lower layers stays within its interval": ("word_probe", 1, -0.04, -0.06, -0.02),
    "selectivity of the word-category probe stays positive": ("word_selectivity_b", 3, 0.02, -0.01, 0.05),
}


@pytest.mark.parametrize("name", FALSE_CLAIMS)
def test_each_expectation_fails_when_its_claim_is_false(spec, name):
    if FALSE_CLAIMS[name] is None:  # the fine-tune no better than guessing the majority
        models = {**MODELS, "sentiment": {**MODELS["sentiment"], "accuracy": 0.53}}
        results = outcomes(spec, MEASURED, models)
    else:
        results = outcomes(spec, changed(*FALSE_CLAIMS[name]))
    assert not results[name].passed
    assert all(outcome.passed for other, outcome in results.items() if other != name)
