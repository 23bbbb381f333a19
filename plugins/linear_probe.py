"""linear_probe: what each layer encodes about a label, in model a and in model b, with control tasks.

Per layer and model, a multinomial logistic regression (``probekit.metrics.probing``) is
trained on the layer's vectors of the probe-train examples and scored (accuracy, or
macro-F1 with ``score = "macro_f1"``) on the held-out ones; the value is b's score minus
a's (``value = "selectivity"``: b's selectivity minus a's; ``of = "a"`` or ``"b"``: that
model's own score or selectivity). Beside each score: the control
task's score (Hewitt & Liang 2019: a random label per word type, or labels shuffled
across sentences), selectivity = score - control score, and the majority-class rate of
the held-out labels. Details carry percentile intervals over held-out examples (resampled
by sentence) for each model's score and selectivity and for the value, and the spread of
the value over the probe ``seeds`` (cross-validation folds and control labels).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np

import probekit
from probekit import LabelledVectors, LayerData, ProbeOptions
from probekit.functional import (
    bootstrap_indices, choose_c, control_by_type, majority_share, percentile_interval, score, shuffled,
    train_and_predict,
)

SIDES = ("a", "b")
#: The measures each model gets, as detail names: ``<measure>_<side>``.
MEASURES = ("score", "control", "selectivity")


@dataclass(frozen=True)
class Options(ProbeOptions):
    score: Literal["accuracy", "macro_f1"] = "accuracy"
    value: Literal["score", "selectivity"] = "score"
    of: Literal["difference", "a", "b"] = "difference"  # the value: b's minus a's, or one model's own
    seeds: tuple[int, ...] = (0,)  # probe seeds: cross-validation folds and control labels; the first gives the rows
    intervals: int = 200  # held-out bootstrap replicates behind the details' intervals (0: none)
    confidence: float = 0.95

    def __post_init__(self):
        super().__post_init__()
        if not self.seeds:
            raise ValueError("seeds = [] names no probe seed; give at least one, e.g. [0, 1, 2]")
        if self.intervals < 0:
            raise ValueError(f"intervals = {self.intervals} is not a number of bootstrap replicates (0: none)")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence = {self.confidence} is not a level in (0, 1)")


@dataclass(frozen=True)
class Trained:
    """One model's probe and control probe on one layer with one seed: held-out labels and predictions."""

    y: np.ndarray
    predicted: np.ndarray
    control_y: np.ndarray
    control_predicted: np.ndarray
    c: float
    converged: bool


class LinearProbe(LabelledVectors):
    name = "linear_probe"
    description = "linear probe per layer (logistic regression): b's held-out score minus a's, with control tasks"
    unit = "score b - a"
    direction = "distance"
    estimator = "probes trained once on the probe-train split; resampled over held-out examples"
    details = {
        **{f"{measure}_{side}": float for measure in MEASURES for side in SIDES},
        **{f"{measure}_{side}_{end}": float for measure in MEASURES[::2] for side in SIDES for end in ("low", "high")},
        "value_low": float, "value_high": float, "majority": float, "c_a": float, "c_b": float,
        "seed_sd": float, "n_seeds": int, "n_train": int, "n_test": int, "words_cut": int, "labels": str,
    }
    Options = Options

    @classmethod
    def unit_of(cls, options: Options) -> str:
        measure = options.score if options.value == "score" else "selectivity"
        return f"{measure} b - a" if options.of == "difference" else f"{measure} of {options.of}"

    def rows_of(self, drawn: np.ndarray, replicate: bool) -> list[probekit.Row]:
        rows = []
        for layer in range(self.context.num_layers + 1):
            data = self.layer_data(layer, drawn)
            if layer == 0:
                check_labels(data)
            rows.append(self._row(layer, data, replicate))
        return rows

    def _row(self, layer: int, data: LayerData, replicate: bool) -> probekit.Row:
        trained = {seed: {side: self._trained(layer, side, seed, data) for side in SIDES} for seed in self.options.seeds}
        first = trained[self.options.seeds[0]]
        weights = data.weights[data.held_out]
        measures = self._measures(first, weights)
        value = self._value(measures)
        n_test = int(weights.sum())
        if replicate:
            return probekit.Row(layer, value, n_examples=self.n_examples)
        for side in SIDES:
            if not first[side].converged:
                warnings.warn(f"layer {layer}: the probe of model {side} did not converge in max_iter = "
                              f"{self.options.max_iter} L-BFGS iterations, so its score may be off; raise "
                              "max_iter or lower c", stacklevel=1)
        seed_values = [self._value(self._measures(by_side, weights)) for by_side in trained.values()]
        details = {**measures, **self._intervals(first, data), "majority": majority_share(first["a"].y) or 0.0,
                   "c_a": first["a"].c, "c_b": first["b"].c, "n_seeds": len(seed_values),
                   "seed_sd": float(np.std(seed_values, ddof=1)) if len(seed_values) > 1 else 0.0,
                   "n_train": int((~data.held_out).sum()), "n_test": n_test, "words_cut": self.words_cut,
                   "labels": self.options.labels}
        return probekit.Row(layer, value, n_examples=self.n_examples, n_tokens=len(data.y), details=details)

    def _trained(self, layer: int, side: str, seed: int, data: LayerData) -> Trained:
        key = (layer, side, seed)
        if key not in self.trained:
            self.trained[key] = train_probes(data.x_a if side == "a" else data.x_b, data, seed, self.options)
        return self.trained[key]

    def _measures(self, by_side: dict[str, Trained], weights: np.ndarray) -> dict[str, float]:
        measures = {}
        for side, t in by_side.items():
            measures[f"score_{side}"] = score(t.y, t.predicted, self.options.score, weights)
            measures[f"control_{side}"] = score(t.control_y, t.control_predicted, self.options.score, weights)
            measures[f"selectivity_{side}"] = measures[f"score_{side}"] - measures[f"control_{side}"]
        return measures

    def _value(self, measures: dict[str, float]) -> float:
        if self.options.of != "difference":
            return measures[f"{self.options.value}_{self.options.of}"]
        return measures[f"{self.options.value}_b"] - measures[f"{self.options.value}_a"]

    def _intervals(self, by_side: dict[str, Trained], data: LayerData) -> dict[str, float]:
        """Percentile intervals of the scores, selectivities and value over held-out examples resampled by sentence."""
        if not self.options.intervals:
            return {}
        draws: dict[str, list[float]] = {}
        for index in bootstrap_indices(data.examples[data.held_out], self.options.intervals, self.options.seeds[0]):
            resampled = {side: Trained(t.y[index], t.predicted[index], t.control_y[index], t.control_predicted[index],
                                       t.c, t.converged) for side, t in by_side.items()}
            measures = self._measures(resampled, None)
            measures["value"] = self._value(measures)
            for name, number in measures.items():
                draws.setdefault(name, []).append(number)
        ends = {}
        for name in [f"{m}_{side}" for m in MEASURES[::2] for side in SIDES] + ["value"]:
            ends[f"{name}_low"], ends[f"{name}_high"] = percentile_interval(draws[name], self.options.confidence)
        return ends


def train_probes(x: np.ndarray, data: LayerData, seed: int, options: Options) -> Trained:
    """The probe and the control probe (the same ``C``) of one model's vectors ``x``, scored on the held-out split."""
    train, test = ~data.held_out, data.held_out
    c = options.c if options.c is not None else choose_c(x[train], data.y[train], seed=seed, max_iter=options.max_iter,
                                                         kind=options.score)
    real = train_and_predict(x[train], data.y[train], x[test], c=c, max_iter=options.max_iter)
    control_y = control_by_type(data.types, data.y, seed) if options.labels == "word" else shuffled(data.y, seed)
    control = train_and_predict(x[train], control_y[train], x[test], c=c, max_iter=options.max_iter)
    return Trained(data.y[test], real.predictions, control_y[test], control.predictions, c,
                   real.converged and control.converged)


def check_labels(data: LayerData) -> None:
    """MetricError (bad input) for data a probe cannot learn from: one label, or held-out labels never trained on."""
    train_labels = set(np.unique(data.y[~data.held_out]).tolist())
    if len(set(np.unique(data.y).tolist())) < 2:
        raise probekit.MetricError("the data has one label: a probe needs at least two classes to tell apart; "
                                   "probe data with several labels")
    if not data.held_out.any() or data.held_out.all():
        raise probekit.MetricError(f"the split left {'no' if not data.held_out.any() else 'only'} held-out examples; "
                                   "use more examples or another test_fraction")
    unseen = sorted(set(np.unique(data.y[data.held_out]).tolist()) - train_labels)
    if unseen:
        count = int(np.isin(data.y[data.held_out], unseen).sum())
        raise probekit.MetricError(
            f"held-out labels that probe training never saw: label ids {unseen} ({count} held-out datapoints; ids "
            "number the data's sorted distinct labels); use more data, a lower test_fraction or another split_seed")


@probekit.hookimpl
def probekit_register_metrics(register):
    register(LinearProbe)
