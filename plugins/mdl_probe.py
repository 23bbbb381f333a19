"""mdl_probe: how easily each layer's label information is extracted (Voita & Titov 2020, online code).

Per layer and model, the probe-train examples (shuffled by ``seed``) are sent with the
online code over the standard portions (0.1 % ... 100 %, ``probekit.metrics.probing``):
each block coded by a logistic-regression probe trained on the blocks before it. Rows
carry each model's codelength in bits, the uniform codelength (log2 K bits per label)
and the compression, uniform / online; the value is b's compression minus a's (or, with
``value = "bits"``, b's codelength minus a's). The probe's ``C`` is ``c`` or chosen by
cross-validation on the probe-train examples, as for ``linear_probe``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np

import probekit
from probekit import LabelledVectors, ProbeOptions
from probekit.functional import OnlineCode, choose_c, online_codelength


@dataclass(frozen=True)
class Options(ProbeOptions):
    value: Literal["compression", "bits"] = "compression"
    seed: int = 0  # the order the examples are sent in, and the cross-validation folds


class MDLProbe(LabelledVectors):
    name = "mdl_probe"
    description = "online-code MDL of a linear probe per layer (Voita & Titov): b's compression minus a's"
    unit = "compression b - a"
    direction = "distance"
    estimator = "online code over 0.1-100 % portions of the probe-train examples"
    details = {"bits_a": float, "bits_b": float, "uniform_bits": float, "compression_a": float,
               "compression_b": float, "c_a": float, "c_b": float, "n_train": int, "n_classes": int,
               "labels": str}
    Options = Options
    # The code is of the probe-train examples, sent once: resampling held-out examples would not move it.
    resampling = None

    @classmethod
    def unit_of(cls, options: Options) -> str:
        return "compression b - a" if options.value == "compression" else "bits b - a"

    def rows_of(self, drawn: np.ndarray, replicate: bool) -> list[probekit.Row]:
        rows = []
        for layer in range(self.context.num_layers + 1):
            data = self.layer_data(layer, drawn)
            train = ~data.held_out
            labels = data.y[train]
            if len(np.unique(labels)) < 2:
                raise probekit.MetricError("the probe-train examples have one label: a code of one class is "
                                           "empty; probe data with several labels")
            order = np.random.default_rng(self.options.seed).permutation(int(train.sum()))
            n_classes = int(data.y.max()) + 1
            codes = {side: self._code(x[train][order], labels[order], n_classes, layer, side)
                     for side, x in (("a", data.x_a), ("b", data.x_b))}
            rows.append(self._row(layer, codes, n_classes, len(labels)))
        return rows

    def _code(self, x: np.ndarray, y: np.ndarray, n_classes: int, layer: int, side: str) -> tuple[OnlineCode, float]:
        c = self.options.c if self.options.c is not None else choose_c(x, y, seed=self.options.seed,
                                                                       max_iter=self.options.max_iter)
        code = online_codelength(x, y, n_classes, c=c, max_iter=self.options.max_iter)
        if not code.converged:
            warnings.warn(f"layer {layer}: a probe of the online code of model {side} did not converge in "
                          f"max_iter = {self.options.max_iter} L-BFGS iterations, so its codelength may be off; "
                          "raise max_iter or lower c", stacklevel=1)
        return code, c

    def _row(self, layer: int, codes: dict[str, tuple[OnlineCode, float]], n_classes: int,
             n_train: int) -> probekit.Row:
        (a, c_a), (b, c_b) = codes["a"], codes["b"]
        value = b.compression - a.compression if self.options.value == "compression" else b.bits - a.bits
        details = {"bits_a": a.bits, "bits_b": b.bits, "uniform_bits": a.uniform_bits,
                   "compression_a": a.compression, "compression_b": b.compression, "c_a": c_a, "c_b": c_b,
                   "n_train": n_train, "n_classes": n_classes, "labels": self.options.labels}
        return probekit.Row(layer, value, n_examples=self.n_examples, n_tokens=n_train, details=details)


@probekit.hookimpl
def probekit_register_metrics(register):
    register(MDLProbe)
