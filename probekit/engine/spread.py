"""The seed spread: is a layer's change larger than what fine-tuning with another seed alone gives?

A comparison that declares ``seed_spread = ["seed1_vs_seed2", ...]`` gets, on each row,
the value the seed comparisons reach at the same metric, layer and head (the largest
distance, or the smallest similarity: the most that chance moved), and whether its
own value is beyond it. With an interval the whole interval must be beyond it, so
"above the seed spread" is not claimed for a change that resampling could undo.
"""
from __future__ import annotations

from collections.abc import Iterable

from probekit.spec.model import Spec


def with_seed_spread(records: Iterable[dict], spec: Spec) -> list[dict]:
    """The records, with ``seed_spread`` and ``above_seed_spread`` on the rows of comparisons that declare one."""
    records = list(records)
    declared = {c.name: c.seed_spread for c in spec.comparisons if c.seed_spread}
    if not declared:
        return records
    value_at = {(r["comparison"], r["metric"], r["layer"], r.get("layer_b"), r["head"]): r["value"] for r in records}
    marked = []
    for record in records:
        seeds = declared.get(record["comparison"], ())
        cell = (record["metric"], record["layer"], record.get("layer_b"), record["head"])
        spread = [v for name in seeds if (v := value_at.get((name, *cell))) is not None]
        if not spread:
            marked.append(record)
            continue
        metric = spec.metrics[record["metric"]]
        similarity = metric.metric_class.direction_of(metric.options) == "similarity"
        limit = min(spread) if similarity else max(spread)
        if similarity:
            beyond = (record.get("ci_high") if record.get("ci_high") is not None else record["value"]) < limit
        else:
            beyond = (record.get("ci_low") if record.get("ci_low") is not None else record["value"]) > limit
        marked.append({**record, "seed_spread": limit, "above_seed_spread": bool(beyond)})
    return marked
