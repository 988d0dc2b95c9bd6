"""The device-contract topics: parsing is total (never raises) and agrees with building."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wulian.access import topics
from wulian.access.mqtt_ingest import BrokerUrl
from wulian.access.topics import Channel, DeviceTopic
from wulian.domain.message import Kind

ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,128}", fullmatch=True)
names = st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)


@pytest.mark.parametrize(("topic", "expected"), [
    ("devices/d1/telemetry", DeviceTopic("d1", Channel.TELEMETRY)),
    ("devices/d1/events/fault", DeviceTopic("d1", Channel.EVENT, "fault")),
    ("devices/d1/errors", DeviceTopic("d1", Channel.ERRORS)),
    ("devices/d1/shadow/reported", DeviceTopic("d1", Channel.SHADOW_REPORTED)),
    ("devices/d1/shadow/desired", DeviceTopic("d1", Channel.SHADOW_DESIRED)),
    ("devices/d1/commands/c-9", DeviceTopic("d1", Channel.COMMAND, "c-9")),
    ("devices/d1/commands/c-9/response", DeviceTopic("d1", Channel.COMMAND_RESPONSE, "c-9")),
])
def test_contract_topics_parse(topic: str, expected: DeviceTopic) -> None:
    assert topics.parse(topic) == expected


@pytest.mark.parametrize("topic", [
    "", "devices", "devices/d1", "devices/d1/", "devices//telemetry", "device/d1/telemetry",
    "devices/d 1/telemetry", "devices/d1\n/telemetry", "devices/d1/telemetry/x",
    "devices/d1/events", "devices/d1/events/", "devices/d1/events/a/b", "devices/d1/shadow/x",
    "devices/d1/commands/c/answer", "/devices/d1/telemetry", "devices/+/telemetry",
    "devices/d1/events/+", "$SYS/broker/uptime", "devices/" + "x" * 129 + "/telemetry",
    "devices/d1/events/" + "e" * 129,
])
def test_other_topics_are_outside_the_contract(topic: str) -> None:
    assert topics.parse(topic) is None


def test_kind_only_for_what_the_pipeline_ingests() -> None:
    assert topics.parse("devices/a/telemetry").kind is Kind.TELEMETRY  # type: ignore[union-attr]
    assert topics.parse("devices/a/events/e").kind is Kind.EVENT  # type: ignore[union-attr]
    assert topics.parse("devices/a/errors").kind is None  # type: ignore[union-attr]


@given(st.text(max_size=300))
def test_parse_never_raises(topic: str) -> None:
    parsed = topics.parse(topic)
    if parsed is not None:
        assert topics.owns(parsed.device_id, topic)


@given(ids, names)
def test_built_topics_parse_back(device_id: str, name: str) -> None:
    assert topics.parse(topics.telemetry(device_id)) == DeviceTopic(device_id, Channel.TELEMETRY)
    assert topics.parse(topics.event(device_id, name)) == DeviceTopic(device_id, Channel.EVENT,
                                                                      name)
    assert topics.parse(topics.errors(device_id)) == DeviceTopic(device_id, Channel.ERRORS)
    assert topics.parse(topics.command(device_id, name)) == DeviceTopic(
        device_id, Channel.COMMAND, name)
    assert topics.parse(topics.command_response(device_id, name)) == DeviceTopic(
        device_id, Channel.COMMAND_RESPONSE, name)
    assert topics.parse(topics.shadow_desired(device_id)) == DeviceTopic(
        device_id, Channel.SHADOW_DESIRED)
    assert topics.parse(topics.shadow_reported(device_id)) == DeviceTopic(
        device_id, Channel.SHADOW_REPORTED)


@given(ids, ids)
def test_a_device_owns_only_its_own_prefix(a: str, b: str) -> None:
    assert topics.owns(a, topics.device_filter(a))
    assert topics.owns(a, topics.telemetry(b)) == (a == b)
    assert not topics.owns(a, "devices/+/telemetry")
    assert not topics.owns(a, "#")


@pytest.mark.parametrize(("url", "expected"), [
    ("mqtt://127.0.0.1:1884", BrokerUrl("127.0.0.1", 1884, "wulian-platform", "dflt")),
    ("mqtt://u:p%40ss@[::1]:1883", BrokerUrl("::1", 1883, "u", "p@ss")),
    ("mqtt://u:@localhost", BrokerUrl("localhost", 1883, "u", "")),
])
def test_broker_urls(url: str, expected: BrokerUrl) -> None:
    assert BrokerUrl.parse(url, username="wulian-platform", password="dflt") == expected


@pytest.mark.parametrize("url", ["http://h:1", "mqtt://", "embedded", "mqtts://h",
                                 "mqtt://h:port", "mqtt://h:99999"])
def test_bad_broker_urls_say_what_is_expected(url: str) -> None:
    with pytest.raises(ValueError, match="mqtt://"):
        BrokerUrl.parse(url, username="u", password="p")


def test_safe_url_hides_the_password() -> None:
    url = BrokerUrl("::1", 1883, "u", "secret")
    assert url.safe() == "mqtt://u@[::1]:1883" and "secret" not in url.safe()
