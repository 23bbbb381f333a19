"""Debiased CKA of hidden states, per layer (Nguyen et al. 2021): CKA with the unbiased HSIC estimator of
Song et al. (2012), linear kernels, exact from streamed sums over the datapoints (docs/reference.md).

Unlike linear CKA it is not biased upwards when there are few datapoints per neuron, which is why
mean-pooled examples are the default datapoints; it can be negative for unrelated representations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import probekit
from probekit.functional import HSICMoments, debiased_cka_from_moments


@dataclass(frozen=True)
class Options(probekit.TokenOptions):
    tokens: Literal["all", "cls", "mean"] = "mean"  # one datapoint per example, as Nguyen et al. pool them


class DebiasedCKA(probekit.HiddenStateMoments):
    """probekit.HiddenStateMoments' streaming and rows, over :class:`HSICMoments` in place of CrossMoments."""

    name = "debiased_cka"
    description = "debiased CKA (unbiased HSIC) of hidden states, per layer (0 = embeddings)"
    unit = "CKA (unbiased HSIC)"
    estimator = "exact moments"
    value_range = (-1.0, 1.0)
    direction = "similarity"
    Options = Options
    of_moments = staticmethod(debiased_cka_from_moments)
    accumulator = HSICMoments


@probekit.hookimpl
def probekit_register_metrics(register):
    register(DebiasedCKA)
