"""linear_probe and mdl_probe against a direct scikit-learn computation on the same vectors and splits."""
from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import probekit
from probekit.data.batching import make_batches
from probekit.data.example import Example, label_names, tag_names
from probekit.metrics.probing import online_codelength
from probekit.plugins.linear_probe import LinearProbe
from probekit.plugins.mdl_probe import MDLProbe
from probekit.testing.contract import check_metric
from probekit.testing.fixtures import WORDS, run_metric, tiny_model_pair, tiny_tokenizer

NOUNS = {"cat", "dog", "bird", "fish", "horse", "mouse", "man", "woman", "child", "teacher", "farmer"}
ADJECTIVES = {"big", "small", "red", "green", "old", "new", "quick", "slow", "happy", "sad"}


def _examples(n=160, seed=0, label_of=None):
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        words = tuple(rng.choice(WORDS) for _ in range(rng.randint(4, 9)))
        label = label_of(words) if label_of else ("pos" if {"happy", "big", "new", "cat", "ran", "park"} & set(words) else "neg")
        tags = tuple("N" if w in NOUNS else "A" if w in ADJECTIVES else "O" for w in words)
        examples.append(Example(" ".join(words), None, label, words=words, word_tags=tags))
    return examples


@pytest.fixture(scope="module")
def setting():
    tokenizer = tiny_tokenizer()
    examples = _examples()
    batches = list(make_batches(examples, tokenizer, batch_size=32, max_length=64, labels=label_names(examples),
                                tags=tag_names(examples)))
    return (*tiny_model_pair(tokenizer=tokenizer), batches)


def _held_out(batch, seed=0, fraction=0.3):
    """The documented split: a blake2b hash of an example's real token ids keyed by split_seed, below the fraction."""
    held = []
    for ids, mask in zip(batch.input_ids.tolist(), batch.attention_mask.tolist()):
        real = np.asarray([i for i, m in zip(ids, mask) if m], dtype=np.int64).tobytes()
        digest = hashlib.blake2b(real, digest_size=8, key=str(seed).encode()).digest()
        held.append(int.from_bytes(digest, "little") / 2**64 < fraction)
    return held


def _direct_sentence_data(model, batches):
    vectors, labels, held = [], [], []
    with torch.no_grad():
        for batch in batches:
            hidden = model.encoder(**batch.model_inputs(), output_hidden_states=True).hidden_states
            mask = batch.attention_mask.unsqueeze(-1).double()
            vectors.append([((h.double() * mask).sum(1) / mask.sum(1)).numpy() for h in hidden])
            labels += batch.labels.tolist()
            held += _held_out(batch)
    layers = [np.concatenate([v[layer] for v in vectors]) for layer in range(len(vectors[0]))]
    return layers, np.array(labels), np.array(held)


def _direct_score(x, y, held, c=1.0):
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000)).fit(x[~held], y[~held])
    return float(np.mean(probe.predict(x[held]) == y[held]))


def test_sentence_probe_agrees_with_a_direct_computation(setting):
    a, b, batches = setting
    rows = run_metric(LinearProbe, a, b, batches, c=1.0, intervals=50)
    xs_a, y, held = _direct_sentence_data(a, batches)
    xs_b, _, _ = _direct_sentence_data(b, batches)
    control = y[np.random.default_rng(0).permutation(len(y))]  # seed 0: labels shuffled across examples
    assert [r.layer for r in rows] == [0, 1, 2] and 20 < held.sum() < 70
    for row in rows:
        score_a, score_b = _direct_score(xs_a[row.layer], y, held), _direct_score(xs_b[row.layer], y, held)
        control_a = _direct_score(xs_a[row.layer], control, held)
        assert row.details["score_a"] == pytest.approx(score_a, abs=1e-12)
        assert row.details["score_b"] == pytest.approx(score_b, abs=1e-12)
        assert row.details["control_a"] == pytest.approx(control_a, abs=1e-12)
        assert row.details["selectivity_a"] == pytest.approx(score_a - control_a, abs=1e-12)
        assert row.value == pytest.approx(score_b - score_a, abs=1e-12)
        majority = max(np.mean(y[held] == label) for label in np.unique(y))
        assert row.details["majority"] == pytest.approx(majority) and row.details["n_test"] == held.sum()
        assert row.n_examples == row.n_tokens == len(y)
        assert row.details["score_a_low"] <= score_a <= row.details["score_a_high"]
        assert row.details["value_low"] <= row.value <= row.details["value_high"]
    assert max(r.details["score_a"] for r in rows) > majority + 0.05  # the probe learned something


def test_word_probe_takes_each_words_token_and_control_labels_per_type(setting):
    a, b, batches = setting
    (row, *_) = run_metric(LinearProbe, a, b, batches, labels="word", c=1.0, intervals=0)
    # The tiny tokenizer gives each word one token, so a word's vector is the hidden state at its position.
    x, y, types, held = [], [], [], []
    with torch.no_grad():
        for batch in batches:
            hidden = a.encoder(**batch.model_inputs(), output_hidden_states=True).hidden_states[0].double()
            example_held = _held_out(batch)
            for row_index in range(batch.size):
                n = int((batch.word_tags[row_index] >= 0).sum())
                x.append(hidden[row_index, 1:n + 1].numpy())  # after [CLS]
                y += batch.word_tags[row_index, :n].tolist()
                types += batch.word_types[row_index, :n].tolist()
                held += [example_held[row_index]] * n
    x, y, held = np.concatenate(x), np.array(y), np.array(held)
    assert row.details["score_a"] == pytest.approx(_direct_score(x, y, held), abs=1e-12)
    assert row.details["n_test"] == held.sum() and row.details["n_train"] == (~held).sum() and row.n_tokens == len(y)
    assert row.details["score_a"] > 0.85  # the embeddings tell nouns, adjectives and others apart
    assert row.details["selectivity_a"] > 0.05


def test_mdl_probe_agrees_with_the_online_code_of_the_same_vectors(setting):
    a, b, batches = setting
    rows = run_metric(MDLProbe, a, b, batches, c=1.0, seed=3)
    xs_a, y, held = _direct_sentence_data(a, batches)
    order = np.random.default_rng(3).permutation(int((~held).sum()))
    for row in rows:
        direct = online_codelength(xs_a[row.layer][~held][order], y[~held][order], 2, c=1.0)
        assert row.details["bits_a"] == pytest.approx(direct.bits, rel=1e-12)
        assert row.details["compression_a"] == pytest.approx(direct.compression, rel=1e-12)
        assert row.details["uniform_bits"] == pytest.approx((~held).sum())  # log2(2) = 1 bit per label
    assert rows[0].value == pytest.approx(rows[0].details["compression_b"] - rows[0].details["compression_a"])


def _fed(label_of, **options):
    tokenizer = tiny_tokenizer()
    examples = _examples(label_of=label_of)
    batches = list(make_batches(examples, tokenizer, batch_size=32, max_length=64, labels=label_names(examples)))
    return run_metric(LinearProbe, *tiny_model_pair(tokenizer=tokenizer), batches, c=1.0, **options)


def test_one_label_is_refused():
    with pytest.raises(probekit.MetricError, match="the data has one label: a probe needs at least two classes"):
        _fed(lambda words: "pos")


def test_held_out_labels_never_trained_on_are_refused():
    tokenizer = tiny_tokenizer()
    examples = _examples()
    (batch,) = make_batches(examples, tokenizer, batch_size=len(examples), max_length=64)
    first_held = _held_out(batch).index(True)  # the only example of its label, and it is held out
    rare = lambda words: "rare" if " ".join(words) == examples[first_held].text else "pos" if "dog" in words else "neg"  # noqa: E731
    with pytest.raises(probekit.MetricError, match=r"held-out labels that probe training never saw: label ids \[2\] "
                                                   r"\(1 held-out datapoints.*lower test_fraction"):
        _fed(rare)


def test_word_labels_of_sentence_level_data_are_refused():
    with pytest.raises(probekit.MetricError, match="labels = 'word' needs token-level data.*word_tags = true"):
        _fed(None, labels="word")


def test_non_convergence_warns_with_the_layer():
    with pytest.warns(UserWarning, match="layer 0: the probe of model a did not converge in max_iter = 1"):
        _fed(None, max_iter=1, intervals=0)


@pytest.mark.slow  # a minute: every contract check trains probes on several runs
@pytest.mark.parametrize("metric", [LinearProbe, MDLProbe])
def test_probes_keep_the_metric_contract(metric):
    check_metric(metric, {"c": 1.0})
