"""The probe math (probekit.metrics.probing) against direct scikit-learn and numpy computations."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from probekit.data.example import Example
from probekit.metrics.probing import (
    C_GRID, MDL_PORTIONS, bootstrap_indices, choose_c, control_by_type, majority_share, online_codelength, score,
    shuffled, train_and_predict,
)
from probekit.models.finetune import majority_rate


def _data(n=240, d=12, classes=3, noise=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, d)) * 2
    y = rng.integers(0, classes, n)
    return centres[y] + noise * rng.normal(size=(n, d)), y


def _direct(c):
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))


def test_train_and_predict_is_a_standardised_logistic_regression():
    x, y = _data(noise=2.5)
    result = train_and_predict(x[:160], y[:160], x[160:], c=0.3)
    expected = _direct(0.3).fit(x[:160], y[:160]).predict(x[160:])
    assert np.array_equal(result.predictions, expected) and result.converged and result.c == 0.3
    assert 0.7 < score(y[160:], result.predictions) < 1.0


def test_choose_c_is_the_best_mean_fold_score_of_the_grid():
    x, y = _data(noise=2.5)
    folds = list(StratifiedKFold(3, shuffle=True, random_state=7).split(x, y))
    means = [np.mean([_direct(c).fit(x[f], y[f]).score(x[h], y[h]) for f, h in folds]) for c in C_GRID]
    assert choose_c(x, y, seed=7) == C_GRID[int(np.argmax(means))]
    assert len(set(np.round(means, 6))) > 1  # the grid matters on this data


def test_scores_weighted_by_draws_equal_scores_of_repeated_rows():
    rng = np.random.default_rng(1)
    y, predicted = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
    weights = rng.integers(0, 3, 50)
    repeated = np.repeat(np.arange(50), weights)
    assert score(y, predicted, weights=weights) == pytest.approx(np.mean(y[repeated] == predicted[repeated]))
    direct = f1_score(y[repeated], predicted[repeated], average="macro", labels=np.unique(y[repeated]))
    assert score(y, predicted, "macro_f1", weights) == pytest.approx(direct)


def test_control_labels_are_a_function_of_word_type_and_seed():
    rng = np.random.default_rng(2)
    types = rng.integers(0, 400, 5000)
    labels = rng.choice(4, 5000, p=[0.5, 0.3, 0.15, 0.05])
    control = control_by_type(types, labels, seed=0)
    for t in np.unique(types):
        assert len(set(control[types == t].tolist())) == 1
    # Drawn from the labels' distribution: over 400 types, each class's share of types is near its share.
    per_type = np.array([control[types == t][0] for t in np.unique(types)])
    assert abs(np.mean(per_type == 0) - 0.5) < 0.08 and abs(np.mean(per_type == 1) - 0.3) < 0.08
    assert np.array_equal(control, control_by_type(types, labels, seed=0))
    assert not np.array_equal(control, control_by_type(types, labels, seed=1))
    assert np.array_equal(control[:100], control_by_type(types[:100], labels, seed=0))  # any subset, same labels


def test_sentence_control_shuffles_labels():
    labels = np.arange(100) % 3
    control = shuffled(labels, seed=4)
    assert sorted(control.tolist()) == sorted(labels.tolist()) and not np.array_equal(control, labels)


def test_majority_share_is_the_finetune_reports_rule():
    labels = ["pos", "neg", "pos", "pos", "neu"]
    assert majority_share(labels) == majority_rate([Example("t", None, label) for label in labels]) == 0.6
    assert majority_share([]) is None


def _direct_online_code(x, y, k, c):
    """Voita & Titov's online code written out: uniform first block, then each block by a probe of all before."""
    n = len(y)
    ends = sorted({max(1, min(n, math.ceil(p * n))) for p in MDL_PORTIONS})
    bits = ends[0] * math.log2(k)
    for start, stop in zip(ends, ends[1:]):
        if len(np.unique(y[:start])) < 2:
            bits += (stop - start) * math.log2(k)
            continue
        model = _direct(c).fit(x[:start], y[:start])
        p = np.zeros((stop - start, k))
        p[:, model.classes_] = model.predict_proba(x[start:stop])
        p = (1 - 1 / (start + 1)) * p + 1 / (start + 1) / k
        bits += -np.log2(p[np.arange(stop - start), y[start:stop]]).sum()
    return bits


def test_online_codelength_matches_the_direct_computation_and_compresses_learnable_labels():
    x, y = _data(n=600, noise=0.8)
    code = online_codelength(x, y, 3, c=1.0)
    assert code.bits == pytest.approx(_direct_online_code(x, y, 3, 1.0), rel=1e-9)
    assert code.uniform_bits == pytest.approx(600 * math.log2(3))
    assert code.compression > 3
    random_labels = np.random.default_rng(3).integers(0, 3, 600)
    assert online_codelength(x, random_labels, 3, c=1.0).compression < 1.05


def test_bootstrap_indices_draw_whole_groups():
    groups = np.repeat(np.arange(20), np.arange(1, 21))  # group g has g + 1 datapoints
    for index in bootstrap_indices(groups, 30, seed=0):
        drawn, counts = np.unique(groups[index], return_counts=True)
        assert all(count % (group + 1) == 0 for group, count in zip(drawn, counts))
        assert sum(counts // (drawn + 1)) == 20  # 20 groups drawn each time
