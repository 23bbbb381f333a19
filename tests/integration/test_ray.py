"""The Ray executor (issue 11): a study run on a two-node Ray cluster gives exactly the local run's rows, a killed
worker's task is retried, and bad input (an unreachable address, GPUs a cluster lacks, a cache a node cannot see,
Ray not installed) is a clear error before anything runs.

The cluster is real: two ``ray start`` nodes of one CPU each on this machine, started by the ``cluster`` fixture
in sessions of their own and torn down by killing exactly those sessions' processes (``ray stop`` would stop every
Ray cluster on the machine). Runs are ``probekit run`` subprocesses, as a user starts them.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from probekit.results.events import events_of
from probekit.cli import main
from probekit.engine.executors.ray import check_cache
from probekit.engine.executors.tasks import Task, task_plan
from probekit.engine.session import Session
from probekit.errors import UserError
from probekit.results.io import metadata, read_table
from probekit.testing.fixtures import write_tiny_csv

pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("one_thread")]

#: One row per comparison; on ft1_vs_ft2, when $PROBEKIT_TEST_GATE names a folder, it writes <pid>.pid there and
#: waits for the file `open`: the test kills that worker meanwhile. (PROBEKIT_* variables reach Ray's workers.)
GATE = '''
import os
import time
from pathlib import Path

import probekit


class Gate(probekit.Metric):
    name = "gate"
    needs = frozenset({"hidden_states"})

    def update(self, a, b, batch):
        pass

    def finalize(self):
        folder = os.environ.get("PROBEKIT_TEST_GATE")
        if folder and self.context.comparison == "ft1_vs_ft2":
            (Path(folder) / f"{os.getpid()}.pid").write_text("")
            while not (Path(folder) / "open").exists():
                time.sleep(0.05)
        return [probekit.Row(0, 1.0)]


@probekit.hookimpl
def probekit_register_metrics(register):
    register(Gate)
'''

#: Two fine-tunes of a tiny model (seeds 1 and 2) and three comparisons on three datasets: five tasks.
SPEC = """
name = "{name}"
plugins = ["gate.py"]
[run]
batch_size = 8
max_length = 16
threads = 1
{run}
[models.pre]
id = "{base}"
[models.ft1]
base = "pre"
train = "train"
lr = 3e-3
epochs = 2
batch_size = 8
max_length = 16
seed = 1
[models.ft2]
base = "pre"
train = "train"
lr = 3e-3
epochs = 2
batch_size = 8
max_length = 16
seed = 2
[data.train]
path = "train.csv"
[data.d1]
path = "d1.csv"
[data.d2]
path = "d2.csv"
[data.d3]
path = "d3.csv"
[metrics.svcca]
[metrics.attention_js]
[metrics.gate]
[[comparisons]]
name = "pre_vs_ft1"
a = "pre"
b = "ft1"
data = "d1"
[[comparisons]]
name = "pre_vs_ft2"
a = "pre"
b = "ft2"
data = "d2"
[[comparisons]]
name = "ft1_vs_ft2"
a = "ft1"
b = "ft2"
data = "d3"
"""

#: Ray's settings for the test's cluster and the runs on it: no usage report; no token authentication, which
#: `ray start --head` (Ray 2.60) turns on by itself once a local ray.init() has written ~/.ray/auth_token.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
START_TIMEOUT = 120  # seconds: the most `ray start` of one node may take on a loaded 2-core machine
RUN_TIMEOUT = 240  # seconds: the most one `probekit run` may take there (a Ray worker imports torch first)


@dataclass(frozen=True)
class Cluster:
    address: str
    sessions: tuple[int, ...]  # the session id of each node's processes (Ray's workers included)


@pytest.fixture(scope="module")
def cluster():
    """A Ray cluster of two one-CPU nodes on this machine; every process of it is killed at the end."""
    port = free_port()
    # Short (Ray's socket paths must fit in 107 bytes), and one per node: a node's log monitor forwards every
    # worker log in its folder, so two nodes sharing one would print each worker line twice.
    temps = [tempfile.mkdtemp(prefix="pkray", dir="/tmp") for _ in range(2)]
    sessions: list[int] = []
    try:
        start_node(["--head", "--port", str(port), "--include-dashboard=false"], temps[0], sessions)
        start_node(["--address", f"127.0.0.1:{port}"], temps[1], sessions)
        yield Cluster(f"127.0.0.1:{port}", tuple(sessions))
    finally:
        stop(sessions)
        for temp in temps:
            shutil.rmtree(temp, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_node(args: list[str], temp: str, sessions: list[int]) -> None:
    """``ray start`` in a session of its own: the node's processes (its workers too) carry that session id."""
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", *args, "--num-cpus", "1",
               "--object-store-memory", str(200 * 2**20), "--disable-usage-stats", "--temp-dir", temp]
    starter = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True, env={**os.environ, **RAY_ENV})
    sessions.append(starter.pid)
    output, _ = starter.communicate(timeout=START_TIMEOUT)
    assert starter.returncode == 0, output


def session_of(pid: int) -> int | None:
    """The session id of a live process; None for one that is gone or a zombie (dead, waiting to be reaped)."""
    try:
        state, _, _, session = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[:4]
    except OSError:
        return None
    return None if state == "Z" else int(session)


def members(sessions: list[int]) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and session_of(int(p.name)) in sessions]


def stop(sessions: list[int]) -> None:
    """SIGKILL to every process of ``sessions``, as ``ray stop --force`` does to every Ray process of the machine
    (Ray's daemons take 10 s and more to end on SIGTERM)."""
    deadline = time.monotonic() + 10
    while (left := members(sessions)) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    assert not left, f"processes of the test's Ray cluster still running: {left}"


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_models) -> Path:
    folder = tmp_path_factory.mktemp("study")
    (folder / "gate.py").write_text(GATE)
    write_tiny_csv(folder / "train.csv", 48, seed=7)
    for seed, data in enumerate(("d1", "d2", "d3")):
        write_tiny_csv(folder / f"{data}.csv", 16, seed=seed)
    return write_spec(folder, tiny_models, "ray_study")


def write_spec(folder: Path, tiny_models, name: str, run: str = "") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(SPEC.format(name=name, base=tiny_models[0], run=run))
    return path


def probekit_run(spec: Path, out: Path, cache: Path, *args: str, env: dict | None = None,
                 log: Path | None = None) -> subprocess.Popen:
    """``probekit run SPEC -o OUT --fresh ARGS`` in a subprocess with its own checkpoint cache, output to ``log``."""
    log = log or out.with_suffix(".log")
    environment = {**os.environ, "PROBEKIT_CACHE": str(cache), "COLUMNS": "200", **RAY_ENV, **(env or {})}
    with log.open("w") as output:
        return subprocess.Popen([sys.executable, "-m", "probekit", "run", str(spec), "-o", str(out), "--fresh", *args],
                                stdout=output, stderr=subprocess.STDOUT, env=environment)


def finished(process: subprocess.Popen, log: Path) -> str:
    try:
        process.wait(timeout=RUN_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    return log.read_text()


def exact(out: Path) -> list[dict]:
    """The rows of a run but its run id, every float as its bits (float.hex): equal only when bitwise equal."""
    rows = read_table(out).drop_columns(["run_id"]).to_pylist()
    return [{k: v.hex() if isinstance(v, float) else v for k, v in row.items()} for row in rows]


@pytest.fixture(scope="module")
def local_run(study, tmp_path_factory) -> Path:
    """The study run by the local executor (the default), in a process that never imports Ray."""
    folder = tmp_path_factory.mktemp("local")
    out, log = folder / "out", folder / "out.log"
    check = ("import sys; from probekit.cli import main; code = main(sys.argv[1:]); "
             "assert 'ray' not in sys.modules, 'the local executor imported ray'; sys.exit(code)")
    environment = {**os.environ, "PROBEKIT_CACHE": str(folder / "cache"), "COLUMNS": "200"}
    with log.open("w") as output:
        process = subprocess.run([sys.executable, "-c", check, "run", str(study), "-o", str(out), "--fresh"],
                                 stdout=output, stderr=subprocess.STDOUT, env=environment, timeout=RUN_TIMEOUT)
    assert process.returncode == 0, log.read_text()
    return out


@pytest.fixture(scope="module")
def ray_cache(tmp_path_factory) -> Path:
    """The checkpoint cache of the runs on the cluster: the kill test reuses the first run's fine-tunes."""
    return tmp_path_factory.mktemp("ray_cache")


def test_a_study_on_two_ray_nodes_writes_exactly_the_local_run(cluster, study, local_run, ray_cache, tmp_path):
    out = tmp_path / "out"
    log = finished(probekit_run(study, out, ray_cache, "--executor", "ray", "--ray-address", cluster.address),
                   out.with_suffix(".log"))
    assert "probekit: ray: 5 tasks on the Ray cluster at " + cluster.address + " (2 nodes), each 1 CPU + 0 GPU" in log
    done = [line for line in log.splitlines() if line.startswith("probekit: ray: ") and " done on " in line]
    tasks = [" ".join(line.split()[2:4]) for line in done]  # "probekit: ray: fine-tune ft1 done on ..."
    assert sorted(tasks) == ["fine-tune ft1", "fine-tune ft2", "probe d1", "probe d2", "probe d3"], log
    assert len({line.split("(node ")[1][:8] for line in done}) == 2, "\n".join(done)  # both nodes worked
    assert "trained, accuracy" in log  # the workers' own progress, forwarded by Ray
    assert read_table(out).num_rows > 0 and exact(out) == exact(local_run)
    ray_meta, local_meta = metadata(read_table(out)), metadata(read_table(local_run))
    assert ray_meta["complete"] is True and events_of(ray_meta, "error", "failure") == events_of(local_meta, "error", "failure") == []
    assert {name: (m["identity"], m["accuracy"]) for name, m in ray_meta["models"].items()} == \
        {name: (m["identity"], m["accuracy"]) for name, m in local_meta["models"].items()}
    finetunes = [m["source"] for m in ray_meta["models"].values() if m["identity"].startswith("finetune:")]
    assert len(finetunes) == 2 and all(source.startswith(str(ray_cache)) for source in finetunes)  # the shared cache
    assert (out / "verdict.json").is_file() and (out / "svcca.png").is_file()


def test_a_killed_worker_is_retried_and_the_run_completes_with_the_same_rows(cluster, study, local_run, ray_cache,
                                                                             tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    out = tmp_path / "out"
    run = probekit_run(study, out, ray_cache, "--ray-address", cluster.address, env={"PROBEKIT_TEST_GATE": str(gate)})
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while not (pids := list(gate.glob("*.pid"))):
            assert run.poll() is None, out.with_suffix(".log").read_text()
            assert time.monotonic() < deadline, out.with_suffix(".log").read_text()
            time.sleep(0.05)
        killed = int(pids[0].stem)
        assert session_of(killed) in cluster.sessions  # a worker of this test's cluster, mid-task
        os.kill(killed, signal.SIGKILL)
        (gate / "open").touch()
    finally:
        log = finished(run, out.with_suffix(".log"))
    assert run.returncode == 0, log
    assert len(list(gate.glob("*.pid"))) == 2  # the killed attempt and Ray's retry, in another worker
    assert exact(out) == exact(local_run)
    assert "probekit: ray: probe d3 done on" in log


def test_an_unreachable_address_is_bad_input_named_within_seconds(study, capsys):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    assert main(["run", str(study), "--fresh", "--executor", "ray", "--ray-address", address]) == 2
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err
    assert f"the Ray cluster at {address} cannot be reached" in err and "ray start --head" in err
    assert not (Path(os.environ["PROBEKIT_CACHE"]) / "finetunes").exists()


def test_gpus_a_cluster_lacks_are_refused_before_anything_starts(cluster, study, tiny_models, tmp_path):
    spec = write_spec(study.parent, tiny_models, "gpu_study", run="gpus_per_task = 1")
    out, cache = tmp_path / "out", tmp_path / "cache"
    log = " ".join(finished(probekit_run(spec, out, cache, "--ray-address", cluster.address),
                            out.with_suffix(".log")).split())  # the message unwrapped
    assert "each task needs 1 CPU + 1 GPU ([run] threads, gpus_per_task), but no node of the Ray cluster at " in log
    assert "its nodes: 1 CPU + 0 GPU, 1 CPU + 0 GPU" in log and "gpus_per_task = 0" in log
    assert not (cache / "finetunes").exists() and not out.exists()


def test_a_node_that_cannot_see_the_drivers_cache_refuses_the_task(tmp_path):
    with pytest.raises(UserError, match=r"the checkpoint cache .*missing \(the driver's, on login1\) does not exist "
                                        r"on the Ray node .*: every node must see the driver's cache at the same path"):
        check_cache(tmp_path / "missing", "login1")
    check_cache(tmp_path, "login1")  # one it sees and may write: no error


def test_ray_not_installed_is_bad_input_saying_what_to_install(study, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(["run", str(study), "--fresh", "--executor", "ray"]) == 2
    assert "pip install 'probekit[ray]'" in capsys.readouterr().err


def test_the_task_plan_orders_fine_tunes_by_base_and_probes_by_their_models(study, tiny_models):
    text = study.read_text().replace('base = "pre"\ntrain = "train"\nlr = 3e-3\nepochs = 2\nbatch_size = 8\n'
                                     'max_length = 16\nseed = 2', 'base = "ft1"\ntrain = "train"\nseed = 2')
    chained = study.parent / "chained.toml"
    chained.write_text(text.replace("threads = 1\n", "threads = 2\ngpus_per_task = 0.5\n"))  # 2 CPUs, half a GPU
    spec, _ = Session().load(chained)
    assert task_plan(spec) == [
        Task("fine-tune ft1", (), 2, 0.5, model="ft1"),
        Task("fine-tune ft2", ("fine-tune ft1",), 2, 0.5, model="ft2"),
        Task("probe d1", ("fine-tune ft1",), 2, 0.5, group=0, comparisons=("pre_vs_ft1",)),
        Task("probe d2", ("fine-tune ft2",), 2, 0.5, group=1, comparisons=("pre_vs_ft2",)),
        Task("probe d3", ("fine-tune ft1", "fine-tune ft2"), 2, 0.5, group=2, comparisons=("ft1_vs_ft2",)),
    ]
    local, _ = Session().load(study)
    assert {(t.num_cpus, t.num_gpus) for t in task_plan(local)} == {(1, 0.0)}  # a CPU run: no GPU per task


def test_the_run_keys_are_validated(study, tiny_models, capsys):
    bad = write_spec(study.parent, tiny_models, "bad_run",
                     run='executor = "rya"\nray_address = ""\ngpus_per_task = 1.5')
    assert main(["check", str(bad)]) == 2
    out = capsys.readouterr().out
    assert "run.executor: found 'rya'; expected one of 'local', 'ray' (did you mean 'ray'?)" in out
    assert "run.ray_address: found ''" in out and "run.gpus_per_task: found 1.5" in out
