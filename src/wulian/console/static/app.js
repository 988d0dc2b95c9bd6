// The console shell: language, session, sidebar layout and the hash router.
// Pages are ES modules under pages/, each exporting mount(root, ctx) → cleanup.

import { api, whenUnauthorized } from "./api.js";
import {
  detectLanguage, language, loadLanguage, rememberLanguage, t, translate,
} from "./i18n.js";
import { onLiveState } from "./stream.js";
import { errorBox, fill, h, icon, loading, roleLabel, select, SEVERITIES } from "./ui.js";

const PAGES = {
  login: () => import("./pages/login.js"),
  overview: () => import("./pages/overview.js"),
  devices: () => import("./pages/devices.js"),
  device: () => import("./pages/device.js"),
  map: () => import("./pages/map.js"),
  scenarios: () => import("./pages/scenarios.js"),
  scenario: () => import("./pages/scenario.js"),
  alarms: () => import("./pages/alarms.js"),
  products: () => import("./pages/products.js"),
  product: () => import("./pages/product.js"),
  missing: () => import("./pages/missing.js"),
};

const ROUTES = [
  [/^\/login$/, "login"],
  [/^\/overview$/, "overview"],
  [/^\/devices$/, "devices"],
  [/^\/devices\/([^/]+)$/, "device"],
  [/^\/map$/, "map"],
  [/^\/scenarios$/, "scenarios"],
  [/^\/scenarios\/([^/]+)$/, "scenario"],
  [/^\/alarms$/, "alarms"],
  [/^\/products$/, "products"],
  [/^\/products\/([^/]+)$/, "product"],
];

// What each role may change; the server refuses the same things whatever the page shows.
const GRANTS = {
  "alarm.handle": ["operator", "admin"],
  "product.import": ["admin"],
};

const session = { user: null };
const app = document.getElementById("app");
let shell = null;
let current = { cleanup: null, abort: null };
let generation = 0;

function can(action) {
  return Boolean(session.user && (GRANTS[action] || []).includes(session.user.role));
}

function navigate(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function parse() {
  const raw = location.hash.replace(/^#/, "") || "/overview";
  const [path, qs = ""] = raw.split("?");
  for (const [pattern, page] of ROUTES) {
    const m = path.match(pattern);
    if (m) {
      return { page, path, params: m.slice(1).map(decodeURIComponent),
        query: new URLSearchParams(qs) };
    }
  }
  return { page: "missing", path, params: [], query: new URLSearchParams(qs) };
}

async function whoAmI() {
  try {
    session.user = await api("/auth/me");
  } catch {
    session.user = null;
  }
  return session.user;
}

function toLogin(expired) {
  const next = location.hash && !location.hash.startsWith("#/login") ? location.hash : "";
  const query = new URLSearchParams();
  if (next) query.set("next", next);
  if (expired) query.set("expired", "1");
  session.user = null;
  const target = `#/login${query.toString() ? `?${query}` : ""}`;
  if (location.hash !== target) location.hash = target;
  else render();
}

whenUnauthorized(() => {
  if (session.user) toLogin(true);
});

// --- layout -------------------------------------------------------------------------------

const NAV = [
  ["overview", "#/overview", "nav.overview"],
  ["scenarios", "#/scenarios", "nav.scenarios"],
  ["devices", "#/devices", "nav.devices"],
  ["map", "#/map", "nav.map"],
  ["alarms", "#/alarms", "nav.alarms"],
  ["products", "#/products", "nav.products"],
];

// Icons of nav entries that ui.js does not draw (24×24 strokes, the same style).
const NAV_ICONS = {
  // a dashboard of tiles with a rising line: the industry scenarios
  scenarios: "M4 4h7v7H4zM13 4h7v7h-7zM4 13h7v7H4zM13 19l2.5-3 2 1.5L20 14",
};

function navIcon(page) {
  const svg = icon(page);
  if (NAV_ICONS[page]) svg.querySelector("path").setAttribute("d", NAV_ICONS[page]);
  return svg;
}

function languagePicker() {
  return select([["zh", t("language.zh")], ["en", t("language.en")]], language(),
    async (code) => {
      rememberLanguage(code);
      await loadLanguage(code);
      shell = null;
      render();
    }, { "aria-label": t("language.label"), "data-testid": "language", class: "input lang" });
}

function buildShell() {
  const title = h("h1", { class: "page-title", "data-testid": "page-title" });
  const crumbs = h("div", { class: "page-crumbs" });
  const view = h("main", { class: "view", id: "view" });
  const live = h("span", { class: "live", "data-testid": "live", hidden: true },
    h("span", { class: "live-dot" }), h("span", { class: "live-text" }));
  const alarmCount = h("span", { class: "nav-count", hidden: true, "data-testid": "nav-alarms" });
  const links = {};
  const nav = h("nav", { class: "nav" }, NAV.map(([page, href, key]) => {
    links[page] = h("a", { class: "nav-item", href, "data-page": page },
      navIcon(page), h("span", null, t(key)), page === "alarms" ? alarmCount : null);
    return links[page];
  }));
  const user = session.user;
  const side = h("aside", { class: "sidebar" },
    h("a", { class: "brand", href: "#/overview" },
      h("img", { src: new URL("./logo.svg", import.meta.url).href, alt: "", width: 30 }),
      h("span", { class: "brand-text" }, h("strong", null, t("brand.name")),
        h("small", null, t("brand.tagline")))),
    nav,
    h("div", { class: "sidebar-foot" }, t("brand.footer")));
  const top = h("header", { class: "topbar" },
    h("div", { class: "topbar-left" }, crumbs, title),
    h("div", { class: "topbar-right" }, live, languagePicker(),
      h("div", { class: "user", "data-testid": "user" },
        h("span", { class: "avatar" }, (user.username || "?").slice(0, 1).toUpperCase()),
        h("span", { class: "user-text" }, h("strong", null, user.username),
          h("small", { "data-testid": "user-role" }, roleLabel(user.role)))),
      h("button", { class: "btn btn-ghost", type: "button", "data-testid": "logout",
        title: t("action.logout"), onclick: logout }, icon("logout"),
      h("span", null, t("action.logout")))));
  const root = h("div", { class: "shell" }, side, h("div", { class: "main-col" }, top, view));
  fill(app, root);
  app.classList.remove("booting");
  app.removeAttribute("aria-busy");
  const unLive = onLiveState((state) => {
    live.hidden = state === "idle";
    live.dataset.state = state;
    live.querySelector(".live-text").textContent =
      state === "live" ? t("live.on") : state === "off" ? t("live.off") : t("live.connecting");
  });
  shell = { root, title, crumbs, view, links, alarmCount, unLive };
  refreshAlarmCount();
  return shell;
}

async function refreshAlarmCount() {
  if (!shell) return;
  try {
    const counts = await api("/alarms/counts");
    const active = counts.active || {};
    const open = SEVERITIES.reduce((sum, s) => sum + (counts.open?.[s] || 0), 0);
    const unacked = SEVERITIES.reduce((sum, s) => sum + (active[s] || 0), 0);
    shell.alarmCount.hidden = open === 0;
    shell.alarmCount.textContent = String(open);
    shell.alarmCount.classList.toggle("hot", unacked > 0);
  } catch {
    shell.alarmCount.hidden = true;
  }
}

setInterval(() => {
  if (session.user && !document.hidden) refreshAlarmCount();
}, 30000);

async function logout() {
  try {
    await api("/auth/logout", { method: "POST" });
  } catch {
    // the session may already be gone; the login page is where we go either way
  }
  session.user = null;
  shell = null;
  location.hash = "#/login";
}

// --- routing ------------------------------------------------------------------------------

function stopPage() {
  current.abort?.abort();
  try {
    current.cleanup?.();
  } catch (err) {
    console.error(err);
  }
  current = { cleanup: null, abort: null };
}

async function render() {
  const mine = ++generation;
  stopPage();
  const route = parse();
  if (route.page === "login") {
    if (session.user || await whoAmI()) {
      if (mine === generation) navigate(route.query.get("next") || "#/overview");
      return;
    }
    shell?.unLive?.();
    shell = null;
    const mod = await PAGES.login();
    if (mine !== generation) return;
    app.classList.remove("booting");
    app.removeAttribute("aria-busy");
    const abort = new AbortController();
    current = { abort, cleanup: mod.mount(app, makeContext(route, abort, () => {})) };
    return;
  }
  if (!session.user && !await whoAmI()) {
    if (mine === generation) toLogin(false);
    return;
  }
  if (mine !== generation) return;
  const frame = shell || buildShell();
  for (const [page, link] of Object.entries(frame.links)) {
    const active = page === route.page || (page === "devices" && route.page === "device")
      || (page === "products" && route.page === "product")
      || (page === "scenarios" && route.page === "scenario");
    link.classList.toggle("active", active);
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  fill(frame.view, loading());
  fill(frame.crumbs);
  let mod;
  try {
    mod = await PAGES[route.page]();
  } catch (err) {
    fill(frame.view, errorBox(err));
    return;
  }
  if (mine !== generation) return;
  const abort = new AbortController();
  const cleanups = [];
  // a page still loading when the user moves on is cleaned up as soon as it says how
  const onCleanup = (fn) => (abort.signal.aborted ? fn() : cleanups.push(fn));
  const ctx = makeContext(route, abort, onCleanup);
  current = { abort, cleanup: () => cleanups.splice(0).forEach((fn) => fn()) };
  fill(frame.view);
  try {
    const done = await mod.mount(frame.view, ctx);
    if (typeof done === "function") onCleanup(done);
  } catch (err) {
    if (err.name === "AbortError" || mine !== generation) return;
    console.error(err);
    fill(frame.view, errorBox(err));
  }
}

function makeContext(route, abort, onCleanup) {
  return {
    params: route.params,
    query: route.query,
    user: session.user,
    signal: abort.signal,
    can,
    navigate,
    onCleanup,
    setUser(user) {
      session.user = user;
    },
    setTitle(text, crumbs = []) {
      document.title = `${text} · ${t("brand.name")}`;
      if (!shell) return;
      shell.title.textContent = text;
      fill(shell.crumbs, crumbs.map(([label, href]) => [
        href ? h("a", { href }, label) : h("span", null, label), h("span", { class: "sep" }, "/"),
      ]));
    },
    refreshAlarmCount,
    languagePicker,
    alive: () => !abort.signal.aborted,
  };
}

window.addEventListener("hashchange", render);

async function boot() {
  try {
    await loadLanguage(detectLanguage());
  } catch (err) {
    fill(app, errorBox(err));
    return;
  }
  translate(document);
  document.title = t("brand.name");
  render();
}

boot();
