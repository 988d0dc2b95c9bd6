"""MQTT 3.1.1 and 5 packets: a strict bulk parser and the encoders the transport needs.

Hand-written because no maintained Python library parses MQTT in bulk: paho builds a
`Properties` object per PUBLISH and reads one packet per `select()` (64-127 µs of CPU a
message, issue 10), amqtt's codec is coroutine-per-field. Considered: paho's packet
writer (client side only, no parser), amqtt.mqtt (async per field). Tested against paho's
frames (3.1.1 and 5), `mosquitto_pub/sub` and hypothesis (tests/unit/test_mqtt_codec.py).

`parse(buffer, version)` takes any number of whole and partial packets and returns the
whole ones and how many bytes they used. Anything malformed raises `ProtocolError` with
the MQTT 5 reason code to send before closing; nothing else escapes it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

MQTT_311 = 4
MQTT_5 = 5


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class Reason(IntEnum):
    """MQTT 5 reason codes (the ones wulian sends or reads)."""

    SUCCESS = 0x00
    GRANTED_QOS_1 = 0x01
    NORMAL_DISCONNECT = 0x00
    DISCONNECT_WITH_WILL = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    UNSPECIFIED = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_ID_NOT_VALID = 0x85
    BAD_USERNAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    SERVER_SHUTTING_DOWN = 0x8B
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_ID_IN_USE = 0x91
    PACKET_ID_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    PAYLOAD_FORMAT_INVALID = 0x99
    QOS_NOT_SUPPORTED = 0x9B
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


# MQTT 3.1.1 CONNACK return codes
CONNACK_311 = {Reason.UNSUPPORTED_PROTOCOL_VERSION: 1, Reason.CLIENT_ID_NOT_VALID: 2,
               Reason.SERVER_UNAVAILABLE: 3, Reason.BAD_USERNAME_OR_PASSWORD: 4,
               Reason.NOT_AUTHORIZED: 5}


class Prop(IntEnum):
    """MQTT 5 property identifiers."""

    PAYLOAD_FORMAT = 0x01
    MESSAGE_EXPIRY = 0x02
    CONTENT_TYPE = 0x03
    RESPONSE_TOPIC = 0x08
    CORRELATION_DATA = 0x09
    SUBSCRIPTION_ID = 0x0B
    SESSION_EXPIRY = 0x11
    ASSIGNED_CLIENT_ID = 0x12
    SERVER_KEEP_ALIVE = 0x13
    AUTH_METHOD = 0x15
    AUTH_DATA = 0x16
    REQUEST_PROBLEM_INFO = 0x17
    WILL_DELAY = 0x18
    REQUEST_RESPONSE_INFO = 0x19
    RESPONSE_INFO = 0x1A
    SERVER_REFERENCE = 0x1C
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    TOPIC_ALIAS = 0x23
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27
    WILDCARD_SUB_AVAILABLE = 0x28
    SUB_ID_AVAILABLE = 0x29
    SHARED_SUB_AVAILABLE = 0x2A


_BYTE = {Prop.PAYLOAD_FORMAT, Prop.REQUEST_PROBLEM_INFO, Prop.REQUEST_RESPONSE_INFO,
         Prop.MAXIMUM_QOS, Prop.RETAIN_AVAILABLE, Prop.WILDCARD_SUB_AVAILABLE,
         Prop.SUB_ID_AVAILABLE, Prop.SHARED_SUB_AVAILABLE}
_U16 = {Prop.SERVER_KEEP_ALIVE, Prop.RECEIVE_MAXIMUM, Prop.TOPIC_ALIAS_MAXIMUM, Prop.TOPIC_ALIAS}
_U32 = {Prop.MESSAGE_EXPIRY, Prop.SESSION_EXPIRY, Prop.WILL_DELAY, Prop.MAXIMUM_PACKET_SIZE}
_STR = {Prop.CONTENT_TYPE, Prop.RESPONSE_TOPIC, Prop.ASSIGNED_CLIENT_ID, Prop.AUTH_METHOD,
        Prop.RESPONSE_INFO, Prop.SERVER_REFERENCE, Prop.REASON_STRING}
_BIN = {Prop.CORRELATION_DATA, Prop.AUTH_DATA}
_KNOWN = {int(p) for p in Prop}


class ProtocolError(Exception):
    """A packet breaks the protocol: close the connection (MQTT 5: after `reason`)."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


Props = dict[int, Any]  # USER_PROPERTY maps to a list of (key, value) pairs


@dataclass(slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    props: Props = field(default_factory=dict)


@dataclass(slots=True)
class Connect:
    version: int
    client_id: str
    clean: bool
    keepalive: int
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    props: Props = field(default_factory=dict)


@dataclass(slots=True)
class ConnAck:
    session_present: bool
    code: int
    props: Props = field(default_factory=dict)


@dataclass(slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int = 0
    props: Props = field(default_factory=dict)


@dataclass(slots=True)
class Ack:
    """PUBACK, PUBREC, PUBREL or PUBCOMP."""

    kind: PacketType
    packet_id: int
    reason: int = 0
    props: Props = field(default_factory=dict)


@dataclass(slots=True)
class Subscribe:
    packet_id: int
    filters: list[tuple[str, int]]  # (filter, options byte: QoS in the low 2 bits)
    props: Props = field(default_factory=dict)


@dataclass(slots=True)
class SubAck:
    packet_id: int
    codes: list[int]
    props: Props = field(default_factory=dict)


@dataclass(slots=True)
class Unsubscribe:
    packet_id: int
    filters: list[str]
    props: Props = field(default_factory=dict)


@dataclass(slots=True)
class UnsubAck:
    packet_id: int
    codes: list[int]


@dataclass(slots=True)
class Ping:
    response: bool  # PINGRESP (else PINGREQ)


@dataclass(slots=True)
class Disconnect:
    reason: int = 0
    props: Props = field(default_factory=dict)


@dataclass(slots=True)
class Auth:
    reason: int = 0
    props: Props = field(default_factory=dict)


Packet = (Connect | ConnAck | Publish | Ack | Subscribe | SubAck | Unsubscribe | UnsubAck
          | Ping | Disconnect | Auth)


# --- reading ----------------------------------------------------------------------------

class _Reader:
    """Fields of one packet's body; every read is bounds-checked."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def left(self) -> int:
        return self.end - self.pos

    def take(self, n: int) -> bytes:
        if n > self.end - self.pos:
            raise ProtocolError(Reason.MALFORMED_PACKET, "packet shorter than its fields")
        chunk = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return chunk

    def u8(self) -> int:
        if self.pos >= self.end:
            raise ProtocolError(Reason.MALFORMED_PACKET, "packet shorter than its fields")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u16(self) -> int:
        value: int = struct.unpack(">H", self.take(2))[0]
        return value

    def u32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def varint(self) -> int:
        value, shift = 0, 0
        for _ in range(4):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise ProtocolError(Reason.MALFORMED_PACKET, "variable byte integer over 4 bytes")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        return utf8(self.binary())

    def props(self) -> Props:
        length = self.varint()
        if length > self.left():
            raise ProtocolError(Reason.MALFORMED_PACKET, "properties longer than the packet")
        end, props = self.pos + length, Props()
        while self.pos < end:
            ident = self.varint()
            if ident not in _KNOWN:
                raise ProtocolError(Reason.MALFORMED_PACKET, f"unknown property {ident:#x}")
            if ident in _BYTE:
                value: Any = self.u8()
            elif ident in _U16:
                value = self.u16()
            elif ident in _U32:
                value = self.u32()
            elif ident in _STR:
                value = self.string()
            elif ident in _BIN:
                value = self.binary()
            elif ident == Prop.SUBSCRIPTION_ID:
                value = self.varint()
            else:  # USER_PROPERTY: a string pair, and the only one that may repeat
                props.setdefault(ident, []).append((self.string(), self.string()))
                continue
            if ident in props:
                raise ProtocolError(Reason.PROTOCOL_ERROR, f"property {ident:#x} repeated")
            props[ident] = value
        if self.pos != end:
            raise ProtocolError(Reason.MALFORMED_PACKET, "properties overrun their length")
        return props


def utf8(raw: bytes) -> str:
    """A UTF-8 string as MQTT allows it: well-formed, no U+0000 (MQTT-1.5.4-1, -2)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(Reason.MALFORMED_PACKET, "string is not valid UTF-8") from None
    if "\x00" in text:
        raise ProtocolError(Reason.MALFORMED_PACKET, "string contains U+0000")
    return text


def _remaining_length(buf: bytes | bytearray | memoryview, pos: int) -> tuple[int, int] | None:
    """(length, bytes it took) of the remaining-length field at `pos`, None if incomplete."""
    value, shift = 0, 0
    for n in range(4):
        if pos + n >= len(buf):
            return None
        byte = buf[pos + n]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, n + 1
        shift += 7
    raise ProtocolError(Reason.MALFORMED_PACKET, "remaining length over 4 bytes")


def parse(buf: bytes | bytearray | memoryview, version: int = MQTT_311,
          max_packet: int = 268_435_455, max_count: int = 1 << 30) -> tuple[list[Packet], int]:
    """The whole packets at the start of `buf` (at most `max_count`), and the bytes they took."""
    packets: list[Packet] = []
    pos, size = 0, len(buf)
    while pos + 2 <= size and len(packets) < max_count:
        header = buf[pos]
        found = _remaining_length(buf, pos + 1)
        if found is None:
            break
        length, taken = found
        if 1 + taken + length > max_packet:
            raise ProtocolError(Reason.PACKET_TOO_LARGE, f"packet of {length} bytes")
        body = pos + 1 + taken
        if body + length > size:
            break
        packet = _decode(header, _Reader(buf, body, body + length), version)
        if isinstance(packet, Connect):
            version = packet.version
        packets.append(packet)
        pos = body + length
    return packets, pos


def _decode(header: int, r: _Reader, version: int) -> Packet:
    kind, flags = header >> 4, header & 0x0F
    v5 = version == MQTT_5
    if kind == PacketType.PUBLISH:
        return _publish(flags, r, v5)
    expected = 0x02 if kind in (PacketType.PUBREL, PacketType.SUBSCRIBE,
                                PacketType.UNSUBSCRIBE) else 0
    if flags != expected or kind == 0:
        raise ProtocolError(Reason.MALFORMED_PACKET, f"reserved flags {flags:#x} on type {kind}")
    if kind in (PacketType.PUBACK, PacketType.PUBREC, PacketType.PUBREL, PacketType.PUBCOMP):
        packet_id = r.u16()
        reason, props = 0, Props()
        if v5 and r.left():
            reason = r.u8()
            if r.left():
                props = r.props()
        _done(r)
        return Ack(PacketType(kind), packet_id, reason, props)
    if kind == PacketType.CONNECT:
        return _connect(r)
    if kind == PacketType.SUBSCRIBE:
        return _subscribe(r, v5)
    if kind == PacketType.UNSUBSCRIBE:
        packet_id = r.u16()
        props = r.props() if v5 else {}
        filters = []
        while r.left():
            filters.append(r.string())
        if not filters:
            raise ProtocolError(Reason.PROTOCOL_ERROR, "UNSUBSCRIBE without a topic filter")
        return Unsubscribe(packet_id, filters, props)
    if kind in (PacketType.PINGREQ, PacketType.PINGRESP):
        _done(r)
        return Ping(kind == PacketType.PINGRESP)
    if kind == PacketType.DISCONNECT:
        reason, props = 0, Props()
        if v5 and r.left():
            reason = r.u8()
            if r.left():
                props = r.props()
        _done(r)
        return Disconnect(reason, props)
    if kind == PacketType.CONNACK:
        flags_byte, code = r.u8(), r.u8()
        props = r.props() if v5 and r.left() else {}
        _done(r)
        return ConnAck(bool(flags_byte & 1), code, props)
    if kind == PacketType.SUBACK:
        packet_id = r.u16()
        props = r.props() if v5 else {}
        return SubAck(packet_id, list(r.take(r.left())), props)
    if kind == PacketType.UNSUBACK:
        packet_id = r.u16()
        if v5:
            r.props()
        return UnsubAck(packet_id, list(r.take(r.left())))
    if kind == PacketType.AUTH and v5:
        reason = r.u8() if r.left() else 0
        props = r.props() if r.left() else {}
        _done(r)
        return Auth(reason, props)
    raise ProtocolError(Reason.PROTOCOL_ERROR, f"packet type {kind} not allowed here")


def _done(r: _Reader) -> None:
    if r.left():
        raise ProtocolError(Reason.MALFORMED_PACKET, "bytes left over after the packet")


def check_topic(topic: str) -> str:
    """A topic name a PUBLISH may carry: non-empty, no wildcard (MQTT-3.3.2-2)."""
    if not topic or "+" in topic or "#" in topic:
        raise ProtocolError(Reason.TOPIC_NAME_INVALID, f"invalid topic name {topic[:64]!r}")
    return topic


def check_filter(topic_filter: str) -> bool:
    """True when a topic filter is well formed (`#` last and alone, `+` alone in a level)."""
    if not topic_filter:
        return False
    levels = topic_filter.split("/")
    for n, level in enumerate(levels):
        if "#" in level and (level != "#" or n != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def _publish(flags: int, r: _Reader, v5: bool) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise ProtocolError(Reason.MALFORMED_PACKET, "QoS 3")
    dup = bool(flags & 0x08)
    if dup and qos == 0:
        raise ProtocolError(Reason.MALFORMED_PACKET, "DUP set on a QoS 0 PUBLISH")
    topic = r.string()
    packet_id = 0
    if qos:
        packet_id = r.u16()
        if packet_id == 0:
            raise ProtocolError(Reason.PROTOCOL_ERROR, "packet identifier 0")
    props = r.props() if v5 else {}
    if not (v5 and not topic and Prop.TOPIC_ALIAS in props):
        check_topic(topic)
    return Publish(topic, r.take(r.left()), qos, bool(flags & 0x01), dup, packet_id, props)


def _connect(r: _Reader) -> Connect:
    name = r.binary()
    level = r.u8()
    if name not in (b"MQTT", b"MQIsdp") or level not in (3, MQTT_311, MQTT_5):
        raise ProtocolError(Reason.UNSUPPORTED_PROTOCOL_VERSION,
                            f"protocol {name!r} level {level}")
    version = MQTT_5 if level == MQTT_5 else MQTT_311
    flags = r.u8()
    if flags & 0x01:
        raise ProtocolError(Reason.MALFORMED_PACKET, "reserved CONNECT flag set")
    keepalive = r.u16()
    props = r.props() if version == MQTT_5 else {}
    client_id = r.string()
    will = None
    will_qos = (flags >> 3) & 0x03
    if flags & 0x04:
        if will_qos == 3:
            raise ProtocolError(Reason.MALFORMED_PACKET, "will QoS 3")
        will_props = r.props() if version == MQTT_5 else {}
        will = Will(check_topic(r.string()), r.binary(), will_qos, bool(flags & 0x20),
                    will_props)
    elif will_qos or flags & 0x20:
        raise ProtocolError(Reason.MALFORMED_PACKET, "will QoS or retain without a will")
    username = r.string() if flags & 0x80 else None
    password = r.binary() if flags & 0x40 else None
    _done(r)
    return Connect(version, client_id, bool(flags & 0x02), keepalive, username, password,
                   will, props)


def _subscribe(r: _Reader, v5: bool) -> Subscribe:
    packet_id = r.u16()
    if packet_id == 0:
        raise ProtocolError(Reason.PROTOCOL_ERROR, "packet identifier 0")
    props = r.props() if v5 else {}
    filters = []
    while r.left():
        topic_filter = r.string()
        options = r.u8()
        if options & 0x03 == 3 or options & (0xC0 if v5 else 0xFC):
            raise ProtocolError(Reason.MALFORMED_PACKET, "reserved subscription options")
        filters.append((topic_filter, options))
    if not filters:
        raise ProtocolError(Reason.PROTOCOL_ERROR, "SUBSCRIBE without a topic filter")
    return Subscribe(packet_id, filters, props)


# --- writing ----------------------------------------------------------------------------

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _str(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


def _bin(raw: bytes) -> bytes:
    return struct.pack(">H", len(raw)) + raw


def encode_props(props: Props) -> bytes:
    """An MQTT 5 property block (length first)."""
    out = bytearray()
    for ident, value in props.items():
        if ident == Prop.USER_PROPERTY:
            for key, val in value:
                out += _varint(ident) + _str(key) + _str(val)
            continue
        out += _varint(ident)
        if ident in _BYTE:
            out.append(value)
        elif ident in _U16:
            out += struct.pack(">H", value)
        elif ident in _U32:
            out += struct.pack(">I", value)
        elif ident in _STR:
            out += _str(value)
        elif ident in _BIN:
            out += _bin(value)
        else:
            out += _varint(value)
    return _varint(len(out)) + bytes(out)


def _packet(kind: PacketType, flags: int, body: bytes) -> bytes:
    return bytes([(kind << 4) | flags]) + _varint(len(body)) + body


def _reason_props(reason_string: str | None, limit: int = 1024) -> Props:
    return {Prop.REASON_STRING: reason_string[:limit]} if reason_string else {}


def connack(version: int, code: int, *, session_present: bool = False,
            props: Props | None = None) -> bytes:
    """CONNACK; `code` is an MQTT 5 reason code, mapped for 3.1.1 clients."""
    if version == MQTT_5:
        return _packet(PacketType.CONNACK, 0, bytes([int(session_present), code])
                       + encode_props(props or {}))
    legacy = 0 if code == 0 else CONNACK_311.get(Reason(code), 5)
    return _packet(PacketType.CONNACK, 0, bytes([int(session_present and legacy == 0),
                                                 legacy]))


def ack(kind: PacketType, version: int, packet_id: int, reason: int = 0,
        reason_string: str | None = None) -> bytes:
    """PUBACK / PUBREC / PUBREL / PUBCOMP (MQTT 5: with a reason code and string)."""
    flags = 0x02 if kind == PacketType.PUBREL else 0
    body = struct.pack(">H", packet_id)
    if version == MQTT_5 and (reason or reason_string):
        body += bytes([reason]) + encode_props(_reason_props(reason_string))
    return _packet(kind, flags, body)


def suback(version: int, packet_id: int, codes: list[int]) -> bytes:
    props = encode_props({}) if version == MQTT_5 else b""
    if version != MQTT_5:  # 3.1.1 knows only 0-2 and 0x80
        codes = [c if c <= 2 else 0x80 for c in codes]
    return _packet(PacketType.SUBACK, 0, struct.pack(">H", packet_id) + props + bytes(codes))


def unsuback(version: int, packet_id: int, codes: list[int]) -> bytes:
    if version == MQTT_5:
        return _packet(PacketType.UNSUBACK, 0, struct.pack(">H", packet_id)
                       + encode_props({}) + bytes(codes))
    return _packet(PacketType.UNSUBACK, 0, struct.pack(">H", packet_id))


PINGRESP = _packet(PacketType.PINGRESP, 0, b"")
PINGREQ = _packet(PacketType.PINGREQ, 0, b"")


def publish(version: int, topic: str, payload: bytes, *, qos: int = 0, packet_id: int = 0,
            retain: bool = False, dup: bool = False, props: Props | None = None) -> bytes:
    flags = (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = _str(topic) + (struct.pack(">H", packet_id) if qos else b"")
    if version == MQTT_5:
        body += encode_props(props or {})
    return _packet(PacketType.PUBLISH, flags, body + payload)


def disconnect(version: int, reason: int = 0, reason_string: str | None = None) -> bytes:
    """DISCONNECT (a server sends one only to MQTT 5 clients)."""
    if version != MQTT_5:
        return _packet(PacketType.DISCONNECT, 0, b"")
    return _packet(PacketType.DISCONNECT, 0, bytes([reason])
                   + encode_props(_reason_props(reason_string)))


def connect(version: int, client_id: str, *, clean: bool = True, keepalive: int = 60,
            username: str | None = None, password: bytes | None = None,
            props: Props | None = None) -> bytes:
    """CONNECT (the client side: tests and the future Mosquitto consumer)."""
    flags = (0x02 if clean else 0) | (0x80 if username is not None else 0) | (
        0x40 if password is not None else 0)
    body = _str("MQTT") + bytes([version, flags]) + struct.pack(">H", keepalive)
    if version == MQTT_5:
        body += encode_props(props or {})
    body += _str(client_id)
    if username is not None:
        body += _str(username)
    if password is not None:
        body += _bin(password)
    return _packet(PacketType.CONNECT, 0, body)


def subscribe(version: int, packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    body = struct.pack(">H", packet_id) + (encode_props({}) if version == MQTT_5 else b"")
    for topic_filter, options in filters:
        body += _str(topic_filter) + bytes([options])
    return _packet(PacketType.SUBSCRIBE, 0x02, body)


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True when `topic` matches `topic_filter` (`+` one level, `#` the rest)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False  # MQTT-4.7.2-1
    f_levels, t_levels = topic_filter.split("/"), topic.split("/")
    for n, level in enumerate(f_levels):
        if level == "#":
            return True
        if n >= len(t_levels) or (level != "+" and level != t_levels[n]):
            return False
    return len(f_levels) == len(t_levels)
