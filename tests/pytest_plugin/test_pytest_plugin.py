"""The pytest plugin, end to end with pytester: specs with [[expect]] on tiny random models."""
from __future__ import annotations

import textwrap

import pytest

from probekit.testing.fixtures import save_tiny_model, write_tiny_csv
from probekit.testing.pytest_plugin import is_probekit_spec

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True, scope="module")
def warm_imports(one_thread, tmp_path_factory):
    """pytester's in-process runs drop every module first imported during a test (transformers'
    lazy modules do not survive that): run a tiny spec once before any pytester test."""
    from probekit import api

    folder = tmp_path_factory.mktemp("warm")
    save_tiny_model(folder / "m_a", seed=0)
    save_tiny_model(folder / "m_b", seed=1)
    write_tiny_csv(folder / "d.csv", 48)
    (folder / "tiny.toml").write_text(SPEC)
    api.run(folder / "tiny.toml", use_cache=False, reports=folder / "reports")


SPEC = """
name = "tiny"
[run]
device = "cpu"
batch_size = 16
[models.a]
id = "./m_a"
[models.b]
id = "./m_b"
[data.d]
path = "d.csv"
[metrics.svcca]
[metrics.attention_js]
[[comparisons]]
name = "a_vs_b"
a = "a"
b = "b"
data = "d"
[[comparisons]]
name = "a_vs_a"
a = "a"
b = "a"
data = "d"
metrics = ["svcca"]

[[expect]]
name = "same model is at distance zero"
comparison = "a_vs_a"
metric = "svcca"
below = 1e-6

[[expect]]
name = "random models are far apart"
comparison = "a_vs_b"
metric = "svcca"
layers = "1-2"
above = 0.99

[[expect]]
comparison = "a_vs_a"
metric = "svcca"
closer_than = "a_vs_b"
"""


@pytest.fixture
def project(pytester, monkeypatch, tmp_path_factory):
    """A folder with tiny.toml, two tiny model folders, a CSV, and non-spec TOML files."""
    monkeypatch.setenv("PROBEKIT_CACHE", str(tmp_path_factory.mktemp("probekit_cache")))
    save_tiny_model(pytester.path / "m_a", seed=0)
    save_tiny_model(pytester.path / "m_b", seed=1)
    write_tiny_csv(pytester.path / "d.csv", 48)
    pytester.makefile(".toml", tiny=SPEC)
    pytester.makefile(".toml", pyproject='[project]\nname = "x"\n[tool.pytest.ini_options]\naddopts = ""\n')
    pytester.makefile(".toml", notes='comparisons = "not tables"\n[expect]\nx = 1\n')
    return pytester


def run_folders(pytester) -> list:
    folder = pytester.path / "reports" / "spec_name=tiny"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_collects_expectations_as_items(project):
    result = project.runpytest("--collect-only", "-q")
    assert result.outlines[:3] == [
        "tiny.toml::same model is at distance zero",
        "tiny.toml::random models are far apart",
        "tiny.toml::expect[2]: svcca ordering",
    ]
    result.stdout.fnmatch_lines(["3 tests collected*"])
    assert "pyproject" not in result.stdout.str() and "notes" not in result.stdout.str()
    assert run_folders(project) == []  # collecting runs nothing


def test_spec_detection(tmp_path):
    (tmp_path / "a.toml").write_text(SPEC)
    (tmp_path / "b.toml").write_text(SPEC.split("[[expect]]")[0])  # a spec without expectations
    (tmp_path / "c.toml").write_text('[tool.x]\ncomparisons = 1\nexpect = 2\n')
    (tmp_path / "d.toml").write_text('[[comparisons]]\n[[expect]]\nbroken = \n')  # a broken spec: shown, not hidden
    assert [is_probekit_spec(tmp_path / f"{n}.toml") for n in "abcd"] == [True, False, False, True]


def test_runs_once_per_session_and_reports_a_failure(project):
    result = project.runpytest("-v")
    result.assert_outcomes(passed=2, failed=1)
    assert len(run_folders(project)) == 1  # one run for three items
    run_dir = run_folders(project)[0]
    result.stdout.fnmatch_lines([
        "*tiny.toml::random models are far apart FAILED*",
        "*_ tiny.toml: random models are far apart _*",
        "layers 1, 2: 2 of 2 not above 0.99 (layer 1: *, layer 2: *)",
        "expectation: expect[1] of tiny.toml: svcca of a_vs_b, layers 1-2: each above 0.99",
        "",
        "  comparison  layer     value  expected",
        "  a_vs_b          1  *0.*  > 0.99*<-- fails",
        "  a_vs_b          2  *0.*  > 0.99*<-- fails",
        "",
        f"run folder: {run_dir}",
        f"tiny.toml: ran, run folder {run_dir}",
    ])
    # a second session reuses the cached results: no new run folder
    again = project.runpytest("-k", "zero or ordering")
    again.assert_outcomes(passed=2, deselected=1)
    again.stdout.fnmatch_lines([f"tiny.toml: cached results, run folder {run_dir}"])
    assert len(run_folders(project)) == 1


def test_exitfirst_and_no_cache(project):
    result = project.runpytest("-x", "--probekit-no-cache", "-k", "far or ordering")
    result.assert_outcomes(failed=1, deselected=1)
    result.stdout.fnmatch_lines(["*stopping after 1 failures*"])


def test_invalid_spec_is_a_collection_error(project):
    project.makefile(".toml", broken=SPEC.replace('metric = "svcca"\nbelow', 'metric = "svca"\nbelow'))
    result = project.runpytest("broken.toml")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR collecting broken.toml*",
        "probekit spec *broken.toml: 1 problem",
        "  expect[0].metric: found 'svca'; expected a metric declared under [metrics]: svcca, attention_js "
        "(did you mean 'svcca'?)",
    ])
    assert run_folders(project) == []


def test_a_spec_that_cannot_run_fails_each_item_with_the_reason(project):
    (project.path / "d.csv").write_text("sentence,label\nthe cat sat,0\n")
    result = project.runpytest("tiny.toml")
    result.assert_outcomes(passed=0, failed=3)
    result.stdout.fnmatch_lines(["*tiny.toml: the spec could not run: *data.d (*d.csv): no column for text = 'text'; "
                                 "the columns are: sentence, label"])
    # Each item's failure section gives the reason (the short summary may repeat it: CI=true keeps it whole).
    sections = [line for line in result.stdout.lines if "tiny.toml: the spec could not run: " in line
                and not line.startswith("FAILED")]
    assert len(sections) == 3
    assert "Traceback" not in result.stdout.str()


def test_fixtures_for_plugin_authors(project):
    project.makepyfile(test_metric=textwrap.dedent("""
        from probekit.plugins.svcca import SVCCA
        from probekit.testing.fixtures import run_metric

        def test_svcca_on_the_tiny_pair(tiny_model_pair, tiny_batches):
            a, b = tiny_model_pair
            same, different = run_metric(SVCCA, a, a, tiny_batches), run_metric(SVCCA, a, b, tiny_batches)
            assert len(same) == len(different) == a.num_layers + 1  # every layer: all() of nothing would pass
            assert all(abs(row.value) < 1e-6 for row in same)
            assert all(row.value > 0 for row in different)

        def test_series_comparison_is_explained():
            from probekit.api import LayerSeries
            assert LayerSeries({0: 0.1, 1: 0.2}, metric="m") == {0: 0.1, 1: 0.3}
    """))
    result = project.runpytest("test_metric.py")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*layer series differ*", "*1  0.2  0.3  -0.1  <--*"])
