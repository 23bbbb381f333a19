"""The third-party path: a metric outside probekit's packages, found through the entry-point group."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pyarrow.parquet as pq
import pytest

from probekit.errors import PluginError
from probekit.hooks.manager import Origin, PluginManager
from probekit.testing.fixtures import write_tiny_csv

pytestmark = pytest.mark.usefixtures("one_thread")

PLUGIN = textwrap.dedent('''
    """A third-party metric: distance between the two models' mean hidden state, per layer."""
    from dataclasses import dataclass

    import probekit


    @dataclass(frozen=True)
    class Options:
        scale: float = 1.0


    class MeanShift(probekit.Metric):
        name = "mean_shift"
        unit = "L2"
        needs = frozenset({"hidden_states"})
        Options = Options

        def __init__(self, options, context):
            super().__init__(options, context)
            self.sums = None
            self.count = 0

        def update(self, a, b, batch):
            mask = batch.attention_mask.bool()
            diffs = [(x[mask] - y[mask]).double().sum(0) for x, y in zip(a.hidden_states, b.hidden_states)]
            self.sums = diffs if self.sums is None else [s + d for s, d in zip(self.sums, diffs)]
            self.count += int(mask.sum())

        def finalize(self):
            return [probekit.Row(layer, self.options.scale * float((s / self.count).norm()), n_tokens=self.count)
                    for layer, s in enumerate(self.sums)]


    @probekit.hookimpl
    def probekit_register_metrics(register):
        register(MeanShift)
''')


@pytest.fixture
def site(tmp_path):
    """A throwaway installed distribution: a module plus dist-info with an entry point."""
    site = tmp_path / "site"
    (site / "probekit_example_metric-1.2.3.dist-info").mkdir(parents=True)
    (site / "probekit_example_metric.py").write_text(PLUGIN)
    info = site / "probekit_example_metric-1.2.3.dist-info"
    info.joinpath("METADATA").write_text("Metadata-Version: 2.1\nName: probekit-example-metric\nVersion: 1.2.3\n")
    info.joinpath("entry_points.txt").write_text("[probekit]\nmean_shift = probekit_example_metric\n")
    return site


def probekit_cli(site, *args, cwd=None, autoload=False):
    """``python -m probekit`` with ``site`` importable; ``autoload``: load entry-point plugins (the suite turns them off)."""
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    if autoload:
        env.pop("PROBEKIT_DISABLE_PLUGIN_AUTOLOAD", None)
    return subprocess.run([sys.executable, "-m", "probekit", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


def test_entry_point_metric_is_listed_with_its_distribution(site):
    result = probekit_cli(site, "plugins", autoload=True)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if "mean_shift" in line)
    assert "probekit-example-metric" in line and "1.2.3" in line
    assert "attention_js" in result.stdout and "svcca" in result.stdout


def test_entry_point_metric_produces_rows_in_a_run(site, tmp_path, tiny_models):
    write_tiny_csv(tmp_path / "eval.csv", 20)
    spec = tmp_path / "third_party.toml"
    spec.write_text(textwrap.dedent(f"""
        [models.a]
        id = "{tiny_models[0]}"
        [models.b]
        id = "{tiny_models[1]}"
        [data.eval]
        path = "eval.csv"
        [metrics.mean_shift]
        scale = 2.0
        [[comparisons]]
        a = "a"
        b = "b"
        data = "eval"
    """))
    result = probekit_cli(site, "run", str(spec), "-o", str(tmp_path / "run"), autoload=True)
    assert result.returncode == 0, result.stderr
    rows = pq.read_table(tmp_path / "run" / "results.parquet").to_pylist()
    assert [r["layer"] for r in rows] == [0, 1, 2]
    assert all(r["metric"] == "mean_shift" and r["value"] > 0 for r in rows)


def test_plugin_file_named_in_the_spec_is_loaded(tmp_path, tiny_models):
    (tmp_path / "my_metric.py").write_text(PLUGIN)
    write_tiny_csv(tmp_path / "eval.csv", 20)
    spec = tmp_path / "local.toml"
    spec.write_text(textwrap.dedent(f"""
        plugins = ["my_metric.py"]
        [models.a]
        id = "{tiny_models[0]}"
        [data.eval]
        path = "eval.csv"
        [metrics.mean_shift]
        [[comparisons]]
        a = "a"
        b = "a"
        data = "eval"
    """))
    result = probekit_cli(tmp_path, "run", str(spec), "-o", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    rows = pq.read_table(tmp_path / "run" / "results.parquet").to_pylist()
    assert rows and all(r["value"] == 0.0 for r in rows)  # rows first: all() of nothing would pass


def test_misspelled_hook_is_reported_by_name():
    class Typo:
        def probekit_register_metric(self, register):  # missing "s"
            pass

    with pytest.raises(PluginError, match="probekit_register_metric"):
        PluginManager().add(Typo(), "typo", Origin("test", "0"))


def test_bad_hook_signature_is_reported():
    class BadSignature:
        def probekit_register_metrics(self, register, extra):
            pass

    with pytest.raises(PluginError, match="extra"):
        PluginManager().add(BadSignature(), "bad", Origin("test", "0"))


def test_same_metric_name_from_two_plugins_is_an_error():
    import probekit.plugins.svcca as svcca

    class Again:
        @staticmethod
        def probekit_register_metrics(register):
            register(svcca.SVCCA)

    manager = PluginManager()
    manager.add(svcca, "svcca", Origin("probekit", "0"))
    with pytest.raises(PluginError, match="metric 'svcca' is registered by two plugins: 'svcca' and 'again'"):
        manager.add(Again(), "again", Origin("other", "1"))
    assert manager.metrics["svcca"].plugin == "svcca" and "again" not in manager.origins


def test_entry_points_are_off_while_the_switch_is_set(site):
    assert os.environ["PROBEKIT_DISABLE_PLUGIN_AUTOLOAD"] == "1"  # the suite's conftest sets it
    result = probekit_cli(site, "plugins")
    assert result.returncode == 0, result.stderr
    assert "mean_shift" not in result.stdout and "svcca" in result.stdout


def test_no_prefix_blocks_a_plugin(site):
    result = probekit_cli(site, "plugins", "-p", "no:attention_js", "-p", "no:mean_shift", autoload=True)
    assert result.returncode == 0, result.stderr
    assert "attention_js" not in result.stdout and "mean_shift" not in result.stdout
    assert "svcca" in result.stdout
