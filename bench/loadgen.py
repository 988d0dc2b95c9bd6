#!/usr/bin/env python3
"""bench/loadgen.py - QoS 1 telemetry from N simulated devices, each with its own broker login.

What it does
  `--procs` worker processes share the devices; each process drives its ~N/procs devices as
  raw MQTT 3.1.1 connections on one asyncio (uvloop) event loop. Every device connects with
  its own credentials (client id = username = device id, password = its secret), publishes
  QoS 1 to `devices/{id}/telemetry` and keeps at most `--window` PUBLISHes in flight. A
  PUBACK is matched to its packet id on that connection and counted exactly once; the
  timestamp of every acknowledged message is kept per device, so the bench can compare
  what the broker acknowledged with what the platform stored, message by message.

Payload (bench/product.json, thing model `bench-env`, 5 properties, 88-91 bytes):
  {"ts":1732480000123,"temperature":21.53,"humidity":40.1,"pm25":12,"co2":415,"noise":38.2}
  `ts` is the wall clock in ms at publish, forced strictly increasing per device, so every
  message of a device has a distinct ts and duplicate suppression cannot hide a loss.

Rate: `--rate 0` (default) is closed-loop, as fast as PUBACKs come back: a device sends again
  as soon as its window has `--refill` free slots (1 = one message per write, like a real
  device; larger values put several PUBLISHes in one TCP write). `--rate R` paces the total
  to R msg/s (every device gets R/N msg/s). Either way it stops publishing after
  `--seconds`, then waits at most `--drain-timeout` s for the outstanding PUBACKs.

Latency sampling: for the devices named in `sampled`, every (device, ts, publish wall ms)
  goes to the parent through a queue; bench/ingest.py polls the store for them.

Why a hand-written MQTT publisher (and not a library)
  paho-mqtt spends ~100 us of Python per QoS 1 message (one publisher process tops out
  near 10,000 msg/s here) and needs one thread per client, which rules out 1,000 logins;
  aiomqtt is no faster (11,300 msg/s as the reference's subscriber). Debian's C
  `mosquitto_pub -l` is fast, but publishes one topic per process (so 1,000 devices would
  be 1,000 processes) and loses messages at QoS 1 once its 16-bit message ids wrap (see
  ../shared/reference-bench/README.md). The client side of MQTT 3.1.1 that a QoS 1
  publisher needs is four packets (CONNECT/CONNACK, PUBLISH/PUBACK, plus PINGREQ and
  DISCONNECT), so this file writes them directly: pre-encoded headers, topics and packet
  ids, one `transport.write` per refill, and PUBACK parsing on 4-byte frames. That keeps
  the generator's cost near 10 us per message: measured 111-116k msg/s acknowledged by
  Mosquitto alone on this 2-core machine (docs/benchmarks.md), several times what any
  ingest path here sustains.

Standalone check of the generator (private Mosquitto, anonymous, raised queue limits):
  uv run python bench/loadgen.py --selftest --seconds 10              # broker only
  uv run python bench/loadgen.py --selftest --seconds 10 --c-sub      # + mosquitto_sub on
                                                                      #   devices/+/telemetry
Against any broker:  --port P --creds FILE (JSON lines {"id":..., "secret":...}).
As a library (bench/ingest.py): LoadGen(cfg, creds).start() connects every device, then
each run(seconds, rate) is one phase on the same connections, close() disconnects.
Bounded: connecting 60 s, publishing `--seconds`, draining `--drain-timeout`, a worker
waiting for its next phase 900 s. Only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import queue
import random
import signal
import subprocess
import tempfile
import threading
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
PRODUCT_FILE = Path(__file__).with_name("product.json")
PRODUCT_ID = "bench-env"
PROPS = ("temperature", "humidity", "pm25", "co2", "noise")
TOPIC = "devices/{id}/telemetry"

Cred = tuple[str, str | None]  # (device id, secret or None for an anonymous broker)


def device_ids(n: int) -> list[str]:
    """The bench's device ids: bench-0000, bench-0001, ..."""
    return [f"bench-{i:04d}" for i in range(n)]


def product_doc() -> dict[str, Any]:
    """The bench product's thing model (bench/product.json)."""
    doc: dict[str, Any] = json.loads(PRODUCT_FILE.read_text())
    return doc


# ------------------------------------------------------------------ MQTT 3.1.1 encoding
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _mqtt_str(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


def connect_packet(client_id: str, username: str | None, password: str | None,
                   keepalive: int) -> bytes:
    """CONNECT, MQTT 3.1.1, clean session."""
    flags = 0x02
    payload = _mqtt_str(client_id.encode())
    if username is not None:
        flags |= 0x80
        payload += _mqtt_str(username.encode())
    if password is not None:
        flags |= 0x40
        payload += _mqtt_str(password.encode())
    body = b"\x00\x04MQTT\x04" + bytes((flags,)) + keepalive.to_bytes(2, "big") + payload
    return b"\x10" + _varint(len(body)) + body


PUBLISH_QOS1_HDR = [b"\x32" + _varint(n) for n in range(16384)]  # by remaining length
PACKET_IDS = [i.to_bytes(2, "big") for i in range(65536)]
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


def value_bodies(seed: int, n: int = 64) -> list[bytes]:
    """`n` plausible property sets (the payload after `{"ts":...,`), valid for bench-env."""
    rnd = random.Random(seed)
    return [b'"temperature":%.2f,"humidity":%.1f,"pm25":%d,"co2":%d,"noise":%.1f}' % (
        rnd.uniform(15, 30), rnd.uniform(20, 80), rnd.randint(3, 150), rnd.randint(380, 1500),
        rnd.uniform(30, 70)) for _ in range(n)]


def sample_payload(ts: int = 1_732_480_000_123) -> bytes:
    return b'{"ts":%d,%s' % (ts, value_bodies(0, 1)[0])


# ------------------------------------------------------------------ configuration / results
@dataclass
class GenConfig:
    port: int
    window: int = 32  # PUBLISHes in flight per connection
    refill: int = 1  # closed loop: send again once this many window slots are free
    host: str = HOST
    keepalive: int = 60
    connect_timeout: float = 60.0
    go_timeout: float = 900.0  # a worker waits this long for its next phase, then quits
    drain_timeout: float = 30.0  # after the last publish, wait this long for PUBACKs
    connect_concurrency: int = 64
    topic: str = TOPIC


@dataclass
class DeviceResult:
    published: int
    acked: int
    acked_ts: array  # type: ignore[type-arg]  # array('q') of the acknowledged ts, in order
    unacked: int  # published, no PUBACK (connection lost or drain timed out)


@dataclass
class GenResult:
    devices: dict[str, DeviceResult]
    t_go: float  # wall clock when publishing started
    t_first_pub: float
    t_last_pub: float
    t_last_ack: float
    procs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def published(self) -> int:
        return sum(d.published for d in self.devices.values())

    @property
    def acked(self) -> int:
        return sum(d.acked for d in self.devices.values())

    @property
    def unacked(self) -> int:
        return sum(d.unacked for d in self.devices.values())

    @property
    def cpu_s(self) -> float:
        return float(sum(p["cpu_s"] for p in self.procs))

    def offered_per_s(self) -> float:
        span = self.t_last_pub - self.t_first_pub
        return self.published / span if span > 0 else 0.0

    def acked_per_s(self) -> float:
        span = self.t_last_ack - self.t_first_pub
        return self.acked / span if span > 0 else 0.0


# ------------------------------------------------------------------ one process
class _Conn(asyncio.Protocol):
    """One device: a raw MQTT connection publishing QoS 1 with a bounded window."""

    def __init__(self, gen: _Gen, device_id: str, secret: str | None, sampled: bool) -> None:
        self.gen = gen
        self.device_id = device_id
        self.secret = secret
        self.sampled = sampled
        self.topic = _mqtt_str(gen.cfg.topic.format(id=device_id).encode())
        self.rl_base = len(self.topic) + 2  # remaining length without the payload
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[int] = gen.loop.create_future()
        self.ok = False
        self.error = ""
        self.buf = b""
        self.inflight: dict[int, int] = {}  # packet id -> ts
        self.next_pid = 1
        self.last_ts = 0
        self.published = 0
        self.acked = 0
        self.acked_ts: array = array("q")  # type: ignore[type-arg]
        self.bad_acks = 0
        self.paused = False
        self.last_send = time.monotonic()
        self.seq = random.randrange(64)

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tr: asyncio.Transport = transport  # type: ignore[assignment]  # uvloop's: no subclass
        self.transport = tr
        user = self.device_id if self.secret is not None else None
        tr.write(connect_packet(self.device_id, user, self.secret,
                                       self.gen.cfg.keepalive))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ok and not self.gen.closing:
            self.gen.disconnects += 1
        self.ok = False
        self.transport = None
        if not self.connack.done():
            self.connack.set_exception(ConnectionError(f"closed: {exc}"))

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self.gen.refill(self)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        n, i, freed = len(buf), 0, 0
        inflight = self.inflight
        while i + 2 <= n:
            ptype, rl = buf[i], buf[i + 1]
            if rl & 0x80:  # nothing a broker sends a publisher is that long
                self.gen.protocol_errors += 1
                self._abort("unexpected long packet")
                return
            if i + 2 + rl > n:
                break
            if ptype == 0x40 and rl == 2:  # PUBACK
                ts = inflight.pop((buf[i + 2] << 8) | buf[i + 3], None)
                if ts is None:
                    self.bad_acks += 1
                else:
                    self.acked += 1
                    self.acked_ts.append(ts)
                    freed += 1
            elif ptype == 0x20 and rl == 2:  # CONNACK
                rc = buf[i + 3]
                self.ok = rc == 0
                if not self.connack.done():
                    self.connack.set_result(rc)
            elif ptype != 0xD0:  # anything but PINGRESP
                self.gen.protocol_errors += 1
            i += 2 + rl
        self.buf = buf[i:] if i < n else b""
        if freed:
            self.gen.last_ack = time.time()
            if self.gen.closed_loop and self.gen.running:
                self.gen.refill(self)

    def _abort(self, why: str) -> None:
        self.error = why
        if self.transport is not None:
            self.transport.abort()


class _Gen:
    """The publishing side of one worker process."""

    def __init__(self, cfg: GenConfig, loop: asyncio.AbstractEventLoop, seed: int) -> None:
        self.cfg = cfg
        self.loop = loop
        self.closed_loop = True  # set per phase
        self.running = False
        self.closing = False
        self.bodies = value_bodies(seed)
        self.samples: list[tuple[str, int, float]] = []
        self.disconnects = 0
        self.protocol_errors = 0
        self.last_ack = 0.0
        self.first_pub = 0.0

    def refill(self, c: _Conn) -> None:
        room = self.cfg.window - len(c.inflight)
        if room >= self.cfg.refill:
            self.send(c, room)

    def send(self, c: _Conn, k: int) -> None:
        """Publish `k` messages on `c` in one write."""
        tr = c.transport
        if tr is None or not c.ok or c.paused or k <= 0:
            return
        now = time.time()
        now_ms = int(now * 1000)
        parts: list[bytes] = []
        inflight, bodies, hdr, pids = c.inflight, self.bodies, PUBLISH_QOS1_HDR, PACKET_IDS
        topic, rl_base = c.topic, c.rl_base
        ts, pid, seq = c.last_ts, c.next_pid, c.seq
        for _ in range(k):
            ts = now_ms if now_ms > ts else ts + 1
            while pid in inflight:  # never reuse an id still in flight
                pid = pid + 1 if pid < 65535 else 1
            payload = b'{"ts":%d,%s' % (ts, bodies[seq & 63])
            seq += 1
            parts += (hdr[rl_base + len(payload)], topic, pids[pid], payload)
            inflight[pid] = ts
            if c.sampled:
                self.samples.append((c.device_id, ts, now * 1000.0))
            pid = pid + 1 if pid < 65535 else 1
        c.last_ts, c.next_pid, c.seq = ts, pid, seq
        c.published += k
        c.last_send = time.monotonic()
        tr.write(b"".join(parts))


async def _amain(idx: int, cfg: GenConfig, creds: Sequence[Cred], sampled: frozenset[str],
                 ctl_q: Any, ready_q: Any, sample_q: Any, result_q: Any) -> None:
    loop = asyncio.get_running_loop()
    gen = _Gen(cfg, loop, seed=idx)
    conns = [_Conn(gen, dev, secret, dev in sampled) for dev, secret in creds]
    sem = asyncio.Semaphore(cfg.connect_concurrency)
    deadline = time.monotonic() + cfg.connect_timeout

    async def open_one(c: _Conn) -> None:
        async with sem:
            left = max(0.1, deadline - time.monotonic())
            try:
                await asyncio.wait_for(loop.create_connection(lambda: c, cfg.host, cfg.port),
                                       left)
                rc = await asyncio.wait_for(c.connack, max(0.1, deadline - time.monotonic()))
                if rc:
                    c.error = f"CONNACK return code {rc}"
            except (TimeoutError, OSError, ConnectionError) as exc:
                c.error = c.error or f"{type(exc).__name__}: {exc}"

    await asyncio.gather(*(open_one(c) for c in conns))
    failed = [(c.device_id, c.error or "not connected") for c in conns if not c.ok]
    ready_q.put((idx, len(conns) - len(failed), failed[:10], len(failed)))
    if failed:
        return

    async def keepalive() -> None:
        while True:
            await asyncio.sleep(cfg.keepalive / 3)
            stale = time.monotonic() - cfg.keepalive / 3
            for c in conns:
                if c.transport is not None and c.last_send < stale:
                    c.transport.write(PINGREQ)
                    c.last_send = time.monotonic()

    pinger = asyncio.create_task(keepalive())
    try:
        for _ in range(1000):  # phases; bounded
            cmd = await _next_command(ctl_q, cfg.go_timeout)
            if cmd is None or cmd[0] != "run":
                break
            _, t_start, seconds, rate = cmd
            result_q.put(await _phase(gen, conns, t_start, seconds, rate, sample_q))
    finally:
        pinger.cancel()
        gen.closing = True
        for c in conns:
            if c.transport is not None:
                c.transport.write(DISCONNECT)
                c.transport.close()
        await asyncio.sleep(0.05)


async def _next_command(ctl_q: Any, timeout: float) -> tuple[Any, ...] | None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            cmd: tuple[Any, ...] = ctl_q.get_nowait()
            return cmd
        except queue.Empty:
            await asyncio.sleep(0.002)
    return None


async def _phase(gen: _Gen, conns: list[_Conn], t_start: float, seconds: float, rate: float,
                 sample_q: Any) -> dict[str, Any]:
    """Publish for `seconds` from wall time `t_start` (rate 0: closed loop), then drain."""
    cfg = gen.cfg
    live = [c for c in conns if c.ok]
    base = {c.device_id: (c.published, c.acked) for c in conns}
    for c in conns:
        c.acked_ts = array("q")
    await asyncio.sleep(max(0.0, t_start - time.time()))
    t_go = time.time()
    cpu0 = time.process_time()
    gen.closed_loop = rate <= 0
    gen.running = True
    t0 = time.monotonic()
    end = t0 + seconds

    def flush_samples() -> None:
        if gen.samples:
            sample_q.put(gen.samples)
            gen.samples = []

    if gen.closed_loop:
        for c in live:
            gen.send(c, cfg.window - len(c.inflight))
        while time.monotonic() < end:
            await asyncio.sleep(min(0.1, max(0.0, end - time.monotonic())))
            flush_samples()
    else:
        # `rate` is this process's share (LoadGen splits it); each device gets an equal
        # part, with a random phase so that the devices do not all fire on one tick.
        per_conn = rate / max(1, len(live))
        jitter = {c.device_id: random.random() for c in live}
        next_flush = t0 + 0.1
        while True:
            now = time.monotonic()
            if now >= end:
                break
            due_total = per_conn * (now - t0)
            for c in live:
                sent = c.published - base[c.device_id][0]
                due = int(due_total + jitter[c.device_id]) - sent
                if due > 0:
                    gen.send(c, min(due, cfg.window - len(c.inflight)))
            if now >= next_flush:
                flush_samples()
                next_flush = now + 0.1
            await asyncio.sleep(0.01)
    gen.running = False
    t_last_pub = time.time()
    drain_end = time.monotonic() + cfg.drain_timeout
    while time.monotonic() < drain_end and any(c.inflight and c.transport for c in live):
        await asyncio.sleep(0.01)
    flush_samples()
    cpu = time.process_time() - cpu0
    devices = {c.device_id: DeviceResult(c.published - base[c.device_id][0],
                                         c.acked - base[c.device_id][1], c.acked_ts,
                                         len(c.inflight))
               for c in conns}
    return {
        "idx": os.getpid(), "aborted": False, "pid": os.getpid(), "devices": devices,
        "t_go": t_go, "t_first_pub": t_go, "t_last_pub": t_last_pub,
        "t_last_ack": gen.last_ack or t_last_pub, "cpu_s": cpu,
        "disconnects": gen.disconnects, "protocol_errors": gen.protocol_errors,
        "bad_acks": sum(c.bad_acks for c in conns),
    }


def _worker(idx: int, cfg: GenConfig, creds: Sequence[Cred], sampled: frozenset[str],
            ctl_q: Any, ready_q: Any, sample_q: Any, result_q: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        runner = asyncio.run
    try:
        runner(_amain(idx, cfg, creds, sampled, ctl_q, ready_q, sample_q, result_q))
    except BaseException as exc:  # report, never hang the parent
        error = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            ready_q.put((idx, 0, [("*", error)], len(creds)))
            result_q.put({"idx": idx, "aborted": True, "error": error})


# ------------------------------------------------------------------ the parent's handle
class LoadGenError(RuntimeError):
    pass


class LoadGen:
    """`procs` worker processes holding every device's connection across phases.

    start() connects all devices (raises if any cannot log in); run(seconds, rate) is one
    phase (all workers start on the same wall-clock instant) and returns its GenResult;
    close() disconnects. Devices stay connected between phases.
    """

    def __init__(self, cfg: GenConfig, creds: Sequence[Cred], *, procs: int = 2,
                 sampled: Sequence[str] = ()) -> None:
        self.cfg = cfg
        self.creds = list(creds)
        self.nprocs = max(1, min(procs, len(self.creds)))
        self.sampled = frozenset(sampled)
        ctx = mp.get_context("spawn")
        self._ctx = ctx
        self._ctl: list[Any] = []
        self._ready: Any = ctx.Queue()
        self._samples: Any = ctx.Queue()
        self._results: Any = ctx.Queue()
        self._shares: list[float] = []
        self.procs: list[Any] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def start(self) -> None:
        """Spawn the workers and wait until every device is connected (or raise)."""
        per = [self.creds[i::self.nprocs] for i in range(self.nprocs)]
        for i, chunk in enumerate(per):
            ctl = self._ctx.Queue()
            self._ctl.append(ctl)
            self._shares.append(len(chunk) / len(self.creds))
            p = self._ctx.Process(target=_worker, name=f"loadgen-{i}", daemon=True,
                                  args=(i, self.cfg, chunk, self.sampled, ctl, self._ready,
                                        self._samples, self._results))
            p.start()
            self.procs.append(p)
        failures, nfailed = [], 0
        deadline = time.monotonic() + self.cfg.connect_timeout + 30
        for _ in self.procs:
            try:
                _, _ok, fail, nfail = self._ready.get(
                    timeout=max(1, deadline - time.monotonic()))
            except queue.Empty:
                self.close()
                raise LoadGenError("load generator workers did not report in time") from None
            failures += fail
            nfailed += nfail
        if nfailed:
            self.close()
            raise LoadGenError(f"{nfailed} of {len(self.creds)} devices could not connect, "
                               f"e.g. {failures[:3]}")

    def run(self, seconds: float, rate: float = 0.0) -> GenResult:
        """One phase: publish for `seconds` (rate 0: closed loop), wait for the PUBACKs."""
        t_start = time.time() + 0.05
        for ctl, share in zip(self._ctl, self._shares, strict=True):
            ctl.put(("run", t_start, seconds, rate * share))
        deadline = time.monotonic() + seconds + self.cfg.drain_timeout + 60
        results = []
        for _ in self.procs:
            try:
                results.append(self._results.get(timeout=max(1, deadline - time.monotonic())))
            except queue.Empty:
                self.close()
                raise LoadGenError("load generator workers did not finish in time") from None
        bad = [r for r in results if r.get("aborted")]
        if bad:
            self.close()
            raise LoadGenError(f"load generator worker failed: {bad[0].get('error', bad[0])}")
        devices: dict[str, DeviceResult] = {}
        for r in results:
            devices.update(r.pop("devices"))
        return GenResult(
            devices=devices, t_go=min(r["t_go"] for r in results),
            t_first_pub=min(r["t_first_pub"] for r in results),
            t_last_pub=max(r["t_last_pub"] for r in results),
            t_last_ack=max(r["t_last_ack"] for r in results), procs=results)

    def samples(self) -> list[tuple[str, int, float]]:
        """(device, ts, publish wall ms) of sampled messages published since the last call."""
        out: list[tuple[str, int, float]] = []
        for _ in range(10_000):
            try:
                out += self._samples.get_nowait()
            except queue.Empty:
                break
        return out

    def close(self) -> None:
        """Disconnect every device and end the workers (by PID)."""
        for ctl in self._ctl:
            with contextlib.suppress(Exception):
                ctl.put(("stop",))
        for p in self.procs:
            p.join(10)
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGKILL)


# ------------------------------------------------------------------ self test
def _start_mosquitto(port: int) -> tuple[subprocess.Popen[bytes], str]:
    with tempfile.NamedTemporaryFile("w", suffix=".conf", prefix="loadgen-mosq-",
                                     delete=False) as conf:
        conf.write(f"listener {port} {HOST}\nallow_anonymous true\npersistence false\n"
                   "log_dest none\nmax_queued_messages 1000000\nmax_inflight_messages 100\n")
    proc = subprocess.Popen(["mosquitto", "-c", conf.name], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, conf.name


def wait_port(port: int, timeout: float = 15.0) -> None:
    """Return once something listens on HOST:port; RuntimeError after `timeout`."""
    import socket

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def selftest(a: argparse.Namespace) -> dict[str, Any]:
    """The generator alone against a private Mosquitto (+ optionally a C subscriber)."""
    import psutil

    port = a.port or free_port()
    broker, conf = _start_mosquitto(port)
    sub: subprocess.Popen[bytes] | None = None
    got = [0]
    last_rx = [0.0]
    try:
        if a.c_sub:
            sub = subprocess.Popen(
                ["mosquitto_sub", "-h", HOST, "-p", str(port), "-q", "1", "-t",
                 "devices/+/telemetry", "-W", str(int(a.seconds + a.drain_timeout + 60))],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            stream = sub.stdout
            assert stream is not None

            def count() -> None:
                for _ in stream:
                    got[0] += 1
                    last_rx[0] = time.time()

            threading.Thread(target=count, daemon=True).start()
            time.sleep(0.5)
        creds: list[Cred] = [(d, None) for d in device_ids(a.devices)]
        cfg = GenConfig(port=port, window=a.window,
                        refill=a.refill, drain_timeout=a.drain_timeout)
        gen = LoadGen(cfg, creds, procs=a.procs)
        t_conn = time.monotonic()
        gen.start()
        conn_s = time.monotonic() - t_conn
        bp = psutil.Process(broker.pid)
        b0 = sum(bp.cpu_times()[:2])
        s0 = sum(psutil.Process(sub.pid).cpu_times()[:2]) if sub else 0.0
        try:
            res = gen.run(a.seconds, a.rate)
        finally:
            gen.close()
        b1 = sum(bp.cpu_times()[:2])
        span = res.t_last_ack - res.t_first_pub
        s1 = 0.0
        if sub:  # let the subscriber catch up (bounded), then count
            end = time.monotonic() + a.drain_timeout
            while got[0] < res.acked and time.monotonic() < end:
                time.sleep(0.05)
            s1 = sum(psutil.Process(sub.pid).cpu_times()[:2])
        out = {
            "devices": a.devices, "procs": gen.nprocs, "window": a.window, "refill": a.refill,
            "rate": a.rate, "seconds": a.seconds, "connect_s": round(conn_s, 2),
            "published": res.published, "acked": res.acked, "unacked": res.unacked,
            "offered_per_s": round(res.offered_per_s()),
            "acked_per_s": round(res.acked_per_s()),
            "gen_cpu_pct": round(100 * res.cpu_s / span, 1),
            "broker_cpu_pct": round(100 * (b1 - b0) / span, 1),
            "disconnects": sum(p["disconnects"] for p in res.procs),
            "protocol_errors": sum(p["protocol_errors"] for p in res.procs),
        }
        if sub:
            out["c_sub_received"] = got[0]
            sub_span = max(1e-9, last_rx[0] - res.t_first_pub)
            out["c_sub_cpu_pct"] = round(100 * (s1 - s0) / sub_span, 1)
            out["c_sub_per_s"] = round(got[0] / sub_span)
        return out
    finally:
        _stop(sub)
        _stop(broker)
        os.unlink(conf)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--selftest", action="store_true",
                    help="start a private anonymous Mosquitto and measure the generator alone")
    ap.add_argument("--c-sub", action="store_true", help="selftest: add mosquitto_sub -q 1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--creds", help="JSON lines {id, secret}; default: anonymous bench-NNNN")
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rate", type=float, default=0, help="total msg/s; 0 = closed loop")
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--refill", type=int, default=1)
    ap.add_argument("--drain-timeout", type=float, default=30)
    a = ap.parse_args()
    if a.selftest:
        print(json.dumps(selftest(a)))
        return
    if not a.port:
        ap.error("--port is required without --selftest")
    creds: list[Cred]
    if a.creds:
        rows = [json.loads(line) for line in Path(a.creds).read_text().splitlines() if line]
        creds = [(r["id"], r.get("secret")) for r in rows][: a.devices]
    else:
        creds = [(d, None) for d in device_ids(a.devices)]
    cfg = GenConfig(port=a.port, window=a.window,
                    refill=a.refill, drain_timeout=a.drain_timeout)
    gen = LoadGen(cfg, creds, procs=a.procs)
    gen.start()
    try:
        res = gen.run(a.seconds, a.rate)
    finally:
        gen.close()
    print(json.dumps({"published": res.published, "acked": res.acked, "unacked": res.unacked,
                      "offered_per_s": round(res.offered_per_s()),
                      "acked_per_s": round(res.acked_per_s()),
                      "gen_cpu_s": round(res.cpu_s, 2)}))


if __name__ == "__main__":
    main()
