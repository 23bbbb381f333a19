"""Fine-tuning throughput: probekit's trainer against a minimal plain-torch loop, across thread counts.

Both train the embedded model (all-MiniLM-L6-v2) with a fresh classification head
on the same examples of the built-in ``nli`` task: the same batches (size 16,
examples in the same shuffled order), AdamW, the slanted triangular schedule, float32
(bf16 autocast on a GPU that has it, as probekit does), model load and save
included in both. Prints examples per second and ``probekit / plain`` (goal >= 0.95
at the plain loop's best thread count).

    python benchmarks/bench_finetune.py [--examples 256] [--threads 1 2] [--repeats 2] [--device cpu]
"""
from __future__ import annotations

import argparse
import math
import platform
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from probekit.data.batching import make_batches
from probekit.data.example import label_names
from probekit.plugins.source_task.generator import load_task
from probekit.models.finetune import FinetuneJob, FinetuneSettings, finetune, slanted_triangular, training_precision
from probekit.models.loading import embedded_model_path, model_identity, quiet_transformers

BATCH = 16
MAX_LENGTH = 128


def plain_loop(examples, settings: FinetuneSettings, device: torch.device, folder: Path) -> None:
    """What a researcher would write by hand: load, train one epoch, save."""
    base = embedded_model_path()
    labels = label_names(examples)
    tokenizer = AutoTokenizer.from_pretrained(base)
    torch.manual_seed(settings.seed)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(labels), dtype=torch.float32)
    model.to(device).train()
    steps = math.ceil(len(examples) / settings.batch_size) * settings.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: slanted_triangular(step, steps, settings.warmup, settings.ratio))
    order = torch.Generator().manual_seed(settings.seed)
    autocast = training_precision(device) == "bf16-autocast"
    for _ in range(settings.epochs):
        shuffled = [examples[i] for i in torch.randperm(len(examples), generator=order).tolist()]
        for batch in make_batches(shuffled, tokenizer, batch_size=settings.batch_size, max_length=MAX_LENGTH,
                                  labels=labels):
            batch = batch.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = model(**batch.model_inputs(), labels=batch.labels).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def probekit_trainer(examples, settings: FinetuneSettings, device: torch.device, folder: Path) -> None:
    base = str(embedded_model_path())
    job = FinetuneJob("bench", base, model_identity("minilm"), examples, [], settings,
                      precision=training_precision(device))
    finetune(job, folder, device)


def timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    quiet_transformers()
    device = torch.device(args.device)
    examples = load_task("nli", "train")[: args.examples]
    settings = FinetuneSettings(lr=1e-4, batch_size=BATCH, epochs=1, max_length=MAX_LENGTH)
    print(f"machine: {platform.node()} {platform.machine()}, torch {torch.__version__}, device {device}, "
          f"precision {training_precision(device)}")
    print(f"sizes: all-MiniLM-L6-v2, {args.examples} examples, batch {BATCH}, <= {MAX_LENGTH} tokens, 1 epoch")
    rates = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        plain = ours = math.inf
        for repeat in range(args.repeats):  # interleaved, best of each: the machine's load drifts
            with tempfile.TemporaryDirectory() as folder:
                plain = min(plain, timed(plain_loop, examples, settings, device, Path(folder) / f"plain{repeat}"))
                ours = min(ours, timed(probekit_trainer, examples, settings, device, Path(folder) / f"ours{repeat}"))
        rates[threads] = (args.examples / plain, args.examples / ours)
        print(f"{threads} threads: plain {rates[threads][0]:.1f} examples/s, probekit {rates[threads][1]:.1f} "
              f"examples/s, probekit / plain = {plain / ours:.2f}")
    best = max(rates, key=lambda t: rates[t][0])
    print(f"best plain thread count {best}: probekit there / plain there = {rates[best][1] / rates[best][0]:.2f}; "
          f"probekit best / plain best = {max(r[1] for r in rates.values()) / rates[best][0]:.2f}")


if __name__ == "__main__":
    main()
