"""Orthogonal Procrustes distance of hidden states, per layer: how far one model's centred, unit-norm
representation is from the best rotation of the other's (0 = identical up to rotation, at most 2)."""
from __future__ import annotations

import probekit
from probekit.functional import CrossProducts, procrustes_from_moments


class Procrustes(probekit.HiddenStateMoments):
    name = "procrustes"
    description = "orthogonal Procrustes distance of hidden states, per layer (0 = embeddings)"
    unit = "2 - 2 ||X'Y||_*"
    estimator = "exact moments"
    value_range = (0.0, 2.0)
    direction = "distance"
    of_moments = staticmethod(procrustes_from_moments)
    accumulator = CrossProducts  # X^T Y and two traces: one product per batch, and defined for n <= d


@probekit.hookimpl
def probekit_register_metrics(register):
    register(Procrustes)
