// Live updates pushed by the server (Server-Sent Events on /api/v1/stream): new points and
// events of the devices on screen, alarm changes. EventSource sends the session cookie and
// reconnects by itself; the page shows whether the feed is live.

import { API } from "./api.js";

const listeners = new Set();
let state = "idle";

function setState(next) {
  state = next;
  for (const fn of listeners) fn(state);
}

export function onLiveState(fn) {
  listeners.add(fn);
  fn(state);
  return () => listeners.delete(fn);
}

// open({devices: ["id", …], alarms: true}, {points(data), event(data), alarm(data)}) → close()
export function openStream({ devices = [], alarms = false }, handlers) {
  const url = new URL(`${API}/stream`, location.origin);
  if (devices.length) url.searchParams.set("devices", devices.join(","));
  if (alarms) url.searchParams.set("alarms", "1");
  const source = new EventSource(url, { withCredentials: true });
  setState("connecting");
  source.onopen = () => setState("live");
  source.onerror = () => setState(source.readyState === EventSource.CLOSED ? "off" : "connecting");
  for (const kind of ["points", "event", "alarm", "lag"]) {
    if (!handlers[kind]) continue;
    source.addEventListener(kind, (message) => {
      let data;
      try {
        data = JSON.parse(message.data);
      } catch {
        return;
      }
      handlers[kind](data);
    });
  }
  return () => {
    source.close();
    setState("idle");
  };
}
