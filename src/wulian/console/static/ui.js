// Small DOM helpers and the console's building blocks (cards, tables, badges, toasts).
// Views are built from elements and textContent, never from HTML strings: device names,
// tags and payloads are data the devices' owners control.

import { DASH, t } from "./i18n.js";

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  append(el, children);
  return el;
}

function setProps(el, props) {
  if (!props) return;
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "style" && typeof value === "object") Object.assign(el.style, value);
    else if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "value" && "value" in el) el.value = value;
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// --- icons (24×24 strokes) ----------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
const ICONS = {
  overview: "M4 13h6V4H4zM14 20h6v-9h-6zM4 20h6v-3H4zM14 7h6V4h-6z",
  devices: "M7 3h10a1 1 0 0 1 1 1v16a1 1 0 0 1-1 1H7a1 1 0 0 1-1-1V4a1 1 0 0 1 1-1zM10 18h4",
  map: "M9 4 3 6.5v13.5l6-2.5 6 2.5 6-2.5V4l-6 2.5zM9 4v13.5M15 6.5V20",
  alarms: "M12 3a6 6 0 0 0-6 6v4l-2 3h16l-2-3V9a6 6 0 0 0-6-6zM10 19a2 2 0 0 0 4 0",
  products: "m12 3 8 4.5v9L12 21l-8-4.5v-9zM12 12l8-4.5M12 12v9M12 12 4 7.5",
  logout: "M15 4h3a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2h-3M10 17l5-5-5-5M15 12H4",
  search: "M11 4a7 7 0 1 0 0 14 7 7 0 0 0 0-14zM20 20l-4-4",
  back: "M15 5l-7 7 7 7",
  upload: "M12 16V4M7 9l5-5 5 5M4 20h16",
  refresh: "M20 11a8 8 0 1 0-2.3 5.7M20 4v7h-7",
  check: "M5 12.5l4.5 4.5L19 7.5",
  x: "M6 6l12 12M18 6 6 18",
  globe: "M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18zM3 12h18M12 3c2.5 2.7 3.5 5.7 3.5 9s-1 6.3-3.5 9"
    + "c-2.5-2.7-3.5-5.7-3.5-9s1-6.3 3.5-9z",
  pin: "M12 21s-7-6.2-7-11.5a7 7 0 0 1 14 0C19 14.8 12 21 12 21zM12 7a2.5 2.5 0 1 0 0 5 2.5 2.5"
    + " 0 0 0 0-5z",
};

export function icon(name, cls = "icon") {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", cls);
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", ICONS[name] || "");
  svg.append(path);
  return svg;
}

// --- building blocks ----------------------------------------------------------------------

export function card({ title, actions, body, cls = "", testid } = {}) {
  return h("section", { class: `card ${cls}`, "data-testid": testid },
    title || actions ? h("header", { class: "card-head" },
      title ? h("h2", { class: "card-title" }, title) : null,
      actions ? h("div", { class: "card-actions" }, actions) : null) : null,
    h("div", { class: "card-body" }, body));
}

export function kpi({ label, value, sub, testid, tone = "" }) {
  return h("div", { class: `kpi ${tone}` },
    h("div", { class: "kpi-label" }, label),
    h("div", { class: "kpi-value", "data-testid": testid }, value ?? DASH),
    h("div", { class: "kpi-sub" }, sub ?? ""));
}

export function badge(text, tone = "neutral", props = {}) {
  return h("span", { class: `badge badge-${tone}`, ...props }, text);
}

export function dot(tone) {
  return h("span", { class: `dot dot-${tone}`, "aria-hidden": "true" });
}

export function button(label, { tone = "default", iconName, onclick, type = "button",
  testid, disabled, title, small } = {}) {
  return h("button", {
    class: `btn btn-${tone}${small ? " btn-sm" : ""}`, type, onclick, disabled, title,
    "data-testid": testid,
  }, iconName ? icon(iconName) : null, label ? h("span", null, label) : null);
}

export function empty(text) {
  return h("div", { class: "empty" }, text);
}

export function loading() {
  return h("div", { class: "loading" }, h("div", { class: "spinner" }));
}

export function errorBox(err) {
  return h("div", { class: "error-box", role: "alert" },
    t("error.load_failed"), " ", h("span", { class: "muted" }, err?.message || ""));
}

// columns: [{label, cell(row) → node|text, cls}]
export function table(columns, rows, { emptyText, rowProps } = {}) {
  if (!rows.length) return empty(emptyText || t("table.empty"));
  return h("div", { class: "table-wrap" }, h("table", { class: "table" },
    h("thead", null, h("tr", null, columns.map((c) => h("th", { class: c.cls }, c.label)))),
    h("tbody", null, rows.map((row) => h("tr", rowProps ? rowProps(row) : null,
      columns.map((c) => h("td", { class: c.cls }, c.cell(row))))))));
}

export function field(label, control, hint) {
  return h("label", { class: "field" }, h("span", { class: "field-label" }, label), control,
    hint ? h("span", { class: "field-hint" }, hint) : null);
}

export function select(options, value, onchange, props = {}) {
  return h("select", { class: "input", onchange: (e) => onchange(e.target.value), ...props },
    options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
}

export function segmented(options, value, onchange, testid) {
  const group = h("div", { class: "segmented", role: "tablist", "data-testid": testid });
  const draw = (current) => fill(group, options.map(([v, label]) => h("button", {
    type: "button", role: "tab", class: v === current ? "on" : "", "aria-selected":
      v === current ? "true" : "false", "data-value": v,
    onclick: () => { draw(v); onchange(v); },
  }, label)));
  draw(value);
  return group;
}

export function toast(message, tone = "info") {
  const box = document.getElementById("toasts");
  if (!box) return;
  const item = h("div", { class: `toast toast-${tone}` }, message);
  box.append(item);
  setTimeout(() => item.classList.add("out"), 3500);
  setTimeout(() => item.remove(), 4000);
}

export function dl(pairs) {
  return h("dl", { class: "dl" }, pairs.filter(Boolean).map(([term, value]) =>
    [h("dt", null, term), h("dd", null, value ?? DASH)]));
}

// Severity and state words and colours shared by the overview, alarms and map.
export const SEVERITIES = ["critical", "major", "minor", "warning"];

export function severityLabel(severity) {
  return {
    critical: t("severity.critical"), major: t("severity.major"), minor: t("severity.minor"),
    warning: t("severity.warning"), info: t("severity.info"),
  }[severity] || severity;
}

export function severityBadge(severity) {
  return badge(severityLabel(severity), `sev-${severity}`);
}

export function alarmStateLabel(state) {
  return {
    active: t("alarm.state.active"), acknowledged: t("alarm.state.acknowledged"),
    cleared: t("alarm.state.cleared"),
  }[state] || state;
}

export function roleLabel(role) {
  return { admin: t("role.admin"), operator: t("role.operator"), viewer: t("role.viewer") }[role]
    || role;
}

// Debounce: one call after a burst (many alarm changes in one second → one reload).
export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}
