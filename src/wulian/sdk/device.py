"""A device's side of the MQTT contract (DESIGN.md): connect, report, hear errors and commands."""

from __future__ import annotations

import logging
import select
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger(__name__)

MQTTv311 = MQTTProtocolVersion.MQTTv311
MQTTv5 = MQTTProtocolVersion.MQTTv5
MessageInfo = mqtt.MQTTMessageInfo


class SdkError(Exception):
    """Base of every error the device SDK raises."""


class BrokerUnreachable(SdkError):
    """No TCP (or TLS) connection to the broker could be made."""


class ConnectionRefused(SdkError):
    """The broker answered CONNACK with a failure: wrong credentials, disabled device..."""

    def __init__(self, device_id: str, reason: str, code: int) -> None:
        super().__init__(f"broker refused device '{device_id}': {reason} (CONNACK {code})")
        self.reason = reason
        self.code = code


class NotConnected(SdkError):
    """The device is not connected; connect() first (or it lost its connection)."""


class PublishTimeout(SdkError):
    """QoS 1 messages were still unacknowledged when the wait ended."""

    def __init__(self, outstanding: int) -> None:
        super().__init__(f"{outstanding} message(s) not acknowledged by the broker in time")
        self.outstanding = outstanding


@dataclass(frozen=True, slots=True)
class PlatformError:
    """What the platform sent on `devices/{id}/errors` about a refused message."""

    code: str
    message: str
    topic: str | None = None
    path: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Command:
    """A command the platform sent on `devices/{id}/commands/{command_id}`."""

    id: str
    name: str
    params: dict[str, Any]


ErrorCallback = Callable[[PlatformError], None]
CommandCallback = Callable[[Command], None]


def _reason_text(rc: ReasonCode | int) -> tuple[str, int]:
    if isinstance(rc, ReasonCode):
        return rc.getName(), int(rc.value)
    return mqtt.connack_string(rc), int(rc)


class Device:
    """One device's MQTT session with the platform, on paho-mqtt.

    Used as a context manager it connects on entry and flushes and disconnects on exit.
    `connect(loop=False)` leaves the network loop to the caller (`client.loop_read` etc.)
    so that a simulator can drive many devices from a few threads.
    """

    def __init__(self, device_id: str, secret: str, host: str = "127.0.0.1", port: int = 1883,
                 *, protocol: MQTTProtocolVersion = MQTTv311, tls: ssl.SSLContext | None = None,
                 keepalive: int = 60, client_id: str | None = None,
                 connect_timeout: float = 10.0) -> None:
        self.device_id = device_id
        self.host = host
        self.port = port
        self.keepalive = keepalive
        self.protocol = protocol
        self.prefix = f"devices/{device_id}/"
        self.acked = 0  # PUBACKs received (messages written out, for QoS 0)
        self.errors_received = 0
        self._cond = threading.Condition()
        self._connack: tuple[bool, str, int] | None = None  # (ok, reason, code)
        self._pending: list[mqtt.MQTTMessageInfo] = []
        self._subscriptions: dict[str, Callable[[mqtt.MQTTMessage], None]] = {}
        self._error_callbacks: list[ErrorCallback] = []
        self._command_callbacks: list[CommandCallback] = []
        self._threaded = False
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or device_id,
                             protocol=protocol,
                             clean_session=True if protocol != MQTTv5 else None)
        client.username_pw_set(device_id, secret)
        if tls is not None:
            client.tls_set_context(tls)
        # Set while the client is new: paho refuses to change it once it tried to connect.
        client.connect_timeout = connect_timeout
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self.client = client

    # --- connection ------------------------------------------------------------------

    def connect(self, timeout: float = 10.0, *, loop: bool = True) -> None:
        """Connect and wait for the CONNACK; ConnectionRefused or BrokerUnreachable if not."""
        self.begin_connect(timeout)
        if loop:
            self._threaded = True
            self.client.loop_start()
            ok = self._wait_connack(timeout)
        else:
            ok = self._pump_until_connack(timeout)
        if not ok:
            self._abort()
            raise BrokerUnreachable(f"no CONNACK from {self.host}:{self.port} within {timeout} s")
        try:
            self.check_connack()
        except ConnectionRefused:
            self._abort()
            raise

    def begin_connect(self, timeout: float | None = None) -> None:
        """Open the connection and send CONNECT without waiting (for callers running the loop).

        Drive `client` (`loop_read`, `loop_write`, `loop_misc`) and poll `check_connack`.
        `timeout` bounds the TCP (and TLS) connect; None keeps the one given at construction.
        May be called again after any failure: each call is a fresh attempt.
        """
        with self._cond:
            self._connack = None
        if timeout is not None:
            self._set_connect_timeout(timeout)
        try:
            self.client.connect(self.host, self.port, self.keepalive)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerUnreachable(f"cannot reach MQTT broker at {self.host}:{self.port}: "
                                    f"{exc}") from exc

    def _set_connect_timeout(self, timeout: float) -> None:
        """Use `timeout` for the next TCP connect, whatever the previous attempt left behind.

        paho allows the change only while its client is closed, and a refused TCP connect
        leaves it "connecting" with no socket (RuntimeError on the next change). Without a
        socket, `disconnect()` only marks the client closed (nothing is sent).
        """
        client = self.client
        if client.connect_timeout == timeout:
            return
        if client.socket() is None:
            client.disconnect()
        try:
            client.connect_timeout = timeout
        except RuntimeError:
            # A previous session's socket is still open; connect() closes it, and this
            # attempt keeps the previous timeout rather than failing.
            log.debug("device %s: connect timeout stays %s s", self.device_id,
                      client.connect_timeout)

    def check_connack(self) -> bool:
        """False while the CONNACK is awaited, True once accepted; ConnectionRefused if not."""
        connack = self._connack
        if connack is None:
            return False
        accepted, reason, code = connack
        if not accepted:
            raise ConnectionRefused(self.device_id, reason, code)
        return True

    def _wait_connack(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._connack is not None, timeout)

    def _pump_until_connack(self, timeout: float) -> bool:
        """Drive the socket ourselves until the CONNACK is in (no network thread)."""
        deadline = time.monotonic() + timeout
        while self._connack is None:
            sock = self.client.socket()
            remaining = deadline - time.monotonic()
            if sock is None or remaining <= 0:
                return False
            if self.client.want_write():
                self.client.loop_write()
            readable, _, _ = select.select([sock], [], [], min(remaining, 0.5))
            if readable and self.client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS \
                    and self._connack is None:
                self._set_connack(False, "connection closed by the broker", -1)
        if self.client.want_write():
            self.client.loop_write()  # subscriptions queued by on_connect
        return True

    def _abort(self) -> None:
        if self._threaded:
            self.client.loop_stop()
            self._threaded = False
        self.client.disconnect()

    @property
    def connected(self) -> bool:
        return self.client.is_connected()

    def disconnect(self) -> None:
        """Close the session (call `wait_published` first to be sure QoS 1 messages arrived)."""
        self.client.disconnect()
        if self._threaded:
            self.client.loop_stop()
            self._threaded = False

    def __enter__(self) -> Device:
        if not self.connected:
            self.connect()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None and self.connected:
            try:
                self.wait_published(10.0)
            finally:
                self.disconnect()
        else:
            self.disconnect()

    # --- paho callbacks (network thread) ---------------------------------------------

    def _set_connack(self, ok: bool, reason: str, code: int) -> None:
        with self._cond:
            self._connack = (ok, reason, code)
            self._cond.notify_all()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any,
                    rc: ReasonCode, properties: Any) -> None:
        reason, code = _reason_text(rc)
        if not rc.is_failure:
            # Re-subscribe on every (re)connect: a clean session forgets subscriptions.
            for topic in self._subscriptions:
                client.subscribe(topic, qos=1)
        self._set_connack(not rc.is_failure, reason, code)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       rc: ReasonCode, properties: Any) -> None:
        if self._connack is None:
            reason, code = _reason_text(rc)
            self._set_connack(False, f"connection closed before CONNACK: {reason}", code)
        with self._cond:
            self._cond.notify_all()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode,
                    properties: Any) -> None:
        with self._cond:
            self.acked += 1
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        handler = self._subscriptions.get(msg.topic)
        if handler is None and msg.topic.startswith(self.prefix + "commands/"):
            handler = self._subscriptions.get(self.prefix + "commands/+")
        if handler is None:
            return
        try:
            handler(msg)
        except Exception:  # a faulty callback must not stop the network loop
            log.exception("device %s: callback for %s failed", self.device_id, msg.topic)

    # --- reporting -------------------------------------------------------------------

    def _publish(self, topic: str, body: Any, qos: int) -> mqtt.MQTTMessageInfo:
        if not self.connected:
            raise NotConnected(f"device '{self.device_id}' is not connected")
        info = self.client.publish(topic, orjson.dumps(body), qos=qos)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
            raise NotConnected(f"publish on {topic} failed: {mqtt.error_string(info.rc)}")
        if qos > 0:
            with self._cond:
                self._pending.append(info)
                if len(self._pending) > 1024:  # keep the list short without a wait
                    self._pending = [i for i in self._pending if not _published(i)]
        return info

    def publish_telemetry(self, values: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                          ts: int | None = None, qos: int = 1) -> mqtt.MQTTMessageInfo:
        """Report property values (one sample, or a batch); `ts` in epoch ms stamps them."""
        body: Any
        if isinstance(values, Mapping):
            body = dict(values) if ts is None else {**values, "ts": ts}
        else:
            body = [dict(v) if ts is None or "ts" in v else {**v, "ts": ts} for v in values]
        return self._publish(self.prefix + "telemetry", body, qos)

    def publish_event(self, event: str, params: Mapping[str, Any] | None = None,
                      qos: int = 1, ts: int | None = None) -> mqtt.MQTTMessageInfo:
        """Report an event (a fault, an alarm condition) with its parameters."""
        body = dict(params or {})
        if ts is not None:
            body["ts"] = ts
        return self._publish(f"{self.prefix}events/{event}", body, qos)

    def respond(self, command_id: str, status: str, result: Mapping[str, Any] | None = None,
                qos: int = 1) -> mqtt.MQTTMessageInfo:
        """Answer a command received through `on_command`."""
        body = {"status": status, "result": dict(result or {})}
        return self._publish(f"{self.prefix}commands/{command_id}/response", body, qos)

    def wait_published(self, timeout: float = 10.0) -> None:
        """Block until every QoS 1 message sent so far is acknowledged; PublishTimeout if not."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                self._pending = [i for i in self._pending if not _published(i)]
                remaining = deadline - time.monotonic()
                if not self._pending:
                    return
                if remaining <= 0:
                    raise PublishTimeout(len(self._pending))
                # paho marks a message published right after on_publish: poll briefly too
                self._cond.wait(min(remaining, 0.05))

    @property
    def outstanding(self) -> int:
        """QoS 1 messages sent and not yet acknowledged."""
        with self._cond:
            self._pending = [i for i in self._pending if not _published(i)]
            return len(self._pending)

    # --- hearing from the platform ---------------------------------------------------

    def _subscribe(self, topic: str, handler: Callable[[mqtt.MQTTMessage], None]) -> None:
        first = topic not in self._subscriptions
        self._subscriptions[topic] = handler
        if first and self.connected:
            self.client.subscribe(topic, qos=1)

    def on_error(self, callback: ErrorCallback) -> None:
        """Call `callback` for every error the platform reports about this device's messages."""
        self._error_callbacks.append(callback)
        self._subscribe(self.prefix + "errors", self._handle_error)

    def on_command(self, callback: CommandCallback) -> None:
        """Call `callback` for every command sent to this device."""
        self._command_callbacks.append(callback)
        self._subscribe(self.prefix + "commands/+", self._handle_command)

    def _handle_error(self, msg: mqtt.MQTTMessage) -> None:
        self.errors_received += 1
        try:
            doc = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            doc = {"code": "unreadable", "message": msg.payload[:200].decode(errors="replace")}
        if not isinstance(doc, dict):
            doc = {"code": "unreadable", "message": str(doc)[:200]}
        error = PlatformError(code=str(doc.get("code", "")), message=str(doc.get("message", "")),
                              topic=doc.get("topic"), path=doc.get("path"), raw=doc)
        for callback in list(self._error_callbacks):
            callback(error)

    def _handle_command(self, msg: mqtt.MQTTMessage) -> None:
        command_id = msg.topic[len(self.prefix + "commands/"):]
        if "/" in command_id:
            return  # a response topic, not a command
        try:
            doc = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            log.warning("device %s: unreadable command on %s", self.device_id, msg.topic)
            return
        if not isinstance(doc, dict):
            return
        params = doc.get("params")
        command = Command(id=command_id, name=str(doc.get("name", "")),
                          params=params if isinstance(params, dict) else {})
        for callback in list(self._command_callbacks):
            callback(command)


def _published(info: mqtt.MQTTMessageInfo) -> bool:
    """True once the broker acknowledged `info`; a failed send counts as settled too."""
    try:
        return info.is_published()
    except (RuntimeError, ValueError):
        return True  # failed to queue: nothing more will come for it
