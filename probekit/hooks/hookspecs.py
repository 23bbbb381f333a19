"""The hooks: the whole contract between probekit and its plugins, in one module.

A plugin is a module (or object) with functions named like the hooks below,
marked with ``@probekit.hookimpl``. The built-in plugins in ``probekit.plugins``
(metrics, data sources, the report and figures) use exactly these hooks; so does
any package that exposes a module through the ``probekit`` entry-point group::

    [project.entry-points.probekit]
    my_metric = "my_package.my_metric"

pluggy rejects an implementation whose name or arguments match no hook here;
probekit names the plugin, the hook and the closest hook name. An implementation
may take fewer arguments than the hook offers.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from rich.console import Console

    from probekit.data.source import DataSource
    from probekit.metrics.base import Metric

hookspec = pluggy.HookspecMarker("probekit")


# ------------------------------------------------------------------ registration


@hookspec
def probekit_register_metrics(register: Callable[[type[Metric]], None]) -> None:
    """Register metric classes by calling ``register(MetricSubclass)`` once per metric.

    :param register: takes a subclass of :class:`probekit.Metric`; it is checked
        at once (name, needs, direction, layers, option types, details types) and
        a problem is a registration error naming the plugin. Two plugins
        registering the same metric name, or declaring the same ``details`` key
        with different types, is an error naming both.
    """


@hookspec
def probekit_register_sources(register: Callable[[type[DataSource]], None]) -> None:
    """Register data sources by calling ``register(DataSourceSubclass)`` once per source.

    :param register: takes a subclass of :class:`probekit.DataSource`, whose
        ``kind`` is the key that selects it in a ``[data.<name>]`` table
        (``task``, ``path``, ``glue``, ``hf`` are built in). Two plugins
        registering the same kind is an error naming both.
    """


@hookspec
def probekit_register_expectations(register: Callable[[type], None]) -> None:
    """Register expectation kinds by calling ``register(KindClass)`` once per kind.

    :param register: takes a frozen dataclass subclass of :class:`probekit.Expectation` (usually of
        :class:`probekit.LayerExpectation`) with a ``kind`` name and the ``triggers``: the ``[[expect]]``
        keys whose presence selects it. Its fields are its keys, validated like every spec table. The
        built-in kinds (bounds, trend, contrast, ordering, share, baseline, learned) register here too.
        Two plugins registering the same kind name, or the same trigger key, is an error naming both.
    """


# ------------------------------------------------------------------ a run's life


@hookspec
def probekit_run_starting(spec: object, log: tuple[str, ...]) -> None:
    """Called once per spec after it is validated and its output checked, before anything is computed or reused.

    :param spec: the validated :class:`probekit.spec.model.Spec`.
    :param log: the experiment trackers the run logs to (``[run] log``, then ``--log``), e.g. ``("mlflow",)``.

    A plugin refuses the run by raising a :class:`probekit.errors.UserError` (exit 2) that says what
    is missing; nothing has run yet. The built-in ``wandb`` and ``mlflow`` plugins do so when their
    tracker is asked for and its package is not installed (the message names the extra to install).
    """


@hookspec
def probekit_run_finished(run: object, console: Console) -> None:
    """Called once per spec after its results file is written and its expectations judged (before they are shown).

    :param run: the :class:`probekit.engine.session.RunResult`: ``spec``,
        ``table`` (the results as a pyarrow Table), ``run_dir``, ``path``,
        ``errors``, ``cached`` (whether the results were reused), ``outcomes``
        (the expectations' :class:`probekit.expect.evaluate.Outcome` list) and ``log``
        (the trackers the run logs to).
    :param console: the rich console the run reports to.

    The built-in ``report`` plugin prints the terminal report here, the built-in
    ``figures`` plugin writes the PNG figures, ``html`` writes ``report.html`` and
    ``wandb`` / ``mlflow`` log the run when ``log`` names them; ``-p no:NAME`` skips one.
    An exception here is reported as a plugin failure (exit 3); the results are
    already written.
    """
