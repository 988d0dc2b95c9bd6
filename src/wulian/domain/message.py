"""The one message type every access adapter produces, and what the pipeline makes of it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from wulian.domain.rejection import Rejection


class Kind(StrEnum):
    TELEMETRY = "telemetry"
    EVENT = "event"


class Protocol(StrEnum):
    MQTT = "mqtt"
    HTTP = "http"
    COAP = "coap"


@dataclass(slots=True)
class Inbound:
    """Bytes from a device, as an adapter hands them on (already authenticated by it)."""

    device_id: str
    kind: Kind
    payload: bytes
    protocol: Protocol
    received_ms: int
    topic: str = ""
    event: str | None = None
    remote: str | None = None  # "ip:port" or "[ip6]:port" when the adapter knows it


Value = int | float | bool | str


@dataclass(slots=True)
class EventRecord:
    device_id: str
    event: str
    level: str
    ts: int
    params: dict[str, Any]


@dataclass(slots=True)
class RejectionRecord:
    """A dead letter: the message as received, and why it was refused."""

    received_ms: int
    device_id: str | None
    protocol: str
    topic: str
    code: str
    message: str
    payload: bytes


@dataclass(slots=True)
class SeenRecord:
    ts: int
    protocol: str
    remote: str | None


@dataclass(slots=True)
class WriteBatch:
    """Everything one pipeline batch stores, written in one transaction."""

    points: list[tuple[str, str, int, Value]] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    rejections: list[RejectionRecord] = field(default_factory=list)
    seen: dict[str, SeenRecord] = field(default_factory=dict)
    accepted: int = 0
    # counter rows bumped beside the standard ones, e.g. `org.<id>.rejected.rate_limited`
    counts: Counter[str] = field(default_factory=Counter)

    def __len__(self) -> int:
        return self.accepted + len(self.rejections)


@dataclass(slots=True)
class Outcome:
    """What became of one inbound message: accepted with n points, or a rejection."""

    points: int = 0
    rejection: Rejection | None = None

    @property
    def ok(self) -> bool:
        return self.rejection is None
