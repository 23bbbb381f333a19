"""Training trajectories a spec declares: ``checkpoints`` (a folder glob) or ``revisions`` (hub revisions).

A series is resolved here, while the spec is validated, into its points ordered by
training step, so a glob that matches nothing or a folder without weights is a spec
problem before any model loads. The step of a folder is the number its name ends in
(a Trainer's ``checkpoint-500``), else ``global_step`` of its ``trainer_state.json``;
the step of a revision is the number its name ends in (Pythia's ``step1000``).
"""
from __future__ import annotations

import glob
import json
import re
from pathlib import Path

from probekit.data.source import resolve_path
from probekit.errors import ModelError
from probekit.models.adapters import ADAPTER_CONFIG, adapter_identity
from probekit.models.loading import WEIGHT_SUFFIXES, model_identity
from probekit.spec.model import ModelSpec, SeriesPoint
from probekit.spec.tables import TableReader

TRAILING_NUMBER = re.compile(r"(\d+)$")
SERIES_KEYS = ("checkpoints", "revisions")


def model_folder_problem(folder: Path) -> str | None:
    """What keeps an existing path from being a model folder (as ``save_pretrained`` writes one), or None."""
    if not folder.is_dir():
        parent = f"; the folder holding it is {folder.parent}" if folder.name == "config.json" or \
            folder.suffix in WEIGHT_SUFFIXES else ""
        return f"{folder} is a file, not a folder{parent}"
    names = {file.name for file in folder.iterdir()}
    if not names:
        return f"{folder} is an empty folder"
    if "config.json" not in names:
        return f"{folder} has no config.json"
    if not any(Path(name).suffix in WEIGHT_SUFFIXES for name in names):
        return f"{folder} has config.json but no weights: no {' or '.join('*' + s for s in WEIGHT_SUFFIXES)} file"
    return None


def parse_series(reader: TableReader, base_dir: Path, model_id: str | None) -> tuple[SeriesPoint, ...]:
    """The points of ``checkpoints = "<glob>"`` or ``revisions = [...]`` in a ``[models.x]`` table, by step."""
    glob_text = reader.get("checkpoints", str)
    revisions = reader.get("revisions", list)
    if glob_text is not None and revisions is not None:
        reader.problem("", "both `checkpoints` and `revisions`", "one series: checkpoint folders or hub revisions")
        return ()
    if glob_text is not None:
        points = _folder_points(reader, glob_text, base_dir, adapters_of=model_id)
    elif revisions is not None:
        points = _revision_points(reader, revisions, model_id)
    else:
        return ()
    steps = [point.step for point in points]
    repeated = [point for point in points if steps.count(point.step) > 1]
    if repeated:
        key = "checkpoints" if glob_text is not None else "revisions"
        names = ", ".join(Path(p.folder).name if p.folder else p.revision for p in repeated)
        reader.problem(key, f"several checkpoints at step {repeated[0].step} ({names})", "one checkpoint per training step")
        return ()
    return tuple(sorted(points, key=lambda point: point.step))


def _folder_points(reader: TableReader, pattern: str, base_dir: Path, adapters_of: str | None) -> list[SeriesPoint]:
    full = resolve_path(pattern, base_dir)
    folders = sorted(Path(match) for match in glob.glob(str(full)) if Path(match).is_dir())
    if not folders:
        reader.problem("checkpoints", repr(pattern), f"a glob matching checkpoint folders (nothing matches {full})")
        return []
    points = []
    for folder in folders:
        adapter = (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file()
        why = None if adapter else model_folder_problem(folder)
        if adapter and adapters_of is None:
            why = f"{folder} holds a peft adapter: give the model it adapts as `id` beside `checkpoints`"
        if not adapter and adapters_of is not None:
            why = why or f"{folder} holds a whole model, not an adapter of `id` (leave `id` out for model checkpoints)"
        step = _folder_step(folder)
        if isinstance(step, str):
            why = why or step
        if why is not None:
            reader.problem("checkpoints", repr(pattern), f"checkpoint folders holding config.json and weights, or "
                           f"peft adapters of `id` ({why})")
            continue
        points.append(SeriesPoint(step, folder=str(folder)))
    return points


def _folder_step(folder: Path) -> int | str:
    """The training step of a checkpoint folder: its name's trailing number, else its trainer_state.json's
    ``global_step``; else why not (a missing file and a corrupt one are told apart)."""
    match = TRAILING_NUMBER.search(folder.name)
    if match:
        return int(match.group(1))
    state = folder / "trainer_state.json"
    if not state.is_file():
        return (f"{folder.name} neither ends in its training step (checkpoint-500) nor holds "
                "trainer_state.json with global_step")
    try:
        return int(json.loads(state.read_text(encoding="utf-8"))["global_step"])
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return f"{state} is corrupt: not readable JSON ({type(error).__name__}: {str(error).splitlines()[0]})"
    except (KeyError, TypeError):
        return f"{state} has no integer global_step"


def _revision_points(reader: TableReader, revisions: list, model_id: str | None) -> list[SeriesPoint]:
    if model_id is None or Path(model_id).is_dir():
        found = "no `id`" if model_id is None else f"a local folder id ({model_id} has no revisions)"
        reader.problem("revisions", found, "revisions beside the hub `id` they belong to")
        return []
    if not revisions or not all(isinstance(r, str) and r.strip() for r in revisions):
        reader.problem("revisions", repr(revisions), 'a non-empty array of hub revisions, e.g. ["step1000", "step2000"]')
        return []
    points = []
    for revision in revisions:
        match = TRAILING_NUMBER.search(revision)
        if match is None:
            reader.problem("revisions", repr(revision), 'revisions named with their training step at the end, '
                           'e.g. "step1000" (a trajectory is ordered by step)')
            continue
        points.append(SeriesPoint(int(match.group(1)), revision=revision))
    return points


def point_identity(model: ModelSpec, point: SeriesPoint) -> str:
    """What determines a checkpoint's weights: a folder's content, an adapter's on its base, a hub revision."""
    if point.revision is not None:
        return model_identity(model.id, point.revision)
    if model.id is not None:
        return f"{model_identity(model.id)}+{adapter_identity(point.folder)}"
    return model_identity(point.folder)


def declared_identity(model: ModelSpec) -> str:
    """A pre-trained model's identity, or its series': every checkpoint's, by step. A hub revision that does
    not exist is a ModelError naming the model's key."""
    try:
        if model.is_series:
            return ",".join(f"{point.step}={point_identity(model, point)}" for point in model.series)
        return model_identity(model.id, model.revision) + (f"+{adapter_identity(model.adapter)}" if model.adapter else "")
    except ModelError as error:
        key = "revisions" if model.is_series else "revision" if model.revision else "id"
        raise ModelError(f"models.{model.name}.{key}: {error}") from None
