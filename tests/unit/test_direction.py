"""A metric's direction is read by expectations, the report and the figures: a similarity's
``closer_than`` means a higher value, and its contrast compares 1 - value."""
from __future__ import annotations

import io

from rich.console import Console

from probekit.expect.evaluate import evaluate
from probekit.metrics.base import Row
from probekit.report.figures import axis_label
from probekit.report.terminal import render
from probekit.results.schema import RowContext, build_table, to_records
from probekit.expect.kinds import Bounds, Contrast, Ordering, Trend

KINDS = {kind.kind: kind for kind in (Bounds, Contrast, Ordering, Trend)}


def table(direction: str, values: dict[str, list[float]]):
    records = []
    for comparison, series in values.items():
        context = RowContext("r", "s", comparison, "a", "b", None, None, "d", "sim")
        records += to_records(context, [Row(layer, value) for layer, value in enumerate(series)])
    meta = {"metrics": {"sim": {"metric": "sim", "unit": "CKA", "direction": direction}}}
    return build_table(records, meta)


VALUES = {"near": [0.99, 0.95, 0.90], "far": [0.98, 0.80, 0.40]}


def verdict(direction: str, kind: str, comparison: str, **settings) -> bool:
    expectation = KINDS[kind].build(comparison, "sim", "1-2", **settings)
    return evaluate([expectation], table(direction, VALUES))[0].passed


def test_closer_than_means_a_higher_similarity():
    assert verdict("similarity", "ordering", "near", closer_than="far")
    assert not verdict("similarity", "ordering", "far", closer_than="near")
    assert verdict("similarity", "ordering", "far", farther_than="near")


def test_closer_than_means_a_lower_distance():
    assert verdict("distance", "ordering", "far", closer_than="near")
    assert not verdict("distance", "ordering", "near", closer_than="far")


def test_a_similarity_contrast_compares_how_far_each_layer_moved():
    # far: layers 1-2 moved 0.2 and 0.6 (mean 0.4), layer 0 moved 0.02: 20x.
    expectation = KINDS["contrast"].build("far", "sim", "1-2", contrast={"low": "0", "factor": 10.0})
    similarity = evaluate([expectation], table("similarity", VALUES))[0]
    assert similarity.passed, similarity.reason
    assert "change (1 - value)" in similarity.reason
    # Read as a distance, the same values are about 0.6 / 0.98: no 10x contrast.
    assert not evaluate([expectation], table("distance", VALUES))[0].passed


def test_report_and_figures_say_which_way_a_metric_points():
    output = io.StringIO()
    render(table("similarity", VALUES), Console(file=output, width=200))
    assert "1 = identical; bars 1 - value" in output.getvalue()
    assert axis_label("sim", {"unit": "CKA", "direction": "similarity"}) == "sim (CKA, 1 = identical)"
    assert axis_label("svcca", {"unit": "1 - mean rho", "direction": "distance"}) == "svcca (1 - mean rho, 0 = identical)"
