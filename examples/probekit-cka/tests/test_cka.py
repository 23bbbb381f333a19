"""example_cka keeps probekit's metric contract and computes Kornblith et al.'s linear CKA."""
from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
import torch

import probekit
from probekit.testing import check_metric

import probekit_cka
from probekit_cka import LinearCKA, linear_cka


def numpy_cka(x: np.ndarray, y: np.ndarray) -> float:
    """The formula, directly: centred X (n x dx), Y (n x dy); ||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F)."""
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    return float(np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def related(rng: np.random.Generator, n: int, dx: int, dy: int) -> tuple[np.ndarray, np.ndarray]:
    """X (n x dx) with large per-neuron offsets, as BERT has, and Y (n x dy) partly a linear map of X."""
    x = rng.normal(size=(n, dx)) * rng.uniform(0.1, 3.0, size=dx) + rng.normal(scale=50.0, size=dx)
    y = x @ rng.normal(size=(dx, dy)) + rng.normal(scale=2.0, size=(n, dy))
    return x, y


# Not "cls": layer 0's [CLS] datapoint is the same for every example, so CKA is 0/0 there
# (a MetricError; test_a_constant_layer_is_a_metric_error).
@pytest.mark.parametrize("tokens", ["all", "mean"])
def test_keeps_the_metric_contract(tokens):
    check_metric(LinearCKA, {"tokens": tokens})


def test_agrees_with_the_formula_on_random_data_of_different_widths():
    x, y = related(np.random.default_rng(0), 500, 24, 40)
    assert linear_cka(x, y) == pytest.approx(numpy_cka(x, y), rel=1e-9, abs=1e-9)


def test_the_metric_streams_padded_batches_into_the_formula():
    rng = np.random.default_rng(1)
    widths, num_layers, batches = (24, 40), 2, []
    for size, length in ((5, 9), (3, 4), (8, 12)):
        mask = torch.zeros(size, length, dtype=torch.long)  # (batch, tokens)
        for row, real in enumerate(rng.integers(2, length + 1, size=size)):
            mask[row, :real] = 1
        # per model: layers 0..L of (batch, tokens, width)
        hidden = [tuple(torch.from_numpy(rng.normal(size=(size, length, width))) for _ in range(num_layers + 1))
                  for width in widths]
        batches.append((mask, hidden))
    context = probekit.MetricContext("a_vs_b", None, None, num_layers, torch.device("cpu"))
    metric = LinearCKA(LinearCKA.Options(), context)
    for mask, (a, b) in batches:
        batch = probekit.Batch(input_ids=torch.zeros_like(mask), attention_mask=mask, special_tokens_mask=mask * 0)
        metric.update(probekit.Capture(a, None), probekit.Capture(b, None), batch)
    rows = metric.finalize()
    for layer, row in enumerate(rows):
        x, y = (np.concatenate([h[side][layer][m.bool()].numpy() for m, h in batches]) for side in (0, 1))
        assert row.layer == layer
        assert row.value == pytest.approx(numpy_cka(x, y), rel=1e-9, abs=1e-9)
        assert row.details == {"n_datapoints": len(x)}


def test_an_orthogonal_rotation_gives_one():
    rng = np.random.default_rng(2)
    x, _ = related(rng, 300, 16, 16)
    rotation, _ = np.linalg.qr(rng.normal(size=(16, 16)))  # (16, 16) orthogonal
    assert linear_cka(x, x @ rotation) == pytest.approx(1.0, abs=1e-12)


def test_isotropic_scaling_changes_nothing():
    x, y = related(np.random.default_rng(3), 300, 16, 32)
    value = linear_cka(x, y)
    assert linear_cka(7.5 * x, y) == pytest.approx(value, rel=1e-12)
    assert linear_cka(x, 1e-3 * y) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize(("tokens", "hint"), [("all", ""), ("cls", '; with tokens = "cls", layer 0 is the')])
def test_a_constant_layer_is_a_metric_error(tokens, hint):
    context = probekit.MetricContext("a_vs_b", None, None, 0, torch.device("cpu"))
    metric = LinearCKA(LinearCKA.Options(tokens=tokens), context)
    mask = torch.ones(4, 3, dtype=torch.long)  # (batch, tokens)
    hidden = (torch.ones(4, 3, 8, dtype=torch.float64),)  # layer 0 only: (batch, tokens, hidden), constant
    batch = probekit.Batch(input_ids=torch.zeros_like(mask), attention_mask=mask, special_tokens_mask=mask * 0)
    metric.update(probekit.Capture(hidden, None), probekit.Capture(hidden, None), batch)
    with pytest.raises(probekit.MetricError) as raised:
        metric.finalize()
    assert str(raised.value).startswith(f"example_cka, layer 0: a side is constant over the datapoints: "
                                        f"CKA is undefined{hint}")


def test_registers_through_the_probekit_entry_point():
    try:
        entry_points = importlib.metadata.distribution("probekit-cka").entry_points
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("probekit-cka is not installed (pip install -e examples/probekit-cka)")
    (entry_point,) = [e for e in entry_points if e.group == "probekit"]
    assert entry_point.load() is probekit_cka
    registered = []
    probekit_cka.probekit_register_metrics(register=registered.append)
    assert registered == [LinearCKA]
