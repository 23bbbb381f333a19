"""A training trajectory of the real embedded model (slow: `pytest -m slow tests/integration/test_trajectory_minilm.py`).

all-MiniLM-L6-v2 fine-tuned with transformers' Trainer on the built-in sentiment task, a checkpoint every 25
steps, declared as a series and compared with the pre-trained model at each step: the paper's finding (the top
layers move most) holds at every checkpoint, the model moves away from its base as training goes on, and every
layer moves at about the same relative pace: under the Trainer's decaying learning rate each has made at most 60%
of its final move after a quarter of the steps and at least 90% after three quarters (measured: 38-53% and
96-99%, docs/reproduction.md).
"""
from __future__ import annotations

import pytest

from probekit import api
from probekit.data.tasks import load_task
from probekit.models.loading import embedded_model_path
from probekit.testing import assert_contrast, assert_share

pytestmark = pytest.mark.slow
STEPS = (25, 50, 75, 100)


def trainer_run(out) -> None:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    base = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(base)
    examples = load_task("sentiment", "train")[: 16 * STEPS[-1]]
    labels = sorted({e.label for e in examples})
    data = Dataset.from_dict({"text": [e.text for e in examples], "label": [labels.index(e.label) for e in examples]})
    data = data.map(lambda rows: tokenizer(rows["text"], truncation=True, max_length=64), batched=True)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(labels))
    arguments = TrainingArguments(output_dir=str(out), max_steps=STEPS[-1], save_steps=STEPS[0], learning_rate=1e-4,
                                  per_device_train_batch_size=16, report_to=[], use_cpu=True, seed=0,
                                  save_only_model=True, logging_strategy="no", disable_tqdm=True)
    Trainer(model=model, args=arguments, train_dataset=data, processing_class=tokenizer).train()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("minilm_trajectory")
    trainer_run(folder / "run")
    spec = {
        "name": "minilm_trajectory",
        "run": {"device": "cpu", "max_length": 64},
        "models": {"pretrained": {"id": "minilm"}, "run": {"checkpoints": "run/checkpoint-*"}},
        "data": {"eval": {"task": "sentiment", "split": "validation", "limit": 300}},
        "metrics": {"svcca": {}},
        "comparisons": [{"name": "pretrained_vs_run", "a": "pretrained", "b": "run", "data": "eval"}],
    }
    return api.run(spec, base_dir=folder, reports=folder / "reports")


def test_the_top_moves_most_at_every_checkpoint(results):
    for name in ("pretrained_vs_run@25", "pretrained_vs_run@50", "pretrained_vs_run@75", "pretrained_vs_run"):
        assert_contrast(results, name, "svcca", high="last 2", low="1-3", factor=3.0)


def test_the_model_moves_away_as_training_goes_on(results):
    means = [results.series(name, "svcca").mean() for name in
             ("pretrained_vs_run@25", "pretrained_vs_run@50", "pretrained_vs_run@75", "pretrained_vs_run")]
    assert means == sorted(means) and means[0] > 0


def test_every_layer_settles_by_three_quarters_of_training(results):
    assert_share(results, "pretrained_vs_run@25", "pretrained_vs_run", "svcca", "all", at_most=0.6)
    assert_share(results, "pretrained_vs_run@75", "pretrained_vs_run", "svcca", "all", at_least=0.9)
