"""A third-party expectation kind, as docs/plugins.md writes it, registered through the hook and judged."""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from probekit.cli import main
from probekit.engine.session import Session
from probekit.expect.evaluate import evaluate
from probekit.results.schema import build_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def doc_plugin() -> str:
    """The code block of docs/plugins.md that starts with ``# depth_correlation.py``, as a reader pastes it."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    [block] = [b for b in blocks if b.startswith("# depth_correlation.py")]
    return block


SPEC = textwrap.dedent("""
    name = "demo"
    plugins = ["depth_correlation.py"]
    [models.a]
    id = "org/a"
    [models.b]
    id = "org/b"
    [data.d]
    task = "sentiment"
    [metrics.svcca]
    [[comparisons]]
    name = "ab"
    a = "a"
    b = "b"
    data = "d"
    [[expect]]
    comparison = "ab"
    metric = "svcca"
    depth_correlation = {r}
""")


def table(values: dict[int, float]):
    records = [{"run_id": "r", "spec": "demo", "comparison": "ab", "model_a": "a", "model_b": "b", "snapshot_a": None,
                "snapshot_b": None, "data": "d", "metric": "svcca", "layer": layer, "head": None, "value": value,
                "n_examples": 10, "n_tokens": 100} for layer, value in values.items()]
    return build_table(records, {"run_id": "r", "spec_name": "demo"})


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "depth_correlation.py").write_text(doc_plugin())
    return tmp_path


def test_the_documented_kind_validates_and_judges(folder):
    (folder / "s.toml").write_text(SPEC.format(r=0.8))
    spec, manager = Session().load(folder / "s.toml")
    assert manager.expectation_plugins["depth_correlation"].endswith("depth_correlation.py")
    [expectation] = spec.expectations
    assert expectation.name == "expect[0]: svcca depth_correlation"
    rising, wobbling = evaluate([expectation], table({0: 0.1, 1: 0.2, 2: 0.25, 3: 0.4}))[0], \
        evaluate([expectation], table({0: 0.1, 1: 0.4, 2: 0.2, 3: 0.3}))[0]
    assert rising.passed and rising.reason == "Spearman with depth >= 0.8"
    assert not wobbling.passed
    assert wobbling.reason == "ab: Spearman 0.400 with depth, expected >= 0.8"  # ranks 0 3 1 2 against 0 1 2 3
    assert wobbling.offending == {("ab", layer) for layer in range(4)}
    empty = evaluate([expectation], build_table([], {"run_id": "r", "spec_name": "demo"}))[0]
    assert not empty.passed and "no svcca results for ab" in empty.reason  # missing values fail, never pass


def test_the_documented_kind_refuses_a_bad_value_at_check_time(folder, capsys):
    (folder / "s.toml").write_text(SPEC.format(r=1.5))
    assert main(["check", str(folder / "s.toml")]) == 2
    assert "expect[0].depth_correlation: found 1.5; expected a correlation in [-1, 1], e.g. 0.8" in capsys.readouterr().out
