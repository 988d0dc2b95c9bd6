// One product's thing model: properties, events and commands, and the document itself.

import { api } from "../api.js";
import { fmtNumber, t } from "../i18n.js";
import { badge, card, empty, fill, h, severityLabel, table } from "../ui.js";

function typeText(field) {
  return {
    int: t("type.int"), float: t("type.float"), bool: t("type.bool"),
    string: t("type.string"), enum: t("type.enum"),
  }[field.type] || field.type;
}

function rangeText(field) {
  if (field.type === "enum") return (field.values || []).join(" · ");
  if (field.type === "string") return field.max_length ? t("product.max_length",
    { n: fmtNumber(field.max_length, 0) }) : "—";
  const lo = field.min ?? null;
  const hi = field.max ?? null;
  if (lo === null && hi === null) return "—";
  return `${lo === null ? "−∞" : fmtNumber(lo, 6)} … ${hi === null ? "∞" : fmtNumber(hi, 6)}`;
}

function params(list) {
  if (!list || !list.length) return "—";
  return h("span", { class: "chips" }, list.map((p) => h("span", { class: "chip" },
    `${p.id}: ${typeText(p)}${p.unit ? ` (${p.unit})` : ""}`)));
}

export async function mount(root, ctx) {
  const id = ctx.params[0];
  ctx.setTitle(id, [[t("nav.products"), "#/products"]]);
  let model;
  try {
    model = await api(`/products/${encodeURIComponent(id)}`, { signal: ctx.signal });
  } catch (err) {
    if (err.status === 404) {
      fill(root, card({ body: empty(t("product.not_found", { id })) }));
      return;
    }
    throw err;
  }
  ctx.setTitle(model.name || id, [[t("nav.products"), "#/products"]]);
  const properties = model.properties || [];
  const events = model.events || [];
  const commands = model.commands || [];
  root.append(
    h("section", { class: "card device-head" },
      h("div", { class: "device-title" },
        h("div", null, h("h2", null, model.name || model.id),
          h("div", { class: "muted mono" }, model.id),
          model.description ? h("p", { class: "lead" }, model.description) : null),
        h("a", { class: "btn btn-default", href: `#/devices?product=${encodeURIComponent(id)}` },
          t("product.show_devices")))),
    card({ title: t("product.properties"), testid: "properties", body: table([
      { label: t("product.field_id"), cell: (p) => h("span", { class: "mono" }, p.id) },
      { label: t("product.field_name"), cell: (p) => p.name || "—" },
      { label: t("product.type"), cell: typeText },
      { label: t("product.unit"), cell: (p) => p.unit || "—" },
      { label: t("product.range"), cell: rangeText },
      { label: t("product.access"), cell: (p) => (p.access === "rw"
        ? badge(t("product.read_write"), "info") : badge(t("product.read_only"), "neutral")) },
      { label: t("product.description"), cls: "wide", cell: (p) => p.description || "" },
    ], properties) }),
    h("div", { class: "grid grid-1-1" },
      card({ title: t("product.events"), testid: "events", body: table([
        { label: t("product.field_id"), cell: (e) => h("span", { class: "mono" }, e.id) },
        { label: t("device.level"), cell: (e) => severityLabel(e.level || "info") },
        { label: t("device.params"), cell: (e) => params(e.params) },
      ], events) }),
      card({ title: t("product.commands"), testid: "commands", body: table([
        { label: t("product.field_id"), cell: (c) => h("span", { class: "mono" }, c.id) },
        { label: t("device.params"), cell: (c) => params(c.params) },
      ], commands) })),
    card({ title: t("product.document"), body: h("pre", { class: "code" },
      JSON.stringify(model, null, 2)) }),
  );
}
