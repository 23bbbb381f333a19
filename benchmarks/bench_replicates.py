"""The bootstrap's share of the seed spec, alone: its replicates, before and after drawing them in bulk.

Three models' hidden states of the seed spec's shape (7 layers x 384 neurons, ``--tokens`` datapoints,
synthetic and correlated: no forward pass), the seed spec's three comparisons with svcca, ``--replicates``
replicates in 20 groups. Times what a run does after its forward passes: every comparison's
``Resampled.finalize`` (and ``resampling.draw_together`` first, where it exists). Run it against two
checkouts to compare:

    python benchmarks/bench_replicates.py
    PYTHONPATH=<older checkout> python benchmarks/bench_replicates.py
"""
from __future__ import annotations

import argparse
import os
import time
import warnings
from dataclasses import dataclass

import torch

from probekit.engine import resampling
from probekit.engine.resampling import Resampled, Resampling
from probekit.metrics.options import parse_options
from probekit.metrics.tensors import Batch, Capture
from probekit.plugins.svcca import SVCCA

LAYERS, WIDTH = 7, 384
COMPARISONS = (("pretrained", "seed1"), ("pretrained", "seed2"), ("seed1", "seed2"))


@dataclass
class Context:
    num_layers: int = LAYERS - 1
    causal: bool = False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=3000)
    parser.add_argument("--replicates", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(args.tokens, 1, WIDTH, generator=generator) * torch.linspace(0.05, 2, WIDTH)
    states = {name: tuple(base + 0.1 * (i + layer) * torch.randn(args.tokens, 1, WIDTH, generator=generator)
                          for layer in range(LAYERS)) for i, name in enumerate(("pretrained", "seed1", "seed2"))}
    options, _ = parse_options(SVCCA.Options, {})
    settings = Resampling(replicates=args.replicates, groups=20)
    metrics = [Resampled(SVCCA, options, Context(), args.tokens, settings) for _ in COMPARISONS]
    mask = torch.ones(args.tokens, 1, dtype=torch.long)
    for start in range(0, args.tokens, 500):
        part = torch.arange(start, min(start + 500, args.tokens))
        captures = {name: Capture(tuple(h[part] for h in hidden), None) for name, hidden in states.items()}
        batch = Batch(torch.zeros(len(part), 1, dtype=torch.long), mask[part], torch.zeros_like(mask[part]))
        for (a, b), metric in zip(COMPARISONS, metrics, strict=True):
            metric.update(captures[a], captures[b], batch)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if hasattr(resampling, "draw_together"):
            resampling.draw_together(metrics)
        rows = [metric.finalize() for metric in metrics]
    seconds = time.perf_counter() - started
    print(f"{resampling.__file__}: {args.replicates} replicates x 3 comparisons x {LAYERS} layers of svcca: "
          f"{seconds:.1f} s (load average {load:.1f} -> {os.getloadavg()[0]:.1f}); "
          f"intervals: " + " ".join(f"{r.ci_low:.9f},{r.ci_high:.9f}" for r in rows[2][:3]))


if __name__ == "__main__":
    main()
