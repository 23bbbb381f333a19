"""PWCCA distance of hidden states, per layer (Morcos et al. 2018): 1 - the projection-weighted mean of
the canonical correlations, from the same streamed moments as SVCCA (docs/reference.md)."""
from __future__ import annotations

import probekit
from probekit.functional import pwcca_from_moments


class PWCCA(probekit.HiddenStateMoments):
    name = "pwcca"
    description = "PWCCA distance of hidden states, per layer (0 = embeddings)"
    unit = "1 - weighted mean rho"
    estimator = "exact moments"
    value_range = (0.0, 1.0)
    direction = "distance"
    decomposes = True
    of_moments = staticmethod(pwcca_from_moments)


@probekit.hookimpl
def probekit_register_metrics(register):
    register(PWCCA)
