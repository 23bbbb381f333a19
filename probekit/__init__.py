"""probekit: what did fine-tuning change inside my transformer, layer by layer?

The public surface for plugin authors, as ``pytest`` re-exports ``_pytest``: ``hookimpl`` to
mark hook implementations; ``Metric``, ``PerExampleMetric``, ``Row``, ``MetricError``,
``MetricContext``, ``Batch``, ``Capture`` and the bases ``HiddenStateMoments`` and
``AttentionChange`` to write a metric; ``DataSource``, ``Example`` and ``Problem`` to write
a data source; ``Expectation``, ``LayerExpectation``, ``Outcome`` and ``RunView`` to write an
expectation kind (the built-in kinds ``Bounds``, ``Trend``, ... are public too); and the modules
``probekit.functional`` (the math), ``probekit.sources`` (data-source helpers),
``probekit.families`` (model parts), ``probekit.outputs`` (report and figures) and
``probekit.testing``. docs/plugins.md documents the contract; plugins import nothing else.
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
    "LabelledVectors": "probekit.metrics.labelled", "ProbeOptions": "probekit.metrics.labelled",
    "LayerData": "probekit.metrics.labelled",
    "OptionError": "probekit.metrics.options", "SpecFacts": "probekit.metrics.base",
    "HiddenStateMoments": "probekit.metrics.moments", "TokenOptions": "probekit.metrics.moments",
    "SVCCAOptions": "probekit.metrics.moments", "AttentionChange": "probekit.metrics.attention_change",
    "NoOptions": "probekit.metrics.base", "layer_numbers": "probekit.metrics.base",
    "ModelError": "probekit.errors", "Problem": "probekit.errors", "did_you_mean": "probekit.errors",
    "UserError": "probekit.errors",
}

__all__ = [*sorted(_PUBLIC), "__version__", "hookimpl"]


#: The public modules, importable as attributes (``probekit.functional.svcca_row``).
_MODULES = ("functional", "sources", "families", "outputs", "testing")


def __getattr__(name: str):
    if name in _MODULES:
        return importlib.import_module(f"probekit.{name}")
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'probekit' has no attribute {name!r}")
