"""Probing at the cost of the forward passes: the plan, batches by length, memory budget, precision, threads."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from probekit.engine import probe
from probekit.engine.session import Session
from probekit.errors import ModelError, SpecError
from probekit.models.attention import RECOMPUTED
from probekit.models.loading import pick_dtype, pick_threads
from probekit.testing.fixtures import save_tiny_model, write_tiny_csv


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("planner")
    models = [save_tiny_model(root / name, seed=seed) for seed, name in enumerate(("p", "s1", "s2"))]
    write_tiny_csv(root / "eval.csv", 60)
    write_tiny_csv(root / "other.csv", 20, seed=3)
    return root, models


def spec_file(folders, name: str, *, run: str = "", metrics: str = "[metrics.svcca]\n[metrics.attention_js]\n",
              comparisons: str | None = None):
    root, (p, s1, s2) = folders
    comparisons = comparisons or textwrap.dedent("""
        [[comparisons]]
        a = "p"
        b = "s1"
        data = "eval"
        [[comparisons]]
        a = "p"
        b = "s2"
        data = "eval"
        [[comparisons]]
        a = "s1"
        b = "s2"
        data = "eval"
        """)
    path = root / f"{name}.toml"
    path.write_text(textwrap.dedent(f"""
        name = "{name}"
        [run]
        batch_size = 16
        {run}
        [models.p]
        id = "{p}"
        [models.s1]
        id = "{s1}"
        [models.s2]
        id = "{s2}"
        [data.eval]
        path = "eval.csv"
        [data.other]
        path = "other.csv"
        """) + textwrap.dedent(metrics) + comparisons)
    return path


def values(result) -> dict:
    return {(r["comparison"], r["metric"], r["layer"], r["head"]): r["value"] for r in result.table.to_pylist()}


@pytest.fixture
def counted(monkeypatch):
    """Every forward pass the engine makes: (model, batch size, attention implementation)."""
    calls = []
    real = probe.forward

    def counting(encoder, batch, needs, name, chunk=None):
        calls.append((name, batch.size, encoder.config._attn_implementation))
        return real(encoder, batch, needs, name, chunk)

    monkeypatch.setattr(probe, "forward", counting)
    return calls


def run(path, tmp_path, **session):
    return Session(plugins=["no:figures", "no:html", "no:report"], use_cache=False, **session).run(path, output=tmp_path / path.stem)


def test_each_distinct_model_runs_once_per_batch(folders, tmp_path, counted):
    path = spec_file(folders, "seed_shape", run="sort_by_length = false")
    run(path, tmp_path)
    batches = 60 // 16 + 1
    assert len(counted) == 3 * batches  # 3 distinct models, not 2 per comparison x 3 comparisons
    assert sorted({name for name, _, _ in counted}) == ["p", "s1", "s2"]


def test_the_plan_groups_by_data_and_matches_the_per_comparison_order(folders, tmp_path, counted):
    comparisons = textwrap.dedent("""
        [[comparisons]]
        a = "p"
        b = "s1"
        data = "eval"
        [[comparisons]]
        name = "p_vs_s1_other"
        a = "p"
        b = "s1"
        data = "other"
        [[comparisons]]
        name = "p_vs_s2"
        a = "p"
        b = "s2"
        data = "eval"
        """)
    planned = run(spec_file(folders, "two_datasets", run='dtype = "float64"', comparisons=comparisons), tmp_path)
    per_model = {name: sum(1 for n, _, _ in counted if n == name) for name in ("p", "s1", "s2")}
    # Sorted by length, each dataset fits one batch of 16 x 128 tokens; s2 runs only on eval.
    assert per_model == {"p": 2, "s1": 2, "s2": 1}
    alone = run(spec_file(folders, "alone", run='dtype = "float64"',
                          comparisons='[[comparisons]]\nname = "p_vs_s2"\na = "p"\nb = "s2"\ndata = "eval"\n'), tmp_path)
    together, single = values(planned), values(alone)
    for key, value in single.items():
        assert together[key] == pytest.approx(value, abs=1e-12)


def test_batches_sorted_by_length_give_the_values_of_data_order(folders, tmp_path):
    sorted_run = run(spec_file(folders, "sorted", run='dtype = "float64"\nbatch_tokens = 300'), tmp_path)
    in_order = run(spec_file(folders, "in_order", run='dtype = "float64"\nsort_by_length = false'), tmp_path)
    a, b = values(sorted_run), values(in_order)
    assert a.keys() == b.keys()
    assert max(abs(a[k] - b[k]) for k in a) < 1e-9


def test_fused_attention_unless_a_metric_reads_attention_maps(folders, tmp_path, counted):
    """Attention metrics read rows recomputed under SDPA (a BERT's attention can be); [run] attention = "maps" asks
    for eager maps."""
    run(spec_file(folders, "hidden_only", metrics="[metrics.svcca]\n"), tmp_path)
    assert {implementation for _, _, implementation in counted} == {"sdpa"}
    counted.clear()
    recomputed = run(spec_file(folders, "with_attention", run='dtype = "float64"'), tmp_path)
    assert {implementation for _, _, implementation in counted} == {RECOMPUTED}
    counted.clear()
    maps = run(spec_file(folders, "with_maps", run='dtype = "float64"\nattention = "maps"'), tmp_path)
    assert {implementation for _, _, implementation in counted} == {"eager"}
    a, b = values(recomputed), values(maps)
    assert a.keys() == b.keys() and any("attention" in str(k) for k in a)
    assert max(abs(a[k] - b[k]) for k in a) < 1e-9


def test_a_small_memory_budget_splits_batches_and_keeps_the_values(folders, tmp_path, counted):
    whole = run(spec_file(folders, "whole", run='dtype = "float64"\nsort_by_length = false'), tmp_path)
    sizes_whole = {size for _, size, _ in counted}
    counted.clear()
    # Three tiny models hold ~0.55 MB of float64 weights: 1 MB leaves room for captures of half a batch.
    split = run(spec_file(folders, "split", run='dtype = "float64"\nsort_by_length = false\nmemory = "1MB"'), tmp_path)
    assert max(size for _, size, _ in counted) < max(sizes_whole)
    a, b = values(whole), values(split)
    assert max(abs(a[k] - b[k]) for k in a) < 1e-9


def test_a_budget_that_cannot_hold_one_model_names_the_key_and_the_size(folders, tmp_path):
    with pytest.raises(ModelError, match=r"\[run\] memory: 1\.0 kB cannot hold models\.p \(92\.4 kB of weights\)"):
        run(spec_file(folders, "tiny_budget", run='memory = "1KB"'), tmp_path)


def test_a_malformed_memory_budget_is_a_validation_error(folders):
    with pytest.raises(SpecError, match=r"run\.memory: found 'lots'; expected a size such as \"8GB\""):
        Session().load(spec_file(folders, "bad_budget", run='memory = "lots"'))


def test_precision_settings():
    import torch

    cpu = torch.device("cpu")
    assert pick_dtype("auto", cpu) is torch.float32
    assert pick_dtype("bfloat16", cpu) is torch.bfloat16
    with pytest.raises(ModelError, match="float16' on the CPU"):
        pick_dtype("float16", cpu)


def test_threads_follow_the_setting_then_omp_then_the_affinity_mask(monkeypatch):
    assert pick_threads(3) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert pick_threads(None) == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert pick_threads(None) == len(os.sched_getaffinity(0))


def test_progress_is_log_lines_when_stderr_is_not_a_terminal(folders, tmp_path):
    path = spec_file(folders, "logged", metrics="[metrics.svcca]\n")
    done = subprocess.run([sys.executable, "-m", "probekit", "run", str(path), "-o", str(tmp_path / "run"), "--fresh"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "probe 3 comparisons on eval" in line]
    assert "started (3 forwards/batch)" in lines[0] and "done in" in lines[-1]
    assert all(line[:2].isdigit() and line[2] == ":" for line in lines)  # timestamped


ONE_COMPARISON = """
    [[comparisons]]
    a = "p"
    b = "s1"
    data = "eval"
    """


def _weights_bytes(folders) -> int:
    """The float64 parameters of models p and s1, as the probe holds them."""
    from probekit.models.loading import load_encoder

    cpu = __import__("torch").device("cpu")
    return sum(sum(t.numel() * 8 for t in load_encoder(str(path), "m", eager=False, device=cpu,
                                                       dtype=__import__("torch").float64).parameters())
               for path in folders[1][:2])


def test_attention_rows_in_chunks_give_the_values_of_whole_rows(folders, tmp_path, monkeypatch):
    """A budget that leaves room for a few query rows at a time: the same values as all rows at once."""
    chunks = []
    real = probe.forward
    monkeypatch.setattr(probe, "forward", lambda encoder, batch, needs, name, chunk=None: chunks.append(
        (chunk, batch.input_ids.shape[1])) or real(encoder, batch, needs, name, chunk))
    metrics = "[metrics.attention_js]\n[metrics.attention_entropy]\n[metrics.attention_special]\n"
    whole = run(spec_file(folders, "rows_whole", run='dtype = "float64"', metrics=metrics,
                          comparisons=ONE_COMPARISON), tmp_path)
    assert all(chunk == tokens for chunk, tokens in chunks)
    chunks.clear()
    budget = (_weights_bytes(folders) + 60_000) / 1024
    chunked = run(spec_file(folders, "rows_chunked", run=f'dtype = "float64"\nmemory = "{budget:.1f}KiB"',
                            metrics=metrics, comparisons=ONE_COMPARISON), tmp_path)
    assert any(chunk < tokens for chunk, tokens in chunks)
    a, b = values(whole), values(chunked)
    assert a.keys() == b.keys() and len(a) > 10
    assert max(abs(a[k] - b[k]) for k in a) < 1e-12


def test_a_budget_without_room_for_one_query_row_names_t_the_chunk_and_the_memory(folders, tmp_path):
    budget = (_weights_bytes(folders) + 300) / 1024
    with pytest.raises(ModelError, match=r"cannot hold the attention statistics at T = \d+ tokens: with the weights "
                                         r"loaded, 0\.\d+ KB is left; the captures of 1 example\(s\) take [\d.]+ KB, "
                                         r"and a chunk of 1 query row needs [\d.]+ KB more"):
        run(spec_file(folders, "no_room", run=f'dtype = "float64"\nmemory = "{budget:.2f}KiB"',
                      comparisons=ONE_COMPARISON), tmp_path)


def test_an_sdpa_backend_refusing_the_mask_is_named(folders, tmp_path, monkeypatch):
    from probekit.models import attention

    def refusing(*args, **kwargs):
        raise RuntimeError("No available kernel. Aborting execution.")

    monkeypatch.setattr(attention, "sdpa_attention_forward", refusing)
    with pytest.raises(attention.AttentionBackendError,
                       match=r"BertSelfAttention: torch's scaled_dot_product_attention refused a torch.bool mask of "
                             r"shape \(\d+, 1, \d+, \d+\) on cpu \(No available kernel.*\); set \[run\] attention = "
                             r"\"maps\""):
        run(spec_file(folders, "refused", comparisons=ONE_COMPARISON), tmp_path)


def test_the_attention_path_is_validated(folders):
    with pytest.raises(SpecError, match=r"run\.attention: found 'fast'"):
        Session().load(spec_file(folders, "bad_path", run='attention = "fast"'))


def test_out_of_memory_in_sdpa_is_not_taken_for_a_refused_mask(folders, tmp_path, monkeypatch):
    """The probe halves a micro-batch on a device out of memory: the recorded SDPA lets that error through."""
    import torch

    from probekit.models import attention

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(attention, "sdpa_attention_forward", exhausted)
    with pytest.raises(ModelError, match=r"out of device memory on a batch of \d+ examples x \d+ tokens"):
        run(spec_file(folders, "exhausted", comparisons=ONE_COMPARISON), tmp_path)
