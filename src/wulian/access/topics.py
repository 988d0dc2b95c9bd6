"""The MQTT topics of the device contract (DESIGN.md): parse what arrives, build what is sent."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from wulian.domain.device import DEVICE_ID
from wulian.domain.message import Kind

ROOT = "devices"
MAX_TOPIC_LEVEL = 128  # an event or command id longer than this is not ours

# What the platform's consumer subscribes to (QoS 1).
TELEMETRY_FILTER = f"{ROOT}/+/telemetry"
EVENTS_FILTER = f"{ROOT}/+/events/+"
INGEST_FILTERS = (TELEMETRY_FILTER, EVENTS_FILTER)


class Channel(StrEnum):
    """Which part of the contract a topic belongs to."""

    TELEMETRY = "telemetry"
    EVENT = "event"
    ERRORS = "errors"
    SHADOW_REPORTED = "shadow_reported"
    SHADOW_DESIRED = "shadow_desired"
    COMMAND = "command"
    COMMAND_RESPONSE = "command_response"


_INBOUND_KIND = {Channel.TELEMETRY: Kind.TELEMETRY, Channel.EVENT: Kind.EVENT}


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """A parsed contract topic: whose it is, which channel, and the event/command id if any."""

    device_id: str
    channel: Channel
    name: str | None = None

    @property
    def kind(self) -> Kind | None:
        """The pipeline's message kind for telemetry and events; None for other channels."""
        return _INBOUND_KIND.get(self.channel)


def _name_ok(name: str) -> bool:
    return 0 < len(name) <= MAX_TOPIC_LEVEL and "+" not in name and "#" not in name


def parse(topic: str) -> DeviceTopic | None:
    """The contract topic `topic` names, or None when it lies outside the contract."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != ROOT or not DEVICE_ID.fullmatch(parts[1]):
        return None
    device_id, rest = parts[1], parts[2:]
    head = rest[0]
    if len(rest) == 1:
        if head == "telemetry":
            return DeviceTopic(device_id, Channel.TELEMETRY)
        if head == "errors":
            return DeviceTopic(device_id, Channel.ERRORS)
        return None
    name = rest[1]
    if not _name_ok(name):
        return None
    if len(rest) == 2:
        if head == "events":
            return DeviceTopic(device_id, Channel.EVENT, name)
        if head == "commands":
            return DeviceTopic(device_id, Channel.COMMAND, name)
        if head == "shadow" and name == "reported":
            return DeviceTopic(device_id, Channel.SHADOW_REPORTED)
        if head == "shadow" and name == "desired":
            return DeviceTopic(device_id, Channel.SHADOW_DESIRED)
        return None
    if len(rest) == 3 and head == "commands" and rest[2] == "response":
        return DeviceTopic(device_id, Channel.COMMAND_RESPONSE, name)
    return None


def prefix(device_id: str) -> str:
    """Everything a device may use starts with this."""
    return f"{ROOT}/{device_id}/"


def device_filter(device_id: str) -> str:
    """The one filter that covers all of a device's topics (its broker ACL)."""
    return f"{ROOT}/{device_id}/#"


def owns(device_id: str, topic: str) -> bool:
    """True when `topic` (a topic or a subscription filter) lies under the device's own prefix."""
    return topic.startswith(prefix(device_id))


def telemetry(device_id: str) -> str:
    return f"{ROOT}/{device_id}/telemetry"


def event(device_id: str, event_id: str) -> str:
    return f"{ROOT}/{device_id}/events/{event_id}"


def errors(device_id: str) -> str:
    return f"{ROOT}/{device_id}/errors"


def shadow_reported(device_id: str) -> str:
    return f"{ROOT}/{device_id}/shadow/reported"


def shadow_desired(device_id: str) -> str:
    return f"{ROOT}/{device_id}/shadow/desired"


def command(device_id: str, command_id: str) -> str:
    return f"{ROOT}/{device_id}/commands/{command_id}"


def command_response(device_id: str, command_id: str) -> str:
    return f"{ROOT}/{device_id}/commands/{command_id}/response"
