"""Fine-tuning decoders on tiny random models: objective "lm" (next-token prediction on the training texts) on GPT-2
and Llama, full and LoRA, cached and probed through a spec; a decoder's classification fine-tune; objective "lm" on an
encoder refused.

The tokenizers are word-level over the fixtures' vocabulary, as decoders' tokenizers come: GPT-2's with no pad and
no BOS token, Llama's with a BOS token, no pad token, and padding on the left.
"""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import transformers
from safetensors.torch import load_file
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from probekit import api
from probekit.data.batching import make_batches
from probekit.errors import DataError, ModelError, SpecError, exit_code_of
from probekit.models import finetune as finetune_module
from probekit.models.families import model_inputs
from probekit.models.finetune import FinetuneJob, finetune, lm_texts, next_token_loss
from probekit.models.settings import FinetuneSettings
from probekit.models.loading import load_encoder, load_tokenizer
from probekit.testing.fixtures import WORDS, save_tiny_model, tiny_examples, write_tiny_csv

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")
LM = FinetuneSettings(lr=1e-2, batch_size=16, epochs=2, max_length=16, seed=3, objective="lm")


def word_tokenizer(specials: list[str], bos: str | None = None, **tokens: str) -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate([*specials, *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=tokens.get("unk_token", specials[0])))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    if bos:
        tokenizer.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B:1",
                                                                 special_tokens=[(bos, vocab[bos])])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=bos, **tokens)


def save_decoder(folder, family: str, seed: int = 0):
    """A random GPT-2 or Llama with its LM head, and a tokenizer without a pad token, as pre-trained decoders come."""
    if family == "gpt2":
        tokenizer = word_tokenizer(["<|endoftext|>"], eos_token="<|endoftext|>")
        config = transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                         eos_token_id=0, bos_token_id=0)
    else:
        tokenizer = word_tokenizer(["<unk>", "<s>", "</s>"], "<s>", eos_token="</s>", unk_token="<unk>",
                                   padding_side="left")
        config = transformers.LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                                          num_attention_heads=2, num_key_value_heads=1, intermediate_size=64,
                                          max_position_embeddings=64, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    for family in ("gpt2", "llama"):
        save_decoder(root / family, family)
    save_tiny_model(root / "bert")
    write_tiny_csv(root / "train.csv", 48, seed=5)
    write_tiny_csv(root / "eval.csv", 32, seed=6)  # svcca: 5 tokens per neuron
    return root


def lm_job(folder, family: str, **changes) -> FinetuneJob:
    examples = tiny_examples(64, seed=5)
    return FinetuneJob(f"models.{family}_lm", str(folder / family), f"tiny-{family}", examples[:48], examples[48:],
                       dataclasses.replace(LM, **changes))


def training_loss(source, job: FinetuneJob) -> float:
    """The mean next-token loss of the model in ``source`` on the job's training texts."""
    model = AutoModelForCausalLM.from_pretrained(source).eval()
    tokenizer = load_tokenizer(str(source), "test")
    batch = next(make_batches(lm_texts(job.train), tokenizer, batch_size=len(job.train), max_length=16))
    with torch.no_grad():
        return next_token_loss(model(**model_inputs(model, batch)).logits, batch).item()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_lm_finetune_lowers_the_loss_and_is_cached(folder, family, tmp_path, monkeypatch):
    job = lm_job(folder, family)
    steps = []
    checkpoint = finetune(job, tmp_path, CPU, on_step=lambda step, total, loss: steps.append(loss))
    assert len(steps) == 6  # 48 texts / 16 per batch * 2 epochs
    assert training_loss(checkpoint.folder, job) < training_loss(folder / family, job) - 0.1
    assert 0 <= checkpoint.accuracy <= 1 and checkpoint.majority is None and checkpoint.chance is None
    meta = json.loads((checkpoint.folder.parent / "meta.json").read_text())
    assert meta["objective"] == "lm" and meta["labels"] == [] and meta["majority"] is None
    config = json.loads((checkpoint.folder / "config.json").read_text())
    assert config["architectures"][0].endswith(("LMHeadModel", "ForCausalLM"))

    monkeypatch.setattr(finetune_module, "_train", lambda *args: pytest.fail("trained again"))
    assert finetune(job, tmp_path, CPU) == checkpoint
    classification = dataclasses.replace(job, settings=dataclasses.replace(job.settings, objective="classification"))
    assert classification.key() != job.key()


def test_next_token_loss_is_the_same_under_either_padding(folder):
    """Only real tokens count, and no padding position predicts a text's first token: left and right padding agree."""
    model = AutoModelForCausalLM.from_pretrained(folder / "llama").eval()
    tokenizer = load_tokenizer(str(folder / "llama"), "test")
    texts = lm_texts(tiny_examples(16, seed=2, pairs=True))
    losses = []
    for side in ("left", "right"):
        tokenizer.padding_side = side
        batch = next(make_batches(texts, tokenizer, batch_size=16, max_length=32))
        assert not batch.attention_mask.all()
        with torch.no_grad():
            losses.append(next_token_loss(model(**model_inputs(model, batch)).logits, batch).item())
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)


def spec(folder, **lm) -> dict:
    return {
        "name": "tiny_lm",
        "run": {"device": "cpu", "threads": 1, "batch_size": 16, "max_length": 16, "cache_dir": str(folder / "cache")},
        "finetune": {"lr": 1e-2, "batch_size": 16, "epochs": 2, "max_length": 16, "seed": 3, "objective": "lm"},
        "models": {"base": {"id": str(folder / "gpt2")},
                   "lm": {"base": "base", "train": "train", "validation": "eval", **lm}},
        "data": {"train": {"path": str(folder / "train.csv")}, "eval": {"path": str(folder / "eval.csv")}},
        "metrics": {"svcca": {}, "attention_js": {}},
        "comparisons": [{"a": "base", "b": "lm", "data": "eval"}],
    }


def test_spec_compares_a_decoder_with_its_lm_finetune(folder, tmp_path):
    results = api.run(spec(folder), base_dir=folder, output=tmp_path / "run", plugins=["no:figures", "no:html", "no:report"])
    assert results.exit_code == 0
    rows = results.table.to_pylist()
    for metric in ("svcca", "attention_js"):
        values = [r["value"] for r in rows if r["metric"] == metric]
        assert values and all(v > 0 for v in values), (metric, values)
    model = results.metadata["models"]["lm"]
    assert model["identity"].startswith("finetune:") and 0 <= model["accuracy"] <= 1


def test_lm_finetune_on_a_plain_text_file(folder, tmp_path):
    """A .txt file (one unlabelled text per line) is what an lm fine-tune reads; a classifier refuses it."""
    texts = tmp_path / "notes.txt"
    texts.write_text("\n\n".join(example.text for example in tiny_examples(40, seed=8)) + "\n", encoding="utf-8")
    document = spec(folder)
    document["data"]["train"] = {"path": str(texts)}
    results = api.run(document, base_dir=folder, output=tmp_path / "run", plugins=["no:figures", "no:html", "no:report"])
    assert results.exit_code == 0 and all(r["value"] > 0 for r in results.table.to_pylist() if r["metric"] == "svcca")
    document["models"]["lm"]["objective"] = "classification"
    with pytest.raises(DataError, match=r"models\.lm: the training data has no labels \(unlabelled text"):
        api.run(document, base_dir=folder, output=tmp_path / "run2", plugins=["no:figures", "no:html", "no:report"])


def test_lm_objective_on_an_encoder_names_the_key(folder, tmp_path):
    bert = spec(folder)
    bert["models"]["base"]["id"] = str(folder / "bert")
    with pytest.raises(ModelError, match=r"models\.lm\.objective: \"lm\" \(set there or under \[finetune\]\) trains "
                       r"next-token prediction, which needs a decoder; the base .*bert' is a BERT encoder") as error:
        api.run(bert, base_dir=folder, output=tmp_path / "run", plugins=["no:figures", "no:html", "no:report"])
    assert exit_code_of(error.value) == 2


def test_objective_is_one_of_the_two(folder):
    wrong = spec(folder, objective="mlm")
    with pytest.raises(SpecError, match=r"models\.lm\.objective: found 'mlm'; expected one of 'classification', 'lm'"):
        api.load(wrong, base_dir=folder)
    assert api.load(spec(folder), base_dir=folder).models["lm"].finetune.objective == "lm"  # from [finetune]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_decoder_classification_finetune(folder, family, tmp_path):
    """Neither tokenizer has a pad token (Llama's pads on the left): the classifier pools the last real token."""
    checkpoint = finetune(lm_job(folder, family, objective="classification"), tmp_path, CPU)
    assert 0 <= checkpoint.accuracy <= 1 and checkpoint.majority is not None
    config = json.loads((checkpoint.folder / "config.json").read_text())
    assert config["pad_token_id"] == load_tokenizer(str(folder / family), "test").pad_token_id
    assert config["architectures"][0].endswith("ForSequenceClassification")
    encoder = load_encoder(str(checkpoint.folder), "test", eager=False, device=CPU, dtype=torch.float32,
                           finetuned=True)
    assert type(encoder).__name__ == ("GPT2Model" if family == "gpt2" else "LlamaModel")


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # peft asks transformers 5
def test_lora_lm_finetune_changes_only_its_targets(folder, tmp_path):
    checkpoint = finetune(lm_job(folder, "llama", method="lora", rank=4, alpha=8.0), tmp_path, CPU)
    adapter = json.loads((checkpoint.folder.parent / "adapter" / "adapter_config.json").read_text())
    assert adapter["task_type"] == "CAUSAL_LM" and not adapter["modules_to_save"]
    base = load_file(folder / "llama" / "model.safetensors")
    merged = load_file(checkpoint.folder / "model.safetensors")
    changed = {name for name in base if not torch.equal(base[name], merged[name])}
    assert changed == {f"model.layers.{layer}.self_attn.{module}.weight" for layer in (0, 1)
                       for module in ("q_proj", "v_proj")}  # the LM head stays the pre-trained one
    encoder = load_encoder(str(checkpoint.folder), "test", eager=True, device=CPU, dtype=torch.float32,
                           finetuned=True)
    assert torch.equal(encoder.layers[1].self_attn.q_proj.weight, merged["model.layers.1.self_attn.q_proj.weight"])
