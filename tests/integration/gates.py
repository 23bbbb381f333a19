"""Named points where a child ``probekit run`` stops until its test opens them (issue 22, group 4).

A signal test must not depend on how pytest was started (a background job inherits SIGINT ignored) nor on
the machine's speed (a sleep that is long enough on one machine is not on another at load 10). So each
such test starts its child with :func:`start`, which sets the child's SIGINT to the default before it runs
(Python then installs its KeyboardInterrupt handler), and makes the child stop at a named point
(:data:`POINTS`): the child writes ``<name>.reached`` into the gate folder and waits until the test writes
``<name>.open`` (or kills it there). The points are set by :data:`GATE_PLUGIN`, a plugin file the child
loads with ``-p``; it wraps the writer and the optimizer the way a test double would, without changing
what they do.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: Where a child can be stopped: the fine-tune's second optimizer step (its partial folder exists: the
#: first step wrote a snapshot when the spec asks for one), a results file written under its temporary
#: name but not yet renamed, and the results file of the first finished comparison, renamed into place.
POINTS = ("training", "results-written-not-renamed", "first-comparison-saved")

GATE_PLUGIN = '''
import os
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch

import probekit

GATES = Path(os.environ["PROBEKIT_TEST_GATES"])
STOP_AT = os.environ.get("PROBEKIT_TEST_STOP_AT", "")


def gate(name):
    """Stop here until the test opens the gate, when the test named this point."""
    if name != STOP_AT or (GATES / f"{name}.reached").exists():
        return
    (GATES / f"{name}.reached").write_text(str(os.getpid()))
    while not (GATES / f"{name}.open").exists():
        time.sleep(0.02)


step = torch.optim.AdamW.step
steps = [0]


def gated_step(self, *args, **kwargs):
    result = step(self, *args, **kwargs)
    steps[0] += 1
    if steps[0] == 2:
        gate("training")
    return result


write = pq.write_table


def gated_write(table, where, *args, **kwargs):
    result = write(table, where, *args, **kwargs)
    if Path(where).name.startswith(".results.parquet."):
        gate("results-written-not-renamed")
    return result


replace = os.replace


def gated_replace(source, target, *args, **kwargs):
    result = replace(source, target, *args, **kwargs)
    if Path(target).name == "results.parquet" and "finetunes" not in Path(target).parts:
        gate("first-comparison-saved")
    return result


torch.optim.AdamW.step = gated_step
pq.write_table = gated_write
os.replace = gated_replace


@probekit.hookimpl
def probekit_run_finished(run, console):
    pass
'''


def _default_sigint() -> None:  # in the child, before it runs Python: whatever the test runner's own handling
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(argv: list[str], gates: Path, stop_at: str, log: Path, env: dict[str, str]) -> subprocess.Popen:
    """``python -m probekit -p <gate plugin> ...argv``, stopping at ``stop_at``, its stderr into ``log``."""
    assert stop_at in POINTS, stop_at
    gates.mkdir(parents=True, exist_ok=True)
    plugin = gates / "gate_plugin.py"
    plugin.write_text(GATE_PLUGIN)
    command, *rest = argv
    with log.open("w") as stderr:
        return subprocess.Popen([sys.executable, "-m", "probekit", command, "-p", str(plugin), *rest],
                                stdout=subprocess.DEVNULL, stderr=stderr, preexec_fn=_default_sigint,
                                env={**env, "PROBEKIT_TEST_GATES": str(gates), "PROBEKIT_TEST_STOP_AT": stop_at})


def wait_until_reached(process: subprocess.Popen, gates: Path, point: str, log: Path, timeout: float = 300) -> None:
    """Wait until the child stands at ``point``: an AssertionError (with its log) if it ends or never gets there."""
    deadline = time.monotonic() + timeout
    while not (gates / f"{point}.reached").exists():
        if process.poll() is not None:
            raise AssertionError(f"the run ended (exit {process.returncode}) before {point}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the run did not reach {point} in {timeout:g} s:\n{log.read_text()}")
        time.sleep(0.05)


def open_gate(gates: Path, point: str) -> None:
    (gates / f"{point}.open").write_text("go")


def kill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
