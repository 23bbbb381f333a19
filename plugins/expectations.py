"""The built-in expectation kinds, registered through the same hook a third party's kind uses."""
from __future__ import annotations

import probekit


@probekit.hookimpl
def probekit_register_expectations(register):
    for kind in (probekit.Bounds, probekit.Trend, probekit.Contrast, probekit.Ordering, probekit.Share,
                 probekit.Baseline, probekit.Learned):
        register(kind)
