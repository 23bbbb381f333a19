"""Peak memory and time of attention_js with eager maps vs rows recomputed from queries and keys.

Two random models of one shape (seeds 0 and 1), one example of T random tokens. "maps": both
models run with eager attention and return every layer's maps (what attention metrics needed
before, and what ``[run] attention = "maps"`` still does); "recomputed": both run with SDPA
recording each layer's queries and keys, and JS is computed ``--chunk`` query rows at a time.
Each (path, T) runs in its own subprocess; memory is what the forwards plus the statistic added
at their peak (CPU: ``ru_maxrss`` minus the resident size before them; CUDA:
``max_memory_allocated`` minus what was allocated before). Prints the ratios, and the largest
difference of the per-head values between the paths where both ran. A maps run whose estimated
size exceeds ``--max-eager-gb`` is skipped and says so.

    python benchmarks/bench_attention.py [--shape tiny-llama] [--tokens 512 1024 2048 4096] [--device cpu]

Shapes: ``tiny-llama`` (4 layers, 8 heads, 2 key-value heads, hidden 256), ``bert-large`` (24 layers,
16 heads, hidden 1024: the paper's model), ``llama-1b`` (Llama-3.2-1B's layers: 16 layers, 32 heads, 8
key-value heads, hidden 2048; a 32k vocabulary). The large shapes keep transformers' initialisation (0.02):
wider random weights make 24 layers chaotic, and the float32 rounding by which SDPA's outputs differ from
eager attention's grows layer by layer into the later layers' attention (the rows themselves are recomputed
exactly: tests/integration/test_families.py).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap

SHAPES = {
    "tiny-llama": ("LlamaConfig", dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=8,
                                       num_key_value_heads=2, intermediate_size=512, vocab_size=1000,
                                       initializer_range=0.2)),  # sharper attention than 0.02's near-uniform rows
    "bert-large": ("BertConfig", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                      intermediate_size=4096, vocab_size=30522)),
    "llama-1b": ("LlamaConfig", dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32,
                                     num_key_value_heads=8, intermediate_size=8192, vocab_size=32000)),
}

CHILD = textwrap.dedent('''
    import json, resource, sys, time
    import torch, transformers
    from probekit.engine.capture import forward
    from probekit.metrics.attention import mean_over_rows, row_js
    from probekit.metrics.tensors import Batch
    from probekit.models.attention import RECOMPUTED
    from probekit.models.loading import quiet_transformers
    config_class, settings, path, tokens, device, dtype, chunk = json.loads(sys.argv[1])
    quiet_transformers()
    device, dtype = torch.device(device), getattr(torch, dtype)
    settings = dict(settings, max_position_embeddings=max(tokens, 512))
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        config = getattr(transformers, config_class)(**settings)
        with device:  # built where it runs: a 1B model's random weights drawn on the GPU, not the CPU
            model = transformers.AutoModel.from_config(config, attn_implementation="eager", dtype=dtype).eval()
        if path == "recomputed":
            model.set_attn_implementation(RECOMPUTED)
        models.append(model)
    ids = torch.randint(5, settings["vocab_size"], (1, tokens), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    batch = Batch(ids, mask, torch.zeros_like(ids)).to(device)
    needs = frozenset({"attention_rows"})

    def measure():
        a, b = (forward(m, batch, needs, chunk=chunk if path == "recomputed" else None) for m in models)
        return torch.stack([mean_over_rows(row_js(a.rows(l), b.rows(l), batch.attention_mask), batch.attention_mask)[0]
                            for l in range(a.attention_layers)])

    if device.type == "cuda":
        torch.cuda.synchronize(); before = torch.cuda.memory_allocated(); torch.cuda.reset_peak_memory_stats()
    else:
        before = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() // 1024
    start = time.perf_counter()
    values = measure()
    if device.type == "cuda":
        torch.cuda.synchronize(); peak = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    seconds = time.perf_counter() - start
    print(json.dumps({"peak_mb": peak, "seconds": seconds, "values": values.cpu().tolist()}))
''')


def eager_bytes(settings: dict, tokens: int, element: int) -> int:
    """What the maps path holds at its peak, roughly: both models' maps and one layer's float64 JS temporaries."""
    maps = settings["num_hidden_layers"] * settings["num_attention_heads"] * tokens**2
    return 2 * maps * element + 3 * settings["num_attention_heads"] * tokens**2 * 8


def run_one(shape: str, path: str, tokens: int, device: str, dtype: str, chunk: int) -> dict:
    config_class, settings = SHAPES[shape]
    argument = json.dumps([config_class, settings, path, tokens, device, dtype, chunk])
    environment = {**os.environ, "PROBEKIT_DISABLE_PLUGIN_AUTOLOAD": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", CHILD, argument], capture_output=True, text=True, env=environment,
                          check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=SHAPES, default="tiny-llama")
    parser.add_argument("--tokens", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--chunk", type=int, default=128, help="query rows per step of the recomputed path")
    parser.add_argument("--max-eager-gb", type=float, default=10.0, help="skip the maps path beyond this estimate")
    args = parser.parse_args()
    element = 2 if args.dtype in ("bfloat16", "float16") else 4
    print(f"bench_attention: {args.shape}, 1 example, {args.device} {args.dtype}, chunk {args.chunk}; "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"{'T':>6} | {'maps MB':>9} | {'recomputed MB':>13} | {'memory ratio':>12} | {'maps s':>7} | "
          f"{'recomputed s':>12} | {'time ratio':>10} | max |diff|")
    for tokens in args.tokens:
        new = run_one(args.shape, "recomputed", tokens, args.device, args.dtype, args.chunk)
        estimate = eager_bytes(SHAPES[args.shape][1], tokens, element) / 2**30
        old = {"error": f"skipped: needs ~{estimate:.1f} GB > --max-eager-gb {args.max_eager_gb:g}"} \
            if estimate > args.max_eager_gb else run_one(args.shape, "maps", tokens, args.device, args.dtype, args.chunk)
        if "error" in new:
            print(f"{tokens:>6} | recomputed failed: {new['error']}")
            continue
        if "error" in old:
            print(f"{tokens:>6} | {'-':>9} | {new['peak_mb']:>13.1f} | {'-':>12} | {'-':>7} | "
                  f"{new['seconds']:>12.2f} | {'-':>10} | maps {old['error']}")
            continue
        diff = max(abs(x - y) for row_a, row_b in zip(old["values"], new["values"], strict=True)
                   for x, y in zip(row_a, row_b, strict=True))
        print(f"{tokens:>6} | {old['peak_mb']:>9.1f} | {new['peak_mb']:>13.1f} | "
              f"{old['peak_mb'] / max(new['peak_mb'], 1e-9):>11.1f}x | {old['seconds']:>7.2f} | "
              f"{new['seconds']:>12.2f} | {old['seconds'] / new['seconds']:>9.2f}x | {diff:.1e}")


if __name__ == "__main__":
    main()
