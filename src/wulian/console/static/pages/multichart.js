// A time chart of several series on one time axis (uPlot), for the scenario dashboards:
// one line per device, each with its own timestamps, aligned when drawn. Live points are
// appended to their series without reloading.

import { DASH, fmtNumber, fmtTime, fmtValue, t } from "../i18n.js";
import { AXIS, insertSorted, timeTicks } from "../charts.js";
import { h } from "../ui.js";
import { uPlotLib } from "../vendor.js";

const MAX_POINTS = 5000; // per series: a day of one-minute buckets fits three times over
export const SERIES_COLORS = ["#1463ff", "#0e9f6e", "#f97316", "#9061f9", "#e74694"];

// Every series' timestamps on one axis, each series null where it has no point.
function align(series) {
  const stamps = new Set();
  for (const s of series) for (const x of s.xs) stamps.add(x);
  const xs = [...stamps].sort((a, b) => a - b);
  const out = [xs];
  for (const s of series) {
    const at = new Map();
    s.xs.forEach((x, i) => at.set(x, s.ys[i]));
    out.push(xs.map((x) => (at.has(x) ? at.get(x) : null)));
  }
  return out;
}

// series: [{key, label}] → {set(key, xs, ys), add(key, ts, value), size(), destroy()}
// With `span` (ms) the time axis shows that much up to now, however few the points.
export async function multiChart(host, { series, unit, height = 200, testid, span } = {}) {
  const uPlot = await uPlotLib();
  const frame = h("div", { class: "chart", "data-testid": testid });
  const note = h("div", { class: "chart-empty" }, t("chart.no_data"));
  host.append(frame);
  const lines = series.map((s) => ({ key: s.key, xs: [], ys: [] }));
  const byKey = new Map(lines.map((line) => [line.key, line]));
  const opts = {
    width: Math.max(200, host.clientWidth || 600),
    height,
    ms: 1,
    padding: [10, 28, 0, 4],
    cursor: { drag: { x: true, y: false }, points: { size: 6 } },
    legend: { live: true },
    scales: { x: { time: true } },
    series: [
      { label: t("chart.time"), value: (u, v) => (v === null || v === undefined ? DASH
        : fmtTime(v)) },
      ...series.map((s, i) => {
        const color = SERIES_COLORS[i % SERIES_COLORS.length];
        // uPlot draws the points themselves only where they are sparse (a first reading)
        return { label: s.label, stroke: color, width: 1.5, spanGaps: true,
          points: { size: 5 }, value: (u, v) => fmtValue(v, unit) };
      }),
    ],
    axes: [
      { ...AXIS, values: timeTicks, space: 70 },
      { ...AXIS, size: 58, values: (u, values) => values.map((v) => fmtNumber(v, 2)) },
    ],
  };
  const plot = new uPlot(opts, align(lines), frame);
  frame.append(note);
  const resize = new ResizeObserver(() => {
    const width = frame.clientWidth;
    if (width > 0 && Math.abs(width - plot.width) > 1) plot.setSize({ width, height });
  });
  resize.observe(frame);

  const total = () => lines.reduce((sum, line) => sum + line.xs.length, 0);
  const newestX = () => Math.max(0, ...lines.map((l) => (l.xs.length ? l.xs[l.xs.length - 1]
    : 0)));
  const redraw = (follow) => {
    const n = total();
    note.hidden = n > 0;
    frame.dataset.points = String(n);
    if (!span) {
      plot.setData(align(lines), follow);
      return;
    }
    // the whole span up to now, not just where the points are (a zoom is left alone)
    plot.setData(align(lines), false);
    if (follow) {
      const now = Date.now();
      plot.setScale("x", { min: now - span, max: Math.max(now, newestX()) });
    }
  };
  redraw(true);
  return {
    set(key, xs, ys) {
      const line = byKey.get(key);
      if (!line) return;
      line.xs = xs.slice(-MAX_POINTS);
      line.ys = ys.slice(-MAX_POINTS);
      redraw(true);
    },
    add(key, ts, value) {
      const line = byKey.get(key);
      if (!line) return;
      const scaleMax = plot.scales.x.max;
      const newest = newestX();
      const following = !newest || scaleMax === null || scaleMax >= newest;
      insertSorted(line.xs, line.ys, ts, value);
      if (line.xs.length > MAX_POINTS) {
        line.xs.splice(0, line.xs.length - MAX_POINTS);
        line.ys.splice(0, line.ys.length - MAX_POINTS);
      }
      redraw(following);
    },
    size: total,
    destroy() {
      resize.disconnect();
      plot.destroy();
    },
  };
}
