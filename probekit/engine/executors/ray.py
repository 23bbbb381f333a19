"""The Ray executor: fine-tunes and probe groups as Ray tasks on a cluster, their rows gathered by the driver.

Ray is an optional extra (``pip install 'probekit[ray]'``), imported only when a run chooses
this executor. Each task does what the local run does for its part (the same ``finetune()``
into the shared checkpoint cache, whose lock makes a duplicate safe; the same Prober on its
probe group) and returns its result; the driver merges the groups in plan order, so the
Session writes exactly what a local run writes. Every node must see the driver's cache,
spec, data and plugin files at the same paths and have the same probekit installed
(docs/scale-out.md).
"""
from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from probekit.engine.executors.tasks import Recipe, Task, task_plan
from probekit.engine.probe import Measured, Prober
from probekit.engine.progress import make_progress
from probekit.errors import RunFailure, UserError
from probekit.report.terminal import output_width

#: Retries of a task whose worker or node died; a task that raises is not retried (its error is the run's).
RETRIES = 3
#: Seconds to reach a cluster's address before giving up: ray.init itself would wait for minutes.
CONNECT_TIMEOUT = 5.0
#: The driver's environment a worker needs too: probekit's settings (PROBEKIT_*), and where and whether the Hugging
#: Face hub is reached. Not HF_TOKEN: whoever can list the cluster's jobs reads their runtime environment.
FORWARDED = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "HF_HUB_CACHE")


@dataclass(frozen=True)
class Done:
    """What a task returns: a Checkpoint (a fine-tune) or a Measured (a probe group), where and how long it ran."""

    value: Any
    node: str
    seconds: float


class RayExecutor:
    """Runs a Prober's spec as Ray tasks on the cluster at ``address`` (None: $RAY_ADDRESS, else a local Ray)."""

    def __init__(self, address: str | None, plugins: tuple[str, ...], overrides: Mapping[str, Any],
                 autoload: bool | None) -> None:
        self.address = address
        self.plugins = plugins
        self.overrides = overrides
        self.autoload = autoload

    def run(self, prober: Prober, measured: Measured, on_comparison: Callable[[Measured], None]) -> None:
        ray = import_ray()
        tasks = task_plan(prober.spec)
        if not tasks:  # a resumed run that had finished
            return
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        started = connect(ray, address)
        try:
            check_resources(ray, tasks, address)
            prober.cache.mkdir(parents=True, exist_ok=True)  # the workers check that they see it; none creates it
            spec = prober.spec
            recipe = Recipe(spec.path.absolute(), spec.path, spec.text, self.plugins, self.overrides, self.autoload,
                            prober.run_id, prober.cache.absolute(), socket.gethostname())
            prober.console.print(f"probekit: ray: {len(tasks)} tasks on {cluster_name(ray, address)}, each "
                                 f"{tasks[0].num_cpus} CPU + {tasks[0].num_gpus:g} GPU", markup=False, highlight=False)
            collect(ray, submit(ray, recipe, tasks), prober, measured, on_comparison)
        finally:
            if started:
                ray.shutdown()


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("the ray executor (--executor ray, [run] executor = \"ray\") needs Ray: "
                        "pip install 'probekit[ray]'") from None
    return ray


def connect(ray, address: str | None) -> bool:
    """Join the cluster at ``address`` (None: a local Ray started now); whether the run must end the connection
    (a Ray its caller had joined already stays theirs)."""
    if ray.is_initialized():
        return False
    if address not in (None, "auto", "local"):
        check_reachable(address)
    env = {key: value for key, value in os.environ.items() if key.startswith("PROBEKIT_") or key in FORWARDED}
    try:  # log_to_driver: the workers' progress lines show in the driver's terminal
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=True)
    except (ConnectionError, RuntimeError) as error:
        raise UserError(f"could not join the Ray cluster at {address or 'this machine'}: {error}") from None
    return True


def check_reachable(address: str) -> None:
    """A UserError naming ``address`` within seconds when nothing answers there."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
        return
    except ValueError:
        why = "not host:port"
    except OSError as error:
        why = error.strerror or str(error) or type(error).__name__
    raise UserError(f"the Ray cluster at {address} cannot be reached ({why}; waited up to {CONNECT_TIMEOUT:g} s): "
                    "start it (`ray start --head --port PORT` on its head node) or fix the address (--ray-address, "
                    "[run] ray_address or $RAY_ADDRESS; without any, probekit starts a local Ray for the run)")


def check_resources(ray, tasks: list[Task], address: str | None) -> None:
    """Refuse, before anything starts, tasks that no node can run: Ray would wait for such a node forever."""
    nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
    for cpus, gpus in dict.fromkeys((task.num_cpus, task.num_gpus) for task in tasks):
        if any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
            continue
        have = ", ".join(f"{r.get('CPU', 0):g} CPU + {r.get('GPU', 0):g} GPU" for r in nodes) or "none"
        fix = ("run on CPUs with [run] gpus_per_task = 0 (its default when the device is the CPU), or add nodes "
               "with GPUs" if not any(r.get("GPU", 0) >= gpus for r in nodes) else "lower [run] threads")
        raise UserError(f"each task needs {cpus} CPU + {gpus:g} GPU ([run] threads, gpus_per_task), but no node of "
                        f"{cluster_name(ray, address)} has that (its nodes: {have}): {fix}")


def cluster_name(ray, address: str | None) -> str:
    count = sum(node["Alive"] for node in ray.nodes())
    nodes = f"{count} node" + ("s" if count != 1 else "")
    return f"the Ray cluster at {address} ({nodes})" if address else f"a local Ray ({nodes})"


def submit(ray, recipe: Recipe, tasks: list[Task]) -> dict:
    """Every task at once; Ray starts each when the results it waits for (its arguments) exist."""
    remote = ray.remote(run_task)
    refs: dict[str, Any] = {}
    for task in tasks:  # in plan order: what a task waits for is submitted before it
        refs[task.name] = remote.options(name=task.name, num_cpus=task.num_cpus, num_gpus=task.num_gpus,
                                         max_retries=RETRIES).remote(recipe, task, *(refs[n] for n in task.after))
    return {ref: task for ref, task in zip(refs.values(), tasks, strict=True)}


def collect(ray, refs: dict, prober: Prober, measured: Measured, on_comparison: Callable[[Measured], None]) -> None:
    """Each task's result as it finishes (a line per task); the probe groups merged into ``measured`` in plan
    order once every fine-tune is in, ``on_comparison`` after each as in a local run. Unfinished tasks are
    cancelled when one fails or the driver is interrupted."""
    pending = list(refs)
    probed: dict[int, Measured] = {}
    merged = 0
    try:
        while pending:
            [ref], pending = ray.wait(pending, num_returns=1)
            task = refs[ref]
            done = result(ray, ref, task)
            rows = f", {len(done.value.records)} rows" if task.group is not None else ""
            prober.console.print(f"probekit: ray: {task.name} done on {done.node} in {done.seconds:.1f} s{rows} "
                                 f"({len(refs) - len(pending)}/{len(refs)})", markup=False, highlight=False)
            if task.model is not None:
                prober.adopt(task.model, done.value)
            else:
                probed[task.group] = done.value
            training = any(refs[other].model is not None for other in pending)
            while merged in probed and not training:  # the models' metadata needs every fine-tune
                if merged == 0:
                    with make_progress(prober.console) as progress:
                        prober.resolve_all(measured, progress)  # from the adopted checkpoints: nothing trains
                merge(measured, probed.pop(merged))
                merged += 1
                on_comparison(measured)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


def result(ray, ref, task: Task) -> Done:
    """A task's Done; what it raised is raised here as itself (a UserError keeps its exit code)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as error:
        raise (error.cause or RunFailure(f"{task.name}: {error}")) from error
    except ray.exceptions.RayError as error:  # its worker or node died more often than it is retried
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise RunFailure(f"{task.name} failed on the Ray cluster after {RETRIES} retries: {type(error).__name__}: "
                         f"{first}") from error


def merge(measured: Measured, part: Measured) -> None:
    """A probe group's rows and messages after those of the groups before it, as a local run appends them."""
    measured.records.extend(part.records)
    measured.errors.extend(part.errors)
    measured.failures.extend(part.failures)
    measured.tracebacks.extend(part.tracebacks)
    measured.notes.extend(part.notes)


def run_task(recipe: Recipe, task: Task, *_after: Done) -> Done:
    """One task on a Ray worker, as the local run does that part; its progress goes to the driver through Ray."""
    import ray

    started = time.monotonic()
    check_cache(recipe.cache, recipe.driver)
    spec, manager = recipe.rebuild(task)
    prober = Prober(spec, manager, Console(stderr=True, width=output_width(sys.stderr)), recipe.run_id)
    if task.model is not None:
        value = prober.finetune_alone(task.model)
    else:
        value = prober.run(Measured(), on_comparison=lambda _: None)
    node = f"{socket.gethostname()} (node {ray.get_runtime_context().get_node_id()[:8]}, pid {os.getpid()})"
    return Done(value, node, time.monotonic() - started)


def check_cache(cache: Path, driver: str) -> None:
    """Refuse to run on a node that does not see the driver's cache: it would train into a folder of its own."""
    if cache.is_dir() and os.access(cache, os.W_OK | os.X_OK):
        return
    problem = "is not writable" if cache.is_dir() else "does not exist"
    raise UserError(f"the checkpoint cache {cache} (the driver's, on {driver}) {problem} on the Ray node "
                    f"{socket.gethostname()}: every node must see the driver's cache at the same path and write "
                    "to it; put [run] cache_dir or PROBEKIT_CACHE on a file system the nodes share "
                    "(docs/scale-out.md)")
