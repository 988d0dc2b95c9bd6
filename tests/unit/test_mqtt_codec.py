"""The MQTT codec: strict on what the protocol forbids, never failing any other way."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wulian.access.mqtt_codec import (
    MQTT_5,
    MQTT_311,
    Ack,
    ConnAck,
    Connect,
    PacketType,
    Prop,
    ProtocolError,
    Publish,
    Reason,
    Subscribe,
    ack,
    check_filter,
    connack,
    connect,
    parse,
    publish,
    subscribe,
    topic_matches,
)


@given(st.binary(max_size=300), st.sampled_from([MQTT_311, MQTT_5]))
@settings(max_examples=3000)
def test_any_bytes_give_packets_or_a_protocol_error(data: bytes, version: int) -> None:
    try:
        packets, used = parse(data, version)
    except ProtocolError as exc:
        assert isinstance(exc.reason, Reason)
        return
    assert 0 <= used <= len(data)
    assert len(packets) <= len(data) // 2


@given(st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s and "+" not in s
                                                and "#" not in s),
       st.binary(max_size=200), st.sampled_from([0, 1, 2]), st.booleans(),
       st.integers(1, 65535), st.sampled_from([MQTT_311, MQTT_5]))
def test_publish_round_trips(topic: str, payload: bytes, qos: int, retain: bool, packet_id: int,
                             version: int) -> None:
    frame = publish(version, topic, payload, qos=qos, packet_id=packet_id, retain=retain)
    [packet], used = parse(frame + frame[:3], version)  # a partial second packet waits
    assert used == len(frame)
    assert isinstance(packet, Publish)
    assert (packet.topic, packet.payload, packet.qos, packet.retain) == (topic, payload, qos,
                                                                         retain)
    assert packet.packet_id == (packet_id if qos else 0)


def test_a_stream_cut_anywhere_parses_the_same() -> None:
    frames = (connect(MQTT_5, "dev-1", username="dev-1", password=b"pw", keepalive=30,
                      props={Prop.SESSION_EXPIRY: 60})
              + subscribe(MQTT_5, 7, [("devices/dev-1/#", 1)])
              + publish(MQTT_5, "devices/dev-1/telemetry", b'{"t":1}', qos=1, packet_id=9))
    whole, used = parse(frames, MQTT_5)
    assert used == len(frames) and len(whole) == 3
    for cut in range(len(frames)):
        first, used_first = parse(frames[:cut], MQTT_5)
        rest, _ = parse(frames[used_first:], MQTT_5)
        assert first + rest == whole
    hello = whole[0]
    assert isinstance(hello, Connect)
    assert (hello.version, hello.client_id, hello.username, hello.password, hello.keepalive,
            hello.props) == (MQTT_5, "dev-1", "dev-1", b"pw", 30, {Prop.SESSION_EXPIRY: 60})
    assert isinstance(whole[1], Subscribe) and whole[1].filters == [("devices/dev-1/#", 1)]


@pytest.mark.parametrize(("frame", "reason"), [
    # a wildcard in a PUBLISH topic (MQTT-3.3.2-2)
    (publish(MQTT_311, "devices/+/telemetry", b"{}"), Reason.TOPIC_NAME_INVALID),
    (publish(MQTT_311, "devices/#", b"{}"), Reason.TOPIC_NAME_INVALID),
    # invalid UTF-8 and U+0000 in a topic (MQTT-1.5.4-1, -2)
    (bytes([0x30, 5, 0, 3]) + b"a\xffb", Reason.MALFORMED_PACKET),
    (bytes([0x30, 5, 0, 3]) + b"a\x00b", Reason.MALFORMED_PACKET),
    # QoS 3, and DUP on QoS 0
    (bytes([0x36, 4, 0, 1]) + b"a" + b"x", Reason.MALFORMED_PACKET),
    (bytes([0x38, 4, 0, 1]) + b"ax", Reason.MALFORMED_PACKET),
    # reserved flags on a PINGREQ; a remaining length over four bytes
    (bytes([0xC1, 0]), Reason.MALFORMED_PACKET),
    (bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), Reason.MALFORMED_PACKET),
    # an unknown protocol level
    (bytes([0x10, 10, 0, 4]) + b"MQTT" + bytes([9, 2, 0, 60]), Reason.UNSUPPORTED_PROTOCOL_VERSION),
    # packet identifier 0 on a QoS 1 PUBLISH
    (bytes([0x32, 5, 0, 1]) + b"a" + bytes([0, 0]), Reason.PROTOCOL_ERROR),
])
def test_what_the_protocol_forbids_is_a_protocol_error(frame: bytes, reason: Reason) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse(frame, MQTT_311)
    assert caught.value.reason == reason


def test_a_packet_over_the_limit_is_refused_from_its_header() -> None:
    header_only = bytes([0x30]) + bytes([0x80, 0x80, 0x80, 0x01])  # 2 MiB announced
    with pytest.raises(ProtocolError) as caught:
        parse(header_only, MQTT_311, max_packet=1 << 20)
    assert caught.value.reason == Reason.PACKET_TOO_LARGE


def test_connack_and_acks_speak_each_version() -> None:
    [v5], _ = parse(connack(MQTT_5, Reason.SUCCESS, session_present=True,
                            props={Prop.RECEIVE_MAXIMUM: 10}), MQTT_5)
    assert v5 == ConnAck(True, 0, {Prop.RECEIVE_MAXIMUM: 10})
    [v3], _ = parse(connack(MQTT_311, Reason.BAD_USERNAME_OR_PASSWORD), MQTT_311)
    assert v3 == ConnAck(False, 4, {})  # 3.1.1: "bad user name or password"
    [refused], _ = parse(ack(PacketType.PUBACK, MQTT_5, 5, Reason.NOT_AUTHORIZED, "no"), MQTT_5)
    assert refused == Ack(PacketType.PUBACK, 5, Reason.NOT_AUTHORIZED,
                          {Prop.REASON_STRING: "no"})
    assert ack(PacketType.PUBACK, MQTT_311, 5, Reason.NOT_AUTHORIZED) == bytes([0x40, 2, 0, 5])


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), [
    ("devices/d1/#", "devices/d1/telemetry", True),
    ("devices/d1/#", "devices/d1", True),
    ("devices/+/telemetry", "devices/d1/telemetry", True),
    ("devices/+/telemetry", "devices/d1/events/x", False),
    ("devices/d1/commands/+", "devices/d1/commands/c1", True),
    ("#", "$SYS/broker/uptime", False),
    ("devices/d1/telemetry", "devices/d2/telemetry", False),
])
def test_topic_filters_match_as_mqtt_says(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize(("topic_filter", "ok"), [
    ("devices/d1/#", True), ("devices/+/x", True), ("#", True),
    ("devices/d1#", False), ("devices/#/x", False), ("devices/d+/x", False), ("", False),
])
def test_filters_are_checked(topic_filter: str, ok: bool) -> None:
    assert check_filter(topic_filter) is ok
