"""Public: the terminal report and the figures of a results table, for output plugins (``probekit_run_finished``).

Like pytest's ``pytest`` re-exporting ``_pytest``, this module names what plugin authors
may import (docs/plugins.md, "The public surface").
"""
from __future__ import annotations

from probekit.report.figures import write_figures
from probekit.report.terminal import render

__all__ = ["render", "write_figures"]
