"""The HTML report of a run: one self-contained page, drawn from the results table alone.

``report.html`` opens offline from disk and makes no request: its style, script, figures
(inline SVG, text kept as text) and data are in the file, and its Content-Security-Policy
forbids loading anything else. From the top: an incomplete run's banner, the run's
identity, the expectations' verdicts with the values that fail, the fine-tunes'
accuracy against the majority rate, interactive per-layer curves (hover for the value and
its interval, a checkbox per comparison), a sortable table per comparison, the layer x
step view of training snapshots and checkpoint series, every figure the PNGs show, and
the provenance (models and their identities, data, metrics, versions, device, dtype,
warnings, errors, the spec's text). Every text from a user or a plugin is escaped.

:func:`report_body` is the page's content; the page (:func:`report_page`), the notebook
view (``Results._repr_html_``) and the side-by-side page of two runs (:func:`diff_page`)
are built from it and its parts.
"""
from __future__ import annotations

import html
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from probekit.report.figures import axis_label, iter_figures, layer_intervals, legend_labels
from probekit.report.html_assets import SCRIPT, STYLE
from probekit.report.terminal import (
    accuracy_text,
    compared_models,
    comparison_sides,
    format_value,
    heat_color,
    incomplete_note,
    layer_marks,
    layer_values,
    snapshot_groups,
)
from probekit.results.events import events_of
from probekit.results.io import metadata
from probekit.expect.kinds import LEARNED_MARGIN

#: The report's file name in a run folder.
REPORT_FILE = "report.html"
#: Nothing but what the page holds: no fetch, no font, no image from elsewhere.
CONTENT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
#: The run facts shown under "provenance", in order (file metadata keys).
RUN_FACTS = ("run_id", "spec_name", "spec_path", "started_at", "finished_at", "device", "dtype", "probekit_version",
             "torch_version", "transformers_version", "python_version", "schema_version")


def h(value: Any) -> str:
    """``value`` as HTML text: every ``<``, ``>``, ``&`` and quote escaped."""
    return html.escape(str(value), quote=True)


# -- verdicts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerdictRow:
    """One line of an expectation's table: a comparison's layer (or a model), its value, what was expected."""

    where: str  # "a_vs_b" or a model name
    layer: int | None
    value: str
    expected: str
    fails: bool


@dataclass(frozen=True)
class Verdict:
    """One expectation's outcome as the report shows it (from an Outcome, or from a run's verdict.json)."""

    name: str
    passed: bool
    reason: str
    claim: str = ""  # what it asserts, in words
    rows: tuple[VerdictRow, ...] = ()
    notes: tuple[str, ...] = ()


def verdicts_from_outcomes(outcomes: Iterable[Any]) -> tuple[Verdict, ...]:
    """:class:`probekit.expect.evaluate.Outcome` objects as verdicts, with the values they judged."""
    verdicts = []
    for outcome in outcomes:
        rows = [VerdictRow(comparison, layer, _judged(value, outcome.intervals.get((comparison, layer))),
                           outcome.expected.get((comparison, layer), ""), (comparison, layer) in outcome.offending)
                for comparison, values in outcome.values.items() for layer, value in sorted(values.items())]
        rows += [VerdictRow(model, None, _percent(info.get("accuracy")),
                            f"> {_percent(info.get('needed'))} (majority {_percent(info.get('majority'))})",
                            model in outcome.offending_models) for model, info in outcome.accuracies.items()]
        verdicts.append(Verdict(outcome.name, outcome.passed, outcome.reason, outcome.expectation.describe(),
                                tuple(rows), tuple(outcome.notes)))
    return tuple(verdicts)


def verdicts_from_record(record: Mapping[str, Any] | None) -> tuple[Verdict, ...]:
    """The expectations of a run's ``verdict.json`` (name, passed, reason; no values)."""
    return tuple(Verdict(str(o.get("name", "?")), bool(o.get("passed")), str(o.get("reason", "")))
                 for o in (record or {}).get("expectations", []) or [] if isinstance(o, Mapping))


def _judged(value: float | None, interval: tuple[float, float] | None) -> str:
    shown = "nan" if value is None else f"{value:.6g}"
    return shown + (" [{:.4g}, {:.4g}]".format(*interval) if interval else "")


def _percent(value: float | None) -> str:
    return "?" if value is None else f"{value:.1%}"


# -- the page --------------------------------------------------------------------------------


def report_page(table: pa.Table, verdicts: Sequence[Verdict] | None = None, *, figures: bool = True) -> str:
    """The whole self-contained document of one run."""
    meta = metadata(table)
    title = f"probekit: {meta.get('spec_name', '?')} run {meta.get('run_id', '?')}"
    return page(title, report_body(table, verdicts, figures=figures))


def page(title: str, body: str) -> str:
    """A document around ``body`` (a ``probekit-report`` div): its style, script and content policy inline."""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_POLICY}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{h(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n<script>{SCRIPT}</script>\n</body>\n</html>\n")


def write_report(table: pa.Table, folder: Path, verdicts: Sequence[Verdict] | None = None) -> Path:
    """Write ``report.html`` into ``folder``; return its path."""
    path = Path(folder) / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_page(table, verdicts), encoding="utf-8")
    return path


def notebook_view(table: pa.Table, verdicts: Sequence[Verdict] | None = None, *, figures: bool = True,
                  note: str = "") -> str:
    """The report's content for Jupyter: the same body, its style and script beside it (no document around)."""
    body = report_body(table, verdicts, figures=figures, note=note)
    return f"<style>{STYLE}</style>\n{body}\n<script>{SCRIPT}</script>"


def report_body(table: pa.Table, verdicts: Sequence[Verdict] | None = None, *, figures: bool = True,
                note: str = "") -> str:
    """The report's content: a ``probekit-report`` div with every section; ``note`` goes under the title."""
    meta = metadata(table)
    charts = layer_charts(table)
    parts = ['<div class="probekit-report">']
    if incomplete := incomplete_note(meta, table):
        parts.append(f'<div class="banner" role="alert">{h(incomplete)}</div>')
    parts.append(f"<h1>probekit: {h(meta.get('spec_name', '?'))}</h1>")
    parts.append(f'<p class="subtitle">run {h(meta.get("run_id", "?"))} · {table.num_rows} rows · device '
                 f'{h(meta.get("device", "?"))} · dtype {h(meta.get("dtype", "?"))}'
                 + (f" · {h(note)}" if note else "") + "</p>")
    parts += [verdict_section(verdicts), accuracy_section(table, meta), chart_section(charts),
              layer_tables(table, meta), snapshot_section(table, meta)]
    if figures:
        parts.append(figure_section(table))
    parts += [provenance_section(table, meta), chart_data(charts), "</div>"]
    return "\n".join(part for part in parts if part)


def verdict_section(verdicts: Sequence[Verdict] | None) -> str:
    if verdicts is None:
        return "<h2>Expectations</h2>\n<p>not judged (no verdict is known for this run)</p>"
    if not verdicts:
        return "<h2>Expectations</h2>\n<p>none declared</p>"
    failed = sum(not v.passed for v in verdicts)
    summary = ", ".join(([f"{len(verdicts) - failed} passed"] if failed < len(verdicts) else [])
                        + ([f"{failed} failed"] if failed else []))
    parts = [f'<h2>Expectations: <span class="{"failed" if failed else "passed"}">{h(summary)}</span></h2>']
    for verdict in verdicts:
        status = '<span class="passed">PASSED</span>' if verdict.passed else '<span class="failed">FAILED</span>'
        parts.append(f'<details class="verdict"{"" if verdict.passed else " open"}><summary>{status} '
                     f"<b>{h(verdict.name)}</b> - {h(verdict.reason)}</summary>")
        if verdict.claim:
            parts.append(f"<p>expectation: {h(verdict.claim)}</p>")
        if verdict.rows:
            parts.append('<table class="sortable"><thead><tr><th>comparison or model</th><th>layer</th><th>value</th>'
                         "<th>expected</th><th></th></tr></thead><tbody>")
            parts += [f'<tr class="{"fails" if row.fails else ""}"><td data-sort="{h(row.where)}">{h(row.where)}</td>'
                      f'<td class="num" data-sort="{"" if row.layer is None else row.layer}">'
                      f'{"" if row.layer is None else row.layer}</td>'
                      f'<td class="num" data-sort="{h(row.value.split(" ")[0])}">{h(row.value)}</td>'
                      f'<td data-sort="{h(row.expected)}">{h(row.expected)}</td>'
                      f'<td data-sort="{int(row.fails)}">{"fails" if row.fails else ""}</td></tr>' for row in verdict.rows]
            parts.append("</tbody></table>")
        parts += [f"<p>{h(line)}</p>" for line in verdict.notes]
        parts.append("</details>")
    return "\n".join(parts)


def accuracy_section(table: pa.Table, meta: dict) -> str:
    """The fine-tuned models' validation accuracy against the majority rate of their validation data."""
    models = {name: m for name, m in compared_models(table, meta).items() if m.get("accuracy") is not None}
    if not models:
        return ""
    parts = ["<h2>Fine-tuned models: validation accuracy</h2>",
             '<table class="sortable"><thead><tr><th>model</th><th>accuracy</th><th>majority rate</th><th>chance</th>'
             "<th>beats the majority by 2 points</th></tr></thead><tbody>"]
    for name, info in models.items():
        majority = info.get("majority")
        beaten = "?" if majority is None else ("yes" if info["accuracy"] > majority + LEARNED_MARGIN else "no")
        parts.append(f'<tr class="{"fails" if beaten == "no" else ""}"><td data-sort="{h(name)}">'
                     f'{h(name)}</td>' + "".join(f'<td class="num" data-sort="{"" if v is None else v}">{_percent(v)}</td>'
                                                 for v in (info["accuracy"], majority, info.get("chance")))
                     + f'<td data-sort="{beaten}">{beaten}</td></tr>')
    parts.append("</tbody></table>")
    parts.append(f"<p>{h('; '.join(accuracy_text(name, info) for name, info in models.items()))}</p>")
    return "\n".join(parts)


# -- per-layer values --------------------------------------------------------------------------


def layer_charts(table: pa.Table, prefix: str = "") -> list[dict]:
    """One interactive chart per metric: a series per plain comparison, points ``[layer, value, low, high]``."""
    if table.num_rows == 0:
        return []
    meta = metadata(table)
    series, intervals, sides = layer_values(table), layer_intervals(table), comparison_sides(table)
    plain = [c for c, side in sides.items() if not side.is_snapshot]
    charts = []
    for metric in dict.fromkeys(table.column("metric").to_pylist()):
        shown = [c for c in plain if (c, metric) in series]
        lines = []
        for comparison, label in legend_labels([sides[c] for c in shown]).items():
            bands = intervals.get((comparison, metric), {})
            points = [[layer, _json_number(value), *(_json_number(v) for v in bands.get(layer, (None, None)))]
                      for layer, value in sorted(series[(comparison, metric)].items())]
            lines.append({"label": prefix + label, "points": points})
        if lines:
            charts.append({"metric": metric, "axis": axis_label(metric, (meta.get("metrics") or {}).get(metric, {})),
                           "series": lines})
    return charts


def _json_number(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def chart_section(charts: list[dict], offset: int = 0) -> str:
    if not charts:
        return ""
    parts = ["<h2>Per layer</h2>", "<p>Hover a chart for each layer's value and interval; the boxes under it "
             "show or hide a comparison.</p>"]
    for index, chart in enumerate(charts):
        parts.append(f"<h3>{h(chart['metric'])}</h3>\n"
                     f'<div class="chart" data-chart="{index + offset}" aria-label="{h(chart["axis"])}"></div>')
    return "\n".join(parts)


def chart_data(charts: list[dict]) -> str:
    """The charts' data as JSON in a script element that no ``</script>`` in a label can close."""
    text = json.dumps(charts, allow_nan=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" class="probekit-charts">{text}</script>'


def layer_tables(table: pa.Table, meta: dict) -> str:
    """A sortable table per comparison: layers as rows, each metric's value (with its interval, p-value, seed mark)."""
    series, marks = layer_values(table), layer_marks(table)
    sides = comparison_sides(table)
    metrics = list(dict.fromkeys(table.column("metric").to_pylist())) if table.num_rows else []
    info = meta.get("metrics") or {}
    parts = ["<h2>Values per comparison</h2>"] if sides else []
    for comparison, side in sides.items():
        shown = [m for m in metrics if (comparison, m) in series]
        if not shown:
            continue
        parts.append(f"<h3>{h(comparison)}: {h(side.model_a)} vs {h(side.model_b)} on {h(side.data)}</h3>")
        parts.append('<table class="sortable"><thead><tr><th>layer</th>'
                     + "".join(f"<th>{h(axis_label(m, info.get(m, {})))}</th>" for m in shown) + "</tr></thead><tbody>")
        for layer in sorted({layer for m in shown for layer in series[(comparison, m)]}):
            cells = [f'<td class="num" data-sort="{layer}">{layer}</td>']
            for metric in shown:
                value = series[(comparison, metric)].get(layer)
                mark = marks.get((comparison, metric, layer))
                text = "" if value is None else format_value(value) + (f" {mark}" if mark else "")
                cells.append(f'<td class="num" data-sort="{"" if value is None else value}">{h(text)}</td>')
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</tbody></table>")
    return "\n".join(parts)


def snapshot_section(table: pa.Table, meta: dict) -> str:
    """Layer x step (or x fraction of training) heat tables for training snapshots and checkpoint series."""
    groups = snapshot_groups(table) if table.num_rows else []
    if not groups:
        return ""
    accuracies = {name: m.get("accuracy") for name, m in (meta.get("models") or {}).items()}
    parts = ["<h2>Over training: layer x step</h2>"]
    for group in groups:
        values = [v for column in group.columns for v in column.values.values() if math.isfinite(v)]
        low, high = min([0.0, *values]), max([0.0, *values])
        unit = (meta.get("metrics") or {}).get(group.metric, {}).get("unit", "")
        what = "training step" if group.by_step else "fraction of fine-tuning steps done"
        parts.append(f"<h3>{h(group.metric)}{f' ({h(unit)})' if unit else ''}: {h(group.title)}</h3>"
                     f"<p>columns: {what}; colour from {low:.4g} to {high:.4g}</p>")
        parts.append("<table><thead><tr><th>layer</th>" + "".join(f"<th>{h(c.label)}</th>" for c in group.columns)
                     + "</tr></thead><tbody>")
        for layer in reversed(group.layers):
            parts.append(f'<tr><td class="num">{layer}</td>' + "".join(
                _heat_cell(c.values.get(layer), low, high) for c in group.columns) + "</tr>")
        if any(accuracies.get(c.model) is not None for c in group.columns):
            parts.append("<tr><td>accuracy</td>" + "".join(
                f'<td class="num">{_percent(accuracies.get(c.model)) if accuracies.get(c.model) is not None else ""}</td>'
                for c in group.columns) + "</tr>")
        parts.append("</tbody></table>")
    return "\n".join(parts)


def _heat_cell(value: float | None, low: float, high: float) -> str:
    if value is None:
        return "<td></td>"
    if not math.isfinite(value):
        return f'<td class="num error">{value}</td>'
    red, green, blue = heat_color((value - low) / (high - low) if high > low else 0.0)
    ink = "#fff" if 0.299 * red + 0.587 * green + 0.114 * blue < 140 else "#000"
    return f'<td class="num" style="background:rgb({red},{green},{blue});color:{ink}">{format_value(value)}</td>'


# -- figures and provenance ------------------------------------------------------------------


def figure_section(table: pa.Table) -> str:
    """Every figure the run's PNGs show, as inline SVG (its text kept as text)."""
    figures = [(stem, inline_svg(figure)) for stem, figure in iter_figures(table)]
    if not figures:
        return ""
    parts = ["<h2>Figures</h2>"]
    parts += [f'<figure>{svg}<figcaption>{h(stem)}.png</figcaption></figure>' for stem, svg in figures]
    return "\n".join(parts)


def inline_svg(figure: Any) -> str:
    """A matplotlib figure as an ``<svg>`` element to inline: no XML prolog, no DTD, ids unique to the figure."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": figure.get_label() or "figure"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})  # the same page for the same results
    text = buffer.getvalue()
    return re.sub(r"^.*?(?=<svg)", "", text, count=1, flags=re.DOTALL)


def provenance_section(table: pa.Table, meta: dict) -> str:
    """The run's facts, models and identities, data, metrics, warnings, errors and the spec's text."""
    parts = ["<h2>Provenance</h2>", "<table><tbody>"]
    parts += [f"<tr><th>{h(key)}</th><td>{h(meta[key])}</td></tr>" for key in RUN_FACTS if meta.get(key) is not None]
    parts.append("</tbody></table>")
    parts.append(_records_table("Models", meta.get("models") or {}, "model"))
    parts.append(_records_table("Metrics", meta.get("metrics") or {}, "metric"))
    parts.append(_data_table(table))
    for title, kinds, css in (("Warnings", ("note",), "warning"), ("Errors", ("error", "failure"), "error")):
        lines = [str(event) for event in events_of(meta, *kinds)]
        if lines:
            parts.append(f"<h3>{title}</h3>\n<ul>" + "".join(f'<li class="{css}">{h(line)}</li>'
                                                              for line in lines) + "</ul>")
    if meta.get("spec_text"):
        parts.append(f"<h3>Spec</h3>\n<pre>{h(meta['spec_text'])}</pre>")
    return "\n".join(parts)


def _records_table(title: str, records: Mapping[str, Any], what: str) -> str:
    """One row per record (a model, a metric), one column per key any of them has."""
    if not records:
        return ""
    keys = list(dict.fromkeys(k for record in records.values() if isinstance(record, Mapping) for k in record))
    rows = "".join(f"<tr><td>{h(name)}</td>" + "".join(f"<td>{_fact(record.get(k))}</td>" for k in keys) + "</tr>"
                   for name, record in records.items() if isinstance(record, Mapping))
    return (f"<h3>{title}</h3>\n<table><thead><tr><th>{what}</th>" + "".join(f"<th>{h(k)}</th>" for k in keys)
            + f"</tr></thead><tbody>{rows}</tbody></table>")


def _fact(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return h(f"{value:.6g}")
    return h(value if isinstance(value, str) else json.dumps(value, sort_keys=True))


def _data_table(table: pa.Table) -> str:
    """Per comparison: the data it ran on, the examples and datapoints that fed it (the most of its rows)."""
    if table.num_rows == 0:
        return ""
    seen: dict[str, list] = {}
    for row in table.select(["comparison", "data", "n_examples", "n_tokens"]).to_pylist():
        earlier = seen.setdefault(row["comparison"], [row["data"], 0, 0])
        earlier[1] = max(earlier[1], row["n_examples"] or 0)
        earlier[2] = max(earlier[2], row["n_tokens"] or 0)
    rows = "".join(f'<tr><td>{h(c)}</td><td>{h(d)}</td><td class="num">{n}</td><td class="num">{t}</td></tr>'
                   for c, (d, n, t) in seen.items())
    return ("<h3>Data</h3>\n<table><thead><tr><th>comparison</th><th>data</th><th>examples</th><th>datapoints</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>")


# -- two runs side by side ---------------------------------------------------------------------


def diff_page(tables: Sequence[pa.Table], titles: Sequence[str], diff: Any) -> str:
    """Runs A and B side by side: their identities, the per-layer curves of both on one chart per
    (comparison, metric) both have, the B - A table with changed values marked."""
    charts = []
    for table, label in zip(tables, "AB", strict=True):
        for chart in layer_charts(table, prefix=f"{label}: "):
            other = next((c for c in charts if c["metric"] == chart["metric"]), None)
            if other is None:
                charts.append(chart)
            else:
                other["series"] += chart["series"]
    parts = ['<div class="probekit-report">', "<h1>probekit diff: B - A per layer</h1>", '<div class="sides">']
    for table, label, title in zip(tables, "AB", titles, strict=True):
        meta = metadata(table)
        incomplete = incomplete_note(meta, table)
        parts.append(f"<div><h2>{label}: {h(meta.get('spec_name', '?'))}</h2><p>{h(title)}</p>"
                     + (f'<div class="banner">{h(incomplete)}</div>' if incomplete else "") + "</div>")
    parts.append("</div>")
    parts.append(_diff_summary(diff))
    parts += [chart_section(charts), _diff_table(diff), chart_data(charts), "</div>"]
    return page("probekit diff", "\n".join(p for p in parts if p))


def _diff_summary(diff: Any) -> str:
    largest = diff.largest()
    kind = "relative" if diff.relative else "absolute"
    if largest is None:
        return f'<p class="passed">no change beyond {diff.tolerance:g} ({kind}) in {len(diff.rows)} values</p>'
    return (f'<p class="failed">{len(diff.changed)} of {len(diff.rows)} values changed beyond {diff.tolerance:g} '
            f"({kind}); the largest: {h(largest.comparison)} / {h(largest.metric)} layer {largest.layer} "
            f"({largest.delta:+.3g})</p>")


def _diff_table(diff: Any) -> str:
    parts = ["<h2>Values</h2>", '<table class="sortable"><thead><tr><th>comparison</th><th>metric</th><th>layer</th>'
             "<th>head</th><th>A</th><th>B</th><th>B - A</th><th></th></tr></thead><tbody>"]
    for row in diff.rows:
        cells = [(row.comparison, h(row.comparison)), (row.metric, h(row.metric)), (row.layer, row.layer),
                 (row.head, "" if row.head is None else row.head), (row.a, _number(row.a)), (row.b, _number(row.b)),
                 (row.delta, _number(row.delta, "+.3g")), (int(row.exceeds), "changed" if row.exceeds else "")]
        parts.append(f'<tr class="{"fails" if row.exceeds else ""}">' + "".join(
            f'<td data-sort="{"" if key is None else h(key)}">{shown}</td>' for key, shown in cells) + "</tr>")
    parts.append("</tbody></table>")
    for label, pairs in (("A", diff.only_a), ("B", diff.only_b)):
        if pairs:
            parts.append(f"<p>only in {label} (not compared): {h(', '.join(f'{c} / {m}' for c, m in pairs))}</p>")
    return "\n".join(parts)


def _number(value: float | None, spec: str = ".6g") -> str:
    return "—" if value is None else format(value, spec)
