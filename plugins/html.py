"""``report.html`` beside every run, as a plugin of the run-finished hook (``-p no:html`` skips it)."""
from __future__ import annotations

import probekit
from probekit.outputs import verdicts_from_outcomes, write_report


@probekit.hookimpl
def probekit_run_finished(run, console):
    path = write_report(run.table, run.run_dir, verdicts_from_outcomes(run.outcomes))
    console.print(f"report: {path} ({path.stat().st_size / 1e3:.0f} kB, opens offline)", markup=False,
                  highlight=False, soft_wrap=True)
