// Map: every device with a location, coloured by status (alarm > online > offline), over
// the world's country outlines drawn as a vector layer from the package itself. No tile
// server is asked for anything, so the map works on a closed network.

import { allPages, api } from "../api.js";
import { fmtNumber, t } from "../i18n.js";
import { openStream } from "../stream.js";
import { debounce, fill, h, severityLabel, SEVERITIES } from "../ui.js";
import { leafletLib, worldOutlines } from "../vendor.js";

const COLORS = { critical: "#d92d20", major: "#f97316", minor: "#eab308",
  warning: "#3b82f6", online: "#12b76a", offline: "#98a2b3" };
// worst first: a group of devices takes the colour of its worst member
const ORDER = [...SEVERITIES, "online", "offline"];
const REFRESH_MS = 30000;
const CELL_PX = 36; // devices closer than this on screen are drawn as one group

function statusOf(device, alarmBySubject) {
  return alarmBySubject.get(device.id) || (device.status?.online ? "online" : "offline");
}

function statusText(status) {
  if (SEVERITIES.includes(status)) return t("map.alarm", { severity: severityLabel(status) });
  return status === "online" ? t("device.online") : t("device.offline");
}

export async function mount(root, ctx) {
  ctx.setTitle(t("nav.map"));
  const mapEl = h("div", { class: "map", "data-testid": "map" });
  const legend = h("div", { class: "map-legend", "data-testid": "map-legend" });
  const note = h("div", { class: "map-note muted small" });
  root.append(h("section", { class: "card map-card" }, mapEl, legend, note));

  const [{ L, topojson }, world] = await Promise.all([leafletLib(), worldOutlines()]);
  if (!ctx.alive()) return undefined;
  const map = L.map(mapEl, {
    preferCanvas: true, attributionControl: false, worldCopyJump: true, minZoom: 2,
    maxZoom: 18, zoomSnap: 0.5,
  });
  ctx.onCleanup(() => map.remove());
  const renderer = L.canvas({ padding: 0.5 });
  L.geoJSON(topojson.feature(world, world.objects.countries), {
    renderer, interactive: false,
    style: { color: "#9fb0c4", weight: 0.8, fillColor: "#fbfcfd", fillOpacity: 1 },
  }).addTo(map);
  map.setView([34, 108], 4);
  const layer = L.layerGroup().addTo(map);
  let placed = [];
  let fitted = false;

  function marker(d) {
    const href = `#/devices/${encodeURIComponent(d.id)}`;
    const popup = h("div", { class: "map-popup" },
      h("a", { href, class: "strong" }, d.name || d.id),
      h("div", { class: "muted mono small" }, d.id), h("div", null, statusText(d.mapStatus)));
    const alarm = SEVERITIES.includes(d.mapStatus);
    return L.circleMarker([d.location.lat, d.location.lon], {
      renderer, radius: alarm ? 8 : 6, color: "#ffffff", weight: 1.5,
      fillColor: COLORS[d.mapStatus], fillOpacity: 0.95,
    }).bindPopup(popup).bindTooltip(d.name || d.id);
  }

  function group(members) {
    const worst = ORDER.find((s) => members.some((d) => d.mapStatus === s));
    const lat = members.reduce((sum, d) => sum + d.location.lat, 0) / members.length;
    const lon = members.reduce((sum, d) => sum + d.location.lon, 0) / members.length;
    const bounds = L.latLngBounds(members.map((d) => [d.location.lat, d.location.lon]));
    const circle = L.circleMarker([lat, lon], {
      renderer, radius: Math.min(22, 9 + 3 * Math.log2(members.length)), color: "#ffffff",
      weight: 2, fillColor: COLORS[worst], fillOpacity: 0.9,
    });
    circle.bindTooltip(String(members.length), { permanent: true, direction: "center",
      className: "cluster-label" });
    circle.on("click", () => map.fitBounds(bounds.pad(0.3), { maxZoom: 16 }));
    return circle;
  }

  // Screen-space grouping, redone at every zoom: a country view shows one circle per town
  // with its count, a street view shows every device.
  function draw() {
    layer.clearLayers();
    const cells = new Map();
    for (const d of placed) {
      const p = map.latLngToLayerPoint([d.location.lat, d.location.lon]);
      const key = `${Math.floor(p.x / CELL_PX)}:${Math.floor(p.y / CELL_PX)}`;
      if (!cells.has(key)) cells.set(key, []);
      cells.get(key).push(d);
    }
    const items = [...cells.values()].map((members) => ({ members,
      rank: ORDER.length - Math.min(...members.map((d) => ORDER.indexOf(d.mapStatus))) }));
    // alarms are drawn last, so never hidden under a quiet neighbour
    items.sort((a, b) => a.rank - b.rank);
    for (const { members } of items) {
      (members.length === 1 ? marker(members[0]) : group(members)).addTo(layer);
    }
    mapEl.dataset.groups = String(items.length);
  }
  map.on("zoomend", draw);

  async function load() {
    const [devices, alarms] = await Promise.all([
      allPages("/devices", { status: "true" }, { signal: ctx.signal }),
      api("/alarms", { query: { state: "open", limit: 1000 }, signal: ctx.signal })
        .then((r) => r.items).catch(() => []),
    ]);
    if (!ctx.alive()) return;
    const alarmBySubject = new Map();
    for (const a of alarms) {
      const before = alarmBySubject.get(a.subject);
      if (!before || SEVERITIES.indexOf(a.severity) < SEVERITIES.indexOf(before)) {
        alarmBySubject.set(a.subject, a.severity);
      }
    }
    placed = devices.filter((d) => d.location).map((d) => ({ ...d,
      mapStatus: statusOf(d, alarmBySubject) }));
    const counts = {};
    for (const d of placed) counts[d.mapStatus] = (counts[d.mapStatus] || 0) + 1;
    mapEl.dataset.markers = String(placed.length);
    if (!fitted && placed.length) {
      fitted = true;
      map.fitBounds(placed.map((d) => [d.location.lat, d.location.lon]),
        { padding: [40, 40], maxZoom: 13 });
    }
    draw();
    fill(legend, ORDER.map((key) => h("span", {
      class: "legend-item", "data-testid": `legend-${key}` },
    h("span", { class: "legend-dot", style: { background: COLORS[key] } }),
    SEVERITIES.includes(key) ? severityLabel(key)
      : key === "online" ? t("device.online") : t("device.offline"),
    h("strong", null, fmtNumber(counts[key] || 0, 0)))));
    note.textContent = t("map.note", { shown: fmtNumber(placed.length, 0),
      total: fmtNumber(devices.length, 0) });
  }

  await load();
  const timer = setInterval(() => {
    if (!document.hidden) load().catch(() => {});
  }, REFRESH_MS);
  const close = openStream({ alarms: true }, { alarm: debounce(() => load().catch(() => {}),
    500) });
  return () => {
    clearInterval(timer);
    close();
  };
}
