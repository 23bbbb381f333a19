"""The PNG figures of a run, as a plugin of the run-finished hook (``-p no:figures`` skips them)."""
from __future__ import annotations

import probekit
from probekit.outputs import write_figures


@probekit.hookimpl
def probekit_run_finished(run, console):
    written = write_figures(run.table, run.run_dir)
    console.print(f"figures: {len(written)} PNG files in {run.run_dir}", markup=False, highlight=False, soft_wrap=True)
