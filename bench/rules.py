#!/usr/bin/env python3
"""bench/rules.py - what 1,000 rules cost the MQTT ingest path: throughput and publish→alarm.

The ingest benchmark of bench/ingest.py (its helpers, imported), run in phases on one
platform instance, without and with rules, in one invocation:

  setup (per backend): a private Mosquitto on a free 127.0.0.1 port configured by
    `write_broker_files`; the bench product and the publishing devices plus `--probes`
    probe devices registered through `core.registry` (scrypt secrets, broker logins by
    DynSecAdmin: `ingest.provision`); silent devices written to the store up to
    `--registered` (10,000); every device tagged `site=sNNN` (100 a site; the publishing
    ones spread over every site). `wulian serve --broker mqtt://... --database URL
    --workers N` runs as a subprocess, through this file's `--serve-child`: that is
    `wulian.service.serve` plus a thread writing `core.rules.stats` to a file twice a
    second, the only way to see the rules service of another process. Load comes from
    bench/loadgen.py: every device logs in with its own credentials, QoS 1, at most 32 in
    flight each.
  phases, `--order` (default A B A): A = no rules; B = `--rules` (1,000) rules created
    one by one through POST /api/v1/rules, of mixed types (`rule_docs`: 40 % threshold
    with hysteresis, 15 % rate, 10 % no_data, 10 % event, 10 % and/or/not, 5 % aggregate
    over a site, 5 % geofence, 5 % anomaly; scoped by product and site tag, a tenth of the
    threshold and rate rules product-wide; 1 threshold rule in 40 fires on the load),
    deleted again before the next A. A phase has two parts:
      throughput: closed loop for `--seconds`, as fast as PUBACKs return, then the
        platform drains (`ingest.run_phase`); msg/s = messages stored / (last point stored
        - first publish), exactly as bench/ingest.py. The rules service is followed too:
        messages it saw, at what rate, and how long after the store it caught up
        (waited for at most `--rules-catchup` s);
      paced: for each `--paced-load` fraction (0.1 and 0.5) of the first A's throughput,
        the same absolute rate in every phase, for `--paced-seconds`, while the probe
        devices publish a temperature across the probe rule's threshold (> 60, hysteresis
        20: 70 raises, 20 clears) with the send time as `ts`, one probe in flight per
        device, every `--probe-interval` s. Per probe: publish → queryable (polls
        `Store.points`) and, with rules, publish → `event: alarm` on GET
        /api/v1/stream?alarms=true (SSE; the change carries the probe's ts), and the
        difference (what the rules add after the store).
    The first phase runs throughput then paced (the paced rates come from it); later
    phases run paced first, so that the probes meet a rules service without a backlog.
  Reported: msg/s per phase and B / mean(A) against the issue's budget (rules may cost at
  most 25 % of ingest throughput); the rules service's own msg/s with and without rules;
  alarm changes; CPU per process; the probes' p50/p99; the time to create the rules; and,
  measured in this process before any platform starts, the rule engine alone (µs a
  message per rule type, `engine_cost`). `--profile DIR` adds a py-spy profile of the
  serve process in B's throughput part (rules thread and feed thread, by activity).
  One JSON line per run goes to bench/results/rules.jsonl (`"quick": true` for smoke
  runs), a chart to docs/bench-rules.png; analysis in docs/benchmarks.md, section Rules.

With an external broker the rules run in `serve`'s process and learn of stored batches
through the committed-batch feed (wulian.alerting.feed) the ingest workers publish.
`--broker auto` (default) checks after the warm-up that the feed reaches the rules; if it
does not, it says so and runs the backend with the embedded broker instead.

Usage:
  uv run python bench/rules.py --backend postgres   # full run, one backend (~17 minutes)
  uv run python bench/rules.py                      # full run, both backends (~35 minutes)
  uv run python bench/rules.py --quick              # smoke run, SQLite (~2.5 minutes)
  uv run python bench/rules.py --engine-only        # the rule engine alone (~30 s)
  uv run python bench/rules.py --replot             # chart of the last recorded run
Everything is bounded in time and count and talks only to 127.0.0.1; every process it
starts is stopped by its PID.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ingest import (  # bench/ is not a package: imported from its own folder
    HOST,
    N_PROPS,
    PLATFORM_USER,
    ROOT,
    CpuWatch,
    Fleet,
    Phase,
    Platform,
    free_port,
    git_commit,
    log,
    make_backend,
    pct,
    postgres_backends,
    provision,
    run_phase,
    start_broker,
    stop_proc,
    warm_up,
)
from loadgen import PRODUCT_ID, GenConfig, LoadGen, value_bodies

RESULTS = ROOT / "bench" / "results" / "rules.jsonl"
CHART = ROOT / "docs" / "bench-rules.png"
BUDGET = 0.75  # the issue: rules may cost at most 25 % of ingest throughput
PROBE_RULE = "bench-probe"
PROBE_HIGH, PROBE_LOW = 70.0, 20.0  # probe rule: temperature > 60, clears at <= 40
DEVICES_PER_SITE = 100
STATS_EVERY_S = 0.5
ENGINE_T0 = 1_700_000_000_000  # data time of the in-process engine measurement
ENGINE_RATE = 5000  # its messages a second of data time (5 a device, like the platform's)

# ====================================================================== the rule set
MIX: tuple[tuple[str, float], ...] = (
    ("threshold", 0.40), ("rate", 0.15), ("no_data", 0.10), ("event", 0.10),
    ("composite", 0.10), ("aggregate", 0.05), ("geofence", 0.05), ("anomaly", 0.05))
PROPS = ("temperature", "humidity", "pm25", "co2", "noise")
# Limits outside what the load sends (loadgen.value_bodies: temperature 15-30, humidity
# 20-80, pm25 3-150, co2 380-1500, noise 30-70) and the probes' 20/70 °C swing: these rules
# are evaluated on every matching point and stay quiet.
QUIET: dict[str, tuple[str, float]] = {
    "temperature": (">", 75.0), "humidity": (">", 95.0), "pm25": (">", 400.0),
    "co2": (">", 3000.0), "noise": (">", 110.0)}
FIRING_EVERY = 40  # one threshold rule in 40 fires on the load: co2 > 1450, clears <= 750
FIRING_AT = FIRING_EVERY // 2  # the 20th, 60th, 100th ... threshold rule


def site(i: int) -> str:
    return f"s{i:03d}"


def mix_counts(n: int) -> dict[str, int]:
    """How many rules of each type make `n` (largest remainder)."""
    raw = {k: n * share for k, share in MIX}
    out = {k: int(v) for k, v in raw.items()}
    short = n - sum(out.values())
    for k in sorted(raw, key=lambda k: raw[k] - out[k], reverse=True)[:short]:
        out[k] += 1
    return out


def condition(kind: str, j: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(condition, other rule fields) of the j-th rule of `kind`."""
    prop = PROPS[j % len(PROPS)]
    op, value = QUIET[prop]
    if kind == "threshold":
        if j % FIRING_EVERY == FIRING_AT:
            return ({"type": "threshold", "property": "co2", "op": ">", "value": 1450},
                    {"hysteresis": 700})
        return ({"type": "threshold", "property": prop, "op": op, "value": value},
                {"hysteresis": round(value * 0.1, 1)})
    if kind == "rate":
        return ({"type": "rate", "property": prop, "window": ("30s", "1m", "5m")[j % 3],
                 "op": ">", "value": value}, {"hysteresis": 1.0} if j % 2 else {})
    if kind == "no_data":  # 1 h: never within a run, but every device in scope is tracked
        if j % 2:
            return {"type": "no_data", "after": "1h", "property": prop}, {}
        return {"type": "no_data", "after": "1h"}, {}
    if kind == "event":  # the load sends no events: these cost their index entry only
        if j % 3 == 0:
            return {"type": "event", "event": "fault",
                    "where": {"code": {"in": [3, 4, 7]}}}, {}
        if j % 3 == 1:
            return {"type": "event", "event": "tamper"}, {
                "clear": {"type": "event", "event": "tamper_cleared"}}
        return {"type": "event", "event": "door_open", "within": "5m"}, {}
    if kind == "composite":
        a, b = PROPS[j % 5], PROPS[(j + 2) % 5]
        ta = {"type": "threshold", "property": a, "op": QUIET[a][0], "value": QUIET[a][1]}
        tb = {"type": "threshold", "property": b, "op": QUIET[b][0], "value": QUIET[b][1]}
        if j % 3 == 0:
            return {"type": "and", "of": [ta, tb]}, {"for": "30s"}
        if j % 3 == 1:
            return {"type": "or", "of": [ta, {"type": "rate", "property": b, "window": "1m",
                                               "op": ">", "value": QUIET[b][1]}]}, {}
        return {"type": "not", "of": {"type": "threshold", "property": a, "op": "<",
                                      "value": QUIET[a][1]}}, {}
    if kind == "aggregate":
        return ({"type": "aggregate", "property": prop, "fn": ("mean", "max", "min")[j % 3],
                 "window": "1m", "op": op, "value": value, "min_devices": 3}, {})
    if kind == "geofence":
        # The bench product reports no position: these read temperature/humidity as
        # lat/lon, so that they are evaluated on every message (and never inside).
        base = {"type": "geofence", "when": "inside", "lat_property": "temperature",
                "lon_property": "humidity"}
        if j % 2:
            return {**base, "circle": {"center": [60.0, 120.0], "radius_m": 5000}}, {}
        return {**base, "polygon": [[60.0, 120.0], [60.0, 121.0], [61.0, 121.5],
                                    [61.5, 120.5], [61.0, 119.5]]}, {}
    if kind == "anomaly":  # uniform load: robust z-scores stay under 1.4
        return ({"type": "anomaly", "property": prop, "window": 288, "warmup": 30,
                 "sensitivity": 6.0, "direction": "both"}, {})
    raise ValueError(kind)


def rule_docs(n: int, sites: int, probe_devices: list[str]) -> list[dict[str, Any]]:
    """`n` rule documents: the probes' threshold rule and n - 1 of the mix over `sites`."""
    docs: list[dict[str, Any]] = [{
        "id": PROBE_RULE, "name": "probe: temperature above 60", "severity": "major",
        "scope": {"product": PRODUCT_ID, "devices": list(probe_devices)},
        "condition": {"type": "threshold", "property": "temperature", "op": ">", "value": 60},
        "hysteresis": 20}]
    k = 0
    for kind, count in mix_counts(n - 1).items():
        for j in range(count):
            cond, extra = condition(kind, j)
            firing = kind == "threshold" and j % FIRING_EVERY == FIRING_AT
            scope: dict[str, Any] = {"product": PRODUCT_ID}
            if not (kind in ("threshold", "rate") and j % 10 == 0 and not firing):
                scope["tags"] = {"site": site(k % sites)}
            docs.append({"id": f"bench-{kind}-{j:04d}", "name": f"bench {kind} {j}",
                         "severity": ("warning", "minor", "major", "critical")[j % 4],
                         "scope": scope, "condition": cond, **extra})
            k += 1
    return docs


# ====================================================================== the engine alone
def engine_cost(n_rules: int, sites: int, seconds: float) -> dict[str, Any]:
    """The rule engine in this process, no I/O: µs a 5-point message, per rule type.

    1,000 devices of `sites` sites send the loadgen's value sets in batches of 2,000
    messages (the ingest batch size), in data time at ENGINE_RATE msg/s (5 a device);
    each row runs the engine with only that type's rules of `rule_docs(n_rules)`, `all`
    with all of them. The run is short in data time, so windows (rate, aggregate,
    anomaly) are far from full: those rows are lower bounds (--profile shows the
    platform's real split).
    """
    from wulian.domain.device import Device
    from wulian.domain.message import SeenRecord, WriteBatch
    from wulian.rules.engine import RuleEngine
    from wulian.rules.model import parse_rule

    devices = {f"bench-{i:04d}": Device(f"bench-{i:04d}", PRODUCT_ID, "bench", "-",
                                        tags={"site": site(i % sites)}) for i in range(1000)}
    ids = list(devices)
    bodies = [json.loads(b"{" + b) for b in value_bodies(0)]
    rnd = random.Random(1)

    def batch(t: float) -> tuple[WriteBatch, float]:
        points: list[tuple[str, str, int, Any]] = []
        seen: dict[str, SeenRecord] = {}
        for k in range(2000):
            dev = ids[k % len(ids)]
            t += 1000 / ENGINE_RATE
            ts = int(t)
            points += [(dev, p, ts, v) for p, v in bodies[rnd.randrange(64)].items()]
            seen[dev] = SeenRecord(ts, "mqtt", None)
        return WriteBatch(points=points, seen=seen, accepted=2000), t

    docs = rule_docs(n_rules, sites, ["probe-0"])
    out: dict[str, Any] = {"rules": n_rules, "sites": sites, "batch": 2000, "types": {}}
    for kind in ("all", *mix_counts(1).keys()):
        chosen = [d for d in docs if kind == "all" or d["id"].startswith(f"bench-{kind}-")]
        t0 = time.perf_counter()
        ts = float(ENGINE_T0)
        engine = RuleEngine([parse_rule(d) for d in chosen], lambda: ENGINE_T0)
        build_s = time.perf_counter() - t0
        b, ts = batch(ts)
        engine.observe(b, devices.get)  # warm: subjects created
        msgs, changes, spent = 0, 0, 0.0
        end = time.monotonic() + seconds
        while time.monotonic() < end or msgs == 0:
            b, ts = batch(ts)
            t0 = time.perf_counter()
            changes += len(engine.observe(b, devices.get))
            spent += time.perf_counter() - t0
            msgs += 2000
        t0 = time.perf_counter()
        engine.tick(int(ts) + 1000)
        tick_ms = 1000 * (time.perf_counter() - t0)
        out["types"][kind] = {"rules": len(chosen), "us_per_msg": 1e6 * spent / msgs,
                              "msgs_per_s": msgs / spent, "alarm_changes": changes,
                              "tick_ms": tick_ms, "build_ms": 1000 * build_s}
    return out


# ====================================================================== the platform child
def serve_child(stats_path: Path) -> None:
    """`wulian serve` (settings from WULIAN_* as the CLI reads them) plus a stats file."""
    import logging

    from wulian.config import Settings
    from wulian.service import Ready, serve

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s serve %(message)s")

    def write(doc: dict[str, Any]) -> None:
        tmp = stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, stats_path)

    def on_ready(ready: Ready) -> None:
        core = ready.core

        def loop() -> None:
            while True:
                write({"t": time.time(), "ready": True, "pid": os.getpid(),
                       "rules": dict(core.rules.stats),
                       "waiting": getattr(core.rules, "_waiting", None),
                       "live": dict(core.live.stats), "pipeline": dict(core.pipeline.stats)})
                time.sleep(STATS_EVERY_S / 2)

        threading.Thread(target=loop, name="bench-stats", daemon=True).start()

    serve(Settings(), on_ready=on_ready)


class ChildStats:
    """The serve child's counters (its stats file), followed over time by a thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.timeline: list[tuple[float, int, int, int]] = []  # t, points, skipped, waiting
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def read(self) -> dict[str, Any]:
        for _ in range(20):
            try:
                doc: dict[str, Any] = json.loads(self.path.read_text())
                return doc
            except (OSError, ValueError):
                time.sleep(0.05)
        return {}

    def rules(self) -> Counter[str]:
        return Counter(self.read().get("rules", {}))

    def start(self) -> None:
        def follow() -> None:
            while not self._stop.wait(STATS_EVERY_S):
                doc = self.read()
                r = doc.get("rules", {})
                self.timeline.append((time.time(), int(r.get("points", 0)),
                                      int(r.get("skipped_points", 0)),
                                      int(doc.get("waiting") or 0)))

        self._thread = threading.Thread(target=follow, name="child-stats", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def wait(self, pred: Any, timeout: float, what: str) -> float:
        """Poll until pred(rules counters) holds; seconds taken (RuntimeError at timeout)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if pred(self.rules()):
                return time.monotonic() - t0
            time.sleep(0.2)
        raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}; "
                           f"rules service: {dict(self.rules())}")


def start_serve(work: Path, env: dict[str, str], timeout: float = 120) -> tuple[Platform,
                                                                                ChildStats]:
    stats = ChildStats(work / "serve-stats.json")
    log_path = work / "serve.log"
    cmd = [sys.executable, os.path.abspath(__file__), "--serve-child", str(stats.path)]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=work)
    plat = Platform(proc, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited ({proc.returncode}): "
                               f"{log_path.read_text()[-3000:]}")
        if stats.path.exists() and stats.read().get("ready"):
            return plat, stats
        time.sleep(0.2)
    stop_proc(proc, signal.SIGINT)
    raise RuntimeError(f"serve not ready in {timeout:.0f}s: {log_path.read_text()[-3000:]}")


# ====================================================================== alarms, probes
class AlarmStream(threading.Thread):
    """GET /api/v1/stream?alarms=true: counts alarm changes, timestamps the probe rule's."""

    def __init__(self, base: str, token: str) -> None:
        super().__init__(name="alarm-stream", daemon=True)
        self.url = f"{base}/api/v1/stream?alarms=true"
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        self.counts: Counter[str] = Counter()
        self.probe: dict[tuple[str, str, int], float] = {}  # (subject, kind, ts) -> ms
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.halt = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        import httpx

        while not self.halt.is_set():
            try:
                with httpx.Client(timeout=httpx.Timeout(10.0, read=60.0)) as client, \
                        client.stream("GET", self.url, headers=self.headers) as resp:
                    resp.raise_for_status()
                    self.connected.set()
                    kind, data = "", []
                    for line in resp.iter_lines():
                        if self.halt.is_set():
                            return
                        if line:
                            if line.startswith("event:"):
                                kind = line[6:].strip()
                            elif line.startswith("data:"):
                                data.append(line[5:].lstrip())
                            continue
                        if kind == "alarm" and data:
                            self._alarm(json.loads("\n".join(data)))
                        elif kind == "lag":
                            self.counts["lag"] += 1
                        kind, data = "", []
            except (httpx.HTTPError, OSError, ValueError) as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                self.counts["reconnects"] += 1
                self.halt.wait(1.0)

    def _alarm(self, doc: dict[str, Any]) -> None:
        now = time.time() * 1000.0
        self.counts[str(doc.get("kind"))] += 1
        if doc.get("rule_id") == PROBE_RULE:
            with self.lock:
                self.probe[(str(doc["subject"]), str(doc["kind"]), int(doc["ts"]))] = now

    def arrived(self, subject: str, kind: str, ts: int) -> float | None:
        with self.lock:
            return self.probe.get((subject, kind, ts))


@dataclass
class ProbeResult:
    device: str
    ts: int
    expect: str | None  # alarm change the message should cause: raised / cleared / None
    pub_ms: float
    stored_ms: float | None = None
    alarm_ms: float | None = None
    next_poll: float = 0.0


@dataclass
class ProbeDevice:
    id: str
    client: Any
    high_next: bool = True
    busy: ProbeResult | None = None
    retired: bool = False
    last_ts: int = 0


class Probes:
    """Probe devices: each logged in with its own secret, one probe in flight at a time."""

    def __init__(self, port: int, creds: list[tuple[str, str]], store: Any,
                 stream: AlarmStream) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.store = store
        self.stream = stream
        self.devices: list[ProbeDevice] = []
        for dev, secret in creds:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=dev)
            c.username_pw_set(dev, secret)
            c.connect(HOST, port, keepalive=60)
            c.loop_start()
            self.devices.append(ProbeDevice(dev, c))
        end = time.monotonic() + 60
        while not all(d.client.is_connected() for d in self.devices):
            if time.monotonic() > end:
                raise RuntimeError("probe devices could not connect")
            time.sleep(0.05)

    def arm(self) -> None:
        """A new rule set starts without state: the next probe of each device raises."""
        for d in self.devices:
            d.high_next = True

    def run(self, stop_sending: threading.Event, expect_alarms: bool, interval: float,
            timeout: float, max_probes: int) -> dict[str, Any]:
        """Probe until `stop_sending` (or `max_probes`), then wait for the outstanding ones.

        A device whose probe timed out is not used again in this phase (its rule state is
        unknown); every phase starts with all of them.
        """
        for d in self.devices:
            d.retired = False
        done: list[ProbeResult] = []
        missing: list[ProbeResult] = []
        next_send = time.monotonic()
        sent = 0
        final_deadline: float | None = None
        while True:
            now = time.monotonic()
            sending = not stop_sending.is_set() and sent < max_probes
            if not sending and final_deadline is None:
                final_deadline = now + timeout
            if sending and now >= next_send:
                idle = [d for d in self.devices if d.busy is None and not d.retired]
                if idle:
                    self._send(random.choice(idle), expect_alarms)
                    sent += 1
                next_send = now + interval * random.uniform(0.5, 1.5)
            busy = [d for d in self.devices if d.busy is not None]
            for d in busy:
                r = d.busy
                assert r is not None
                self._check(r, now)
                if r.stored_ms is not None and (r.expect is None or r.alarm_ms is not None):
                    done.append(r)
                    d.busy = None
                elif time.time() * 1000 - r.pub_ms > timeout * 1000:
                    missing.append(r)  # its state is unknown now: not used again
                    d.busy, d.retired = None, True
            if not sending and (not busy or (final_deadline and now > final_deadline)):
                break
            time.sleep(0.01)
        for d in self.devices:
            if d.busy is not None:
                missing.append(d.busy)
                d.busy, d.retired = None, True
        return summarize_probes(done, missing)

    def _send(self, d: ProbeDevice, expect_alarms: bool) -> None:
        now = time.time()
        ts = max(int(now * 1000), d.last_ts + 1)
        value = PROBE_HIGH if d.high_next else PROBE_LOW
        payload = (b'{"ts":%d,"temperature":%.1f,"humidity":45.0,"pm25":10,"co2":450,'
                   b'"noise":40.0}' % (ts, value))
        expect = ("raised" if d.high_next else "cleared") if expect_alarms else None
        d.busy = ProbeResult(d.id, ts, expect, now * 1000.0)
        d.last_ts = ts
        d.high_next = not d.high_next
        d.client.publish(f"devices/{d.id}/telemetry", payload, qos=1)

    def _check(self, r: ProbeResult, now: float) -> None:
        if r.expect is not None and r.alarm_ms is None:
            r.alarm_ms = self.stream.arrived(r.device, r.expect, r.ts)
        if r.stored_ms is None and now >= r.next_poll:
            rows = self.store.points(r.device, "temperature", since=r.ts, until=r.ts + 1,
                                     limit=1)
            if rows:
                r.stored_ms = time.time() * 1000.0
            else:  # older probes: poll less often (resolution ~2 % of the wait)
                age = time.time() * 1000.0 - r.pub_ms
                r.next_poll = now + max(0.01, min(1.0, age / 50_000))

    def close(self) -> None:
        for d in self.devices:
            with contextlib.suppress(Exception):
                d.client.loop_stop()
                d.client.disconnect()


def dist(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": pct(values, 50), "p99": pct(values, 99),
            "max": max(values, default=None),
            "mean": statistics.fmean(values) if values else None}


def summarize_probes(done: list[ProbeResult], missing: list[ProbeResult]) -> dict[str, Any]:
    stored = [r.stored_ms - r.pub_ms for r in done if r.stored_ms is not None]
    alarm = [r.alarm_ms - r.pub_ms for r in done if r.alarm_ms is not None]
    added = [r.alarm_ms - r.stored_ms for r in done
             if r.alarm_ms is not None and r.stored_ms is not None]
    return {"probes": len(done) + len(missing), "missing": len(missing),
            "missing_alarm": sum(1 for r in missing if r.stored_ms is not None),
            "stored_ms": dist(stored), "alarm_ms": dist(alarm),
            "alarm_after_stored_ms": dist(added)}


# ====================================================================== the fleet
def extend_fleet(url: str, fleet: Fleet, publishers: int, registered: int,
                 sites: int, probes: list[str]) -> dict[str, Any]:
    """Tag the registered devices by site and add silent ones up to `registered`.

    The silent devices never connect: they go straight into the store (no broker login),
    with the hash of a random secret; rules scoped to their site track them (no_data).
    """
    from wulian.domain.clock import now_ms
    from wulian.domain.device import Device, hash_secret
    from wulian.storage import open_store

    t0 = time.monotonic()
    store = open_store(url)
    try:
        ids = [d for d, _ in fleet.creds]
        for i, dev in enumerate(ids):
            tags = {"site": "probe"} if dev in probes else {"site": site(i % sites)}
            store.update_device(dev, tags=tags)
        secret_hash = hash_secret(secrets.token_urlsafe(16))
        silent = max(0, registered - publishers - len(probes))
        for i in range(silent):
            store.add_device(Device(
                id=f"silent-{i:05d}", product=PRODUCT_ID, name=f"silent {i}",
                secret_hash=secret_hash, tags={"site": site((publishers + i) % sites)},
                created_ms=now_ms()))
        return {"tagged": len(ids), "silent": silent, "seconds": time.monotonic() - t0,
                "devices": store.count_devices()}
    finally:
        store.close()


# ====================================================================== rules on / off
def api_load_rules(base: str, token: str, docs: list[dict[str, Any]],
                   timeout: float) -> dict[str, Any]:
    """POST every rule document to /api/v1/rules, one by one, as a user would."""
    import httpx

    t0 = time.monotonic()
    lat: list[float] = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                      timeout=60.0) as client:
        for doc in docs:
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"creating {len(docs)} rules took more than {timeout:.0f}s "
                                   f"({len(lat)} done)")
            t1 = time.monotonic()
            resp = client.post("/api/v1/rules", json=doc)
            if resp.status_code != 201:
                raise RuntimeError(f"POST /api/v1/rules {doc['id']}: {resp.status_code} "
                                   f"{resp.text[:300]}")
            lat.append(1000 * (time.monotonic() - t1))
    return {"rules": len(docs), "seconds": time.monotonic() - t0,
            "first_10_ms": statistics.fmean(lat[:10]), "last_10_ms": statistics.fmean(lat[-10:])}


def store_delete_rules(url: str, ids: list[str]) -> float:
    """Delete the rules through the store (the service notices within a second)."""
    from wulian.storage import open_store
    from wulian.storage.rules import SqlRules

    t0 = time.monotonic()
    store = open_store(url)
    try:
        rules = SqlRules(getattr(store, "engine"))  # noqa: B009 - not on the Store port
        for rule_id in ids:
            rules.delete_rule(rule_id, by="bench")
    finally:
        store.close()
    return time.monotonic() - t0


# ====================================================================== one backend
@dataclass
class Run:
    kind: str
    mode: str  # mosquitto | embedded
    work: Path
    store: Any = None
    plat: Platform | None = None
    stats: ChildStats | None = None
    broker: subprocess.Popen[bytes] | None = None
    gen: LoadGen | None = None
    stream: AlarmStream | None = None
    probes: Probes | None = None
    drop: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


class FeedMissing(RuntimeError):
    pass


def setup(a: argparse.Namespace, run: Run, fleet: Fleet) -> None:
    """Database, broker, devices, `serve`, warm-up, alarm stream, probes, load generator."""
    from wulian.access.mqtt_ingest import PLATFORM_SECRET
    from wulian.config import Settings
    from wulian.storage import open_store

    kind, mode, work = run.kind, run.mode, run.work
    (work / "data").mkdir()
    backend = make_backend(kind, work, a.pg_admin)
    run.drop = backend.drop
    http_port = free_port()
    token = secrets.token_urlsafe(24)
    env = {**os.environ, "WULIAN_DATA_DIR": str(work / "data"), "WULIAN_DATABASE": backend.url,
           "WULIAN_HTTP_HOST": HOST, "WULIAN_HTTP_PORT": str(http_port),
           "WULIAN_ADMIN_TOKEN": token, "WULIAN_INGEST_WORKERS": str(a.workers)}
    if mode == "mosquitto":
        password = fleet.password
        run.broker, mport, _ = start_broker(work, password, fleet.dynsec)
        broker_url = f"mqtt://{PLATFORM_USER}:{password}@{HOST}:{mport}"
        env["WULIAN_BROKER"] = broker_url
    else:
        mport, broker_url = free_port(), "embedded"
        env.update(WULIAN_BROKER="embedded", WULIAN_MQTT_HOST=HOST, WULIAN_MQTT_PORT=str(mport))
        (work / "broker").mkdir()
        # ingest.provision keeps a copy of Mosquitto's file; the embedded broker has none
        (work / "broker" / "dynamic-security.json").write_text("{}")
    settings = Settings(data_dir=work / "data", database=backend.url, broker=broker_url,
                        ingest_workers=a.workers, http_port=http_port, admin_token=token)
    if mode == "embedded":
        password, _ = settings.ensure_secret(PLATFORM_SECRET)
    t = time.monotonic()
    provision(settings, a.devices + a.probes, fleet, work / "broker")
    probe_ids = [d for d, _ in fleet.creds[a.devices:]]
    log(f"{kind}/{mode}: registered {len(fleet.creds)} devices in {time.monotonic() - t:.1f}s")
    ext = extend_fleet(backend.url, fleet, a.devices, a.registered, a.sites, probe_ids)
    run.extra["fleet"] = ext
    log(f"{kind}/{mode}: tagged {ext['tagged']}, added {ext['silent']} silent devices in "
        f"{ext['seconds']:.1f}s: {ext['devices']} registered")
    run.plat, run.stats = start_serve(work, env)
    run.stats.start()
    base = f"http://{HOST}:{http_port}"
    run.extra.update(base=base, token=token, url=backend.url, port=mport, probe_ids=probe_ids,
                     password=password)
    run.store = open_store(backend.url)
    pub = [d for d, _ in fleet.creds[: a.devices]]
    before = run.stats.rules()["points"]
    warm_up(mport, password, run.store, [d for d, _ in fleet.creds], timeout=120)
    try:
        run.stats.wait(lambda r: r["points"] - before >= len(fleet.creds) * N_PROPS, 15,
                       "the warm-up to reach the rules service")
    except RuntimeError as exc:
        raise FeedMissing(str(exc)) from None
    how = f"{a.workers} ingest workers" if mode == "mosquitto" else "ingest in serve"
    log(f"{kind}/{mode}: platform up ({how}), warm-up stored and seen by the rules service")
    run.stream = AlarmStream(base, token)
    run.stream.start()
    if not run.stream.connected.wait(15):
        raise RuntimeError(f"alarm stream did not connect: {run.stream.error}")
    run.probes = Probes(mport, fleet.creds[a.devices:], run.store, run.stream)
    cfg = GenConfig(port=mport, window=a.window, refill=1, drain_timeout=60,
                    connect_timeout=180 if mode == "embedded" else 60)
    run.gen = LoadGen(cfg, fleet.creds[: a.devices], procs=a.gen_procs)
    t = time.monotonic()
    run.gen.start()
    log(f"{kind}/{mode}: {len(pub)} devices connected with their own logins in "
        f"{time.monotonic() - t:.1f}s")


def teardown(run: Run, keep: bool) -> None:
    if run.probes is not None:
        run.probes.close()
    if run.gen is not None:
        run.gen.close()
    if run.stream is not None:
        run.stream.halt.set()
    if run.stats is not None:
        run.stats.stop()
    if run.store is not None:
        run.store.close()
    if run.plat is not None:
        procs = run.plat.processes()
        stop_proc(run.plat.proc, signal.SIGINT, timeout=30)
        for p in procs.values():  # any worker serve left behind, by its PID
            with contextlib.suppress(Exception):
                if p.is_running():
                    p.kill()
    stop_proc(run.broker)
    if run.drop is not None:
        try:
            run.drop()
        except Exception as exc:
            log(f"could not drop the bench database: {exc}")
    if keep:
        log(f"kept {run.work}")
    else:
        shutil.rmtree(run.work, ignore_errors=True)


def cpu_watch(run: Run) -> CpuWatch:
    import psutil

    cpu = CpuWatch()
    if run.broker is not None:
        cpu.add("mosquitto", psutil.Process(run.broker.pid))
    assert run.plat is not None and run.gen is not None
    for label, proc in run.plat.processes().items():
        cpu.add(label, proc)
    for i, pid in enumerate(run.gen.pids):
        cpu.add(f"loadgen#{i}", psutil.Process(pid))
    cpu.add("bench", psutil.Process())
    if run.kind == "postgres":
        dbname = str(run.extra["url"]).rsplit("/", 1)[-1]
        for i, proc in enumerate(postgres_backends(dbname)):
            cpu.add(f"postgresql#{i}", proc)
    return cpu


def rules_catch_up(stats: ChildStats, store: Any, base: Counter[str], timeout: float,
                   idle_s: float = 60) -> tuple[float, Counter[str], bool]:
    """Wait until the rules service has seen (evaluated or skipped) every point stored so
    far, at most `timeout` s or `idle_s` without progress; (wall time of its last progress,
    its counters since `base`, caught up)."""
    end = time.monotonic() + timeout
    last, last_change = -1, time.time()
    while True:
        now_c = stats.rules()
        seen = now_c["points"] + now_c["skipped_points"]
        if seen != last:
            last, last_change = seen, time.time()
        caught = seen >= store.counters().get("points_stored", 0)
        if caught or time.time() - last_change > idle_s or time.monotonic() > end:
            delta = Counter({k: now_c.get(k, 0) - base.get(k, 0) for k in now_c})
            return last_change, delta, caught
        time.sleep(0.2)


def throughput_phase(a: argparse.Namespace, run: Run, label: str, n_rules: int,
                     ) -> dict[str, Any]:
    """Closed loop for `--seconds`, the platform's drain, then the rules service's."""
    assert run.gen is not None and run.stats is not None and run.plat is not None
    stats = run.stats
    cpu = cpu_watch(run)
    base = stats.rules()
    alarms0 = Counter(run.stream.counts) if run.stream else Counter()
    prof = start_profile(run.plat, Path(a.profile), label) if a.profile and n_rules else None
    log(f"{label}: throughput, {n_rules} rules, {a.seconds:.0f}s closed loop")
    ph: Phase = run_phase(run.gen, a.seconds, 0.0, run.store, 0.5, cpu,
                          drain_timeout=a.drain_timeout)
    g = ph.gen
    msgs = ph.stored_points / N_PROPS
    window = ph.t_last_stored - g.t_first_pub
    rate = msgs / window if window > 0 else 0.0
    t_rules, delta, caught = rules_catch_up(stats, run.store, base, a.rules_catchup)
    profile = stop_profile(prof) if prof is not None else None
    rules_window = max(t_rules, ph.t_last_stored) - g.t_first_pub
    evaluated = delta["points"] / N_PROPS
    alarms = Counter(run.stream.counts) - alarms0 if run.stream else Counter()
    tl = [(round(t - g.t_first_pub, 2), round(v / N_PROPS)) for t, v in ph.timeline]
    rtl = [(round(t - g.t_first_pub, 2), max(0, round((p - base["points"]) / N_PROPS)))
           for t, p, _s, _w in stats.timeline
           if g.t_first_pub <= t <= max(t_rules, ph.t_last_stored) + 1]
    out: dict[str, Any] = {
        "phase": label, "rules": n_rules, "msgs_per_s": rate, "stored_msgs": msgs,
        "window_s": window, "offered_per_s": g.offered_per_s(), "acked": g.acked,
        "drained": ph.stored_points >= g.acked * N_PROPS,
        "drain_s": ph.t_last_stored - g.t_last_pub,
        "stored_per_s_while_publishing": max(
            (v for t, v in ph.timeline if t <= g.t_last_pub), default=0) / N_PROPS
        / max(1e-9, g.t_last_pub - g.t_first_pub),
        "rules_service": {
            "evaluated_msgs": evaluated, "skipped_points": delta["skipped_points"],
            "skipped_batches": delta["skipped_batches"], "batches": delta["batches"],
            "caught_up": caught, "msgs_per_s": evaluated / rules_window if rules_window > 0
            else 0.0, "lag_after_store_s": max(0.0, t_rules - ph.t_last_stored),
            "behind_msgs_at_cutoff": 0 if caught else max(0.0, msgs - evaluated),
            "alarm_changes": {k: v for k, v in delta.items() if k.startswith("alarms.")},
            "errors": delta["errors"], "storage_errors": delta["storage_errors"]},
        "alarm_stream": dict(alarms), "cpu_pct": ph.cpu, "peak_rss_mb": ph.rss_mb,
        "timeline": tl, "rules_timeline": rtl,
    }
    if profile is not None:
        out["profile"] = profile
    rs = out["rules_service"]
    log(f"{label}: offered {g.offered_per_s():,.0f} msg/s, stored {msgs:,.0f} in {window:.1f}s "
        f"= {rate:,.0f} msg/s; rules service evaluated {evaluated:,.0f} msgs "
        f"({rs['msgs_per_s']:,.0f} msg/s), skipped {rs['skipped_points']:,} points, "
        + (f"caught up {rs['lag_after_store_s']:.1f}s after the store" if caught else
           f"NOT caught up {rs['lag_after_store_s']:.0f}s after the store (bound "
           f"--rules-catchup): {rs['behind_msgs_at_cutoff']:,.0f} msgs behind")
        + f"; alarm changes {rs['alarm_changes']}")
    return out


def paced_phase(a: argparse.Namespace, run: Run, label: str, load: float, rate: float,
                expect_alarms: bool) -> dict[str, Any]:
    """`rate` msg/s for `--paced-seconds` with the probes; then the rules catch up."""
    assert run.gen is not None and run.probes is not None and run.stats is not None
    log(f"{label}: paced {rate:,.0f} msg/s ({load:.2f} of A1) for {a.paced_seconds:.0f}s "
        f"with probes")
    stop = threading.Event()
    result: dict[str, Any] = {}

    def probe() -> None:
        assert run.probes is not None
        result.update(run.probes.run(stop, expect_alarms, a.probe_interval, a.probe_timeout,
                                     a.max_probes))

    th = threading.Thread(target=probe, name="probes", daemon=True)
    base = run.stats.rules()
    th.start()
    try:
        ph = run_phase(run.gen, a.paced_seconds, rate, run.store, 0.5, None,
                       drain_timeout=a.drain_timeout)
    finally:
        stop.set()
        th.join(a.probe_timeout + 30)
    t_rules, delta, caught = rules_catch_up(run.stats, run.store, base, a.rules_catchup)
    out = {"load": load, "target_per_s": rate, "offered_per_s": ph.gen.offered_per_s(),
           "acked": ph.gen.acked, "stored_msgs": ph.stored_points / N_PROPS,
           "rules_caught_up": caught,
           "rules_lag_after_store_s": max(0.0, t_rules - ph.t_last_stored),
           "skipped_points": delta["skipped_points"], **result}
    log(f"{label}: probes {out.get('probes')} (missing {out.get('missing')}): publish→stored "
        f"p50/p99 {fmt(out['stored_ms']['p50'])}/{fmt(out['stored_ms']['p99'])} ms"
        + (f", publish→alarm p50/p99 {fmt(out['alarm_ms']['p50'])}/"
           f"{fmt(out['alarm_ms']['p99'])} ms" if expect_alarms else "")
        + ("" if caught else "; the rules service had NOT caught up"))
    return out


def run_backend(a: argparse.Namespace, kind: str, mode: str, fleet: Fleet,
                docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Set up one backend, run the phases of `--order` on it, tear it down.

    The first phase runs its throughput part first (the paced rates are fractions of its
    result); every later phase runs its paced parts first, so that they meet a rules
    service without a backlog, then its throughput part.
    """
    run = Run(kind, mode, Path(tempfile.mkdtemp(prefix=f"wulian-bench-rules-{kind}-")))
    phases: list[dict[str, Any]] = []
    rules_on = False
    a1: float | None = None
    out: dict[str, Any] = {"backend": kind, "mode": mode, "phases": phases}
    try:
        setup(a, run, fleet)
        out["fleet"] = run.extra["fleet"]
        assert run.stats is not None and run.probes is not None
        for i, phase in enumerate(a.order):
            label = f"{phase}{sum(1 for p in a.order[:i + 1] if p == phase)}"
            if phase == "B" and not rules_on:
                log(f"{label}: creating {len(docs)} rules through POST /api/v1/rules")
                made = api_load_rules(run.extra["base"], run.extra["token"], docs,
                                      a.rules_timeout)
                made["service_sync_s"] = run.stats.wait(
                    lambda r: r["rules"] == len(docs), a.rules_timeout, "the rule set")
                log(f"{label}: {made['rules']} rules created in {made['seconds']:.1f}s "
                    f"(first requests {made['first_10_ms']:.0f} ms, last "
                    f"{made['last_10_ms']:.0f} ms); the service had them "
                    f"{made['service_sync_s']:.1f}s later")
                out.setdefault("rules_created", []).append(made)
                run.probes.arm()
                rules_on = True
            elif phase == "A" and rules_on:
                took = store_delete_rules(run.extra["url"], [d["id"] for d in docs])
                sync = run.stats.wait(lambda r: r["rules"] == 0, a.rules_timeout,
                                      "the rules to go")
                # what the rules still had queued is now judged by no rule: quick
                _t, _d, caught = rules_catch_up(run.stats, run.store, Counter(),
                                                a.rules_timeout)
                log(f"{label}: {len(docs)} rules deleted in {took:.1f}s (service: +{sync:.1f}s)"
                    f"; rules backlog {'gone' if caught else 'STILL THERE'}")
                rules_on = False
            n_rules = len(docs) if rules_on else 0
            paced: list[dict[str, Any]] = []
            if a1 is None:
                tp = throughput_phase(a, run, label, n_rules)
                a1 = tp["msgs_per_s"]
            else:
                tp = {}
            for load in a.paced_load if a.paced_seconds > 0 and a1 else ():
                paced.append(paced_phase(a, run, label, load, load * a1, rules_on))
            if not tp:
                tp = throughput_phase(a, run, label, n_rules)
            tp["paced"] = paced
            phases.append(tp)
        out["alarm_stream"] = dict(run.stream.counts) if run.stream else {}
        out["ratio"] = ratios(phases)
        return out
    finally:
        teardown(run, a.keep)


# ====================================================================== profile
PROFILE_BUCKETS: tuple[tuple[str, str], ...] = (
    ("Aggregate.measure", "aggregate: mean/min/max over every sample of the window"),
    ("GroupWindow.", "aggregate: window upkeep"),
    ("Scope.matches", "scope: rules of (product, property) scanned per point"),
    ("RuleEngine.observe.<locals>.<listcomp>", "scope: rules of (product, property) "
                                                "scanned per point"),
    ("RobustHistory", "anomaly: robust z-score"),
    ("Anomaly.", "anomaly: robust z-score"),
    ("Window.", "rate: window upkeep"),
    ("RateOfChange", "rate: window upkeep"),
    ("Geofence", "geofence"),
    ("in_polygon", "geofence"),
    ("haversine", "geofence"),
    ("SqlRules.", "alarm writes (database)"),
    ("RuleEngine.tick", "tick: timers of every subject"),
    ("AlarmBook", "alarm bookkeeping"),
    ("DeviceDirectory", "device directory"),
    ("RuleEngine._decide", "decide (condition evaluation)"),
    ("Composite.", "decide (condition evaluation)"),
    ("Threshold.", "decide (condition evaluation)"),
    ("RuleEngine._point", "per-point state upkeep"),
    ("RuleEngine.observe", "observe loop"),
    ("RulesService._run", "waiting for batches"),
    ("decode_batch", "feed: msgpack decode of a batch"),
    ("RulesService.submit", "feed: waiting for room in the rules queue"),
    ("Client._loop", "paho: network loop / idle"),
)


def start_profile(plat: Platform, out_dir: Path, label: str) -> tuple[Any, Path] | None:
    """py-spy record (raw, idle included, per thread) of the serve process until stopped."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        log("--profile: py-spy not found; no profile")
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / f"serve-{label}-{time.strftime('%H%M%S')}.folded"
    proc = subprocess.Popen([exe, "record", "--pid", str(plat.proc.pid), "--rate", "100",
                             "--format", "raw", "--idle", "--threads", "--nonblocking",
                             "-o", str(dest)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    return proc, dest


def stop_profile(prof: tuple[Any, Path] | None) -> dict[str, Any] | None:
    """Stop py-spy (it writes on SIGINT); share of wall time per bucket of the rules thread
    and the feed's network thread."""
    if prof is None:
        return None
    proc, dest = prof
    stop_proc(proc, signal.SIGINT, timeout=30)
    if not dest.exists():
        return None
    threads: dict[str, Counter[str]] = {}
    for line in dest.read_text().splitlines():
        stack, _, n_s = line.rpartition(" ")
        if not stack or not n_s.isdigit():
            continue
        frames = stack.split(";")
        name = frames[0].split(": ", 1)[-1]
        if "wulian-rules" not in name and "wulian-feed" not in name:
            continue
        bucket = "other"
        for frame in reversed(frames[1:]):
            hit = next((b for key, b in PROFILE_BUCKETS if key in frame), None)
            if hit:
                bucket = hit
                break
        threads.setdefault("rules thread" if "wulian-rules" in name else "feed thread",
                           Counter())[bucket] += int(n_s)
    out: dict[str, Any] = {"file": str(dest)}
    for name, per in threads.items():
        total = sum(per.values())
        out[name] = {b: round(100 * c / total, 1) for b, c in per.most_common()
                     if 100 * c / total >= 0.5}
        log(f"profile, {name} (share of wall time): " + "; ".join(
            f"{b} {v}%" for b, v in out[name].items()))
    return out


def ratios(phases: list[dict[str, Any]]) -> dict[str, Any]:
    a = [p["msgs_per_s"] for p in phases if p["rules"] == 0]
    b = [p["msgs_per_s"] for p in phases if p["rules"] > 0]
    ra = [p["rules_service"]["msgs_per_s"] for p in phases if p["rules"] == 0]
    rb = [p["rules_service"]["msgs_per_s"] for p in phases if p["rules"] > 0]
    if not a or not b:
        return {}
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    out: dict[str, Any] = {
        "a_msgs_per_s": ma, "b_msgs_per_s": mb, "b_over_a": mb / ma if ma else None,
        "a_spread": (max(a) - min(a)) / ma if ma and len(a) > 1 else None,
        "rules_inclusive_b_over_a": statistics.fmean(rb) / statistics.fmean(ra)
        if ra and rb and statistics.fmean(ra) else None,
        "budget": BUDGET,
    }
    out["within_budget"] = bool(out["b_over_a"] is not None and out["b_over_a"] >= BUDGET)
    return out


# ====================================================================== report
def fmt(v: float | None, prec: int = 0) -> str:
    return "—" if v is None else f"{v:,.{prec}f}"


def report(rec: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    quick = " — QUICK SMOKE RUN" if rec.get("quick") else ""
    eng = rec.get("engine")
    if eng:
        t = Table(title=f"rule engine alone, in-process: {eng['rules']} rules, 1,000 devices, "
                        f"batches of {eng['batch']}{quick}")
        for col in ("rules", "count", "µs / message", "msg/s (one core)", "tick ms"):
            t.add_column(col, justify="left" if col == "rules" else "right")
        for kind, r in eng["types"].items():
            t.add_row(kind, str(r["rules"]), fmt(r["us_per_msg"], 1), fmt(r["msgs_per_s"]),
                      fmt(r["tick_ms"], 1))
        console.print(t)
    for b in rec["backends"]:
        t = Table(title=f"{b['backend']}, {b['mode']} broker: throughput{quick}")
        for col in ("phase", "rules", "msg/s stored", "rules service msg/s", "rules lag s",
                    "skipped pts", "alarm changes", "CPU % of one core"):
            t.add_column(col, justify="left" if col in ("phase", "CPU % of one core")
                         else "right")
        for p in b["phases"]:
            rs = p["rules_service"]
            lag = fmt(rs["lag_after_store_s"], 1) + ("" if rs["caught_up"] else " (cut)")
            t.add_row(p["phase"], str(p["rules"]), fmt(p["msgs_per_s"]), fmt(rs["msgs_per_s"]),
                      lag, fmt(rs["skipped_points"]),
                      ", ".join(f"{k[7:]} {v}" for k, v in rs["alarm_changes"].items() if v)
                      or "0", ", ".join(f"{k} {v:.0f}" for k, v in p["cpu_pct"].items()))
        console.print(t)
        t = Table(title=f"{b['backend']}, {b['mode']} broker: probes in the paced parts, ms "
                        f"from publish{quick}")
        for col in ("phase", "rate msg/s", "probes (missing)", "→ stored p50 / p99",
                    "→ alarm p50 / p99", "alarm − stored p50 / p99", "rules caught up"):
            t.add_column(col, justify="left" if col == "phase" else "right")
        for p in b["phases"]:
            for pc in p.get("paced", []):
                sm, am, dm = (pc[k] for k in ("stored_ms", "alarm_ms", "alarm_after_stored_ms"))
                t.add_row(f"{p['phase']} @ {pc['load']:.2f}", fmt(pc["offered_per_s"]),
                          f"{pc['probes']} ({pc['missing']})",
                          f"{fmt(sm['p50'])} / {fmt(sm['p99'])}",
                          f"{fmt(am['p50'])} / {fmt(am['p99'])}",
                          f"{fmt(dm['p50'])} / {fmt(dm['p99'])}",
                          "yes" if pc["rules_caught_up"] else
                          f"no ({pc['rules_lag_after_store_s']:.0f}s)")
        console.print(t)
        r = b.get("ratio", {})
        if r:
            spread = r["a_spread"]
            console.print(
                f"{b['backend']}: ingest B/A = {r['b_over_a']:.2f} ({fmt(r['b_msgs_per_s'])} / "
                f"{fmt(r['a_msgs_per_s'])} msg/s stored; the A phases differ by "
                f"{fmt(100 * spread if spread is not None else None)} %); budget ≥ "
                f"{BUDGET:.2f}: {'met' if r['within_budget'] else 'NOT MET'}; the rules "
                f"service with rules / without: {fmt(r['rules_inclusive_b_over_a'], 2)}")
        for made in b.get("rules_created", []):
            console.print(f"{b['backend']}: {made['rules']} rules created through the API in "
                          f"{made['seconds']:.1f}s (first requests {made['first_10_ms']:.0f} ms,"
                          f" last {made['last_10_ms']:.0f} ms)")


def chart(rec: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = rec["backends"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    ax1, ax2, ax3, ax4 = axes.flat
    # 1: stored msg/s and the rules service's msg/s per phase, per backend
    x = 0.0
    ticks: list[tuple[float, str]] = []
    for b in backends:
        for p in b["phases"]:
            color = "#1e88e5" if p["rules"] == 0 else "#fb8c00"
            rs = p["rules_service"]["msgs_per_s"]
            ax1.bar(x, p["msgs_per_s"], 0.4, color=color, edgecolor="black", linewidth=0.4)
            ax1.bar(x + 0.4, rs, 0.4, color=color, alpha=0.45, hatch="//",
                    edgecolor="black", linewidth=0.4)
            ax1.annotate(f"{p['msgs_per_s']:,.0f}", (x, p["msgs_per_s"]), ha="center",
                         va="bottom", fontsize=7)
            ax1.annotate(f"{rs:,.0f}", (x + 0.4, rs), ha="center", va="bottom", fontsize=7)
            ticks.append((x + 0.2, f"{b['backend']}\n{p['phase']}"))
            x += 1.0
        r = b.get("ratio", {})
        if r:
            ax1.annotate(f"{b['backend']}: B/A {r['b_over_a']:.2f} stored, "
                         f"{fmt(r['rules_inclusive_b_over_a'], 2)} rules service",
                         (x - len(b["phases"]) - 0.2, 0), xytext=(0, -34),
                         textcoords="offset points", fontsize=7, color="#c62828")
            ax1.hlines(BUDGET * r["a_msgs_per_s"], x - len(b["phases"]) - 0.3, x - 0.3,
                       colors="#c62828", linestyles="--", lw=0.8)
        x += 0.5
    ax1.set_xticks([t for t, _ in ticks], [lbl for _, lbl in ticks], fontsize=7)
    ax1.set_ylabel("messages/s (throughput part, closed loop)")
    ax1.set_title("solid: stored; hatched: seen by the rules service; blue no rules, orange "
                  "with rules; dashed: 75 % of A", fontsize=8)
    top = max((p["msgs_per_s"] for b in backends for p in b["phases"]), default=1)
    ax1.set_ylim(0, top * 1.25)
    # 2: stored and rules-evaluated over time, first backend, A1 vs B1
    b0 = backends[0]
    for p in b0["phases"]:
        if p["phase"] not in ("A1", "B1"):
            continue
        color = "#1e88e5" if p["rules"] == 0 else "#fb8c00"
        ax2.plot([t for t, _ in p["timeline"]], [v for _, v in p["timeline"]], color=color,
                 label=f"{p['phase']} stored")
        seen = [(t, max(0, v)) for t, v in p["rules_timeline"] if t >= 0]
        ax2.plot([t for t, _ in seen], [v for _, v in seen], color=color, ls=":",
                 label=f"{p['phase']} seen by the rules service")
    ax2.axvline(rec["config"]["seconds"], ls=":", lw=0.8, color="gray")
    ax2.set_xlabel("seconds since the first publish (publishing stops at the dotted line)")
    ax2.set_ylabel("messages")
    ax2.set_title(f"{b0['backend']}: stored vs seen by the rules service", fontsize=9)
    ax2.legend(fontsize=7)
    # 3: probe latency (paced parts)
    rows: list[tuple[str, float, float, str]] = []
    for b in backends:
        for p in b["phases"]:
            for pc in p.get("paced", []):
                tag = f"{b['backend'][:2]} {p['phase']} @{pc['load']:.1f}"
                sm, am = pc["stored_ms"], pc["alarm_ms"]
                rows.append((f"{tag} stored", sm["p50"] or 0, sm["p99"] or 0, "#1e88e5"))
                if p["rules"]:
                    rows.append((f"{tag} alarm", am["p50"] or 0, am["p99"] or 0, "#fb8c00"))
    ys = list(range(len(rows)))
    ax3.barh([y + 0.2 for y in ys], [r[2] for r in rows], 0.4, color=[r[3] for r in rows],
             alpha=0.45, label="p99")
    ax3.barh([y - 0.2 for y in ys], [r[1] for r in rows], 0.4, color=[r[3] for r in rows],
             label="p50")
    for y, r in zip(ys, rows, strict=True):
        ax3.text(max(r[2], 1), y + 0.2, f" {r[2]:,.0f}", va="center", fontsize=6)
    ax3.set_yticks(ys, [r[0] for r in rows], fontsize=6)
    ax3.invert_yaxis()
    ax3.set_xscale("log")
    ax3.set_xlabel("ms from publish (log): → queryable (blue), → alarm on SSE (orange)")
    ax3.set_title("probe latency while paced at a fraction of A1's throughput", fontsize=9)
    ax3.legend(fontsize=7)
    # 4: the engine alone
    eng = rec.get("engine")
    if eng:
        kinds = list(eng["types"])
        ax4.barh(kinds, [eng["types"][k]["us_per_msg"] for k in kinds], color="#8d6e63")
        for y, k in enumerate(kinds):
            r = eng["types"][k]
            ax4.text(r["us_per_msg"], y, f" {r['us_per_msg']:.0f} µs ({r['rules']} rules)",
                     va="center", fontsize=7)
        ax4.invert_yaxis()
        ax4.set_xlabel("µs of one core per 5-point message (engine alone, in-process)")
        ax4.set_title("the rule engine alone, by rule type", fontsize=9)
        ax4.set_xlim(0, max(eng["types"][k]["us_per_msg"] for k in kinds) * 1.35)
    when = rec["at"].replace("T", " ")[:16]
    note = "  —  QUICK SMOKE RUN, not a result" if rec.get("quick") else ""
    cfg = rec["config"]
    fig.suptitle(f"bench/rules.py, {when}, commit {rec['commit']}: {cfg['rules']:,} rules, "
                 f"{cfg['registered']:,} devices ({cfg['devices']:,} publishing), 2-core "
                 f"machine{note}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ====================================================================== main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve-child", metavar="STATS", help=argparse.SUPPRESS)
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"),
                    help="default: both (--quick: sqlite)")
    ap.add_argument("--broker", choices=("auto", "mosquitto", "embedded"), default="auto",
                    help="auto: Mosquitto, or the embedded broker when the committed-batch "
                         "feed does not reach the rules")
    ap.add_argument("--order", default="ABA", help="phases: A without rules, B with")
    ap.add_argument("--seconds", type=float, default=30, help="throughput phase length")
    ap.add_argument("--paced-seconds", type=float, default=15)
    ap.add_argument("--paced-load", default="0.1,0.5",
                    help="paced phases' rates, as fractions of the first A's throughput")
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--devices", type=int, default=1000, help="publishing devices")
    ap.add_argument("--registered", type=int, default=10_000, help="registered devices")
    ap.add_argument("--probes", type=int, default=8, help="probe devices")
    ap.add_argument("--probe-interval", type=float, default=0.15)
    ap.add_argument("--probe-timeout", type=float, default=60)
    ap.add_argument("--max-probes", type=int, default=200)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--gen-procs", type=int, default=2)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--drain-timeout", type=float, default=0)
    ap.add_argument("--rules-timeout", type=float, default=900,
                    help="bound on creating the rules and on the service loading them")
    ap.add_argument("--rules-catchup", type=float, default=180,
                    help="after a phase, wait at most this long for the rules service to "
                         "see every stored point")
    ap.add_argument("--profile", metavar="DIR",
                    help="py-spy record the serve process in the throughput part of B "
                         "phases (rules thread and feed thread summarized)")
    ap.add_argument("--engine-seconds", type=float, default=2.0,
                    help="per rule type in the in-process engine measurement (0: skip)")
    ap.add_argument("--engine-only", action="store_true")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run (~3 min): 100 publishing of 1,000 devices, 100 rules, "
                         "4 s phases, SQLite")
    ap.add_argument("--pg-admin", default=os.environ.get(
        "WULIAN_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--replot", action="store_true")
    a = ap.parse_args()
    if a.serve_child:
        serve_child(Path(a.serve_child))
        return 0
    if a.replot:
        recs = [r for r in map(json.loads, RESULTS.read_text().splitlines())
                if r.get("test") == "rules" and r.get("backends")]
        full = [r for r in recs if not r.get("quick")] or recs
        chart(full[-1], CHART)
        log(f"chart of the run at {full[-1]['at']}: {CHART.relative_to(ROOT)}")
        return 0
    if a.quick:
        a.seconds, a.paced_seconds = min(a.seconds, 4), min(a.paced_seconds, 4)
        a.devices, a.registered, a.rules = min(a.devices, 100), min(a.registered, 1000), \
            min(a.rules, 100)
        a.engine_seconds = min(a.engine_seconds, 0.3)
        a.probe_timeout = min(a.probe_timeout, 15)
        a.max_probes = min(a.max_probes, 40)
        a.drain_timeout = a.drain_timeout or 120
        a.rules_catchup = min(a.rules_catchup, 30)
        a.backend = a.backend or "sqlite"
        a.window = min(a.window, 8)  # a smaller backlog to drain
    a.backend = a.backend or "both"
    a.drain_timeout = a.drain_timeout or max(300.0, 12 * a.seconds)
    a.paced_load = sorted(float(x) for x in str(a.paced_load).split(",") if x.strip())
    a.order = a.order.upper()
    if not a.order or set(a.order) - {"A", "B"}:
        ap.error("--order is made of A and B")
    a.sites = max(1, a.registered // DEVICES_PER_SITE)
    when = time.strftime("%Y-%m-%d %H:%M")
    load0 = os.getloadavg()
    log(f"bench/rules.py {when}: load average {load0[0]:.2f}, {os.cpu_count()} cores, "
        f"commit {git_commit()}")
    probe_names = [f"probe-{i}" for i in range(a.probes)]
    docs = rule_docs(a.rules, a.sites, probe_names)  # probe ids fixed after provisioning
    record: dict[str, Any] = {
        "test": "rules", "at": time.strftime("%Y-%m-%dT%H:%M:%S"), "commit": git_commit(),
        "quick": a.quick, "loadavg_start": load0,
        "config": {k: getattr(a, k) for k in (
            "order", "seconds", "paced_seconds", "paced_load", "rules", "devices",
            "registered", "sites", "probes", "probe_interval", "workers", "gen_procs",
            "window", "broker")},
        "mix": mix_counts(a.rules - 1), "backends": []}
    record["command"] = "uv run python bench/rules.py " + " ".join(sys.argv[1:])
    if a.engine_seconds > 0:
        log(f"rule engine alone: {a.rules} rules, {a.engine_seconds:.1f}s per type")
        record["engine"] = engine_cost(a.rules, a.sites, a.engine_seconds)
        allr = record["engine"]["types"]["all"]
        log(f"rule engine alone: {allr['us_per_msg']:.0f} µs a message with all "
            f"{a.rules} rules = {allr['msgs_per_s']:,.0f} msg/s on one core")
    failed = False
    if not a.engine_only:
        fleet = Fleet(password=secrets.token_urlsafe(24))
        kinds = ["sqlite", "postgres"] if a.backend == "both" else [a.backend]
        # once the feed is found missing, it is missing for every backend (and the fleet
        # then has no Mosquitto logins to reuse): the mode sticks
        mode = "embedded" if a.broker == "embedded" else "mosquitto"
        for kind in kinds:
            for attempt in (1, 2):
                try:
                    # the probe rule names the probe devices, the last ids provisioned
                    docs[0]["scope"]["devices"] = [f"bench-{i:04d}" for i in range(
                        a.devices, a.devices + a.probes)]
                    record["backends"].append(run_backend(a, kind, mode, fleet, docs))
                except FeedMissing as exc:
                    log(f"{kind}/{mode}: THE RULES SEE NOTHING: {exc}")
                    record.setdefault("feed_missing", []).append(
                        {"backend": kind, "mode": mode, "detail": str(exc)[:500]})
                    if a.broker == "auto" and mode == "mosquitto" and attempt == 1:
                        log(f"{kind}: the committed-batch feed does not reach the rules "
                            "service; running this backend with the embedded broker")
                        mode = "embedded"
                        continue
                    failed = True
                except Exception as exc:
                    failed = True
                    log(f"{kind}/{mode}: FAILED: {type(exc).__name__}: {exc}")
                break
        if fleet.dynsec is not None:
            shutil.rmtree(fleet.dynsec.parent, ignore_errors=True)
    record["loadavg_end"] = os.getloadavg()
    report(record)
    if not a.no_record and (record["backends"] or a.engine_only):
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(RESULTS, "a") as f:
            f.write(json.dumps(record) + "\n")
        log(f"appended to {RESULTS.relative_to(ROOT)}" + (" (quick)" if a.quick else ""))
        if record["backends"]:
            chart(record, CHART)
            log(f"chart: {CHART.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
