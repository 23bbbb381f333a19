"""The style sheet and the script of the HTML report, inlined into every page (no library, no request).

The script is plain ES2017 with no dependency: it draws the interactive per-layer curves
(SVG, hover for the value and its interval, a checkbox per comparison) from the JSON the
page embeds, and sorts a table when its header is clicked. Charts and tables read well
without it; the static figures are inline SVG.
"""
from __future__ import annotations

STYLE = """
.probekit-report { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: #1b1b1b; line-height: 1.4; max-width: 1200px; margin: 0 auto; padding: 0 16px 48px; }
.probekit-report h1 { font-size: 1.5em; margin: 0.6em 0 0.2em; }
.probekit-report h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; padding-bottom: 2px; margin-top: 1.6em; }
.probekit-report h3 { font-size: 1.0em; margin: 1.2em 0 0.3em; }
.probekit-report .banner { background: #fde8e8; border: 2px solid #b22222; color: #8b0000; padding: 8px 12px;
  font-weight: bold; margin: 12px 0; }
.probekit-report .subtitle { color: #555; }
.probekit-report table { border-collapse: collapse; margin: 6px 0 12px; font-size: 0.9em; }
.probekit-report th, .probekit-report td { border: 1px solid #ddd; padding: 3px 8px; vertical-align: top; }
.probekit-report th { background: #f4f4f4; text-align: left; }
.probekit-report td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.probekit-report table.sortable th { cursor: pointer; user-select: none; }
.probekit-report table.sortable th[data-order="asc"]::after { content: " \\25B2"; }
.probekit-report table.sortable th[data-order="desc"]::after { content: " \\25BC"; }
.probekit-report tr.fails td { background: #fde8e8; }
.probekit-report .passed { color: #1a7f37; font-weight: bold; }
.probekit-report .failed { color: #b22222; font-weight: bold; }
.probekit-report .warning { color: #8a5a00; }
.probekit-report .error { color: #b22222; }
.probekit-report pre { background: #f7f7f7; border: 1px solid #e2e2e2; padding: 8px; overflow-x: auto;
  font-size: 0.85em; white-space: pre-wrap; }
.probekit-report figure { margin: 12px 0 24px; }
.probekit-report figure svg { max-width: 100%; height: auto; }
.probekit-report figcaption { font-size: 0.85em; color: #555; }
.probekit-report .chart { position: relative; margin: 8px 0 20px; }
.probekit-report .chart svg { max-width: 100%; height: auto; background: #fff; }
.probekit-report .legend label { margin-right: 14px; font-size: 0.85em; white-space: nowrap; }
.probekit-report .swatch { display: inline-block; width: 12px; height: 12px; margin: 0 4px -1px 2px; }
.probekit-report .tip { position: absolute; pointer-events: none; background: rgba(255,255,255,0.96);
  border: 1px solid #999; padding: 4px 8px; font-size: 0.8em; white-space: nowrap; display: none; }
.probekit-report .sides { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];
  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }
  function fmt(v) {
    if (v === null || !isFinite(v)) return "nan";
    return (v !== 0 && Math.abs(v) < 5e-5) ? v.toExponential(2) : v.toFixed(4);
  }
  function tick(v) {
    return (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(1) : String(Number(v.toPrecision(3)));
  }
  function drawChart(box, chart) {
    var W = 720, H = 320, L = 84, R = 16, T = 12, B = 40;
    var layers = [], values = [];
    chart.series.forEach(function (s) { s.points.forEach(function (p) {
      layers.push(p[0]); [p[1], p[2], p[3]].forEach(function (v) { if (v !== null && isFinite(v)) values.push(v); });
    }); });
    if (!layers.length) return;
    var x0 = Math.min.apply(null, layers), x1 = Math.max.apply(null, layers);
    var y0 = Math.min(0, Math.min.apply(null, values)), y1 = Math.max(0, Math.max.apply(null, values));
    if (y1 <= y0) y1 = y0 + 1;
    y1 += 0.06 * (y1 - y0);
    var sx = function (x) { return L + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (W - L - R); };
    var sy = function (y) { return T + (1 - (y - y0) / (y1 - y0)) * (H - T - B); };
    var svg = el("svg", {viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img"}, box);
    for (var i = 0; i <= 4; i++) {
      var v = y0 + (y1 - y0) * i / 4, y = sy(v);
      el("line", {x1: L, x2: W - R, y1: y, y2: y, stroke: "#e5e5e5"}, svg);
      el("text", {x: L - 6, y: y + 4, "text-anchor": "end", "font-size": 11}, svg).textContent = tick(v);
    }
    for (var x = x0; x <= x1; x++) {
      el("text", {x: sx(x), y: H - B + 16, "text-anchor": "middle", "font-size": 11}, svg).textContent = x;
    }
    el("text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", "font-size": 12}, svg).textContent =
      "layer (0 = embeddings)";
    el("text", {x: 14, y: (T + H - B) / 2, "text-anchor": "middle", "font-size": 12,
                transform: "rotate(-90 14 " + (T + H - B) / 2 + ")"}, svg).textContent = chart.axis;
    var groups = chart.series.map(function (s, n) { return drawSeries(svg, s, COLOURS[n % COLOURS.length], sx, sy); });
    var legend = document.createElement("div");
    legend.className = "legend";
    chart.series.forEach(function (s, n) {
      var label = document.createElement("label"), box2 = document.createElement("input");
      box2.type = "checkbox"; box2.checked = true;
      box2.addEventListener("change", function () { groups[n].style.display = box2.checked ? "" : "none"; });
      var swatch = document.createElement("span");
      swatch.className = "swatch"; swatch.style.background = COLOURS[n % COLOURS.length];
      label.appendChild(box2); label.appendChild(swatch); label.appendChild(document.createTextNode(s.label));
      legend.appendChild(label);
    });
    box.appendChild(legend);
    hover(box, svg, chart, groups, sx, sy, x0, x1, L, W, R, T, H, B);
  }
  function drawSeries(svg, s, colour, sx, sy) {
    var g = el("g", {}, svg);
    var banded = s.points.filter(function (p) { return p[2] !== null && p[3] !== null; });
    if (banded.length) {
      var top = banded.map(function (p) { return sx(p[0]) + "," + sy(p[3]); });
      var bottom = banded.slice().reverse().map(function (p) { return sx(p[0]) + "," + sy(p[2]); });
      el("polygon", {points: top.concat(bottom).join(" "), fill: colour, "fill-opacity": 0.18}, g);
    }
    var finite = s.points.filter(function (p) { return p[1] !== null && isFinite(p[1]); });
    el("polyline", {points: finite.map(function (p) { return sx(p[0]) + "," + sy(p[1]); }).join(" "),
                    fill: "none", stroke: colour, "stroke-width": 2}, g);
    finite.forEach(function (p) { el("circle", {cx: sx(p[0]), cy: sy(p[1]), r: 3, fill: colour}, g); });
    return g;
  }
  function hover(box, svg, chart, groups, sx, sy, x0, x1, L, W, R, T, H, B) {
    var tip = document.createElement("div"), guide = el("line", {y1: T, y2: H - B, stroke: "#999",
      "stroke-dasharray": "3 3", visibility: "hidden"}, svg);
    tip.className = "tip"; box.appendChild(tip);
    svg.addEventListener("mousemove", function (event) {
      var rect = svg.getBoundingClientRect(), px = (event.clientX - rect.left) * 720 / rect.width;
      var layer = Math.round(x0 + (px - L) / Math.max(W - L - R, 1) * (x1 - x0 || 1));
      layer = Math.min(x1, Math.max(x0, layer));
      var lines = ["layer " + layer];
      chart.series.forEach(function (s, n) {
        if (groups[n].style.display === "none") return;
        s.points.forEach(function (p) {
          if (p[0] !== layer) return;
          lines.push(s.label + ": " + fmt(p[1]) + (p[2] !== null ? " [" + fmt(p[2]) + ", " + fmt(p[3]) + "]" : ""));
        });
      });
      tip.textContent = "";
      lines.forEach(function (line, n) {
        if (n) tip.appendChild(document.createElement("br"));
        tip.appendChild(document.createTextNode(line));
      });
      guide.setAttribute("x1", sx(layer)); guide.setAttribute("x2", sx(layer)); guide.setAttribute("visibility", "visible");
      tip.style.display = "block";
      tip.style.left = Math.min(event.clientX - box.getBoundingClientRect().left + 12, rect.width - 40) + "px";
      tip.style.top = (event.clientY - box.getBoundingClientRect().top + 12) + "px";
    });
    svg.addEventListener("mouseleave", function () { tip.style.display = "none"; guide.setAttribute("visibility", "hidden"); });
  }
  function sortable(table) {
    table.querySelectorAll("th").forEach(function (th, column) {
      th.addEventListener("click", function () {
        var order = th.getAttribute("data-order") === "asc" ? "desc" : "asc";
        table.querySelectorAll("th").forEach(function (other) { other.removeAttribute("data-order"); });
        th.setAttribute("data-order", order);
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[column].getAttribute("data-sort"), y = b.cells[column].getAttribute("data-sort");
          var nx = parseFloat(x), ny = parseFloat(y), c;
          if (!isNaN(nx) && !isNaN(ny)) c = nx - ny; else c = String(x).localeCompare(String(y));
          return order === "asc" ? c : -c;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  }
  document.querySelectorAll(".probekit-report").forEach(function (report) {
    var data = report.querySelector("script.probekit-charts");
    if (data && !report.hasAttribute("data-drawn")) {
      report.setAttribute("data-drawn", "1");
      var charts = JSON.parse(data.textContent);
      report.querySelectorAll("div.chart[data-chart]").forEach(function (box) {
        drawChart(box, charts[Number(box.getAttribute("data-chart"))]);
      });
      report.querySelectorAll("table.sortable").forEach(sortable);
    }
  });
})();
"""
