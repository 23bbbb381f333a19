"""Probing classifiers on plain arrays: linear probes, control tasks, online-code MDL, intervals.

A probe is a multinomial logistic regression (L2-regularised, features standardised with
the probe-training examples' mean and deviation) trained on one layer's vectors of the
probe-training examples and scored on held-out ones. It is scikit-learn's
``LogisticRegression`` with the L-BFGS solver: a well-kept, exactly specified estimator
whose optimum does not depend on a learning rate or a step budget, which a direct
computation in a test (or a reader's notebook) reproduces to the last digit. Probe sizes
here (thousands of vectors of a few hundred dimensions) train in well under a second on
a CPU, so a GPU solver would save nothing at this scale.

Control tasks follow Hewitt & Liang (2019): for token labels, each word type gets a
random label drawn from the empirical label distribution, fixed by the seed; for
sentence labels, the labels are shuffled across examples. Selectivity is accuracy minus
control accuracy. The minimum description length follows Voita & Titov (2020): the online
code over :data:`MDL_PORTIONS` of the (shuffled) probe-training examples.
"""
from __future__ import annotations

import hashlib
import math
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

#: The inverse regularisation strengths (scikit-learn's ``C``) cross-validation chooses among.
C_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)

#: Voita & Titov's portions of the training data: the online code trains on the first
#: portion i and codes the examples up to portion i + 1; the first block is sent uniformly.
MDL_PORTIONS: tuple[float, ...] = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.0625, 0.125, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class ProbeResult:
    """A probe's predictions on the held-out vectors, the ``C`` it used and whether L-BFGS converged."""

    predictions: np.ndarray
    c: float
    converged: bool


def majority_share(labels: Sequence[Hashable] | np.ndarray) -> float | None:
    """The fraction of ``labels`` equal to their most common value (None when there are none).

    The majority-class rule of the whole package: the fine-tune report scores a model's
    validation accuracy against it, the probes their held-out accuracy.
    """
    if len(labels) == 0:
        return None
    _, counts = np.unique(np.asarray(labels, dtype=object).astype(str), return_counts=True)
    return float(counts.max() / len(labels))


def score(y_true: np.ndarray, y_pred: np.ndarray, kind: str = "accuracy",
          weights: np.ndarray | None = None) -> float:
    """``"accuracy"`` or ``"macro_f1"`` (unweighted mean of the classes' F1 over the classes in y_true),
    each datapoint counted ``weights`` times (a bootstrap replicate's weights)."""
    if kind == "macro_f1":
        present = np.unique(y_true if weights is None else y_true[weights > 0])
        return float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0,
                              sample_weight=weights))
    return float(np.average(y_true == y_pred, weights=weights))


def _classifier(c: float, max_iter: int) -> LogisticRegression:
    return LogisticRegression(C=c, max_iter=max_iter)  # scikit-learn's tolerance (1e-4) and L-BFGS


def _standardised(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Float64 copies standardised by the training rows' mean and deviation (a constant feature kept as is)."""
    train = train.astype(np.float64)
    mean, scale = train.mean(axis=0), train.std(axis=0)
    scale[scale == 0] = 1.0
    return [(x.astype(np.float64) - mean) / scale for x in (train, *others)]


def _fit(x: np.ndarray, y: np.ndarray, c: float, max_iter: int) -> tuple[LogisticRegression, bool]:
    # One BLAS thread: a probe's matrices are small, and threads that wait on each other cost more than they
    # save (a 1440 x 32 fit took 18x longer with two threads than with one on a loaded 2-core machine).
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(1):
        warnings.simplefilter("always", ConvergenceWarning)
        model = _classifier(c, max_iter).fit(x, y)
    return model, not any(issubclass(w.category, ConvergenceWarning) for w in caught)


class _Memo:
    """Results by a digest of their inputs' content, the most recent ``size`` kept.

    Two metric configurations of one run that differ only in what they report (``linear_probe``'s
    ``value`` or ``of``) train the same probes on the same vectors: each is trained once.
    """

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self.results: OrderedDict[str, Any] = OrderedDict()

    def get(self, parts: tuple, compute: Callable[[], Any]) -> Any:
        digest = hashlib.sha256()
        for part in parts:
            digest.update(np.ascontiguousarray(part).tobytes() if isinstance(part, np.ndarray) else repr(part).encode())
        key = digest.hexdigest()
        if key not in self.results:
            self.results[key] = compute()
            while len(self.results) > self.size:
                self.results.popitem(last=False)
        self.results.move_to_end(key)
        return self.results[key]


_MEMO = _Memo()


def choose_c(x: np.ndarray, y: np.ndarray, *, seed: int, folds: int = 3, max_iter: int = 1000,
             grid: Sequence[float] = C_GRID, kind: str = "accuracy") -> float:
    """The ``C`` of ``grid`` with the best mean held-out score over stratified folds of (x, y) (the smallest on ties)."""
    return _MEMO.get(("choose_c", x, y, seed, folds, max_iter, tuple(grid), kind),
                     lambda: _choose_c(x, y, seed=seed, folds=folds, max_iter=max_iter, grid=grid, kind=kind))


def _choose_c(x: np.ndarray, y: np.ndarray, *, seed: int, folds: int, max_iter: int, grid: Sequence[float],
              kind: str) -> float:
    smallest_class = int(np.bincount(np.unique(y, return_inverse=True)[1]).min())
    splits = max(2, min(folds, smallest_class))
    if smallest_class < 2:
        return float(grid[len(grid) // 2])  # a class seen once cannot be both fitted and held out
    folding = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
    means = []
    for c in grid:
        scores = []
        for fit_index, held_index in folding.split(x, y):
            x_fit, x_held = _standardised(x[fit_index], x[held_index])
            model, _ = _fit(x_fit, y[fit_index], c, max_iter)
            scores.append(score(y[held_index], model.predict(x_held), kind))
        means.append(float(np.mean(scores)))
    return float(grid[int(np.argmax(means))])


def train_and_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, *, c: float,
                      max_iter: int = 1000) -> ProbeResult:
    """A probe of inverse regularisation ``c`` trained on (x_train, y_train), its predictions on x_test."""
    def train() -> ProbeResult:
        fitted, tested = _standardised(x_train, x_test)
        model, converged = _fit(fitted, y_train, c, max_iter)
        return ProbeResult(model.predict(tested), c, converged)

    return _MEMO.get(("train_and_predict", x_train, y_train, x_test, c, max_iter), train)


def control_by_type(types: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """Hewitt & Liang's control task for tokens: each word type's label drawn from the labels' distribution.

    The draw of a type depends only on (seed, type), so a type keeps its control label in
    both splits and in every run.
    """
    values, counts = np.unique(labels, return_counts=True)
    share = counts / counts.sum()
    drawn = {int(t): values[np.random.default_rng([seed, int(t)]).choice(len(values), p=share)]
             for t in np.unique(types)}
    return np.array([drawn[int(t)] for t in types], dtype=labels.dtype)


def shuffled(labels: np.ndarray, seed: int) -> np.ndarray:
    """The control task for sentences: the labels permuted across examples."""
    return labels[np.random.default_rng(seed).permutation(len(labels))]


@dataclass(frozen=True)
class OnlineCode:
    """Voita & Titov's online codelength of a labelled set (bits) beside its uniform codelength."""

    bits: float
    uniform_bits: float
    converged: bool

    @property
    def compression(self) -> float:
        return self.uniform_bits / self.bits


def online_codelength(x: np.ndarray, y: np.ndarray, n_classes: int, *, c: float, max_iter: int = 1000,
                      portions: Sequence[float] = MDL_PORTIONS) -> OnlineCode:
    """The online code of (x, y) in the given order (shuffle first): block i coded by a probe of the blocks before.

    The first block is sent with the uniform code, log2(K) bits per label. A probe trained
    on fewer than two classes codes its block uniformly too. A class the probe never saw
    would cost infinitely many bits, so each probability is mixed with the uniform one
    with weight 1 / (t + 1) for a probe of t examples: at most one bit per label on the
    smallest blocks, a vanishing share once t is in the hundreds.
    """
    n = len(y)
    ends = sorted({max(1, min(n, math.ceil(p * n))) for p in portions})
    uniform = math.log2(n_classes)
    bits, converged = ends[0] * uniform, True
    for start, stop in zip(ends, ends[1:]):
        seen = np.unique(y[:start])
        if len(seen) < 2:
            bits += (stop - start) * uniform
            continue
        fitted, coded = _standardised(x[:start], x[start:stop])
        model, fit_converged = _fit(fitted, y[:start], c, max_iter)
        converged &= fit_converged
        probabilities = np.zeros((stop - start, n_classes))
        probabilities[:, model.classes_] = model.predict_proba(coded)
        mix = 1.0 / (start + 1)
        probabilities = (1 - mix) * probabilities + mix / n_classes
        bits -= float(np.log2(probabilities[np.arange(stop - start), y[start:stop]]).sum())
    return OnlineCode(bits, n * uniform, converged)


def bootstrap_indices(groups: np.ndarray, replicates: int, seed: int) -> list[np.ndarray]:
    """``replicates`` resamples of held-out examples (all datapoints of a drawn group come together).

    ``groups`` gives each datapoint's example (a sentence's tokens share one); the
    examples are drawn with replacement, so a token probe is resampled by sentence.
    """
    rng = np.random.default_rng(seed)
    unique, members = np.unique(groups, return_inverse=True)
    order = np.argsort(members, kind="stable")
    starts = np.searchsorted(members[order], np.arange(len(unique) + 1))
    draws = []
    for _ in range(replicates):
        picked = rng.integers(0, len(unique), size=len(unique))
        draws.append(np.concatenate([order[starts[g]:starts[g + 1]] for g in picked]))
    return draws


def percentile_interval(values: Sequence[float], confidence: float) -> tuple[float, float]:
    """The central ``confidence`` share of bootstrap values (percentile interval)."""
    low, high = np.quantile(np.asarray(values, dtype=np.float64), [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)
