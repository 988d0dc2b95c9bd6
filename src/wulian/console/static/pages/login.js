// Login: username and password → a session cookie (HttpOnly, set by the server).

import { api } from "../api.js";
import { t } from "../i18n.js";
import { fill, h, icon } from "../ui.js";

export function mount(root, ctx) {
  document.title = `${t("login.title")} · ${t("brand.name")}`;
  const error = h("div", { class: "form-error", role: "alert", "data-testid": "login-error",
    hidden: true });
  if (ctx.query.get("expired")) {
    error.hidden = false;
    error.textContent = t("login.expired");
  }
  const username = h("input", { class: "input", name: "username", autocomplete: "username",
    required: true, autofocus: true, "data-testid": "username", maxlength: 64 });
  const password = h("input", { class: "input", name: "password", type: "password",
    autocomplete: "current-password", required: true, "data-testid": "password" });
  const submit = h("button", { class: "btn btn-primary btn-block", type: "submit",
    "data-testid": "login-submit" }, t("login.submit"));

  async function onsubmit(event) {
    event.preventDefault();
    error.hidden = true;
    submit.disabled = true;
    try {
      const user = await api("/auth/login", { method: "POST",
        body: { username: username.value.trim(), password: password.value } });
      ctx.setUser(user);
      ctx.navigate(ctx.query.get("next") || "#/overview");
    } catch (err) {
      error.hidden = false;
      // the server words the refusal in the console's language (Accept-Language)
      error.textContent = err.status && err.body.message ? err.body.message : t("login.failed");
      password.value = "";
      password.focus();
    } finally {
      submit.disabled = false;
    }
  }

  fill(root, h("div", { class: "login" },
    h("section", { class: "login-hero" },
      h("div", { class: "login-brand" },
        h("img", { src: new URL("../logo.svg", import.meta.url).href, alt: "", width: 40 }),
        h("span", null, t("brand.name"))),
      h("h1", null, t("login.hero_title")),
      h("p", null, t("login.hero_text")),
      h("ul", { class: "login-points" },
        h("li", null, icon("check"), t("login.point_protocols")),
        h("li", null, icon("check"), t("login.point_alarms")),
        h("li", null, icon("check"), t("login.point_offline")))),
    h("section", { class: "login-panel" },
      h("div", { class: "login-lang" }, icon("globe"), ctx.languagePicker()),
      h("form", { class: "login-form", onsubmit, "data-testid": "login-form" },
        h("h2", { "data-testid": "login-heading" }, t("login.title")),
        h("p", { class: "muted" }, t("login.subtitle")),
        error,
        h("label", { class: "field" }, h("span", { class: "field-label" }, t("login.username")),
          username),
        h("label", { class: "field" }, h("span", { class: "field-label" }, t("login.password")),
          password),
        submit,
        h("p", { class: "login-hint" }, t("login.hint"))))));
  return () => {};
}
