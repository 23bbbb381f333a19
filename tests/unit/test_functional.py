"""probekit.metrics.functional against direct float64 evaluations of the definitions in REFERENCE.md.

The reference implementations below are written from the formulas, not from the
module: SVCCA by full SVD of the centred data, k by a loop over the cumulative
ratio, CCA by QR of the reduced matrices; JS by explicit loops over rows.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from probekit.metrics.functional import (
    CrossMoments,
    Datapoints,
    FewDatapointsWarning,
    attention_js,
    attention_js_per_example,
    attention_row_plogp,
    cca,
    cca_from_moments,
    svcca,
    svcca_from_moments,
)


# ---------------------------------------------------------------- references


def ref_k(s: np.ndarray, rule: str, threshold: float) -> int:
    values = s if rule == "singular_values" else s**2
    total = values.sum()
    running = 0.0
    for i, v in enumerate(values):
        running += v
        if running / total >= threshold:
            return i + 1
    return len(values)


def ref_cca_rho(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    qa, _ = np.linalg.qr(a)
    qb, _ = np.linalg.qr(b)
    return np.linalg.svd(qa.T @ qb, compute_uv=False)


def ref_svcca(x, y, rule="singular_values", threshold=0.99, k=None):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    reduced, ks = [], []
    for a in (x, y):
        centred = a - a.mean(axis=0)
        u, s, _ = np.linalg.svd(centred, full_matrices=False)
        ka = k if k is not None else ref_k(s, rule, threshold)
        reduced.append(u[:, :ka] * s[:ka])
        ks.append(ka)
    rho = ref_cca_rho(*reduced)
    return 1.0 - rho.mean(), ks[0], ks[1]


def ref_js_per_example(p, q, mask, query_mask=None, base=None):
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    mask = np.asarray(mask)
    query_mask = mask if query_mask is None else np.asarray(query_mask) * mask
    batch, heads = p.shape[:2]
    out = np.zeros((batch, heads))
    for b in range(batch):
        keys = np.flatnonzero(mask[b])
        queries = np.flatnonzero(query_mask[b])
        for h in range(heads):
            values = []
            for i in queries:
                pr, qr = p[b, h, i, keys], q[b, h, i, keys]
                mr = (pr + qr) / 2
                kl_p = sum(pv * math.log(pv / mv) for pv, mv in zip(pr, mr) if pv > 0)
                kl_q = sum(qv * math.log(qv / mv) for qv, mv in zip(qr, mr) if qv > 0)
                values.append(0.5 * kl_p + 0.5 * kl_q)
            out[b, h] = np.mean(values)
    return out / (math.log(base) if base else 1.0)


# ------------------------------------------------------------------- inputs


def softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def padded_attention(rng, batch=4, heads=3, tokens=12, padded_mass=0.0):
    """Attention over right-padded examples; some real keys get exactly zero mass."""
    lengths = rng.integers(3, tokens + 1, size=batch)
    lengths[0] = tokens
    mask = (np.arange(tokens)[None, :] < lengths[:, None]).astype(np.int64)

    def one():
        scores = rng.standard_normal((batch, heads, tokens, tokens)) * 2
        scores[rng.random(scores.shape) < 0.1] = -np.inf
        scores[..., 0] = np.maximum(scores[..., 0], 0.0)  # every row keeps some real mass
        scores = np.where(mask[:, None, None, :] == 1, scores, -np.inf)
        probs = softmax(scores) * (1 - padded_mass)
        leaked = padded_mass * rng.random(probs.shape) / tokens
        return np.where(mask[:, None, None, :] == 1, probs, leaked)

    return one(), one(), mask


def correlated(rng, n=1500, dx=20, dy=20, noise=0.5):
    x = rng.standard_normal((n, dx)) * rng.uniform(0.2, 3.0, size=dx)
    rotation, _ = np.linalg.qr(rng.standard_normal((dx, dx)))
    mixed = x @ rotation
    if dy <= dx:
        y = mixed[:, :dy]
    else:
        y = np.concatenate([mixed, x[:, : dy - dx] ** 2], axis=1)
    return x, y + noise * rng.standard_normal((n, dy))


def rank_deficient(rng, n=1200, d=24):
    x = rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, size=d)
    x[:, 3] = x[:, 0]
    x[:, 7] = 2.5 * x[:, 1] - x[:, 2]
    x[:, 10] = 4.2
    x[:, 11] = 0.0
    return x


def tiny_bert_outputs():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    config._attn_implementation = "eager"
    torch.manual_seed(1234)
    model_a = transformers.BertModel(config).eval()
    model_b = transformers.BertModel(config).eval()
    generator = torch.Generator().manual_seed(99)
    ids = torch.randint(0, 100, (12, 30), generator=generator)
    mask = torch.ones_like(ids)
    mask[3, 20:] = 0
    mask[7, 9:] = 0
    inputs = dict(
        input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True
    )
    with torch.no_grad():
        return model_a(**inputs), model_b(**inputs), mask


@pytest.fixture(scope="module")
def bert():
    return tiny_bert_outputs()


# --------------------------------------------------------------------- JS


@pytest.mark.parametrize("base", [None, 2])
def test_js_matches_direct_formula(base):
    rng = np.random.default_rng(0)
    p, q, mask = padded_attention(rng, padded_mass=1e-3)
    p = np.where(mask[:, None, :, None] == 0, np.nan, p)  # padded query rows are skipped
    got = attention_js_per_example(torch.tensor(p), torch.tensor(q), torch.tensor(mask), base=base)
    assert got.dtype == torch.float64 and got.shape == (4, 3)
    want = ref_js_per_example(p, q, mask, base=base)
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-9)
    heads = attention_js(p, q, mask, base=base)
    np.testing.assert_allclose(heads.numpy(), want.mean(axis=0), rtol=0, atol=1e-9)
    upper = 1.0 if base == 2 else math.log(2)
    assert (got >= 0).all() and (got <= upper).all()


def test_js_query_mask_excludes_special_tokens():
    rng = np.random.default_rng(1)
    p, q, mask = padded_attention(rng)
    query_mask = mask.copy()
    query_mask[:, 0] = 0
    query_mask[np.arange(len(mask)), mask.sum(1) - 1] = 0
    got = attention_js_per_example(p, q, mask, query_mask=query_mask)
    want = ref_js_per_example(p, q, mask, query_mask=query_mask)
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-9)
    assert not np.allclose(want, ref_js_per_example(p, q, mask))


def test_js_agrees_with_scipy_per_row():
    rng = np.random.default_rng(2)
    p, q, mask = padded_attention(rng)
    got = attention_js_per_example(p, q, mask).numpy()
    for b in range(p.shape[0]):
        real = np.flatnonzero(mask[b])
        for h in range(p.shape[1]):
            rows = [jensenshannon(p[b, h, i, real], q[b, h, i, real]) ** 2 for i in real]
            assert got[b, h] == pytest.approx(np.mean(rows), abs=1e-9)


def test_js_identical_is_exactly_zero_and_near_identical_is_finite():
    rng = np.random.default_rng(3)
    p, _, mask = padded_attention(rng)
    p32 = torch.tensor(p, dtype=torch.float32)
    got = attention_js(p32, p32.clone(), mask)
    assert torch.equal(got, torch.zeros(p.shape[1], dtype=torch.float64))
    near = torch.tensor(p).to(torch.float32).to(torch.float64)
    close = attention_js_per_example(torch.tensor(p), near, mask)
    assert torch.isfinite(close).all() and (close >= 0).all() and close.max() < 1e-12


def test_js_example_without_queries_raises():
    rng = np.random.default_rng(4)
    p, q, mask = padded_attention(rng)
    query_mask = mask.copy()
    query_mask[2] = 0
    with pytest.raises(ValueError, match=r"examples \[2\]"):
        attention_js_per_example(p, q, mask, query_mask=query_mask)


def test_js_on_bert_attention(bert):
    out_a, out_b, mask = bert
    for layer in range(2):
        p, q = out_a.attentions[layer], out_b.attentions[layer]
        got = attention_js_per_example(p, q, mask)
        want = ref_js_per_example(p.numpy(), q.numpy(), mask.numpy())
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-9)


# ------------------------------------------------------------------ SVCCA


def assert_matches_reference(x, y, **options):
    got = svcca(x, y, **options)
    distance, kx, ky = ref_svcca(x, y, **options)
    assert (got.k_x, got.k_y) == (kx, ky)
    assert got.distance == pytest.approx(distance, abs=1e-6)
    assert got.similarity == pytest.approx(1 - got.distance, abs=1e-15)
    assert got.rho.shape == (min(kx, ky),) and np.isfinite(got.rho).all()
    return got


OPTIONS = [
    {"rule": "singular_values"},
    {"rule": "variance"},
    {"rule": "variance", "threshold": 0.9},
    {"k": 6},
]


@pytest.mark.parametrize("options", OPTIONS)
def test_svcca_random(options):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((800, 16)) * rng.uniform(0.1, 5, size=16)
    y = rng.standard_normal((800, 16)) * rng.uniform(0.1, 5, size=16)
    assert_matches_reference(x, y, **options)


@pytest.mark.parametrize("options", OPTIONS)
def test_svcca_correlated_same_and_different_widths(options):
    rng = np.random.default_rng(11)
    for dx, dy in [(20, 20), (20, 12), (14, 26)]:
        x, y = correlated(rng, dx=dx, dy=dy)
        assert_matches_reference(x, y, **options)


@pytest.mark.parametrize("options", OPTIONS)
def test_svcca_rank_deficient(options):
    rng = np.random.default_rng(12)
    x = rank_deficient(rng)
    y = x @ rng.standard_normal((24, 24)) + rng.standard_normal((1200, 24))
    got = assert_matches_reference(x, y, **options)
    assert got.k_x <= 20


def test_svcca_fixed_k_beyond_rank_or_width_is_an_error():
    rng = np.random.default_rng(13)
    x = rank_deficient(rng)
    y = rng.standard_normal((1200, 10))
    with pytest.raises(ValueError, match=r"rank of X \(20 of 24"):
        svcca(x, rng.standard_normal((1200, 24)), k=21)
    with pytest.raises(ValueError, match=r"width of Y \(10"):
        svcca(x, y, k=11)


def test_svcca_large_mean_outlier_neuron():
    rng = np.random.default_rng(14)
    x, y = correlated(rng, n=6000, dx=16, dy=16)
    x[:, 5] = 1e4 + 1e-2 * x[:, 5]
    y[:, 2] += 1e4
    assert_matches_reference(x, y)
    assert_matches_reference(x, y, k=10)
    moments = CrossMoments()
    for start in range(0, 6000, 1000):
        moments.update(torch.tensor(x[start : start + 1000]), torch.tensor(y[start : start + 1000]))
    cxx, cyy, cxy = moments.covariances()
    full = np.cov(np.concatenate([x, y], axis=1), rowvar=False)
    np.testing.assert_allclose(cxx.numpy(), full[:16, :16], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(cxy.numpy(), full[:16, 16:], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(cyy.numpy(), full[16:, 16:], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("options", OPTIONS[:2])
def test_svcca_bert_hidden_states(bert, options):
    out_a, out_b, _ = bert
    tokens = lambda h: h.reshape(-1, h.shape[-1])  # noqa: E731
    x, y = tokens(out_a.hidden_states[1]), tokens(out_a.hidden_states[2])
    got = assert_matches_reference(x.numpy(), y.numpy(), **options)
    assert 0 < got.distance < 1
    other = tokens(out_b.hidden_states[2])
    assert_matches_reference(y.numpy(), other.numpy(), **options)
    assert svcca(y, y, **options).distance == 0.0


def test_svcca_identical_is_exactly_zero():
    rng = np.random.default_rng(15)
    x, _ = correlated(rng, n=5000)
    for options in OPTIONS:
        got = svcca(x, x.copy(), **options)
        assert got.distance == 0.0 and got.similarity == 1.0
        assert (got.rho == 1.0).all()
        _, kx, ky = ref_svcca(x, x, **options)
        assert (got.k_x, got.k_y) == (kx, ky)
    x32 = torch.tensor(x, dtype=torch.float32)
    assert svcca(x32, x32.clone()).distance == 0.0


def test_streaming_equals_one_batch():
    rng = np.random.default_rng(16)
    x, y = correlated(rng, n=3000, dx=18, dy=22)
    x[:, 0] += 300.0
    whole = CrossMoments()
    whole.update(torch.tensor(x), torch.tensor(y))
    streamed = CrossMoments()
    bounds = [0, 1, 17, 17, 500, 1800, 3000]
    for start, stop in zip(bounds[:-1], bounds[1:]):
        streamed.update(torch.tensor(x[start:stop]), torch.tensor(y[start:stop]))
    assert streamed.n == whole.n == 3000
    for a, b in zip(whole.covariances(), streamed.covariances()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-10)
    for options in OPTIONS:
        one, many = svcca_from_moments(whole, **options), svcca_from_moments(streamed, **options)
        assert (one.k_x, one.k_y) == (many.k_x, many.k_y)
        assert one.distance == pytest.approx(many.distance, abs=1e-10)


def test_streaming_identical_batches_then_different():
    rng = np.random.default_rng(17)
    x, y = correlated(rng, n=2000)
    y[:1000] = x[:1000]
    moments = CrossMoments()
    moments.update(torch.tensor(x[:600]), torch.tensor(y[:600]))
    moments.update(torch.tensor(x[600:1000]), torch.tensor(y[600:1000]))
    assert moments.identical
    moments.update(torch.tensor(x[1000:]), torch.tensor(y[1000:]))
    assert not moments.identical
    got = svcca_from_moments(moments)
    distance, kx, ky = ref_svcca(x, y)
    assert (got.k_x, got.k_y) == (kx, ky) and got.distance == pytest.approx(distance, abs=1e-6)


def test_float32_input_keeps_k_near_threshold():
    """Singular values designed so that the cumulative ratio passes 0.99 by 2e-6 at k = 10."""
    rng = np.random.default_rng(18)
    n, d, k, margin = 2000, 20, 10, 2e-6
    head = np.linspace(2.0, 1.0, k)
    tail = head.sum() * (1 / (0.99 + margin) - 1) / (d - k)
    s = np.concatenate([head, np.full(d - k, tail)])
    centred = rng.standard_normal((n, d))
    basis, _ = np.linalg.qr(centred - centred.mean(axis=0))
    rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
    x = (basis * s) @ rotation.T + 5.0
    y = rng.standard_normal((n, 15))
    ratio = np.cumsum(np.linalg.svd(x - x.mean(0), compute_uv=False)) / s.sum()
    assert 0.99 < ratio[k - 1] < 0.99 + 1e-5 and ratio[k - 2] < 0.99
    got64 = svcca(x, y)
    got32 = svcca(x.astype(np.float32), y.astype(np.float32))
    assert got64.k_x == got32.k_x == ref_svcca(x.astype(np.float32), y)[1] == k
    assert got64.k_y == got32.k_y


# -------------------------------------------------------------------- CCA


def test_cca_full_rank_matches_qr():
    rng = np.random.default_rng(20)
    x, y = correlated(rng, n=2000, dx=15, dy=21)
    got = cca(x, y)
    want = ref_cca_rho(x - x.mean(0), y - y.mean(0))
    np.testing.assert_allclose(got.rho, want, rtol=0, atol=1e-9)
    assert (got.rank_x, got.rank_y, got.n) == (15, 21, 2000)
    assert got.similarity == pytest.approx(want.mean(), abs=1e-9)


def test_cca_rank_deficient_counts_numerical_rank():
    rng = np.random.default_rng(21)
    x = rank_deficient(rng)
    y = rng.standard_normal((1200, 24))
    got = cca(x, y)
    assert got.rank_x == 20 < x.shape[1] and got.rank_y == 24
    assert got.rho.shape == (20,) and np.isfinite(got.similarity)
    # Same as plain CCA on the independent columns only.
    keep = [c for c in range(24) if c not in (3, 7, 10, 11)]
    want = ref_cca_rho(x[:, keep] - x[:, keep].mean(0), y - y.mean(0))
    np.testing.assert_allclose(got.rho, want, rtol=0, atol=1e-8)
    moments = CrossMoments()
    moments.update(torch.tensor(x), torch.tensor(x))
    assert cca_from_moments(moments).similarity == 1.0


# ------------------------------------------------------------ input rules


def test_too_few_datapoints_raises_with_numbers():
    rng = np.random.default_rng(30)
    x, y = rng.standard_normal((40, 30)), rng.standard_normal((40, 40))
    with pytest.raises(ValueError, match=r"n=40.*d=40.*more examples or tokens"):
        svcca(x, y)
    with pytest.raises(ValueError, match=r"n=40.*d=40"):
        cca(x, y)


def test_few_datapoints_warns():
    rng = np.random.default_rng(31)
    x, y = rng.standard_normal((100, 30)), rng.standard_normal((100, 30))
    with pytest.warns(FewDatapointsWarning, match=r"n=100.*d=30"):
        svcca(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        svcca(rng.standard_normal((150, 30)), rng.standard_normal((150, 30)))


def test_rank_zero_and_bad_arguments_raise():
    rng = np.random.default_rng(32)
    y = rng.standard_normal((200, 8))
    with pytest.raises(ValueError, match="X has numerical rank 0"):
        svcca(np.zeros((200, 8)), y)
    # 0.1 is not what a float64 mean of 0.1s comes back as: the layer must still be rank 0.
    with pytest.raises(ValueError, match="Y has numerical rank 0"):
        cca(y, np.full((200, 8), 0.1))
    with pytest.raises(ValueError, match=r"\(200, 8\).*\(199, 8\)"):
        svcca(y, y[:-1])
    with pytest.raises(ValueError, match="rule"):
        svcca(y, y, rule="sum")
    with pytest.raises(ValueError, match="threshold"):
        svcca(y, y, threshold=0.0)
    with pytest.raises(ValueError, match="NaN"):
        svcca(np.where(np.eye(200, 8) == 1, np.nan, y), y)


def test_fixed_k_result_records_rule():
    rng = np.random.default_rng(33)
    x, y = correlated(rng, n=500, dx=10, dy=10)
    got = svcca(x, y, k=4)
    assert got.rule == "fixed" and math.isnan(got.threshold) and (got.k_x, got.k_y) == (4, 4)
    default = svcca(x, y)
    assert default.rule == "singular_values" and default.threshold == 0.99 and default.n == 500


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(40)
    x, y = correlated(rng, n=5000, dx=32, dy=24)
    cpu = svcca(x, y)
    on_cuda = lambda a: torch.tensor(a, dtype=torch.float32, device="cuda")  # noqa: E731
    gpu = svcca(on_cuda(x), on_cuda(y))
    assert (gpu.k_x, gpu.k_y) == (cpu.k_x, cpu.k_y)
    assert gpu.distance == pytest.approx(cpu.distance, abs=1e-6)
    p, q, mask = padded_attention(rng)
    on_gpu = attention_js(*(torch.tensor(a, device="cuda") for a in (p, q, mask)))
    assert on_gpu.device.type == "cuda"
    np.testing.assert_allclose(on_gpu.cpu().numpy(), attention_js(p, q, mask).numpy(), atol=1e-12)


@pytest.fixture(scope="module")
def minilm_outputs():
    """The real pre-trained all-MiniLM-L6-v2 (the embedded default) on real sentences."""
    from transformers import AutoModel, AutoTokenizer

    from probekit.models.loading import embedded_model_path
    from probekit.plugins.source_task.generator import load_task

    path = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, attn_implementation="eager", dtype=torch.float32).eval()
    examples = load_task("entailment", "validation")[:64]
    batch = tokenizer([e.text for e in examples], [e.text_pair for e in examples], padding=True,
                      truncation=True, max_length=64, return_tensors="pt")
    with torch.inference_mode():
        output = model(**batch, output_hidden_states=True, output_attentions=True)
    return output, batch["attention_mask"]


@pytest.mark.parametrize("options", OPTIONS[:2])
def test_svcca_on_the_embedded_model(minilm_outputs, options):
    output, mask = minilm_outputs
    real = mask.bool()
    x, y = output.hidden_states[2][real].double().numpy(), output.hidden_states[5][real].double().numpy()
    assert x.shape[0] > 5 * x.shape[1]  # enough real tokens for 384 neurons
    got = assert_matches_reference(x, y, **options)
    assert 0 < got.distance < 1


def test_js_on_the_embedded_model(minilm_outputs):
    output, mask = minilm_outputs
    p, q = output.attentions[1], output.attentions[4]
    got = attention_js_per_example(p, q, mask)
    np.testing.assert_allclose(got.numpy(), ref_js_per_example(p.numpy(), q.numpy(), mask.numpy()), rtol=0, atol=1e-9)


def test_a_model_shared_by_comparisons_streams_its_own_sums_once_with_the_same_values():
    gen = torch.Generator().manual_seed(0)
    batches = [[torch.randn(50, 8, generator=gen, dtype=torch.float32) + 100 for _ in range(3)] for _ in range(2)]
    shared = [CrossMoments(), CrossMoments()]
    alone = [CrossMoments(), CrossMoments()]
    for p, q, r in batches:
        pp, qq, rr = Datapoints(p), Datapoints(q), Datapoints(r)
        shared[0].add(pp, qq)
        shared[1].add(pp, rr)
        alone[0].update(p, q)
        alone[1].update(p, r)
    assert shared[0]._sxx is shared[1]._sxx  # p's X^T X computed once for both comparisons
    for s, a in zip(shared, alone):
        for mine, theirs in zip(s.covariances(), a.covariances()):
            assert torch.equal(mine, theirs)


def test_attention_js_from_each_models_row_terms_equals_the_direct_value():
    gen = torch.Generator().manual_seed(1)
    p, q = (torch.softmax(torch.randn(3, 2, 5, 5, generator=gen), dim=-1) for _ in range(2))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    direct = attention_js_per_example(p, q, mask)
    rows = attention_js_per_example(p, q, mask, plogp=(attention_row_plogp(p, mask), attention_row_plogp(q, mask)))
    assert torch.equal(direct, rows)
    assert torch.equal(attention_js_per_example(p, p, mask), torch.zeros(3, 2, dtype=torch.float64))
