"""The contract between probekit and its plugins.

A plugin is a module (or object) with functions named like the hooks below and
marked with ``@probekit.hookimpl``. The built-in metrics in ``probekit.plugins``
use exactly these hooks; so does any third-party package that exposes a module
through the ``probekit`` entry-point group::

    [project.entry-points.probekit]
    my_metric = "my_package.my_metric"

Hook names carry the ``probekit_`` prefix; pluggy rejects an implementation whose
name or arguments do not match a spec here, naming the plugin and the hook.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from probekit.metric import Metric

hookspec = pluggy.HookspecMarker("probekit")


@hookspec
def probekit_register_metrics(register: Callable[[type[Metric]], None]) -> None:
    """Register metric classes by calling ``register(MetricSubclass)`` once per metric.

    A metric class subclasses :class:`probekit.Metric`: it names itself
    (``name``), declares what it needs from a forward pass (``needs``), its
    options (an ``Options`` dataclass whose fields are validated from the spec),
    and computes in a streaming way (``update`` per batch, ``finalize`` once).
    Two plugins registering the same metric name is an error that names both.
    """
