"""The Python API end to end on tiny random models, the assertion helpers, and the plugin-author fixtures."""
from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass

import pyarrow as pa
import pytest
import torch

import probekit
from probekit import api
from probekit.api import LayerSeries, Results, to_toml
from probekit.engine.examples import ExampleStore
from probekit.engine.resultcache import cache_dir, results_key
from probekit.engine.session import Session
from probekit.errors import SpecError, UserError
from probekit.results.io import read_table, write_table
from probekit.testing import (
    ExpectationFailed,
    assert_closer,
    assert_contrast,
    assert_layers_above,
    assert_layers_below,
    assert_matches_baseline,
    assert_trend,
)
from probekit.testing.fixtures import (
    rows_to_results,
    run_metric,
    save_tiny_model,
    tiny_batches,
    tiny_model_pair,
    write_tiny_csv,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_spec(folder, **extra) -> dict:
    return {
        "name": "tiny_api",
        "run": {"device": "cpu", "batch_size": 16},
        "models": {"a": {"id": str(folder / "m_a")}, "b": {"id": str(folder / "m_b")}},
        "data": {"d": {"path": str(folder / "d.csv")}},
        "metrics": {"svcca": {}, "attention_js": {}},
        "comparisons": [
            {"name": "a_vs_b", "a": "a", "b": "b", "data": "d"},
            {"name": "a_vs_a", "a": "a", "b": "a", "data": "d", "metrics": ["svcca"]},
        ],
        **extra,
    }


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    save_tiny_model(folder / "m_a", seed=0)
    save_tiny_model(folder / "m_b", seed=1)
    write_tiny_csv(folder / "d.csv", 48)
    return folder


@pytest.fixture(scope="module")
def first_run(workspace, one_thread):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PROBEKIT_CACHE", str(workspace / "cache"))
        results = api.run(tiny_spec(workspace), reports=workspace / "reports")
    return results


# ------------------------------------------------------------------ running


def test_to_toml_round_trips():
    document = {"name": "x", "run": {"device": "cpu"}, "models": {"a b": {"id": "./m"}}, "metrics": {"svcca": {}},
                "comparisons": [{"a": "a", "b": "b", "metrics": ["svcca"]}],
                "expect": [{"metric": "svcca", "contrast": {"low": "1-2", "factor": 2.5}, "layers": [3, 4]}],
                "flag": True, "quote": 'say "hi"\n'}
    assert tomllib.loads(to_toml(document)) == document


def test_run_a_dict_spec(first_run, workspace):
    assert isinstance(first_run, Results) and not first_run.cached
    assert first_run.run_dir.parent == workspace / "reports" / "spec_name=tiny_api"
    assert first_run.run_dir.name == f"run={first_run.metadata['run_id']}"
    assert first_run.comparisons == ["a_vs_b", "a_vs_a"]
    same = first_run.series("a_vs_a", "svcca")
    assert same.layers == [0, 1, 2] and all(abs(v) < 1e-6 for v in same.values())
    different = first_run.series("a_vs_b", "svcca")
    assert all(0 < v < 1 for v in different.values())
    assert first_run.heads("a_vs_b", "attention_js") == [0, 1]
    assert first_run.series("a_vs_b", "attention_js", head=1).layers == [1, 2]
    assert tomllib.loads(first_run.metadata["spec_text"])["name"] == "tiny_api"


def test_second_run_reuses_the_cache(first_run, workspace, monkeypatch):
    monkeypatch.setenv("PROBEKIT_CACHE", str(workspace / "cache"))
    again = api.run(tiny_spec(workspace), reports=workspace / "reports")
    assert again.cached and again.run_dir == first_run.run_dir
    assert again.table.equals(first_run.table)
    assert len(list((workspace / "reports" / "spec_name=tiny_api").iterdir())) == 1
    assert len(list((workspace / "cache" / "results").iterdir())) == 1
    # the one cache entry is this spec's; a different spec text is a different cache entry
    [entry] = (workspace / "cache" / "results").iterdir()
    assert results_cache_dir(api.load(tiny_spec(workspace))) == entry
    assert results_cache_dir(api.load(tiny_spec(workspace, description="changed"))) != entry


def results_cache_dir(spec):
    """Where the results cache keeps the results of ``spec`` (the key of everything that determines them)."""
    spec, manager = Session().load(spec)
    return cache_dir(spec, results_key(spec, manager, ExampleStore(spec, manager.sources)))


def test_spec_errors_surface(workspace):
    spec = tiny_spec(workspace, expect=[{"comparison": "a_vs_c", "metric": "svcca", "below": 1}])
    with pytest.raises(SpecError) as caught:
        api.run(spec, reports=workspace / "reports", use_cache=False)
    assert "expect[0].comparison: found 'a_vs_c'" in str(caught.value)
    assert caught.value.path.name == "tiny_api.toml"


def test_check_evaluates_the_spec_expectations(first_run, workspace):
    expect = [{"comparison": "a_vs_a", "metric": "svcca", "below": 1e-6},
              {"comparison": "a_vs_b", "metric": "svcca", "above": 0.99}]
    spec = api.load(tiny_spec(workspace, expect=expect))
    outcomes = first_run.check(spec.expectations)
    assert [o.passed for o in outcomes] == [True, False]


# ------------------------------------------------------------------ results and series


def test_results_load_and_series_errors(first_run):
    loaded = Results.load(first_run.run_dir)
    assert loaded.table.equals(first_run.table) and loaded.run_dir == first_run.run_dir
    with pytest.raises(KeyError, match="no comparison 'a_vs_c' in these results .*did you mean 'a_vs_b'"):
        loaded.series("a_vs_c", "svcca")
    with pytest.raises(KeyError, match="no 'attention_js' values for 'a_vs_a' \\(it has svcca\\)"):
        loaded.series("a_vs_a", "attention_js")
    with pytest.raises(UserError, match="nothing: no results file"):
        Results.load(first_run.run_dir / "nothing")


def test_layer_series_helpers():
    series = LayerSeries({0: 0.1, 1: 0.2, 2: 0.19, 3: 0.5}, comparison="x", metric="svcca")
    assert series.is_increasing(tolerance=0.02) and not series.is_increasing()
    assert series.is_increasing(layers="2-3")
    assert series.mean("last 2") == pytest.approx(0.345)
    assert series.argmax() == 3 and series.argmin() == 0
    assert repr(series) == "LayerSeries(svcca of x: {0: 0.1, 1: 0.2, 2: 0.19, 3: 0.5})"
    assert series == {0: 0.1, 1: 0.2, 2: 0.19, 3: 0.5}
    with pytest.raises(KeyError, match="layer 7 is not in svcca of x \\(layers 0-3\\)"):
        series[7]
    with pytest.raises(KeyError, match="layers 4, 5 are missing"):
        series.select("3-5")


# ------------------------------------------------------------------ assertion helpers


def test_helpers_pass_and_return_the_outcome(first_run):
    assert assert_layers_below(first_run, "a_vs_a", "svcca", "all", 1e-6).passed
    assert_layers_above(first_run, "a_vs_b", "svcca", "all", 0.01)
    assert_closer(first_run, "a_vs_a", "a_vs_b", "svcca", "all")


def test_contrast_helper_holds_on_the_real_gap_and_fails_beyond_it(first_run):
    js = first_run.series("a_vs_b", "attention_js")
    high, low = ("2", "1") if js[2] > js[1] else ("1", "2")
    gap = abs(js[2] - js[1])
    assert gap > 0
    outcome = assert_contrast(first_run, "a_vs_b", "attention_js", high=high, low=low, margin=gap / 2)
    assert outcome.passed
    with pytest.raises(ExpectationFailed, match=f"mean of layer {high} = .* vs mean of layer {low} = "):
        assert_contrast(first_run, "a_vs_b", "attention_js", high=high, low=low, margin=2 * gap)
    with pytest.raises(ExpectationFailed):
        assert_contrast(first_run, "a_vs_b", "attention_js", high=low, low=high, margin=gap / 2)


def test_baseline_helper_on_another_run(first_run, workspace, tmp_path):
    """A second, fresh run of the spec matches the first; the same run with one value moved does not."""
    rerun = api.run(tiny_spec(workspace), output=tmp_path / "rerun", use_cache=False)
    assert not rerun.cached and rerun.run_dir != first_run.run_dir
    assert rerun.metadata["run_id"] != first_run.metadata["run_id"]
    assert assert_matches_baseline(first_run, rerun.run_dir, "svcca").passed
    table = rerun.table
    rows = table.to_pylist()
    moved = next(i for i, r in enumerate(rows) if (r["comparison"], r["metric"], r["layer"]) == ("a_vs_b", "svcca", 1))
    values = table.column("value").to_pylist()
    values[moved] += 1e-5
    perturbed = table.set_column(table.schema.get_field_index("value"), "value", pa.array(values))
    write_table(perturbed.replace_schema_metadata(table.schema.metadata), tmp_path / "perturbed" / "results.parquet")
    with pytest.raises(ExpectationFailed, match="1 of 3 drifted from the baseline by more than 1e-06 .*layer 1"):
        assert_matches_baseline(first_run, tmp_path / "perturbed", "svcca", "a_vs_b")
    assert_matches_baseline(first_run, tmp_path / "perturbed", "svcca", "a_vs_a")  # the other comparison is untouched


def test_helper_failure_reads_like_the_pytest_item(first_run):
    series = first_run.series("a_vs_b", "attention_js", head=0)
    wrong = "decreasing" if series[2] > series[1] else "increasing"  # the direction these random models do not take
    with pytest.raises(ExpectationFailed) as caught:
        assert_trend(first_run, "a_vs_b", "attention_js", "all", wrong, head=0, name="heads settle")
    lines = str(caught.value).splitlines()
    assert lines[0].startswith(f"layers 1, 2 not {wrong}: layer 2 ")
    assert lines[1] == f"expectation: attention_js head 0 of a_vs_b, layers all: {wrong}"
    assert lines[3].split() == ["comparison", "layer", "value", "expected"]
    assert lines[5].endswith("<-- fails") and lines[5].split()[:2] == ["a_vs_b", "2"]
    assert lines[-1] == f"run folder: {first_run.run_dir}"
    assert isinstance(caught.value, AssertionError)


def test_helper_failure_marks_offending_layers(first_run):
    with pytest.raises(AssertionError) as caught:
        assert_layers_below(first_run, "a_vs_b", "svcca", "last 2", 1e-3)
    text = str(caught.value)
    assert text.splitlines()[0].startswith("layers 1, 2: 2 of 2 not below 0.001 (layer 1: ")
    assert text.count("<-- fails") == 2


def test_baseline_helper_detects_drift(first_run, tmp_path):
    table = first_run.table
    values = table.column("value").to_pylist()
    shifted = table.set_column(table.schema.get_field_index("value"), "value",
                               pa.array([v + 0.01 for v in values]))
    write_table(shifted.replace_schema_metadata(table.schema.metadata), tmp_path / "results.parquet")
    with pytest.raises(AssertionError, match="drifted from the baseline by more than 0.001"):
        assert_matches_baseline(first_run, tmp_path, "svcca", "a_vs_b", tolerance=1e-3)
    assert_matches_baseline(first_run, tmp_path, "svcca", "a_vs_b", tolerance=0.02)
    other = read_table(tmp_path / "results.parquet")
    metadata = dict(other.schema.metadata)
    metadata[b"probekit.spec_name"] = b"another"
    write_table(other.replace_schema_metadata(metadata), tmp_path / "other" / "results.parquet")
    with pytest.raises(ValueError, match="the baseline is from spec 'another'"):
        assert_matches_baseline(first_run, tmp_path / "other", "svcca")


# ------------------------------------------------------------------ fixtures for plugin authors


@dataclass(frozen=True)
class MeanGapOptions:
    squared: bool = False


class MeanGap(probekit.Metric):
    """A third-party metric: the mean absolute (or squared) difference of hidden states, per layer."""

    name = "mean_gap"
    needs = frozenset({"hidden_states"})
    Options = MeanGapOptions

    def __init__(self, options, context):
        super().__init__(options, context)
        self.sums = [0.0] * (context.num_layers + 1)
        self.count = 0

    def update(self, a, b, batch):
        mask = batch.attention_mask.bool()
        for layer, (x, y) in enumerate(zip(a.hidden_states, b.hidden_states, strict=True)):
            gap = (x[mask] - y[mask]).abs()
            self.sums[layer] += float((gap**2 if self.options.squared else gap).mean(-1).sum())
        self.count += int(mask.sum())

    def finalize(self):
        return [probekit.Row(layer, total / self.count, n_tokens=self.count) for layer, total in enumerate(self.sums)]


def test_a_third_party_metric_in_a_few_lines():
    model_a, model_b = tiny_model_pair()
    batches = tiny_batches(model_a.tokenizer)
    rows = run_metric(MeanGap, model_a, model_b, batches, squared=True)
    assert [row.layer for row in rows] == [0, 1, 2] and all(row.value > 0 for row in rows)
    same = run_metric(MeanGap, model_a, model_a, batches)
    assert all(row.value == 0 for row in same)
    results = rows_to_results(rows, "mean_gap")
    assert_layers_above(results, "a_vs_b", "mean_gap", "all", 0.0)
    with pytest.raises(ValueError, match="squared: found a string 'yes'; expected a boolean"):
        run_metric(MeanGap, model_a, model_b, batches, squared="yes")


def test_builtin_metrics_on_the_tiny_pair():
    from probekit.plugins.attention_js import AttentionJS
    from probekit.plugins.svcca import SVCCA

    model_a, model_b = tiny_model_pair()
    batches = tiny_batches(model_a.tokenizer)
    assert sum(batch.attention_mask.sum().item() for batch in batches) > 5 * 32  # enough tokens for SVCCA
    svcca_same = run_metric(SVCCA, model_a, model_a, batches)
    assert [row.layer for row in svcca_same] == [0, 1, 2]  # every layer, so all() below cannot pass on nothing
    assert all(abs(row.value) < 1e-6 for row in svcca_same)
    js = run_metric(AttentionJS, model_a, model_b, batches, base=2.0)
    per_layer = [row for row in js if row.head is None]
    assert [row.layer for row in per_layer] == [1, 2]
    assert all(0 < row.value <= 1 and not math.isnan(row.value) for row in js)
    assert torch.equal(tiny_model_pair()[0].encoder.embeddings.word_embeddings.weight,
                       model_a.encoder.embeddings.word_embeddings.weight)  # seeded: the same model every time


def test_a_run_gives_the_process_its_thread_count_back(workspace, tmp_path):
    before = torch.get_num_threads()
    spec = tiny_spec(workspace)
    spec["run"]["threads"] = 1 if before != 1 else 2
    api.run(spec, reports=tmp_path / "reports", use_cache=False)
    assert torch.get_num_threads() == before
