"""Linear CKA of hidden states, per layer (Kornblith et al. 2019): ||Cxy||_F^2 / (||Cxx||_F ||Cyy||_F) of the
centred datapoints, exact from the same streamed moments as SVCCA (docs/reference.md)."""
from __future__ import annotations

import probekit
from probekit.functional import linear_cka_from_moments


class LinearCKA(probekit.HiddenStateMoments):
    name = "linear_cka"
    description = "linear CKA of hidden states, per layer (0 = embeddings)"
    unit = "CKA"
    estimator = "exact moments"
    value_range = (0.0, 1.0)
    direction = "similarity"
    of_moments = staticmethod(linear_cka_from_moments)


@probekit.hookimpl
def probekit_register_metrics(register):
    register(LinearCKA)
