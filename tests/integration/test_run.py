"""End to end through the command line on tiny offline models."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from probekit.results.events import events_of
from probekit.cli import main
from probekit.results.io import metadata
from probekit.testing.fixtures import WORDS, tiny_encoder, tiny_spec, tiny_tokenizer, write_tiny_csv

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = """
name = "tiny"
[run]
batch_size = 8
max_length = 16

[models.a]
id = "{a}"
[models.b]
id = "{b}"

[data.eval]
path = "eval.csv"
limit = 60

[metrics.attention_js]
[metrics.svcca]

[[comparisons]]
name = "a_vs_b"
a = "a"
b = "b"
data = "eval"

[[comparisons]]
name = "a_vs_a"
a = "a"
b = "a"
data = "eval"
"""


@pytest.fixture
def spec_file(tmp_path, tiny_models):
    return tiny_spec(tmp_path, tiny_models, examples=80, data={"eval": {"path": "eval.csv", "limit": 60}},
                     metrics={"attention_js": {}, "svcca": {}},
                     comparisons=[{"name": "a_vs_b", "a": "a", "b": "b", "data": "eval"},
                                  {"name": "a_vs_a", "a": "a", "b": "a", "data": "eval"}])


def test_run_writes_parquet_and_report(spec_file, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(spec_file), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "a_vs_b" in printed and "results:" in printed and str(out) in printed
    table = pq.read_table(out / "results.parquet")
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []
    for column in ("run_id", "spec", "comparison", "model_a", "model_b", "data", "metric", "layer", "head",
                   "value", "n_examples", "n_tokens", "k_x", "k_y"):
        assert column in table.column_names
    rows = table.to_pylist()
    svcca = [r for r in rows if r["metric"] == "svcca" and r["comparison"] == "a_vs_b"]
    assert [r["layer"] for r in svcca] == [0, 1, 2]
    assert all(r["n_examples"] == 60 and r["n_tokens"] > 60 and r["k_x"] > 0 for r in svcca)
    js = [r for r in rows if r["metric"] == "attention_js" and r["comparison"] == "a_vs_b"]
    assert sorted({r["layer"] for r in js}) == [1, 2]
    assert len([r for r in js if r["head"] is not None]) == 2 * 2  # 2 layers x 2 heads
    for layer in (1, 2):  # the layer value is the mean of its heads
        heads = [r["value"] for r in js if r["layer"] == layer and r["head"] is not None]
        value = next(r["value"] for r in js if r["layer"] == layer and r["head"] is None)
        assert value == pytest.approx(sum(heads) / 2, abs=1e-15)
    identical = [r["value"] for r in rows if r["comparison"] == "a_vs_a"]
    assert identical and all(v == 0.0 for v in identical)
    meta = metadata(table)
    assert meta["spec_text"] == spec_file.read_text()
    assert meta["spec_name"] == "tiny" and meta["device"].split()[0] in ("cpu", "cuda")
    assert {"torch_version", "transformers_version", "probekit_version", "started_at", "finished_at"} <= set(meta)


def test_report_rerenders_from_parquet(spec_file, tmp_path, capsys):
    out = tmp_path / "run"
    main(["run", str(spec_file), "-o", str(out)])
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "a_vs_b: a vs b on eval" in printed and "svcca" in printed


def test_default_output_is_reports_spec_run_id(spec_file, tmp_path, monkeypatch):
    """reports/spec_name=<spec>/run=<run id>/: Hive partitions (docs/results.md)."""
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(spec_file)]) == 0
    [run_dir] = (tmp_path / "reports" / "spec_name=tiny").iterdir()
    assert (run_dir / "results.parquet").is_file()
    assert run_dir.name == "run=" + metadata(pq.read_table(run_dir / "results.parquet"))["run_id"]


def test_svcca_refusal_is_reported_and_other_results_kept(tmp_path, tiny_models, capsys):
    write_tiny_csv(tmp_path / "eval.csv", 10)
    spec = tmp_path / "few.toml"
    spec.write_text(SPEC.format(a=tiny_models[0], b=tiny_models[1]).replace("limit = 60", "limit = 2"))
    out = tmp_path / "run"
    assert main(["run", str(spec), "-o", str(out)]) == 2
    assert "datapoints" in capsys.readouterr().out
    rows = pq.read_table(out / "results.parquet").to_pylist()
    assert {r["metric"] for r in rows} == {"attention_js"}  # JS still written


def test_finished_comparisons_survive_a_later_failure(spec_file, tmp_path, tiny_models, capsys):
    """A comparison that cannot run (tokenizers differ) is an error of its own; the others are measured."""
    other = tmp_path / "other_vocab"
    tokenizer = tiny_tokenizer([w.upper() for w in WORDS])
    tiny_encoder(len(tokenizer), seed=2).save_pretrained(other)
    tokenizer.save_pretrained(other)
    text = spec_file.read_text() + f'\n[models.c]\nid = "{other}"\n\n[[comparisons]]\nname = "a_vs_c"\na = "a"\nb = "c"\ndata = "eval"\n'
    spec_file.write_text(text)
    out = tmp_path / "run"
    assert main(["run", str(spec_file), "-o", str(out)]) == 2
    captured = capsys.readouterr()
    assert "a_vs_c:" in captured.out and "different tokenizers" in captured.out
    table = pq.read_table(out / "results.parquet")
    assert set(table.column("comparison").to_pylist()) == {"a_vs_b", "a_vs_a"}
    assert [error.comparison for error in events_of(metadata(table), "error")] == ["a_vs_c"]


def test_unreachable_hub_model_is_a_clear_error(tmp_path, capsys):
    """Offline, a hub id cannot load: exit 2 with the spec key and the fix, no traceback."""
    write_tiny_csv(tmp_path / "train.csv", 20)
    spec = tmp_path / "hub.toml"
    spec.write_text("""
[models.base]
id = "no-such-org/no-such-model"
[models.tuned]
base = "base"
train = "train"
[data.train]
path = "train.csv"
[metrics.svcca]
[[comparisons]]
a = "base"
b = "tuned"
data = "train"
""")
    assert main(["run", str(spec), "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "models.tuned: cannot load 'no-such-org/no-such-model'" in err and "needs internet" in err
    assert "Traceback" not in err
