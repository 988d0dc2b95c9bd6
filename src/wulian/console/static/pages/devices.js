// Devices: a searchable, filterable list (product, tag, state, online), paged, with each
// device's connectivity. Filters live in the address (#/devices?product=…) so a view can
// be bookmarked and shared.

import { api } from "../api.js";
import { fmtAgo, fmtNumber, t } from "../i18n.js";
import {
  badge, button, card, debounce, dot, errorBox, fill, h, icon, loading, select, table,
} from "../ui.js";

const PAGE = 50;
const FILTERS = ["q", "product", "tag", "state", "online"];

export function connectivity(status) {
  if (!status) return badge(t("device.never_seen"), "neutral");
  const online = status.online;
  return h("span", { class: "conn" },
    dot(online ? "good" : "off"),
    h("span", null, online ? t("device.online") : t("device.offline")),
    status.last_seen_ms ? h("span", { class: "muted small" }, fmtAgo(status.last_seen_ms))
      : null);
}

export function stateBadge(state) {
  return state === "disabled" ? badge(t("device.state.disabled"), "warn")
    : badge(t("device.state.active"), "good-soft");
}

export function transport(status) {
  if (!status || !status.protocol) return "—";
  const ip = status.ip_version ? ` · IPv${status.ip_version}` : "";
  return `${status.protocol.toUpperCase()}${ip}`;
}

export function tagChips(tags, shown = 3) {
  const entries = Object.entries(tags || {});
  if (!entries.length) return "";
  return h("span", { class: "chips", title: entries.map(([k, v]) => `${k}: ${v}`).join("\n") },
    entries.slice(0, shown).map(([k, v]) => h("span", { class: "chip" }, `${k}: ${v}`)),
    entries.length > shown ? h("span", { class: "chip muted" }, `+${entries.length - shown}`)
      : null);
}

export async function mount(root, ctx) {
  ctx.setTitle(t("nav.devices"));
  const filters = Object.fromEntries(FILTERS.map((f) => [f, ctx.query.get(f) || ""]));
  let offset = Number(ctx.query.get("offset")) || 0;
  const products = await api("/products", { signal: ctx.signal }).then((r) => r.data)
    .catch(() => []);
  const productNames = Object.fromEntries(products.map((p) => [p.id, p.name || p.id]));

  const body = h("div");
  const pager = h("div", { class: "pager" });

  function syncAddress() {
    const query = new URLSearchParams();
    for (const f of FILTERS) if (filters[f]) query.set(f, filters[f]);
    if (offset) query.set("offset", String(offset));
    const hash = `#/devices${query.toString() ? `?${query}` : ""}`;
    // replace, not assign: typing in the search box must not re-render the page
    history.replaceState(null, "", hash);
  }

  async function load() {
    syncAddress();
    fill(body, loading());
    let rows;
    try {
      const answer = await api("/devices", { signal: ctx.signal, query: {
        q: filters.q, product: filters.product, tag: filters.tag, state: filters.state,
        online: filters.online, status: "true", limit: PAGE + 1, offset } });
      rows = answer.data;
    } catch (err) {
      if (err.name !== "AbortError") fill(body, errorBox(err));
      return;
    }
    if (!ctx.alive()) return;
    const more = rows.length > PAGE;
    rows = rows.slice(0, PAGE);
    fill(body, table([
      { label: t("device.id"), cell: (d) => h("a", { class: "strong",
        href: `#/devices/${encodeURIComponent(d.id)}`, "data-testid": "device-link" }, d.id) },
      { label: t("device.name"), cell: (d) => d.name || "—" },
      { label: t("device.product"), cell: (d) => productNames[d.product] || d.product },
      { label: t("device.connectivity"), cell: (d) => connectivity(d.status) },
      { label: t("device.transport"), cls: "nowrap", cell: (d) => transport(d.status) },
      { label: t("device.state"), cell: (d) => stateBadge(d.state) },
      { label: t("device.tags"), cell: (d) => tagChips(d.tags, 2) },
      { label: "", cls: "icon-cell", cell: (d) => (d.location
        ? h("span", { title: t("device.has_location") }, icon("pin")) : "") },
    ], rows, {
      emptyText: FILTERS.some((f) => filters[f]) ? t("devices.none_match") : t("devices.none"),
      rowProps: (d) => ({ "data-device": d.id, class: "clickable",
        onclick: (e) => {
          if (e.target.closest("a")) return;
          ctx.navigate(`#/devices/${encodeURIComponent(d.id)}`);
        } }),
    }));
    fill(pager,
      h("span", { class: "muted", "data-testid": "devices-range" }, rows.length
        ? t("devices.range", { from: fmtNumber(offset + 1, 0),
          to: fmtNumber(offset + rows.length, 0) }) : ""),
      button(t("action.previous"), { small: true, disabled: offset === 0,
        onclick: () => { offset = Math.max(0, offset - PAGE); load(); } }),
      button(t("action.next"), { small: true, disabled: !more,
        onclick: () => { offset += PAGE; load(); } }));
  }

  const reload = () => { offset = 0; load(); };
  const search = h("input", { class: "input", type: "search", value: filters.q,
    placeholder: t("devices.search"), "data-testid": "device-search", maxlength: 128,
    oninput: debounce((e) => { filters.q = e.target.value.trim(); reload(); }, 300) });
  const tag = h("input", { class: "input", value: filters.tag, placeholder: t("devices.tag"),
    title: t("devices.tag_hint"), "data-testid": "device-tag",
    onchange: (e) => {
      // the API filters on key:value; a bare key is not a filter yet
      const value = e.target.value.trim();
      e.target.classList.toggle("invalid", Boolean(value) && !value.includes(":"));
      filters.tag = value.includes(":") ? value : "";
      reload();
    } });
  const pick = (name, options) => select(options, filters[name], (v) => {
    filters[name] = v;
    reload();
  }, { "data-testid": `device-${name}` });

  root.append(card({
    body: [
      h("div", { class: "toolbar" },
        h("div", { class: "search" }, icon("search"), search),
        pick("product", [["", t("devices.all_products")],
          ...products.map((p) => [p.id, p.name || p.id])]),
        pick("online", [["", t("devices.any_connectivity")], ["true", t("device.online")],
          ["false", t("device.offline")]]),
        pick("state", [["", t("devices.any_state")], ["active", t("device.state.active")],
          ["disabled", t("device.state.disabled")]]),
        tag,
        button("", { iconName: "refresh", title: t("action.refresh"), onclick: load })),
      body, pager],
    testid: "devices",
  }));
  await load();
}
