#!/usr/bin/env python3
"""bench/console.py - the web console: time to first render, and the server's cost of live pages.

One run, on this machine, against `wulian serve` (embedded broker, SQLite) started as a
subprocess (`python -m wulian.cli serve`), so the platform's CPU is its own process's:

Setup (before the platform starts, straight into its data dir): the bench product
  (bench/product.json, 5 numeric properties), `--devices` devices sharing one scrypt hash
  (hashing each would cost ~50 ms apiece and measure nothing), a console user (viewer),
  7 days of one-minute readings (10,080 per property, 50,400 points a device) for the
  device the first-render pages show and for every device a live page shows, and 24 h of
  per-minute message counters for the overview's traffic chart.

1. First render (platform idle), `--repeats` times, interleaved:
   - `#/overview` and `#/devices/<id>` (7 days, 5 charts of ~10,080 points) in Debian's
     chromium (bench/screenshots.py's binary and flags), session cookie preset:
       cold = a new browser context (empty HTTP cache, new connection);
       warm = the same page sent to about:blank and back (modules from the HTTP cache).
     Done = the page's charts have their data: every `.chart` of the view carries
     `data-points` (charts.js sets it when it hands data to uPlot, which draws before the
     next frame) and, on the overview, the alarm KPI is filled. Checked every animation
     frame; the figure is `performance.now()` at that frame, i.e. from navigation start.
   - floors measured in the same run, same browser:
       api = the same API requests the page waits for, in the same order and concurrency
             (auth/me, device, product, latest, then the 5 week-long `telemetry?bucket=1m`
             series 4 at a time; overview: auth/me, then overview + alarms/counts),
             fetched and JSON-parsed in the warm page, no rendering;
       static = a navigation to one small static file (the logo) in a new context;
       httpx = the same API requests from Python (server time without a browser).
2. Live cost: the bench's load generator (bench/loadgen.py, one process, every device
   logged in with its own credentials) publishes `--rate` msg/s of QoS 1 telemetry paced
   over `--devices` devices (default 200 x 5 msg/s = 1,000 msg/s, so a live page gets ~5
   updates a second), for `--seconds` per phase, in `--rounds` rounds of:
       none    = nobody watching;
       sse     = `--sse-pages` emulated device pages: httpx clients that consume
                 `/api/v1/stream?devices=<id>&alarms=1` as the page's EventSource does
                 (parse every event's JSON), re-read `/devices/<id>` at most every 5 s while
                 points arrive, and `/alarms/counts` every 30 s, as the page does;
       browser = `--browser-pages` real device pages in chromium (one context), each loaded
                 until its charts are drawn before the phase starts.
   Measured per phase: CPU of the `wulian serve` process (its main thread - the asyncio loop
   that runs the embedded broker, the HTTP server and the SSE streams - and the others),
   of the load generator, of this bench process (the SSE clients) and of chromium, and the
   machine's busy share; messages stored (API `/stats`); SSE delivery latency = time an
   event is received (in Python, or in the page: an init script hooks EventSource) minus
   the reading's `ts`, which the generator sets to the wall clock at publish.
   Reported: serve CPU with pages / without, per page, per event delivered.

Output: one JSON line per run in bench/results/console.jsonl (`"quick": true` marks a smoke
run, `"partial": true` one with a part left out), the chart docs/bench-console.png (drawn by
a full run; by a quick one only with `--chart`), and a summary on stdout. Results and
analysis: docs/benchmarks.md, section Console.

    uv run python bench/console.py                 # full run: ~6 min, both cores busy
    uv run python bench/console.py --quick         # smoke: ~1.5 min
    uv run python bench/console.py --repeats 0 --kinds none,sse --seconds 15
                                                   # only the 50 SSE pages: ~2 min, ~1 core
    uv run python bench/console.py --replot        # chart from the last full run

Bounded: every loop by count and time (page loads 60 s, phases `--seconds` + drain, the
first-render part `--render-budget` s); loopback only; every process it starts is stopped
by its PID, the data dir is a temporary one (kept with `--keep`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ingest import git_commit, log, pct, stop_proc  # bench/ is not a package
from loadgen import PRODUCT_ID, PROPS, GenConfig, LoadGen, device_ids, free_port, product_doc
from screenshots import CHROMIUM, CHROMIUM_ARGS

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "console.jsonl"
CHART = ROOT / "docs" / "bench-console.png"
USER = "bench-viewer"
COOKIE = "wulian_session"
MINUTE_MS = 60_000
DAY_MS = 24 * 60 * MINUTE_MS
LOAD_TIMEOUT_MS = 60_000
FEATURED = "console-week"  # the first-render device (not in the load generator's fleet)

# ---------------------------------------------------------------- in-page probes
# Done: every chart of the view has its data (charts.js sets data-points on `.chart` when it
# hands uPlot the data; uPlot draws in a microtask, before the frame this runs in).
READY_DEVICE = """() => {
  const panels = document.querySelectorAll('#view .chart-panel');
  if (!panels.length) return false;
  let points = 0;
  for (const p of panels) {
    const c = p.querySelector('.chart');
    if (!c || c.dataset.points === undefined) return false;
    points += Number(c.dataset.points);
  }
  return { t: performance.now(), charts: panels.length, points };
}"""
READY_OVERVIEW = """() => {
  const c = document.querySelector('#view [data-testid=traffic-chart]');
  if (!c || c.dataset.points === undefined) return false;
  if (!document.querySelector('#view [data-testid=kpi-alarms]')) return false;
  return { t: performance.now(), charts: 1, points: Number(c.dataset.points) };
}"""
# What the page had loaded by then: the shell, the static assets, the API answers.
TIMING = """(ready) => {
  const end = (es) => es.length ? Math.max(...es.map((e) => e.responseEnd)) : null;
  const start = (es) => es.length ? Math.min(...es.map((e) => e.startTime)) : null;
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource').filter((e) => e.responseEnd <= ready);
  const api = res.filter((e) => e.name.includes('/api/v1/') && !e.name.includes('/stream'));
  return {
    html: nav ? nav.responseEnd : null,
    assets: end(res.filter((e) => e.name.includes('/static/'))),
    api_start: start(api),
    api: end(api),
    telemetry_start: start(api.filter((e) => e.name.includes('/telemetry'))),
    telemetry: end(api.filter((e) => e.name.includes('/telemetry'))),
    api_requests: api.length,
    api_bytes: api.reduce((s, e) => s + (e.encodedBodySize || 0), 0),
  };
}"""
# The device page's critical-path requests, as pages/device.js issues them (no rendering).
FLOOR_DEVICE = """async ([id, product, props]) => {
  const get = async (path) => {
    const r = await fetch('/api/v1' + path, { headers: { Accept: 'application/json' } });
    return r.json();
  };
  const t0 = performance.now();
  await get('/auth/me');
  await get(`/devices/${encodeURIComponent(id)}`);
  await get(`/products/${encodeURIComponent(product)}`);
  await get(`/devices/${encodeURIComponent(id)}/latest`);
  const since = Date.now() - 7 * 86400000;
  const queue = [...props];
  let points = 0;
  await Promise.all(Array.from({ length: Math.min(4, queue.length) }, async () => {
    while (queue.length) {
      const p = queue.shift();
      const a = await get(`/devices/${encodeURIComponent(id)}/telemetry?property=${p}` +
        `&since=${since}&limit=100000&bucket=1m&agg=avg`);
      points += a.buckets.length;
    }
  }));
  return { ms: performance.now() - t0, points };
}"""
FLOOR_OVERVIEW = """async () => {
  const get = async (path) => {
    const r = await fetch('/api/v1' + path, { headers: { Accept: 'application/json' } });
    return r.json();
  };
  const t0 = performance.now();
  await get('/auth/me');
  const [o] = await Promise.all([get('/overview'), get('/alarms/counts')]);
  return { ms: performance.now() - t0, points: o.messages_24h.length };
}"""
# Live pages: note when each `points` event arrives, before the page's own listener runs.
LIVE_PROBE = """(() => {
  const probe = { lat: [], events: 0, lags: 0 };
  window.__wulianProbe = probe;
  const Native = window.EventSource;
  window.EventSource = class extends Native {
    constructor(url, init) {
      super(url, init);
      this.addEventListener('points', (m) => {
        const now = Date.now();
        probe.events += 1;
        let d;
        try { d = JSON.parse(m.data); } catch { return; }
        const seen = new Set();
        for (const [, ts] of d.points) {
          if (!seen.has(ts)) { seen.add(ts); probe.lat.push([now, now - ts]); }
        }
      });
      this.addEventListener('lag', () => { probe.lags += 1; });
    }
  };
})();"""
TAKE_PROBE = """() => {
  const p = window.__wulianProbe || { lat: [], events: 0, lags: 0 };
  const out = { lat: p.lat, events: p.events, lags: p.lags,
                visible: document.visibilityState };
  p.lat = []; p.events = 0; p.lags = 0;
  return out;
}"""


# ---------------------------------------------------------------- small helpers
def stats(values: list[float]) -> dict[str, Any]:
    """n, median, p95, min, max of `values` (ms), rounded; empty -> n 0."""
    if not values:
        return {"n": 0}
    return {"n": len(values), "median": round(statistics.median(values), 1),
            "p95": round(pct(values, 95) or 0.0, 1), "min": round(min(values), 1),
            "max": round(max(values), 1)}


Point = tuple[str, str, int, Any]


def week_points(device: str, now: int, days: float, rng: random.Random) -> list[Point]:
    """One reading a minute for `days` up to a minute ago, 5 properties, plausible values."""
    points: list[Point] = []
    for ts in range(now - int(days * DAY_MS), now - MINUTE_MS, MINUTE_MS):
        t = ts + rng.randrange(0, 5000)
        points += ((device, "temperature", t, round(18 + 6 * rng.random(), 2)),
                   (device, "humidity", t, round(40 + 20 * rng.random(), 1)),
                   (device, "pm25", t, rng.randint(3, 150)),
                   (device, "co2", t, rng.randint(380, 1500)),
                   (device, "noise", t, round(30 + 30 * rng.random(), 1)))
    return points


def rnd1(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


@dataclass
class Setup:
    work: Path
    token: str
    password: str  # the console user's
    secret: str  # every fleet device's
    fleet: list[str]
    featured: str
    history_devices: list[str]
    history_s: float


def prepare(work: Path, n_devices: int, history_for: int, days: float) -> Setup:
    """Product, devices, console user, history and counter samples, straight into the store."""
    from wulian.bootstrap import build_core
    from wulian.config import Settings
    from wulian.domain.account import Role, hash_password
    from wulian.domain.device import Device, hash_secret
    from wulian.domain.message import SeenRecord, WriteBatch
    from wulian.metrics import CounterSamples
    from wulian.storage.accounts import SqlAccounts

    token, password, secret = (secrets.token_urlsafe(24), "bench-" + secrets.token_hex(8),
                               secrets.token_urlsafe(18))
    settings = Settings(data_dir=work, admin_token=token)
    core = build_core(settings, provision_broker=False)
    try:
        core.registry.import_product(product_doc())
        SqlAccounts.for_store(core.store).add_user(USER, hash_password(password), Role.VIEWER)
        secret_hash = hash_secret(secret)
        now = int(time.time() * 1000)
        fleet = device_ids(n_devices)
        for dev in [FEATURED, *fleet]:
            core.store.add_device(Device(id=dev, product=PRODUCT_ID, name=f"Bench {dev}",
                                         secret_hash=secret_hash, created_ms=now - 8 * DAY_MS,
                                         tags={"site": "bench"}))
        history = [FEATURED, *fleet[:history_for]]
        rng = random.Random(5)
        t0 = time.monotonic()
        accepted = 0
        for dev in history:
            pts = week_points(dev, now, days, rng)
            for i in range(0, len(pts), 10_000):
                chunk = pts[i:i + 10_000]
                core.store.write(WriteBatch(points=chunk, accepted=len(chunk) // len(PROPS)))
            accepted += len(pts) // len(PROPS)
            core.store.write(WriteBatch(seen={dev: SeenRecord(now - MINUTE_MS, "mqtt",
                                                                "127.0.0.1:40000")}))
        history_s = time.monotonic() - t0
        # the overview's 24 h chart: one counter sample a minute, a steady ~10 msg/s
        samples = CounterSamples.of(core.store)
        minute = now - now % MINUTE_MS
        for k in range(24 * 60, 0, -1):
            samples.record(minute - k * MINUTE_MS,
                           {"messages_accepted": max(0, accepted - k * 600)})
    finally:
        core.close()
    return Setup(work, token, password, secret, fleet, FEATURED, history, history_s)


@dataclass
class Platform:
    proc: subprocess.Popen[bytes]
    base: str
    mqtt_port: int
    log_path: Path


def start_platform(setup: Setup) -> Platform:
    """`python -m wulian.cli serve` on free loopback ports; returns once /health answers."""
    http_port, mqtt_port = free_port(), free_port()
    env = {**os.environ, "WULIAN_ADMIN_TOKEN": setup.token, "WULIAN_LANG": "en"}
    log_path = setup.work / "serve.log"
    cmd = [sys.executable, "-m", "wulian.cli", "serve", "--data-dir", str(setup.work),
           "--http-host", HOST, "--http-port", str(http_port), "--mqtt-port", str(mqtt_port)]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                cwd=setup.work)
    base = f"http://{HOST}:{http_port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"wulian serve exited ({proc.returncode}): "
                               f"{log_path.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                return Platform(proc, base, mqtt_port, log_path)
        time.sleep(0.2)
    stop_proc(proc)
    raise RuntimeError("wulian serve did not answer /api/v1/health in 90 s")


def login(base: str, password: str) -> str:
    """The console user's session cookie (one session, shared by every page and client)."""
    r = httpx.post(f"{base}/api/v1/auth/login", json={"username": USER, "password": password},
                   headers={"X-Wulian-Console": "1"}, timeout=30)
    r.raise_for_status()
    value = r.cookies.get(COOKIE)
    if not value:
        raise RuntimeError(f"no {COOKIE} cookie in the login answer")
    return value


def accepted(base: str, token: str) -> int:
    r = httpx.get(f"{base}/api/v1/stats", headers={"Authorization": f"Bearer {token}"},
                  timeout=30)
    r.raise_for_status()
    return int(r.json()["messages_accepted"])


# ---------------------------------------------------------------- 1. first render
def new_context(browser: Any, base: str, cookie: str, probe: bool = False) -> Any:
    ctx = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-US")
    ctx.add_cookies([{"name": COOKIE, "value": cookie, "url": base, "httpOnly": True,
                      "sameSite": "Strict"}])
    if probe:
        ctx.add_init_script(LIVE_PROBE)
    return ctx


def load(page: Any, url: str, ready: str) -> dict[str, Any]:
    """Navigate and wait (checked every frame) until `ready` holds; its figures and timings."""
    t0 = time.perf_counter()
    page.goto(url, wait_until="commit", timeout=LOAD_TIMEOUT_MS)
    handle = page.wait_for_function(ready, polling="raf", timeout=LOAD_TIMEOUT_MS)
    wall = (time.perf_counter() - t0) * 1000
    done: dict[str, Any] = handle.json_value()
    timing: dict[str, Any] = page.evaluate(TIMING, done["t"])
    return {"ms": done["t"], "wall_ms": wall, "charts": done["charts"],
            "points": done["points"],
            **{k if k.startswith("api_") and k != "api_start" else f"{k}_ms": v
               for k, v in timing.items()}}


def static_url(base: str) -> str:
    """The logo under the console's versioned static prefix (read from the shell)."""
    html = httpx.get(f"{base}/", timeout=30).text
    m = re.search(r'(/static/[0-9a-f]+)/', html)
    if not m:
        raise RuntimeError("no /static/<version>/ in the console's shell")
    return f"{base}{m.group(1)}/logo.svg"


NAV_DONE = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  return nav ? (nav.loadEventEnd || nav.responseEnd) : null;
}"""


def goto_ms(page: Any, url: str) -> dict[str, float]:
    """A plain navigation: ms from its start to the load event (in the page), and wall ms."""
    t0 = time.perf_counter()
    page.goto(url, wait_until="load", timeout=LOAD_TIMEOUT_MS)
    wall = (time.perf_counter() - t0) * 1000
    inpage = page.evaluate(NAV_DONE)
    return {"ms": float(inpage) if inpage else wall, "wall_ms": wall}


def httpx_floor(client: httpx.Client, pool: ThreadPoolExecutor, target: str,
                device: str) -> float:
    """The page's critical-path requests from Python (telemetry 4 at a time)."""
    t0 = time.perf_counter()
    client.get("/api/v1/auth/me").raise_for_status()
    if target == "overview":
        futs = [pool.submit(client.get, p) for p in ("/api/v1/overview",
                                                      "/api/v1/alarms/counts")]
        for f in futs:
            f.result().raise_for_status()
            f.result().json()
        return (time.perf_counter() - t0) * 1000
    for path in (f"/api/v1/devices/{device}", f"/api/v1/products/{PRODUCT_ID}",
                 f"/api/v1/devices/{device}/latest"):
        client.get(path).raise_for_status()
    since = int(time.time() * 1000) - 7 * DAY_MS

    def one(prop: str) -> int:
        r = client.get(f"/api/v1/devices/{device}/telemetry",
                       params={"property": prop, "since": since, "limit": 100000,
                               "bucket": "1m", "agg": "avg"})
        r.raise_for_status()
        return len(r.json()["buckets"])

    list(pool.map(one, PROPS))
    return (time.perf_counter() - t0) * 1000


def one_request(client: httpx.Client, target: str, device: str) -> float:
    """The page's heaviest request alone: GET /overview, or one property's 7-day series."""
    t0 = time.perf_counter()
    if target == "overview":
        client.get("/api/v1/overview").raise_for_status()
    else:
        client.get(f"/api/v1/devices/{device}/telemetry",
                   params={"property": PROPS[0], "since": int(time.time() * 1000) - 7 * DAY_MS,
                           "limit": 100000, "bucket": "1m", "agg": "avg"}).raise_for_status()
    return (time.perf_counter() - t0) * 1000


def first_render(browser: Any, base: str, cookie: str, device: str, repeats: int,
                 budget_s: float) -> dict[str, Any]:
    """Cold and warm loads of the overview and the device page, with their floors."""
    targets = {"overview": ("#/overview", READY_OVERVIEW),
               "device": (f"#/devices/{device}", READY_DEVICE)}
    raw: dict[str, dict[str, list[Any]]] = {
        name: {k: [] for k in ("cold", "warm", "api", "static_cold", "static_warm", "httpx",
                               "one")}
        for name in targets}
    logo = static_url(base)
    deadline = time.monotonic() + budget_s
    done = 0
    with httpx.Client(base_url=base, cookies={COOKIE: cookie}, timeout=60) as client, \
            ThreadPoolExecutor(4) as pool:
        for _ in range(repeats):
            if time.monotonic() > deadline:
                log(f"first render: time budget ({budget_s:.0f} s) spent after {done} repeats")
                break
            for name, (route, ready) in targets.items():
                r = raw[name]
                ctx = new_context(browser, base, cookie)
                try:
                    page = ctx.new_page()
                    r["cold"].append(load(page, f"{base}/{route}", ready))
                    page.goto("about:blank")
                    r["warm"].append(load(page, f"{base}/{route}", ready))
                    if name == "device":
                        r["api"].append(page.evaluate(FLOOR_DEVICE, [device, PRODUCT_ID,
                                                                     list(PROPS)]))
                    else:
                        r["api"].append(page.evaluate(FLOOR_OVERVIEW))
                finally:
                    ctx.close()
                ctx = new_context(browser, base, cookie)
                try:
                    page = ctx.new_page()
                    r["static_cold"].append(goto_ms(page, logo))
                    page.goto("about:blank")
                    r["static_warm"].append(goto_ms(page, logo))
                finally:
                    ctx.close()
                r["httpx"].append(httpx_floor(client, pool, name, device))
                r["one"].append(one_request(client, name, device))
            done += 1
    out: dict[str, Any] = {"repeats": done}
    for name, r in raw.items():
        cold_ms = [x["ms"] for x in r["cold"]]
        warm_ms = [x["ms"] for x in r["warm"]]
        api_ms = [x["ms"] for x in r["api"]]
        summ: dict[str, Any] = {
            "cold": stats(cold_ms), "warm": stats(warm_ms),
            "cold_wall": stats([x["wall_ms"] for x in r["cold"]]),
            "warm_wall": stats([x["wall_ms"] for x in r["warm"]]),
            "api_floor": stats(api_ms), "httpx_floor": stats(r["httpx"]),
            # the largest single request alone: one week-long series / GET /overview
            "httpx_one_request": stats(r["one"]),
            "static_cold": stats([x["ms"] for x in r["static_cold"]]),
            "static_warm": stats([x["ms"] for x in r["static_warm"]]),
            "static_cold_wall": stats([x["wall_ms"] for x in r["static_cold"]]),
            # where a cold load's time went (medians, ms from navigation start)
            "cold_html_ms": stats([x["html_ms"] for x in r["cold"] if x["html_ms"]]),
            "cold_assets_ms": stats([x["assets_ms"] for x in r["cold"] if x["assets_ms"]]),
            "cold_api_start_ms": stats([x["api_start_ms"] for x in r["cold"]
                                        if x["api_start_ms"]]),
            "cold_api_done_ms": stats([x["api_ms"] for x in r["cold"] if x["api_ms"]]),
            "cold_telemetry_start_ms": stats([x["telemetry_start_ms"] for x in r["cold"]
                                              if x["telemetry_start_ms"]]),
            "warm_api_start_ms": stats([x["api_start_ms"] for x in r["warm"]
                                        if x["api_start_ms"]]),
            "warm_api_done_ms": stats([x["api_ms"] for x in r["warm"] if x["api_ms"]]),
            "warm_telemetry_start_ms": stats([x["telemetry_start_ms"] for x in r["warm"]
                                              if x["telemetry_start_ms"]]),
            "warm_telemetry_done_ms": stats([x["telemetry_ms"] for x in r["warm"]
                                             if x["telemetry_ms"]]),
            "charts": r["cold"][0]["charts"] if r["cold"] else None,
            "points": r["cold"][0]["points"] if r["cold"] else None,
            "api_requests": r["cold"][0]["api_requests"] if r["cold"] else None,
            "api_bytes": r["cold"][0]["api_bytes"] if r["cold"] else None,
        }
        if cold_ms and api_ms:
            summ["cold_vs_api"] = round(statistics.median(cold_ms) / statistics.median(api_ms),
                                        2)
            summ["warm_vs_api"] = round(statistics.median(warm_ms) / statistics.median(api_ms),
                                        2)
        if cold_ms and r["static_cold"]:
            summ["cold_vs_static"] = round(
                statistics.median(cold_ms)
                / statistics.median(x["ms"] for x in r["static_cold"]), 1)
            summ["cold_wall_vs_static_wall"] = round(
                statistics.median(x["wall_ms"] for x in r["cold"])
                / statistics.median(x["wall_ms"] for x in r["static_cold"]), 1)
        out[name] = summ
        out[f"{name}_samples"] = {k: [round(x["ms"], 1) if isinstance(x, dict) else round(x, 1)
                                      for x in v] for k, v in r.items()}
    return out


# ---------------------------------------------------------------- 2. live pages
class SseClients:
    """`n` emulated device pages: an SSE stream each (parsed like EventSource + JSON.parse),
    plus the page's periodic REST calls. Runs on its own asyncio loop in a thread."""

    def __init__(self, base: str, cookie: str, devices: list[str], max_life_s: float) -> None:
        self.base = base
        self.cookie = cookie
        self.devices = devices
        self.max_life_s = max_life_s
        self.lock = threading.Lock()
        self.lat: list[tuple[float, float]] = []  # (received wall ms, latency ms)
        self.events = 0
        self.lags = 0
        self.requests = 0
        self.errors: list[str] = []
        self.connected = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop_evt: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, name="sse-clients", daemon=True)
        self.all_connected = threading.Event()

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        if not self.all_connected.wait(timeout):
            raise RuntimeError(f"only {self.connected} of {len(self.devices)} SSE clients "
                               f"connected in {timeout:.0f} s; {self.errors[:3]}")

    def take(self) -> tuple[list[tuple[float, float]], int, int, int]:
        """(latencies, events, lag notices, REST requests) since the last call."""
        with self.lock:
            out = (self.lat, self.events, self.lags, self.requests)
            self.lat, self.events, self.lags, self.requests = [], 0, 0, 0
        return out

    def stop(self) -> None:
        if self.loop is not None and self.stop_evt is not None:
            self.loop.call_soon_threadsafe(self.stop_evt.set)
        self.thread.join(30)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop_evt = asyncio.Event()
        limits = httpx.Limits(max_connections=2 * len(self.devices) + 10,
                              max_keepalive_connections=len(self.devices) + 10)
        async with httpx.AsyncClient(base_url=self.base, cookies={COOKIE: self.cookie},
                                     timeout=httpx.Timeout(30, read=60),
                                     limits=limits) as client:
            tasks = [asyncio.create_task(self._page(client, d)) for d in self.devices]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_evt.wait(), self.max_life_s)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _rest(self, client: httpx.AsyncClient, path: str) -> None:
        try:
            r = await client.get(path, headers={"Accept": "application/json"})
            r.json()
            with self.lock:
                self.requests += 1
        except (httpx.HTTPError, ValueError) as exc:
            self.errors.append(f"{path}: {exc}")

    async def _page(self, client: httpx.AsyncClient, device: str) -> None:
        last_refresh = time.monotonic()
        last_counts = time.monotonic()
        background: set[asyncio.Task[None]] = set()
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        try:
            async with client.stream("GET", "/api/v1/stream", headers=headers,
                                     params={"devices": device, "alarms": "1"}) as r:
                if r.status_code != 200:
                    self.errors.append(f"{device}: HTTP {r.status_code}")
                    return
                with self.lock:
                    self.connected += 1
                    if self.connected == len(self.devices):
                        self.all_connected.set()
                kind = "message"
                data: list[str] = []
                async for line in r.aiter_lines():
                    if line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].lstrip())
                    elif not line:
                        if data:
                            self._event(kind, "\n".join(data))
                        kind, data = "message", []
                        now = time.monotonic()
                        # the page re-reads the device (connectivity) at most every 5 s
                        # while points arrive, and the shell the alarm count every 30 s
                        if now - last_refresh > 5:
                            last_refresh = now
                            t = asyncio.create_task(
                                self._rest(client, f"/api/v1/devices/{device}"))
                            background.add(t)
                            t.add_done_callback(background.discard)
                        if now - last_counts > 30:
                            last_counts = now
                            t = asyncio.create_task(self._rest(client, "/api/v1/alarms/counts"))
                            background.add(t)
                            t.add_done_callback(background.discard)
        except httpx.HTTPError as exc:
            self.errors.append(f"{device}: {type(exc).__name__}: {exc}")
        finally:
            for t in background:
                t.cancel()

    def _event(self, kind: str, data: str) -> None:
        now = time.time() * 1000
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        with self.lock:
            if kind == "points":
                self.events += 1
                seen: set[int] = set()
                for _prop, ts, _value in doc["points"]:
                    if ts not in seen:
                        seen.add(ts)
                        self.lat.append((now, now - ts))
            elif kind == "lag":
                self.lags += 1


class BrowserPages:
    """`n` device pages open in one chromium context, each with its charts drawn."""

    def __init__(self, browser: Any, base: str, cookie: str, devices: list[str]) -> None:
        self.ctx = new_context(browser, base, cookie, probe=True)
        self.pages: list[Any] = []
        self.load_ms: list[float] = []
        for dev in devices:
            page = self.ctx.new_page()
            self.load_ms.append(load(page, f"{base}/#/devices/{dev}", READY_DEVICE)["ms"])
            self.pages.append(page)
        for page in self.pages:
            page.evaluate(TAKE_PROBE)  # forget what arrived while the others loaded

    def take(self) -> tuple[list[tuple[float, float]], int, int, list[str]]:
        lat: list[tuple[float, float]] = []
        events = lags = 0
        visible = []
        for page in self.pages:
            got = page.evaluate(TAKE_PROBE)
            lat += [(float(a), float(b)) for a, b in got["lat"]]
            events += int(got["events"])
            lags += int(got["lags"])
            visible.append(got["visible"])
        return lat, events, lags, visible

    def close(self) -> None:
        self.ctx.close()


class CpuSnap:
    """CPU seconds of the serve process (and its main thread), the others, and the machine."""

    def __init__(self, serve_pid: int, gen_pids: list[int]) -> None:
        self.serve = psutil.Process(serve_pid)
        self.gen = [psutil.Process(p) for p in gen_pids]
        self.me = psutil.Process()
        self.excluded = {serve_pid, *gen_pids}

    def browser_procs(self) -> list[psutil.Process]:
        """chromium and the Playwright driver: our descendants but the platform and the
        load generator."""
        out = []
        for child in self.me.children(recursive=True):
            if child.pid not in self.excluded:
                out.append(child)
        return out

    @staticmethod
    def _cpu(p: psutil.Process) -> float:
        try:
            t = p.cpu_times()
            return float(t.user + t.system)
        except psutil.Error:
            return 0.0

    def take(self) -> dict[str, Any]:
        main = 0.0
        with contextlib.suppress(psutil.Error):
            for th in self.serve.threads():
                if th.id == self.serve.pid:
                    main = th.user_time + th.system_time
        machine = psutil.cpu_times()
        idle = machine.idle + getattr(machine, "iowait", 0.0)
        return {"t": time.monotonic(), "serve": self._cpu(self.serve), "serve_main": main,
                "gen": sum(self._cpu(p) for p in self.gen), "bench": self._cpu(self.me),
                "browser": {p.pid: self._cpu(p) for p in self.browser_procs()},
                "machine_busy": sum(machine) - idle, "machine_all": sum(machine),
                "loadavg": os.getloadavg()[0]}

    @staticmethod
    def delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        span = float(b["t"] - a["t"])

        def share(x: float) -> float:
            return round(100 * x / span, 1)

        browser = sum(v - a["browser"].get(pid, v) for pid, v in b["browser"].items())
        return {
            "span_s": round(span, 2),
            "serve_cpu_pct": share(b["serve"] - a["serve"]),
            "serve_main_thread_pct": share(b["serve_main"] - a["serve_main"]),
            "serve_other_threads_pct": share((b["serve"] - a["serve"])
                                             - (b["serve_main"] - a["serve_main"])),
            "loadgen_cpu_pct": share(b["gen"] - a["gen"]),
            "bench_cpu_pct": share(b["bench"] - a["bench"]),
            "browser_cpu_pct": share(browser),
            "machine_busy_pct": round(100 * (b["machine_busy"] - a["machine_busy"])
                                      / max(1e-9, b["machine_all"] - a["machine_all"]), 1),
            "loadavg_start": round(a["loadavg"], 2),
        }


@dataclass
class LivePlan:
    devices: int
    rate: float
    seconds: float
    rounds: int
    sse_pages: int
    browser_pages: int
    settle_s: float = 4.0
    kinds: list[str] = field(default_factory=lambda: ["none", "sse", "browser"])


def live_cost(plat: Platform, setup: Setup, cookie: str, browser: Any,
              plan: LivePlan) -> dict[str, Any]:
    """Load phases with 0 / `sse_pages` emulated / `browser_pages` real live device pages."""
    creds = [(d, setup.secret) for d in setup.fleet]
    gen = LoadGen(GenConfig(port=plat.mqtt_port, window=8, drain_timeout=20,
                            connect_concurrency=16), creds, procs=1)
    t0 = time.monotonic()
    gen.start()
    connect_s = time.monotonic() - t0
    log(f"live: {len(creds)} devices connected in {connect_s:.1f} s")
    cpu = CpuSnap(plat.proc.pid, gen.pids)
    watched = setup.fleet  # pages show the fleet's first devices (they have the history)
    phases: list[dict[str, Any]] = []
    try:
        for rnd in range(plan.rounds):
            for kind in plan.kinds:
                n = {"none": 0, "sse": plan.sse_pages, "browser": plan.browser_pages}[kind]
                if kind != "none" and n == 0:
                    continue
                phases.append(one_phase(plat, setup, cookie, browser, gen, cpu, plan, rnd,
                                        kind, watched[:n]))
    finally:
        gen.close()
    return {"connect_s": round(connect_s, 1), "phases": phases,
            "summary": live_summary(phases)}


def one_phase(plat: Platform, setup: Setup, cookie: str, browser: Any, gen: LoadGen,
              cpu: CpuSnap, plan: LivePlan, rnd: int, kind: str,
              devices: list[str]) -> dict[str, Any]:
    sse: SseClients | None = None
    pages: BrowserPages | None = None
    open_ms: list[float] = []
    if kind == "sse":
        sse = SseClients(plat.base, cookie, devices, plan.seconds + 120)
        sse.start()
    elif kind == "browser":
        pages = BrowserPages(browser, plat.base, cookie, devices)
        open_ms = pages.load_ms
    try:
        # pages open, nothing published: what they cost at rest
        i0 = cpu.take()
        time.sleep(plan.settle_s)
        idle = CpuSnap.delta(i0, cpu.take())
        if sse is not None:
            sse.take()
        elif pages is not None:
            pages.take()
        a0 = accepted(plat.base, setup.token)
        s0 = cpu.take()
        res = gen.run(plan.seconds, plan.rate)
        s1 = cpu.take()
        lat: list[tuple[float, float]] = []
        events = lags = requests = 0
        visible: list[str] = []
        time.sleep(1.5)  # the last events in flight
        if sse is not None:
            lat, events, lags, requests = sse.take()
            errors = sse.errors[:5]
        elif pages is not None:
            lat, events, lags, visible = pages.take()
            errors = []
        else:
            errors = []
        end = time.monotonic() + 15
        stored = accepted(plat.base, setup.token) - a0
        while stored < res.acked and time.monotonic() < end:
            time.sleep(0.2)
            stored = accepted(plat.base, setup.token) - a0
    finally:
        if sse is not None:
            sse.stop()
        if pages is not None:
            pages.close()
    window = (res.t_go * 1000, res.t_last_pub * 1000 + 5000)
    lat_ms = [v for at, v in lat if window[0] <= at <= window[1]]
    d = CpuSnap.delta(s0, s1)
    row: dict[str, Any] = {
        "round": rnd, "kind": kind, "pages": len(devices), **d,
        "published": res.published, "acked": res.acked, "stored": stored,
        "offered_per_s": round(res.offered_per_s(), 1),
        "events": events, "events_per_s": round(events / max(1e-9, d["span_s"]), 1),
        "lags": lags, "rest_requests": requests,
        "latency_ms": {"n": len(lat_ms), "p50": rnd1(pct(lat_ms, 50)),
                       "p99": rnd1(pct(lat_ms, 99)), "max": rnd1(max(lat_ms, default=None))},
        "errors": errors,
        "idle": {k: idle[k] for k in ("span_s", "serve_cpu_pct", "browser_cpu_pct",
                                       "bench_cpu_pct", "machine_busy_pct")},
    }
    if open_ms:
        row["page_open_ms"] = stats(open_ms)
    if visible:
        row["visibility"] = sorted(set(visible))
    log(f"live round {rnd} {kind:7s} pages {len(devices):3d}: serve {d['serve_cpu_pct']:5.1f} % "
        f"(loop {d['serve_main_thread_pct']:.1f}), browser {d['browser_cpu_pct']:.1f} %, "
        f"machine {d['machine_busy_pct']:.0f} %; {res.published:,} published, "
        f"{stored:,} stored; {events:,} events, latency p50/p99 "
        f"{row['latency_ms']['p50']}/{row['latency_ms']['p99']} ms")
    return row


def live_summary(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Per kind: medians over the rounds, and the ratio to the no-page phases."""
    by: dict[str, list[dict[str, Any]]] = {}
    for p in phases:
        by.setdefault(p["kind"], []).append(p)
    out: dict[str, Any] = {}
    base = by.get("none")
    base_cpu = statistics.median(p["serve_cpu_pct"] for p in base) if base else None
    base_main = statistics.median(p["serve_main_thread_pct"] for p in base) if base else None
    for kind, rows in by.items():
        cpu_pct = statistics.median(p["serve_cpu_pct"] for p in rows)
        main = statistics.median(p["serve_main_thread_pct"] for p in rows)
        lat = [p["latency_ms"] for p in rows if p["latency_ms"]["n"]]
        s: dict[str, Any] = {
            "pages": rows[0]["pages"], "rounds": len(rows),
            "serve_cpu_pct": round(cpu_pct, 1), "serve_main_thread_pct": round(main, 1),
            "browser_cpu_pct": round(statistics.median(p["browser_cpu_pct"] for p in rows), 1),
            "browser_idle_cpu_pct": round(statistics.median(p["idle"]["browser_cpu_pct"]
                                                            for p in rows), 1),
            "serve_idle_cpu_pct": round(statistics.median(p["idle"]["serve_cpu_pct"]
                                                          for p in rows), 1),
            "bench_cpu_pct": round(statistics.median(p["bench_cpu_pct"] for p in rows), 1),
            "machine_busy_pct": round(statistics.median(p["machine_busy_pct"] for p in rows), 1),
            "stored_per_s": round(statistics.median(p["stored"] / p["span_s"] for p in rows), 1),
            "events_per_s": round(statistics.median(p["events_per_s"] for p in rows), 1),
            "latency_p50_ms": rnd1(statistics.median(x["p50"] for x in lat)) if lat else None,
            "latency_p99_ms": rnd1(statistics.median(x["p99"] for x in lat)) if lat else None,
            "lags": sum(p["lags"] for p in rows),
        }
        if base_cpu and kind != "none":
            s["vs_none"] = round(cpu_pct / base_cpu, 2)
            extra = cpu_pct - base_cpu
            s["extra_cpu_pct"] = round(extra, 1)
            s["extra_main_thread_pct"] = round(main - (base_main or 0.0), 1)
            s["extra_pct_per_page"] = round(extra / max(1, s["pages"]), 2)
            if s["events_per_s"]:
                # extra CPU per event delivered, µs (10,000 µs/s per % of a core)
                s["extra_us_per_event"] = round(extra * 10_000 / s["events_per_s"])
        out[kind] = s
    return out


# ---------------------------------------------------------------- report, chart
def report(rec: dict[str, Any]) -> None:
    fr = rec["first_render"]
    print()
    if fr["repeats"]:
        print(f"First render ({fr['repeats']} repeats; ms from navigation start, median / p95):")
    for name in ("overview", "device") if fr["repeats"] else ():
        s = fr[name]
        print(f"  {name:8s} cold {s['cold'].get('median')} / {s['cold'].get('p95')}   "
              f"warm {s['warm'].get('median')} / {s['warm'].get('p95')}   "
              f"api floor {s['api_floor'].get('median')} / {s['api_floor'].get('p95')}   "
              f"httpx {s['httpx_floor'].get('median')} (heaviest request alone "
              f"{s['httpx_one_request'].get('median')})   static page cold "
              f"{s['static_cold'].get('median')} (wall {s['static_cold_wall'].get('median')})   "
              f"cold/api {s.get('cold_vs_api')}x   "
              f"warm/api {s.get('warm_vs_api')}x   ({s['charts']} charts, {s['points']:,} "
              f"points, {s['api_requests']} API requests, {s['api_bytes']:,} bytes)")
        print(f"  {'':8s} cold, medians: shell HTML at {s['cold_html_ms'].get('median')}, "
              f"first API request {s['cold_api_start_ms'].get('median')}, telemetry "
              f"{s['cold_telemetry_start_ms'].get('median')}, static assets done "
              f"{s['cold_assets_ms'].get('median')}, API answers done "
              f"{s['cold_api_done_ms'].get('median')}, drawn {s['cold'].get('median')}")
        print(f"  {'':8s} warm, medians: first API request {s['warm_api_start_ms'].get('median')}"
              f", telemetry {s['warm_telemetry_start_ms'].get('median')} to "
              f"{s['warm_telemetry_done_ms'].get('median')}, API answers done "
              f"{s['warm_api_done_ms'].get('median')}, drawn {s['warm'].get('median')}")
    print()
    live = rec["live"]["summary"]
    if live:
        print(f"Live pages ({rec['config']['rate']:.0f} msg/s offered; CPU in % of one core):")
    for kind, s in live.items():
        print(f"  {kind:7s} {s['pages']:3d} pages: serve {s['serve_cpu_pct']} % (event loop "
              f"{s['serve_main_thread_pct']}), x{s.get('vs_none', 1.0)} of none, "
              f"{s.get('extra_pct_per_page', 0)} %/page, {s.get('extra_us_per_event', '-')} "
              f"us/event; browser {s['browser_cpu_pct']} % (at rest "
              f"{s['browser_idle_cpu_pct']}), machine {s['machine_busy_pct']} %; "
              f"{s['events_per_s']} events/s, latency p50/p99 {s['latency_p50_ms']}/"
              f"{s['latency_p99_ms']} ms, lags {s['lags']}")


def chart(rec: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fr, live = rec["first_render"], rec["live"]["summary"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5),
                                   gridspec_kw={"width_ratios": [1.15, 1]})
    rows = [("cold", "page, cold", "#1e88e5"), ("warm", "page, warm", "#64b5f6"),
            ("api_floor", "API fetches only", "#9e9e9e"),
            ("static_cold", "static file, cold", "#d0d0d0")]
    width = 0.2
    for i, (key, label, color) in enumerate(rows):
        med = [fr[n][key].get("median", 0) for n in ("overview", "device")]
        p95 = [fr[n][key].get("p95", 0) for n in ("overview", "device")]
        xs = [x + (i - 1.5) * width for x in range(2)]
        bars = ax1.bar(xs, med, width, label=label, color=color,
                       yerr=[[0, 0], [p - m for p, m in zip(p95, med, strict=True)]],
                       capsize=3, error_kw={"lw": 0.8})
        for rect, m in zip(bars, med, strict=True):
            ax1.annotate(f"{m:,.0f}", (rect.get_x() + rect.get_width() / 2, m), ha="center",
                         va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
    dev = fr["device"]
    ax1.set_xticks(range(2), ["#/overview", f"#/devices/<id>\n{dev['charts']} charts, "
                              f"{dev['points']:,} points (7 days)"])
    ax1.set_ylabel("ms from navigation start until the charts are drawn\n(bar: median, "
                   "whisker: p95)")
    ax1.set_title(f"first render, {fr['repeats']} repeats", fontsize=10)
    ax1.legend(fontsize=8)
    kinds = [k for k in ("none", "sse", "browser") if k in live]
    labels = {"none": "no pages", "sse": "{n} emulated\npages (httpx SSE)",
              "browser": "{n} chromium\npages"}
    names = [labels[k].format(n=live[k]["pages"]) for k in kinds]
    main = [live[k]["serve_main_thread_pct"] for k in kinds]
    other = [live[k]["serve_cpu_pct"] - live[k]["serve_main_thread_pct"] for k in kinds]
    ax2.bar(names, main, color="#1e88e5", label="serve: event loop (broker, HTTP, SSE)")
    ax2.bar(names, other, bottom=main, color="#90caf9", label="serve: other threads (ingest)")
    for i, k in enumerate(kinds):
        s = live[k]
        text = f"{s['serve_cpu_pct']:.0f} %"
        if k != "none":
            text += f"  ×{s.get('vs_none', 0):.2f}"
        if s["latency_p50_ms"] is not None:
            text += f"\nSSE p50/p99 {s['latency_p50_ms']:.0f}/{s['latency_p99_ms']:.0f} ms"
        ax2.annotate(text, (i, s["serve_cpu_pct"]), ha="center", va="bottom", fontsize=8,
                     xytext=(0, 2), textcoords="offset points")
    top = max(live[k]["serve_cpu_pct"] for k in kinds)
    ax2.set_ylim(0, top * 1.35)
    ax2.set_ylabel("wulian serve CPU, % of one core")
    ax2.set_title(f"live device pages while {rec['config']['rate']:,.0f} msg/s flow "
                  f"({rec['config']['devices']} devices)", fontsize=10)
    ax2.legend(fontsize=8, loc="upper left")
    smoke = " — SMOKE RUN (--quick), not a result" if rec.get("quick") else ""
    fig.suptitle(f"bench/console.py, {rec['at'].replace('T', ' ')[:16]}, commit "
                 f"{rec['commit']}, 2-core machine{smoke}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke: 60 devices, 300 msg/s, 8 s phases, 10 SSE + 2 browser pages, "
                         "3 repeats; recorded with quick=true")
    ap.add_argument("--devices", type=int, default=200, help="load generator devices")
    ap.add_argument("--rate", type=float, default=1000, help="msg/s over all devices")
    ap.add_argument("--seconds", type=float, default=30, help="length of each live phase")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of none/sse/browser phases")
    ap.add_argument("--sse-pages", type=int, default=50)
    ap.add_argument("--browser-pages", type=int, default=3,
                    help="real chromium pages (one costs ~half a core at 5 updates/s here)")
    ap.add_argument("--repeats", type=int, default=10,
                    help="first-render repeats (0: skip that part)")
    ap.add_argument("--render-budget", type=float, default=300,
                    help="stop the first-render repeats after this many seconds")
    ap.add_argument("--days", type=float, default=7, help="history of the shown devices")
    ap.add_argument("--skip-live", action="store_true")
    ap.add_argument("--kinds", default="none,sse,browser",
                    help="live phases of each round, from none,sse,browser")
    ap.add_argument("--chart", action="store_true", help="draw the chart even for --quick")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the data dir")
    ap.add_argument("--replot", action="store_true",
                    help="only redraw the chart from the last full run in the results file")
    a = ap.parse_args()
    if a.replot:
        runs = [json.loads(x) for x in RESULTS.read_text().splitlines() if x.strip()]
        runs = [r for r in runs if r["first_render"]["repeats"] and r["live"]["summary"]]
        if not runs:
            ap.error(f"no run with both parts in {RESULTS}")
        full = [r for r in runs if not r.get("quick") and not r.get("partial")] or runs
        chart(full[-1], CHART)
        log(f"chart of the run at {full[-1]['at']}: {CHART.relative_to(ROOT)}")
        return 0
    if a.quick:
        a.devices, a.rate, a.seconds, a.rounds = min(a.devices, 60), min(a.rate, 300), \
            min(a.seconds, 8), 1
        a.sse_pages, a.browser_pages, a.repeats = min(a.sse_pages, 10), \
            min(a.browser_pages, 2), min(a.repeats, 3)
    kinds = [k for k in a.kinds.split(",") if k]
    if not set(kinds) <= {"none", "sse", "browser"}:
        ap.error("--kinds: a comma-separated list of none, sse, browser")
    partial = a.repeats <= 0 or a.skip_live or set(kinds) != {"none", "sse", "browser"}
    a.sse_pages = min(a.sse_pages, a.devices)
    a.browser_pages = min(a.browser_pages, a.devices)
    started = time.monotonic()
    when = time.strftime("%Y-%m-%dT%H:%M:%S")
    log(f"bench/console.py {when}: load average {os.getloadavg()[0]:.2f}, "
        f"{os.cpu_count()} cores, commit {git_commit()}{' (quick)' if a.quick else ''}")
    work = Path(tempfile.mkdtemp(prefix="wulian-bench-console-"))
    plat: Platform | None = None
    try:
        shown = max(a.sse_pages, a.browser_pages)
        setup = prepare(work, a.devices, shown, a.days)
        log(f"setup: {a.devices + 1} devices, {len(setup.history_devices)} with {a.days:g} days "
            f"of history ({setup.history_s:.1f} s) in {work}")
        plat = start_platform(setup)
        cookie = login(plat.base, setup.password)
        log(f"platform at {plat.base} (pid {plat.proc.pid}), MQTT {plat.mqtt_port}")
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                fr: dict[str, Any] = {"repeats": 0}
                if a.repeats > 0:
                    fr = first_render(browser, plat.base, cookie, setup.featured, a.repeats,
                                      a.render_budget)
                    log(f"first render: {fr['repeats']} repeats done")
                live: dict[str, Any] = {"phases": [], "summary": {}}
                if not a.skip_live:
                    plan = LivePlan(a.devices, a.rate, a.seconds, a.rounds, a.sse_pages,
                                    a.browser_pages, kinds=kinds)
                    live = live_cost(plat, setup, cookie, browser, plan)
            finally:
                browser.close()
        if plat.proc.poll() is not None:
            raise RuntimeError("wulian serve died during the run")
    finally:
        if plat is not None:
            stop_proc(plat.proc)
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    rec: dict[str, Any] = {
        "test": "console", "at": when, "commit": git_commit(), "quick": a.quick,
        "partial": partial,
        "duration_s": round(time.monotonic() - started),
        "machine": {"cpus": os.cpu_count(), "loadavg_end": os.getloadavg()},
        "config": {"devices": a.devices, "rate": a.rate, "seconds": a.seconds,
                   "rounds": a.rounds, "sse_pages": a.sse_pages,
                   "browser_pages": a.browser_pages, "repeats": a.repeats, "days": a.days,
                   "broker": "embedded", "database": "sqlite",
                   "kinds": kinds,
                   "command": " ".join(["uv run python bench/console.py", *sys.argv[1:]])},
        "first_render": fr, "live": live,
    }
    report(rec)
    if not a.no_record:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(RESULTS, "a") as f:
            f.write(json.dumps(rec) + "\n")
        log(f"appended to {RESULTS.relative_to(ROOT)}")
    if (a.chart or not (a.quick or partial)) and live["summary"] and fr["repeats"]:
        chart(rec, CHART)
        log(f"chart: {CHART.relative_to(ROOT)}")
    log(f"done in {rec['duration_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
