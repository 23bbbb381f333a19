"""A checkpoint cache shared by several processes (issue 11): each fine-tune trained once, a killed owner's lock
never blocks, a corrupt checkpoint retrained.

The processes are real: a small script (``HOLDER``) fine-tunes the tiny model of ``tiny_models`` through
:func:`probekit.models.finetune.finetune` and stops at its last training step, holding the lock, until the test
creates a gate file; so which process trains first, and what the other sees meanwhile, does not depend on timing.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from probekit.errors import RunFailure, UserError
from probekit.models.finetune import FinetuneJob, finetune
from probekit.models.settings import FinetuneSettings
from probekit.models.manifest import CacheWarning, entry_problem
from probekit.testing.fixtures import tiny_examples

pytestmark = pytest.mark.usefixtures("one_thread")

#: Fine-tunes ``job()``'s fine-tune; at its last step, prints "holding" and waits for the gate file (argv[3]).
HOLDER = """
import sys, time
from pathlib import Path

import torch

from probekit.models.finetune import FinetuneJob, finetune
from probekit.models.settings import FinetuneSettings
from probekit.testing.fixtures import tiny_examples

base, root, gate = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
torch.set_num_threads(1)
examples = tiny_examples(64, seed=5)
settings = FinetuneSettings(lr=1e-3, batch_size=16, epochs=2, max_length=16, seed=3, snapshots=(0.5,))
job = FinetuneJob("models.ft", base, "tiny-a", examples[:48], examples[48:], settings)
print("key", job.key(), flush=True)


def on_step(step, total, loss):
    print("step", step, flush=True)
    if step == total:  # the snapshot is in the partial folder: hold the lock mid-training until the gate opens
        print("holding", flush=True)
        while not gate.exists():
            time.sleep(0.05)


checkpoint = finetune(job, root, torch.device("cpu"), on_step=on_step, on_wait=lambda status: print(status, flush=True))
print("checkpoint", checkpoint.folder, flush=True)
"""

TIMEOUT = 90  # seconds: the most a holder process may take (start-up included) on a loaded 2-core machine


def job(base: Path) -> FinetuneJob:
    """The fine-tune HOLDER trains (the test checks that the keys agree)."""
    examples = tiny_examples(64, seed=5)
    settings = FinetuneSettings(lr=1e-3, batch_size=16, epochs=2, max_length=16, seed=3, snapshots=(0.5,))
    return FinetuneJob("models.ft", str(base), "tiny-a", examples[:48], examples[48:], settings)


@pytest.fixture
def holder(tmp_path, tiny_models):
    """Start HOLDER processes (stdout to a file each); every one still running at the end is killed."""
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    started: list[subprocess.Popen] = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PROBEKIT_DISABLE_PLUGIN_AUTOLOAD": "1", "HF_HUB_OFFLINE": "1"}

    def start(name: str, gate: Path) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"{name}.log"
        with log.open("w") as out:
            process = subprocess.Popen([sys.executable, str(script), str(tiny_models[0]), str(cache()), str(gate)],
                                       stdout=out, stderr=subprocess.STDOUT, env=env)
        started.append(process)
        return process, log

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def cache() -> Path:
    return Path(os.environ["PROBEKIT_CACHE"])


def wait_for(text: str, log: Path, process: subprocess.Popen, timeout: float = TIMEOUT) -> str:
    """The log once it holds ``text``; fails when the process ends first or the time runs out."""
    deadline = time.monotonic() + timeout
    while text not in (content := log.read_text()):
        if process.poll() is not None:
            raise AssertionError(f"the process ended (exit {process.returncode}) before printing {text!r}:\n{content}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} after {timeout} s:\n{content}")
        time.sleep(0.05)
    return content


def finished(process: subprocess.Popen, log: Path) -> str:
    process.wait(timeout=TIMEOUT)
    content = log.read_text()
    assert process.returncode == 0, content
    return content


def cache_folders() -> list[str]:
    return sorted(p.name for p in (cache() / "finetunes").iterdir() if p.is_dir())


def test_two_processes_needing_one_fine_tune_train_it_once(tmp_path, holder, tiny_models):
    gate = tmp_path / "gate"
    first, first_log = holder("first", gate)
    wait_for("holding", first_log, first)  # it holds the lock, mid-training
    second, second_log = holder("second", gate)
    waiting = wait_for("waiting for", second_log, second)
    assert f"waiting for {first.pid}@{socket.gethostname()} to finish training" in waiting
    gate.touch()
    first_out, second_out = finished(first, first_log), finished(second, second_log)

    def steps(out: str) -> list[str]:
        return [line for line in out.splitlines() if line.startswith("step ")]

    assert steps(first_out) == [f"step {n}" for n in range(1, 7)] and steps(second_out) == []  # exactly one trained
    lines = [line for out in (first_out, second_out) for line in out.splitlines()]
    assert len({line for line in lines if line.startswith("checkpoint")}) == 1  # both use the same checkpoint
    [key] = {line.split()[1] for line in first_out.splitlines() if line.startswith("key")}
    assert key == job(tiny_models[0]).key()
    assert cache_folders() == [key]  # no partial folder, nothing moved aside
    assert entry_problem(cache() / "finetunes" / key) is None


def test_a_sigkilled_owner_does_not_block_the_next_process(tmp_path, holder, tiny_models, monkeypatch):
    owner, log = holder("owner", tmp_path / "never")
    wait_for("holding", log, owner)
    me = job(tiny_models[0])
    [partial] = [name for name in cache_folders() if ".partial-" in name]
    assert partial == f"{me.key()}.partial-{owner.pid}@{socket.gethostname()}"

    # While the owner lives, a waiter says for whom it waits, and gives up after PROBEKIT_LOCK_TIMEOUT.
    monkeypatch.setenv("PROBEKIT_LOCK_TIMEOUT", "0.5")
    statuses: list[str] = []
    with pytest.raises(RunFailure) as failure:
        finetune(me, cache(), torch.device("cpu"), on_wait=statuses.append)
    owner_id = f"{owner.pid}@{socket.gethostname()}"
    assert statuses == [f"waiting for {owner_id} to finish training"]
    lock = cache() / "locks" / f"{me.key()}.lock"
    assert f"waited 0.5 s for {owner_id}" in str(failure.value) and f"(lock {lock})" in str(failure.value)
    assert "PROBEKIT_LOCK_TIMEOUT" in str(failure.value)

    owner.send_signal(signal.SIGKILL)  # no cleanup runs: the lock file, its owner file and the partial folder stay
    owner.wait(timeout=30)
    assert lock.exists() and lock.with_suffix(".owner").read_text().strip() == owner_id
    monkeypatch.setenv("PROBEKIT_LOCK_TIMEOUT", "30")
    steps: list[int] = []
    started = time.monotonic()
    checkpoint = finetune(me, cache(), torch.device("cpu"), on_step=lambda s, t, loss: steps.append(s),
                          on_wait=statuses.append)
    assert time.monotonic() - started < 30 and len(statuses) == 1  # the dead owner's lock was free at once
    assert steps == list(range(1, 7))  # trained here
    assert cache_folders() == [me.key()]  # the killed owner's partial folder is gone
    assert checkpoint.folder == cache() / "finetunes" / me.key() / "final"


def test_a_bad_lock_timeout_is_bad_input(tiny_models, monkeypatch):
    monkeypatch.setenv("PROBEKIT_LOCK_TIMEOUT", "6h")
    with pytest.raises(UserError, match=r"PROBEKIT_LOCK_TIMEOUT='6h': expected a number of seconds"):
        finetune(job(tiny_models[0]), cache(), torch.device("cpu"))


def test_a_corrupted_checkpoint_is_retrained_with_a_warning(tiny_models):
    me = dataclasses.replace(job(tiny_models[0]), settings=dataclasses.replace(job(tiny_models[0]).settings,
                                                                              snapshots=()))
    first = finetune(me, cache(), torch.device("cpu"))
    weights = first.folder / "model.safetensors"
    original = weights.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0xFF  # one byte flipped, the size unchanged: only the sha256 can tell
    weights.write_bytes(bytes(data))

    steps: list[int] = []
    with pytest.warns(CacheWarning) as warned:
        again = finetune(me, cache(), torch.device("cpu"), on_step=lambda s, t, loss: steps.append(s))
    [message] = [str(w.message) for w in warned if issubclass(w.category, CacheWarning)]
    folder = cache() / "finetunes" / me.key()
    assert f"the cached fine-tune {folder} is corrupt (final/model.safetensors has another sha256" in message
    [aside] = [name for name in cache_folders() if ".corrupt-" in name]
    assert f"moved it aside to {folder.parent / aside}" in message
    assert steps  # trained again, never used corrupt
    assert (again.folder / "model.safetensors").read_bytes() == original  # and whole: the same weights as before
    assert entry_problem(folder) is None
