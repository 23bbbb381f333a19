"""Log a run to Weights & Biases (``--log wandb`` or ``[run] log = ["wandb"]``; ``pip install 'probekit[wandb]'``).

One W&B run per probekit run, in the project ``$WANDB_PROJECT`` (default ``probekit``), named by
the probekit run id (also the config's ``run_id`` and the tag ``probekit``): the run facts, the
models with their identities, the metrics and the spec's text as config; each comparison's
per-layer values as metrics with the layer as the step (``<comparison>/<metric>``, intervals as
``.../ci_low`` and ``.../ci_high``) and as the table ``layers``; the verdicts as the table
``expectations`` and two summary counts; ``results.parquet``, ``report.html`` and the figures as
an artifact. W&B's own settings apply (``WANDB_MODE=offline`` writes the run under
``$WANDB_DIR`` for ``wandb sync``). The W&B run id goes into the run folder's ``tracking.json``.
A W&B failure is a warning: the results stay written and the exit code does not change.
"""
from __future__ import annotations

import os
from collections import defaultdict

from rich.text import Text

import probekit
from probekit.outputs import (layer_points, record_tracker_run, run_files, tracker_config, verdict_records,
                              require_tracker, verdicts_from_outcomes)

NAME = "wandb"
#: Seconds W&B may take to start its run before the run only warns.
INIT_TIMEOUT_S = 30


@probekit.hookimpl
def probekit_run_starting(log):
    require_tracker(NAME, log)


@probekit.hookimpl
def probekit_run_finished(run, console):
    if NAME not in run.log:
        return
    import wandb

    try:
        tracker_run = log_run(wandb, run)
    except Exception as error:  # noqa: BLE001 - the results are written; a tracker failure is a warning
        console.print(Text.assemble(("warning ", "yellow"), f"wandb: could not log the run ({type(error).__name__}: "
                                    f"{error}); the results are in {run.path}"), soft_wrap=True)
        return
    console.print(f"wandb: run {tracker_run['run_id']} ({tracker_run['where']})", markup=False, highlight=False,
                  soft_wrap=True)


def log_run(wandb, run) -> dict:
    """One W&B run holding the probekit run; what ``tracking.json`` records of it."""
    config = tracker_config(run.table)
    run_id = str(config.get("run_id", "?"))
    tracker = wandb.init(project=os.environ.get("WANDB_PROJECT") or "probekit", name=run_id, config=config,
                         tags=["probekit", str(config.get("spec_name", ""))], job_type="probe", reinit="create_new",
                         settings=wandb.Settings(init_timeout=INIT_TIMEOUT_S, silent=True))
    try:
        points = layer_points(run.table)
        by_layer: dict[int, dict[str, float]] = defaultdict(dict)
        for point in points:
            by_layer[point.layer][point.key] = point.value
            if point.ci_low is not None and point.ci_high is not None:
                by_layer[point.layer].update({f"{point.key}/ci_low": point.ci_low, f"{point.key}/ci_high": point.ci_high})
        for layer in sorted(by_layer):
            tracker.log(by_layer[layer], step=layer)
        columns = ["comparison", "metric", "layer", "value", "ci_low", "ci_high"]
        tracker.log({"layers": wandb.Table(columns=columns, data=[[getattr(p, c) for c in columns] for p in points])})
        verdicts = verdict_records(verdicts_from_outcomes(run.outcomes))
        tracker.log({"expectations": wandb.Table(columns=["name", "passed", "reason", "expectation"], data=[
            [v["name"], v["passed"], v["reason"], v["expectation"]] for v in verdicts])})
        tracker.summary.update({"expectations/passed": sum(v["passed"] for v in verdicts),
                                "expectations/failed": sum(not v["passed"] for v in verdicts),
                                "probekit_run_dir": str(run.run_dir.resolve())})
        artifact = wandb.Artifact(f"probekit-{run_id}", type="probekit-run")
        for path in run_files(run.run_dir):
            artifact.add_file(str(path), name=f"figures/{path.name}" if path.suffix == ".png" else path.name)
        tracker.log_artifact(artifact)
        info = {"run_id": tracker.id, "project": tracker.project, "where": tracker.dir if tracker.offline else tracker.url}
    finally:
        tracker.finish(exit_code=0 if config.get("complete", True) is not False else 1)
    record_tracker_run(run.run_dir, NAME, info)
    return info
