"""probekit: what did fine-tuning change inside my transformer, layer by layer?

The public surface for plugin authors: ``hookimpl`` to mark hook
implementations; ``Metric``, ``Row``, ``MetricError``, ``MetricContext``,
``Batch`` and ``Capture`` to write a metric; ``DataSource`` and ``Example`` to
write a data source; ``CrossMoments`` for streamed moments; ``Expectation``,
``LayerExpectation``, ``Outcome`` and ``RunView`` to write an expectation kind (the
built-in kinds ``Bounds``, ``Trend``, ... are public too). docs/plugins.md
documents the contract.
"""
from __future__ import annotations

import importlib

import pluggy

__version__ = "0.3.0.dev0"

hookimpl = pluggy.HookimplMarker("probekit")

# Imported on first use: probekit's pytest plugin loads this package in every pytest
# session, which should not pay for torch unless a probekit feature is used.
_PUBLIC = {
    "Batch": "probekit.metrics.tensors", "Capture": "probekit.metrics.tensors",
    "CrossMoments": "probekit.metrics.functional",
    "DataError": "probekit.errors", "ProbekitError": "probekit.errors",
    "DataSource": "probekit.data.source", "Example": "probekit.data.example",
    "Metric": "probekit.metrics.base", "MetricContext": "probekit.metrics.base",
    "MetricError": "probekit.metrics.base", "Row": "probekit.metrics.base",
    **{name: "probekit.expect.kinds" for name in (
        "Expectation", "LayerExpectation", "Bounds", "Trend", "Contrast", "Ordering", "Share", "Baseline", "Learned")},
    "Outcome": "probekit.expect.evaluate", "RunView": "probekit.expect.evaluate",
    "PerExampleMetric": "probekit.metrics.per_example", "PoolingOptions": "probekit.metrics.per_example",
    "Resample": "probekit.metrics.per_example",
    "OptionError": "probekit.metrics.options", "SpecFacts": "probekit.metrics.base",
}

__all__ = [*sorted(_PUBLIC), "__version__", "hookimpl"]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'probekit' has no attribute {name!r}")
