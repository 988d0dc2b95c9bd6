"""MQTT sessions of the device transport: subscriptions, queued downlink, in-flight ids.

Kept in memory, bounded: a session nobody resumes expires (MQTT 5 Session Expiry, capped;
MQTT 3.1.1 CleanSession=0 sessions after `SESSION_EXPIRY_S`), and a session's queue of
downlink messages for an offline device holds at most `QUEUE_MAX` (the oldest go first,
counted). No I/O.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wulian.access.mqtt_codec import check_filter, topic_matches

if TYPE_CHECKING:
    from wulian.access.mqtt_transport import Connection

SESSION_EXPIRY_S = 7 * 24 * 3600
QUEUE_MAX = 1000  # downlink messages kept for one offline device
INFLIGHT_MAX = 100  # downlink QoS 1 messages sent and not yet acknowledged, per session


@dataclass(slots=True)
class Downlink:
    topic: str
    payload: bytes
    qos: int
    retain: bool = False


@dataclass(slots=True)
class Session:
    """What outlives one connection of a client: its subscriptions and undelivered messages."""

    client_id: str
    device_id: str | None  # None: the platform's own client
    subscriptions: dict[str, int] = field(default_factory=dict)  # filter -> granted QoS
    queue: deque[Downlink] = field(default_factory=deque)
    inflight: dict[int, Downlink] = field(default_factory=dict)  # our packet id -> message
    awaiting_release: set[int] = field(default_factory=set)  # QoS 2 ids we PUBREC'd
    expiry_s: int = 0
    expires_at: float | None = None  # set when the connection ends
    connection: Connection | None = None
    dropped: int = 0
    _next_id: int = 0

    def next_packet_id(self) -> int:
        for _ in range(65535):
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self.inflight:
                return self._next_id
        raise RuntimeError("no free packet identifier")  # INFLIGHT_MAX keeps this away

    def granted(self, topic: str) -> int | None:
        """The highest QoS among this session's filters matching `topic`, None if none."""
        best = None
        for topic_filter, qos in self.subscriptions.items():
            if topic_matches(topic_filter, topic) and (best is None or qos > best):
                best = qos
        return best

    def enqueue(self, message: Downlink) -> None:
        if len(self.queue) >= QUEUE_MAX:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append(message)


def may_subscribe(device_id: str | None, topic_filter: str) -> bool:
    """Devices only under their own `devices/{id}/`; the platform anywhere well formed."""
    if not check_filter(topic_filter) or topic_filter.startswith("$share/"):
        return False
    return device_id is None or topic_filter.startswith(f"devices/{device_id}/")


class SessionTable:
    """Sessions by client id, with expiry."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self._platform: set[str] = set()  # client ids of the platform's own sessions

    def open(self, client_id: str, device_id: str | None, *, clean: bool,
             expiry_s: int) -> tuple[Session, bool]:
        """The session a CONNECT starts or resumes, and whether one was resumed."""
        old = self.sessions.get(client_id)
        if old is not None and not clean:
            old.expiry_s, old.expires_at = expiry_s, None
            return old, True
        session = Session(client_id, device_id, expiry_s=expiry_s)
        self.sessions[client_id] = session
        if device_id is None:
            self._platform.add(client_id)
        else:
            self._platform.discard(client_id)
        return session, False

    def closed(self, session: Session, now: float) -> None:
        """The session's connection ended: keep it for its expiry, or drop it now."""
        session.connection = None
        if session.expiry_s <= 0:
            if self.sessions.get(session.client_id) is session:
                self._drop(session.client_id)
        else:
            session.expires_at = now + session.expiry_s

    def expire(self, now: float) -> int:
        """Drop sessions whose expiry passed; how many."""
        gone = [cid for cid, s in self.sessions.items()
                if s.connection is None and s.expires_at is not None and s.expires_at <= now]
        for cid in gone:
            self._drop(cid)
        return len(gone)

    def forget(self, client_id: str) -> None:
        """Drop a session whatever its expiry (its device was deleted)."""
        if client_id in self.sessions:
            self._drop(client_id)

    def _drop(self, client_id: str) -> None:
        del self.sessions[client_id]
        self._platform.discard(client_id)

    def subscribers(self, topic: str) -> list[tuple[Session, int]]:
        """(session, QoS) of every session with a filter matching `topic`.

        A device subscribes only under its own prefix, so of the devices only the one the
        topic names can match: no walk over every session per message.
        """
        candidates = [self.sessions[cid] for cid in self._platform]
        parts = topic.split("/", 2)
        if len(parts) == 3 and parts[0] == "devices":
            own = self.sessions.get(parts[1])
            if own is not None and own.device_id is not None:
                candidates.append(own)
        found = []
        for session in candidates:
            qos = session.granted(topic)
            if qos is not None:
                found.append((session, qos))
        return found

    def __len__(self) -> int:
        return len(self.sessions)
