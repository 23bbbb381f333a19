"""The main job's wall time, probe plus bootstrap replicates, and the bootstrap's share of it.

Runs ``specs/seed_consistency.toml`` as written (its [run], data, metrics and comparisons: 300
``nli`` examples, svcca + attention_js, 100 replicates in 20 groups) with its two fine-tunes
replaced by copies of the embedded model with seeded perturbed weights, saved as folders: what a
``--fresh`` run with cached fine-tunes does after loading them is the same arithmetic. Prints the
wall time, the time spent drawing bootstrap replicates (``Resampled.finalize`` and
``resampling.draw_together`` where it exists) and their ratio, and writes every value (with its
interval) to ``--values`` as JSON, so two versions of probekit can be compared value by value:

    python benchmarks/bench_seed_spec.py [--examples 300] [--replicates 100] --values after.json
    PYTHONPATH=<older checkout> python benchmarks/bench_seed_spec.py --values before.json
    python benchmarks/bench_seed_spec.py --compare before.json after.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import tomllib
from pathlib import Path

import torch

from bench_probe import perturbed_copies
from probekit.api import to_toml
from probekit.engine import probe, resampling
from probekit.engine.session import Session
from probekit.models.loading import embedded_model_path, quiet_transformers

SPEC = Path(__file__).resolve().parent.parent / "specs" / "seed_consistency.toml"


def stand_in_spec(paths: dict[str, Path], examples: int | None, replicates: int | None) -> dict:
    document = tomllib.loads(SPEC.read_text())
    document["models"] = {name: {"id": str(path)} for name, path in paths.items()}
    document.pop("finetune", None)
    if examples:
        document["data"]["nli_eval"]["limit"] = examples
    if replicates:
        document["run"]["bootstrap"] = replicates
    return document


class Stopwatch:
    """Time spent inside the wrapped functions (outermost calls only)."""

    def __init__(self) -> None:
        self.seconds, self.depth = 0.0, 0

    def wrap(self, function):
        def timed(*args, **kwargs):
            self.depth += 1
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.depth -= 1
                if self.depth == 0:
                    self.seconds += time.perf_counter() - started
        return timed


def run(document: dict, folder: Path) -> tuple[float, float, list[dict]]:
    watch = Stopwatch()
    resampling.Resampled.finalize = watch.wrap(resampling.Resampled.finalize)
    if hasattr(probe, "draw_together"):
        probe.draw_together = watch.wrap(probe.draw_together)
    path = folder / "seed_consistency.toml"
    path.write_text(to_toml(document))
    session = Session(plugins=["no:figures", "no:report"], use_cache=False, reports=folder / "reports")
    started = time.perf_counter()
    table = session.run(path, output=folder / "run").table
    wall = time.perf_counter() - started
    keep = ("comparison", "metric", "layer", "head", "value", "ci_low", "ci_high")
    return wall, watch.seconds, [{k: r.get(k) for k in keep} for r in table.to_pylist()]


def compare(before: Path, after: Path) -> None:
    old, new = (json.loads(p.read_text())["values"] for p in (before, after))
    key = lambda r: (r["comparison"], r["metric"], r["layer"], r["head"])  # noqa: E731
    new_by = {key(r): r for r in new}
    worst = {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    for r in old:
        for field in worst:
            if r[field] is not None:
                worst[field] = max(worst[field], abs(r[field] - new_by[key(r)][field]))
    print(f"{len(old)} rows; largest |after - before|: " + ", ".join(f"{f} {v:.2e}" for f, v in worst.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values", type=Path, help="write the run's values here (JSON)")
    parser.add_argument("--compare", type=Path, nargs=2, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--examples", type=int, help="evaluation examples (the spec: 300)")
    parser.add_argument("--replicates", type=int, help="bootstrap replicates (the spec: 100)")
    args = parser.parse_args()
    if args.compare:
        compare(*args.compare)
        return
    os.environ.setdefault("PROBEKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    quiet_transformers()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = perturbed_copies(embedded_model_path(), ["pretrained", "seed1", "seed2"], folder, large=False)
        load = os.getloadavg()
        wall, bootstrap, values = run(stand_in_spec(paths, args.examples, args.replicates), folder)
    print(f"{platform.node()}: torch {torch.__version__}, load average {load[0]:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"seed spec (stand-in fine-tunes): wall {wall:.1f} s, bootstrap {bootstrap:.1f} s "
          f"({bootstrap / wall:.0%} of the wall time)")
    if args.values:
        args.values.write_text(json.dumps({"wall": wall, "bootstrap": bootstrap, "values": values}))


if __name__ == "__main__":
    main()
