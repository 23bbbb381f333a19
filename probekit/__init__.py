"""probekit: what did fine-tuning change inside my transformer, layer by layer?

The public surface for plugin authors is small: ``hookimpl`` to mark hook
implementations, and ``Metric`` / ``Row`` to write a metric.
"""
from __future__ import annotations

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("probekit")

from probekit.metric import Metric, Row  # noqa: E402  (needs hookimpl defined first)

__all__ = ["Metric", "Row", "__version__", "hookimpl"]
