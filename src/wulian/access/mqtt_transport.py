"""The platform's own device-facing MQTT transport (3.1.1 and 5), for the embedded default.

A transport for devices on their own topics, as ThingsBoard and JetLinks have one, not a
general-purpose broker: devices publish and subscribe under `devices/{their id}/`, the
platform's own client (rule actions, tests) may publish downlink and subscribe anywhere.
A PUBLISH to telemetry or events goes straight from the socket to the pipeline, with no
loopback hop, and is acknowledged (QoS 1 PUBACK, QoS 2 PUBREC) only once the pipeline has
stored it or refused it with a reason, so killing the process loses nothing a device saw
acknowledged. Refusals are answered: MQTT 5 with a reason code and string on the PUBACK,
both versions on `devices/{id}/errors`. Mosquitto (or EMQX) stays the broker for
production and scale-out (`wulian.access.mqtt_ingest`).

Why not amqtt any more (issue 10): it acknowledged devices before the platform stored
anything (kill -9 lost 99.5 % of what devices saw acknowledged), ended a session before
authenticating the CONNECT that took it over, spoke no MQTT 5, and cost a loopback hop
through a paho consumer. Measured against it in docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections import Counter
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from wulian.access import topics
from wulian.access.mosquitto import PLATFORM_USER
from wulian.access.mqtt_codec import (
    MQTT_5,
    MQTT_311,
    PINGRESP,
    Ack,
    Connect,
    Disconnect,
    PacketType,
    Ping,
    Prop,
    ProtocolError,
    Publish,
    Reason,
    Subscribe,
    Unsubscribe,
    ack,
    connack,
    disconnect,
    parse,
    publish,
    suback,
    topic_matches,
    unsuback,
)
from wulian.access.mqtt_sessions import (
    INFLIGHT_MAX,
    SESSION_EXPIRY_S,
    Downlink,
    Session,
    SessionTable,
    may_subscribe,
)
from wulian.access.presence import format_remote
from wulian.domain.message import Inbound, Kind, Outcome, Protocol
from wulian.domain.rejection import RejectCode, Rejection
from wulian.i18n import t
from wulian.netutil import PortInUse, port_free
from wulian.pipeline.directory import Known
from wulian.pipeline.ingest import BatchRun, now_ms
from wulian.ports import StorageUnavailable

if TYPE_CHECKING:
    from wulian.bootstrap import Core

log = logging.getLogger(__name__)

RECEIVE_MAXIMUM = 1000  # advertised to MQTT 5 clients: QoS 1/2 PUBLISHes unacknowledged
CONN_HELD_MAX = 1 << 20  # a connection's unacknowledged bytes before we stop reading it
TOTAL_HELD_MAX = 64 << 20  # all connections' unacknowledged bytes before reading pauses
PACKET_OVERHEAD = 64 * 1024  # topic and properties a PUBLISH may carry beside its payload
CONNECT_TIMEOUT_S = 10.0
RETRY_MIN_S, RETRY_MAX_S = 0.05, 5.0
BUSY_BATCH = 64  # a batch at least this large means load: the next one waits to gather

# What a refusal is called in an MQTT 5 PUBACK (the reason string says the rest)
REASONS = {
    RejectCode.FORBIDDEN_TOPIC: Reason.NOT_AUTHORIZED,
    RejectCode.DEVICE_DISABLED: Reason.NOT_AUTHORIZED,
    RejectCode.UNKNOWN_DEVICE: Reason.NOT_AUTHORIZED,
    RejectCode.BAD_CREDENTIALS: Reason.NOT_AUTHORIZED,
    RejectCode.UNKNOWN_TOPIC: Reason.TOPIC_NAME_INVALID,
    RejectCode.INTERNAL_ERROR: Reason.IMPLEMENTATION_SPECIFIC,
    RejectCode.OVERLOADED: Reason.SERVER_BUSY,
    RejectCode.RATE_LIMITED: Reason.MESSAGE_RATE_TOO_HIGH,
    RejectCode.QUOTA_EXCEEDED: Reason.QUOTA_EXCEEDED,
}


def reason_for(rejection: Rejection) -> Reason:
    """The MQTT 5 reason code for a refusal: payload problems are 0x99."""
    return REASONS.get(rejection.code, Reason.PAYLOAD_FORMAT_INVALID)


@dataclass(slots=True)
class _Pending:
    """A PUBLISH the pipeline has not stored yet."""

    connection: Connection
    packet: Publish
    inbound: Inbound
    refusal: Rejection | None
    size: int


class Connection(asyncio.Protocol):
    """One client's TCP connection: bytes in, packets handled, bytes out."""

    def __init__(self, server: DeviceTransport) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.version = MQTT_311
        self.session: Session | None = None
        self.device_id: str | None = None  # None: not connected yet, or the platform
        self.platform = False
        self.remote: str | None = None
        self.state = "new"  # new -> connecting -> open -> closed
        self.keepalive = 0
        self.last_rx = time.monotonic()
        self.will: Publish | None = None
        self.held = 0  # bytes of PUBLISHes received and not yet acknowledged
        self.paused = False
        self.ended = False

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if peer:
            self.remote = format_remote(str(peer[0]), peer[1])
        self.server.connections.add(self)
        self.server.stats["connections"] += 1

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        self.buffer += data
        if self.state == "connecting":
            return  # handled once the CONNECT is decided
        self.process()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.lost(self)

    # -- packets ------------------------------------------------------------------------------
    def process(self) -> None:
        if self.state == "closed" or not self.buffer:
            return
        # Until the CONNECT is answered nothing behind it may be handled: parse it alone.
        first = self.state == "new"
        try:
            packets, used = parse(self.buffer, self.version, self.server.max_packet,
                                  1 if first else 1 << 30)
        except ProtocolError as exc:
            self.protocol_error(exc)
            return
        del self.buffer[:used]
        for packet in packets:
            if self.state == "closed":
                return
            try:
                if first:
                    if not isinstance(packet, Connect):
                        raise ProtocolError(Reason.PROTOCOL_ERROR, "first packet not CONNECT")
                    self.state = "connecting"
                    self.version = packet.version
                    self.server.spawn(self.server.connect(self, packet))
                    return
                self.handle(packet)
            except ProtocolError as exc:
                self.protocol_error(exc)
                return
        if len(self.buffer) > self.server.max_packet:
            self.protocol_error(ProtocolError(Reason.PACKET_TOO_LARGE, "packet too large"))

    def handle(self, packet: object) -> None:
        server = self.server
        if isinstance(packet, Publish):
            server.received(self, packet)
        elif isinstance(packet, Ack):
            server.acked(self, packet)
        elif isinstance(packet, Ping):
            if not packet.response:
                self.send(PINGRESP)
        elif isinstance(packet, Subscribe):
            server.subscribe(self, packet)
        elif isinstance(packet, Unsubscribe):
            server.unsubscribe(self, packet)
        elif isinstance(packet, Disconnect):
            if packet.reason != Reason.DISCONNECT_WITH_WILL:
                self.will = None  # a normal DISCONNECT discards the will (MQTT-3.14.4-3)
            self.close()
        elif isinstance(packet, Connect):
            raise ProtocolError(Reason.PROTOCOL_ERROR, "second CONNECT")
        else:
            raise ProtocolError(Reason.PROTOCOL_ERROR, f"{type(packet).__name__} from a client")

    def protocol_error(self, exc: ProtocolError) -> None:
        self.server.stats["protocol_errors"] += 1
        log.info(t("mqtt.protocol_error", remote=self.remote, client=self.device_id,
                   detail=exc.detail))
        if self.version == MQTT_5 and self.state == "open":
            self.send(disconnect(MQTT_5, exc.reason, exc.detail))
        self.close()

    # -- output -------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if self.transport is not None and self.state != "closed":
            self.transport.write(data)

    def close(self) -> None:
        if self.state == "closed":
            return
        self.state = "closed"
        if self.transport is not None:
            self.transport.close()

    def pause(self) -> None:
        if not self.paused and self.transport is not None and self.state != "closed":
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None and self.state != "closed":
            self.paused = False
            self.transport.resume_reading()


class DeviceTransport:
    """Listens for devices; authenticates them; feeds their messages to the pipeline."""

    def __init__(self, core: Core, *, host: str, port: int, platform_password: str,
                 batch_max: int | None = None, batch_ms: int | None = None) -> None:
        s = core.settings
        self.core = core
        self.pipeline = core.pipeline
        self.host, self.port = host, port
        self._platform_password = platform_password.encode()
        self.batch_max = batch_max or s.batch_max
        self.batch_s = (batch_ms or s.batch_ms) / 1000
        self.max_packet = s.max_payload_bytes + PACKET_OVERHEAD
        self.lang = s.lang
        self.sessions = SessionTable()
        self.connections: set[Connection] = set()
        self.retained: dict[str, Downlink] = {}
        self.stats: Counter[str] = Counter()
        self._pending: list[_Pending] = []
        self._last_batch = 0
        self._held = 0
        self._wake = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._connecting: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._abandon = False
        # scrypt costs ~50 ms of CPU: off the event loop, a few at a time
        self._auth_pool = ThreadPoolExecutor(4, thread_name_prefix="wulian-mqtt-auth")
        # one thread keeps connect/disconnect records in the order they happened
        self._status_pool = ThreadPoolExecutor(1, thread_name_prefix="wulian-mqtt-status")

    # -- life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Listen on host:port; PortInUse when it is taken."""
        if not port_free(self.port, self.host):
            raise PortInUse("MQTT", self.host, self.port)
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(lambda: Connection(self), self.host,
                                                    self.port, reuse_address=True)
        except OSError as exc:
            raise PortInUse("MQTT", self.host, self.port) from exc
        self._tasks = [loop.create_task(self._flush_loop()), loop.create_task(self._tick())]

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` as a task kept until it ends (the loop holds tasks only weakly)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)
        log.info(t("mqtt.transport_listening", host=self.host, port=self.port))

    async def stop(self, timeout_s: float = 8.0) -> None:
        """Stop accepting, store and acknowledge what is in hand, then close every client."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.pause()
        deadline = time.monotonic() + timeout_s
        while (self._pending or self._held) and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.02)
        self._abandon = True  # what is still unstored stays unacknowledged: clients resend
        self._wake.set()
        for conn in list(self.connections):
            if conn.version == MQTT_5 and conn.state == "open":
                conn.send(disconnect(MQTT_5, Reason.SERVER_SHUTTING_DOWN))
            conn.will = None
            conn.close()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()
        self._auth_pool.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self._status_pool.shutdown, True)
        log.info(t("mqtt.transport_stopped", None, **self.summary()))

    def summary(self) -> dict[str, int]:
        s = self.stats
        return {"connections": s["connections"], "stored": s["acked"] - s["rejected"],
                "refused": s["rejected"], "unacknowledged": len(self._pending)}

    def counters(self) -> dict[str, int]:
        """received, acked, refused, connections, ... and what is held now."""
        return {**self.stats, "held_bytes": self._held, "held_messages": len(self._pending),
                "pending": len(self._pending),
                "sessions": len(self.sessions), "connected": len(self.connections)}

    # -- connect ------------------------------------------------------------------------------
    async def connect(self, conn: Connection, packet: Connect) -> None:
        try:
            code = await self._authenticate(conn, packet)
        except Exception:  # e.g. storage down: refuse this CONNECT, keep the transport
            log.exception(t("mqtt.auth_failed"))
            code = Reason.SERVER_UNAVAILABLE
        if conn.state == "closed":
            return
        if code != Reason.SUCCESS:
            self.stats["refused_connects"] += 1
            conn.send(connack(packet.version, code))
            conn.close()
            return
        self._open(conn, packet)
        conn.process()  # what the client sent behind its CONNECT

    async def _authenticate(self, conn: Connection, packet: Connect) -> Reason:
        user, password = packet.username, packet.password
        if user is None or password is None:
            return Reason.BAD_USERNAME_OR_PASSWORD
        if user == PLATFORM_USER:
            if not hmac.compare_digest(password, self._platform_password):
                return Reason.BAD_USERNAME_OR_PASSWORD
            conn.platform = True
            if not packet.client_id:
                return Reason.CLIENT_ID_NOT_VALID
            return Reason.SUCCESS
        # The client id is pinned to the device id, as Mosquitto's dynsec does it: no device
        # may take over (and so end) another device's or the platform's session.
        if packet.client_id != user:
            return Reason.CLIENT_ID_NOT_VALID if packet.client_id else Reason.NOT_AUTHORIZED
        try:
            secret = password.decode("utf-8")
        except UnicodeDecodeError:
            return Reason.BAD_USERNAME_OR_PASSWORD
        loop = asyncio.get_running_loop()
        known = await loop.run_in_executor(self._auth_pool, self.core.directory.authenticate,
                                           user, secret)
        if not isinstance(known, Known):
            return Reason.BAD_USERNAME_OR_PASSWORD
        conn.device_id = user
        return Reason.SUCCESS

    def _open(self, conn: Connection, packet: Connect) -> None:
        client_id = packet.client_id
        # A takeover, only now that the new CONNECT is authenticated (MQTT-3.1.4-2)
        old = self.sessions.sessions.get(client_id)
        if old is not None and old.connection is not None and old.connection is not conn:
            previous = old.connection
            if previous.version == MQTT_5:
                previous.send(disconnect(MQTT_5, Reason.SESSION_TAKEN_OVER))
            self.stats["takeovers"] += 1
            self._end(previous, abnormal=True)
        if packet.version == MQTT_5:
            expiry = min(int(packet.props.get(Prop.SESSION_EXPIRY, 0)), SESSION_EXPIRY_S)
        else:
            expiry = 0 if packet.clean else SESSION_EXPIRY_S
        session, present = self.sessions.open(client_id, conn.device_id, clean=packet.clean,
                                              expiry_s=expiry)
        session.connection = conn
        conn.session = session
        conn.state = "open"
        conn.keepalive = packet.keepalive
        if packet.will is not None:
            will = packet.will
            conn.will = Publish(will.topic, will.payload, will.qos, will.retain)
        props: dict[int, Any] = {}
        if packet.version == MQTT_5:
            props = {Prop.RECEIVE_MAXIMUM: RECEIVE_MAXIMUM, Prop.TOPIC_ALIAS_MAXIMUM: 0,
                     Prop.SHARED_SUB_AVAILABLE: 0,
                     Prop.MAXIMUM_PACKET_SIZE: self.max_packet}
        conn.send(connack(packet.version, Reason.SUCCESS, session_present=present,
                          props=props))
        self.stats["connects"] += 1
        if conn.device_id is not None:
            self._record(conn.device_id, True, conn.remote)
        self._resend(session)

    # -- uplink -------------------------------------------------------------------------------
    def received(self, conn: Connection, packet: Publish) -> None:
        session = conn.session
        assert session is not None
        if packet.props.get(Prop.TOPIC_ALIAS):
            raise ProtocolError(Reason.TOPIC_ALIAS_INVALID, "topic aliases are not accepted")
        if packet.qos == 2 and packet.packet_id in session.awaiting_release:
            conn.send(ack(PacketType.PUBREC, conn.version, packet.packet_id))  # resent
            return
        self.stats["received"] += 1
        where = topics.parse(packet.topic)
        device = conn.device_id
        owned = conn.platform or (device is not None and topics.owns(device, packet.topic))
        kind = where.kind if where is not None else None
        if owned and kind is None and where is not None:
            # shadow reports, command responses: passed on, not stored here
            self._route(packet.topic, packet.payload, packet.qos, packet.retain and conn.platform)
            self._ack_now(conn, packet, Reason.SUCCESS)
            return
        if conn.platform and kind is None:
            self._route(packet.topic, packet.payload, packet.qos, packet.retain)
            self._ack_now(conn, packet, Reason.SUCCESS)
            return
        refusal = None
        if not owned:
            refusal = Rejection(RejectCode.FORBIDDEN_TOPIC, params={"topic": packet.topic[:256]})
        elif kind is None:
            refusal = Rejection(RejectCode.UNKNOWN_TOPIC, params={"topic": packet.topic[:256]})
        sender = where.device_id if where is not None and owned else (device or "")
        inbound = Inbound(sender, kind or Kind.TELEMETRY, packet.payload, Protocol.MQTT,
                          now_ms(), topic=packet.topic, event=where.name if where else None,
                          remote=conn.remote)
        size = len(packet.payload) + len(packet.topic)
        self._pending.append(_Pending(conn, packet, inbound, refusal, size))
        conn.held += size
        self._held += size
        if conn.held > CONN_HELD_MAX or self._held > TOTAL_HELD_MAX:
            conn.pause()
            self.stats["paused"] += 1
        if len(self._pending) == 1 or len(self._pending) >= self.batch_max:
            self._wake.set()

    def _ack_now(self, conn: Connection, packet: Publish, reason: Reason,
                 reason_string: str | None = None) -> None:
        if packet.qos == 1:
            conn.send(ack(PacketType.PUBACK, conn.version, packet.packet_id, reason,
                          reason_string))
        elif packet.qos == 2:
            assert conn.session is not None
            conn.session.awaiting_release.add(packet.packet_id)
            conn.send(ack(PacketType.PUBREC, conn.version, packet.packet_id, reason,
                          reason_string))

    def acked(self, conn: Connection, packet: Ack) -> None:
        session = conn.session
        assert session is not None
        if packet.kind == PacketType.PUBREL:
            session.awaiting_release.discard(packet.packet_id)
            conn.send(ack(PacketType.PUBCOMP, conn.version, packet.packet_id))
        elif packet.kind == PacketType.PUBACK:
            if session.inflight.pop(packet.packet_id, None) is not None:
                self._send_queued(session)
        else:  # we send downlink at QoS 0 or 1 only: PUBREC/PUBCOMP answer nothing of ours
            raise ProtocolError(Reason.PROTOCOL_ERROR, f"unexpected {packet.kind.name}")

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Group commit: a lone device waiting for its PUBACK is written at once; under
            # load (the last batch was not small) a batch gathers for up to `batch_ms`, so
            # fewer, larger transactions carry the same messages.
            if self._last_batch >= BUSY_BATCH and len(self._pending) < (
                    self.batch_max) and not self._stopping:
                await asyncio.sleep(self.batch_s)
            delay = RETRY_MIN_S
            while self._pending:
                batch = self._pending[:self.batch_max]
                del self._pending[:self.batch_max]
                try:
                    outcomes = await self._store(batch)
                except Exception:
                    # A bug on our side of the pipeline: nothing of the batch was
                    # acknowledged, so it is tried again rather than left hanging.
                    log.exception(t("mqtt.batch_failed", count=len(batch), retry_s=round(delay, 2)))
                    self.stats["internal_errors"] += 1
                    self._pending[:0] = batch
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
                    continue
                delay = RETRY_MIN_S
                self._last_batch = len(batch)
                self._answer(batch, outcomes)

    async def _store(self, batch: list[_Pending]) -> list[Outcome | None]:
        run = BatchRun(self.pipeline, [p.inbound for p in batch], [p.refusal for p in batch])
        delay = RETRY_MIN_S
        while True:
            try:
                await asyncio.to_thread(run.run)
                return run.outcomes
            except StorageUnavailable as exc:
                self.stats["store_failures"] += 1
                log.warning(t("mqtt.store_unavailable", count=run.outcomes.count(None),
                              detail=str(exc), retry_s=round(delay, 2)))
            if self._abandon:
                return run.outcomes  # never acknowledged: the clients send them again
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    def _answer(self, batch: list[_Pending], outcomes: list[Outcome | None]) -> None:
        for item, outcome in zip(batch, outcomes, strict=True):
            conn = item.connection
            conn.held -= item.size
            self._held -= item.size
            if outcome is None:
                continue  # not stored (stopping with storage down): no acknowledgement
            self.stats["acked"] += 1  # owned by the pipeline: stored, or refused with a reason
            if outcome.rejection is None:
                if conn.state == "open":
                    self._ack_now(conn, item.packet, Reason.SUCCESS)
                # subscribers (the device itself, the platform's clients) see what was taken
                self._route(item.packet.topic, item.packet.payload, item.packet.qos, False)
                continue
            self.stats["rejected"] += 1
            rejection = outcome.rejection
            message = rejection.message(self.lang)
            if conn.state == "open":
                self._ack_now(conn, item.packet, reason_for(rejection), message)
            device = conn.device_id or item.inbound.device_id
            if device:
                body = rejection.to_dict(self.lang)
                body["topic"] = item.packet.topic
                self._route(topics.errors(device), orjson.dumps(body), 1, False)
        for conn in list(self.connections):
            if conn.paused and conn.held <= CONN_HELD_MAX // 2 and (
                    self._held <= TOTAL_HELD_MAX // 2):
                conn.resume()

    # -- downlink -----------------------------------------------------------------------------
    def _route(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        """Deliver a message to every session subscribed to `topic` (online or queued)."""
        if retain:
            if payload:
                self.retained[topic] = Downlink(topic, payload, qos, True)
            else:
                self.retained.pop(topic, None)
        for session, granted in self.sessions.subscribers(topic):
            self._deliver(session, Downlink(topic, payload, min(qos, granted, 1)))

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Send to the devices subscribed to `topic` (for the platform's own components)."""
        self._route(topic, payload, qos, False)

    def _deliver(self, session: Session, message: Downlink) -> None:
        conn = session.connection
        if conn is None or conn.state != "open":
            if message.qos > 0 and session.expiry_s > 0:
                session.enqueue(message)
            return
        if message.qos == 0:
            conn.send(publish(conn.version, message.topic, message.payload,
                              retain=message.retain))
            return
        if len(session.inflight) >= INFLIGHT_MAX:
            session.enqueue(message)
            return
        packet_id = session.next_packet_id()
        session.inflight[packet_id] = message
        conn.send(publish(conn.version, message.topic, message.payload, qos=1,
                          packet_id=packet_id, retain=message.retain))

    def _send_queued(self, session: Session) -> None:
        while session.queue and len(session.inflight) < INFLIGHT_MAX:
            self._deliver(session, session.queue.popleft())

    def _resend(self, session: Session) -> None:
        """On a resumed session: what was in flight again (DUP), then what was queued."""
        conn = session.connection
        assert conn is not None
        for packet_id, message in list(session.inflight.items()):
            conn.send(publish(conn.version, message.topic, message.payload, qos=1,
                              packet_id=packet_id, dup=True))
        self._send_queued(session)

    def subscribe(self, conn: Connection, packet: Subscribe) -> None:
        session = conn.session
        assert session is not None
        codes: list[int] = []
        granted_filters = []
        for topic_filter, options in packet.filters:
            if may_subscribe(None if conn.platform else conn.device_id, topic_filter):
                qos = min(options & 0x03, 1)
                session.subscriptions[topic_filter] = qos
                codes.append(qos)
                granted_filters.append(topic_filter)
            else:
                self.stats["refused_subscriptions"] += 1
                codes.append(Reason.NOT_AUTHORIZED if conn.version == MQTT_5 else 0x80)
        conn.send(suback(conn.version, packet.packet_id, codes))
        for topic_filter in granted_filters:
            for topic, message in list(self.retained.items()):
                if topic_matches(topic_filter, topic):
                    self._deliver(session, Downlink(topic, message.payload, min(
                        message.qos, session.subscriptions[topic_filter]), True))

    def unsubscribe(self, conn: Connection, packet: Unsubscribe) -> None:
        session = conn.session
        assert session is not None
        codes: list[int] = []
        for topic_filter in packet.filters:
            found = session.subscriptions.pop(topic_filter, None) is not None
            codes.append(Reason.SUCCESS if found else Reason.NO_SUBSCRIPTION_EXISTED)
        conn.send(unsuback(conn.version, packet.packet_id, codes))

    # -- connection ends ----------------------------------------------------------------------
    def lost(self, conn: Connection) -> None:
        abnormal = conn.will is not None
        self._end(conn, abnormal=abnormal)
        self.connections.discard(conn)

    def _end(self, conn: Connection, *, abnormal: bool) -> None:
        if conn.ended:
            return
        conn.ended = True
        will = conn.will
        conn.will = None
        conn.close()
        session = conn.session
        if session is None:
            return  # never got past CONNECT
        if session.connection is conn:
            self.sessions.closed(session, time.monotonic())
        if conn.device_id is not None:
            self._record(conn.device_id, False, conn.remote)
        if abnormal and will is not None and not self._stopping:
            self.stats["wills"] += 1
            self._will(conn, will)

    def _will(self, conn: Connection, will: Publish) -> None:
        device = conn.device_id
        if conn.platform or (device is not None and topics.owns(device, will.topic)):
            where = topics.parse(will.topic)
            if where is not None and where.kind is not None:
                # a will on telemetry or events is a reading like any other: stored
                inbound = Inbound(where.device_id, where.kind, will.payload, Protocol.MQTT,
                                  now_ms(), topic=will.topic, event=where.name,
                                  remote=conn.remote)
                will_qos0 = Publish(will.topic, will.payload)
                self._pending.append(_Pending(conn, will_qos0, inbound, None, 0))
                self._wake.set()
            else:
                self._route(will.topic, will.payload, will.qos, will.retain and conn.platform)

    async def _tick(self) -> None:
        """Once a second: keepalive timeouts and expired sessions."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in list(self.connections):
                if conn.state == "open" and conn.keepalive and (
                        now - conn.last_rx > conn.keepalive * 1.5):
                    self.stats["keepalive_timeouts"] += 1
                    if conn.version == MQTT_5:
                        conn.send(disconnect(MQTT_5, Reason.KEEP_ALIVE_TIMEOUT))
                    self._end(conn, abnormal=True)
                elif conn.state in ("new", "connecting") and (
                        now - conn.last_rx > CONNECT_TIMEOUT_S):
                    conn.close()
            self.sessions.expire(now)

    def end_device(self, device_id: str, *, forget: bool) -> None:
        """End a device's live connection (disabled, deleted, new secret); `forget` its
        session too (deleted). Runs on the loop."""
        session = self.sessions.sessions.get(device_id)
        if session is None or session.device_id is None:
            return
        conn = session.connection
        if conn is not None:
            if conn.version == MQTT_5 and conn.state == "open":
                conn.send(disconnect(MQTT_5, Reason.NOT_AUTHORIZED))
            conn.will = None
            self.stats["ended_by_registry"] += 1
            self._end(conn, abnormal=False)
        if forget:
            self.sessions.forget(device_id)

    def _record(self, device_id: str, connected: bool, remote: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # shutting down
            self._status_pool.submit(self._record_now, device_id, connected, now_ms(), remote)

    def _record_now(self, device_id: str, connected: bool, ts: int, remote: str | None) -> None:
        try:
            self.core.store.set_connected(device_id, connected, ts_ms=ts, protocol="mqtt",
                                          remote=remote)
        except Exception as exc:  # status is informative: never worth failing a connect
            key = "mqtt.connect_not_recorded" if connected else "mqtt.disconnect_not_recorded"
            log.warning(t(key, device=device_id, detail=exc))


class TransportAdmin:
    """The registry's `BrokerAdmin` for the embedded transport: the transport asks the
    registry at each CONNECT, so all that is left to do is to end what a change revokes."""

    def __init__(self, transport: DeviceTransport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop

    def _end(self, device_id: str, forget: bool) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing is connected
            self.loop.call_soon_threadsafe(
                lambda: self.transport.end_device(device_id, forget=forget))

    def provision(self, device_id: str, secret: str) -> None:
        self._end(device_id, False)  # a new secret: the login made with the old one ends

    def set_enabled(self, device_id: str, enabled: bool) -> None:
        if not enabled:
            self._end(device_id, False)

    def remove(self, device_id: str) -> None:
        self._end(device_id, True)
