// One scenario's dashboard (GET /scenarios/{id}): devices registered and online per product,
// open alarms of its default rules and how many of them are installed, then one panel per
// product with the properties its template charts first, the scenario's open alarms and a
// small map of its devices.
//
// The charts show a few devices' own series, not a fleet mean: the API answers a series per
// device, and averaging hundreds of devices in the browser would cost as many requests. Each
// panel says which devices it shows (the first by id) and how (5-minute averages over the last
// 24 h, then every reading the server pushes).

import { allPages, api } from "../api.js";
import { fmtAgo, fmtNumber, fmtPercent, fmtTime, fmtValue, t } from "../i18n.js";
import { openStream } from "../stream.js";
import {
  alarmStateLabel, badge, card, debounce, empty, errorBox, fill, h, kpi, SEVERITIES,
  severityBadge, severityLabel, table,
} from "../ui.js";
import { leafletLib, worldOutlines } from "../vendor.js";
import { multiChart } from "./multichart.js";
import { fieldLabel, registeredOf } from "./scenarios.js";

const SHOWN = 3; // devices charted per product
const HOURS = 24;
const BUCKET = "5m";
const REFRESH_MS = 30000;
const MAP_COLORS = { critical: "#d92d20", major: "#f97316", minor: "#eab308",
  warning: "#3b82f6", online: "#12b76a", offline: "#98a2b3" };

function chartValue(value) {
  if (typeof value === "boolean") return value ? 1 : 0;
  return typeof value === "number" ? value : null;
}

function deviceLink(id, name) {
  return h("a", { href: `#/devices/${encodeURIComponent(id)}` }, name || id);
}

export async function mount(root, ctx) {
  const id = ctx.params[0];
  const path = `/scenarios/${encodeURIComponent(id)}`;
  ctx.setTitle(id, [[t("nav.scenarios"), "#/scenarios"]]);
  let scenario;
  try {
    scenario = await api(path, { signal: ctx.signal });
  } catch (err) {
    if (err.status === 404) {
      fill(root, card({ body: empty(t("scenario.not_found", { id })) }));
      return undefined;
    }
    throw err;
  }
  ctx.setTitle(scenario.name, [[t("nav.scenarios"), "#/scenarios"]]);
  const productIds = scenario.products.map((p) => p.id);
  const ruleIds = new Set(scenario.default_rules);

  // thing models (names, units) and every registered device of each product, with status
  const [models, deviceLists] = await Promise.all([
    Promise.all(productIds.map((p) => api(`/products/${encodeURIComponent(p)}`,
      { signal: ctx.signal }).catch((err) => {
      if (err.name === "AbortError") throw err;
      return null;
    }))),
    Promise.all(productIds.map((p) => allPages("/devices", { product: p, status: "true" },
      { signal: ctx.signal }))),
  ]);
  if (!ctx.alive()) return undefined;
  const modelOf = Object.fromEntries(productIds.map((p, i) => [p, models[i]]));
  let devicesOf = Object.fromEntries(productIds.map((p, i) => [p, deviceLists[i]]));
  const charted = Object.fromEntries(productIds.map((p) => [p, devicesOf[p].slice(0, SHOWN)]));
  const productOfDevice = new Map();
  for (const p of productIds) for (const d of charted[p]) productOfDevice.set(d.id, p);

  // --- header and KPIs -------------------------------------------------------------------
  const kpis = { registered: h("div"), online: h("div"), alarms: h("div"), rules: h("div") };
  const header = h("section", { class: "card scenario-head", "data-testid": "scenario-head" },
    h("div", { class: "scenario-head-main" },
      h("p", { class: "scenario-lead" }, scenario.description),
      h("div", { class: "chips" },
        badge(fieldLabel(scenario.field), "info"),
        h("span", { class: "chip" }, `${scenario.area.city} · ${scenario.area.district}`),
        h("span", { class: "chip mono" }, scenario.id))));

  function drawKpis() {
    const registered = registeredOf(scenario);
    const online = productIds.reduce((sum, p) => sum + devicesOf[p]
      .filter((d) => d.status?.online).length, 0);
    fill(kpis.registered, kpi({ label: t("scenario.registered"),
      value: fmtNumber(registered, 0), testid: "kpi-registered",
      sub: t("scenario.products_count", { n: fmtNumber(productIds.length, 0) }) }));
    fill(kpis.online, kpi({ label: t("scenario.online"), value: fmtNumber(online, 0),
      testid: "kpi-online", tone: "good",
      sub: h("span", null, t("scenario.online_rate"), " ",
        h("strong", null, fmtPercent(registered ? online / registered : 0))) }));
    fill(kpis.alarms, kpi({ label: t("scenario.open_alarms"),
      value: fmtNumber(scenario.open_alarms, 0), testid: "kpi-alarms",
      tone: scenario.open_alarms ? "bad" : "", sub: t("scenario.of_its_rules") }));
    fill(kpis.rules, kpi({ label: t("scenario.rules_installed"),
      value: t("scenarios.of", { n: fmtNumber(scenario.rules_installed.length, 0),
        total: fmtNumber(scenario.default_rules.length, 0) }), testid: "kpi-rules",
      sub: t("scenario.default_rules") }));
  }

  // --- products table ----------------------------------------------------------------------
  const productsBox = h("div");
  function drawProducts() {
    fill(productsBox, table([
      { label: t("scenario.product"), cell: (p) => h("a", {
        href: `#/products/${encodeURIComponent(p.id)}` }, p.name) },
      { label: t("scenario.registered"), cls: "num", cell: (p) => h("a", {
        href: `#/devices?product=${encodeURIComponent(p.id)}`, title: t("scenario.list_devices"),
        "data-testid": `registered-${p.id}` }, fmtNumber(p.registered, 0)) },
      { label: t("scenario.online"), cls: "num", cell: (p) => h("span", {
        "data-testid": `online-${p.id}` },
      fmtNumber(devicesOf[p.id].filter((d) => d.status?.online).length, 0)) },
      { label: t("scenario.template_devices"), cls: "num", cell: (p) => fmtNumber(p.devices, 0) },
    ], scenario.products, { rowProps: (p) => ({ "data-product": p.id }) }));
  }

  // --- panels: one per product -----------------------------------------------------------
  const panels = {}; // product → {charts: {prop: chart}, counters: {device: {prop: cell}}}
  const panelCards = [];
  for (const panel of scenario.dashboard) {
    const product = panel.product;
    const model = modelOf[product];
    const meta = Object.fromEntries((model?.properties || []).map((p) => [p.id, p]));
    const shown = charted[product];
    const total = devicesOf[product].length;
    const info = scenario.products.find((p) => p.id === product);
    const state = { charts: {}, counters: {}, chartHosts: [] };
    panels[product] = state;
    let body;
    if (!model) {
      body = empty(t("scenario.product_missing", { product }));
    } else if (!shown.length) {
      body = empty(t("scenario.no_devices"));
    } else {
      const grid = h("div", { class: "charts scenario-charts" });
      for (const prop of panel.charts) {
        const m = meta[prop] || { id: prop };
        const host = h("div", { class: "chart-panel", "data-testid": `chart-${product}-${prop}` },
          h("div", { class: "chart-title" }, h("strong", null, m.name || m.id),
            m.unit ? h("span", { class: "muted" }, ` (${m.unit})`) : null));
        grid.append(host);
        state.chartHosts.push([prop, host, m]);
      }
      const counters = panel.counters.length ? h("div", { class: "sub-block" },
        h("h3", { class: "sub-title" }, t("scenario.counters")),
        table([
          { label: t("scenario.device"), cell: (d) => deviceLink(d.id, d.name) },
          ...panel.counters.map((prop) => ({ label: meta[prop]?.unit
            ? `${meta[prop]?.name || prop} (${meta[prop].unit})` : meta[prop]?.name || prop,
          cls: "num", cell: (d) => {
            const cell = h("span", { "data-testid": `counter-${d.id}-${prop}` }, "—");
            state.counters[d.id] = { ...(state.counters[d.id] || {}), [prop]: cell };
            return cell;
          } })),
        ], shown)) : null;
      body = [grid, counters];
    }
    const rules = panel.rules.length ? h("div", { class: "panel-rules" },
      h("span", { class: "muted small" }, t("scenario.watched_by")),
      panel.rules.map((r) => badge(r, scenario.rules_installed.includes(r) ? "good-soft"
        : "neutral", { title: scenario.rules_installed.includes(r) ? t("scenario.rule_on")
        : t("scenario.rule_off") }))) : null;
    const note = shown.length ? h("span", { class: "muted small", "data-testid":
      `series-note-${product}` }, total > shown.length
      ? t("scenario.series_first", { n: fmtNumber(shown.length, 0),
        total: fmtNumber(total, 0), hours: HOURS })
      : t("scenario.series_all", { n: fmtNumber(total, 0), hours: HOURS })) : null;
    panelCards.push(h("section", { class: "card", "data-testid": `panel-${product}`,
      "data-product": product },
    h("header", { class: "card-head" },
      h("h2", { class: "card-title" }, model?.name || info?.name || product), note),
    h("div", { class: "card-body" }, body, rules)));
  }

  // --- alarms -------------------------------------------------------------------------------
  const alarmsBox = h("div");
  let openAlarms = [];
  async function loadAlarms() {
    try {
      const lists = await Promise.all([...ruleIds].map((rule) => api("/alarms", {
        signal: ctx.signal, query: { state: "open", rule, limit: 200 } })));
      openAlarms = lists.flatMap((l) => l.items).sort((a, b) => b.raised_ms - a.raised_ms);
      fill(alarmsBox, table([
        { label: t("alarm.severity"), cell: (a) => severityBadge(a.severity) },
        { label: t("alarm.rule"), cell: (a) => a.rule_name || a.rule_id },
        { label: t("alarm.subject"), cell: (a) => (a.subject === "*"
          ? h("span", { class: "muted" }, t("alarm.group")) : deviceLink(a.subject)) },
        { label: t("alarm.state"), cell: (a) => alarmStateLabel(a.state) },
        { label: t("alarm.raised"), cls: "nowrap", cell: (a) => h("span", {
          title: fmtTime(a.raised_ms) }, fmtAgo(a.raised_ms)) },
        { label: t("alarm.message"), cell: (a) => a.message || "—" },
      ], openAlarms.slice(0, 50), { emptyText: t("scenario.no_alarms"),
        rowProps: (a) => ({ "data-alarm": a.id, "data-rule": a.rule_id }) }));
    } catch (err) {
      if (err.name !== "AbortError") fill(alarmsBox, errorBox(err));
    }
  }

  // --- map ------------------------------------------------------------------------------------
  const mapEl = h("div", { class: "map scenario-map", "data-testid": "scenario-map" });
  const legend = h("div", { class: "map-legend scenario-legend" });
  let drawMap = () => {};

  async function setupMap() {
    const [{ L, topojson }, world] = await Promise.all([leafletLib(), worldOutlines()]);
    if (!ctx.alive()) return;
    const map = L.map(mapEl, { preferCanvas: true, attributionControl: false, minZoom: 2,
      maxZoom: 18, zoomSnap: 0.5 });
    ctx.onCleanup(() => map.remove());
    // the template's district, dashed: where its devices are meant to stand
    const { lat, lon } = scenario.area;
    const area = [[lat[0], lon[0]], [lat[1], lon[1]]];
    map.fitBounds(area, { padding: [20, 20] });
    const renderer = L.canvas({ padding: 0.5 });
    L.geoJSON(topojson.feature(world, world.objects.countries), { renderer,
      interactive: false,
      style: { color: "#9fb0c4", weight: 0.8, fillColor: "#fbfcfd", fillOpacity: 1 },
    }).addTo(map);
    L.rectangle(area, { renderer, interactive: false, color: "#1463ff", weight: 1.2,
      dashArray: "5 4", fillColor: "#1463ff", fillOpacity: 0.04 }).addTo(map);
    const layer = L.layerGroup().addTo(map);
    let fitted = false;
    drawMap = () => {
      layer.clearLayers();
      const worst = new Map();
      for (const a of openAlarms) {
        const before = worst.get(a.subject);
        if (!before || SEVERITIES.indexOf(a.severity) < SEVERITIES.indexOf(before)) {
          worst.set(a.subject, a.severity);
        }
      }
      const placed = productIds.flatMap((p) => devicesOf[p]).filter((d) => d.location);
      const counts = {};
      // quiet devices first, alarms last, so an alarm is never hidden under a neighbour
      const ranked = placed.map((d) => ({ d, status: worst.get(d.id)
        || (d.status?.online ? "online" : "offline") }));
      const order = [...SEVERITIES, "online", "offline"];
      ranked.sort((a, b) => order.indexOf(b.status) - order.indexOf(a.status));
      for (const { d, status } of ranked) {
        counts[status] = (counts[status] || 0) + 1;
        const alarm = SEVERITIES.includes(status);
        L.circleMarker([d.location.lat, d.location.lon], { renderer, radius: alarm ? 7 : 5,
          color: "#ffffff", weight: 1.2, fillColor: MAP_COLORS[status], fillOpacity: 0.95 })
          .bindTooltip(d.name || d.id)
          .on("click", () => ctx.navigate(`#/devices/${encodeURIComponent(d.id)}`))
          .addTo(layer);
      }
      mapEl.dataset.markers = String(placed.length);
      if (!fitted && placed.length) {
        fitted = true;
        map.fitBounds(placed.map((d) => [d.location.lat, d.location.lon]),
          { padding: [30, 30], maxZoom: 14 });
      }
      fill(legend, order.filter((k) => counts[k]).map((k) => h("span", {
        class: "legend-item" },
      h("span", { class: "legend-dot", style: { background: MAP_COLORS[k] } }),
      SEVERITIES.includes(k) ? severityLabel(k)
        : k === "online" ? t("device.online") : t("device.offline"),
      h("strong", null, fmtNumber(counts[k], 0)))));
    };
    drawMap();
  }

  // --- layout -----------------------------------------------------------------------------------
  drawKpis();
  drawProducts();
  root.append(
    header,
    h("div", { class: "kpis kpis-4" }, Object.values(kpis)),
    h("div", { class: "grid grid-1-1" },
      card({ title: t("scenario.products_title"), body: productsBox, testid: "scenario-products" }),
      h("section", { class: "card map-card scenario-map-card" }, mapEl, legend)),
    ...panelCards,
    card({ title: t("scenario.alarms_title"), body: alarmsBox, testid: "scenario-alarms",
      actions: h("a", { class: "link", href: "#/alarms" }, t("overview.all_alarms")) }),
  );

  // charts need their hosts in the page to know their width
  for (const product of productIds) {
    const state = panels[product];
    if (!state) continue;
    const series = charted[product].map((d) => ({ key: d.id, label: d.name || d.id }));
    for (const [prop, host, m] of state.chartHosts) {
      state.charts[prop] = await multiChart(host, { series, unit: m.unit, height: 190,
        span: HOURS * 3600000 });
      if (!ctx.alive()) return undefined;
    }
  }
  ctx.onCleanup(() => Object.values(panels).forEach((state) =>
    Object.values(state.charts).forEach((c) => c.destroy())));

  // Points pushed while the series load wait here, so none falls between the load and the feed.
  let seriesLoading = true;
  const pending = [];
  function plot(device, prop, ts, value) {
    const product = productOfDevice.get(device);
    const chart = product && panels[product]?.charts[prop];
    if (!chart || ts < Date.now() - HOURS * 3600000) return;
    if (seriesLoading) pending.push([device, prop, ts, value]);
    else chart.add(device, ts, chartValue(value));
  }

  function setCounter(device, prop, value) {
    const product = productOfDevice.get(device);
    const cell = product && panels[product]?.counters[device]?.[prop];
    if (!cell) return;
    const unitless = fmtValue(value);
    if (cell.textContent !== unitless) cell.textContent = unitless;
  }

  async function loadSeries() {
    const since = Date.now() - HOURS * 3600000;
    const queue = [];
    for (const product of productIds) {
      for (const d of charted[product]) {
        for (const prop of Object.keys(panels[product]?.charts || {})) {
          queue.push([product, d, prop]);
        }
      }
    }
    // a few at a time: a dashboard of many products must not flood the server
    await Promise.all(Array.from({ length: Math.min(4, queue.length) }, async () => {
      while (queue.length) {
        const [product, d, prop] = queue.shift();
        try {
          const answer = await api(`/devices/${encodeURIComponent(d.id)}/telemetry`, {
            signal: ctx.signal, query: { property: prop, since, bucket: BUCKET, agg: "avg",
              limit: 100000 } });
          panels[product].charts[prop].set(d.id, answer.buckets.map((b) => b.ts),
            answer.buckets.map((b) => chartValue(b.value)));
        } catch (err) {
          if (err.name === "AbortError") return;
          console.warn(d.id, prop, err);
        }
      }
    }));
    seriesLoading = false;
    for (const [device, prop, ts, value] of pending.splice(0)) plot(device, prop, ts, value);
    for (const panel of panelCards) panel.dataset.series = "loaded";
  }

  async function loadCounters() {
    await Promise.all(productIds.flatMap((product) => Object.keys(
      panels[product]?.counters || {}).map(async (device) => {
      const latest = await api(`/devices/${encodeURIComponent(device)}/latest`,
        { signal: ctx.signal }).catch(() => ({}));
      for (const [prop, point] of Object.entries(latest || {})) {
        setCounter(device, prop, point.value);
      }
    })));
  }

  async function refresh() {
    const [fresh, lists] = await Promise.all([
      api(path, { signal: ctx.signal }),
      Promise.all(productIds.map((p) => allPages("/devices", { product: p, status: "true" },
        { signal: ctx.signal }))),
    ]);
    if (!ctx.alive()) return;
    scenario = fresh;
    devicesOf = Object.fromEntries(productIds.map((p, i) => [p, lists[i]]));
    drawKpis();
    drawProducts();
    drawMap();
  }

  // many alarm changes in a second (a storm) → one reload
  const onAlarms = debounce(() => {
    Promise.all([loadAlarms(), refresh()]).then(() => drawMap()).catch(() => {});
    ctx.refreshAlarmCount();
  }, 400);
  const close = openStream({ devices: [...productOfDevice.keys()], alarms: true }, {
    points(data) {
      for (const [prop, ts, value] of data.points) {
        plot(data.device, prop, ts, value);
        setCounter(data.device, prop, value);
      }
    },
    alarm(change) {
      if (ruleIds.has(change.rule_id)) onAlarms();
    },
  });
  ctx.onCleanup(close);
  setupMap().catch((err) => {
    if (err.name !== "AbortError") fill(mapEl, errorBox(err));
  });
  await loadAlarms();
  drawMap();
  loadCounters();
  await loadSeries();
  const timer = setInterval(() => {
    if (!document.hidden) refresh().catch(() => {});
  }, REFRESH_MS);
  return () => clearInterval(timer);
}
