"""Every code block of docs/plugins.md, docs/testing.md and docs/results.md runs as a reader would paste it.

Python blocks are executed (a page's blocks in order, in one namespace, as its reader builds on
them), TOML blocks parsed; blocks of terminal output (no language) are output, not code. A block
that needs what the suite cannot give (a fine-tune of MiniLM) is listed in NOT_RUN with why, so a
new block cannot slip through unrun.
"""
from __future__ import annotations

import re
import sys
import tomllib
import types
from pathlib import Path

import pytest

from probekit.api import run
from probekit.testing import ExpectationFailed, check_metric
from probekit.testing.fixtures import (
    save_tiny_model,
    tiny_batches,
    tiny_model_pair,
    write_tiny_csv,
)

DOCS = Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.DOTALL | re.MULTILINE)
#: (page, first line of the block): why the suite does not run it.
NOT_RUN = {
    ("testing.md", 'from probekit.api import run, Results'): "runs specs/seed_consistency.toml: two fine-tunes of "
                                                                  "MiniLM (slow); its calls are those of the tiny API test",
    ("results.md", "# polars: the first file sets the columns"): "polars is not a dependency of probekit's tests",
}


def blocks(page: str) -> list[tuple[str, str]]:
    text = (DOCS / page).read_text(encoding="utf-8")
    return [(language, "\n".join(line[len(indent):] for line in code.splitlines()))
            for indent, language, code in FENCE.findall(text)]


def executed(page: str, monkeypatch, edit=lambda code: code) -> dict:
    """The page's Python blocks run in order as one module (registered, as dataclasses need), its namespace."""
    module = types.ModuleType(f"docs_{page.removesuffix('.md')}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for code in python_blocks(page):
        exec(compile(edit(code), f"docs/{page}", "exec"), module.__dict__)  # noqa: S102 - the docs' own code
    return module.__dict__


def python_blocks(page: str) -> list[str]:
    return [code for language, code in blocks(page) if language == "python"
            and not any(page == p and code.strip().startswith(first) for p, first in NOT_RUN)]


@pytest.mark.parametrize("page", ["plugins.md", "testing.md", "results.md"])
def test_every_toml_block_parses(page):
    parsed = [tomllib.loads(code) for language, code in blocks(page) if language == "toml"]
    assert parsed or page == "results.md"


@pytest.mark.parametrize("page", ["plugins.md", "testing.md", "results.md"])
def test_every_block_is_known(page):
    known = {"python", "toml", "sql", ""}
    assert {language for language, _ in blocks(page)} <= known
    assert all(any(code.strip().startswith(first) for _, code in blocks(p)) for p, first in NOT_RUN)


def test_the_plugins_page_runs(tmp_path, monkeypatch):
    namespace = executed("plugins.md", monkeypatch)
    namespace["test_contract"]()  # check_metric(MeanShift), as the page says
    check_metric(namespace["PairedCosine"])
    source = namespace["LinesSource"]()
    lines = tmp_path / "sentences.txt"
    lines.write_text("a first sentence\na second one\n")
    options, problems = source.validate(source.Options(lines="sentences.txt"), tmp_path)
    assert not problems and [e.text for e in source.load(options, "data.x")] == ["a first sentence", "a second one"]
    assert len(source.fingerprint(options)) == 16
    _, problems = source.validate(source.Options(lines="missing.txt"), tmp_path)
    assert [p.key for p in problems] == ["lines"]


TINY_SPEC = """
name = "tiny"
[run]
device = "cpu"
[models.a]
id = "{a}"
[models.b]
id = "{b}"
[data.d]
path = "{data}"
text = "text"
label = "label"
[metrics.svcca]
[[comparisons]]
name = "a_vs_a"
a = "a"
b = "a"
data = "d"
[[comparisons]]
name = "a_vs_b"
a = "a"
b = "b"
data = "d"
"""


@pytest.fixture
def tiny_project(tmp_path, monkeypatch):
    """A project folder with specs/tiny.toml over two tiny models, as the testing page's example assumes."""
    a, b = save_tiny_model(tmp_path / "tiny_a", seed=0), save_tiny_model(tmp_path / "tiny_b", seed=1)
    data = write_tiny_csv(tmp_path / "d.csv", 48)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "tiny.toml").write_text(TINY_SPEC.format(a=a, b=b, data=data))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_testing_page_runs(tiny_project, monkeypatch):
    namespace = executed("testing.md", monkeypatch)
    with pytest.raises(ExpectationFailed, match="at least 2x the mean of layer 0"):
        namespace["test_layers_of_the_tiny_pair"]()  # its last line fails on random models, as the page says
    pair = tiny_model_pair()
    batches = tiny_batches(pair[0].tokenizer)
    namespace["test_identical_models_have_no_gap"](pair, batches)
    namespace["test_different_models_differ_on_every_layer"](pair, batches)


def test_the_results_page_runs(tiny_project, monkeypatch):
    """Its reads of reports/spec_name=seed_consistency/run=<run id>/ run on a tiny run of that name."""
    spec = (tiny_project / "specs" / "tiny.toml").read_text().replace('name = "tiny"', 'name = "seed_consistency"')
    (tiny_project / "specs" / "seed_consistency.toml").write_text(spec)
    results = run("specs/seed_consistency.toml")
    run_id = results.metadata["run_id"]
    namespace = executed("results.md", monkeypatch, lambda code: code.replace("<run id>", run_id))
    assert namespace["layers"].shape[0] == 3  # layers 0..2 of the tiny models
    assert namespace["models"] and "seed_consistency" in namespace["spec_text"]
    assert namespace["table"].num_rows == 6
    meta = namespace["meta"]
    assert meta["spec_name"] == "seed_consistency"
