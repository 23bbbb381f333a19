"""The layer_replacement metric against a direct implementation of the definition.

The reference below does what REFERENCE.md ("Layer replacement") says, the slow
way: a full copy of the fine-tuned model per layer with that layer's pre-trained
state dict loaded into it, a full forward, and SVCCA by full SVD of the centred
last-layer tokens (numpy, float64). The metric runs only layers l..L and streams
CrossMoments; both must agree to 1e-6 with the same k.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from probekit.engine.capture import forward
from probekit.hooks.manager import build_manager
from probekit.metrics.base import MetricContext, MetricError
from probekit.metrics.tensors import Batch
from probekit.models.loading import LoadedModel

HIDDEN = 32
LAYERS = 3
VOCAB = 40
PAD, CLS, SEP = 0, 2, 3


# ---------------------------------------------------------------- material


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_bert(attn: str = "eager", seed: int = 0, layers: int = LAYERS):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * HIDDEN, max_position_embeddings=64, attn_implementation=attn)
    return BertModel(config).eval()


def perturbed(model, seed: int = 1, scale: float = 0.05, only=None):
    """A "fine-tuned" copy: noise on every parameter (or only on those whose name starts with ``only``)."""
    tuned = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in tuned.named_parameters():
            if only is None or name.startswith(only):
                parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return tuned


def make_batches(n_batches: int = 5, size: int = 8, seed: int = 0) -> list[Batch]:
    """Sentence pairs of different lengths, padded per batch: [CLS] a [SEP] b [SEP] [PAD]..."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(n_batches):
        rows = []
        for _ in range(size):
            first, second = rng.integers(2, 10, size=2)
            ids = [CLS, *rng.integers(5, VOCAB, first), SEP, *rng.integers(5, VOCAB, second), SEP]
            types = [0] * (first + 2) + [1] * (second + 1)
            rows.append((ids, types))
        width = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((size, width), PAD)
        token_types = torch.zeros((size, width), dtype=torch.long)
        attention = torch.zeros((size, width), dtype=torch.long)
        for i, (ids, types) in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            token_types[i, : len(ids)] = torch.tensor(types)
            attention[i, : len(ids)] = 1
        special = ((input_ids == CLS) | (input_ids == SEP)).long()
        batches.append(Batch(input_ids, attention, special, token_types))
    assert len({b.input_ids.shape[1] for b in batches}) > 1 or n_batches == 1
    return batches


def run_metric(pretrained, finetuned, batches, **options):
    """Feed the metric as the runner does: one captured forward per model per batch."""
    metric_cls = build_manager(autoload=False).metrics["layer_replacement"].metric
    model_a = LoadedModel("pre", pretrained, tokenizer=None, identity="pre")
    model_b = LoadedModel("tuned", finetuned, tokenizer=None, identity="tuned")
    context = MetricContext("cmp", model_a, model_b, model_a.num_layers, torch.device("cpu"))
    metric = metric_cls(metric_cls.Options(**options), context)
    for batch in batches:
        capture_a = forward(model_a.encoder, batch, metric_cls.needs, model_a.name)
        capture_b = forward(model_b.encoder, batch, metric_cls.needs, model_b.name)
        metric.update(capture_a, capture_b, batch)
    return metric.finalize()


# ---------------------------------------------------------------- reference


def ref_k(s: np.ndarray, rule: str, threshold: float) -> int:
    values = s if rule == "singular_values" else s**2
    ratios = np.cumsum(values) / values.sum()
    return int(np.argmax(ratios >= threshold)) + 1 if ratios[-1] >= threshold else len(values)


def ref_svcca(x: np.ndarray, y: np.ndarray, rule="singular_values", threshold=0.99, k=None):
    reduced, ks = [], []
    for a in (x, y):
        u, s, _ = np.linalg.svd(a - a.mean(axis=0), full_matrices=False)
        ka = k if k is not None else ref_k(s, rule, threshold)
        reduced.append(u[:, :ka])  # orthonormal basis of the top-ka directions
        ks.append(ka)
    rho = np.linalg.svd(reduced[0].T @ reduced[1], compute_uv=False)
    return 1.0 - rho.mean(), ks[0], ks[1]


def last_layer_tokens(model, batches) -> np.ndarray:
    with torch.no_grad():
        rows = [model(**b.model_inputs()).last_hidden_state[b.attention_mask.bool()] for b in batches]
    return torch.cat(rows).double().numpy()


def reference(pretrained, finetuned, batches, **options):
    target = last_layer_tokens(finetuned, batches)
    values = []
    for layer in range(pretrained.config.num_hidden_layers + 1):
        replaced = copy.deepcopy(finetuned)
        if layer == 0:
            replaced.embeddings.load_state_dict(pretrained.embeddings.state_dict())
        else:
            replaced.encoder.layer[layer - 1].load_state_dict(pretrained.encoder.layer[layer - 1].state_dict())
        values.append(ref_svcca(last_layer_tokens(replaced, batches), target, **options))
    return values


# ---------------------------------------------------------------- tests


def test_registered():
    metrics = build_manager(autoload=False).metrics
    assert "layer_replacement" in metrics
    assert metrics["layer_replacement"].distribution == "probekit"  # a built-in


@pytest.mark.parametrize(
    "attn, options",
    [
        ("eager", {}),
        ("sdpa", {}),
        ("eager", {"rule": "variance", "threshold": 0.9}),
        ("sdpa", {"k": 10}),
    ],
)
def test_matches_direct_replacement(attn, options):
    pretrained = tiny_bert(attn)
    finetuned = perturbed(pretrained)
    batches = make_batches()
    n_tokens = sum(int(b.attention_mask.sum()) for b in batches)
    assert n_tokens > 5 * HIDDEN and any(not b.attention_mask.all() for b in batches)

    rows = run_metric(pretrained, finetuned, batches, **options)
    expected = reference(pretrained, finetuned, batches, **options)

    assert [r.layer for r in rows] == list(range(LAYERS + 1))
    for row, (distance, k_x, k_y) in zip(rows, expected, strict=True):
        assert (row.details["k_x"], row.details["k_y"]) == (k_x, k_y), row
        assert row.value == pytest.approx(distance, abs=1e-6), row
        assert row.n_tokens == n_tokens and row.n_examples == 40
    assert all(r.value > 1e-3 for r in rows), "the perturbation should move the last layer"
    assert rows[0].details["rule"] == ("fixed" if "k" in options else options.get("rule", "singular_values"))


def test_identical_models_give_exactly_zero():
    pretrained = tiny_bert()
    rows = run_metric(pretrained, copy.deepcopy(pretrained), make_batches())
    assert [r.value for r in rows] == [0.0] * (LAYERS + 1)


def test_unchanged_layers_give_zero_and_changed_ones_match():
    """Only layer 2 fine-tuned: replacing any other layer is a no-op."""
    pretrained = tiny_bert()
    finetuned = perturbed(pretrained, scale=0.2, only="encoder.layer.1.")
    batches = make_batches()
    rows = run_metric(pretrained, finetuned, batches)
    expected = reference(pretrained, finetuned, batches)
    assert [r.value for i, r in enumerate(rows) if i != 2] == [0.0] * LAYERS
    assert rows[2].value == pytest.approx(expected[2][0], abs=1e-6) and rows[2].value > 1e-3


def test_cls_and_mean_tokens_match_direct():
    """One datapoint per example: enough examples for > 5 per neuron."""
    pretrained = tiny_bert("sdpa", layers=2)
    finetuned = perturbed(pretrained)
    batches = make_batches(n_batches=21, size=8, seed=3)

    def last_layers(model):
        with torch.no_grad():
            return [model(**b.model_inputs()).last_hidden_state for b in batches]

    def pooled(states, how):
        out = []
        for h, b in zip(states, batches, strict=True):
            m = b.attention_mask.unsqueeze(-1).to(h.dtype)
            out.append(h[:, 0] if how == "cls" else (h * m).sum(1) / m.sum(1))
        return torch.cat(out).double().numpy()

    target = last_layers(finetuned)
    replaced_states = []
    for layer in range(3):
        replaced = copy.deepcopy(finetuned)
        source = pretrained.embeddings if layer == 0 else pretrained.encoder.layer[layer - 1]
        (replaced.embeddings if layer == 0 else replaced.encoder.layer[layer - 1]).load_state_dict(source.state_dict())
        replaced_states.append(last_layers(replaced))

    for how in ("cls", "mean"):
        rows = run_metric(pretrained, finetuned, batches, tokens=how)
        for row, states in zip(rows, replaced_states, strict=True):
            distance, k_x, k_y = ref_svcca(pooled(states, how), pooled(target, how))
            assert (row.details["k_x"], row.details["k_y"]) == (k_x, k_y)
            assert row.value == pytest.approx(distance, abs=1e-6)
            assert row.n_tokens == 168


def test_unsupported_architecture_is_named():
    from transformers import AlbertConfig, AlbertModel

    config = AlbertConfig(vocab_size=VOCAB, embedding_size=16, hidden_size=HIDDEN, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=2 * HIDDEN, max_position_embeddings=64)
    model = AlbertModel(config).eval()
    with pytest.raises(MetricError, match=r"layer_replacement: pre: probekit does not know the model family of "
                                          r"AlbertModel \(config.model_type 'albert'\)"):
        run_metric(model, copy.deepcopy(model), make_batches(1))


def test_end_to_end_in_a_spec(tiny_models, tmp_path):
    """Through a spec run: one row per layer (0 = embeddings) with k_x/k_y columns; a model against itself is 0."""
    from probekit import api
    from probekit.testing.fixtures import write_tiny_csv

    write_tiny_csv(tmp_path / "d.csv", 64)
    results = api.run({
        "name": "replacement",
        "run": {"device": "cpu", "batch_size": 16},
        "models": {"pre": {"id": str(tiny_models[0])}, "tuned": {"id": str(tiny_models[1])}},
        "data": {"d": {"path": "d.csv"}},
        "metrics": {"layer_replacement": {}},
        "comparisons": [{"name": "pre_vs_tuned", "a": "pre", "b": "tuned", "data": "d"},
                        {"name": "same", "a": "pre", "b": "pre", "data": "d"}],
    }, output=tmp_path / "run", base_dir=tmp_path, use_cache=False)
    assert results.exit_code == 0 and results.errors == []
    moved = results.series("pre_vs_tuned", "layer_replacement")
    assert moved.layers == [0, 1, 2] and all(0 < value <= 1 for value in moved.values())
    assert results.series("same", "layer_replacement").to_dict() == {0: 0.0, 1: 0.0, 2: 0.0}
    rows = [r for r in results.table.to_pylist() if r["comparison"] == "pre_vs_tuned"]
    assert all(r["k_x"] > 0 and r["k_y"] > 0 and r["n_examples"] == 64 for r in rows)
