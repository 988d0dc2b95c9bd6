// Overview: the fleet at a glance. Figures come from GET /overview (devices, online rate,
// IPv6 share, messages/s now and per minute over 24 h, industries) and /alarms/counts;
// alarm changes are pushed, the rest refreshes every 10 s.

import { api } from "../api.js";
import { timeChart } from "../charts.js";
import { fmtClock, fmtNumber, fmtPercent, t } from "../i18n.js";
import { openStream } from "../stream.js";
import {
  card, debounce, fill, h, kpi, SEVERITIES, severityLabel, table,
} from "../ui.js";

const REFRESH_MS = 10000;

function bar(ratio, tone = "") {
  const pct = Math.max(0, Math.min(100, (ratio || 0) * 100));
  return h("div", { class: `bar ${tone}` }, h("span", { style: { width: `${pct}%` } }));
}

export async function mount(root, ctx) {
  ctx.setTitle(t("nav.overview"));
  const kpis = {
    devices: h("div"), online: h("div"), rate: h("div"), ipv6: h("div"), alarms: h("div"),
  };
  const chartHost = h("div", { class: "chart-host" });
  const severityBox = h("div", { class: "sev-list" });
  const industryBox = h("div");
  const productBox = h("div");
  const updated = h("span", { class: "muted small", "data-testid": "overview-updated" });

  root.append(
    h("div", { class: "kpis" }, Object.values(kpis)),
    h("div", { class: "grid grid-2-1" },
      card({ title: t("overview.traffic_title"), actions: updated, body: chartHost,
        testid: "traffic-card" }),
      card({ title: t("overview.alarms_title"), body: severityBox,
        actions: h("a", { href: "#/alarms", class: "link" }, t("overview.all_alarms")) })),
    h("div", { class: "grid grid-1-1" },
      card({ title: t("overview.industries_title"), body: industryBox,
        testid: "industries" }),
      card({ title: t("overview.products_title"), body: productBox, testid: "products" })),
  );

  const chart = await timeChart(chartHost, { label: t("overview.messages_per_s"),
    color: "#1463ff", height: 240, testid: "traffic-chart" });
  ctx.onCleanup(() => chart.destroy());

  function drawOverview(o) {
    fill(kpis.devices, kpi({ label: t("overview.devices"), value: fmtNumber(o.devices, 0),
      testid: "kpi-devices", sub: t("overview.products_count", { n: o.products.length }) }));
    fill(kpis.online, kpi({ label: t("overview.online"), value: fmtNumber(o.online, 0),
      testid: "kpi-online", tone: "good",
      sub: h("span", null, t("overview.online_rate"), " ",
        h("strong", { "data-testid": "kpi-online-rate" }, fmtPercent(o.online_rate))) }));
    fill(kpis.rate, kpi({ label: t("overview.messages_now"),
      value: fmtNumber(o.messages_per_s, 1), testid: "kpi-rate",
      sub: t("overview.messages_unit") }));
    fill(kpis.ipv6, kpi({ label: t("overview.ipv6_share"), value: fmtPercent(o.ipv6_share),
      testid: "kpi-ipv6", sub: t("overview.ipv6_of", { n: fmtNumber(o.ipv6_devices, 0),
        total: fmtNumber(o.ip_known_devices, 0) }) }));
    chart.set(o.messages_24h.map((p) => p[0]), o.messages_24h.map((p) => p[1]));
    updated.textContent = t("overview.updated", { time: fmtClock(o.ts, true) });

    fill(industryBox, table([
      { label: t("overview.industry"), cell: (r) => r.name },
      { label: t("overview.devices"), cls: "num", cell: (r) => fmtNumber(r.devices, 0) },
      { label: t("overview.online"), cls: "num", cell: (r) => fmtNumber(r.online, 0) },
      { label: t("overview.online_rate"), cls: "bar-cell", cell: (r) => {
        const ratio = r.devices ? r.online / r.devices : 0;
        return h("div", { class: "bar-row" }, bar(ratio, "good"),
          h("span", { class: "num" }, fmtPercent(ratio)));
      } },
    ], o.by_industry, { emptyText: t("overview.no_devices"),
      rowProps: (r) => ({ "data-industry": r.industry }) }));

    fill(productBox, table([
      { label: t("overview.product"), cell: (r) => h("a", {
        href: `#/devices?product=${encodeURIComponent(r.id)}` }, r.name) },
      { label: t("overview.devices"), cls: "num", cell: (r) => fmtNumber(r.devices, 0) },
      { label: t("overview.online"), cls: "num", cell: (r) => fmtNumber(r.online, 0) },
    ], [...o.products].sort((a, b) => b.devices - a.devices), {
      emptyText: t("overview.no_devices") }));
  }

  function drawAlarms(counts) {
    const open = counts?.open || {};
    const active = counts?.active || {};
    const total = SEVERITIES.reduce((sum, s) => sum + (open[s] || 0), 0);
    const unacked = SEVERITIES.reduce((sum, s) => sum + (active[s] || 0), 0);
    fill(kpis.alarms, kpi({ label: t("overview.open_alarms"),
      value: counts ? fmtNumber(total, 0) : null, testid: "kpi-alarms",
      tone: total ? "bad" : "",
      sub: counts ? t("overview.unacknowledged", { n: fmtNumber(unacked, 0) }) : "" }));
    const most = Math.max(1, ...SEVERITIES.map((s) => open[s] || 0));
    fill(severityBox, SEVERITIES.map((s) => h("a", {
      class: "sev-row", href: `#/alarms?severity=${s}`,
    },
    h("span", { class: `sev-label sev-${s}` }, severityLabel(s)),
    bar((open[s] || 0) / most, `sev-${s}`),
    h("span", { class: "sev-count", "data-testid": `sev-${s}` }, fmtNumber(open[s] || 0, 0)),
    h("span", { class: "muted small" },
      t("overview.unacknowledged_short", { n: fmtNumber(active[s] || 0, 0) })))));
  }

  async function refreshOverview() {
    const o = await api("/overview", { signal: ctx.signal });
    if (ctx.alive()) drawOverview(o);
  }

  async function refreshAlarms() {
    let counts = null;
    try {
      counts = await api("/alarms/counts", { signal: ctx.signal });
    } catch (err) {
      if (err.name === "AbortError") return;
    }
    if (ctx.alive()) drawAlarms(counts);
  }

  await Promise.all([refreshOverview(), refreshAlarms()]);
  const timer = setInterval(() => {
    if (document.hidden) return;
    refreshOverview().catch(() => {});
    refreshAlarms();
  }, REFRESH_MS);
  const onAlarm = debounce(() => {
    refreshAlarms();
    ctx.refreshAlarmCount();
  }, 400);
  const close = openStream({ alarms: true }, { alarm: onAlarm });
  return () => {
    clearInterval(timer);
    close();
  };
}
