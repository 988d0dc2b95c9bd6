// A hash that names no page.

import { t } from "../i18n.js";
import { card, empty, h } from "../ui.js";

export function mount(root, ctx) {
  ctx.setTitle(t("missing.title"));
  root.append(card({ body: [empty(t("missing.text")),
    h("p", { class: "center" }, h("a", { href: "#/overview" }, t("missing.back")))] }));
}
