"""Metrics of one comparison that would accumulate the same state are fed once.

SVCCA, PWCCA, Procrustes and linear CKA with the same ``tokens`` all stream the same
float64 moments of every layer: a comparison asking for the four accumulates them once
(one set of GEMMs per batch, one set of d x d matrices in memory, per bootstrap group
too) and hands them to the others before they finalize (``Metric.state_key`` /
``take_state``). Their values are what each would compute alone: the same sums.
"""
from __future__ import annotations

from probekit.engine.resampling import Resampled
from probekit.metrics.base import Metric


class SharedStates:
    """Which metric of a comparison feeds which: passengers are not updated, only handed the feeder's state."""

    def __init__(self, metrics: dict[str, Metric | Resampled]) -> None:
        self.feeder_of: dict[str, str] = {}
        first: dict[object, str] = {}
        for label, metric in metrics.items():
            key = metric.state_key()
            if key is None:
                continue
            if key in first:
                self.feeder_of[label] = first[key]
            else:
                first[key] = label

    def update(self, label: str, metric: Metric | Resampled, a, b, batch) -> None:
        if label not in self.feeder_of:
            metric.update(a, b, batch)
        elif isinstance(metric, Resampled):
            metric.update_nulls(a, b, batch)  # a null is its own: it sees shuffled pairings

    def settle(self, metrics: dict[str, Metric | Resampled], failed: dict[str, str]) -> list[tuple[str, str]]:
        """Hand each passenger its feeder's state; (label, why) for passengers whose feeder failed (they are dropped)."""
        dropped = []
        for label, feeder in self.feeder_of.items():
            if label not in metrics:
                continue
            if feeder in metrics:
                metrics[label].take_state(metrics[feeder])
            else:
                del metrics[label]
                dropped.append((label, f"shares its moments with {feeder}, which could not be measured: "
                                       f"{failed.get(feeder, 'see its error')}"))
        return dropped
