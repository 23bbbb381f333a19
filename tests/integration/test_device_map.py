"""``[run] device_map``: models loaded through accelerate's device map (for models larger than one device)
measure what the same models on one device do; the hidden states are gathered where the metrics live."""
from __future__ import annotations

import pytest

from probekit import api
from probekit.testing.fixtures import write_tiny_csv

pytestmark = pytest.mark.usefixtures("one_thread")


def spec(tiny_models, data, **run) -> dict:
    a, b = tiny_models
    return {
        "name": "tiny_device_map",
        "run": {"device": "cpu", "batch_size": 16, "max_length": 16, **run},
        "models": {"a": {"id": str(a)}, "b": {"id": str(b)}},
        "data": {"d": {"path": str(data)}},
        "metrics": {"svcca": {}, "attention_js": {}},
        "comparisons": [{"a": "a", "b": "b", "data": "d"}],
    }


def test_a_device_map_measures_what_one_device_does(tiny_models, tmp_path):
    data = write_tiny_csv(tmp_path / "d.csv", 32, seed=2)
    mapped = api.run(spec(tiny_models, data, device_map="auto"), base_dir=tmp_path, reports=tmp_path / "r1")
    whole = api.run(spec(tiny_models, data), base_dir=tmp_path, reports=tmp_path / "r2")
    for metric in ("svcca", "attention_js"):
        assert mapped.series("a_vs_b", metric).to_dict() == pytest.approx(whole.series("a_vs_b", metric).to_dict(),
                                                                          abs=1e-12)


def test_an_unknown_device_map_is_a_spec_problem(tiny_models, tmp_path):
    data = write_tiny_csv(tmp_path / "d.csv", 8, seed=2)
    with pytest.raises(api.SpecError, match=r"run.device_map: found 'everywhere'; expected one of 'auto'"):
        api.run(spec(tiny_models, data, device_map="everywhere"), base_dir=tmp_path, reports=tmp_path / "r")
