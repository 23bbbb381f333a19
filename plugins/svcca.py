"""SVCCA distance between two models' hidden states, per layer (Hao et al. 2020, section 4).

Layer 0 is the embedding output. Each layer streams its covariance blocks batch
by batch (O(hidden^2) memory, whatever the number of tokens), then truncates each
side by the ``rule`` and takes 1 - mean canonical correlation; k_x and k_y are
recorded with every value.
"""
from __future__ import annotations

import probekit
from probekit.functional import CrossMoments


class SVCCA(probekit.HiddenStateMoments):
    name = "svcca"
    description = "SVCCA distance of hidden states, per layer (0 = embeddings)"
    unit = "1 - mean rho"
    estimator = "exact moments"
    value_range = (0.0, 1.0)
    direction = "distance"
    decomposes = True
    details = {"k_x": int, "k_y": int, "rule": str, "threshold": float}
    Options = probekit.SVCCAOptions

    def layer_row(self, layer: int, moments: CrossMoments) -> probekit.Row:
        return probekit.functional.svcca_row(layer, moments, self.options, self.n_examples)


@probekit.hookimpl
def probekit_register_metrics(register):
    register(SVCCA)
