"""cross_layer: its diagonal is the layer-wise metric, every pair is the pair's metric, widths may differ."""
from __future__ import annotations

import warnings

import pytest
import torch

import probekit
from probekit.metrics.functional import linear_cka, procrustes, svcca
from probekit.engine.capture import forward
from probekit.plugins.attention_js import AttentionJS
from probekit.plugins.cross_layer import CrossLayer
from probekit.plugins.linear_cka import LinearCKA
from probekit.plugins.procrustes import Procrustes
from probekit.plugins.svcca import SVCCA
from probekit.testing.fixtures import run_metric, tiny_batches, tiny_model, tiny_model_pair, tiny_tokenizer

LAYER_WISE = {"linear_cka": LinearCKA, "svcca": SVCCA, "procrustes": Procrustes}
DIRECT = {"linear_cka": linear_cka, "svcca": lambda x, y: svcca(x, y).distance, "procrustes": procrustes}


@pytest.fixture(scope="module")
def pair():
    return tiny_model_pair()


@pytest.mark.parametrize("measure", list(LAYER_WISE))
def test_the_diagonal_is_the_layer_wise_metric(pair, measure):
    a, b = pair
    batches = tiny_batches(a.tokenizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        matrix = run_metric(CrossLayer, a, b, batches, measure=measure)
        layer_wise = {row.layer: row.value for row in run_metric(LAYER_WISE[measure], a, b, batches)}
    diagonal = {row.layer: row.value for row in matrix if row.layer_b == row.layer}
    assert diagonal == pytest.approx(layer_wise, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("measure", list(DIRECT))
def test_every_cell_is_the_measure_of_that_pair_of_layers(pair, measure):
    a, b = pair
    batches = tiny_batches(a.tokenizer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cells = {(row.layer, row.layer_b): row.value for row in run_metric(CrossLayer, a, b, batches, measure=measure)}
        needs = frozenset({"hidden_states"})
        captured = [(forward(a.encoder, batch, needs), forward(b.encoder, batch, needs), batch) for batch in batches]
        for (i, j), value in cells.items():
            # (real tokens, hidden): every batch's layer i of a, and layer j of b
            x = torch.cat([ca.hidden_states[i][batch.attention_mask.bool()] for ca, _, batch in captured]).double()
            y = torch.cat([cb.hidden_states[j][batch.attention_mask.bool()] for _, cb, batch in captured]).double()
            assert value == pytest.approx(DIRECT[measure](x, y), rel=1e-9, abs=1e-12), (i, j)


def test_models_of_different_widths_compare_layer_by_layer(pair):
    tokenizer = tiny_tokenizer()
    narrow, wide = tiny_model("a", seed=0, tokenizer=tokenizer), tiny_model("b", seed=1, tokenizer=tokenizer,
                                                                         hidden_size=48, intermediate_size=96)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = run_metric(CrossLayer, narrow, wide, tiny_batches(tokenizer), measure="svcca")
    assert len(rows) == 9 and all(0 < row.value < 1 for row in rows)


def test_attention_maps_of_different_head_counts_are_a_clear_error():
    tokenizer = tiny_tokenizer()
    two, four = tiny_model("a", tokenizer=tokenizer), tiny_model("b", seed=1, tokenizer=tokenizer, num_attention_heads=4)
    with pytest.raises(probekit.MetricError, match=r"p and q must have the same shape .*\(16, 2, .*\(16, 4, "):
        run_metric(AttentionJS, two, four, tiny_batches(tokenizer))
