// Products and their thing models: list, and (admins) import a thing-model document.

import { api } from "../api.js";
import { fmtNumber, t } from "../i18n.js";
import { badge, button, card, errorBox, fill, h, icon, table, toast } from "../ui.js";

function importDialog(onDone) {
  const text = h("textarea", { class: "input mono", rows: 16, spellcheck: "false",
    placeholder: t("products.import_placeholder"), "data-testid": "import-text" });
  const file = h("input", { type: "file", accept: ".json,application/json", class: "file",
    onchange: async (e) => {
      const chosen = e.target.files[0];
      if (chosen) text.value = await chosen.text();
    } });
  const error = h("div", { class: "form-error", role: "alert", hidden: true,
    "data-testid": "import-error" });
  const dialog = h("dialog", { class: "dialog wide" });
  async function submit() {
    error.hidden = true;
    let doc;
    try {
      doc = JSON.parse(text.value);
    } catch (err) {
      error.hidden = false;
      error.textContent = t("products.not_json", { problem: err.message });
      return;
    }
    try {
      await api("/products", { method: "POST", body: doc });
    } catch (err) {
      error.hidden = false;
      error.textContent = err.message;
      return;
    }
    dialog.close();
    toast(t("products.imported", { id: doc.id }), "good");
    onDone(doc.id);
  }
  fill(dialog,
    h("header", { class: "dialog-head" }, h("strong", null, t("products.import_title")),
      h("button", { class: "btn btn-ghost", type: "button", title: t("action.close"),
        onclick: () => dialog.close() }, icon("x"))),
    h("div", { class: "dialog-body" },
      h("p", { class: "muted" }, t("products.import_help")),
      file, text, error),
    h("footer", { class: "dialog-foot" },
      button(t("action.cancel"), { onclick: () => dialog.close() }),
      button(t("products.import"), { tone: "primary", onclick: submit,
        testid: "import-submit" })));
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}

export async function mount(root, ctx) {
  ctx.setTitle(t("nav.products"));
  const box = h("div");
  const counts = {};

  async function load() {
    let products;
    try {
      const [answer, overview] = await Promise.all([
        api("/products", { signal: ctx.signal }),
        api("/overview", { signal: ctx.signal }).catch(() => null),
      ]);
      products = answer.data;
      for (const p of overview?.products || []) counts[p.id] = p;
    } catch (err) {
      if (err.name !== "AbortError") fill(box, errorBox(err));
      return;
    }
    if (!ctx.alive()) return;
    fill(box, table([
      { label: t("product.name"), cell: (p) => h("a", { class: "strong",
        href: `#/products/${encodeURIComponent(p.id)}` }, p.name || p.id) },
      { label: t("product.id"), cell: (p) => h("span", { class: "mono" }, p.id) },
      { label: t("product.properties"), cls: "num", cell: (p) =>
        fmtNumber((p.properties || []).length, 0) },
      { label: t("product.events"), cls: "num", cell: (p) => fmtNumber((p.events || []).length,
        0) },
      { label: t("product.commands"), cls: "num", cell: (p) =>
        fmtNumber((p.commands || []).length, 0) },
      { label: t("overview.devices"), cls: "num", cell: (p) => h("a", {
        href: `#/devices?product=${encodeURIComponent(p.id)}` },
      fmtNumber(counts[p.id]?.devices || 0, 0)) },
    ], products, { emptyText: t("products.none"),
      rowProps: (p) => ({ "data-product": p.id }) }));
  }

  const importButton = ctx.can("product.import")
    ? button(t("products.import"), { tone: "primary", iconName: "upload", testid: "import",
      onclick: () => importDialog((id) => { load(); ctx.navigate(`#/products/${
        encodeURIComponent(id)}`); }) })
    : badge(t("products.read_only"), "neutral", { "data-testid": "read-only" });
  root.append(card({ title: t("products.title"), actions: importButton, body: box,
    testid: "products" }));
  await load();
}
