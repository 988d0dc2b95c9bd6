#!/usr/bin/env python3
"""bench/ingest.py - MQTT ingest throughput, loss and latency of the platform, with references.

One run measures, on this machine and back to back:
  1. ceiling  : ../shared/reference-bench/mqtt_throughput.py --broker mosquitto --pub c
                --sub c --qos 1 (C publisher -> Mosquitto -> C subscriber, nothing stored).
  2. strawman : ../shared/reference-bench/e2e_strawman.py --qos 1 --pubs 3 --rates 0
                (paho -> Mosquitto with default limits -> one paho subscriber -> SQLite).
  3. platform : for each backend (SQLite, then PostgreSQL), "external mode" as a user runs it:
       - a private Mosquitto on a free 127.0.0.1 port, configured by the platform's own
         `wulian.access.mosquitto.write_broker_files` (dynamic security, raised queue limits);
       - the bench product (bench/product.json, 5 properties) and `--devices` devices
         registered through `core.registry` (scrypt-hashed secrets, broker login and ACL
         provisioned by `DynSecAdmin`), in a fresh database (PostgreSQL: created on
         127.0.0.1:5432 and dropped afterwards);
       - `wulian serve --broker mqtt://wulian-platform:...@127.0.0.1:PORT --database URL
         --workers N` as a subprocess (HTTP API + N ingest worker processes sharing
         `$share/wulian/devices/+/telemetry`);
       - bench/loadgen.py: every device logs in with its own credentials and publishes QoS 1
         telemetry as fast as PUBACKs return, for `--seconds` (throughput phase); then, after
         the platform has drained, a paced phase at `--latency-load` x the measured
         throughput for `--latency-seconds` (latency phase).
     Reported per backend:
       - sustained messages/s and points/s = messages stored / (last point stored - first
         publish), the same window the strawman and the ceiling use;
       - lost = messages PUBACKed to a device and not stored, counted message by message
         (every message has a distinct ts per device; the store is read back per device);
       - publish-to-queryable latency p50/p99: for 1% of the devices (every 100th), every
         message's publish time is sent to the bench, which polls the store's `points()`
         every `--poll-ms` for them; latency = first poll that sees it - publish time
         (so it includes up to one poll interval). Reported for the throughput phase (where
         it is queueing time behind the backlog) and for the paced phase;
       - CPU % of one core (and peak RSS) of every process over the throughput window:
         mosquitto, `wulian serve`, each ingest worker, the load generator processes, this
         bench process (latency sampler, drain monitor) and, for PostgreSQL, the server
         backends of the bench database.
     If the store has not caught up `--drain-timeout` s after the last publish (or made no
     progress for 60 s), the run says so and asks Mosquitto's $SYS how many messages it
     still holds, instead of calling them lost.
  Then a table (rich) with the ratios platform/strawman and platform/ceiling, one JSON line
  per run appended to bench/results/ingest.jsonl, and a chart in docs/bench-ingest.png.
  Results and analysis: docs/benchmarks.md, section Ingest.

Usage (full run, ~8 minutes on 2 cores):
  uv run python bench/ingest.py
  uv run python bench/ingest.py --quick --skip-refs --backend sqlite   # ~2 min smoke, not recorded
  uv run python bench/ingest.py --skip-refs --profile /tmp/prof        # py-spy of every worker
  uv run python bench/ingest.py --replot                               # chart of the last run
Options: --seconds (>= 30 for a real run), --workers, --devices, --backend
sqlite|postgres|both|none, --skip-refs, --quick, --gen-procs, --window, --latency-load,
--pg-admin DSN, --keep.
Everything is bounded in time and talks only to 127.0.0.1; every process it starts is
stopped by its PID.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
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

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loadgen import (  # bench/ is not a package: imported from its own folder
    PRODUCT_ID,
    DeviceResult,
    GenConfig,
    GenResult,
    LoadGen,
    device_ids,
    product_doc,
    wait_port,
)

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
REFBENCH = Path(os.environ.get("WULIAN_REFBENCH", ROOT.parent / "shared" / "reference-bench"))
RESULTS = ROOT / "bench" / "results" / "ingest.jsonl"
CHART = ROOT / "docs" / "bench-ingest.png"
PLATFORM_USER = "wulian-platform"
PROBE_PROP = "temperature"  # one point of every message: the property read back
N_PROPS = len(product_doc()["properties"])


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def stop_proc(p: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM,
              timeout: float = 15.0) -> None:
    """Stop one process we started, by its PID: `sig`, then SIGKILL after `timeout`."""
    if p is None or p.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(p.pid, sig)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)
        p.wait(5)


def git_commit() -> str:
    """The checked-out commit, `+` when the work tree has changes (what was measured)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, text=True, capture_output=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+" if dirty.strip() else "")


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(q / 100 * (len(v) - 1))))]


# ====================================================================== references
def run_reference(script: str, args: list[str], workdir: Path, timeout: float) -> dict[str, Any]:
    """Run a reference script with REFBENCH_RESULTS in `workdir`; its last JSON line."""
    results = workdir / f"{script}.jsonl"
    env = {**os.environ, "REFBENCH_RESULTS": str(results)}
    cmd = [sys.executable, str(REFBENCH / script), *args]
    log("reference: " + " ".join(cmd[1:]))
    out = subprocess.run(cmd, env=env, cwd=workdir, timeout=timeout, capture_output=True,
                         text=True, check=False)
    if out.returncode != 0 or not results.exists():
        raise RuntimeError(f"{script} failed ({out.returncode}): {out.stderr[-2000:]}")
    for line in out.stdout.splitlines():
        if line.strip():
            log("  " + line.strip())
    rec: dict[str, Any] = json.loads(results.read_text().splitlines()[-1])
    return rec


def ceiling(workdir: Path, runs: int, msgs: int) -> dict[str, Any]:
    rec = run_reference("mqtt_throughput.py", [
        "--broker", "mosquitto", "--pub", "c", "--sub", "c", "--qos", "1",
        "--msgs", str(msgs), "--runs", str(runs), "--port", str(free_port())],
        workdir, timeout=runs * 100 + 60)
    s = rec["summary"]
    return {"name": "ceiling", "label": "ceiling: C pub → Mosquitto → C sub",
            "msgs_per_s": s["delivered_per_s"]["median"],
            "points_per_s": None, "lost": int(s["lost"]["median"]),
            "runs": rec["runs"], "args": {"msgs": msgs, "runs": runs}}


def strawman(workdir: Path, runs: int, seconds: float) -> dict[str, Any]:
    rec = run_reference("e2e_strawman.py", [
        "--qos", "1", "--pubs", "3", "--rates", "0", "--seconds", str(seconds),
        "--runs", str(runs), "--db", str(workdir / "strawman.sqlite"),
        "--port", str(free_port())], workdir, timeout=runs * (seconds + 200) + 60)
    s = rec["summary"]
    return {"name": "strawman", "label": "strawman: 3 paho pubs → Mosquitto → paho → SQLite",
            "msgs_per_s": s["stored_msgs_per_s"]["median"],
            "points_per_s": s["stored_rows_per_s"]["median"],
            "lost": int(s["lost"]["median"]),
            "published_ok": int(s["published_ok"]["median"]),
            "offered_per_s": s["offered_per_s"]["median"],
            "runs": rec["runs"], "args": {"seconds": seconds, "runs": runs}}


# ====================================================================== the platform
@dataclass
class Backend:
    name: str  # sqlite | postgres
    url: str
    drop: Any = None  # callable that removes the database


def make_backend(kind: str, work: Path, pg_admin: str) -> Backend:
    if kind == "sqlite":
        return Backend("sqlite", f"sqlite:///{work / 'data' / 'wulian.db'}")
    import psycopg

    name = f"wulian_bench_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(pg_admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(pg_admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return Backend("postgres", f"{pg_admin.rsplit('/', 1)[0]}/{name}", drop)


def start_broker(work: Path, password: str,
                 dynsec_from: Path | None = None) -> tuple[subprocess.Popen[bytes], int, Path]:
    """Mosquitto under the platform's own generated config, on a free loopback port.

    `dynsec_from`: a dynamic-security.json already holding the devices' logins (written by
    DynSecAdmin in an earlier backend's run of this invocation, same platform password);
    `write_broker_files` keeps an existing one.
    """
    from wulian.access.mosquitto import write_broker_files

    port = free_port()
    bdir = work / "broker"
    bdir.mkdir(parents=True, exist_ok=True)
    if dynsec_from is not None:
        shutil.copy2(dynsec_from, bdir / "dynamic-security.json")
    options: dict[str, Any] = {"hosts": (HOST,), "log_file": bdir / "mosquitto.log"}
    if os.geteuid() == 0:  # as root Mosquitto would switch to user `mosquitto`: stay
        options["user"] = "root"
    conf = write_broker_files(bdir, port, PLATFORM_USER, password, **options)
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 15)
    except RuntimeError:
        stop_proc(proc)
        raise
    return proc, port, bdir / "mosquitto.log"


@dataclass
class Fleet:
    """The bench devices of this invocation: made once, registered in every backend's run."""

    password: str  # the platform's broker login, the same for every backend
    creds: list[tuple[str, str]] = field(default_factory=list)  # (device id, secret)
    devices: list[Any] = field(default_factory=list)  # wulian.domain.device.Device
    dynsec: Path | None = None  # the broker's dynamic-security.json holding their logins


def provision(settings: Any, n: int, fleet: Fleet, broker_dir: Path) -> None:
    """Register the bench product and `n` devices.

    First backend: through `core.registry.add_device` as the API does it (scrypt-hashed
    secret in the store, broker login and ACL through DynSecAdmin). Later backends: the same
    devices and hashes go into the new store directly, and the broker starts from a copy
    of the dynamic-security file the first run's DynSecAdmin wrote (hashing 1,000 secrets
    again would cost ~40 s of CPU and measure nothing new).
    """
    from wulian.bootstrap import build_core
    from wulian.ports import Conflict

    core = build_core(settings, provision_broker=not fleet.creds)
    try:
        core.registry.import_product(product_doc())
        if fleet.creds:
            for device in fleet.devices:
                core.store.add_device(device)
            return
        # scrypt (~40 ms a secret) releases the GIL: one thread per core hashes in parallel;
        # a few more keep the dynamic-security round trips to the broker overlapped.
        workers = (os.cpu_count() or 1) + 2

        def add(dev: str) -> Any:
            try:
                return core.registry.add_device(dev, PRODUCT_ID)
            except Conflict:
                return core.registry.rotate_secret(dev)

        with ThreadPoolExecutor(workers) as pool:
            made = list(pool.map(add, device_ids(n)))
        fleet.creds = [(m.device.id, m.secret) for m in made]
        fleet.devices = [m.device for m in made]
        keep = Path(tempfile.mkdtemp(prefix="wulian-bench-dynsec-")) / "dynamic-security.json"
        fleet.dynsec = keep
        # Mosquitto writes the file after every change: it is complete once we get here.
        shutil.copy2(broker_dir / "dynamic-security.json", keep)
    finally:
        close_admin = getattr(core.registry.broker, "close", None)
        if close_admin is not None:
            close_admin()
        core.close()


def assign_orgs(db_url: str, n_orgs: int, quotas: dict[str, Any]) -> None:
    """Spread the devices over `n_orgs` organisations (round robin), each with `quotas`.

    Rows put in directly: organisation use cases come with the service layer (issue 11).
    """
    from sqlalchemy import insert, select, update

    from wulian.storage import open_store
    from wulian.storage.schema import devices, organisations

    store = open_store(db_url)
    try:
        with store.engine.begin() as conn:  # type: ignore[attr-defined]
            ids = [r[0] for r in conn.execute(select(devices.c.id).order_by(devices.c.id))]
            for k in range(n_orgs):
                org = f"bench-org-{k}"
                conn.execute(insert(organisations).values(
                    id=org, name=org, state="active", quotas=quotas, created_ms=0,
                    updated_ms=0))
                conn.execute(update(devices).where(devices.c.id.in_(ids[k::n_orgs]))
                             .values(org_id=org))
    finally:
        store.close()


def serve_command(broker_url: str, db_url: str, workers: int) -> list[str]:
    """`wulian serve ...` as a user types it (falls back to the service module if the CLI
    has no `serve` yet)."""
    exe = Path(sys.executable).with_name("wulian")
    if exe.exists():
        probe = subprocess.run([str(exe), "serve", "--help"], capture_output=True, text=True,
                               timeout=60, check=False)
        if probe.returncode == 0:
            cmd = [str(exe), "serve", "--broker", broker_url, "--database", db_url]
            if "--workers" in probe.stdout:
                cmd += ["--workers", str(workers)]
            return cmd
    return [sys.executable, "-c",
            "from wulian.config import Settings; from wulian.service import serve; "
            "serve(Settings())"]


@dataclass
class Platform:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def processes(self) -> dict[str, psutil.Process]:
        """serve and its ingest workers, labelled."""
        out: dict[str, psutil.Process] = {}
        try:
            root = psutil.Process(self.proc.pid)
        except psutil.NoSuchProcess:
            return out
        out["wulian serve"] = root
        for child in root.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                cmd = " ".join(child.cmdline())
                if "resource_tracker" in cmd:
                    continue
                out[f"ingest worker {len(out) - 1}"] = child
        return out


def start_platform(cmd: list[str], env: dict[str, str], work: Path, http_port: int,
                   broker_log: Path, workers: int) -> Platform:
    log_path = work / "serve.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=work)
    plat = Platform(proc, log_path)
    deadline = time.monotonic() + 90
    want = [f"wulian-ingest-{i}" for i in range(workers)]
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"wulian serve exited ({proc.returncode}): "
                               f"{log_path.read_text()[-3000:]}")
        text = broker_log.read_text(errors="replace") if broker_log.exists() else ""
        if all(f" as {w} " in text or f" as {w}\n" in text for w in want):
            with contextlib.suppress(RuntimeError):
                wait_port(http_port, 1)
                return plat
        time.sleep(0.2)
    stop_proc(proc)
    raise RuntimeError(f"the ingest workers did not connect to the broker in 90 s; "
                       f"serve log: {log_path.read_text()[-3000:]}")


def start_profiles(plat: Platform, out_dir: Path, kind: str) -> list[subprocess.Popen[bytes]]:
    """py-spy record (raw folded stacks, idle frames and threads included) of every ingest
    worker until SIGINT (stop_proc); summarize_profile() reads the result."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for label, proc in plat.processes().items():
        if not label.startswith("ingest worker"):
            continue
        dest = out_dir / f"{kind}-{label.replace(' ', '-')}.folded"
        procs.append(subprocess.Popen(
            [exe, "record", "--pid", str(proc.pid), "--rate", "100", "--format", "raw",
             "--idle", "--threads", "--nonblocking", "-o", str(dest)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def _frame(frame: str) -> str:
    """`func (path/to/file.py:12)` -> `func (file.py)`: lines of one function merged."""
    func, sep, where = frame.partition(" (")
    if not sep:
        return frame
    return f"{func} ({where.rsplit('/', 1)[-1].split(':')[0].rstrip(')')})"


# Where a worker's threads spend their wall time: the first rule that matches a frame, from
# the innermost frame outwards, names the bucket (py-spy folded stacks, idle included).
PROFILE_BUCKETS: tuple[tuple[str, str], ...] = (
    ("DeviceDirectory.", "device directory (cache refresh: a SELECT per device)"),
    ("Store.write", "store: write + commit of the batch"),
    ("Store._write", "store: write + commit of the batch"),
    ("decode_telemetry", "decode + validate (msgspec)"),
    ("Pipeline.", "pipeline bookkeeping"),
    ("MqttIngest._ack", "PUBACK (paho ack)"),
    ("MqttIngest._next_batch", "waiting for messages / batch deadline"),
    ("MqttIngest._process", "topic parsing, Inbound building"),
    ("MqttIngest._on_message", "on_message callback"),
    ("Properties.", "paho: MQTT 5 properties of each PUBLISH"),
    ("MQTTMessage", "paho: message objects"),
    ("_handle_on_message", "paho: callback dispatch (topic matcher)"),
    ("_handle_publish", "paho: PUBLISH decoding"),
    ("_packet_read", "paho: socket reads"),
    ("loop_write", "paho: socket writes"),
    ("Client._loop", "paho: idle in select()"),
)


def summarize_profile(path: Path) -> list[str]:
    """Per thread of one ingest worker: share of wall time per bucket (PROFILE_BUCKETS)."""
    threads: dict[str, dict[str, int]] = {}
    for line in path.read_text().splitlines():
        stack, _, n_s = line.rpartition(" ")
        if not stack or not n_s.isdigit():
            continue
        frames = stack.split(";")
        name = frames[0].split(": ", 1)[-1]
        if name == "MainThread" or "presence" in name:
            continue  # the main thread only waits for SIGTERM
        bucket = "other"
        for frame in reversed(frames[1:]):
            hit = next((label for key, label in PROFILE_BUCKETS if key in frame), None)
            if hit:
                bucket = hit
                break
        per = threads.setdefault(name, {})
        per[bucket] = per.get(bucket, 0) + int(n_s)
    lines = [f"{path.stem} (share of each thread's wall time):"]
    for name, per in sorted(threads.items()):
        total = sum(per.values())
        lines.append(f"  {name}:")
        lines += [f"    {100 * c / total:5.1f}%  {b}" for b, c in
                  sorted(per.items(), key=lambda x: -x[1]) if 100 * c / total >= 0.5]
    return lines


def warm_up(port: int, password: str, store: Any, ids: list[str], timeout: float) -> int:
    """One message per device, ts in the past (outside the measured range), via the platform
    login; returns once they are all stored, so every worker is subscribed and caching."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-warmup")
    c.username_pw_set(PLATFORM_USER, password)
    c.connect(HOST, port, keepalive=30)
    c.loop_start()
    try:
        before = store.counters().get("messages_accepted", 0)
        infos = [c.publish(f"devices/{dev}/telemetry",
                           b'{"ts":%d,"temperature":20.5,"humidity":50.0,"pm25":10,"co2":420,'
                           b'"noise":35.0}' % (1_600_000_000_000 + i), qos=1)
                 for i, dev in enumerate(ids)]
        for info in infos:
            info.wait_for_publish(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if store.counters().get("messages_accepted", 0) - before >= len(ids):
                return len(ids)
            time.sleep(0.1)
        raise RuntimeError("warm-up messages were not all stored in time")
    finally:
        c.loop_stop()
        c.disconnect()


def broker_queued(port: int, password: str, timeout: float = 15.0) -> int | None:
    """Messages Mosquitto holds (queued for sessions + retained), from its `$SYS` report
    (sent every sys_interval); None if it does not say within `timeout`."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    got: list[int] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-sys")
    c.username_pw_set(PLATFORM_USER, password)
    c.on_message = lambda _c, _u, m: got.append(int(m.payload or b"0"))
    try:
        c.connect(HOST, port, keepalive=30)
        c.subscribe("$SYS/broker/store/messages/count", 0)
        c.loop_start()
        end = time.monotonic() + timeout
        while not got and time.monotonic() < end:
            time.sleep(0.1)
    except (OSError, ValueError):
        return None
    finally:
        c.loop_stop()
        c.disconnect()
    return got[0] if got else None


def postgres_backends(dbname: str) -> list[psutil.Process]:
    """The PostgreSQL server processes serving `dbname` now (read-only look, for CPU)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmd = " ".join(proc.info["cmdline"] or [])
            if cmd.startswith("postgres:") and f" {dbname} " in f"{cmd} ":
                found.append(proc)
    return found


class CpuWatch:
    """CPU seconds of labelled processes between start() and stop()."""

    def __init__(self) -> None:
        self.procs: dict[str, psutil.Process] = {}
        self.t0 = 0.0
        self.c0: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.rss: dict[str, int] = {}

    def add(self, label: str, proc: psutil.Process) -> None:
        self.procs[label] = proc

    def _cpu(self, label: str) -> float | None:
        try:
            proc = self.procs[label]
            t = proc.cpu_times()
            self.last[label] = t.user + t.system
            self.rss[label] = max(self.rss.get(label, 0), proc.memory_info().rss)
        except psutil.Error:
            pass  # ended: its last reading stands
        return self.last.get(label)

    def peak_rss_mb(self) -> dict[str, float]:
        """Largest resident set seen per label (sampled with the CPU), MB; groups summed."""
        out: dict[str, float] = {}
        for k, v in self.rss.items():
            label = k.split("#", 1)[0]
            out[label] = out.get(label, 0.0) + v / 2**20
        return {k: round(v) for k, v in out.items()}

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.c0 = {k: v for k in self.procs if (v := self._cpu(k)) is not None}

    def sample(self) -> None:
        for k in self.procs:
            self._cpu(k)

    def stop(self, t_end: float | None = None) -> dict[str, float]:
        """CPU % of one core per label; labels `name#n` are summed into `name`."""
        span = (t_end or time.monotonic()) - self.t0
        out: dict[str, float] = {}
        for k in self.procs:
            c1 = self._cpu(k)
            if c1 is not None and k in self.c0:
                label = k.split("#", 1)[0]
                out[label] = out.get(label, 0.0) + 100 * (c1 - self.c0[k]) / span
        return {k: round(v, 1) for k, v in out.items()}


class Sampler(threading.Thread):
    """Polls the store for the sampled devices' messages; records publish-to-queryable ms."""

    def __init__(self, store: Any, gen: LoadGen, poll_s: float) -> None:
        super().__init__(name="latency-sampler", daemon=True)
        self.store = store
        self.gen = gen
        self.poll_s = poll_s
        self.pending: dict[str, dict[int, float]] = {}
        self.latencies: list[tuple[float, float]] = []  # (publish wall ms, latency ms)
        self.stop_evt = threading.Event()
        self.polls = 0

    def run(self) -> None:
        while not self.stop_evt.is_set():
            self.poll_once()
            # Behind a backlog latencies are seconds: poll less (resolution ~2 % of the
            # oldest wait, at most 1 s) so the sampler does not compete with the platform.
            oldest = min((min(w.values()) for w in self.pending.values() if w), default=None)
            wait = self.poll_s
            if oldest is not None:
                wait = min(1.0, max(self.poll_s, (time.time() * 1000 - oldest) / 50_000))
            self.stop_evt.wait(wait)

    def poll_once(self) -> None:
        for dev, ts, pub_ms in self.gen.samples():
            self.pending.setdefault(dev, {})[ts] = pub_ms
        for dev, want in self.pending.items():
            if not want:
                continue
            rows = self.store.points(dev, PROBE_PROP, since=min(want), until=None, limit=500)
            now = time.time() * 1000.0
            for ts, _ in rows:
                pub = want.pop(ts, None)
                if pub is not None:
                    self.latencies.append((pub, now - pub))
        self.polls += 1

    def finish(self, timeout: float) -> int:
        """Keep polling until nothing is pending (bounded); the number still missing."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and (any(self.pending.values()) or not self.polls):
            time.sleep(self.poll_s)
        self.stop_evt.set()
        self.join(10)
        self.poll_once()
        return sum(len(v) for v in self.pending.values())


@dataclass
class Phase:
    gen: GenResult
    t_last_stored: float
    stored_points: int
    timeline: list[tuple[float, int]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    missing_samples: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    rss_mb: dict[str, float] = field(default_factory=dict)


def wait_stored(store: Any, target_points: int, base_points: int, idle_s: float,
                timeout: float, timeline: list[tuple[float, int]],
                cpu: CpuWatch | None = None) -> tuple[float, int]:
    """Poll the store's counters until `target_points` more points are stored, or no progress
    for `idle_s`, or `timeout`; (wall time of the last increase, points stored)."""
    end = time.monotonic() + timeout
    last_val, last_change = -1, time.time()
    while True:
        val = store.counters().get("points_stored", 0) - base_points
        now = time.time()
        if val != last_val:
            last_val, last_change = val, now
            timeline.append((now, val))
        if cpu is not None:
            cpu.sample()
        if val >= target_points or now - last_change > idle_s or time.monotonic() > end:
            return last_change, val
        time.sleep(0.1)


def run_phase(gen: LoadGen, seconds: float, rate: float, store: Any, poll_s: float,
              cpu: CpuWatch | None, drain_timeout: float, idle_s: float = 60.0) -> Phase:
    """One load phase on the connected devices; returns once the store has caught up."""
    base_points = store.counters().get("points_stored", 0)
    sampler = Sampler(store, gen, poll_s)
    timeline: list[tuple[float, int]] = []
    if cpu is not None:
        cpu.start()
    sampler.start()
    stop_tl = threading.Event()

    def follow() -> None:  # throughput over time while publishing
        while not stop_tl.wait(0.5):
            timeline.append((time.time(), store.counters().get("points_stored", 0) - base_points))
            if cpu is not None:
                cpu.sample()

    tl = threading.Thread(target=follow, daemon=True)
    tl.start()
    try:
        res = gen.run(seconds, rate)
    finally:
        stop_tl.set()
        tl.join(5)
    timeline.append((res.t_go, 0))
    t_last, stored = wait_stored(store, res.acked * N_PROPS, base_points, idle_s=idle_s,
                                 timeout=drain_timeout, timeline=timeline, cpu=cpu)
    cpu_pct = cpu.stop(time.monotonic() - (time.time() - t_last)) if cpu is not None else {}
    missing = sampler.finish(timeout=5)
    lat = [lat_ms for _, lat_ms in sampler.latencies]
    rss = cpu.peak_rss_mb() if cpu is not None else {}
    return Phase(res, t_last, stored, sorted(timeline), lat, missing, cpu_pct, rss)


def verify(store: Any, devices: dict[str, list[DeviceResult]]) -> dict[str, Any]:
    """Acknowledged vs stored, message by message: every acked ts must be in the store."""
    acked = lost = extra = 0
    lost_by_device: dict[str, int] = {}

    def one(item: tuple[str, list[DeviceResult]]) -> tuple[str, int, int, int]:
        dev, results = item
        want: set[int] = set()
        for r in results:
            want.update(r.acked_ts)
        if not want:
            return dev, 0, 0, 0
        lo, hi = min(want), max(want)
        rows = store.points(dev, PROBE_PROP, since=lo, until=hi + 1, limit=len(want) + 100_000)
        have = {ts for ts, _ in rows}
        return dev, len(want), len(want - have), len(have - want)

    with ThreadPoolExecutor(4) as pool:
        for dev, a, lo, ex in pool.map(one, devices.items()):
            acked += a
            lost += lo
            extra += ex
            if lo:
                lost_by_device[dev] = lo
    return {"acked": acked, "lost": lost, "stored_not_acked": extra,
            "lost_devices": dict(list(lost_by_device.items())[:10])}


def run_platform(a: argparse.Namespace, kind: str, fleet: Fleet,
                 quotas: dict[str, Any] | None = None) -> dict[str, Any]:
    """One platform run; with `quotas`, devices spread over `--orgs` organisations holding them."""
    from wulian.config import Settings
    from wulian.storage import open_store

    work = Path(tempfile.mkdtemp(prefix=f"wulian-bench-{kind}-"))
    (work / "data").mkdir()
    backend: Backend | None = None
    broker: subprocess.Popen[bytes] | None = None
    plat: Platform | None = None
    store: Any = None
    gen: LoadGen | None = None
    plat_procs: dict[str, psutil.Process] = {}
    try:
        backend = make_backend(kind, work, a.pg_admin)
        password = fleet.password
        broker, mport, broker_log = start_broker(work, password, fleet.dynsec)
        http_port = free_port()
        broker_url = f"mqtt://{PLATFORM_USER}:{password}@{HOST}:{mport}"
        token = secrets.token_urlsafe(24)
        env = {**os.environ, "WULIAN_DATA_DIR": str(work / "data"),
               "WULIAN_DATABASE": backend.url, "WULIAN_BROKER": broker_url,
               "WULIAN_INGEST_WORKERS": str(a.workers), "WULIAN_HTTP_HOST": HOST,
               "WULIAN_HTTP_PORT": str(http_port), "WULIAN_ADMIN_TOKEN": token}
        settings = Settings(data_dir=work / "data", database=backend.url, broker=broker_url,
                            ingest_workers=a.workers, http_port=http_port, admin_token=token)
        t = time.monotonic()
        how = "store, copied broker logins" if fleet.creds else "registry + DynSecAdmin"
        provision(settings, a.devices, fleet, work / "broker")
        creds = fleet.creds
        log(f"{kind}: provisioned {len(creds)} devices ({how}) in "
            f"{time.monotonic() - t:.1f}s")
        if quotas is not None:
            assign_orgs(backend.url, a.orgs, quotas)
            log(f"{kind}: devices spread over {a.orgs} organisations, quotas {quotas}")
        cmd = serve_command(broker_url, backend.url, a.workers)
        shown = " ".join(cmd).replace(password, "***")
        log(f"{kind}: starting {shown}")
        plat = start_platform(cmd, env, work, http_port, broker_log, a.workers)
        plat_procs = plat.processes()
        store = open_store(backend.url)
        warm_up(mport, password, store, [d for d, _ in creds], timeout=60)
        log(f"{kind}: platform up, {a.workers} ingest workers, warm-up stored")

        cpu = CpuWatch()
        cpu.add("mosquitto", psutil.Process(broker.pid))
        for label, proc in plat.processes().items():
            cpu.add(label, proc)
        cpu.add("bench (sampler)", psutil.Process())
        if backend.name == "postgres":  # the server's backends for the bench database
            dbname = backend.url.rsplit("/", 1)[-1]
            for i, proc in enumerate(postgres_backends(dbname)):
                cpu.add(f"postgresql#{i}", proc)
        sampled = [d for i, (d, _) in enumerate(creds) if i % 100 == 0]
        cfg = GenConfig(port=mport, window=a.window, refill=a.refill, drain_timeout=60)
        gen = LoadGen(cfg, creds, procs=a.gen_procs, sampled=sampled)
        t = time.monotonic()
        gen.start()
        log(f"{kind}: {a.devices} devices connected with their own logins in "
            f"{time.monotonic() - t:.1f}s")
        for i, pid in enumerate(gen.pids):
            cpu.add(f"loadgen {i}", psutil.Process(pid))
        time.sleep(a.settle)  # let the platform digest the connect storm (presence etc.)
        log(f"{kind}: throughput phase: QoS 1, {a.seconds:.0f}s, as fast as acked")
        profilers = start_profiles(plat, Path(a.profile), kind) if a.profile else []
        main = run_phase(gen, a.seconds, 0.0, store, 5 * a.poll_ms / 1000, cpu,
                         drain_timeout=a.drain_timeout)
        for prof in profilers:  # py-spy writes its file on SIGINT
            stop_proc(prof, signal.SIGINT, timeout=30)
        if a.profile:
            for f in sorted(Path(a.profile).glob(f"{kind}-ingest-worker-*.folded")):
                print("\n".join(summarize_profile(f)), flush=True)
        msgs = main.stored_points / N_PROPS
        window = main.t_last_stored - main.gen.t_first_pub
        rate = msgs / window if window > 0 else 0.0
        log(f"{kind}: offered {main.gen.offered_per_s():,.0f} msg/s, acked {main.gen.acked:,}, "
            f"stored {msgs:,.0f} in {window:.1f}s = {rate:,.0f} msg/s")

        phases = {"throughput": main}
        drained = main.stored_points >= main.gen.acked * N_PROPS
        queued = None
        if not drained:
            queued = broker_queued(mport, password)
            log(f"{kind}: NOT DRAINED after {a.drain_timeout:.0f}s: "
                f"{main.gen.acked - msgs:,.0f} acknowledged messages not stored yet; the "
                f"broker still holds {queued if queued is not None else '?'} messages")
        elif a.latency_seconds > 0 and rate > 0:
            lrate = a.latency_load * rate
            log(f"{kind}: latency phase: {lrate:,.0f} msg/s paced for {a.latency_seconds:.0f}s")
            phases["latency"] = run_phase(gen, a.latency_seconds, lrate, store,
                                          a.poll_ms / 1000, None, drain_timeout=60)
        gen.close()
        by_dev: dict[str, list[DeviceResult]] = {}
        for ph in phases.values():
            for dev, r in ph.gen.devices.items():
                by_dev.setdefault(dev, []).append(r)
        t = time.monotonic()
        check = verify(store, by_dev)
        log(f"{kind}: verified {check['acked']:,} acknowledged messages in "
            f"{time.monotonic() - t:.1f}s: lost {check['lost']}")
        counters = store.counters()
        out = summarize(kind, a, backend, main, phases.get("latency"), check, counters,
                        shown, queued)
        if quotas is not None:
            limited = "device_msgs_per_s" in quotas
            out["name"] += "-limits" if limited else "-orgs"
            out["label"] += f", {a.orgs} orgs, " + ("limits on" if limited else "no limits")
            out["quotas"] = quotas
        return out
    finally:
        if gen is not None:
            gen.close()
        if store is not None:
            store.close()
        if plat is not None:
            stop_proc(plat.proc, signal.SIGINT, timeout=30)
            for p in plat_procs.values():  # any worker serve left behind, by its PID
                with contextlib.suppress(psutil.Error):
                    if p.is_running():
                        p.kill()
        stop_proc(broker)
        if backend is not None and backend.drop is not None:
            try:
                backend.drop()
            except Exception as exc:  # report, do not hide the run's own error
                log(f"could not drop the bench database: {exc}")
        if a.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def summarize(kind: str, a: argparse.Namespace, backend: Backend, main: Phase,
              lat: Phase | None, check: dict[str, Any], counters: dict[str, int],
              cmd: str, queued: int | None) -> dict[str, Any]:
    g = main.gen
    msgs = main.stored_points / N_PROPS
    window = main.t_last_stored - g.t_first_pub
    rate = msgs / window if window > 0 else 0.0
    tl = [(round(t - g.t_first_pub, 2), round(v / N_PROPS)) for t, v in main.timeline]
    out: dict[str, Any] = {
        "name": f"platform-{kind}", "label": f"wulian, {kind}, {a.workers} workers",
        "msgs_per_s": rate, "points_per_s": rate * N_PROPS,
        "lost": check["lost"], "acked": check["acked"],
        "stored_not_acked": check["stored_not_acked"], "lost_devices": check["lost_devices"],
        "throughput_phase": {
            "seconds": a.seconds, "published": g.published, "acked": g.acked,
            "unacked": g.unacked, "offered_per_s": g.offered_per_s(),
            "stored_msgs": msgs, "window_s": window,
            "drained": main.stored_points >= g.acked * N_PROPS,
            "broker_queued_at_deadline": queued,
            "stored_per_s_while_publishing": max(
                (v for t, v in main.timeline if t <= g.t_last_pub), default=0) / N_PROPS
            / max(1e-9, g.t_last_pub - g.t_first_pub),
            "drain_s": main.t_last_stored - g.t_last_pub,
            "latency_ms": {"p50": pct(main.latencies, 50), "p99": pct(main.latencies, 99),
                           "max": max(main.latencies, default=None),
                           "n": len(main.latencies), "missing": main.missing_samples},
            "disconnects": sum(p["disconnects"] for p in g.procs),
            "protocol_errors": sum(p["protocol_errors"] for p in g.procs),
        },
        "cpu_pct": main.cpu, "peak_rss_mb": main.rss_mb, "timeline": tl,
        "counters": {k: v for k, v in counters.items() if not k.startswith("rejected.") or v},
        "config": {"devices": a.devices, "workers": a.workers, "gen_procs": a.gen_procs,
                   "window": a.window, "refill": a.refill, "poll_ms": a.poll_ms,
                   "backend": backend.name, "command": cmd},
    }
    if lat is not None:
        lg = lat.gen
        out["latency_phase"] = {
            "seconds": a.latency_seconds, "target_per_s": a.latency_load * rate,
            "offered_per_s": lg.offered_per_s(), "acked": lg.acked,
            "stored_msgs": lat.stored_points / N_PROPS,
            "latency_ms": {"p50": pct(lat.latencies, 50), "p99": pct(lat.latencies, 99),
                           "max": max(lat.latencies, default=None),
                           "mean": statistics.fmean(lat.latencies) if lat.latencies else None,
                           "n": len(lat.latencies), "missing": lat.missing_samples},
        }
    return out


# ====================================================================== report
def ingest_cpu_us(row: dict[str, Any]) -> float | None:
    """CPU µs per stored message of the ingest worker processes together."""
    pct_sum = sum(v for k, v in row.get("cpu_pct", {}).items() if "ingest" in k)
    return pct_sum / 100 / row["msgs_per_s"] * 1e6 if row["msgs_per_s"] else None


def quota_report(rows: list[dict[str, Any]]) -> None:
    """Stored msg/s and ingest CPU µs/msg with and without limits, side by side."""
    for r in rows:
        r["ingest_cpu_us_per_msg"] = ingest_cpu_us(r)
        log(f"{r['label']}: {r['msgs_per_s']:,.0f} msg/s stored, ingest CPU "
            f"{fmt_num(r['ingest_cpu_us_per_msg'], 1)} µs/msg, refused "
            f"{r['counters'].get('rejected.rate_limited', 0)}")
    base = {r["config"]["backend"]: r for r in rows if r["name"].endswith("-orgs")}
    for r in rows:
        ref = base.get(r["config"]["backend"])
        if r["name"].endswith("-limits") and ref and ref["msgs_per_s"]:
            log(f"{r['config']['backend']}: limits cost "
                f"{100 * (1 - r['msgs_per_s'] / ref['msgs_per_s']):+.1f} % of stored msg/s")


def fmt_num(v: float | None, prec: int = 0) -> str:
    return "—" if v is None else f"{v:,.{prec}f}"


def report(rows: list[dict[str, Any]], refs: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    straw = refs.get("strawman", {}).get("msgs_per_s")
    ceil = refs.get("ceiling", {}).get("msgs_per_s")
    table = Table(title="MQTT QoS 1 ingest, 1 run, this machine (msg/s = stored or delivered)")
    for col in ("path", "msg/s", "points/s", "lost", "p50 ms*", "p99 ms*", "× strawman",
                "× ceiling", "CPU % (of one core)"):
        table.add_column(col, justify="left" if col in ("path", "CPU % (of one core)")
                         else "right")
    for r in [*refs.values(), *rows]:
        lat = r.get("latency_phase", {}).get("latency_ms", {})
        lost = f"{r['lost']:,}"
        tp = r.get("throughput_phase", {})
        if not tp.get("drained", True):
            lost = (f"? {r['lost']:,} not stored in time, "
                    f"{tp.get('broker_queued_at_deadline', '?')} queued")
        cpu = ", ".join(f"{k} {v:.0f}" for k, v in r.get("cpu_pct", {}).items())
        if r["name"] == "ceiling":
            run = r["runs"][len(r["runs"]) // 2]
            cpu = f"mosquitto {run['broker_cpu_pct']:.0f}, C sub {run['sub_cpu_pct']:.0f}, " \
                  f"C pub {run['pub_cpu_pct_total']:.0f}"
        elif r["name"] == "strawman":
            run = r["runs"][len(r["runs"]) // 2]
            cpu = f"mosquitto {run['broker_cpu_pct']:.0f}, ingest {run['ingest_cpu_pct']:.0f}"
        table.add_row(
            r["label"], fmt_num(r["msgs_per_s"]), fmt_num(r.get("points_per_s")),
            lost, fmt_num(lat.get("p50")), fmt_num(lat.get("p99")),
            f"{r['msgs_per_s'] / straw:.2f}" if straw and r["name"] != "strawman" else "—",
            f"{r['msgs_per_s'] / ceil:.2f}" if ceil and r["name"] != "ceiling" else "—", cpu)
    console = Console(width=200)
    console.print(table)
    for r in rows:
        tp, lp = r["throughput_phase"], r.get("latency_phase")
        console.print(
            f"{r['name']}: offered {tp['offered_per_s']:,.0f} msg/s for {tp['seconds']:.0f}s, "
            f"acked {tp['acked']:,}, drained {tp['drain_s']:.1f}s after the last publish; "
            f"latency under saturation p50 {fmt_num(tp['latency_ms']['p50'])} ms, p99 "
            f"{fmt_num(tp['latency_ms']['p99'])} ms" + (
                f"; *paced at {lp['offered_per_s']:,.0f} msg/s: p50 "
                f"{fmt_num(lp['latency_ms']['p50'])} ms, p99 {fmt_num(lp['latency_ms']['p99'])}"
                f" ms (n={lp['latency_ms']['n']})" if lp else ""))


def chart(rows: list[dict[str, Any]], refs: dict[str, dict[str, Any]], path: Path,
          when: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [*refs.values(), *rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8),
                                   gridspec_kw={"width_ratios": [1.1, 1]})
    names = [b["name"] for b in bars]
    vals = [b["msgs_per_s"] for b in bars]
    colors = {"ceiling": "#9e9e9e", "strawman": "#e57373"}
    bar = ax1.bar(names, vals, color=[colors.get(n, "#1e88e5") for n in names])
    for rect, b in zip(bar, bars, strict=True):
        lost = b["lost"]
        text = f"{b['msgs_per_s']:,.0f}\nlost {lost:,}"
        if not b.get("throughput_phase", {}).get("drained", True):
            text = f"{b['msgs_per_s']:,.0f}\nnot drained"
        ax1.annotate(text, (rect.get_x() + rect.get_width() / 2, rect.get_height()),
                     ha="center", va="bottom", fontsize=8, color="#c62828" if lost else "black")
    straw = refs.get("strawman", {}).get("msgs_per_s")
    if straw:
        ax1.axhline(2 * straw, ls="--", lw=1, color="#e57373")
        ax1.text(-0.4, 2 * straw, " 2× strawman (goal)", va="bottom", fontsize=8,
                 color="#c62828")
    ax1.set_ylabel("messages/s stored (delivered, for the ceiling)")
    ax1.set_title("QoS 1, 1,000 devices, ~90-byte payloads")
    ax1.set_ylim(0, max(vals) * 1.25)
    ax1.tick_params(axis="x", labelsize=8)
    for r in rows:
        tl = r["timeline"]
        xs = [t for t, _ in tl]
        ys = [v for _, v in tl]
        ax2.plot(xs, ys, label=f"{r['name']} stored")
    if rows:
        end = rows[0]["throughput_phase"]["seconds"]
        ax2.axvline(end, ls=":", lw=1, color="gray")
        ax2.text(end, 0, " publishing stops", fontsize=8, color="gray", va="bottom")
    ax2.set_xlabel("seconds since the first publish")
    ax2.set_ylabel("messages stored")
    ax2.set_title("throughput phase: stored over time")
    if rows:
        ax2.legend(fontsize=8)
    fig.suptitle(f"bench/ingest.py, {when}, 2-core machine", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ====================================================================== main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30, help="throughput phase length")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="ingest worker processes (wulian serve --workers)")
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both", "none"), default="both",
                    help="platform runs (none: the references only)")
    ap.add_argument("--skip-refs", action="store_true", help="no ceiling / strawman")
    ap.add_argument("--quick", action="store_true",
                    help="smoke: 10 s phases, 1 reference run each; recorded nowhere")
    ap.add_argument("--gen-procs", type=int, default=2, help="load generator processes")
    ap.add_argument("--window", type=int, default=32, help="QoS 1 in flight per device")
    ap.add_argument("--refill", type=int, default=1,
                    help="closed loop: publish again once this many window slots are free")
    ap.add_argument("--latency-load", type=float, default=0.5,
                    help="latency phase rate, as a fraction of the measured throughput")
    ap.add_argument("--latency-seconds", type=float, default=15)
    ap.add_argument("--poll-ms", type=float, default=20,
                    help="latency sampler poll interval in the latency phase (5x that in the "
                         "throughput phase, where latency is queueing and polls cost CPU)")
    ap.add_argument("--settle", type=float, default=3,
                    help="seconds between the devices connecting and the first publish")
    ap.add_argument("--drain-timeout", type=float, default=0,
                    help="after publishing, wait at most this long for the store to catch up "
                         "(default: max(300, 12 x --seconds))")
    ap.add_argument("--ceiling-runs", type=int, default=3)
    ap.add_argument("--ceiling-msgs", type=int, default=200_000)
    ap.add_argument("--strawman-runs", type=int, default=1)
    ap.add_argument("--strawman-seconds", type=float, default=15)
    ap.add_argument("--pg-admin", default=os.environ.get(
        "WULIAN_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="PostgreSQL DSN allowed to CREATE/DROP DATABASE (env WULIAN_BENCH_PG)")
    ap.add_argument("--no-chart", action="store_true")
    ap.add_argument("--no-record", action="store_true", help="do not append to results")
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    ap.add_argument("--profile", metavar="DIR",
                    help="py-spy record every ingest worker during the throughput phase and "
                         "its drain (folded stacks in DIR, a summary printed)")
    ap.add_argument("--orgs", type=int, default=0,
                    help="spread the devices over N organisations and run each backend twice: "
                    "without quotas, then with --device-rate and generous org limits")
    ap.add_argument("--device-rate", type=float, default=1000.0,
                    help="device_msgs_per_s of every organisation (with --orgs); keep it "
                    "above what the load sends per device so nothing is refused")
    ap.add_argument("--replot", action="store_true",
                    help="only redraw the chart from the last full run in the results file")
    a = ap.parse_args()
    if a.replot:
        last = [r for r in map(json.loads, RESULTS.read_text().splitlines())
                if r.get("test") == "ingest" and not r.get("quick")][-1]
        chart(last["platform"], last["refs"], CHART, last["at"].replace("T", " ")[:16])
        log(f"chart of the run at {last['at']}: {CHART.relative_to(ROOT)}")
        return 0
    if a.quick:
        a.seconds = min(a.seconds, 10)
        a.latency_seconds = min(a.latency_seconds, 5)
        a.ceiling_runs, a.ceiling_msgs = 1, min(a.ceiling_msgs, 100_000)
        a.strawman_runs, a.strawman_seconds = 1, min(a.strawman_seconds, 10)
    a.drain_timeout = a.drain_timeout or max(300.0, 12 * a.seconds)
    when = time.strftime("%Y-%m-%d %H:%M")
    load_start = os.getloadavg()
    log(f"bench/ingest.py {when}: load average {load_start[0]:.2f}, {os.cpu_count()} cores, "
        f"commit {git_commit()}")
    refs: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="wulian-bench-refs-") as tmp:
        if not a.skip_refs:
            refs["ceiling"] = ceiling(Path(tmp), a.ceiling_runs, a.ceiling_msgs)
            refs["strawman"] = strawman(Path(tmp), a.strawman_runs, a.strawman_seconds)
    kinds = {"both": ["sqlite", "postgres"], "none": []}.get(a.backend, [a.backend])
    fleet = Fleet(password=secrets.token_urlsafe(24))
    failed = False
    runs: list[dict[str, Any] | None] = [None]
    if a.orgs:
        # every check on the path active, none ever refusing: what the limits cost
        runs = [{}, {"device_msgs_per_s": a.device_rate, "msgs_per_s": 1e9,
                     "bytes_per_day": 10**15}]
    for kind in kinds:
        for quotas in runs:
            try:
                rows.append(run_platform(a, kind, fleet, quotas))
            except Exception as exc:
                failed = True
                log(f"{kind}: FAILED: {type(exc).__name__}: {exc}")
    if a.orgs:
        quota_report(rows)
    if fleet.dynsec is not None:
        shutil.rmtree(fleet.dynsec.parent, ignore_errors=True)
    if not rows and not refs:
        return 1
    report(rows, refs)
    straw = refs.get("strawman", {}).get("msgs_per_s")
    ceil = refs.get("ceiling", {}).get("msgs_per_s")
    record = {"test": "ingest", "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "commit": git_commit(), "quick": a.quick, "loadavg_start": load_start,
              "loadavg_end": os.getloadavg(), "refs": refs,
              "platform": [{**r, "vs_strawman": r["msgs_per_s"] / straw if straw else None,
                            "vs_ceiling": r["msgs_per_s"] / ceil if ceil else None}
                           for r in rows]}
    if not a.no_record and not a.quick:  # a smoke run is not a result
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(RESULTS, "a") as f:
            f.write(json.dumps(record) + "\n")
        log(f"appended to {RESULTS.relative_to(ROOT)}")
    if not a.no_chart and not a.quick:
        chart(rows, refs, CHART, when)
        log(f"chart: {CHART.relative_to(ROOT)}")
    lost = any(r["lost"] for r in rows)
    return 1 if failed or lost else 0


if __name__ == "__main__":
    sys.exit(main())
