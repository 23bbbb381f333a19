"""Fine-tuning tiny random models: determinism for a seed, the checkpoint cache, precision, a fine-tune of a fine-tune."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from probekit.models.finetune import FinetuneJob, finetune
from probekit.models.settings import FinetuneSettings
from probekit.testing.fixtures import tiny_examples

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def job(tiny_models):
    examples = tiny_examples(64, seed=5)
    settings = FinetuneSettings(lr=1e-3, batch_size=16, epochs=2, max_length=16, seed=3, snapshots=(0.5, 1.0))
    return FinetuneJob("models.ft", str(tiny_models[0]), "tiny-a", examples[:48], examples[48:], settings)


def weights(folder):
    return load_file(folder / "model.safetensors")


def test_same_seed_gives_identical_weights(job, tmp_path):
    first = finetune(job, tmp_path / "cache1", torch.device("cpu"))
    second = finetune(job, tmp_path / "cache2", torch.device("cpu"))
    a, b = weights(first.folder), weights(second.folder)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = dataclasses.replace(job, settings=dataclasses.replace(job.settings, seed=4))
    assert other.key() != job.key()
    c = weights(finetune(other, tmp_path / "cache3", torch.device("cpu")).folder)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_checkpoint_is_cached_with_snapshots_and_accuracy(job, tmp_path):
    steps = []
    checkpoint = finetune(job, tmp_path, torch.device("cpu"), on_step=lambda s, t, loss: steps.append(s))
    assert steps == list(range(1, 7))  # 48 examples / 16 per batch * 2 epochs
    assert 0.0 <= checkpoint.accuracy <= 1.0
    assert set(checkpoint.snapshots) == {0.5, 1.0}
    assert (checkpoint.snapshots[0.5] / "model.safetensors").is_file()
    assert checkpoint.snapshot_accuracy[1.0] == checkpoint.accuracy
    assert checkpoint.total_steps == 6 and checkpoint.snapshot_step(0.5) == 3  # results carry these steps
    again = finetune(job, tmp_path, torch.device("cpu"), on_step=lambda s, t, loss: steps.append(s))
    assert len(steps) == 6 and again == checkpoint  # reused, not retrained
    assert not [p for p in (tmp_path / "finetunes").iterdir() if ".partial" in p.name]


def test_half_precision_checkpoint_trains_in_float32(job, tmp_path):
    """transformers 5 loads a half checkpoint as half unless told otherwise; Adam on half weights
    turned a fine-tune into NaN on the GPU. probekit trains in float32 whatever the checkpoint."""
    from transformers import AutoTokenizer, BertModel

    half = tmp_path / "half"
    BertModel.from_pretrained(job.base_source).half().save_pretrained(half)
    AutoTokenizer.from_pretrained(job.base_source).save_pretrained(half)
    checkpoint = finetune(dataclasses.replace(job, base_source=str(half)), tmp_path / "cache", torch.device("cpu"))
    trained = weights(checkpoint.folder)
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in trained.values())


def test_fine_tune_of_a_fine_tune_with_more_classes(job, tmp_path):
    first = finetune(job, tmp_path, torch.device("cpu"))
    three_classes = [dataclasses.replace(e, label=("pos", "neg", "mixed")[i % 3]) for i, e in enumerate(job.train)]
    second_job = dataclasses.replace(job, base_source=str(first.folder), base_identity=first.identity,
                                     train=three_classes, validation=three_classes[:6])
    second = finetune(second_job, tmp_path, torch.device("cpu"))
    assert weights(second.folder)["classifier.weight"].shape[0] == 3
