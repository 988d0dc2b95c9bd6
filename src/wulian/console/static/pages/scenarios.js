// Scenarios: the twelve industry templates (GET /scenarios), grouped by field, each with
// what runs of it here (GET /scenarios/{id}: devices registered, open alarms of its
// default rules, rules installed). Alarm changes are pushed; the rest refreshes every 30 s.

import { api } from "../api.js";
import { fmtNumber, t } from "../i18n.js";
import { openStream } from "../stream.js";
import { debounce, fill, h } from "../ui.js";

const FIELDS = ["social_governance", "industry", "consumption"];
const REFRESH_MS = 30000;

export function fieldLabel(field) {
  return {
    social_governance: t("scenarios.field.social_governance"),
    industry: t("scenarios.field.industry"),
    consumption: t("scenarios.field.consumption"),
  }[field] || field;
}

export function registeredOf(detail) {
  return (detail?.products || []).reduce((sum, p) => sum + (p.registered || 0), 0);
}

function figure(label, value, testid, tone = "") {
  return h("div", { class: `scenario-figure ${tone}` },
    h("strong", { "data-testid": testid }, value), h("span", null, label));
}

function scenarioCard(s, detail) {
  const registered = detail ? registeredOf(detail) : null;
  const alarms = detail ? detail.open_alarms : null;
  const installed = detail ? detail.rules_installed.length : null;
  const dash = "—";
  return h("a", { class: `card scenario-card${registered ? " live-here" : ""}`,
    href: `#/scenarios/${encodeURIComponent(s.id)}`, "data-scenario": s.id,
    "data-testid": `scenario-${s.id}` },
  h("div", { class: "scenario-card-head" },
    h("h3", { "data-testid": `scenario-name-${s.id}` }, s.name),
    h("span", { class: "chip" }, `${s.area.city} · ${s.area.district}`)),
  h("p", { class: "scenario-text" }, s.description),
  h("div", { class: "chips scenario-products" }, s.products.map((p) => h("span", {
    class: "chip", title: p.id }, p.name))),
  h("div", { class: "scenario-figures" },
    figure(t("scenarios.registered"), registered === null ? dash : fmtNumber(registered, 0),
      `scenario-devices-${s.id}`),
    figure(t("scenarios.open_alarms"), alarms === null ? dash : fmtNumber(alarms, 0),
      `scenario-alarms-${s.id}`, alarms ? "bad" : ""),
    figure(t("scenarios.rules_installed"), installed === null ? dash
      : t("scenarios.of", { n: fmtNumber(installed, 0),
        total: fmtNumber(s.default_rules.length, 0) }), `scenario-rules-${s.id}`)));
}

export async function mount(root, ctx) {
  ctx.setTitle(t("nav.scenarios"));
  const list = (await api("/scenarios", { signal: ctx.signal })).items;
  const body = h("div", { class: "scenario-groups", "data-testid": "scenarios" });
  const intro = h("p", { class: "muted scenario-intro", "data-testid": "scenarios-summary" });
  root.append(intro, body);

  async function load() {
    const details = await Promise.all(list.map((s) => api(
      `/scenarios/${encodeURIComponent(s.id)}`, { signal: ctx.signal }).catch((err) => {
      if (err.name === "AbortError") throw err;
      return null;
    })));
    if (!ctx.alive()) return;
    const byId = Object.fromEntries(list.map((s, i) => [s.id, details[i]]));
    const running = details.filter((d) => registeredOf(d) > 0).length;
    intro.textContent = t("scenarios.summary", { n: fmtNumber(list.length, 0),
      running: fmtNumber(running, 0) });
    fill(body, FIELDS.map((field) => {
      const members = list.filter((s) => s.field === field);
      if (!members.length) return null;
      return h("section", { class: "scenario-group", "data-field": field },
        h("h2", { class: "scenario-group-title" }, fieldLabel(field),
          h("span", { class: "muted small" }, t("scenarios.count", {
            n: fmtNumber(members.length, 0) }))),
        h("div", { class: "scenario-grid" }, members.map((s) => scenarioCard(s, byId[s.id]))));
    }));
  }

  await load();
  const timer = setInterval(() => {
    if (!document.hidden) load().catch(() => {});
  }, REFRESH_MS);
  const close = openStream({ alarms: true }, {
    alarm: debounce(() => load().catch(() => {}), 500) });
  return () => {
    clearInterval(timer);
    close();
  };
}
