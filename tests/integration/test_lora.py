"""LoRA through peft on tiny random models: a LoRA fine-tune declared in a spec (cached, merged exactly as
W + B·A·alpha/r, only its targets and the head changed), a declared base + adapter, an adapter that changes
nothing, and bad input."""
from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from probekit import api
from probekit.errors import ModelError, SpecError
from probekit.models import finetune as finetune_module
from probekit.models.adapters import DEFAULT_TARGETS, UnchangedModelWarning
from probekit.models.families import FAMILIES
from probekit.models.finetune import AdapterJob, FinetuneJob, finetune
from probekit.models.settings import FinetuneSettings
from probekit.models.loading import model_identity
from probekit.testing.fixtures import save_tiny_model, tiny_examples, write_tiny_csv

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")
RANK, ALPHA = 4, 8.0


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    save_tiny_model(root / "base", seed=0)
    save_tiny_model(root / "narrow", seed=1, hidden_size=16, intermediate_size=32)  # another base
    write_tiny_csv(root / "train.csv", 48, seed=5)
    write_tiny_csv(root / "eval.csv", 16, seed=6)
    return root


def spec(folder, **lora) -> dict:
    return {
        "name": "tiny_lora",
        "run": {"device": "cpu", "batch_size": 16, "max_length": 16, "cache_dir": str(folder / "cache")},
        "finetune": {"lr": 1e-2, "batch_size": 16, "epochs": 2, "max_length": 16, "seed": 3},
        "models": {"base": {"id": str(folder / "base")},
                   "lora": {"base": "base", "train": "train", "validation": "eval", "method": "lora",
                            "rank": RANK, "alpha": ALPHA, **lora}},
        "data": {"train": {"path": str(folder / "train.csv")}, "eval": {"path": str(folder / "eval.csv")}},
        "metrics": {"svcca": {}},
        "comparisons": [{"a": "base", "b": "lora", "data": "eval"}],
    }


@pytest.fixture(scope="module")
def trained(folder):
    """The LoRA fine-tune's cache entry, after a run of the spec."""
    results = api.run(spec(folder), base_dir=folder, reports=folder / "reports")
    model = results.metadata["models"]["lora"]
    assert model["accuracy"] is not None and model["identity"].startswith("finetune:")
    return folder / "cache" / "finetunes" / model["identity"].removeprefix("finetune:")


def test_second_run_reuses_the_cached_lora(folder, trained, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(finetune_module, "_train", no_training)
    results = api.run(spec(folder), base_dir=folder, reports=folder / "reports", use_cache=False)
    assert results.metadata["models"]["lora"]["source"] == str(trained / "final")
    other = api.load(spec(folder, rank=2), base_dir=folder).models["lora"].finetune
    assert other.rank == 2 and other.method == "lora"  # a setting of the key: another entry, trained anew


def test_merged_checkpoint_is_base_plus_scaled_product_of_the_saved_adapter(folder, trained):
    base = load_file(folder / "base" / "model.safetensors")
    merged = load_file(trained / "final" / "model.safetensors")
    adapter = load_file(trained / "adapter" / "adapter_model.safetensors")
    config = json.loads((trained / "adapter" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], sorted(config["target_modules"])) == (RANK, ALPHA, ["query", "value"])
    changed = {name for name in base if not torch.equal(base[name], merged[f"bert.{name}"])}
    targets = {f"encoder.layer.{layer}.attention.self.{module}.weight"
               for layer in (0, 1) for module in ("query", "value")}
    assert changed == targets  # nothing else of the encoder moved: not the biases, not the pooler
    for name in targets:
        lora = f"base_model.model.bert.{name.removesuffix('.weight')}"
        expected = base[name] + adapter[f"{lora}.lora_B.weight"] @ adapter[f"{lora}.lora_A.weight"] * (ALPHA / RANK)
        torch.testing.assert_close(merged[f"bert.{name}"], expected, atol=1e-6, rtol=0)
    for name in ("weight", "bias"):  # the head trained (modules_to_save) and is the checkpoint's
        assert torch.equal(adapter[f"base_model.model.classifier.{name}"], merged[f"classifier.{name}"])


def test_declared_base_plus_adapter_is_the_merged_fine_tune(folder, trained):
    declared = spec(folder)
    declared["models"]["merged"] = {"id": str(folder / "base"), "adapter": str(trained / "adapter")}
    model = api.load(declared, base_dir=folder).models["merged"]
    assert model.adapter == str(trained / "adapter") and not model.is_finetuned
    job = AdapterJob("models.merged", model.id, model_identity(model.id), model.adapter)
    checkpoint = finetune(job, folder / "cache", CPU)
    assert checkpoint.identity.startswith("adapter:") and checkpoint.warnings == ()
    assert finetune(job, folder / "cache", CPU) == checkpoint  # cached
    encoder = load_file(checkpoint.folder / "model.safetensors")
    finetuned = load_file(trained / "final" / "model.safetensors")
    assert encoder.keys() == {name.removeprefix("bert.") for name in finetuned if name.startswith("bert.")}
    assert all(torch.equal(tensor, finetuned[f"bert.{name}"]) for name, tensor in encoder.items())


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # peft asks transformers 5
def test_adapter_of_a_bare_transformer_merges(folder, tmp_path):
    """An adapter trained elsewhere on the transformer alone (no head, no task type)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    torch.manual_seed(0)
    wrapped = get_peft_model(AutoModel.from_pretrained(folder / "base"),
                             LoraConfig(r=2, lora_alpha=2, target_modules=["key"]))
    with torch.no_grad():
        for name, parameter in wrapped.named_parameters():
            if "lora_B" in name:
                parameter.normal_()
    wrapped.save_pretrained(tmp_path / "bare")
    job = AdapterJob("models.bare", str(folder / "base"), "tiny-base", str(tmp_path / "bare"))
    merged = load_file(finetune(job, tmp_path / "cache", CPU).folder / "model.safetensors")
    base = load_file(folder / "base" / "model.safetensors")
    adapter = load_file(tmp_path / "bare" / "adapter_model.safetensors")
    key = "encoder.layer.1.attention.self.key"
    expected = base[f"{key}.weight"] + adapter[f"base_model.model.{key}.lora_B.weight"] @ \
        adapter[f"base_model.model.{key}.lora_A.weight"]
    torch.testing.assert_close(merged[f"{key}.weight"], expected, atol=1e-6, rtol=0)
    assert torch.equal(merged["encoder.layer.1.attention.self.query.weight"],
                       base["encoder.layer.1.attention.self.query.weight"])


def test_lora_that_changes_nothing_is_reported(folder):
    """lr 1e-20 moves B off zero, by too little to change any float32 weight."""
    settings = FinetuneSettings(lr=1e-20, batch_size=16, epochs=1, max_length=16, method="lora")
    examples = tiny_examples(32, seed=5)
    job = FinetuneJob("models.still", str(folder / "base"), "tiny-base", examples, examples[:8], settings)
    for _ in ("trained", "cached"):
        with pytest.warns(UnchangedModelWarning, match="models.still: the LoRA adapter leaves every encoder weight "
                          "unchanged; its comparisons will measure 0"):
            checkpoint = finetune(job, folder / "still", CPU)
        assert checkpoint.warnings == ("the LoRA adapter leaves every encoder weight unchanged; its comparisons "
                                       "will measure 0",)
    base = load_file(folder / "base" / "model.safetensors")
    merged = load_file(checkpoint.folder / "model.safetensors")
    assert all(torch.equal(tensor, merged[f"bert.{name}"]) for name, tensor in base.items())


def test_adapter_never_trained_is_reported(folder, trained, tmp_path):
    fresh = tmp_path / "fresh"
    shutil.copytree(trained / "adapter", fresh)
    weights = load_file(fresh / "adapter_model.safetensors")
    save_file({k: torch.zeros_like(v) if "lora_B" in k else v for k, v in weights.items()},
              fresh / "adapter_model.safetensors")  # B as peft initialises it
    job = AdapterJob("models.fresh", str(folder / "base"), "tiny-base", str(fresh))
    with pytest.warns(UnchangedModelWarning, match="models.fresh: the LoRA adapter leaves every encoder weight"):
        assert finetune(job, tmp_path / "cache", CPU).warnings


@pytest.mark.parametrize(("change", "phrases"), [
    ({"method": "lroa"}, ("models.lora.method", "'lroa'", "'lora'")),
    ({"rank": 0}, ("models.lora.rank", "found 0", "a positive number")),
    ({"alpha": -1}, ("models.lora.alpha", "a positive LoRA scale")),
    ({"target_modules": []}, ("models.lora.target_modules", "module names")),
    ({"method": "full"}, ("models.lora.rank", "a LoRA setting on a full fine-tune")),
])
def test_bad_lora_settings_are_spec_errors(folder, change, phrases):
    with pytest.raises(SpecError) as error:
        api.load(spec(folder, **change), base_dir=folder)
    assert all(phrase in str(error.value) for phrase in phrases), str(error.value)


@pytest.mark.parametrize(("targets", "phrase"), [
    (["q_proj", "value"], "models.lora.target_modules: ['q_proj'] match no module of BertForSequenceClassification"),
    (["attention"], "models.lora.target_modules: ['attention'] name a module LoRA cannot adapt"),
])
def test_bad_target_modules_name_the_key_and_the_projections(folder, targets, phrase):
    with pytest.raises(ModelError) as error:
        api.run(spec(folder, target_modules=targets), base_dir=folder, reports=folder / "reports")
    assert phrase in str(error.value) and "are named ['dense', 'key', 'query', 'value']" in str(error.value)


def test_missing_adapter_folder_is_a_spec_error(folder, tmp_path):
    declared = spec(folder)
    declared["models"]["merged"] = {"id": str(folder / "base"), "adapter": "./no_such_adapter"}
    declared["models"]["on_finetune"] = {"base": "base", "train": "train", "adapter": "./no_such_adapter"}
    (tmp_path / "not_an_adapter").mkdir()
    declared["models"]["empty"] = {"id": str(folder / "base"), "adapter": str(tmp_path / "not_an_adapter")}
    with pytest.raises(SpecError) as error:
        api.load(declared, base_dir=folder)
    message = str(error.value)
    assert "models.merged.adapter" in message and "no_such_adapter does not exist" in message
    assert "models.on_finetune.adapter" in message and "an adapter beside `id`" in message
    assert "models.empty.adapter" in message and "adapter_config.json" in message


def test_adapter_of_another_base_is_refused(folder, trained, tmp_path):
    job = AdapterJob("models.other", str(folder / "narrow"), "tiny-narrow", str(trained / "adapter"))
    with pytest.raises(ModelError, match=r"models.other.adapter: .* was trained on .*base.*, not on the declared id"):
        finetune(job, tmp_path / "cache", CPU)
    # An adapter whose recorded base cannot be checked here (another machine's folder): the shapes tell.
    moved = tmp_path / "moved"
    shutil.copytree(trained / "adapter", moved)
    config = json.loads((moved / "adapter_config.json").read_text())
    (moved / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "/elsewhere/base"}))
    with pytest.raises(ModelError, match=r"models.other.adapter: .* does not fit the base .*size mismatch"):
        finetune(dataclasses.replace(job, adapter=str(moved)), tmp_path / "cache", CPU)


def test_every_family_has_default_lora_targets():
    assert set(DEFAULT_TARGETS) == set(FAMILIES)


def test_spec_probes_a_declared_adapter_as_the_merged_fine_tune(folder, trained):
    declared = spec(folder)
    declared["models"]["merged"] = {"id": str(folder / "base"), "adapter": str(trained / "adapter")}
    declared["comparisons"] = [{"a": "lora", "b": "merged", "data": "eval"}]
    results = api.run(declared, base_dir=folder, reports=folder / "reports")
    assert results.metadata["models"]["merged"]["identity"].startswith("adapter:")
    assert max(abs(v) for v in results.table.column("value").to_pylist()) < 1e-6


def test_unchanged_lora_is_in_the_results_warnings(folder):
    with pytest.warns(UnchangedModelWarning):
        results = api.run(spec(folder, lr=1e-20), base_dir=folder, reports=folder / "reports")
    assert ("models.lora: the LoRA adapter leaves every encoder weight unchanged; its comparisons will measure 0"
            in [note.message for note in results.notes])
