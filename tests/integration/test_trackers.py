"""Runs logged to the trackers researchers use, for real: W&B in offline mode (its own run file read back with
its protobuf records) and MLflow on a tracking server the module starts on 127.0.0.1 (SQLite) and stops, read
back through MlflowClient; both equal to the Parquet file. Bad input: a tracker not installed, a server that
does not answer, an unknown tracker, a blocked tracker plugin."""
from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
import urllib.request

import pytest

from probekit import api
from probekit.cli import main
from probekit.errors import SpecError, UserError
from probekit.report.tracking import layer_points, read_tracker_runs
from probekit.results.io import read_table
from probekit.testing.fixtures import save_tiny_model, write_tiny_csv

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.servers]
#: The MLflow server's start-up (imports and its SQLite schema) on a busy 2-core machine; it is bounded.
SERVER_START_S = 180


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` on 127.0.0.1 with a SQLite store, started first (it takes a while) and stopped at the end."""
    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = open(root / "server.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    yield server, f"http://127.0.0.1:{port}", root
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    log.close()


def wait_until_up(server, uri: str, root) -> str:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited ({server.returncode}): {(root / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return uri
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow server did not answer within {SERVER_START_S} s")


def tiny_spec(root) -> dict:
    return {"name": "tiny_tracked",
            "run": {"device": "cpu", "batch_size": 8, "max_length": 16, "bootstrap": 10, "bootstrap_groups": 4},
            "models": {"a": {"id": str(root / "a")}, "b": {"id": str(root / "b")}},
            "data": {"eval": {"path": str(root / "eval.csv"), "limit": 24}},
            "metrics": {"svcca": {}, "attention_js": {}},
            "comparisons": [{"name": "a_vs_b", "a": "a", "b": "b", "data": "eval"}],
            "expect": [{"name": "b moved", "comparison": "a_vs_b", "metric": "svcca", "above": 0.01},
                       {"name": "b did not move", "comparison": "a_vs_b", "metric": "svcca", "below": 1e-9}]}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, mlflow_server):
    """The folder of one tiny spec and its first run (written while the MLflow server starts)."""
    root = tmp_path_factory.mktemp("tracked")
    save_tiny_model(root / "a", seed=0)
    save_tiny_model(root / "b", seed=1)
    write_tiny_csv(root / "eval.csv", 32, seed=3)
    api.run(tiny_spec(root), base_dir=root, output=root / "first")
    return root


def rerun(root, name: str, **kwargs):
    """The tiny spec again into a new folder: the cached results (nothing recomputed), logged as asked."""
    return api.run(tiny_spec(root), base_dir=root, output=root / name, **kwargs)


def parquet_values(results) -> dict[tuple[str, int], tuple]:
    return {(point.key, point.layer): (point.value, point.ci_low, point.ci_high) for point in layer_points(results.table)}


# -- MLflow ---------------------------------------------------------------------------------------


def test_an_mlflow_run_holds_the_per_layer_values_of_the_parquet_file(tiny, mlflow_server, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = wait_until_up(*mlflow_server)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    results = rerun(tiny, "mlflow", log=["mlflow"])
    linked = read_tracker_runs(results.run_dir)["mlflow"]
    client = MlflowClient(uri)
    run = client.get_run(linked["run_id"])
    assert run.data.tags["probekit.run_id"] == results.metadata["run_id"] == run.info.run_name
    assert run.data.params["models.b.identity"] == results.metadata["models"]["b"]["identity"]
    assert run.data.params["device"] == "cpu" and run.info.status == "FINISHED"
    expected = parquet_values(results)
    assert len(expected) == 5  # svcca at layers 0-2, attention_js at 1-2
    for (key, layer), (value, low, high) in expected.items():
        history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
        assert history[layer] == value
        bands = [{m.step: m.value for m in client.get_metric_history(run.info.run_id, f"{key}/{end}")}[layer]
                 for end in ("ci_low", "ci_high")]
        assert bands == [low, high]
    assert run.data.metrics["expectations/passed"] == 1 and run.data.metrics["expectations/failed"] == 1
    files = {f.path for f in client.list_artifacts(run.info.run_id)} | {
        f.path for f in client.list_artifacts(run.info.run_id, "figures")}
    assert {"results.parquet", "report.html", "spec.toml", "verdicts.json", "figures/svcca.png"} <= files
    verdicts = json.loads(open(client.download_artifacts(run.info.run_id, "verdicts.json")).read())
    assert [v["passed"] for v in verdicts] == [True, False] and verdicts[1]["failing"][0]["layer"] == 0
    downloaded = read_table(client.download_artifacts(run.info.run_id, "results.parquet"))
    assert downloaded.equals(results.table)


def test_a_server_that_does_not_answer_is_a_warning_and_the_results_stay(tiny, monkeypatch, capsys):
    silent = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", silent)
    spec = tiny / "tracked.toml"
    spec.write_text(api.to_toml(tiny_spec(tiny)))
    code = main(["run", str(spec), "-o", str(tiny / "silent"), "--log", "mlflow"])
    out = capsys.readouterr().out
    assert code == 1  # the failing expectation's, as without --log
    assert f"warning mlflow: could not log run to {silent}" in " ".join(out.split())
    assert (tiny / "silent" / "results.parquet").is_file() and (tiny / "silent" / "report.html").is_file()
    assert "mlflow" not in read_tracker_runs(tiny / "silent")


# -- W&B ---------------------------------------------------------------------------------------


def wandb_records(run_file) -> list:
    """The records of a W&B run file (``run-<id>.wandb``): W&B's LevelDB-style log (a 7-byte header, 32 KiB
    blocks of checksummed chunks) of its own protobuf ``Record`` messages, which W&B 0.31 has no Python reader for."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = run_file.read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    records, pending, position, block = [], b"", 7, 32768
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if kind == 0 and length == 0:
            position += left  # padding to the end of the block
            continue
        pending += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_a_wandb_offline_run_holds_the_per_layer_values_of_the_parquet_file(tiny, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_PROJECT", "probekit-tests")
    monkeypatch.setenv("WANDB_CONSOLE", "off")  # no console capture, no system metrics: less to start and stop
    monkeypatch.setenv("WANDB_X_DISABLE_STATS", "true")
    results = rerun(tiny, "wandb", log=["wandb"])
    linked = read_tracker_runs(results.run_dir)["wandb"]
    [run_file] = tmp_path.glob(f"wandb/offline-run-*-{linked['run_id']}/run-{linked['run_id']}.wandb")
    records = wandb_records(run_file)
    steps: dict[int, dict[str, float]] = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            values = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            steps.setdefault(int(values.get("_step", record.history.step.num)), {}).update(values)
    for (key, layer), (value, low, high) in parquet_values(results).items():
        assert steps[layer][key] == value and steps[layer][f"{key}/ci_low"] == low
        assert steps[layer][f"{key}/ci_high"] == high
    [run] = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert run.display_name == config["run_id"] == results.metadata["run_id"]
    assert config["models"]["b"]["identity"] == results.metadata["models"]["b"]["identity"]
    assert "[[comparisons]]" in config["spec_text"]
    artifacts = {r.artifact.name: r.artifact for r in records if r.WhichOneof("record_type") == "artifact"}
    files = {e.path for e in artifacts[f"probekit-{results.metadata['run_id']}"].manifest.contents}
    assert {"results.parquet", "report.html", "figures/svcca.png"} <= files
    assert {"layers.table.json", "expectations.table.json"} <= {
        e.path for artifact in artifacts.values() for e in artifact.manifest.contents}


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("tracker", ["wandb", "mlflow"])
def test_a_tracker_that_is_not_installed_names_its_extra_before_anything_runs(tiny, tracker, monkeypatch):
    monkeypatch.setitem(sys.modules, tracker, None)  # what Python does for a package that is not installed
    with pytest.raises(UserError, match=rf"--log {tracker}: the {tracker} package is not installed; "
                                        rf"pip install 'probekit\[{tracker}\]'"):
        rerun(tiny, f"missing_{tracker}", log=[tracker])
    assert not (tiny / f"missing_{tracker}").exists()


def test_log_in_the_spec_is_validated_and_a_blocked_tracker_is_refused(tiny):
    spec = tiny_spec(tiny)
    spec["run"]["log"] = ["mlfow"]
    with pytest.raises(SpecError, match=r"run\.log.*'mlflow'"):
        api.load(spec, base_dir=tiny)
    spec["run"]["log"] = ["mlflow"]
    assert api.load(spec, base_dir=tiny).run.log == ("mlflow",)
    with pytest.raises(UserError, match=r"--log mlflow: the mlflow plugin is blocked \(-p no:mlflow\)"):
        api.run(spec, base_dir=tiny, output=tiny / "blocked", plugins=["no:mlflow"])
