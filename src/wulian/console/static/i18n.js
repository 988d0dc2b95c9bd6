// Every text the console shows comes from /console/i18n/{lang}.json (the `console.*` keys of
// wulian's catalogues, prefix removed); numbers and dates are formatted by Intl for the
// chosen language, so they read naturally in both.

const STORE_KEY = "wulian.lang";
let messages = {};
let lang = "en";

export function detectLanguage() {
  const saved = localStorage.getItem(STORE_KEY);
  if (saved === "zh" || saved === "en") return saved;
  const wanted = (navigator.languages && navigator.languages[0]) || navigator.language || "en";
  return wanted.toLowerCase().startsWith("zh") ? "zh" : "en";
}

export async function loadLanguage(code) {
  const response = await fetch(`/console/i18n/${code}.json`, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`messages for ${code}: HTTP ${response.status}`);
  messages = await response.json();
  lang = code;
  document.documentElement.lang = code === "zh" ? "zh-CN" : "en";
}

export function rememberLanguage(code) {
  localStorage.setItem(STORE_KEY, code);
}

export function language() {
  return lang;
}

export function locale() {
  return lang === "zh" ? "zh-CN" : "en-US";
}

export function t(key, params) {
  const template = messages[key];
  if (template === undefined) {
    console.warn("wulian console: no message for", key);
    return key;
  }
  if (!params) return template;
  return template.replace(/\{(\w+)\}/g, (whole, name) =>
    name in params ? String(params[name] ?? "—") : whole);
}

// Static markup names its text with data-i18n (textContent) and data-i18n-placeholder,
// -title or -aria-label (attributes).
export function translate(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const attr of ["placeholder", "title", "aria-label"]) {
    const data = `i18n${attr.replace(/(^|-)(\w)/g, (_, __, c) => c.toUpperCase())}`;
    for (const el of root.querySelectorAll(`[data-i18n-${attr}]`)) {
      el.setAttribute(attr, t(el.dataset[data]));
    }
  }
}

// --- formatting --------------------------------------------------------------------------

const cache = new Map();
function formatter(kind, options) {
  const key = `${lang}|${kind}|${JSON.stringify(options)}`;
  let made = cache.get(key);
  if (!made) {
    made = kind === "number" ? new Intl.NumberFormat(locale(), options)
      : kind === "date" ? new Intl.DateTimeFormat(locale(), options)
        : new Intl.RelativeTimeFormat(locale(), options);
    cache.set(key, made);
  }
  return made;
}

export const DASH = "—";

export function fmtNumber(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return DASH;
  return formatter("number", { maximumFractionDigits: digits }).format(value);
}

export function fmtPercent(ratio, digits = 1) {
  if (ratio === null || ratio === undefined) return DASH;
  return formatter("number", { style: "percent", maximumFractionDigits: digits })
    .format(ratio);
}

export function fmtTime(ms) {
  if (!ms) return DASH;
  return formatter("date", {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    second: "2-digit", hour12: false,
  }).format(new Date(ms));
}

export function fmtClock(ms, withSeconds = false) {
  return formatter("date", {
    hour: "2-digit", minute: "2-digit", ...(withSeconds ? { second: "2-digit" } : {}),
    hour12: false,
  }).format(new Date(ms));
}

export function fmtDay(ms) {
  return formatter("date", { month: "short", day: "numeric" }).format(new Date(ms));
}

const UNITS = [["year", 31536e6], ["month", 2592e6], ["week", 6048e5], ["day", 864e5],
  ["hour", 36e5], ["minute", 6e4], ["second", 1e3]];

export function fmtAgo(ms, now = Date.now()) {
  if (!ms) return DASH;
  const diff = ms - now;
  for (const [unit, size] of UNITS) {
    if (Math.abs(diff) >= size || unit === "second") {
      return formatter("relative", { numeric: "auto" }).format(Math.round(diff / size), unit);
    }
  }
  return DASH;
}

export function fmtValue(value, unit) {
  if (value === null || value === undefined) return DASH;
  if (typeof value === "boolean") return value ? t("value.true") : t("value.false");
  const text = typeof value === "number" ? fmtNumber(value, 3) : String(value);
  return unit ? `${text} ${unit}` : text;
}
