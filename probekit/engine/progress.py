"""Progress of long work: a live display in a terminal, timestamped lines in a log.

When stderr is not a terminal (CI logs, Slurm, ``nohup``) a live display prints
nothing until it ends; a user watching the log would see minutes of silence.
There, each task gets a line when it starts, every 10% of its work (with its rate
and an ETA), and when it finishes.
"""
from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

#: A log line every this fraction of a task's work.
LOG_EVERY = 0.1


#: What a task counts, by the start of its description.
UNITS = {"fine-tune": "steps", "resample": "draws"}


def make_progress(console: Console) -> Progress | LogProgress:
    """A rich live display on a terminal, plain timestamped lines otherwise."""
    if not console.is_terminal:
        return LogProgress(console)
    return Progress(
        TextColumn("{task.description}"), BarColumn(bar_width=16), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console, transient=False,
    )


@dataclass
class LogTask:
    description: str
    total: float | None
    status: str = ""
    completed: float = 0
    started: float = field(default_factory=time.monotonic)
    logged: float = 0.0  # the fraction of the work at the last line
    finished: bool = False


class LogProgress:
    """The part of rich's Progress the engine uses (add_task, update, advance, tasks), written as log lines."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.tasks: dict[int, LogTask] = {}

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc_info) -> None:
        for task in self.tasks.values():
            if not task.finished and task.completed:
                self._line(task, "stopped")

    def add_task(self, description: str, total: float | None = None, status: str = "", **_) -> int:
        task_id = len(self.tasks)
        self.tasks[task_id] = LogTask(description, total, status)
        self._line(self.tasks[task_id], "started" + (f" ({status})" if status else ""))
        return task_id

    def update(self, task_id: int, *, completed: float | None = None, total: float | None = None,
               status: str | None = None, **_) -> None:
        task = self.tasks[task_id]
        task.total = total if total is not None else task.total
        if task.finished and status is not None and status != task.status:
            self._line(task, status)  # what a finished task ended as ("trained, accuracy 76.3%")
        task.status = status if status is not None else task.status
        if completed is not None:
            task.completed = completed
            self._report(task)

    def remove_task(self, task_id: int) -> None:
        del self.tasks[task_id]

    def advance(self, task_id: int, amount: float = 1) -> None:
        task = self.tasks[task_id]
        task.completed += amount
        self._report(task)

    def _report(self, task: LogTask) -> None:
        if not task.total or task.finished:
            return
        fraction = task.completed / task.total
        if fraction >= 1:
            task.finished = True
            self._line(task, f"done in {_duration(time.monotonic() - task.started)}, {self._rate(task)}"
                       + (f", {task.status}" if task.status else ""))
        elif fraction - task.logged >= LOG_EVERY:
            task.logged = fraction
            elapsed = time.monotonic() - task.started
            eta = elapsed * (1 - fraction) / fraction
            self._line(task, f"{task.completed:g}/{task.total:g} ({fraction:.0%}), {self._rate(task)}, "
                       f"ETA {_duration(eta)}" + (f", {task.status}" if task.status else ""))

    @staticmethod
    def _rate(task: LogTask) -> str:
        elapsed = max(time.monotonic() - task.started, 1e-9)
        unit = next((u for prefix, u in UNITS.items() if task.description.startswith(prefix)), "examples")
        return f"{task.completed / elapsed:.1f} {unit}/s"

    def _line(self, task: LogTask, what: str) -> None:
        stamp = datetime.datetime.now().strftime("%H:%M:%S")
        self.console.print(f"{stamp} {task.description}: {what}", markup=False, highlight=False, soft_wrap=True)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
