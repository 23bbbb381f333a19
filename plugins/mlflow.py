"""Log a run to MLflow (``--log mlflow`` or ``[run] log = ["mlflow"]``; ``pip install 'probekit[mlflow]'``).

One MLflow run per probekit run, in the experiment ``$MLFLOW_EXPERIMENT_NAME`` (default: the
spec's name) of the tracking server ``$MLFLOW_TRACKING_URI`` (MLflow's own default where unset):
the run facts and model identities as parameters, the spec as ``spec.toml``, each comparison's
per-layer values as metrics with the layer as the step (``<comparison>/<metric>``, intervals as
``.../ci_low`` and ``.../ci_high``), the verdicts as ``verdicts.json`` and two counts, and
``results.parquet``, ``report.html`` and the figures as artifacts. The probekit run id is the
MLflow run's name and its tag ``probekit.run_id``; the MLflow run id goes into the run folder's
``tracking.json``. A server that does not answer is a warning naming it: the results stay written
and the exit code does not change.
"""
from __future__ import annotations

import os
import time
import urllib.error
import urllib.request

from rich.text import Text

import probekit
from probekit.outputs import (flat_params, layer_points, record_tracker_run, run_files,
                                      tracker_config, verdict_records, require_tracker, verdicts_from_outcomes)

NAME = "mlflow"
#: How long the tracking server has to answer the first request before the run only warns.
REACH_TIMEOUT_S = 5.0


@probekit.hookimpl
def probekit_run_starting(log):
    require_tracker(NAME, log)


@probekit.hookimpl
def probekit_run_finished(run, console):
    if NAME not in run.log:
        return
    import mlflow

    uri = mlflow.get_tracking_uri()
    problem = unreachable(uri)
    if problem is None:
        try:
            run_id = log_run(mlflow, run)
        except Exception as error:  # noqa: BLE001 - the results are written; a tracker failure is a warning
            problem = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        else:
            console.print(f"mlflow: run {run_id} at {uri}", markup=False, highlight=False, soft_wrap=True)
            return
    console.print(Text.assemble(("warning ", "yellow"), f"mlflow: could not log run to {uri} ({problem}); the "
                                f"results are in {run.path}"), soft_wrap=True)


def unreachable(uri: str) -> str | None:
    """Why an http(s) tracking server cannot be used (None when it answers, or for a local store)."""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=REACH_TIMEOUT_S):
            return None
    except urllib.error.HTTPError:
        return None  # it answers (a server without /health, behind a proxy, asks for a login)
    except (OSError, ValueError) as error:
        return f"no answer within {REACH_TIMEOUT_S:g} s: {getattr(error, 'reason', error)}"


def log_run(mlflow, run) -> str:
    """One MLflow run holding the probekit run; its id."""
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    table, meta_config = run.table, tracker_config(run.table)
    client = MlflowClient()
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or meta_config.get("spec_name", "probekit")
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
    run_id = str(meta_config.get("run_id", "?"))
    tags = {"probekit.run_id": run_id, "probekit.spec": str(meta_config.get("spec_name", "")),
            "probekit.run_dir": str(run.run_dir.resolve())}
    created = client.create_run(experiment_id, run_name=run_id, tags=tags).info.run_id
    now = int(time.time() * 1000)
    params = [Param(key[:250], value[:6000]) for key, value in flat_params(meta_config).items()]
    metrics = []
    for point in layer_points(table):
        metrics.append(Metric(point.key, point.value, now, point.layer))
        if point.ci_low is not None and point.ci_high is not None:
            metrics += [Metric(f"{point.key}/ci_low", point.ci_low, now, point.layer),
                        Metric(f"{point.key}/ci_high", point.ci_high, now, point.layer)]
    verdicts = verdict_records(verdicts_from_outcomes(run.outcomes))
    metrics += [Metric("expectations/passed", sum(v["passed"] for v in verdicts), now, 0),
                Metric("expectations/failed", sum(not v["passed"] for v in verdicts), now, 0)]
    for start in range(0, len(params), 100):  # MLflow takes 100 parameters and 1000 metrics a batch
        client.log_batch(created, params=params[start:start + 100])
    for start in range(0, len(metrics), 1000):
        client.log_batch(created, metrics=metrics[start:start + 1000])
    client.log_text(created, meta_config.get("spec_text", ""), "spec.toml")
    client.log_dict(created, verdicts, "verdicts.json")
    for path in run_files(run.run_dir):
        client.log_artifact(created, str(path), artifact_path="figures" if path.suffix == ".png" else None)
    client.set_terminated(created, "FINISHED" if meta_config.get("complete", True) is not False else "KILLED")
    record_tracker_run(run.run_dir, NAME, {"run_id": created, "experiment_id": experiment_id, "experiment": name,
                                           "tracking_uri": mlflow.get_tracking_uri()})
    return created
