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
from transformers import AutoTokenizer

from probekit import api
from probekit.plugins.source_task.generator import load_task
from probekit.models.loading import embedded_model_path
from probekit.testing import assert_contrast, assert_share
from probekit.testing.fixtures import trainer_checkpoints

pytestmark = pytest.mark.slow
STEPS = (25, 50, 75, 100)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("minilm_trajectory")
    base = embedded_model_path()
    trainer_checkpoints(base, AutoTokenizer.from_pretrained(base), load_task("sentiment", "train")[: 16 * STEPS[-1]],
                        folder / "run", steps=STEPS[-1], every=STEPS[0], lr=1e-4, max_length=64)
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
