"""Finding plugins and the metrics they register.

Order, like pytest: the built-in plugins, then every module of the ``probekit``
entry-point group (installed distributions), then modules or ``.py`` files named
with ``-p`` on the command line or in a spec's ``plugins = [...]``.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pluggy

import probekit
from probekit import hookspecs
from probekit.metric import Metric, check_metric_class

ENTRY_POINT_GROUP = "probekit"
BUILTIN_PLUGINS = (
    "probekit.plugins.attention_js",
    "probekit.plugins.svcca",
    "probekit.plugins.layer_replacement",
)


class PluginError(Exception):
    """A plugin could not be loaded or registered something invalid."""


@dataclass(frozen=True)
class MetricInfo:
    metric: type[Metric]
    plugin: str
    distribution: str
    version: str


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str
    metrics: tuple[str, ...]


class _StrictPluginManager(pluggy.PluginManager):
    """Treats every ``probekit_*`` function as a hook implementation, marked or not,
    so that a misspelled hook name is reported instead of silently ignored."""

    def parse_hookimpl_opts(self, plugin, name):
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith("probekit_") and callable(getattr(plugin, name, None)):
            return {}
        return opts


class PluginManager:
    """A pluggy manager that knows where each plugin came from."""

    def __init__(self) -> None:
        self.pm = _StrictPluginManager("probekit")
        self.pm.add_hookspecs(hookspecs)
        self._origins: dict[str, tuple[str, str]] = {}
        self._metrics: dict[str, MetricInfo] | None = None

    def register(self, plugin: object, name: str, distribution: str, version: str) -> None:
        if self.pm.has_plugin(name) or self.pm.is_blocked(name):
            return
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as error:
            self.pm.unregister(name=name)
            raise PluginError(f"plugin {name!r} ({distribution}): {error}") from error
        self._origins[name] = (distribution, version)
        self._metrics = None

    def load_builtins(self) -> None:
        for module_name in BUILTIN_PLUGINS:
            # Short names, as pytest's built-ins have: readable listings, and `-p no:svcca` blocks one.
            short_name = module_name.rpartition(".")[2]
            self.register(importlib.import_module(module_name), short_name, "probekit", probekit.__version__)

    def load_entry_points(self) -> None:
        from importlib.metadata import entry_points

        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            dist = entry_point.dist
            try:
                plugin = entry_point.load()
            except Exception as error:
                raise PluginError(
                    f"entry point {entry_point.name!r} = {entry_point.value!r} "
                    f"of distribution {dist.name if dist else '?'} failed to import: {error}"
                ) from error
            self.register(plugin, entry_point.name, dist.name if dist else "?", dist.version if dist else "?")

    def load_named(self, names: Iterable[str], base_dir: Path | None = None) -> None:
        """Load plugins named by module path (``pkg.mod``) or file (``path/to/plugin.py``)."""
        for name in names:
            self.register(*_import_plugin(name, base_dir))

    def metrics(self) -> dict[str, MetricInfo]:
        """Every registered metric by name, with the plugin and distribution it came from."""
        if self._metrics is None:
            self._metrics = {}
            # Called implementation by implementation (not through the hook caller) so
            # each metric is attributed to the plugin, and distribution, that registered it.
            for impl in reversed(self.pm.hook.probekit_register_metrics.get_hookimpls()):
                registered: list[type[Metric]] = []
                impl.function(register=registered.append)
                for cls in registered:
                    self._add_metric(cls, impl.plugin_name)
        return self._metrics

    def _add_metric(self, cls: type[Metric], plugin_name: str) -> None:
        problems = check_metric_class(cls)
        if problems:
            raise PluginError(f"plugin {plugin_name!r} registered an invalid metric: " + "; ".join(problems))
        if cls.name in self._metrics:
            other = self._metrics[cls.name].plugin
            raise PluginError(f"metric {cls.name!r} is registered by two plugins: {other!r} and {plugin_name!r}")
        distribution, version = self._origins[plugin_name]
        self._metrics[cls.name] = MetricInfo(cls, plugin_name, distribution, version)

    def plugins(self) -> list[PluginInfo]:
        by_plugin: dict[str, list[str]] = {}
        for name, info in self.metrics().items():
            by_plugin.setdefault(info.plugin, []).append(name)
        return [
            PluginInfo(name, *self._origins[name], tuple(by_plugin.get(name, ())))
            for name, plugin in self.pm.list_name_plugin()
            if plugin is not None  # a blocked plugin is listed without an object
        ]


def _import_plugin(name: str, base_dir: Path | None) -> tuple[object, str, str, str]:
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
            raise PluginError(f"plugin file {str(path)!r} failed to import: {error}") from error
        return module, str(path), "local file", str(path)
    try:
        module = importlib.import_module(name)
    except ImportError as error:
        raise PluginError(f"plugin module {name!r} could not be imported: {error}") from error
    return module, name, "module", getattr(module, "__version__", "")


def default_manager(extra_plugins: Iterable[str] = ()) -> PluginManager:
    """Built-ins, installed entry points, then the named extra plugins; ``no:NAME`` blocks a plugin."""
    manager = PluginManager()
    extra_plugins = list(extra_plugins)
    for name in extra_plugins:
        if name.startswith("no:"):
            manager.pm.set_blocked(name.removeprefix("no:"))
    manager.load_builtins()
    manager.load_entry_points()
    manager.load_named(name for name in extra_plugins if not name.startswith("no:"))
    return manager
