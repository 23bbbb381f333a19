"""Attention entropy and attention to special tokens (Clark et al. 2019): probekit.metrics.attention and the
attention_entropy / attention_special plugins against direct float64 loops written from the formulas."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from probekit.engine.capture import forward
from probekit.metrics.attention import attention_entropy_per_example, attention_share_per_example
from probekit.metrics.base import MetricContext, MetricError
from probekit.metrics.tensors import Batch, Capture
from probekit.plugins import attention_entropy, attention_special
from probekit.plugins.attention_entropy import AttentionEntropy
from probekit.plugins.attention_special import AttentionSpecial
from probekit.testing import check_metric
from probekit.testing.fixtures import run_metric, tiny_batches, tiny_model_pair, tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

ATTENTIONS = frozenset({"attentions"})


# ---------------------------------------------------------------- references


def ref_entropy(p, mask, query_mask=None, base=None) -> np.ndarray:
    """(batch, heads): per example and head, the mean over selected real queries of -sum_j p log p over real keys."""
    p, mask = np.asarray(p, dtype=np.float64), np.asarray(mask)
    query_mask = mask if query_mask is None else np.asarray(query_mask) * mask
    out = np.zeros(p.shape[:2])
    for b in range(p.shape[0]):
        keys, queries = np.flatnonzero(mask[b]), np.flatnonzero(query_mask[b])
        for h in range(p.shape[1]):
            rows = [-sum(p[b, h, i, j] * math.log(p[b, h, i, j]) for j in keys if p[b, h, i, j] > 0)
                    for i in queries]
            out[b, h] = sum(rows) / len(rows)
    return out / (math.log(base) if base else 1.0)


def ref_share(p, mask, key_mask, query_mask=None) -> np.ndarray:
    """(batch, heads): per example and head, the mean over selected real queries of sum_j p over the real keys
    that key_mask selects."""
    p, mask, key_mask = np.asarray(p, dtype=np.float64), np.asarray(mask), np.asarray(key_mask)
    query_mask = mask if query_mask is None else np.asarray(query_mask) * mask
    out = np.zeros(p.shape[:2])
    for b in range(p.shape[0]):
        keys = [j for j in range(p.shape[3]) if mask[b, j] and key_mask[b, j]]
        queries = np.flatnonzero(query_mask[b])
        for h in range(p.shape[1]):
            rows = [sum(p[b, h, i, j] for j in keys) for i in queries]
            out[b, h] = sum(rows) / len(rows)
    return out


# -------------------------------------------------------------------- inputs


def padded_maps(rng, batch=5, heads=3, tokens=11):
    """Right-padded attention: rows renormalised over real keys, some real keys at exactly 0, NaN on padding."""
    lengths = rng.integers(2, tokens + 1, size=batch)
    lengths[0] = tokens
    mask = (np.arange(tokens)[None, :] < lengths[:, None]).astype(np.int64)  # (batch, tokens)
    weights = rng.exponential(size=(batch, heads, tokens, tokens))  # (batch, heads, query, key)
    weights[rng.random(weights.shape) < 0.15] = 0.0
    weights[..., 0] += 0.1  # every row keeps some real mass
    weights = np.where(mask[:, None, None, :] == 1, weights, 0.0)
    p = weights / weights.sum(axis=-1, keepdims=True)
    real = (mask[:, None, :, None] == 1) & (mask[:, None, None, :] == 1)
    return np.where(real, p, np.nan), mask


def special_mask(mask: np.ndarray) -> np.ndarray:
    """1 at [CLS] (position 0) and [SEP] (each example's last real token), 0 elsewhere."""
    special = np.zeros_like(mask)
    special[:, 0] = 1
    special[np.arange(len(mask)), mask.sum(1) - 1] = 1
    return special


# ---------------------------------------------------------------- functional


@pytest.mark.parametrize("base", [None, 2.0])
def test_entropy_matches_the_direct_formula(base):
    p, mask = padded_maps(np.random.default_rng(0))
    got = attention_entropy_per_example(torch.tensor(p), torch.tensor(mask), base=base)
    assert got.dtype == torch.float64 and got.shape == (5, 3)
    np.testing.assert_allclose(got.numpy(), ref_entropy(p, mask, base=base), rtol=0, atol=1e-9)


def test_entropy_query_mask_leaves_out_special_rows():
    p, mask = padded_maps(np.random.default_rng(1))
    query_mask = 1 - special_mask(mask)
    query_mask[:, 1] = 1  # every example keeps a query row (length-2 examples are [CLS] [SEP] otherwise)
    got = attention_entropy_per_example(p, mask, query_mask=query_mask)
    want = ref_entropy(p, mask, query_mask=query_mask)
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-9)
    assert not np.allclose(want, ref_entropy(p, mask))


@pytest.mark.parametrize("keys", ["special", "random"])
def test_share_matches_the_direct_formula(keys):
    rng = np.random.default_rng(2)
    p, mask = padded_maps(rng)
    key_mask = special_mask(mask) if keys == "special" else (rng.random(mask.shape) < 0.4).astype(np.int64)
    got = attention_share_per_example(torch.tensor(p), torch.tensor(mask), torch.tensor(key_mask))
    assert got.dtype == torch.float64 and got.shape == (5, 3)
    np.testing.assert_allclose(got.numpy(), ref_share(p, mask, key_mask), rtol=0, atol=1e-9)


def test_share_query_mask_and_keys_on_padding():
    rng = np.random.default_rng(3)
    p, mask = padded_maps(rng)
    key_mask = np.ones_like(mask)  # padded keys selected too: they must still be left out
    query_mask = (rng.random(mask.shape) < 0.5).astype(np.int64)
    query_mask[:, 0] = 1
    got = attention_share_per_example(p, mask, key_mask, query_mask=query_mask)
    np.testing.assert_allclose(got.numpy(), ref_share(p, mask, key_mask, query_mask), rtol=0, atol=1e-9)
    np.testing.assert_allclose(got.numpy(), 1.0, rtol=0, atol=1e-12)  # every real key: the whole row


def test_one_hot_rows_have_entropy_zero_and_share_zero_or_one():
    tokens = 6
    mask = np.array([[1] * tokens, [1, 1, 1, 0, 0, 0]])
    p = np.zeros((2, 2, tokens, tokens))
    p[:, 0, :, 0] = 1.0  # head 0 attends to position 0
    p[0, 1, np.arange(tokens), np.arange(tokens)] = 1.0  # head 1 attends to itself
    p[1, 1, np.arange(3), np.arange(3)] = 1.0
    assert torch.equal(attention_entropy_per_example(p, mask), torch.zeros(2, 2, dtype=torch.float64))
    cls = np.zeros_like(mask)
    cls[:, 0] = 1
    share = attention_share_per_example(p, mask, cls).numpy()
    np.testing.assert_allclose(share[:, 0], 1.0, rtol=0, atol=0)
    np.testing.assert_allclose(share[:, 1], [1 / tokens, 1 / 3], rtol=0, atol=1e-15)  # only row 0 looks at 0


def test_uniform_rows_have_entropy_log_n():
    lengths = [7, 4, 1]
    mask = (np.arange(7)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    p = np.where(mask[:, None, None, :] == 1, 1.0 / mask.sum(1)[:, None, None, None], np.nan) * np.ones((3, 2, 7, 7))
    got = attention_entropy_per_example(p, mask)
    np.testing.assert_allclose(got.numpy(), np.log(lengths)[:, None] * np.ones((3, 2)), rtol=0, atol=1e-12)
    bits = attention_entropy_per_example(p, mask, base=2)
    np.testing.assert_allclose(bits.numpy(), np.log2(lengths)[:, None] * np.ones((3, 2)), rtol=0, atol=1e-12)
    two_keys = np.zeros_like(mask)
    two_keys[:, :2] = 1
    share = attention_share_per_example(p, mask, two_keys).numpy()
    np.testing.assert_allclose(share, np.array([[2 / 7], [2 / 4], [1.0]]) * np.ones((3, 2)), rtol=0, atol=1e-12)


def test_an_example_without_queries_is_an_error():
    p, mask = padded_maps(np.random.default_rng(4))
    query_mask = mask.copy()
    query_mask[2] = 0
    with pytest.raises(ValueError, match=r"examples \[2\] have no selected query tokens"):
        attention_entropy_per_example(p, mask, query_mask=query_mask)
    with pytest.raises(ValueError, match=r"examples \[2\] have no selected query tokens"):
        attention_share_per_example(p, mask, mask, query_mask=query_mask)


@pytest.mark.parametrize("value", [math.nan, math.inf, -0.1])
def test_nan_infinite_or_negative_values_on_real_tokens_are_errors(value):
    p, mask = padded_maps(np.random.default_rng(5))
    p[1, 0, 0, 1] = value  # not a special key: the share reads the whole map too
    with pytest.raises(ValueError, match="NaN, infinite or negative values on real tokens"):
        attention_entropy_per_example(p, mask)
    with pytest.raises(ValueError, match="NaN, infinite or negative values on real tokens"):
        attention_share_per_example(p, mask, special_mask(mask))
    query_mask = mask.copy()
    query_mask[1, 0] = 0  # a query row left out is not read
    attention_entropy_per_example(p, mask, query_mask=query_mask)


def test_bad_shapes_and_base_are_errors():
    p, mask = padded_maps(np.random.default_rng(6))
    with pytest.raises(ValueError, match="square attention maps"):
        attention_entropy_per_example(p[..., :-1], mask)
    with pytest.raises(ValueError, match=r"attention_mask must be \(batch, tokens\) = \(5, 11\)"):
        attention_entropy_per_example(p, mask[:, :-1])
    with pytest.raises(ValueError, match="key_mask must have the shape of attention_mask"):
        attention_share_per_example(p, mask, mask[:-1])
    with pytest.raises(ValueError, match="query_mask must have the shape of attention_mask"):
        attention_entropy_per_example(p, mask, query_mask=mask[:, :3])
    with pytest.raises(ValueError, match="base must be positive and not 1; got 1"):
        attention_entropy_per_example(p, mask, base=1)


# ------------------------------------------------------------ model captures


@pytest.fixture(scope="module")
def models():
    tokenizer = tiny_tokenizer()
    a, b = tiny_model_pair(0, 1, tokenizer=tokenizer)
    a.encoder.double(), b.encoder.double()  # float64 forwards: the same values whatever the padding
    return a, b


@pytest.fixture(scope="module")
def captured(models):
    """(capture a, capture b, batch) per batch of 60 examples in batches of 16 (pairs: two [SEP])."""
    a, b = models
    with torch.inference_mode():
        return [(forward(a.encoder, batch, ATTENTIONS), forward(b.encoder, batch, ATTENTIONS), batch)
                for batch in tiny_batches(a.tokenizer, n_examples=60, batch_size=16, pairs=True)]


def test_the_functions_match_the_direct_formula_on_model_attention(captured):
    for capture, _, batch in captured:
        mask, special = batch.attention_mask.numpy(), batch.special_tokens_mask.numpy()
        for p in capture.attentions:
            np.testing.assert_allclose(attention_entropy_per_example(p, mask).numpy(),
                                       ref_entropy(p.numpy(), mask), rtol=0, atol=1e-9)
            np.testing.assert_allclose(attention_share_per_example(p, mask, special).numpy(),
                                       ref_share(p.numpy(), mask, special), rtol=0, atol=1e-9)


def reference_means(captured, statistic) -> np.ndarray:
    """(model, layer - 1, heads): the mean over every example of ``statistic(p, batch)``, a (batch, heads) array."""
    num_layers = len(captured[0][0].attentions)
    per_example = [[np.concatenate([statistic(item[side].attentions[index].numpy(), item[2]) for item in captured])
                    for index in range(num_layers)] for side in (0, 1)]
    return np.array([[layer.mean(axis=0) for layer in side] for side in per_example])


def feed(metric_cls, models, captured, **options):
    """A metric instance fed the captured batches (not finalized)."""
    a, b = models
    context = MetricContext("a_vs_b", a, b, a.num_layers, torch.device("cpu"))
    metric = metric_cls(metric_cls.Options(**options), context)
    for capture_a, capture_b, batch in captured:
        metric.update(capture_a, capture_b, batch)
    return metric


def assert_rows_match(rows, means, names):
    """Head rows: b - a and both sides; layer rows: their means over heads."""
    assert len(rows) == means.shape[1] * (means.shape[2] + 1)
    for row in rows:
        a, b = means[:, row.layer - 1].mean(-1) if row.head is None else means[:, row.layer - 1, row.head]
        assert row.value == pytest.approx(b - a, abs=1e-9)
        assert row.details[names[0]] == pytest.approx(a, abs=1e-9)
        assert row.details[names[1]] == pytest.approx(b, abs=1e-9)


def entropy_queries(batch, exclude_special: bool) -> np.ndarray:
    """(batch, tokens): the query rows attention_entropy averages."""
    mask = batch.attention_mask.numpy()
    return mask * (1 - batch.special_tokens_mask.numpy()) if exclude_special else mask


@pytest.mark.parametrize("options", [{}, {"base": 2.0}, {"exclude_special": True}])
def test_attention_entropy_matches_the_direct_formula(models, captured, options):
    exclude, base = options.get("exclude_special", False), options.get("base")
    means = reference_means(captured, lambda p, batch: ref_entropy(p, batch.attention_mask.numpy(),
                                                                   entropy_queries(batch, exclude), base=base))
    rows = feed(AttentionEntropy, models, captured, **options).finalize()
    assert_rows_match(rows, means, ("entropy_a", "entropy_b"))
    queries = sum(int(entropy_queries(batch, exclude).sum()) for *_, batch in captured)
    assert {(row.n_examples, row.n_tokens) for row in rows} == {(60, queries)}


def key_masks(batch) -> dict[str, np.ndarray]:
    special = batch.special_tokens_mask.numpy() * batch.attention_mask.numpy()
    first = np.zeros_like(special)
    first[:, 0] = 1
    return {"special": special, "cls": first, "sep": special * (1 - first)}


@pytest.mark.parametrize("keys", ["special", "cls", "sep"])
def test_attention_special_matches_the_direct_formula(models, captured, keys):
    means = reference_means(captured, lambda p, batch: ref_share(p, batch.attention_mask.numpy(),
                                                                 key_masks(batch)[keys]))
    rows = feed(AttentionSpecial, models, captured, keys=keys).finalize()
    assert_rows_match(rows, means, ("share_a", "share_b"))
    queries = sum(int(batch.attention_mask.sum()) for *_, batch in captured)
    assert {(row.n_examples, row.n_tokens) for row in rows} == {(60, queries)}


def test_the_shares_of_cls_and_sep_make_up_the_special_share(models, captured):
    share = {keys: feed(AttentionSpecial, models, captured, keys=keys).finalize()
             for keys in ("special", "cls", "sep")}
    for special, cls, sep in zip(share["special"], share["cls"], share["sep"]):
        assert special.details["share_a"] == pytest.approx(cls.details["share_a"] + sep.details["share_a"], abs=1e-12)
        assert special.value == pytest.approx(cls.value + sep.value, abs=1e-12)


@pytest.mark.parametrize("metric_cls", [AttentionEntropy, AttentionSpecial])
def test_a_model_against_itself_changes_by_exactly_zero(models, metric_cls):
    a, _ = models
    rows = run_metric(metric_cls, a, a, tiny_batches(a.tokenizer, n_examples=20, batch_size=8, pairs=True))
    side_a, side_b = metric_cls.details
    assert rows and all(row.value == 0.0 and row.details[side_a] == row.details[side_b] for row in rows)


def assert_same_rows(rows, reference_rows):
    """The same layers, heads and counts; values and details to 1e-12."""
    for row, reference in zip(rows, reference_rows, strict=True):
        assert (row.layer, row.head, row.n_examples, row.n_tokens) == (reference.layer, reference.head,
                                                                       reference.n_examples, reference.n_tokens)
        assert row.value == pytest.approx(reference.value, abs=1e-12)
        assert row.details == pytest.approx(reference.details, abs=1e-12)


@pytest.mark.parametrize("metric_cls", [AttentionEntropy, AttentionSpecial])
def test_values_do_not_depend_on_the_batch_size(models, metric_cls):
    a, b = models
    first, *others = [run_metric(metric_cls, a, b, tiny_batches(a.tokenizer, n_examples=30, batch_size=size))
                      for size in (30, 4, 7)]
    for rows in others:
        assert_same_rows(rows, first)


@pytest.mark.parametrize(("metric_cls", "options"), [(AttentionEntropy, {"exclude_special": True}),
                                                     (AttentionSpecial, {"keys": "sep"})])
def test_pooled_parts_equal_the_examples_repeated(models, captured, metric_cls, options):
    parts = [feed(metric_cls, models, captured[i : i + 1], **options) for i in range(len(captured))]
    weights = [2, 0, 1, 3]
    repeated = [item for item, w in zip(captured, weights) for _ in range(w)]
    want = feed(metric_cls, models, repeated, **options).finalize()
    got = metric_cls.pooled(parts, weights).finalize()
    assert_same_rows(got, want)
    assert parts[0].finalize() == feed(metric_cls, models, captured[:1], **options).finalize()  # parts unchanged


@pytest.mark.parametrize("metric_cls", [AttentionEntropy, AttentionSpecial])
def test_groups_dealt_within_batches_pool_to_the_whole_run(models, captured, metric_cls):
    # What the bootstrap does: each group sees its examples of every batch, with the batch's padding.
    groups = 3
    dealt = [[(a.select(index), b.select(index), batch.select(index))
              for a, b, batch in captured if len(index := torch.arange(group, batch.size, groups))]
             for group in range(groups)]
    parts = [feed(metric_cls, models, items) for items in dealt]
    assert_same_rows(metric_cls.pooled(parts, [1] * groups).finalize(), feed(metric_cls, models, captured).finalize())


# ------------------------------------------------------------------ contract


@pytest.mark.parametrize("options", [None, {"base": 2.0, "exclude_special": True}])
def test_attention_entropy_keeps_the_metric_contract(options):
    check_metric(AttentionEntropy, options)


@pytest.mark.parametrize("keys", ["special", "cls", "sep"])
def test_attention_special_keeps_the_metric_contract(keys):
    check_metric(AttentionSpecial, {"keys": keys})


def test_each_plugin_registers_its_metric():
    for module, metric_cls in ((attention_entropy, AttentionEntropy), (attention_special, AttentionSpecial)):
        registered = []
        module.probekit_register_metrics(registered.append)
        assert registered == [metric_cls]


def test_units():
    assert AttentionEntropy.unit_of(AttentionEntropy.Options()) == "nats"
    assert AttentionEntropy.unit_of(AttentionEntropy.Options(base=2.0)) == "bits"
    assert AttentionSpecial.unit_of(AttentionSpecial.Options()) == "share"


# -------------------------------------------------------------------- errors


def text_batch(tokenizer, texts, **changes) -> Batch:
    encoded = tokenizer(texts, padding=True, return_special_tokens_mask=True, return_tensors="pt")
    tensors = {name: encoded[name] for name in ("input_ids", "attention_mask", "special_tokens_mask")}
    return Batch(**{**tensors, **changes})


def update(metric_cls, models, batch, **options):
    a, b = models
    metric = feed(metric_cls, models, [], **options)
    with torch.inference_mode():
        metric.update(forward(a.encoder, batch, ATTENTIONS), forward(b.encoder, batch, ATTENTIONS), batch)


def test_exclude_special_on_an_example_of_special_tokens_only_says_what_to_change(models):
    batch = text_batch(models[0].tokenizer, ["the cat sat", ""])  # the second is [CLS] [SEP]
    update(AttentionEntropy, models, batch)  # every real query counts by default
    with pytest.raises(MetricError, match=r"examples \[1\] have no selected query tokens.*set it to false"):
        update(AttentionEntropy, models, batch, exclude_special=True)


@pytest.mark.parametrize("metric_cls", [AttentionEntropy, AttentionSpecial])
def test_nan_attention_is_a_metric_error(models, metric_cls):
    batch = text_batch(models[0].tokenizer, ["the cat sat", "a dog"])
    maps = torch.full((2, 2, 5, 5), 0.2, dtype=torch.float64)  # (batch, heads, query, key)
    broken = maps.clone()
    broken[0, 1, 2, 3] = math.nan
    metric = feed(metric_cls, models, [])
    with pytest.raises(MetricError, match="NaN, infinite or negative values on real tokens"):
        metric.update(Capture(None, (maps, maps)), Capture(None, (maps, broken)), batch)


@pytest.mark.parametrize(("keys", "special", "advice"), [
    ("special", [[0] * 5, [0] * 5], 'set keys = "cls"'),
    ("sep", [[1, 0, 0, 0, 0], [1, 0, 0, 0, 0]], 'set keys = "special" or "cls"'),
    ("sep", [[1, 0, 0, 0, 1], [1, 0, 0, 0, 0]], 'set keys = "special" or "cls"'),
])
def test_examples_without_the_keys_say_which_option_to_change(models, keys, special, advice):
    batch = text_batch(models[0].tokenizer, ["the cat sat", "a dog"], special_tokens_mask=torch.tensor(special))
    expected = rf"keys = '{keys}': examples \[(0, )?1\] of the batch have no such key.*{advice}"
    with pytest.raises(MetricError, match=expected):
        update(AttentionSpecial, models, batch, keys=keys)


def test_cls_under_left_padding_is_a_metric_error(models):
    batch = text_batch(models[0].tokenizer, ["the cat sat", "a dog"])
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    left = Batch(batch.input_ids, mask, batch.special_tokens_mask)
    with pytest.raises(MetricError, match=r"keys = 'cls': examples \[1\] .*position 0 is padding"):
        update(AttentionSpecial, models, left, keys="cls")


def test_a_base_that_is_not_a_logarithm_base_is_refused():
    with pytest.raises(ValueError, match="base = 1.0 is not a logarithm base"):
        AttentionEntropy.Options(base=1.0)
