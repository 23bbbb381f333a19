"""What confidence intervals cost: a run with ``[run] bootstrap = R`` against the same run without.

The embedded model (all-MiniLM-L6-v2) against a copy with perturbed weights (a
stand-in for a fine-tune, so nothing trains), one comparison, per metric family:

* moments: svcca, pwcca, procrustes, linear_cka (one CrossMoments per layer each);
* attention: attention_js (per-example means).

Each family is timed without intervals and with R replicates for every ``--replicates``,
best of ``--repeats``; prints the wall times and ``CI run / plain run`` (the issue's goal:
<= 1.5 at R = 200 for the moment metrics on a GPU). The cost has two parts: feeding
G groups instead of one stream (the same arithmetic in smaller pieces) and finalizing R
pooled replicates (R x the decompositions of a plain finalize), so the ratio grows
linearly in R with a slope set by the d x d eigen-decompositions per layer.

    python benchmarks/bench_bootstrap.py [--examples 300] [--replicates 50 200] [--groups 32] [--device cpu]
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from bench_probe import perturbed_copies, run_session
from probekit.models.loading import embedded_model_path, pick_threads, quiet_transformers

FAMILIES = {
    "moments": {"svcca": {}, "pwcca": {}, "procrustes": {}, "linear_cka": {}},
    "attention": {"attention_js": {}},
}


def document(paths: dict[str, Path], metrics: dict, args, replicates: int) -> dict:
    run = {"device": args.device, "batch_size": 32, "max_length": 128, "bootstrap_groups": args.groups}
    if replicates:
        run["bootstrap"] = replicates
    return {
        "name": "bench_bootstrap",
        "run": run,
        "models": {name: {"id": str(path)} for name, path in paths.items()},
        "data": {"eval": {"task": "nli", "split": "validation", "limit": args.examples}},
        "metrics": metrics,
        "comparisons": [{"a": "pretrained", "b": "finetuned", "data": "eval"}],
    }


def best(paths, metrics, args, replicates: int, folder: Path) -> float:
    return min(run_session(document(paths, metrics, args, replicates), folder / f"r{replicates}-{i}")
               for i in range(args.repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--replicates", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--groups", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    args = parser.parse_args()
    quiet_transformers()
    print(f"{platform.node()}: torch {torch.__version__}, {pick_threads(None)} threads, device {args.device}, "
          f"{args.examples} examples, {args.groups} groups")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = perturbed_copies(embedded_model_path(), ["pretrained", "finetuned"], folder, large=False)
        for family in args.families:
            metrics = FAMILIES[family]
            plain = best(paths, metrics, args, 0, folder / family)
            print(f"{family:9s} ({', '.join(metrics)}): plain {plain:.1f} s")
            for replicates in args.replicates:
                resampled = best(paths, metrics, args, replicates, folder / family)
                print(f"{family:9s} R = {replicates:4d}: {resampled:.1f} s, CI run / plain run = {resampled / plain:.2f}")


if __name__ == "__main__":
    main()
