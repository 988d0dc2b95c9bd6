"""The embedded broker: amqtt in this process, devices checked against the registry.

amqtt 0.12 speaks MQTT 3.1.1 only and keeps its sessions in memory, so this is the
zero-install default for one machine; production uses Mosquitto (`wulian.access.mosquitto`).
"""

from __future__ import annotations

import asyncio
import errno
import hmac
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.errors import BrokerError
from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

from wulian.access import topics
from wulian.access.mosquitto import PLATFORM_USER
from wulian.access.presence import format_remote
from wulian.i18n import t
from wulian.netutil import PortInUse, port_free
from wulian.pipeline.directory import Known
from wulian.pipeline.ingest import now_ms

if TYPE_CHECKING:
    from wulian.bootstrap import Core

log = logging.getLogger(__name__)
SESSION_EXPIRY_S = 7 * 24 * 3600  # a persistent device session nobody resumes goes after this


class Gatekeeper:
    """Who may connect (the auth plugin asks) and which topics each may use (the broker)."""

    def __init__(self, core: Core, platform_password: str) -> None:
        self.core = core
        self._platform_password = platform_password
        # scrypt costs ~50 ms of CPU: off the event loop, a few at a time.
        self._auth_pool = ThreadPoolExecutor(4, thread_name_prefix="wulian-mqtt-auth")
        # One thread keeps connect/disconnect records in the order they happened.
        self._status_pool = ThreadPoolExecutor(1, thread_name_prefix="wulian-mqtt-status")
        self.refused = 0

    async def authenticate(self, session: Session) -> bool:
        user, password = session.username, session.password
        if not user or password is None:
            self.refused += 1
            return False
        if user == PLATFORM_USER:
            if hmac.compare_digest(password.encode(), self._platform_password.encode()):
                return True
            self.refused += 1
            return False
        # The client id is pinned to the device id, as Mosquitto's dynsec does it: no device
        # may take over (and so end) another device's or the platform's session.
        if session.client_id != user:
            self.refused += 1
            return False
        loop = asyncio.get_running_loop()
        known = await loop.run_in_executor(self._auth_pool, self.core.directory.authenticate,
                                           user, password)
        if not isinstance(known, Known):
            self.refused += 1
            return False
        return True

    def allowed(self, session: Session | None, topic: str | None) -> bool:
        """The platform may use anything; a device only `devices/{its id}/...`."""
        user = session.username if session else None
        if not user or not topic:
            return False
        return user == PLATFORM_USER or topics.owns(user, topic)

    def record(self, session: Session, connected: bool) -> None:
        """Note a device's connect or disconnect in the store (without blocking the loop)."""
        user = session.username
        if not user or user == PLATFORM_USER or session.client_id != user:
            return
        address, port = session.remote_address, session.remote_port
        remote = format_remote(address, port) if address and port is not None else None
        self._status_pool.submit(self._record, user, connected, now_ms(), remote)

    def _record(self, device_id: str, connected: bool, ts: int, remote: str | None) -> None:
        try:
            self.core.store.set_connected(device_id, connected, ts_ms=ts, protocol="mqtt",
                                          remote=remote)
        except Exception as exc:  # status is informative: never worth failing a connect
            key = "mqtt.connect_not_recorded" if connected else "mqtt.disconnect_not_recorded"
            log.warning(t(key, device=device_id, detail=exc))

    def close(self) -> None:
        self._auth_pool.shutdown(wait=False, cancel_futures=True)
        self._status_pool.shutdown(wait=True)


class DeviceAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """amqtt auth plugin: the platform's account, or a registered, enabled device."""

    @dataclass
    class Config:
        gate: Any = None

    async def authenticate(self, *, session: Session) -> bool:
        gate: Gatekeeper = self.config.gate
        try:
            return await gate.authenticate(session)
        except Exception:  # e.g. storage down: refuse this CONNECT, keep the broker
            log.exception(t("mqtt.auth_failed"))
            return False

    async def on_broker_client_connected(self, *, client_id: str, client_session: Session,
                                         **_: Any) -> None:
        self.config.gate.record(client_session, True)

    async def on_broker_client_disconnected(self, *, client_id: str, client_session: Session,
                                            **_: Any) -> None:
        self.config.gate.record(client_session, False)


class _Subscriptions(dict[str, list[tuple[Session, int]]]):
    """amqtt's subscription table, iterated over a snapshot of its filters.

    amqtt 0.12.1 walks the table with awaits inside the loop (retained messages on
    connect); a SUBSCRIBE in between ended that walk with "dictionary changed size".
    """

    def __iter__(self) -> Iterator[str]:
        return iter(list(super().keys()))


class _Broker(Broker):  # type: ignore[misc]
    """amqtt's Broker with our topic rule built in, and able to bind an IPv6 address."""

    def __init__(self, config: dict[str, Any], gate: Gatekeeper) -> None:
        super().__init__(config)
        self._gate = gate
        self._subscriptions = _Subscriptions()

    async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
        # Decided here rather than in a topic plugin: amqtt runs plugins as one task per
        # check, i.e. per message and subscriber, and the await that costs let a SUBSCRIBE
        # change the subscription table amqtt was iterating to deliver that message. The
        # delivery then died ("dictionary changed size during iteration") and the message
        # was lost for every subscriber after that point. This check never awaits.
        return self._gate.allowed(session, topic)

    async def retain_message(self, source_session: Session | None, topic_name: str | None,
                             data: bytes | bytearray | None, qos: int | None = None) -> None:
        # A retained reading would reach the platform again on every resubscribe, stored
        # anew each time; devices' retain flags are ignored (Mosquitto: the consumer asks
        # for no retained messages instead, which MQTT 3.1.1 cannot ask).
        if source_session is None or source_session.username == PLATFORM_USER:
            await super().retain_message(source_session, topic_name, data, qos)

    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int],
                                                          session: Session) -> None:
        # On a reconnect amqtt 0.12.1 replays retained messages for *every* session's
        # filters, not only this one's: another device's retained commands would leak.
        if self._gate.allowed(session, subscription[0]):
            await super()._publish_retained_messages_for_subscription(subscription, session)

    @classmethod
    def _split_bindaddr_port(cls, port_str: str, default_port: int) -> tuple[str | None, int]:
        # amqtt 0.12.1 keeps the brackets of "[::1]:1883" and hands "[::1]" to the resolver.
        host, port = super()._split_bindaddr_port(port_str, default_port)
        return (host.strip("[]") if host else host), port


class EmbeddedBroker:
    """amqtt on `host:port`, anonymous off, each device confined to its own topics."""

    def __init__(self, core: Core, *, host: str, port: int, platform_password: str) -> None:
        self.host, self.port = host, port
        self.gate = Gatekeeper(core, platform_password)
        self._broker: Broker | None = None

    def config(self) -> dict[str, Any]:
        """The amqtt configuration (only our auth plugin: no anonymous, no $SYS)."""
        bind = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        here = __name__
        return {
            "listeners": {"default": {"type": "tcp", "bind": bind, "max_connections": 0}},
            "timeout_disconnect_delay": 0,
            "session_expiry_interval": SESSION_EXPIRY_S,
            "plugins": {f"{here}.DeviceAuthPlugin": {"gate": self.gate}},
        }

    async def start(self) -> None:
        """Listen; PortInUse when the port is taken."""
        # amqtt logs a traceback when its bind fails: look first, so the user gets one line.
        if not port_free(self.port, self.host):
            raise PortInUse("MQTT", self.host, self.port)
        if logging.getLogger("transitions").level == logging.NOTSET:
            # amqtt's state machines log every session transition at INFO
            logging.getLogger("transitions").setLevel(logging.WARNING)
        broker = _Broker(self.config(), self.gate)
        try:
            await broker.start()
        except BrokerError as exc:
            cause = exc.__cause__
            if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
                raise PortInUse("MQTT", self.host, self.port) from None
            raise
        self._broker = broker
        log.info(t("mqtt.embedded_listening", host=self.host, port=self.port))

    async def stop(self) -> None:
        """Close every session and the listener."""
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.shutdown()
        self.gate.close()
