"""Finding plugins, and what they register, on pluggy's rails.

Order, like pytest: the built-in plugins, then the ``probekit`` entry-point group
(installed distributions, unless ``PROBEKIT_DISABLE_PLUGIN_AUTOLOAD`` is set),
then modules or ``.py`` files named with ``-p`` or in a spec's ``plugins``.
``-p no:NAME`` blocks a plugin before it is imported. An installed plugin that
fails to import or registers something invalid is set aside with a warning; one
named explicitly is an error. Every hook is called through pluggy.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pluggy

import probekit
from probekit.data.source import DataSource
from probekit.errors import PluginError, did_you_mean
from probekit.hooks import hookspecs
from probekit.metrics.base import Metric
from probekit.metrics.checks import check_metric_class
from probekit.results.history import RUN_KEY, SPEC_KEY
from probekit.results.schema import COLUMNS

ENTRY_POINT_GROUP = "probekit"
AUTOLOAD_SWITCH = "PROBEKIT_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_PLUGINS = (
    "attention_js", "attention_entropy", "attention_special", "svcca", "pwcca", "procrustes",
    "linear_cka", "debiased_cka", "cross_layer", "layer_replacement", "mutual_knn", "cknna", "rsa",
    "linear_probe", "mdl_probe",
    "source_task", "source_path", "source_glue", "source_hf", "source_conllu", "expectations",
    # pluggy calls the last registered first: the report, the figures, report.html, then the trackers (which
    # log the figures and report.html the others wrote)
    "wandb", "mlflow", "html", "figures", "report",
)
#: Column names a metric's details may not take: the identity columns, and the run folders'
#: Hive keys that readers of reports/ see as columns too.
RESERVED_COLUMNS = (*COLUMNS.names, SPEC_KEY, RUN_KEY)
HOOK_NAMES = tuple(name for name in dir(hookspecs) if name.startswith("probekit_"))


@dataclass(frozen=True)
class Origin:
    """Where a plugin came from: its distribution and version ('local file' and the path for a file)."""

    distribution: str
    version: str


@dataclass(frozen=True)
class MetricInfo:
    metric: type[Metric]
    plugin: str
    origin: Origin

    @property
    def distribution(self) -> str:
        return self.origin.distribution

    @property
    def version(self) -> str:
        return self.origin.version


@dataclass(frozen=True)
class PluginInfo:
    name: str
    origin: Origin
    metrics: tuple[str, ...]
    sources: tuple[str, ...]
    expectations: tuple[str, ...] = ()  # expectation kinds


class _StrictPluginManager(pluggy.PluginManager):
    """Treats every ``probekit_*`` function as a hook implementation, marked or not,
    so that a misspelled hook name is reported instead of silently ignored."""

    def parse_hookimpl_opts(self, plugin, name):
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith("probekit_") and callable(getattr(plugin, name, None)):
            return {}
        return opts


@dataclass
class PluginManager:
    """The plugins of one spec (or command) and what they registered."""

    pm: pluggy.PluginManager = field(default_factory=lambda: _StrictPluginManager("probekit"))
    origins: dict[str, Origin] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # plugin name -> why it was set aside
    blocked: tuple[str, ...] = ()
    metrics: dict[str, MetricInfo] = field(default_factory=dict)
    sources: dict[str, DataSource] = field(default_factory=dict)
    source_plugins: dict[str, str] = field(default_factory=dict)  # kind -> plugin name
    expectations: dict[str, type] = field(default_factory=dict)  # expectation kind name -> its class
    expectation_plugins: dict[str, str] = field(default_factory=dict)  # kind name -> plugin name

    def __post_init__(self) -> None:
        self.pm.add_hookspecs(hookspecs)

    # -- loading ------------------------------------------------------------------

    def block(self, names: Iterable[str]) -> None:
        names = list(names)
        for name in names:
            self.pm.set_blocked(name)
        self.blocked = (*self.blocked, *names)

    def add(self, plugin: object, name: str, origin: Origin) -> None:
        """Register a plugin and what it registers; PluginError naming it when it is invalid."""
        if self.pm.has_plugin(name) or self.pm.is_blocked(name):
            return
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as error:
            self.pm.unregister(name=name)
            raise PluginError(f"plugin {name!r} ({origin.distribution}): {_explain(error)}") from None
        self.origins[name] = origin
        try:
            self._collect(name, plugin)
        except PluginError:
            self.pm.unregister(name=name)
            del self.origins[name]
            raise

    def load_builtins(self) -> None:
        for name in BUILTIN_PLUGINS:
            if not self.pm.is_blocked(name):  # a block applies before the import
                module = importlib.import_module(f"probekit.plugins.{name}")
                self.add(module, name, Origin("probekit", probekit.__version__))

    def load_entry_points(self) -> None:
        """Every installed ``probekit`` entry point, through pluggy; a broken one is set aside with a reason."""
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            distribution = entry_point.dist.name if entry_point.dist else "?"
            version = entry_point.dist.version if entry_point.dist else "?"
            try:
                self.pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=entry_point.name)
                self.pm.check_pending()
                plugin = self.pm.get_plugin(entry_point.name)
                if plugin is not None and entry_point.name not in self.origins:
                    self.origins[entry_point.name] = Origin(distribution, version)
                    self._collect(entry_point.name, plugin)
            except Exception as error:  # noqa: BLE001 - one broken distribution must not stop the others
                self._set_aside(entry_point.name, distribution, error)

    def load_named(self, names: Iterable[str], base_dir: Path | None = None) -> None:
        """Load plugins named by module path (``pkg.mod``) or file (``path/to/plugin.py``)."""
        for name in names:
            try:
                module, plugin_name, origin = _import_plugin(name, base_dir)
                self.add(module, plugin_name, origin)
            except PluginError as error:
                error.plugin = name  # the caller tells a spec's `plugins` from a `-p` name by it
                raise

    def _set_aside(self, name: str, distribution: str, error: Exception) -> None:
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        self.origins.pop(name, None)
        self._forget(name)
        reason = _explain(error) if isinstance(error, pluggy.PluginValidationError) else (
            str(error) if isinstance(error, PluginError) else f"{type(error).__name__}: {error}")
        self.broken[name] = (f"plugin {name!r} from distribution {distribution} could not be loaded ({reason}); "
                             f"block it with `-p no:{name}` or uninstall {distribution}")

    def _forget(self, plugin_name: str) -> None:
        self.metrics = {k: v for k, v in self.metrics.items() if v.plugin != plugin_name}
        for kind in [k for k, p in self.source_plugins.items() if p == plugin_name]:
            del self.sources[kind], self.source_plugins[kind]
        for kind in [k for k, p in self.expectation_plugins.items() if p == plugin_name]:
            del self.expectations[kind], self.expectation_plugins[kind]

    # -- what plugins register ----------------------------------------------------------

    def _collect(self, name: str, plugin: object) -> None:
        """Call this plugin's registration hooks (through pluggy) and check what it registers."""
        others = [p for n, p in self.pm.list_name_plugin() if n != name and p is not None]
        metrics: list[type[Metric]] = []
        sources: list[type[DataSource]] = []
        self.pm.subset_hook_caller("probekit_register_metrics", others)(register=metrics.append)
        self.pm.subset_hook_caller("probekit_register_sources", others)(register=sources.append)
        kinds: list[type] = []
        self.pm.subset_hook_caller("probekit_register_expectations", others)(register=kinds.append)
        for metric_cls in metrics:
            self._add_metric(metric_cls, name)
        for source_cls in sources:
            self._add_source(source_cls, name)
        for kind_cls in kinds:
            self._add_expectation(kind_cls, name)

    def _add_expectation(self, kind_cls: type, plugin: str) -> None:
        kind, triggers = getattr(kind_cls, "kind", ""), tuple(getattr(kind_cls, "triggers", ()))
        if not (isinstance(kind_cls, type) and dataclasses.is_dataclass(kind_cls) and kind and triggers
                and callable(getattr(kind_cls, "from_table", None))):
            raise PluginError(f"plugin {plugin!r} registered {kind_cls!r}, which is not an expectation kind: a "
                              "dataclass subclass of probekit.Expectation with a `kind` and `triggers`")
        for other_name, other in self.expectations.items():
            shared = set(triggers) & set(other.triggers)
            if other_name == kind or shared:
                clash = f"kind {kind!r}" if other_name == kind else f"trigger key {sorted(shared)[0]!r}"
                raise PluginError(f"expectation {clash} is registered by two plugins: "
                                  f"{self.expectation_plugins[other_name]!r} and {plugin!r}")
        self.expectations[kind] = kind_cls
        self.expectation_plugins[kind] = plugin

    def _add_metric(self, metric_cls: type[Metric], plugin: str) -> None:
        problems = check_metric_class(metric_cls)
        if problems:
            raise PluginError(f"plugin {plugin!r} registered an invalid metric: " + "; ".join(problems))
        if metric_cls.name in self.metrics:
            other = self.metrics[metric_cls.name].plugin
            raise PluginError(f"metric {metric_cls.name!r} is registered by two plugins: {other!r} and {plugin!r}; "
                              f"a spec names a metric by its name, so give the metric of {plugin!r} another `name` "
                              f"(or block {other!r} with -p no:{other})")
        for key, kind in dict(metric_cls.details).items():
            if key in RESERVED_COLUMNS:
                raise PluginError(f"plugin {plugin!r}: metric {metric_cls.name!r} declares a details key {key!r}, "
                                  f"which is a column of every results table ({', '.join(RESERVED_COLUMNS)}); rename it")
            for info in self.metrics.values():
                other_kind = dict(info.metric.details).get(key)
                if other_kind is not None and other_kind is not kind:
                    raise PluginError(
                        f"details key {key!r} is declared as {kind.__name__} by metric {metric_cls.name!r} "
                        f"(plugin {plugin!r}) and as {other_kind.__name__} by metric {info.metric.name!r} "
                        f"(plugin {info.plugin!r}); one column has one type: rename one of them")
        self.metrics[metric_cls.name] = MetricInfo(metric_cls, plugin, self.origins[plugin])

    def _add_source(self, source_cls: type[DataSource], plugin: str) -> None:
        if not (isinstance(source_cls, type) and issubclass(source_cls, DataSource)) or not getattr(source_cls, "kind", ""):
            raise PluginError(f"plugin {plugin!r} registered {source_cls!r}, which is not a DataSource with a `kind`")
        kind = source_cls.kind
        if kind in self.sources or kind == "mix":
            other = self.source_plugins.get(kind, "probekit (mixes)")
            raise PluginError(f"data source {kind!r} is registered by two plugins: {other!r} and {plugin!r}")
        self.sources[kind] = source_cls()
        self.source_plugins[kind] = plugin

    # -- hooks of a run ----------------------------------------------------------------

    def run_starting(self, spec: object, log: tuple[str, ...]) -> None:
        self.pm.hook.probekit_run_starting(spec=spec, log=log)

    def run_finished(self, run: object, console: object) -> None:
        self.pm.hook.probekit_run_finished(run=run, console=console)

    def plugins(self) -> list[PluginInfo]:
        return [
            PluginInfo(name, self.origins[name],
                       tuple(m for m, info in self.metrics.items() if info.plugin == name),
                       tuple(k for k, p in self.source_plugins.items() if p == name),
                       tuple(k for k, p in self.expectation_plugins.items() if p == name))
            for name, plugin in self.pm.list_name_plugin()
            if plugin is not None and name in self.origins
        ]

    def unused_blocks(self) -> list[str]:
        """``-p no:NAME`` blocks that name no plugin there is (a typo, most likely), with a suggestion."""
        known = {*BUILTIN_PLUGINS, *self.origins, *self.broken, *_entry_point_names()}
        return [f"-p no:{name} blocks no plugin" + (f"; {hint}" if (hint := did_you_mean(name, known)) else "")
                for name in self.blocked if name not in known]

    def explain_missing_metric(self, name: str) -> str:
        """Why no plugin provides ``name``: blocked or broken plugins that might have."""
        if name and name in self.blocked:
            provides = ", which provides it" if name in BUILTIN_PLUGINS else ""
            reasons = [f"-p no:{name} blocks the plugin {name!r}{provides}"]
        else:
            reasons = [f"a blocked plugin may provide it: {', '.join(f'-p no:{b}' for b in self.blocked)}"] if self.blocked else []
        reasons += list(self.broken.values())
        return "; ".join(reasons)


def build_manager(names: Iterable[str] = (), base_dir: Path | None = None, *, autoload: bool | None = None,
                  on_warning: Callable[[str], None] | None = None) -> PluginManager:
    """Built-ins, installed entry points (unless disabled), then ``names``; ``no:NAME`` blocks a plugin."""
    names = list(names)
    empty = [n for n in names if not n.strip() or n.strip() == "no:"]
    if empty:
        error = PluginError(f"-p {empty[0]!r}: an empty plugin name; -p takes a plugin module (pkg.mod), "
                            "a .py file, or no:NAME to block a plugin")
        error.plugin = empty[0]
        raise error
    manager = PluginManager()
    manager.block([n.removeprefix("no:") for n in names if n.startswith("no:")])
    manager.load_builtins()
    if autoload if autoload is not None else not os.environ.get(AUTOLOAD_SWITCH):
        manager.load_entry_points()
    manager.load_named([n for n in names if not n.startswith("no:")], base_dir)
    for message in (*manager.broken.values(), *manager.unused_blocks()):
        (on_warning or _warn)(message)
    return manager


def _warn(message: str) -> None:
    print(f"probekit: warning: {message}", file=sys.stderr)


def _entry_point_names() -> set[str]:
    return {entry_point.name for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _explain(error: pluggy.PluginValidationError) -> str:
    """pluggy's complaint in a plugin author's words: the hook or the argument that was probably meant."""
    text = str(error)
    unknown_hook = re.match(r"unknown hook '(\w+)'", text)
    if unknown_hook:
        name = unknown_hook.group(1)
        hint = did_you_mean(name, HOOK_NAMES)
        return (f"unknown hook {name!r}; " + (hint if hint else f"the hooks are: {', '.join(HOOK_NAMES)}")
                + " (every probekit_* function of a plugin is taken as a hook implementation)")
    hook = next((name for name in HOOK_NAMES if f"'{name}'" in text), None)
    if hook is None:
        return f"{text} (hooks: {', '.join(HOOK_NAMES)})"
    offered = _hook_arguments(hook)
    definition = re.search(r"hookimpl definition: (.*)", text)
    arguments = re.search(r"Argument\(s\) \{(.*?)\} are declared in the hookimpl but can not be found", text)
    if arguments:
        names = [a.strip().strip("'\"") for a in arguments.group(1).split(",")]
        hints = [f"{a!r}: {h}" for a in names if (h := did_you_mean(a, offered))]
        return (f"{definition.group(1) if definition else hook} takes {', '.join(map(repr, names))}, which the hook "
                f"does not offer; {hook} offers: {', '.join(offered)} (an implementation takes any of them, by name)"
                + (f"; {'; '.join(hints)}" if hints else ""))
    first = " ".join(line.strip() for line in text.splitlines())
    return f"{first} (the hook {hook} offers: {', '.join(offered)})"


def _hook_arguments(hook: str) -> tuple[str, ...]:
    code = getattr(hookspecs, hook).__code__
    return code.co_varnames[:code.co_argcount]


def _import_plugin(name: str, base_dir: Path | None) -> tuple[object, str, Origin]:
    if name.endswith(".py"):
        path = Path(name).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise PluginError(f"plugin file {str(path)!r} does not exist")
        module_name = f"probekit_local_plugin_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            raise PluginError(f"plugin file {str(path)!r} failed to import: {_last_line(error)}") from error
        return module, str(path), Origin("local file", str(path))
    try:
        module = importlib.import_module(name)
    except Exception as error:
        raise PluginError(f"plugin module {name!r} could not be imported: {_last_line(error)}") from error
    return module, name, Origin("module", getattr(module, "__version__", ""))


def _last_line(error: Exception) -> str:
    return traceback.format_exception_only(error)[-1].strip()
