"""How far bfloat16 forward passes move each metric, per layer, from float32 forwards.

Runs a spec twice, with ``[run] dtype`` float32 and bfloat16 (metrics accumulate in
float64 either way), and prints per metric and layer the largest absolute change
over the spec's comparisons and the change relative to the float32 value.

    python benchmarks/bench_precision.py [specs/seed_consistency.toml] [--device cpu]
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

from probekit.engine.session import Session


def values(spec: Path, dtype: str, device: str, folder: Path) -> dict[tuple[str, str, int], float]:
    session = Session(plugins=["no:figures", "no:html", "no:report"], overrides={"dtype": dtype, "device": device},
                      use_cache=False)
    table = session.run(spec, output=folder / dtype).table
    return {(r["comparison"], r["metric"], r["layer"]): r["value"] for r in table.to_pylist() if r["head"] is None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", nargs="?", default="specs/seed_consistency.toml", type=Path)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    os.environ.setdefault("PROBEKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    print(f"machine: {platform.node()} {platform.machine()}, torch {torch.__version__}, device {args.device}")
    with tempfile.TemporaryDirectory() as folder:
        full = values(args.spec, "float32", args.device, Path(folder))
        half = values(args.spec, "bfloat16", args.device, Path(folder))
    worst: dict[tuple[str, int], tuple[float, float]] = defaultdict(lambda: (0.0, 0.0))
    for (comparison, metric, layer), value in full.items():
        change = abs(half[(comparison, metric, layer)] - value)
        relative = change / abs(value) if value else float("inf") if change else 0.0
        old = worst[(metric, layer)]
        worst[(metric, layer)] = (max(old[0], change), max(old[1], relative))
    print(f"{args.spec}: bfloat16 vs float32 forwards, largest change over its comparisons")
    print("metric          layer   |change|   change / value")
    for (metric, layer), (change, relative) in sorted(worst.items()):
        print(f"{metric:<15} {layer:>5}   {change:.2e}   {relative:.1%}")


if __name__ == "__main__":
    main()
