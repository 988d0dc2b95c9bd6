"""A fleet of simulated devices reporting over real MQTT, each with its own credentials.

Every device is one MQTT session (the broker authenticates each), but sessions are driven
from a few threads with `selectors` instead of one network thread per paho client, so a
thousand devices cost a handful of threads. The fleet counts; it prints nothing.

One device's failure stays that device's: an exception from its sampler, its paho client
or its socket is logged, the device is restarted (a fresh session, after the usual
backoff) and the thread carries on with the others; a failure of the thread itself
restarts the thread's devices.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
import random
import selectors
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from paho.mqtt.enums import MQTTErrorCode

from wulian.sdk.device import ConnectionRefused, Device, PlatformError, SdkError
from wulian.sim.products import DEFAULT_BAD_RATE, Product

log = logging.getLogger(__name__)
DEVICES_PER_THREAD = 50
MAX_THREADS = 8
MAX_OUTSTANDING = 100  # unacknowledged messages per device before it skips a reading
RETRY_S = (1.0, 30.0)  # reconnect backoff: first and longest wait
FLUSH_S = 3.0  # how long stop() waits for the last acknowledgements
LOUD_CRASHES = 3  # a device's first failures are logged with their traceback, then fewer


@dataclass(frozen=True, slots=True)
class FleetDevice:
    """One simulated device: its credentials, its product and its index in the fleet."""

    id: str
    secret: str
    product: Product
    index: int = 0


@dataclass(frozen=True, slots=True)
class FleetStats:
    devices: int
    connected: int = 0
    sent: int = 0  # telemetry messages
    acked: int = 0  # PUBACKs, for telemetry and events
    events_sent: int = 0
    errors_received: int = 0
    skipped: int = 0  # readings not sent because the broker was not keeping up
    connect_failures: int = 0
    refused: int = 0  # CONNACK refusals (bad secret, disabled device)
    crashes: int = 0  # unexpected exceptions, each followed by a restart of that device


@dataclass(eq=False)
class _Member:
    spec: FleetDevice
    device: Device
    rng: random.Random
    sock: socket.socket | None = None  # registered with the selector while not None
    up: bool = False  # CONNACK accepted
    connect_by: float = 0.0  # deadline of the CONNACK while connecting
    retry_s: float = RETRY_S[0]
    reconnect_at: float = 0.0
    sent: int = 0
    events: int = 0
    skipped: int = 0
    failures: int = 0
    refusals: int = 0
    crashes: int = 0
    acked_before: int = 0  # counts of the sessions replaced by a restart
    errors_before: int = 0

    @property
    def acked(self) -> int:
        return self.acked_before + self.device.acked

    @property
    def errors_received(self) -> int:
        return self.errors_before + self.device.errors_received


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    member: _Member = field(compare=False)


class _Shard(threading.Thread):
    """Drives the sessions of some devices: connects, samples, publishes, reads acks."""

    def __init__(self, fleet: Fleet, members: list[_Member], number: int) -> None:
        super().__init__(name=f"wulian-fleet-{number}", daemon=True)
        self.fleet = fleet
        self.members = members
        self.selector = selectors.DefaultSelector()
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                try:
                    self._run()
                    return
                except Exception:  # not one device's: start the thread's devices afresh
                    log.exception("fleet shard %s failed; restarting its devices", self.name)
                    self._restart_all()
                    self.halt.wait(RETRY_S[0])
        finally:
            self._close()
            self.selector.close()

    def _restart_all(self) -> None:
        for member in self.members:
            try:
                self._restart(member)
            except Exception:
                log.exception("fleet: %s could not be restarted", member.spec.id)
        self.selector.close()
        self.selector = selectors.DefaultSelector()

    def _run(self) -> None:
        period = 1.0 / self.fleet.rate_hz
        start = time.monotonic()
        heap: list[_Due] = []
        for seq, member in enumerate(self.members):
            # Spread the first readings over one period so the fleet does not beat in step.
            heapq.heappush(heap, _Due(start + member.rng.uniform(0, period), seq, member))
        next_misc = start
        while not self.halt.is_set():
            now = time.monotonic()
            for member in self.members:
                try:
                    if member.sock is None and member.reconnect_at <= now:
                        self._begin_connect(member)
                    elif member.sock is not None and not member.up:
                        self._check_connack(member, now)
                except Exception:
                    self._crashed(member)
            while heap and heap[0].at <= now:
                due = heapq.heappop(heap)
                try:
                    self._report(due.member)
                except Exception:
                    self._crashed(due.member)
                # Fixed cadence; when far behind, skip ahead rather than burst.
                due.at = due.at + period if now - due.at < period else now + period
                heapq.heappush(heap, due)
            if now >= next_misc:
                for member in self.members:
                    try:
                        if member.up and member.device.client.loop_misc() != \
                                MQTTErrorCode.MQTT_ERR_SUCCESS:
                            self._lost(member)
                    except Exception:
                        self._crashed(member)
                next_misc = now + 1.0
            wait = min((heap[0].at if heap else now + 1.0), next_misc) - time.monotonic()
            self._pump(max(0.0, min(wait, 0.1)))
        self._flush()

    def _begin_connect(self, member: _Member) -> None:
        """Send CONNECT without waiting: the CONNACKs of many devices are awaited together."""
        try:
            member.device.begin_connect()
        except SdkError as exc:
            log.debug("fleet: %s: %s", member.spec.id, exc)
            self._failed(member)
            return
        sock = member.device.client.socket()
        if not isinstance(sock, socket.socket):
            self._failed(member)
            return
        member.sock = sock
        member.connect_by = time.monotonic() + self.fleet.connect_timeout
        self.selector.register(sock, selectors.EVENT_READ, member)

    def _check_connack(self, member: _Member, now: float) -> None:
        try:
            if member.device.check_connack():
                member.up = True
                member.retry_s = RETRY_S[0]
            elif now > member.connect_by:
                self._drop(member)
                self._failed(member)
        except ConnectionRefused as exc:
            log.warning("fleet: %s", exc)
            self._drop(member)
            member.refusals += 1
            self._retry(member, RETRY_S[1])  # a refusal will not change by itself soon

    def _failed(self, member: _Member) -> None:
        member.failures += 1
        self._retry(member, member.retry_s)
        member.retry_s = min(member.retry_s * 2, RETRY_S[1])

    def _retry(self, member: _Member, delay: float) -> None:
        member.reconnect_at = time.monotonic() + delay * random.uniform(0.8, 1.2)

    def _drop(self, member: _Member) -> None:
        """Forget the member's socket (closing the session if it is still open)."""
        if member.sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(member.sock)
        member.device.client.disconnect()
        member.sock = None
        member.up = False

    def _lost(self, member: _Member) -> None:
        self._drop(member)
        self._failed(member)

    def _crashed(self, member: _Member) -> None:
        """An unexpected exception from one device (called in its `except`): log, restart it."""
        member.crashes += 1
        if member.crashes <= LOUD_CRASHES or member.crashes % 1000 == 0:
            log.exception("fleet: device %s failed (%d times); restarting it",
                          member.spec.id, member.crashes)
        else:
            log.debug("fleet: device %s failed again", member.spec.id, exc_info=True)
        try:
            self._restart(member)
        except Exception:
            log.exception("fleet: %s could not be restarted", member.spec.id)
        self._failed(member)

    def _restart(self, member: _Member) -> None:
        """Forget the device's session whatever state it is in; a fresh one connects later."""
        if member.sock is not None:
            with contextlib.suppress(Exception):
                self.selector.unregister(member.sock)
        old = member.device
        with contextlib.suppress(Exception):
            old.client.disconnect()
        with contextlib.suppress(Exception):
            sock = old.client.socket()
            if sock is not None:
                sock.close()
        # swap first: stats() read meanwhile may miss the old session's counts, never
        # count them twice
        member.device = self.fleet.new_device(member.spec)
        member.acked_before += old.acked
        member.errors_before += old.errors_received
        member.sock = None
        member.up = False

    def _report(self, member: _Member) -> None:
        if not member.up:
            return
        device = member.device
        if device.outstanding >= MAX_OUTSTANDING:
            member.skipped += 1
            return
        now_ms = time.time_ns() // 1_000_000
        spec = member.spec
        # the event comes from the clean sample; a deliberately spoiled value only goes out
        values, event = spec.product.reading(spec.index, now_ms, member.rng,
                                             bad_rate=self.fleet.bad_rate)
        try:
            device.publish_telemetry(values, ts=now_ms, qos=self.fleet.qos)
            member.sent += 1
            if event is not None:
                device.publish_event(event[0], event[1], qos=self.fleet.qos, ts=now_ms)
                member.events += 1
        except SdkError:
            self._lost(member)

    def _pump(self, timeout: float) -> None:
        """Wait for socket activity up to `timeout` and let paho read and write."""
        for member in self.members:
            try:
                client = member.device.client
                if member.sock is not None and client.want_write() and \
                        client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    self._lost(member)
            except Exception:
                self._crashed(member)
        if not self.selector.get_map():
            time.sleep(timeout)
            return
        for key, _ in self.selector.select(timeout):
            member = key.data
            try:
                self._read(member)
            except Exception:
                self._crashed(member)

    def _read(self, member: _Member) -> None:
        if member.sock is not None and \
                member.device.client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            if member.up:
                self._lost(member)
            else:
                self._check_connack(member, time.monotonic())  # refused, then closed
                if member.sock is not None:
                    self._lost(member)

    def _flush(self) -> None:
        deadline = time.monotonic() + FLUSH_S
        while time.monotonic() < deadline and any(
                m.up and m.device.outstanding for m in self.members):
            self._pump(0.05)

    def _close(self) -> None:
        for member in self.members:
            if member.sock is not None:
                try:
                    self._drop(member)
                except Exception:
                    log.debug("fleet: closing %s", member.spec.id, exc_info=True)


def _ignore(error: PlatformError) -> None:
    return None


class Fleet:
    """Many simulated devices publishing realistic telemetry at a steady rate."""

    def __init__(self, devices: Sequence[FleetDevice | tuple[str, str, Product]],
                 host: str = "127.0.0.1", port: int = 1883, rate_hz_per_device: float = 1.0,
                 bad_rate: float = DEFAULT_BAD_RATE, *, threads: int | None = None,
                 seed: int = 0, qos: int = 1, connect_timeout: float = 10.0) -> None:
        if not math.isfinite(rate_hz_per_device) or rate_hz_per_device <= 0:
            raise ValueError("rate_hz_per_device must be a positive number")
        if not 0 <= bad_rate <= 1:
            raise ValueError("bad_rate must be between 0 and 1")
        self.rate_hz = rate_hz_per_device
        self.bad_rate = bad_rate
        self.qos = qos
        self.connect_timeout = connect_timeout
        self.host = host
        self.port = port
        specs = [d if isinstance(d, FleetDevice) else FleetDevice(d[0], d[1], d[2], i)
                 for i, d in enumerate(devices)]
        self._members = [_Member(s, self.new_device(s),
                                 random.Random(seed * 1_000_003 + s.index)) for s in specs]
        count = threads or min(MAX_THREADS, max(1, math.ceil(len(specs) / DEVICES_PER_THREAD)))
        self._shards = [_Shard(self, self._members[k::count], k) for k in range(count)
                        if self._members[k::count]]
        self._stop = threading.Event()

    def run(self, seconds: float | None = None, stop: threading.Event | None = None) -> FleetStats:
        """Report until `seconds` pass, `stop` is set or `stop()` is called; final counts."""
        for shard in self._shards:
            shard.start()
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            while not self._stop.is_set() and not (stop is not None and stop.is_set()):
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self._stop.wait(0.1)
        finally:
            for shard in self._shards:
                shard.halt.set()
            for shard in self._shards:
                shard.join(FLUSH_S + self.connect_timeout + 5)
        return self.stats()

    def stop(self) -> None:
        """Ask a running `run` to finish (from any thread)."""
        self._stop.set()

    def new_device(self, spec: FleetDevice) -> Device:
        """A fresh session for one simulated device (at start, and after it failed)."""
        device = Device(spec.id, spec.secret, self.host, self.port,
                        connect_timeout=self.connect_timeout)
        device.on_error(_ignore)  # subscribe, so refusals are counted
        return device

    def stats(self) -> FleetStats:
        """Counts so far (safe to call while the fleet runs)."""
        ms = self._members
        return FleetStats(
            devices=len(ms), connected=sum(m.up for m in ms),
            sent=sum(m.sent for m in ms), acked=sum(m.acked for m in ms),
            events_sent=sum(m.events for m in ms),
            errors_received=sum(m.errors_received for m in ms),
            skipped=sum(m.skipped for m in ms), connect_failures=sum(m.failures for m in ms),
            refused=sum(m.refusals for m in ms), crashes=sum(m.crashes for m in ms))
