"""Time a probe against its limit: one forward pass of each distinct model over the data.

Two study shapes on the embedded model (all-MiniLM-L6-v2) and copies of it with
perturbed weights (stand-ins for fine-tunes, so nothing trains here):

* seed: 3 models, 3 comparisons (pre-trained vs two seeds, seed vs seed), svcca + attention_js;
* dataset: 5 models, 6 comparisons (pre-trained vs four tasks, and three task pairs).

Three timings per shape, each the best of ``--repeats``:

* probe: ``probekit`` running the spec (planner, length-sorted batches), outputs off;
* limit: a bare loop written directly against transformers that loads each distinct
  model once and runs one forward pass per model per batch (the same batches,
  hidden states and attention maps returned, nothing computed on them);
* by hand: the limit plus the metrics' own arithmetic (the plugin classes fed
  directly from the same forward passes): the least a probe with these metrics costs;
* today: the order before the planner: each comparison on its own, both of its models
  loaded and run per batch, batches in data order.

Prints ``probe / limit`` (goal <= 1.15 on CPU), ``probe / by hand`` (what probekit's
orchestration adds) and ``today / probe`` (goal >= 1.8 on the seed shape).

    python benchmarks/bench_probe.py [--examples 300] [--repeats 2] [--device cpu] [--dtype float32]
    python benchmarks/bench_probe.py --shape bert-large --examples 300   # random BERT-large, GPU check
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

from probekit.api import to_toml
from probekit.data.batching import length_sorted_batches
from probekit.plugins.source_task.generator import load_task
from probekit.engine.session import Session
from probekit.metrics.base import MetricContext
from probekit.metrics.tensors import Capture
from probekit.plugins.attention_js import AttentionJS
from probekit.plugins.svcca import SVCCA
from probekit.models.loading import embedded_model_path, pick_threads, quiet_transformers

MAX_LENGTH = 128
BATCH = 32


def perturbed_copies(base: Path, names: list[str], folder: Path, large: bool) -> dict[str, Path]:
    """The base model and copies whose weights carry a small seeded perturbation, saved as folders."""
    tokenizer = AutoTokenizer.from_pretrained(base)
    paths = {}
    for seed, name in enumerate(names):
        torch.manual_seed(seed)
        if large:
            model = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=1024, num_hidden_layers=24,
                                         num_attention_heads=16, intermediate_size=4096))
        else:
            model = AutoModel.from_pretrained(base)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter) * 1e-3 * seed)
        paths[name] = folder / name
        model.save_pretrained(paths[name])
        tokenizer.save_pretrained(paths[name])
    return paths


def spec(paths: dict[str, Path], comparisons: list[tuple[str, str]], args, *, sort: bool = True) -> dict:
    return {
        "name": "bench_probe",
        "run": {"device": args.device, "dtype": args.dtype, "batch_size": BATCH, "max_length": MAX_LENGTH,
                "sort_by_length": sort},
        "models": {name: {"id": str(path)} for name, path in paths.items()},
        "data": {"eval": {"task": "nli", "split": "validation", "limit": args.examples}},
        "metrics": {"svcca": {}, "attention_js": {}},
        "comparisons": [{"a": a, "b": b, "data": "eval"} for a, b in comparisons],
    }


def run_session(document: dict, folder: Path) -> float:
    """Wall time of a probekit run of the spec, outputs (report, figures) off and no result reuse."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bench_probe.toml"
    path.write_text(to_toml(document))
    session = Session(plugins=["no:figures", "no:html", "no:report"], use_cache=False, reports=folder / "reports")
    started = time.perf_counter()
    session.run(path, output=folder / "run")
    return time.perf_counter() - started


def limit(paths: dict[str, Path], used: list[str], args) -> float:
    """Load each distinct model once, then one forward per model per batch: nothing else."""
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "auto": torch.float32}[args.dtype]
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(paths[used[0]])
    examples = load_task("nli", "validation")[: args.examples]
    batches = [b.to(device) for b in length_sorted_batches(examples, tokenizer, max_length=MAX_LENGTH,
                                                            batch_tokens=BATCH * MAX_LENGTH)]
    models = [AutoModel.from_pretrained(paths[name], attn_implementation="eager", dtype=dtype).to(device).eval()
              for name in used]
    with torch.inference_mode():
        for batch in batches:
            for model in models:
                model(**batch.model_inputs(), output_hidden_states=True, output_attentions=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def by_hand(paths: dict[str, Path], comparisons: list[tuple[str, str]], args) -> float:
    """The limit plus the metrics' own arithmetic, written by hand: what the probe must cost at least."""
    used = list(dict.fromkeys(side for pair in comparisons for side in pair))
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(paths[used[0]])
    examples = load_task("nli", "validation")[: args.examples]
    batches = list(length_sorted_batches(examples, tokenizer, max_length=MAX_LENGTH, batch_tokens=BATCH * MAX_LENGTH))
    models = {name: AutoModel.from_pretrained(paths[name], attn_implementation="eager").eval() for name in used}
    layers = models[used[0]].config.num_hidden_layers
    metrics = [(a, b, cls(cls.Options(), MetricContext(f"{a}_vs_{b}", None, None, layers, torch.device("cpu"))))
               for a, b in comparisons for cls in (SVCCA, AttentionJS)]
    with torch.inference_mode():
        for batch in batches:
            outputs = {name: model(**batch.model_inputs(), output_hidden_states=True, output_attentions=True)
                       for name, model in models.items()}
            captures = {name: Capture(o.hidden_states, o.attentions) for name, o in outputs.items()}
            for a, b, metric in metrics:
                metric.update(captures[a], captures[b], batch)
    for _, _, metric in metrics:
        metric.finalize()
    return time.perf_counter() - started


def best(function, repeats: int) -> float:
    return min(function() for _ in range(repeats))


def measure(shape: str, names: list[str], comparisons: list[tuple[str, str]], args, root: Path) -> dict[str, float]:
    paths = perturbed_copies(Path(args.base), names, root / shape, large=args.shape == "bert-large")
    used = list(dict.fromkeys(side for pair in comparisons for side in pair))
    probe = best(lambda: run_session(spec(paths, comparisons, args), root / shape / "probe"), args.repeats)
    bare = best(lambda: limit(paths, used, args), args.repeats)
    hand = best(lambda: by_hand(paths, comparisons, args), args.repeats) if args.device == "cpu" else float("nan")
    today = best(lambda: sum(run_session(spec(paths, [pair], args, sort=False), root / shape / "today")
                             for pair in comparisons), args.repeats) if not args.skip_today else float("nan")
    return {"probe": probe, "limit": bare, "hand": hand, "today": today}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "auto"])
    parser.add_argument("--shape", default="minilm", choices=["minilm", "bert-large"])
    parser.add_argument("--skip-today", action="store_true", help="only probe and limit (the GPU check)")
    parser.add_argument("--base", default=str(embedded_model_path()))
    args = parser.parse_args()
    quiet_transformers()
    torch.set_num_threads(pick_threads(None))
    os.environ.setdefault("PROBEKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    print(f"machine: {platform.node()} {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch "
          f"threads, torch {torch.__version__}, device {args.device}, dtype {args.dtype}")
    print(f"sizes: {args.shape}, {args.examples} examples x <= {MAX_LENGTH} tokens, batches of <= "
          f"{BATCH * MAX_LENGTH} tokens, best of {args.repeats}")
    shapes = {
        "seed": (["pretrained", "seed1", "seed2"], [("pretrained", "seed1"), ("pretrained", "seed2"), ("seed1", "seed2")]),
        "dataset": (["pretrained", "nli", "entailment", "sentiment", "paraphrase"],
                    [("pretrained", "nli"), ("pretrained", "entailment"), ("pretrained", "sentiment"),
                     ("pretrained", "paraphrase"), ("nli", "entailment"), ("sentiment", "paraphrase")]),
    }
    with tempfile.TemporaryDirectory() as folder:
        for shape, (names, comparisons) in shapes.items():
            times = measure(shape, names, comparisons, args, Path(folder))
            print(f"{shape}: {len(names)} models, {len(comparisons)} comparisons: probe {times['probe']:.1f} s, "
                  f"limit {times['limit']:.1f} s, by hand {times['hand']:.1f} s, today {times['today']:.1f} s")
            print(f"  probe / limit = {times['probe'] / times['limit']:.2f}, probe / by hand = "
                  f"{times['probe'] / times['hand']:.2f}, today / probe = {times['today'] / times['probe']:.2f}")


if __name__ == "__main__":
    main()
