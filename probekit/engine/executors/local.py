"""The local executor: the run probekit has always made, every fine-tune then every probe group in this process."""
from __future__ import annotations

from collections.abc import Callable

from probekit.engine.probe import Measured, Prober


class LocalExecutor:
    """The default: the Prober's own order, models kept loaded between the groups that share them."""

    def run(self, prober: Prober, measured: Measured, on_comparison: Callable[[Measured], None]) -> None:
        prober.run(measured, on_comparison=on_comparison)
