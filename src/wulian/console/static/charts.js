// Time-series charts on uPlot: a week of one-minute buckets (~10k points) draws in a few
// milliseconds, and live points are appended without redrawing the page.

import { DASH, fmtClock, fmtDay, fmtNumber, fmtTime, fmtValue, t } from "./i18n.js";
import { h } from "./ui.js";
import { uPlotLib } from "./vendor.js";

const MAX_POINTS = 20000;
export const DAY = 86400000;
export const AXIS = { stroke: "#667085", font: "11px system-ui, sans-serif",
  grid: { stroke: "#eef1f5", width: 1 }, ticks: { stroke: "#e4e7ec", width: 1, size: 4 } };

export function timeTicks(u, splits, axisIdx, space, incr) {
  let lastDay = null;
  const spansDays = splits.length > 1 && (splits[splits.length - 1] - splits[0]) >= DAY;
  return splits.map((ms) => {
    if (ms === null || ms === undefined) return null;
    if (incr >= DAY) return fmtDay(ms);
    const day = fmtDay(ms);
    const clock = fmtClock(ms, incr < 60000);
    const label = spansDays && day !== lastDay ? `${clock}\n${day}` : clock;
    lastDay = day;
    return label;
  });
}

export function insertSorted(xs, ys, x, y) {
  const n = xs.length;
  if (!n || x > xs[n - 1]) {
    xs.push(x);
    ys.push(y);
    return;
  }
  let lo = 0;
  let hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  if (xs[lo] === x) ys[lo] = y;
  else {
    xs.splice(lo, 0, x);
    ys.splice(lo, 0, y);
  }
}

// A one-series time chart in `host`; returns {set(xs, ys), add(ts, v), size(), destroy()}.
export async function timeChart(host, { label, unit, color = "#1463ff", height = 220,
  testid } = {}) {
  const uPlot = await uPlotLib();
  const frame = h("div", { class: "chart", "data-testid": testid });
  const note = h("div", { class: "chart-empty" }, t("chart.no_data"));
  host.append(frame);
  const data = [[], []];
  const opts = {
    width: Math.max(200, host.clientWidth || 600),
    height,
    ms: 1,
    padding: [10, 28, 0, 4], // room for the last time label
    cursor: { drag: { x: true, y: false }, points: { size: 7 } },
    legend: { live: true },
    scales: { x: { time: true } },
    series: [
      { label: t("chart.time"), value: (u, v) => (v === null || v === undefined ? DASH
        : fmtTime(v)) },
      { label, stroke: color, width: 1.6, fill: `${color}14`, points: { show: false },
        value: (u, v) => fmtValue(v, unit) },
    ],
    axes: [
      { ...AXIS, values: timeTicks, space: 70 },
      { ...AXIS, size: 58, values: (u, values) => values.map((v) => fmtNumber(v, 2)) },
    ],
  };
  const plot = new uPlot(opts, data, frame);
  frame.append(note);
  const resize = new ResizeObserver(() => {
    const width = frame.clientWidth;
    if (width > 0 && Math.abs(width - plot.width) > 1) plot.setSize({ width, height });
  });
  resize.observe(frame);

  const redraw = (follow) => {
    note.hidden = data[0].length > 0;
    frame.dataset.points = String(data[0].length);
    plot.setData(data, follow);
  };
  return {
    set(xs, ys) {
      data[0] = xs.slice(-MAX_POINTS);
      data[1] = ys.slice(-MAX_POINTS);
      redraw(true);
    },
    add(ts, value) {
      // follow the newest data unless the user has zoomed into the past
      const xs = data[0];
      const scaleMax = plot.scales.x.max;
      const following = !xs.length || scaleMax === null || scaleMax >= xs[xs.length - 1];
      insertSorted(data[0], data[1], ts, value);
      if (data[0].length > MAX_POINTS) {
        data[0].splice(0, data[0].length - MAX_POINTS);
        data[1].splice(0, data[1].length - MAX_POINTS);
      }
      redraw(following);
    },
    size() {
      return data[0].length;
    },
    destroy() {
      resize.disconnect();
      plot.destroy();
    },
  };
}
