"""MQTT access in both broker modes, with real clients: what devices send is stored, and
devices are kept to their own topics."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.common import free_port
from tests.fixtures.mosquitto import MosquittoBroker, MqttPlatform, wait_until
from wulian.access.mosquitto import BrokerAdminError, DynSecAdmin
from wulian.access.mqtt_transport import DeviceTransport
from wulian.bootstrap import build_core
from wulian.config import Settings
from wulian.i18n import t
from wulian.netutil import PortInUse
from wulian.pipeline.ingest import now_ms

pytestmark = pytest.mark.timeout(60)


def test_telemetry_and_events_are_stored(mqtt_platform: MqttPlatform) -> None:
    p = mqtt_platform
    dev = p.connect("env-1", p.provision("env-1"))
    ts = now_ms() - 1000
    dev.telemetry({"temperature": 21.5, "humidity": 40.0, "ts": ts})
    dev.telemetry([{"temperature": 22.0, "ts": ts + 1}, {"temperature": 22.5, "ts": ts + 2}])
    dev.publish("devices/env-1/events/fault", {"code": 7, "ts": ts})

    wait_until(lambda: len(p.points("env-1")) == 3, what="3 temperature points")
    assert p.points("env-1") == [(ts, 21.5), (ts + 1, 22.0), (ts + 2, 22.5)]
    assert p.store.latest("env-1")["humidity"] == (ts, 40.0)
    events = wait_until(lambda: p.store.events("env-1", since=None, until=None, limit=10))
    assert [(e.event, e.level, e.ts, e.params) for e in events] == [
        ("fault", "major", ts, {"code": 7})]
    ingest = p.ingest
    assert ingest is not None
    wait_until(lambda: ingest.counters().get("acked") == 3, what="3 PUBACKs")
    counters = ingest.counters()
    assert counters["received"] == 3 and counters.get("rejected", 0) == 0


def test_device_without_ts_is_stamped_on_arrival(mqtt_platform: MqttPlatform) -> None:
    p = mqtt_platform
    dev = p.connect("env-2", p.provision("env-2"))
    before = now_ms()
    dev.telemetry({"temperature": 10.0})
    [(ts, value)] = wait_until(lambda: p.points("env-2"), what="one point")
    assert value == 10.0 and before <= ts <= now_ms()


def test_devices_cannot_touch_each_others_topics(mqtt_platform: MqttPlatform) -> None:
    p = mqtt_platform
    a = p.connect("dev-a", p.provision("dev-a"))
    b = p.connect("dev-b", p.provision("dev-b"))
    assert b.subscribe("devices/dev-b/#")
    # A may not subscribe to B's topics, nor to anything wider than its own.
    for topic in ("devices/dev-b/#", "devices/dev-b/commands/+", "devices/+/telemetry", "#",
                  "devices/#", "$SYS/#"):
        assert not a.subscribe(topic), topic
    assert a.subscribe("devices/dev-a/#")
    # A publishing into B's topics: neither stored nor delivered to B.
    a.publish("devices/dev-b/telemetry", {"temperature": 66.0})
    a.publish("devices/dev-b/events/fault", {"code": 1})
    a.publish("devices/dev-b/commands/c1", {"name": "reboot", "params": {}})
    a.telemetry({"temperature": 1.0})  # a sentinel through the same path
    wait_until(lambda: p.points("dev-a"), what="A's own point")
    time.sleep(0.3)
    assert p.points("dev-b") == []
    assert p.store.events("dev-b", since=None, until=None, limit=10) == []
    assert [m.topic for m in b.received] == []
    # ...while what is B's reaches B, and not A.
    b.telemetry({"temperature": 2.0})
    wait_until(lambda: b.messages("devices/dev-b/telemetry"), what="B's echo")
    assert [m.topic for m in a.received if m.topic.startswith("devices/dev-b/")] == []


@pytest.mark.parametrize("login", ["wrong-secret", "unknown-device", "no-password",
                                   "other-client-id", "platform-guess"])
def test_bad_credentials_are_refused_at_connect(mqtt_platform: MqttPlatform, login: str) -> None:
    p = mqtt_platform
    secret = p.provision("dev-c")
    device, password, client_id = {
        "wrong-secret": ("dev-c", secret + "x", None),
        "unknown-device": ("dev-nobody", secret, None),
        "no-password": ("dev-c", "", None),
        "other-client-id": ("dev-c", secret, "someone-else"),
        "platform-guess": ("wulian-platform", "guess", "wulian-platform"),
    }[login]
    client = p.connect(device, password, client_id=client_id)
    assert client.connack.is_failure, client.connack
    good = p.connect("dev-c", secret)
    assert good.connected


def test_concurrent_devices_all_arrive(mqtt_platform: MqttPlatform) -> None:
    p = mqtt_platform
    ids = [f"many-{i}" for i in range(4)]
    clients = [p.connect(i, p.provision(i)) for i in ids]
    start = now_ms() - 10_000

    def send(dev: object) -> None:
        for n in range(100):
            dev.telemetry({"temperature": n / 2, "ts": start + n})  # type: ignore[attr-defined]

    threads = [threading.Thread(target=send, args=(c,)) for c in clients]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    for i in ids:
        wait_until(lambda i=i: len(p.points(i)) == 100, what=f"100 points of {i}")


def _bad_inputs(device: str) -> list[tuple[str, str, bytes]]:
    """(expected code, topic, payload) for each way a device can get a message wrong."""
    tele, future = f"devices/{device}/telemetry", now_ms() + 3_600_000
    return [
        ("malformed_json", tele, b'{"temperature": 21.5'),
        ("unknown_property", tele, b'{"pressure": 1013}'),
        ("wrong_type", tele, b'{"temperature": "hot"}'),
        ("out_of_range", tele, b'{"temperature": 999}'),
        ("unknown_event", f"devices/{device}/events/explosion", b'{"code": 1}'),
        ("payload_too_large", tele, b'{"temperature": 1, "pad": "' + b"x" * 2048 + b'"}'),
        ("timestamp_in_future", tele, b'{"temperature": 20, "ts": %d}' % future),
    ]


def test_bad_input_gets_an_error_and_a_dead_letter(mqtt_platform: MqttPlatform) -> None:
    p = mqtt_platform
    bad = p.connect("bad-1", p.provision("bad-1"))
    good = p.connect("good-1", p.provision("good-1"))
    assert bad.subscribe("devices/bad-1/errors")
    cases = _bad_inputs("bad-1")
    start = now_ms() - 10_000

    def steady() -> None:  # another device, publishing all the while
        for n in range(200):
            good.telemetry({"temperature": n / 4, "ts": start + n})

    other = threading.Thread(target=steady)
    other.start()
    for _, topic, payload in cases:
        bad.publish(topic, payload)
    other.join(30)

    errors = wait_until(lambda: len(bad.messages("devices/bad-1/errors")) >= len(cases) and
                        bad.messages("devices/bad-1/errors"), what="one error per bad message")
    assert [(e["code"], e["topic"]) for e in errors] == [(c, t) for c, t, _ in cases]
    assert all(isinstance(e["message"], str) and e["message"] for e in errors)
    letters = p.store.rejections(device_id="bad-1", since=None, limit=100)
    assert sorted(r.code for r in letters) == sorted(c for c, _, _ in cases)
    assert all(r.protocol == "mqtt" for r in letters)
    assert p.ingest is not None and p.ingest.counters()["rejected"] == len(cases)
    assert p.store.counters()["messages_rejected"] == len(cases)
    # The other device lost nothing, and the consumer is still there for everyone.
    wait_until(lambda: len(p.points("good-1")) == 200, what="200 points of good-1")
    bad.telemetry({"temperature": 5.0})
    wait_until(lambda: p.points("bad-1"), what="bad-1's good message")
    assert p.points("bad-1")[0][1] == 5.0


def test_errors_follow_the_platform_language(mqtt_platform: MqttPlatform) -> None:
    p = mqtt_platform
    assert p.ingest is not None
    p.ingest.lang = "zh"
    dev = p.connect("zh-1", p.provision("zh-1"))
    assert dev.subscribe("devices/zh-1/errors")
    dev.publish("devices/zh-1/telemetry", b"not json")
    [error] = wait_until(lambda: dev.messages("devices/zh-1/errors"), what="an error")
    assert error["code"] == "malformed_json"
    assert "JSON" in error["message"] and error["message"].isascii() is False


def test_registry_changes_reach_the_broker(mqtt_platform: MqttPlatform) -> None:
    p = mqtt_platform
    secret = p.provision("life-1")
    live = p.connect("life-1", secret)
    assert live.connected
    p.core.registry.update_device("life-1", state="disabled")
    # the live connection ends too (dynsec; the embedded transport through TransportAdmin)
    wait_until(lambda: not live.client.is_connected(), what="the disabled device cut off")
    assert not p.connect("life-1", secret).connected
    p.core.registry.update_device("life-1", state="active")
    assert p.connect("life-1", secret).connected
    fresh = p.core.registry.rotate_secret("life-1").secret
    assert not p.connect("life-1", secret).connected
    assert p.connect("life-1", fresh).connected
    p.core.registry.delete_device("life-1")
    assert not p.connect("life-1", fresh).connected


def test_embedded_broker_on_a_taken_port_says_so(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        core = build_core(Settings(data_dir=tmp_path, mqtt_port=port))
        try:
            broker = DeviceTransport(core, host="127.0.0.1", port=port, platform_password="x")
            with pytest.raises(PortInUse) as caught:
                asyncio.run(broker.start())
        finally:
            core.close()
    assert f"127.0.0.1:{port}" in str(caught.value) and "--mqtt-port" in str(caught.value)
    assert "占用" in t("service.port_in_use", "zh", what="MQTT", host="127.0.0.1", port=port)


def test_unreachable_broker_is_a_clear_error(tmp_path: Path) -> None:
    url = f"mqtt://wulian-platform:pw@127.0.0.1:{free_port()}"
    admin = DynSecAdmin.from_settings(Settings(data_dir=tmp_path, broker=url))
    with pytest.raises(BrokerAdminError, match="cannot reach the MQTT broker"):
        admin.provision("dev-x", "secret")


def test_dynsec_admin_with_a_wrong_password_is_a_clear_error(mosquitto: MosquittoBroker,
                                                            tmp_path: Path) -> None:
    url = f"mqtt://{mosquitto.admin_user}:wrong@127.0.0.1:{mosquitto.port}"
    admin = DynSecAdmin.from_settings(Settings(data_dir=tmp_path, broker=url))
    try:
        with pytest.raises(BrokerAdminError, match="dynamic-security"):
            admin.provision("dev-x", "secret")
    finally:
        admin.close()


@pytest.mark.parametrize("mode", ["embedded", "mosquitto"])
def test_devices_connect_over_ipv6_and_their_presence_is_recorded(
        make_mqtt_platform: Callable[..., MqttPlatform], mode: str) -> None:
    # Embedded: the transport's own connects; Mosquitto: its log lines on $SYS/broker/log/N.
    p = make_mqtt_platform(mode, host="::1")
    dev = p.connect("v6-1", p.provision("v6-1"))
    status = wait_until(lambda: (s := p.store.device_status("v6-1")) and s.connected and s,
                        what="connected status")
    assert status.protocol == "mqtt" and status.ip_version == 6
    assert status.remote.startswith("[::1]:")
    dev.telemetry({"temperature": 3.0})
    wait_until(lambda: p.points("v6-1"), what="a point sent over IPv6")
    dev.close()
    p.devices.remove(dev)
    wait_until(lambda: not p.store.device_status("v6-1").connected, what="disconnected")
    assert p.store.device_status("wulian-platform") is None  # the platform is no device


def test_retained_readings_are_stored_once(mqtt_platform: MqttPlatform) -> None:
    p = mqtt_platform
    dev = p.connect("ret-1", p.provision("ret-1"))
    dev.client.publish("devices/ret-1/telemetry", b'{"temperature": 7.0}', qos=1,
                       retain=True).wait_for_publish(10)
    wait_until(lambda: p.points("ret-1"), what="the retained reading")
    p.stop_ingest()
    p.start_ingest()  # resubscribes: a retained copy would be a second point
    dev.telemetry({"temperature": 8.0})
    wait_until(lambda: len(p.points("ret-1")) >= 2, what="the next reading")
    time.sleep(0.2)
    assert [v for _, v in p.points("ret-1")] == [7.0, 8.0]


def test_a_device_reconnecting_gets_no_one_elses_retained_messages(
        mqtt_platform: MqttPlatform) -> None:
    p = mqtt_platform
    b = p.connect("ret-b", p.provision("ret-b"))
    assert b.subscribe("devices/ret-b/#")
    secret_a = p.provision("ret-a")
    p.park("ret-a", secret_a, "devices/ret-a/#")
    commander = p.connect_platform()
    commander.publish("devices/ret-b/shadow/desired", b'{"version": 1, "setpoint": 21}',
                      qos=1, retain=True).wait_for_publish(10)
    wait_until(lambda: b.messages("devices/ret-b/shadow/desired"), what="B's desired state")
    again = p.connect("ret-a", secret_a, clean=False)
    time.sleep(0.5)
    assert [m.topic for m in again.received] == []
