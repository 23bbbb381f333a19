"""Memory of per-example metric state: what the store holds for N examples of MiniLM, against the formula.

Feeds N examples of the built-in ``nli`` validation data (the first N, repeated to reach N when the
split is smaller) through the embedded all-MiniLM-L6-v2, mean-pooled, into one pass's
``ExampleVectorStore`` as a run with mutual_knn, cknna and rsa on two models and a 20-draw
permutation null would: every instance asks, each model's vectors are stored once. Prints the
stored bytes, the formula N x (L + 1) x hidden x 8 per model, and what P + 1 unshared copies per
metric would have cost.

    python benchmarks/bench_per_example.py [--examples 300 3000] [--max-length 64]
"""
from __future__ import annotations

import argparse
import platform

import torch
from probekit.plugins.cknna import CKNNA
from probekit.plugins.mutual_knn import MutualKNN
from probekit.plugins.rsa import RSA

from probekit.data.batching import make_batches
from probekit.data.tasks import load_task
from probekit.engine.capture import forward
from probekit.metrics.base import MetricContext
from probekit.metrics.per_example import ExampleVectorStore, vector_bytes
from probekit.models.loading import LoadedModel, load_encoder, load_tokenizer, resolve

PERMUTATIONS = 20


def measure(n: int, encoder, tokenizer, max_length: int) -> tuple[int, int]:
    examples = load_task("nli", "validation")
    examples = (examples * (n // len(examples) + 1))[:n]
    a = LoadedModel("pretrained", encoder, tokenizer, "minilm")
    b = LoadedModel("seed1", encoder, tokenizer, "minilm-copy")  # a second model's store, same shapes
    store = ExampleVectorStore()
    context = MetricContext("a_vs_b", a, b, encoder.config.num_hidden_layers, torch.device("cpu"), examples=store)
    metrics = [cls(cls.Options(), context) for cls in (MutualKNN, CKNNA, RSA) for _ in range(1 + PERMUTATIONS)]
    generator = torch.Generator().manual_seed(0)
    for batch in make_batches(examples, tokenizer, batch_size=64, max_length=max_length):
        capture_a = forward(encoder, batch, frozenset({"hidden_states"}))
        # Side b's capture is another object (its store is another model's), computed once: the CPU is shared.
        capture_b = type(capture_a)(capture_a.hidden_states, None)
        for index, metric in enumerate(metrics):
            if index % (1 + PERMUTATIONS):
                metric.update_permuted(capture_a, capture_b, batch, generator)
            else:
                metric.update(capture_a, capture_b, batch)
    formula = 2 * vector_bytes(n, encoder.config.num_hidden_layers, encoder.config.hidden_size)
    return store.nbytes, formula


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, nargs="+", default=[300, 3000])
    parser.add_argument("--max-length", type=int, default=64, help="tokens per example (the store does not depend on it)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the shared 2-CPU VM is oversubscribed: one thread is fastest there
    source = resolve("minilm")
    encoder = load_encoder(source, "minilm", eager=False, device=torch.device("cpu"), dtype=torch.float32)
    tokenizer = load_tokenizer(source, "minilm")
    print(f"{platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{3 * (1 + PERMUTATIONS)} metric instances (mutual_knn, cknna, rsa x {1 + PERMUTATIONS}) on 2 models")
    for n in args.examples:
        stored, formula = measure(n, encoder, tokenizer, args.max_length)
        unshared = 3 * (1 + PERMUTATIONS) * formula
        print(f"N = {n:5d}: stored {stored / 2**20:8.2f} MiB, formula {formula / 2**20:8.2f} MiB "
              f"(ratio {stored / formula:.3f}); unshared copies would be {unshared / 2**20:9.1f} MiB "
              f"({unshared / stored:.0f}x)")


if __name__ == "__main__":
    main()
