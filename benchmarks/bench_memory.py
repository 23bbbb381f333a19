"""Peak memory of a probe: at 1x and 10x the examples, and at 6 vs 24 layers.

Each configuration runs in its own subprocess: random tiny BERTs (hidden 64, 4 heads,
built from a config), examples of the built-in ``nli`` validation data (10x: the same
examples ten times, so the lengths, and with them the largest batch, stay the same),
svcca + attention_js, two models, one comparison. Memory is the peak resident set size of the probe minus the
resident size after the imports (Linux ``ru_maxrss``). Prints the ratios; goal: 10x
the examples within 1.1x the memory (metrics stream: memory must not grow with the data).

    python benchmarks/bench_memory.py [--examples 100]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

CHILD = textwrap.dedent('''
    import csv, json, resource, sys
    from pathlib import Path
    from probekit.api import to_toml
    from probekit.plugins.source_task.generator import load_task
    from probekit.engine.session import Session
    from probekit.testing.fixtures import save_tiny_model
    folder, examples, layers, copies = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    with (folder / "eval.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "text_pair", "label"])
        for _ in range(copies):
            writer.writerows([e.text, e.text_pair, e.label] for e in load_task("nli", "validation")[:examples])
    config = dict(hidden_size=64, num_attention_heads=4, intermediate_size=128, num_hidden_layers=layers,
                  max_position_embeddings=128)
    a, b = save_tiny_model(folder / "a", seed=0, **config), save_tiny_model(folder / "b", seed=1, **config)
    spec = {"name": "bench_memory", "run": {"device": "cpu", "max_length": 128, "batch_size": 32},
            "models": {"a": {"id": str(a)}, "b": {"id": str(b)}},
            "data": {"eval": {"path": "eval.csv", "text_pair": "text_pair"}},
            "metrics": {"svcca": {"tokens": "mean"}, "attention_js": {}},
            "comparisons": [{"a": "a", "b": "b", "data": "eval"}]}
    (folder / "spec.toml").write_text(to_toml(spec))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    Session(plugins=["no:figures", "no:html", "no:report"], use_cache=False).run(folder / "spec.toml", output=folder / "run")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"before_kb": before, "peak_kb": peak}))
''')


def probe_memory(examples: int, layers: int, copies: int = 1) -> float:
    """MB the probe added to the process at its peak."""
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run([sys.executable, "-c", CHILD, folder, str(examples), str(layers), str(copies)], capture_output=True,
                              text=True, check=True, env={"PROBEKIT_DISABLE_PLUGIN_AUTOLOAD": "1", "HF_HUB_OFFLINE": "1",
                                                          "PATH": "/usr/bin:/bin", **{k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}})
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return (result["peak_kb"] - result["before_kb"]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=100)
    args = parser.parse_args()
    print(f"machine: {platform.node()} {platform.machine()}, CPU; tiny BERT hidden 64, 4 heads, <= 128 tokens, "
          "batches of 32 sorted by length")
    small, large = probe_memory(args.examples, 6), probe_memory(args.examples, 6, copies=10)
    deep = probe_memory(args.examples, 24)
    print(f"6 layers: {args.examples} examples {small:.0f} MB, {10 * args.examples} examples {large:.0f} MB: "
          f"10x examples / 1x = {large / small:.2f}")
    print(f"{args.examples} examples: 6 layers {small:.0f} MB, 24 layers {deep:.0f} MB: 24 / 6 layers = {deep / small:.2f}")


if __name__ == "__main__":
    main()
