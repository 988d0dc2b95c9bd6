#!/usr/bin/env python3
"""bench/screenshots.py - screenshots of the web console's main pages for docs/screenshots/.

Starts the platform as `wulian demo --scenario all` would (embedded broker, SQLite in a
temporary data dir, the twelve industry scenarios' products, devices and default rules),
fills in history so the charts have something to show (a week of one-minute readings for
a few devices, a day of them for all, with the matching per-minute counter samples), runs
the simulated devices live for a while (two in three over MQTT and IPv4, one in three over
HTTP and IPv6 when the machine has ::1: the HTTP API then listens on [::1]), then drives
Debian's chromium with Playwright through the console and saves one PNG per page and
language:

    docs/screenshots/{login,overview,scenarios,scenario,devices,device,map,alarms,products,
                      product}[-zh].png

    uv run python bench/screenshots.py [--out docs/screenshots] [--devices 150]
        [--live-seconds 45] [--langs en,zh] [--pages scenarios,scenario] [--keep-running]

`scenario` is the energy scenario's dashboard (#/scenarios/energy); `--pages` takes only
the pages named (all of them by default).

Nothing is downloaded: the browser is /usr/bin/chromium, the console's assets are the
package's own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import secrets
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from wulian.bootstrap import Core
from wulian.cli._provision import PlannedDevice, plan_scenarios, provision
from wulian.config import Settings
from wulian.domain.account import Role, hash_password
from wulian.domain.message import Inbound, Kind, Protocol
from wulian.metrics import MINUTE_MS, CounterSampler, CounterSamples
from wulian.netutil import pick_port
from wulian.scenarios import all_scenarios
from wulian.scenarios._kit import busy
from wulian.service import Ready, serve
from wulian.sim import Fleet, FleetDevice
from wulian.storage.accounts import SqlAccounts

CHROMIUM = "/usr/bin/chromium"
PAGES = ("login", "overview", "scenarios", "scenario", "devices", "device", "map", "alarms",
         "products", "product")
DASHBOARD = "energy"  # the scenario whose dashboard is shown
FULL_PAGE = ("overview", "scenarios", "scenario", "device", "product")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
USER, PASSWORD = "demo-admin", "screenshot-" + secrets.token_hex(6)
WEEK_DEVICES = 6  # devices with a week of history at one reading a minute
HOUR_MS = 60 * MINUTE_MS
BATCH = 2000


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def backfill(core: Core, planned: list[PlannedDevice], now: int) -> None:
    """Readings from the past through the pipeline (validated, stored, counted as accepted),
    and per-minute counter samples that match them, so the day's traffic chart is real."""
    rng = random.Random(7)
    per_minute: Counter[int] = Counter()
    messages: list[Inbound] = []

    def flush() -> None:
        if messages:
            core.pipeline.handle(messages)
            messages.clear()

    def add(device: PlannedDevice, ts: int) -> None:
        values = device.product.sampler(device.index, ts, rng)
        payload = json.dumps({**values, "ts": ts}).encode()
        messages.append(Inbound(device.id, Kind.TELEMETRY, payload, Protocol.MQTT, ts,
                                f"devices/{device.id}/telemetry"))
        per_minute[ts - ts % MINUTE_MS] += 1
        if len(messages) >= BATCH:
            flush()

    featured = week_devices(planned)
    for device in planned:
        week = device in featured
        for ts in range(now - (7 if week else 1) * 24 * HOUR_MS, now - MINUTE_MS, MINUTE_MS):
            # fewer readings at night (devices that report on change), so the day's
            # traffic has the shape a real one has
            if week or rng.random() < 0.6 + 0.4 * busy(ts, 15.0):
                add(device, ts + rng.randrange(0, 5000))
    flush()
    total = core.store.counters().get("messages_accepted", 0)
    samples = CounterSamples.of(core.store)
    later = 0
    for minute in sorted((m for m in per_minute if m >= now - 25 * HOUR_MS), reverse=True):
        samples.record(minute, {"messages_accepted": total - later})
        later += per_minute[minute]


def week_devices(planned: list[PlannedDevice]) -> list[PlannedDevice]:
    """A few devices of different products, the ones whose pages are shown."""
    chosen: list[PlannedDevice] = []
    seen: set[str] = set()
    for device in planned:
        if device.product.id not in seen:
            chosen.append(device)
            seen.add(device.product.id)
        if len(chosen) == WEEK_DEVICES:
            break
    return chosen


def http_reporters(base: str, devices: list[FleetDevice], rate: float,
                   stop: threading.Event) -> None:
    """Devices that report over HTTP (device ingest, Basic auth) instead of MQTT."""
    rng = random.Random(11)
    period = 1.0 / rate
    due = {d.id: time.monotonic() + rng.random() * period for d in devices}
    with httpx.Client(base_url=base, timeout=10) as http:
        while not stop.is_set():
            now = time.monotonic()
            for device in devices:
                if due[device.id] > now:
                    continue
                due[device.id] = now + period
                values = device.product.sample(device.index, int(time.time() * 1000), rng,
                                               bad_rate=0.02)
                with contextlib.suppress(httpx.HTTPError):  # the platform is stopping
                    http.post(f"/api/v1/devices/{device.id}/telemetry", json=values,
                              auth=(device.id, device.secret))
            stop.wait(0.05)


def import_rules(http: httpx.Client) -> int:
    made = 0
    for scenario in all_scenarios():
        for rule in scenario.default_rules:
            answer = http.post("/api/v1/rules", json=rule)
            made += answer.status_code in (200, 201)
    return made


def capture(base: str, out: Path, langs: list[str], device_id: str, product_id: str,
            only: set[str]) -> None:
    from playwright.sync_api import sync_playwright

    routes = {"overview": "#/overview", "scenarios": "#/scenarios",
              "scenario": f"#/scenarios/{DASHBOARD}", "devices": "#/devices",
              "device": f"#/devices/{device_id}", "map": "#/map", "alarms": "#/alarms",
              "products": "#/products", "product": f"#/products/{product_id}"}
    pages = [(name, routes[name]) for name in PAGES if name in routes and name in only]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for lang in langs:
            suffix = "" if lang == "en" else f"-{lang}"
            ctx = browser.new_context(viewport={"width": 1440, "height": 900},
                                      locale="zh-CN" if lang == "zh" else "en-US")
            page = ctx.new_page()
            page.goto(f"{base}/#/login")
            page.wait_for_selector("[data-testid=login-form]")
            if "login" in only:
                page.screenshot(path=out / f"login{suffix}.png")
            page.fill("[data-testid=username]", USER)
            page.fill("[data-testid=password]", PASSWORD)
            page.click("[data-testid=login-submit]")
            page.wait_for_selector("[data-testid=kpi-devices]")
            for name, hash_ in pages:
                page.goto(f"{base}/{hash_}")
                page.wait_for_selector(".view > :not(.loading)")
                if name == "scenario":  # every panel's series loaded
                    page.wait_for_function("() => [...document.querySelectorAll("
                                           "'section[data-product]')].every("
                                           "p => p.dataset.series === 'loaded')")
                page.wait_for_timeout(3000)  # charts, map outlines, the first live points
                page.screenshot(path=out / f"{name}{suffix}.png", full_page=name in FULL_PAGE)
                print(f"  {out / f'{name}{suffix}.png'}")
            ctx.close()
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--devices", type=int, default=150)
    parser.add_argument("--live-seconds", type=float, default=45.0)
    parser.add_argument("--rate", type=float, default=1 / 60, help="readings/s per device")
    parser.add_argument("--langs", default="en,zh")
    parser.add_argument("--pages", default=",".join(PAGES),
                        help=f"the pages to take, of: {', '.join(PAGES)}")
    parser.add_argument("--keep-running", action="store_true",
                        help="after the screenshots, serve until Ctrl-C (to look around)")
    args = parser.parse_args()
    only = {x for x in args.pages.split(",") if x}
    if only - set(PAGES):
        parser.error(f"unknown pages: {', '.join(sorted(only - set(PAGES)))}")
    args.out.mkdir(parents=True, exist_ok=True)
    data = Path(tempfile.mkdtemp(prefix="wulian-screens-"))
    ipv6 = has_ipv6_loopback()
    # asyncio listens IPv6-only on an IPv6 address, so IPv6 devices get the HTTP API there
    http_host = "::1" if ipv6 else "127.0.0.1"
    settings = Settings(data_dir=data, http_host=http_host, http_port=pick_port(0, http_host),
                        mqtt_port=pick_port(0, "127.0.0.1"),
                        admin_token=secrets.token_urlsafe(24), lang="en")
    stop = threading.Event()
    ready_box: list[Ready] = []
    up = threading.Event()

    def on_ready(ready: Ready) -> None:
        ready_box.append(ready)
        up.set()

    server = threading.Thread(target=serve, args=(settings,),
                              kwargs={"on_ready": on_ready, "stop": stop}, daemon=True)
    server.start()
    if not up.wait(60):
        print("the platform did not start", file=sys.stderr)
        return 1
    ready = ready_box[0]
    core = ready.core
    base = ready.http_url
    print(f"platform at {base} (data in {data})")
    fleet_stop = threading.Event()
    try:
        SqlAccounts.for_store(core.store).add_user(USER, hash_password(PASSWORD), Role.ADMIN)
        planned = plan_scenarios(all_scenarios(), args.devices)
        fleet_devices, _ = provision(core, data, planned)
        headers = {"Authorization": f"Bearer {settings.admin_token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            print(f"{len(fleet_devices)} devices, {import_rules(http)} rules")
        started = time.time()
        backfill(core, planned, int(started * 1000))
        print(f"history written in {time.time() - started:.0f} s")
        sampler = CounterSampler(core.store)
        sampler.start()
        over_http = fleet_devices[2::3] if ipv6 else []
        over_mqtt = [d for d in fleet_devices if d not in over_http]
        # the fleet's default bad rate: a few deliberately spoiled values, as in the demo
        fleet = Fleet(over_mqtt, ready.mqtt_host, ready.mqtt_port,
                      rate_hz_per_device=args.rate)
        runners = [threading.Thread(target=fleet.run, kwargs={"stop": fleet_stop},
                                    daemon=True),
                   threading.Thread(target=http_reporters, daemon=True,
                                    args=(base, over_http, args.rate, fleet_stop))]
        for runner in runners:
            runner.start()
        print(f"fleet live for {args.live_seconds:.0f} s")
        time.sleep(args.live_seconds)
        featured = week_devices(planned)[0]
        capture(base, args.out, [x for x in args.langs.split(",") if x], featured.id,
                featured.product.id, only)
        if args.keep_running:
            print(f"console at {base}/  user {USER}  password {PASSWORD}  (Ctrl-C to stop)")
            while True:
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        fleet_stop.set()
        stop.set()
        server.join(60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
