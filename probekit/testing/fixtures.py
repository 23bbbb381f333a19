"""Tiny models and data for testing metrics and specs in seconds, offline.

For plugin authors::

    from probekit.testing.fixtures import run_metric, tiny_batches, tiny_model_pair

    a, b = tiny_model_pair()
    rows = run_metric(MyMetric, a, b, tiny_batches(a.tokenizer), some_option=3)

With pytest the same objects are fixtures (``tiny_model_pair``, ``tiny_batches``,
``tiny_tokenizer``) from probekit's pytest plugin. :func:`save_tiny_model` and
:func:`write_tiny_csv` write a model folder and a data file that a spec can name
(``[models.x] id = "./tiny_a"``, ``[data.d] path = "tiny.csv"``).

The models are random BERT encoders (hidden size 32, 2 layers, 2 heads, eager
attention) over a word-level vocabulary of a few dozen words: nothing is downloaded.
"""
from __future__ import annotations

import csv
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from probekit.api import Results, to_toml
from probekit.data.batching import make_batches
from probekit.data.example import Example
from probekit.engine.capture import forward
from probekit.metrics.base import Metric, MetricContext, Row
from probekit.metrics.checks import check_metric_class
from probekit.metrics.options import parse_options
from probekit.metrics.tensors import Batch
from probekit.models.families import family_of
from probekit.models.loading import LoadedModel, quiet_transformers
from probekit.results.schema import RowContext, build_table, to_records

WORDS = (
    "the a one this that cat dog bird fish horse mouse man woman child teacher farmer sat ran saw ate liked "
    "found made took gave on under near over big small red green old new quick slow happy sad and but very "
    "not park river house road tree garden morning night"
).split()
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
TINY_CONFIG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                   max_position_embeddings=64)


def tiny_tokenizer(words: Iterable[str] = WORDS):
    """A BERT-style word-level tokenizer ([CLS] text [SEP], padding with [PAD]) over ``words``."""
    vocab = {token: i for i, token in enumerate(dict.fromkeys([*SPECIAL_TOKENS, *words]))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=TINY_CONFIG["max_position_embeddings"])


def tiny_encoder(vocab_size: int, *, seed: int = 0, **config: Any):
    """A random BERT encoder (``transformers.BertModel``) in eval mode, eager attention."""
    quiet_transformers()
    settings = {**TINY_CONFIG, **config}
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = BertModel(BertConfig(vocab_size=vocab_size, attn_implementation="eager", **settings))
    finally:
        torch.random.set_rng_state(generator_state)
    return model.eval()


def tiny_model(name: str = "a", *, seed: int = 0, tokenizer=None, **config: Any) -> LoadedModel:
    """A tiny random encoder wrapped as the runner wraps models (:class:`probekit.models.loading.LoadedModel`)."""
    tokenizer = tokenizer or tiny_tokenizer()
    encoder = tiny_encoder(len(tokenizer), seed=seed, **config)
    return LoadedModel(name, encoder, tokenizer, identity=f"tiny:{seed}:{sorted(config.items())}")


def tiny_model_pair(seed_a: int = 0, seed_b: int = 1, *, tokenizer=None, **config: Any) -> tuple[LoadedModel, LoadedModel]:
    """Two tiny encoders with one tokenizer; the same seed twice gives identical models."""
    tokenizer = tokenizer or tiny_tokenizer()
    return (tiny_model("a", seed=seed_a, tokenizer=tokenizer, **config),
            tiny_model("b", seed=seed_b, tokenizer=tokenizer, **config))


def tiny_examples(n: int = 48, *, seed: int = 0, pairs: bool = False) -> list[Example]:
    """``n`` labelled examples of 4-10 words each (with a second sentence when ``pairs``)."""
    rng = random.Random(seed)

    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10)))

    return [Example(sentence(), sentence() if pairs else None, i % 2) for i in range(n)]


def tiny_batches(tokenizer=None, n_examples: int = 48, batch_size: int = 16, *, seed: int = 0,
                 pairs: bool = False) -> list[Batch]:
    """A few tokenized batches (about 7 real tokens per example: ~350 tokens by default)."""
    tokenizer = tokenizer or tiny_tokenizer()
    return list(make_batches(tiny_examples(n_examples, seed=seed, pairs=pairs), tokenizer,
                             batch_size=batch_size, max_length=TINY_CONFIG["max_position_embeddings"]))


def save_tiny_model(folder: str | Path, *, seed: int = 0, **config: Any) -> Path:
    """Write a tiny random model and its tokenizer to ``folder`` (a spec's ``[models.x] id = "<folder>"``)."""
    folder = Path(folder)
    tokenizer = tiny_tokenizer()
    tiny_encoder(len(tokenizer), seed=seed, **config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def trainer_checkpoints(base: str | Path, tokenizer, examples: Sequence[Example], out: str | Path, *, steps: int,
                        every: int, lr: float, max_length: int, padding: bool | str = False) -> Path:
    """A real training trajectory: the model at ``base`` fine-tuned as a classifier by transformers' ``Trainer``
    on ``examples`` (batch 16, CPU, seed 0), saving ``out/checkpoint-<every>``, ... (a spec's ``checkpoints``)."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

    labels = sorted({example.label for example in examples})
    data = Dataset.from_dict({"text": [e.text for e in examples], "label": [labels.index(e.label) for e in examples]})
    data = data.map(lambda rows: tokenizer(rows["text"], padding=padding, max_length=max_length, truncation=True),
                    batched=True)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(labels))
    arguments = TrainingArguments(output_dir=str(out), max_steps=steps, save_steps=every, learning_rate=lr,
                                  per_device_train_batch_size=16, report_to=[], use_cpu=True, seed=0,
                                  save_only_model=True, logging_strategy="no", disable_tqdm=True)
    Trainer(model=model, args=arguments, train_dataset=data, processing_class=tokenizer).train()
    return Path(out)


def write_tiny_csv(path: str | Path, n: int = 48, *, seed: int = 0) -> Path:
    """A CSV file with ``text`` and ``label`` columns (a spec's ``[data.d] path = "<file>"``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows([example.text, example.label] for example in tiny_examples(n, seed=seed))
    return path


def run_metric(metric_cls: type[Metric], model_a: LoadedModel, model_b: LoadedModel, batches: Sequence[Batch],
               *, comparison: str = "a_vs_b", device: str = "cpu", **options: Any) -> list[Row]:
    """Do what the runner does for one comparison and one metric: validate ``options`` as a spec's
    ``[metrics.x]`` table would be, run both models on each batch, ``update``, then ``finalize``."""

    problems = check_metric_class(metric_cls)
    if problems:
        raise TypeError("; ".join(problems))
    parsed, option_problems = parse_options(metric_cls.Options, options)
    if option_problems:
        raise ValueError("; ".join(f"{p.key or 'options'}: found {p.found}; expected {p.expected}"
                                   for p in option_problems))
    context = MetricContext(comparison, model_a, model_b, model_a.num_layers, torch.device(device),
                            causal=any(family_of(m.encoder).causal for m in (model_a, model_b)))
    metric = metric_cls(parsed, context)
    needs = frozenset(metric_cls.needs)
    for batch in batches:
        batch = batch.to(device)
        capture_a = forward(model_a.encoder.to(device), batch, needs, model_a.name)
        capture_b = forward(model_b.encoder.to(device), batch, needs, model_b.name)
        metric.update(capture_a, capture_b, batch)
    return metric.finalize()


def rows_to_results(rows: Iterable[Row], metric: str, *, comparison: str = "a_vs_b", spec: str = "test"):
    """Rows from :func:`run_metric` as a :class:`probekit.api.Results`, so the assertion helpers apply."""
    context = RowContext("test", spec, comparison, "a", "b", None, None, "tiny", metric)
    return Results(build_table(to_records(context, rows), {"run_id": "test", "spec_name": spec}))


def tiny_spec(folder: str | Path, models: Sequence[str | Path] | None = None, *, name: str = "tiny",
              examples: int = 40, **sections: Any) -> Path:
    """A complete spec, written to ``folder/<name>.toml``: two tiny models (``models``, else two saved into
    ``folder``) compared with ``svcca`` on a CSV of ``examples`` tiny examples (``folder/eval.csv``).

    Each keyword replaces that top-level key (``metrics={"linear_cka": {}}``, ``comparisons=[...]``,
    ``expect=[...]``, ``plugins=[...]``, ``models={...}``, ``data={...}``); ``run`` and ``finetune`` merge
    into the defaults (``run={"bootstrap": 20}`` keeps ``batch_size = 8``). The tests' one spec builder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if models is None:
        models = (save_tiny_model(folder / "tiny_a", seed=0), save_tiny_model(folder / "tiny_b", seed=1))
    write_tiny_csv(folder / "eval.csv", examples)
    document: dict[str, Any] = {
        "name": name,
        "run": {"batch_size": 8, "max_length": 16, **sections.pop("run", {})},
        "models": {"a": {"id": str(models[0])}, "b": {"id": str(models[1])}},
        "data": {"eval": {"path": "eval.csv"}},
        "metrics": {"svcca": {}},
        "comparisons": [{"a": "a", "b": "b", "data": "eval"}],
    }
    if "finetune" in sections:
        document["finetune"] = sections.pop("finetune")
    document.update(sections)
    path = folder / f"{name}.toml"
    path.write_text(to_toml(document))
    return path
