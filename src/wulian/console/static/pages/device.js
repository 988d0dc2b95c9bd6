// One device: who it is, its connectivity and connection history, latest values, charts of
// its numeric properties (a week of one-minute averages, then every new point as the server
// pushes it), events, open alarms and refused messages.

import { api } from "../api.js";
import { timeChart } from "../charts.js";
import { fmtAgo, fmtNumber, fmtTime, fmtValue, t } from "../i18n.js";
import { openStream } from "../stream.js";
import {
  alarmStateLabel, badge, card, dl, dot, empty, errorBox, fill, h, icon, segmented,
  severityBadge, table,
} from "../ui.js";
import { connectivity, stateBadge, tagChips, transport } from "./devices.js";

const HOUR = 3600000;
// Connects and disconnects are not pushed: the page asks for the status now and then (and
// with traffic), and for the history only when the status says the connection changed.
const STATUS_EVERY_MS = 30000;
const HISTORY_ROWS = 50;
const RANGES = {
  "1h": { span: HOUR, bucket: null },
  "24h": { span: 24 * HOUR, bucket: "1m" },
  "7d": { span: 7 * 24 * HOUR, bucket: "1m" },
};
const NUMERIC = new Set(["int", "float", "bool"]);
const COLORS = ["#1463ff", "#0e9f6e", "#f05252", "#9061f9", "#ff8a4c", "#0694a2", "#e74694"];
const LEVEL_TONE = { critical: "sev-critical", major: "sev-major", minor: "sev-minor",
  warning: "sev-warning", info: "neutral" };

function levelLabel(level) {
  return { critical: t("severity.critical"), major: t("severity.major"),
    minor: t("severity.minor"), warning: t("severity.warning"), info: t("severity.info") }[level]
    || level;
}

function chartValue(value) {
  if (typeof value === "boolean") return value ? 1 : 0;
  return typeof value === "number" ? value : null;
}

export async function mount(root, ctx) {
  const id = ctx.params[0];
  const path = `/devices/${encodeURIComponent(id)}`;
  ctx.setTitle(id, [[t("nav.devices"), "#/devices"]]);
  let device;
  try {
    device = await api(path, { signal: ctx.signal });
  } catch (err) {
    if (err.status === 404) {
      fill(root, card({ body: empty(t("device.not_found", { id })) }));
      return undefined;
    }
    throw err;
  }
  const model = await api(`/products/${encodeURIComponent(device.product)}`,
    { signal: ctx.signal }).catch(() => ({ id: device.product, properties: [], events: [] }));
  const props = model.properties || [];
  const propById = Object.fromEntries(props.map((p) => [p.id, p]));
  ctx.setTitle(device.name || id, [[t("nav.devices"), "#/devices"]]);

  // --- header and connectivity -----------------------------------------------------------
  const connBox = h("div");
  function drawConnectivity(status) {
    fill(connBox, dl([
      [t("device.connectivity"), connectivity(status)],
      [t("device.connected"), status?.connected ? t("value.true") : t("value.false")],
      [t("device.transport"), transport(status)],
      [t("device.remote"), status?.remote || "—"],
      [t("device.last_seen"), status?.last_seen_ms ? h("span", { title:
        fmtTime(status.last_seen_ms) }, fmtAgo(status.last_seen_ms)) : t("device.never_seen")],
      [t("device.last_change"), status?.changed_ms ? h("span", null,
        status.connected ? t("device.connected_since") : t("device.disconnected_since"), " ",
        fmtTime(status.changed_ms)) : "—"],
    ]));
  }
  drawConnectivity(device.status);
  const loc = device.location;
  const header = h("section", { class: "card device-head" },
    h("div", { class: "device-title" },
      h("div", null,
        h("h2", { "data-testid": "device-name" }, device.name || device.id),
        h("div", { class: "muted mono", "data-testid": "device-id" }, device.id)),
      h("div", { class: "device-badges" }, stateBadge(device.state),
        connectivity(device.status))),
    dl([
      [t("device.product"), h("a", { href: `#/products/${encodeURIComponent(device.product)}` },
        model.name || device.product)],
      [t("device.location"), loc ? h("a", { href: "#/map" }, icon("pin"),
        ` ${fmtNumber(loc.lat, 5)}, ${fmtNumber(loc.lon, 5)}`) : "—"],
      [t("device.tags"), tagChips(device.tags, 8) || "—"],
      [t("device.created"), fmtTime(device.created_ms)],
    ]));

  // --- latest values ---------------------------------------------------------------------
  const latestBox = h("div", { class: "tiles" });
  const tiles = {};
  function tile(prop) {
    if (!tiles[prop]) {
      const meta = propById[prop] || { id: prop };
      const value = h("div", { class: "tile-value", "data-testid": `latest-${prop}` }, "—");
      const when = h("div", { class: "tile-when muted small" });
      tiles[prop] = { value, when, meta, el: h("div", { class: "tile" },
        h("div", { class: "tile-label" }, meta.name || meta.id), value, when) };
      latestBox.append(tiles[prop].el);
    }
    return tiles[prop];
  }
  function setLatest(prop, ts, value) {
    const item = tile(prop);
    if (item.ts && ts < item.ts) return;
    item.ts = ts;
    item.value.textContent = fmtValue(value, item.meta.unit);
    item.when.textContent = fmtAgo(ts);
    item.when.title = fmtTime(ts);
    item.el.classList.remove("flash");
    void item.el.offsetWidth; // restart the highlight animation
    item.el.classList.add("flash");
  }
  for (const p of props) tile(p.id);

  // --- charts ----------------------------------------------------------------------------
  let range = ctx.query.get("range") in RANGES ? ctx.query.get("range") : "7d";
  const charted = props.filter((p) => NUMERIC.has(p.type));
  const chartsBox = h("div", { class: "charts" });
  const charts = {};
  const rangePicker = segmented([["1h", t("range.1h")], ["24h", t("range.24h")],
    ["7d", t("range.7d")]], range, (v) => { range = v; loadSeries(); }, "range");

  for (const [index, p] of charted.entries()) {
    const host = h("div", { class: "chart-panel", "data-testid": `chart-${p.id}` },
      h("div", { class: "chart-title" }, h("strong", null, p.name || p.id),
        p.unit ? h("span", { class: "muted" }, ` (${p.unit})`) : null));
    chartsBox.append(host);
    charts[p.id] = await timeChart(host, { label: p.name || p.id, unit: p.unit,
      color: COLORS[index % COLORS.length], height: 180 });
  }
  ctx.onCleanup(() => Object.values(charts).forEach((c) => c.destroy()));

  async function loadOne(prop) {
    const { span, bucket } = RANGES[range];
    const since = Date.now() - span;
    const query = { property: prop, since, limit: 100000 };
    if (bucket) Object.assign(query, { bucket, agg: "avg" });
    const answer = await api(`${path}/telemetry`, { query, signal: ctx.signal });
    const rows = bucket ? answer.buckets : answer.points;
    const xs = [];
    const ys = [];
    for (const row of rows) {
      xs.push(row.ts);
      ys.push(chartValue(row.value));
    }
    charts[prop].set(xs, ys);
  }

  // Points pushed while a range loads wait here, so none falls between the load and the feed.
  let seriesLoading = false;
  const pending = [];
  async function loadSeries() {
    seriesLoading = true;
    const queue = Object.keys(charts);
    // a few at a time: a product with many properties must not flood the server
    const workers = Array.from({ length: Math.min(4, queue.length) }, async () => {
      while (queue.length) {
        const prop = queue.shift();
        try {
          await loadOne(prop);
        } catch (err) {
          if (err.name === "AbortError") return;
          console.warn(prop, err);
        }
      }
    });
    await Promise.all(workers);
    seriesLoading = false;
    for (const [prop, ts, value] of pending.splice(0)) plot(prop, ts, value);
  }

  function plot(prop, ts, value) {
    const chart = charts[prop];
    // a point older than the range shown is not drawn (it is in the store)
    if (!chart || ts < Date.now() - RANGES[range].span) return;
    if (seriesLoading) pending.push([prop, ts, value]);
    else chart.add(ts, chartValue(value));
  }

  // --- connection history ---------------------------------------------------------------
  const historyBox = h("div");
  let historyChange; // the status's changed_ms the history shown was loaded for
  function historyEvent(entry, older) {
    // a connect right after a connect: back (from elsewhere) before its leaving was seen
    const label = !entry.connected ? t("device.history.disconnected")
      : older?.connected ? t("device.history.reconnected") : t("device.history.connected");
    return h("span", { class: "conn" }, dot(entry.connected ? "good" : "off"),
      h("span", null, label));
  }
  async function loadHistory(change) {
    historyChange = change;
    try {
      const answer = await api(`${path}/connections`, { signal: ctx.signal,
        query: { limit: HISTORY_ROWS } });
      const rows = answer.connections.map((entry, i, all) => ({ entry, older: all[i + 1] }));
      fill(historyBox, table([
        { label: t("table.time"), cls: "nowrap", cell: (r) => h("span", { title:
          fmtAgo(r.entry.ts) }, fmtTime(r.entry.ts)) },
        { label: t("device.event"), cell: (r) => historyEvent(r.entry, r.older) },
        { label: t("device.transport"), cls: "nowrap", cell: (r) => transport(r.entry) },
        { label: t("device.remote"), cell: (r) => h("span", { class: "mono" },
          r.entry.remote || "—") },
      ], rows, { emptyText: t("device.history.none"),
        rowProps: (r) => ({ "data-connected": String(r.entry.connected) }) }));
    } catch (err) {
      if (err.name !== "AbortError") fill(historyBox, errorBox(err));
    }
  }
  function refreshConnection() {
    api(path, { signal: ctx.signal }).then((d) => {
      drawConnectivity(d.status);
      const change = d.status?.changed_ms ?? null;
      if (change !== historyChange) loadHistory(change);
    }).catch(() => {});
  }

  // --- events, alarms, rejections ---------------------------------------------------------
  const eventsBox = h("div");
  let events = [];
  function drawEvents() {
    fill(eventsBox, table([
      { label: t("table.time"), cls: "nowrap", cell: (e) => fmtTime(e.ts) },
      { label: t("device.event"), cell: (e) => h("strong", null, e.event) },
      { label: t("device.level"), cell: (e) => (e.level ? badge(levelLabel(e.level),
        LEVEL_TONE[e.level] || "neutral") : "—") },
      { label: t("device.params"), cell: (e) => h("code", { class: "json" },
        JSON.stringify(e.params ?? {})) },
    ], events.slice(0, 50), { emptyText: t("device.no_events") }));
  }

  const alarmsBox = h("div");
  async function loadAlarms() {
    try {
      const answer = await api("/alarms", { signal: ctx.signal,
        query: { device: id, state: "open", limit: 50 } });
      fill(alarmsBox, table([
        { label: t("alarm.severity"), cell: (a) => severityBadge(a.severity) },
        { label: t("alarm.rule"), cell: (a) => a.rule_name || a.rule_id },
        { label: t("alarm.state"), cell: (a) => alarmStateLabel(a.state) },
        { label: t("alarm.raised"), cls: "nowrap", cell: (a) => fmtTime(a.raised_ms) },
        { label: t("alarm.message"), cell: (a) => a.message || "—" },
      ], answer.items, { emptyText: t("device.no_alarms"),
        rowProps: (a) => ({ "data-alarm": a.id }) }));
    } catch (err) {
      if (err.name !== "AbortError") fill(alarmsBox, errorBox(err));
    }
  }

  const rejectionsBox = h("div");
  async function loadRejections() {
    try {
      const answer = await api("/rejections", { signal: ctx.signal,
        query: { device: id, limit: 50 } });
      fill(rejectionsBox, table([
        { label: t("table.time"), cls: "nowrap", cell: (r) => fmtTime(r.received_ms) },
        { label: t("rejection.code"), cell: (r) => badge(r.code, "bad-soft") },
        { label: t("rejection.message"), cell: (r) => r.message },
        { label: t("rejection.protocol"), cell: (r) => (r.protocol || "").toUpperCase() },
        { label: t("rejection.payload"), cell: (r) => h("code", { class: "json clip",
          title: r.payload }, r.payload_base64 ? t("rejection.binary") : r.payload) },
      ], answer.data, { emptyText: t("device.no_rejections") }));
    } catch (err) {
      if (err.name !== "AbortError") fill(rejectionsBox, errorBox(err));
    }
  }

  root.append(
    header,
    h("div", { class: "grid grid-2-1" },
      card({ title: t("device.latest"), body: props.length ? latestBox
        : empty(t("device.no_properties")), testid: "latest" }),
      card({ title: t("device.connection"), body: connBox, testid: "connection" })),
    card({ title: t("device.charts"), actions: rangePicker, testid: "charts",
      body: charted.length ? chartsBox : empty(t("device.no_numeric")) }),
    h("div", { class: "grid grid-1-1" },
      card({ title: t("device.open_alarms"), body: alarmsBox, testid: "device-alarms",
        actions: h("a", { class: "link", href: `#/alarms?device=${encodeURIComponent(id)}` },
          t("overview.all_alarms")) }),
      card({ title: t("device.events"), body: eventsBox, testid: "events" })),
    card({ title: t("device.history"), body: historyBox, testid: "connection-history" }),
    card({ title: t("device.rejections"), body: rejectionsBox, testid: "rejections" }),
  );

  const latest = await api(`${path}/latest`, { signal: ctx.signal }).catch(() => ({}));
  for (const [prop, { ts, value }] of Object.entries(latest)) setLatest(prop, ts, value);
  api(`${path}/events`, { signal: ctx.signal, query: { limit: 50 } }).then((answer) => {
    events = answer.events;
    drawEvents();
  }).catch(() => drawEvents());
  loadAlarms();
  loadRejections();
  loadHistory(device.status?.changed_ms ?? null);

  // --- live --------------------------------------------------------------------------------
  let lastRefresh = 0;
  const close = openStream({ devices: [id], alarms: true }, {
    points(data) {
      if (data.device !== id) return;
      for (const [prop, ts, value] of data.points) {
        setLatest(prop, ts, value);
        plot(prop, ts, value);
      }
      // what connectivity says changes with traffic; refresh it now and then, not per point
      if (Date.now() - lastRefresh > 5000) {
        lastRefresh = Date.now();
        refreshConnection();
      }
    },
    event(data) {
      if (data.device !== id) return;
      const level = (model.events || []).find((e) => e.id === data.event)?.level;
      events.unshift({ event: data.event, ts: data.ts, params: data.params, level });
      drawEvents();
    },
    alarm(change) {
      if (change.subject === id || change.subject === "*") {
        loadAlarms();
        ctx.refreshAlarmCount();
      }
    },
  });
  ctx.onCleanup(close);
  await loadSeries();
  const ticker = setInterval(() => {
    for (const item of Object.values(tiles)) if (item.ts) item.when.textContent = fmtAgo(item.ts);
  }, 15000);
  const statusPoll = setInterval(refreshConnection, STATUS_EVERY_MS);
  return () => {
    clearInterval(ticker);
    clearInterval(statusPoll);
  };
}
