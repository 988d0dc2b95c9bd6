// The vendored libraries (see vendor/README.md), loaded when a page first needs them: the
// login page and the tables stay light, the map's 0.75 MB of outlines load with the map.

const loaded = new Map();

export function vendorUrl(path) {
  return new URL(`./vendor/${path}`, import.meta.url).href;
}

function once(key, make) {
  if (!loaded.has(key)) {
    const promise = make();
    // a failed load may be retried on the next visit
    promise.catch(() => loaded.delete(key));
    loaded.set(key, promise);
  }
  return loaded.get(key);
}

export function loadScript(path) {
  return once(path, () => new Promise((resolve, reject) => {
    const el = document.createElement("script");
    el.src = vendorUrl(path);
    el.onload = resolve;
    el.onerror = () => reject(new Error(`cannot load ${path}`));
    document.head.append(el);
  }));
}

export function loadStyle(path) {
  return once(path, () => new Promise((resolve, reject) => {
    const el = document.createElement("link");
    el.rel = "stylesheet";
    el.href = vendorUrl(path);
    el.onload = resolve;
    el.onerror = () => reject(new Error(`cannot load ${path}`));
    document.head.append(el);
  }));
}

export async function uPlotLib() {
  await Promise.all([loadStyle("uplot/uPlot.min.css"), loadScript("uplot/uPlot.iife.min.js")]);
  return window.uPlot;
}

export async function leafletLib() {
  await Promise.all([loadStyle("leaflet/leaflet.css"), loadScript("leaflet/leaflet.js"),
    loadScript("topojson-client/topojson-client.min.js")]);
  return { L: window.L, topojson: window.topojson };
}

export function worldOutlines() {
  return once("world", async () => {
    const response = await fetch(vendorUrl("world-atlas/countries-50m.json"));
    if (!response.ok) throw new Error(`world outlines: HTTP ${response.status}`);
    return response.json();
  });
}
