"""Public: what output plugins (``probekit_run_finished``) build on: the terminal report, the figures, the HTML
report and the parts of a tracker run (config, per-layer points, verdicts, artifacts, ``tracking.json``).

Like pytest's ``pytest`` re-exporting ``_pytest``, this module names what plugin authors
may import (docs/plugins.md, "The public surface").
"""
from __future__ import annotations

from probekit.report.figures import write_figures
from probekit.report.html import verdicts_from_outcomes, write_report
from probekit.report.terminal import render
from probekit.report.tracking import (
    EXTRAS,
    flat_params,
    layer_points,
    record_tracker_run,
    require_tracker,
    run_files,
    tracker_config,
    verdict_records,
)

__all__ = ["EXTRAS", "flat_params", "layer_points", "record_tracker_run", "render", "require_tracker", "run_files", "tracker_config",
           "verdict_records", "verdicts_from_outcomes", "write_figures", "write_report"]
