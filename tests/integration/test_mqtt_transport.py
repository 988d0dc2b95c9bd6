"""The embedded device transport with four independent MQTT clients, both versions:
paho (3.1.1 and 5), Mosquitto's own `mosquitto_pub`/`mosquitto_sub` (-V 311 and -V 5),
aiomqtt and gmqtt. Refusals come with reasons, takeover needs the right password, wills
and persistent sessions work, and a protocol violation closes only that connection."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import aiomqtt
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties

from tests.fixtures.mosquitto import MqttPlatform, wait_until
from wulian.access.mqtt_codec import MQTT_311, Prop, connect, parse, publish

Make = Callable[..., MqttPlatform]


@pytest.fixture
def p(make_mqtt_platform: Make) -> MqttPlatform:
    return make_mqtt_platform("embedded", max_payload_bytes=1024)


class V5Device:
    """A paho MQTT 5 device that records PUBACK reason codes and what it receives."""

    def __init__(self, p: MqttPlatform, device_id: str, secret: str, *, clean: bool = True,
                 will: tuple[str, bytes] | None = None, expiry_s: int = 0) -> None:
        self.device_id = device_id
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id,
                                  protocol=MQTTProtocolVersion.MQTTv5)
        self.client.username_pw_set(device_id, secret)
        if will:
            self.client.will_set(will[0], will[1], qos=1)
        self.acks: dict[int, Any] = {}
        self.received: list[mqtt.MQTTMessage] = []
        self.connack: Any = None
        self.disconnect_reason: Any = None
        self.client.on_publish = lambda _c, _u, mid, rc, _p: self.acks.__setitem__(mid, rc)
        self.client.on_message = lambda _c, _u, msg: self.received.append(msg)
        self.client.on_connect = lambda _c, _u, _f, rc, _p: setattr(self, "connack", rc)
        self.client.on_disconnect = lambda _c, _u, _f, rc, _p: setattr(
            self, "disconnect_reason", rc)
        props = Properties(packetType=1)  # CONNECT
        props.SessionExpiryInterval = expiry_s
        self.client.connect(p.host, p.port, clean_start=clean, properties=props)
        self.client.loop_start()
        wait_until(lambda: self.connack is not None, 10, "CONNACK")

    def publish(self, topic: str, payload: bytes) -> Any:
        info = self.client.publish(topic, payload, qos=1)
        wait_until(lambda: info.mid in self.acks, 10, f"PUBACK for {topic}")
        return self.acks[info.mid]

    def subscribe(self, topic_filter: str) -> Any:
        result: list[Any] = []
        self.client.on_subscribe = lambda _c, _u, _m, codes, _p: result.extend(codes)
        self.client.subscribe(topic_filter, qos=1)
        wait_until(lambda: result, 10, "SUBACK")
        return result[0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_paho_mqtt5_gets_reason_codes(p: MqttPlatform) -> None:
    dev = V5Device(p, "v5-1", p.provision("v5-1"))
    try:
        assert dev.subscribe("devices/v5-1/errors").value == 1
        assert dev.publish("devices/v5-1/telemetry", b'{"temperature": 21.5}').value == 0
        assert [v for _, v in p.points("v5-1")] == [21.5]
        refused = dev.publish("devices/v5-2/telemetry", b'{"temperature": 1}')
        assert refused.value == 0x87  # Not authorized: another device's topic
        bad = dev.publish("devices/v5-1/telemetry", b"not json")
        assert bad.value == 0x99  # Payload format invalid
        errors = wait_until(lambda: [orjson.loads(m.payload) for m in dev.received
                                     if m.topic == "devices/v5-1/errors"], what="errors")
        wait_until(lambda: len(errors) >= 2 or len([m for m in dev.received
                                                     if m.topic.endswith("errors")]) >= 2)
        codes = {orjson.loads(m.payload)["code"] for m in dev.received
                 if m.topic == "devices/v5-1/errors"}
        assert codes == {"forbidden_topic", "malformed_json"}
        assert dev.subscribe("devices/v5-2/#").value == 0x87  # not its own: refused
        letters = p.store.rejections(device_id=None, since=None, limit=10)
        assert sorted(r.code for r in letters) == ["forbidden_topic", "malformed_json"]
    finally:
        dev.close()


@pytest.mark.parametrize("version", ["311", "5"])
def test_mosquitto_clients_publish_and_subscribe(p: MqttPlatform, version: str) -> None:
    if shutil.which("mosquitto_pub") is None:
        pytest.fail("mosquitto-clients is not installed")
    dev_id = f"mq-{version}"
    secret = p.provision(dev_id)
    common = ["-h", p.host, "-p", str(p.port), "-V", version, "-u", dev_id, "-P", secret,
              "-i", dev_id, "-q", "1"]
    sub_id = f"{dev_id}-sub"
    sub_secret = p.provision(sub_id)
    sub = subprocess.Popen(["mosquitto_sub", "-h", p.host, "-p", str(p.port), "-V", version,
                            "-u", sub_id, "-P", sub_secret, "-i", sub_id, "-q", "1",
                            "-t", f"devices/{sub_id}/commands/+", "-C", "1", "-W", "20"],
                           stdout=subprocess.PIPE, text=True)
    done = subprocess.run(["mosquitto_pub", *common, "-t", f"devices/{dev_id}/telemetry",
                           "-m", '{"temperature": 7.5}'], capture_output=True, text=True,
                          timeout=20)
    assert done.returncode == 0, done.stderr
    assert [v for _, v in p.points(dev_id)] == [7.5]  # stored before its PUBACK came
    refused = subprocess.run(["mosquitto_pub", *common, "-t", "devices/other/telemetry",
                              "-m", "{}"], capture_output=True, text=True, timeout=20)
    if version == "5":  # the reason code and the reason string reach the client
        assert "Not authorized" in refused.stderr and "devices/" in refused.stderr
    assert p.points("other") == []
    platform = p.connect_platform()
    wait_until(lambda: _subscribed(p, sub_id), 10, "mosquitto_sub's subscription")
    platform.publish(f"devices/{sub_id}/commands/c1", b'{"name": "reboot"}', qos=1)
    out, _ = sub.communicate(timeout=20)
    assert orjson.loads(out) == {"name": "reboot"}


def _subscribed(p: MqttPlatform, client_id: str) -> bool:
    ingest = p.ingest
    transport = getattr(ingest, "transport", None)
    session = transport.sessions.sessions.get(client_id) if transport else None
    return bool(session and session.subscriptions)


def test_aiomqtt_both_versions(p: MqttPlatform) -> None:
    async def run(version: aiomqtt.ProtocolVersion, dev_id: str, secret: str) -> Any:
        async with aiomqtt.Client(p.host, p.port, identifier=dev_id, username=dev_id,
                                  password=secret, protocol=version) as client:
            await client.subscribe(f"devices/{dev_id}/telemetry", qos=1)
            await client.publish(f"devices/{dev_id}/telemetry", b'{"humidity": 40}', qos=1)
            async for message in client.messages:  # what was taken comes back to subscribers
                return orjson.loads(message.payload)

    for n, version in enumerate((aiomqtt.ProtocolVersion.V311, aiomqtt.ProtocolVersion.V5)):
        dev_id = f"aio-{n}"
        echo = asyncio.run(asyncio.wait_for(run(version, dev_id, p.provision(dev_id)), 20))
        assert echo == {"humidity": 40}
        assert [v for _, v in p.points(dev_id, "humidity")] == [40.0]


def test_gmqtt_mqtt5_gets_its_downlink(p: MqttPlatform) -> None:
    import gmqtt

    secret = p.provision("gm-1")
    got: list[tuple[str, bytes]] = []
    subscribed = threading.Event()

    async def run() -> None:
        client = gmqtt.Client("gm-1")
        client.set_auth_credentials("gm-1", secret)
        arrived = asyncio.Event()

        def on_message(_c: Any, topic: str, payload: bytes, _qos: int, _props: Any) -> int:
            got.append((topic, payload))
            arrived.set()
            return 0

        client.on_message = on_message
        client.on_subscribe = lambda *_: subscribed.set()
        await client.connect(p.host, p.port, version=gmqtt.constants.MQTTv50)
        client.subscribe("devices/gm-1/commands/+", qos=1)
        client.publish("devices/gm-1/telemetry", b'{"temperature": 3}', qos=1)
        await asyncio.wait_for(asyncio.to_thread(subscribed.wait, 10), 12)
        platform = p.connect_platform()
        platform.publish("devices/gm-1/commands/c9", b'{"name": "open"}', qos=1)
        await asyncio.wait_for(arrived.wait(), 10)
        await client.disconnect()

    asyncio.run(run())
    assert got == [("devices/gm-1/commands/c9", b'{"name": "open"}')]
    wait_until(lambda: p.points("gm-1"), 10, "gmqtt's reading")


def test_takeover_needs_the_right_password(p: MqttPlatform) -> None:
    secret = p.provision("to-1")
    first = V5Device(p, "to-1", secret)
    try:
        assert first.subscribe("devices/to-1/commands/+").value == 1
        impostor = V5Device(p, "to-1", "wrong-secret")
        assert impostor.connack.value == 0x86  # refused, and the session it named stands
        impostor.client.loop_stop()
        platform = p.connect_platform()
        platform.publish("devices/to-1/commands/c1", b"{}", qos=1)
        wait_until(lambda: first.received, 10, "the command on the first connection")
        second = V5Device(p, "to-1", secret)  # the device itself, reconnecting
        try:
            wait_until(lambda: first.disconnect_reason is not None, 10, "the takeover")
            assert first.disconnect_reason.value == 0x8E  # Session taken over
        finally:
            second.close()
    finally:
        first.client.loop_stop()


def test_a_will_is_published_when_a_device_vanishes(p: MqttPlatform) -> None:
    platform = p.connect_platform()
    seen: list[mqtt.MQTTMessage] = []
    platform.on_message = lambda _c, _u, msg: seen.append(msg)
    platform.subscribe("devices/+/shadow/reported", qos=1)
    watcher = V5Device(p, "will-1", p.provision("will-1"),
                       will=("devices/will-1/shadow/reported", b'{"online": false}'))
    wait_until(lambda: _subscribed_platform(p), 10, "the platform's subscription")
    sock = watcher.client.socket()
    watcher.client.loop_stop()
    assert isinstance(sock, socket.socket)
    sock.shutdown(socket.SHUT_RDWR)  # gone without DISCONNECT
    wait_until(lambda: seen, 10, "the will")
    assert (seen[0].topic, seen[0].payload) == ("devices/will-1/shadow/reported",
                                                b'{"online": false}')


def _subscribed_platform(p: MqttPlatform) -> bool:
    transport = getattr(p.ingest, "transport", None)
    return transport is not None and any(
        s.device_id is None and s.subscriptions for s in transport.sessions.sessions.values())


def test_a_persistent_session_keeps_downlink_for_an_offline_device(p: MqttPlatform) -> None:
    secret = p.provision("ps-1")
    p.park("ps-1", secret, "devices/ps-1/commands/+")  # MQTT 3.1.1, CleanSession=0, gone
    platform = p.connect_platform()
    platform.publish("devices/ps-1/commands/c7", b'{"name": "wake"}', qos=1).wait_for_publish(5)
    back = p.connect("ps-1", secret, clean=False)
    wait_until(lambda: back.messages("devices/ps-1/commands/c7"), 10, "the queued command")
    assert back.messages("devices/ps-1/commands/c7") == [{"name": "wake"}]


@pytest.mark.parametrize("bad_topic", [b"devices/x/tele\x00metry", b"devices/x/\xfftelemetry",
                                       b"devices/+/telemetry"])
def test_a_protocol_violation_closes_only_that_connection(p: MqttPlatform,
                                                          bad_topic: bytes) -> None:
    secret = p.provision("pv-1")
    good = p.connect("pv-ok", p.provision("pv-ok"))
    with socket.create_connection((p.host, p.port), timeout=5) as sock:
        sock.sendall(connect(MQTT_311, "pv-1", username="pv-1", password=secret.encode()))
        [ack], _ = parse(sock.recv(64), MQTT_311)
        assert ack.code == 0  # type: ignore[union-attr]
        frame = bytearray(publish(MQTT_311, "devices/pv-1/telemetry", b"{}", qos=1,
                                  packet_id=1))
        old = b"devices/pv-1/telemetry"
        frame = bytearray(frame.replace(old, bad_topic[:len(old)].ljust(len(old), b"x")))
        sock.sendall(bytes(frame))
        assert sock.recv(64) == b""  # closed, no PUBACK
    good.telemetry({"temperature": 1.0})  # everyone else carries on
    assert [v for _, v in p.points("pv-ok")] == [1.0]
    assert p.points("pv-1") == []


def test_refusals_of_3_1_1_devices_come_on_the_errors_topic(p: MqttPlatform) -> None:
    dev = p.connect("e311", p.provision("e311"))
    assert dev.subscribe("devices/e311/errors")
    dev.publish("devices/e311/telemetry", {"temperature": "hot"})
    [error] = wait_until(lambda: dev.messages("devices/e311/errors"), what="an error")
    assert error["code"] == "wrong_type" and error["topic"] == "devices/e311/telemetry"


def test_connack_advertises_the_limits(p: MqttPlatform) -> None:
    with socket.create_connection((p.host, p.port), timeout=5) as sock:
        sock.sendall(connect(5, "pl-1", username="pl-1",
                             password=p.provision("pl-1").encode()))
        [ack], _ = parse(sock.recv(256), 5)
    assert ack.code == 0  # type: ignore[union-attr]
    props = ack.props  # type: ignore[union-attr]
    assert props[Prop.RECEIVE_MAXIMUM] > 0 and props[Prop.SHARED_SUB_AVAILABLE] == 0
    assert props[Prop.MAXIMUM_PACKET_SIZE] >= 1024
