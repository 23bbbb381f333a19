"""The terminal report of a run, as a plugin of the run-finished hook (``-p no:report`` turns it off)."""
from __future__ import annotations

import probekit
from probekit.outputs import render


@probekit.hookimpl
def probekit_run_finished(run, console):
    render(run.table, console)
