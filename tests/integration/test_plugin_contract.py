"""The plugin contract with no hidden rules, and one Session behind every entry point.

Each bad-input case of the Session issue has a test here: a broken entry point, a
``details`` key named ``layer``, two metrics with clashing ``details`` types, an
unsupported option type, a hook implementation that takes fewer arguments, an
edited local plugin and a changed GLUE file behind a cached result.
"""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from probekit.results.events import Event
from probekit import api
from probekit.engine.session import Session
from probekit.errors import ExitCode, PluginError, SpecError
from probekit.hooks.manager import build_manager
from probekit.results.io import metadata
from probekit.testing.fixtures import save_tiny_model, write_tiny_csv

METRIC_TEMPLATE = '''
from dataclasses import dataclass

import probekit


@dataclass(frozen=True)
class Options:
    scale: float = 1.0


class MeanShift(probekit.Metric):
    """Distance between the two models' mean hidden states, per layer."""

    name = "{name}"
    unit = "L2"
    needs = frozenset({{"hidden_states"}})
    details = {details}
    Options = Options

    def __init__(self, options, context):
        super().__init__(options, context)
        self.sums = None
        self.count = 0

    def update(self, a, b, batch):
        {update_extra}
        mask = batch.attention_mask.bool()
        diffs = [(x[mask] - y[mask]).double().sum(0) for x, y in zip(a.hidden_states, b.hidden_states)]
        self.sums = diffs if self.sums is None else [s + d for s, d in zip(self.sums, diffs)]
        self.count += int(mask.sum())

    def finalize(self):
        return [probekit.Row(layer, {formula}, n_tokens=self.count, details={row_details})
                for layer, s in enumerate(self.sums)]


@probekit.hookimpl
def probekit_register_metrics(register):
    register(MeanShift)
'''


def metric_plugin(path: Path, *, name="mean_shift", details="{}", row_details="{}", update_extra="pass",
                  formula="self.options.scale * float((s / self.count).norm())") -> Path:
    path.write_text(METRIC_TEMPLATE.format(name=name, details=details, row_details=row_details,
                                           update_extra=update_extra, formula=formula))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return save_tiny_model(root / "a", seed=0), save_tiny_model(root / "b", seed=1)


def write_spec(folder: Path, models, *, metrics: str, plugins=(), data: str | None = None) -> Path:
    write_tiny_csv(folder / "eval.csv", 24)
    spec = folder / "spec.toml"
    spec.write_text(textwrap.dedent(f"""
        name = "contract"
        plugins = {list(plugins)!r}
        [run]
        batch_size = 8
        max_length = 64
        [models.a]
        id = "{models[0]}"
        [models.b]
        id = "{models[1]}"
        """) + (data or '[data.eval]\npath = "eval.csv"\n') + textwrap.dedent(metrics) + textwrap.dedent("""
        [[comparisons]]
        a = "a"
        b = "b"
        data = "eval"
        """))
    return spec


def cli(*args, cwd=None, site: Path | None = None, autoload: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    if autoload:
        env.pop("PROBEKIT_DISABLE_PLUGIN_AUTOLOAD", None)
    return subprocess.run([sys.executable, "-m", "probekit", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


# ------------------------------------------------------------------ a broken installed plugin


@pytest.fixture
def broken_site(tmp_path):
    """An installed distribution whose ``probekit`` entry point fails to import."""
    site = tmp_path / "site"
    info = site / "probekit_broken-0.3.dist-info"
    info.mkdir(parents=True)
    (site / "probekit_broken.py").write_text("import a_module_that_is_not_installed\n")
    info.joinpath("METADATA").write_text("Metadata-Version: 2.1\nName: probekit-broken\nVersion: 0.3\n")
    info.joinpath("entry_points.txt").write_text("[probekit]\nbroken = probekit_broken\n")
    return site


def test_a_broken_entry_point_is_one_warning_and_everything_else_works(broken_site, tmp_path, models):
    spec = write_spec(tmp_path, models, metrics="[metrics.svcca]\n")
    result = cli("run", spec, "-o", tmp_path / "run", site=broken_site, autoload=True)
    assert result.returncode == ExitCode.OK, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, result.stderr
    assert "probekit-broken" in warnings[0] and "a_module_that_is_not_installed" in warnings[0]
    assert "-p no:broken" in warnings[0]
    assert "Traceback" not in result.stderr
    assert pq.read_table(tmp_path / "run" / "results.parquet").num_rows == 3


def test_blocking_the_broken_plugin_silences_it_and_autoload_can_be_turned_off(broken_site):
    blocked = cli("plugins", "-p", "no:broken", site=broken_site, autoload=True)
    assert blocked.returncode == 0 and "warning" not in blocked.stderr, blocked.stderr
    disabled = cli("plugins", site=broken_site)  # the suite runs with PROBEKIT_DISABLE_PLUGIN_AUTOLOAD=1
    assert disabled.returncode == 0 and "warning" not in disabled.stderr, disabled.stderr
    assert "svcca" in disabled.stdout


def test_a_spec_that_needs_the_broken_plugins_metric_names_the_plugin(broken_site, tmp_path, models):
    spec = write_spec(tmp_path, models, metrics="[metrics.broken_metric]\n")
    result = cli("check", spec, site=broken_site, autoload=True)
    assert result.returncode == ExitCode.BAD_INPUT
    assert "broken_metric" in result.stdout and "probekit-broken" in result.stdout, result.stdout


# ------------------------------------------------------------------ registration errors


def test_a_details_key_named_like_an_identity_column_is_a_registration_error(tmp_path):
    plugin = metric_plugin(tmp_path / "bad_details.py", details='{"layer": int}')
    with pytest.raises(PluginError, match=r"'layer'.*column of every results table"):
        build_manager([str(plugin)])


def test_two_metrics_declaring_one_details_key_with_two_types_name_both(tmp_path):
    plugin = metric_plugin(tmp_path / "clash.py", details='{"k_x": str}')
    with pytest.raises(PluginError, match=r"'k_x'.*str.*mean_shift.*int.*svcca"):
        build_manager([str(plugin)])


def test_an_option_type_a_spec_cannot_give_is_refused_at_registration(tmp_path):
    plugin = metric_plugin(tmp_path / "dict_option.py")
    plugin.write_text(plugin.read_text().replace("scale: float = 1.0", "scale: dict = None"))
    with pytest.raises(PluginError, match=r"Options.scale: dict is not a type a spec can give"):
        build_manager([str(plugin)])


def test_tuple_options_are_checked_and_given_as_tuples(tmp_path, models):
    plugin = metric_plugin(tmp_path / "tuple_option.py")
    plugin.write_text(plugin.read_text().replace("scale: float = 1.0", "scale: float = 1.0\n    layers: tuple[int, ...] = ()"))
    good = write_spec(tmp_path, models, plugins=["tuple_option.py"], metrics="[metrics.mean_shift]\nlayers = [1, 2]\n")
    spec, _ = Session().load(good)
    assert spec.metrics["mean_shift"].options.layers == (1, 2)
    bad = write_spec(tmp_path, models, plugins=["tuple_option.py"], metrics='[metrics.mean_shift]\nlayers = ["x"]\n')
    with pytest.raises(SpecError, match=r"metrics.mean_shift.layers: found \['x'\]; expected an array of integers"):
        Session().load(bad)


def test_a_hook_implementation_with_fewer_arguments_is_called_through_pluggy(tmp_path, models):
    (tmp_path / "outputs.py").write_text(textwrap.dedent("""
        import probekit

        @probekit.hookimpl
        def probekit_run_finished(run):  # takes `run` only: the hook also offers `console`
            (run.run_dir / "rows.txt").write_text(str(run.table.num_rows))
    """))
    spec = write_spec(tmp_path, models, plugins=["outputs.py"], metrics="[metrics.svcca]\n")
    result = api.run(spec, output=tmp_path / "run", use_cache=False)
    assert (tmp_path / "run" / "rows.txt").read_text() == str(result.table.num_rows) == "3"


def test_a_misspelled_hook_suggests_the_right_name(tmp_path):
    (tmp_path / "typo.py").write_text("def probekit_register_metric(register):\n    pass\n")
    with pytest.raises(PluginError, match=r"probekit_register_metric.*did you mean 'probekit_register_metrics'"):
        build_manager([str(tmp_path / "typo.py")])


# ------------------------------------------------------------------ failures at run time


def test_a_plugin_bug_in_update_is_exit_3_and_keeps_the_other_metrics_rows(tmp_path, models):
    metric_plugin(tmp_path / "buggy.py", update_extra="raise KeyError('oops')")
    spec = write_spec(tmp_path, models, plugins=["buggy.py"], metrics="[metrics.mean_shift]\n[metrics.svcca]\n")
    result = cli("run", spec, "-o", tmp_path / "run", cwd=tmp_path)
    assert result.returncode == ExitCode.RUN_FAILURE, result.stderr
    assert "mean_shift: plugin bug: KeyError" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    table = pq.read_table(tmp_path / "run" / "results.parquet")
    assert set(table.column("metric").to_pylist()) == {"svcca"}
    verbose = cli("run", spec, "-o", tmp_path / "run2", "--verbose", cwd=tmp_path)
    assert "Traceback" in verbose.stdout + verbose.stderr


def test_a_details_value_of_the_wrong_type_fails_that_metric_alone(tmp_path, models):
    metric_plugin(tmp_path / "wrong_type.py", details='{"count": int}', row_details='{"count": "many"}')
    spec = write_spec(tmp_path, models, plugins=["wrong_type.py"], metrics="[metrics.mean_shift]\n[metrics.svcca]\n")
    result = Session(use_cache=False).run(spec, output=tmp_path / "run")
    assert result.exit_code == ExitCode.RUN_FAILURE
    assert "details['count'] = 'many' is not int as declared" in result.failures[0].message
    written = pq.read_table(tmp_path / "run" / "results.parquet")
    assert set(written.column("metric").to_pylist()) == {"svcca"}
    assert written.schema.field("count").type == "int64"  # the declared type, even with no value written


def test_metric_error_in_init_drops_that_metric_with_its_message(tmp_path, models):
    plugin = metric_plugin(tmp_path / "picky.py")
    plugin.write_text(plugin.read_text().replace(
        "        super().__init__(options, context)\n",
        "        super().__init__(options, context)\n        raise probekit.MetricError('needs two different vocabularies')\n"))
    spec = write_spec(tmp_path, models, plugins=["picky.py"], metrics="[metrics.mean_shift]\n[metrics.svcca]\n")
    result = Session(use_cache=False).run(spec, output=tmp_path / "run")
    assert result.exit_code == ExitCode.BAD_INPUT and not result.failures
    assert result.errors == [Event("error", "needs two different vocabularies", "a_vs_b", "mean_shift")]
    assert set(result.table.column("metric").to_pylist()) == {"svcca"}


# ------------------------------------------------------------------ the results cache


def test_an_edited_local_plugin_is_not_served_its_old_values(tmp_path, models):
    plugin = metric_plugin(tmp_path / "editable.py")
    spec = write_spec(tmp_path, models, plugins=["editable.py"], metrics="[metrics.mean_shift]\n")
    first = api.run(spec, reports=tmp_path / "reports")
    assert api.run(spec, reports=tmp_path / "reports").cached
    metric_plugin(plugin, formula="2 * self.options.scale * float((s / self.count).norm())")
    edited = api.run(spec, reports=tmp_path / "reports")
    assert not edited.cached
    assert edited.series("a_vs_b", "mean_shift")[1] == pytest.approx(2 * first.series("a_vs_b", "mean_shift")[1])


def test_a_changed_local_data_file_gives_a_fresh_run(tmp_path, models):
    spec = write_spec(tmp_path, models, metrics="[metrics.svcca]\n")
    api.run(spec, reports=tmp_path / "reports")
    write_tiny_csv(tmp_path / "eval.csv", 30, seed=1)
    again = api.run(spec, reports=tmp_path / "reports")
    assert not again.cached and again.table.column("n_examples")[0].as_py() == 30


def test_a_changed_glue_file_behind_a_cached_result_gives_a_fresh_run(tmp_path, models):
    glue = tmp_path / "glue" / "SST-2"
    glue.mkdir(parents=True)
    sentences = [f"the {w} film was {v}" for w in ("cat", "dog", "bird", "fish") for v in ("good", "bad", "dull")]
    (glue / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(sentences)))
    data = '[data.eval]\nglue = "sst2"\nsplit = "validation"\nglue_dir = "glue"\n'
    spec = write_spec(tmp_path, models, metrics="[metrics.svcca]\n", data=data)
    first = api.run(spec, reports=tmp_path / "reports")
    assert first.table.column("n_examples")[0].as_py() == 12
    assert api.run(spec, reports=tmp_path / "reports").cached
    with (glue / "dev.tsv").open("a") as handle:
        handle.write("the horse film was great\t1\n")
    changed = api.run(spec, reports=tmp_path / "reports")
    assert not changed.cached and changed.table.column("n_examples")[0].as_py() == 13


# ------------------------------------------------------------------ one Session behind every entry point


def test_probekit_run_reuses_identical_results_and_says_so(tmp_path, models):
    spec = write_spec(tmp_path, models, metrics="[metrics.svcca]\n")
    first = cli("run", spec, "--reports", tmp_path / "reports", cwd=tmp_path)
    second = cli("run", spec, "--reports", tmp_path / "reports", cwd=tmp_path)
    fresh = cli("run", spec, "--reports", tmp_path / "reports", "--fresh", cwd=tmp_path)
    assert first.returncode == second.returncode == fresh.returncode == 0, first.stderr + second.stderr
    assert "reusing its results" not in first.stderr
    assert "reusing its results" in second.stderr
    assert "reusing its results" not in fresh.stderr
    assert len(list((tmp_path / "reports" / "spec_name=contract").iterdir())) == 2  # the reuse made no new run folder


def test_run_api_and_pytest_give_the_same_results_figures_and_report(tmp_path, models):
    spec = write_spec(tmp_path, models, metrics="[metrics.svcca]\n[metrics.attention_js]\n")
    spec.write_text(spec.read_text() + '\n[[expect]]\nmetric = "svcca"\nlayers = "all"\nbelow = 1.0\n')
    from_cli = cli("run", spec, "-o", tmp_path / "cli", "--fresh", cwd=tmp_path)
    from_api = api.run(spec, output=tmp_path / "api", use_cache=False)
    env = {**os.environ, "COLUMNS": "200"}
    from_pytest = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(spec),
                                  "--probekit-no-cache", "--probekit-reports", str(tmp_path / "pytest"),
                                  "--rootdir", str(tmp_path)], capture_output=True, text=True, env=env, cwd=tmp_path,
                                 timeout=300)
    assert from_cli.returncode == 0 and from_pytest.returncode == 0, from_cli.stderr + from_pytest.stdout
    pytest_dir = next((tmp_path / "pytest" / "spec_name=contract").iterdir())
    folders = [tmp_path / "cli", tmp_path / "api", pytest_dir]
    values = [pq.read_table(folder / "results.parquet").select(["comparison", "metric", "layer", "head", "value"])
              for folder in folders]
    assert values[0].equals(values[1]) and values[0].equals(values[2])
    figures = [sorted(p.name for p in folder.glob("*.png")) for folder in folders]
    assert figures[0] == figures[1] == figures[2] and "svcca.png" in figures[0]
    assert "pretrained" not in from_cli.stdout and "a_vs_b" in from_cli.stdout and from_api.exit_code == 0


def test_no_figures_blocks_the_figures_plugin(tmp_path, models):
    spec = write_spec(tmp_path, models, metrics="[metrics.svcca]\n")
    api.run(spec, output=tmp_path / "run", plugins=["no:figures", "no:html"], use_cache=False)
    assert (tmp_path / "run" / "results.parquet").is_file()
    assert not list((tmp_path / "run").glob("*.png"))


def test_each_spec_is_validated_with_its_own_plugins(tmp_path, models):
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir(), second.mkdir()
    metric_plugin(first / "mine.py")
    with_plugin = write_spec(first, models, plugins=["mine.py"], metrics="[metrics.mean_shift]\n")
    without = write_spec(second, models, metrics="[metrics.mean_shift]\n")
    result = cli("check", with_plugin, without)
    assert result.returncode == ExitCode.BAD_INPUT
    assert f"{with_plugin}: ok" in result.stdout
    assert "the metric 'mean_shift', which no plugin provides" in result.stdout


def test_the_example_cka_distribution_runs_through_its_entry_point(tmp_path, models):
    """examples/probekit-cka, installed by the README's set-up command, is a real third-party plugin."""
    assert importlib.metadata.distribution("probekit-cka").entry_points.select(group="probekit")
    spec = write_spec(tmp_path, models, metrics="[metrics.example_cka]\n")
    spec.write_text(spec.read_text() + '\n[[comparisons]]\nname = "same"\na = "a"\nb = "a"\ndata = "eval"\n'
                    '\n[[expect]]\ncomparison = "same"\nmetric = "example_cka"\ncloser_than = "a_vs_b"\n')
    result = cli("run", spec, "-o", tmp_path / "run", cwd=tmp_path, autoload=True)
    assert result.returncode == ExitCode.OK, result.stdout + result.stderr
    table = pq.read_table(tmp_path / "run" / "results.parquet")
    same = [r["value"] for r in table.to_pylist() if r["comparison"] == "same"]
    assert same == pytest.approx([1.0] * 3, abs=1e-9)
    assert metadata(table)["metrics"]["example_cka"]["direction"] == "similarity"
