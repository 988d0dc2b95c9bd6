"""The device SDK against real brokers: a private Mosquitto, and the platform's own broker."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.fixtures.common import free_port
from wulian.sdk import (
    BrokerUnreachable,
    Command,
    ConnectionRefused,
    Device,
    MQTTv5,
    MQTTv311,
    NotConnected,
    PlatformError,
)
from wulian.sim import PRODUCTS, Fleet

pytestmark = pytest.mark.mosquitto
FLEET_IDS = [f"fleet-{k}" for k in range(6)]


@dataclass
class Mosquitto:
    port: int
    user: str
    password: str


def _wait_listening(proc: subprocess.Popen[bytes], port: int) -> None:
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {proc.stderr.read() if proc.stderr else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


@pytest.fixture(name="mq")
def plain_mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private Mosquitto with a password file (no dynamic security): the SDK on its own."""
    if not shutil.which("mosquitto") or not shutil.which("mosquitto_passwd"):
        if os.environ.get("CI"):
            raise RuntimeError("CI promises mosquitto and mosquitto_passwd: install them")
        pytest.skip("mosquitto is not installed")
    port, user, password = free_port(), "dev-1", "s3cret-for-test"
    passwd = tmp_path / "passwd"
    for k, name in enumerate([user, *FLEET_IDS]):
        create = ["-c"] if k == 0 else []
        subprocess.run(["mosquitto_passwd", "-b", *create, str(passwd), name, password],
                       check=True, capture_output=True)
    passwd.chmod(0o600)
    conf = tmp_path / "mosquitto.conf"
    # As root Mosquitto drops to user "mosquitto", which cannot read a private tmp dir.
    run_as = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(f"{run_as}listener {port} 127.0.0.1\nallow_anonymous false\n"
                    f"password_file {passwd}\npersistence false\n")
    proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        _wait_listening(proc, port)
        yield Mosquitto(port, user, password)
    finally:
        proc.terminate()
        proc.wait(10)


class Listener:
    """A plain paho subscriber standing in for the platform."""

    def __init__(self, port: int, user: str, password: str, topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.got = threading.Event()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="listener")
        self.client.username_pw_set(user, password)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        assert self.subscribed.wait(5)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.messages.append((msg.topic, msg.payload))
        self.got.set()

    def wait_for(self, n: int, timeout: float = 5.0) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.messages)

    def publish(self, topic: str, body: object) -> None:
        self.client.publish(topic, orjson.dumps(body), qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("protocol", [MQTTv311, MQTTv5])
def test_publishes_telemetry_and_events_on_the_contract_topics(mq: Mosquitto,
                                                                protocol: int) -> None:
    listener = Listener(mq.port, mq.user, mq.password, "devices/#")
    try:
        with Device(mq.user, mq.password, port=mq.port,
                    protocol=protocol) as dev:  # type: ignore[arg-type]
            dev.publish_telemetry({"temperature": 21.5}, ts=1_764_000_000_000)
            dev.publish_telemetry([{"temperature": 21.6}, {"humidity": 40.0, "ts": 5}], ts=7)
            dev.publish_event("fault", {"code": 3})
            dev.wait_published(5)
            assert dev.acked == 3 and dev.outstanding == 0
        got = listener.wait_for(3)
    finally:
        listener.close()
    assert [topic for topic, _ in got] == ["devices/dev-1/telemetry"] * 2 + [
        "devices/dev-1/events/fault"]
    assert orjson.loads(got[0][1]) == {"temperature": 21.5, "ts": 1_764_000_000_000}
    assert orjson.loads(got[1][1]) == [{"temperature": 21.6, "ts": 7}, {"humidity": 40.0, "ts": 5}]
    assert orjson.loads(got[2][1]) == {"code": 3}


def test_wrong_secret_is_refused_with_the_connack_reason(mq: Mosquitto) -> None:
    dev = Device(mq.user, "wrong", port=mq.port)
    with pytest.raises(ConnectionRefused) as info:
        dev.connect(5)
    assert info.value.code in (4, 5, 134, 135)  # v3.1.1 bad credentials / not authorised
    assert "dev-1" in str(info.value) and "CONNACK" in str(info.value)
    assert not dev.connected


def test_wrong_secret_is_refused_without_a_network_thread(mq: Mosquitto) -> None:
    dev = Device(mq.user, "wrong", port=mq.port, protocol=MQTTv5)
    with pytest.raises(ConnectionRefused):
        dev.connect(5, loop=False)


def test_unreachable_broker_and_publishing_offline_say_so() -> None:
    dev = Device("dev-1", "x", port=free_port())
    with pytest.raises(BrokerUnreachable, match=r"127\.0\.0\.1"):
        dev.connect(2)
    with pytest.raises(NotConnected):
        dev.publish_telemetry({"temperature": 1.0})


def test_errors_and_commands_reach_the_callbacks(mq: Mosquitto) -> None:
    errors: list[PlatformError] = []
    commands: list[Command] = []
    platform = Listener(mq.port, mq.user, mq.password,
                        "devices/+/commands/+/response")
    try:
        with Device(mq.user, mq.password, port=mq.port) as dev:
            dev.on_error(errors.append)
            dev.on_command(commands.append)

            def bad_callback(error: PlatformError) -> None:
                raise RuntimeError("a broken callback must not stop the loop")

            dev.on_error(bad_callback)
            time.sleep(0.3)  # let the SUBACKs in
            platform.publish("devices/dev-1/errors", {
                "code": "out_of_range", "message": "value 99 is outside [-40, 85]",
                "topic": "devices/dev-1/telemetry", "path": "$.temperature"})
            platform.publish("devices/dev-1/errors", "not an object")
            platform.publish("devices/dev-1/commands/c-42", {"name": "reboot",
                                                             "params": {"delay_s": 5}})
            deadline = time.monotonic() + 5
            while (len(errors) < 2 or not commands) and time.monotonic() < deadline:
                time.sleep(0.02)
            dev.respond("c-42", "ok", {"rebooted": True})
            dev.wait_published(5)
            assert dev.errors_received == 2
        responses = platform.wait_for(1)
    finally:
        platform.close()
    assert errors[0].code == "out_of_range" and errors[0].path == "$.temperature"
    assert errors[1].code == "unreadable"
    assert commands == [Command(id="c-42", name="reboot", params={"delay_s": 5})]
    assert responses[0][0] == "devices/dev-1/commands/c-42/response"
    assert orjson.loads(responses[0][1]) == {"status": "ok", "result": {"rebooted": True}}


def test_fleet_reports_at_its_rate_over_one_session_per_device(mq: Mosquitto) -> None:
    listener = Listener(mq.port, mq.user, mq.password, "devices/#")
    devices = [(name, mq.password, PRODUCTS[k % 3]) for k, name in enumerate(FLEET_IDS)]
    devices.append(("fleet-5", "wrong-secret", PRODUCTS[0]))
    devices.pop(5)
    fleet = Fleet(devices, port=mq.port, rate_hz_per_device=10, bad_rate=0.2, threads=2)
    try:
        stats = fleet.run(seconds=2.0)
        got = listener.wait_for(stats.sent + stats.events_sent)
    finally:
        listener.close()
    assert stats.devices == 6 and stats.refused >= 1
    assert 5 * 10 * 1.5 <= stats.sent <= 5 * 10 * 2.5  # five devices got in, at 10 Hz for 2 s
    assert stats.acked == stats.sent + stats.events_sent  # everything flushed before stopping
    assert len(got) == stats.acked
    topics = {topic for topic, _ in got}
    assert {f"devices/fleet-{k}/telemetry" for k in range(5)} <= topics
    assert "devices/fleet-5/telemetry" not in topics
    bodies = [orjson.loads(body) for topic, body in got if topic.endswith("/telemetry")]
    assert all(isinstance(b, dict) and b["ts"] > 1_700_000_000_000 for b in bodies)


def test_fleet_stops_on_an_event_and_survives_a_missing_broker() -> None:
    stop = threading.Event()
    fleet = Fleet([("x", "y", PRODUCTS[0])], port=free_port(), rate_hz_per_device=1)
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    started = time.monotonic()
    stats = fleet.run(stop=stop)
    assert time.monotonic() - started < 5
    assert stats.sent == 0 and stats.connect_failures >= 1


# --- against the platform itself (embedded broker + pipeline) -----------------------------

def test_platform_accepts_good_data_and_reports_bad_data(tmp_path: Path,
                                                          env_sensor_doc: dict) -> None:
    from wulian.config import Settings
    from wulian.service import Ready, serve

    settings = Settings(data_dir=tmp_path, http_port=free_port(), mqtt_port=free_port())
    ready_box: list[Ready] = []
    ready_evt, stop = threading.Event(), threading.Event()

    def on_ready(ready: Ready) -> None:
        ready_box.append(ready)
        ready_evt.set()

    server = threading.Thread(target=serve, args=(settings,),
                              kwargs={"on_ready": on_ready, "stop": stop}, daemon=True)
    server.start()
    try:
        assert ready_evt.wait(30), "platform did not start"
        ready = ready_box[0]
        ready.core.registry.import_product(env_sensor_doc)
        secret = ready.core.registry.add_device("env-1", "env-sensor").secret
        with pytest.raises(ConnectionRefused):
            Device("env-1", "not-the-secret", ready.mqtt_host, ready.mqtt_port).connect(10)
        errors: list[PlatformError] = []
        with Device("env-1", secret, ready.mqtt_host, ready.mqtt_port) as dev:
            dev.on_error(errors.append)
            time.sleep(0.3)
            dev.publish_telemetry({"temperature": 21.5, "humidity": 40.0})
            dev.publish_telemetry({"temperature": 999})
            dev.wait_published(10)
            deadline = time.monotonic() + 10
            while not errors and time.monotonic() < deadline:
                time.sleep(0.05)
        assert errors and errors[0].code == "out_of_range"
        latest = ready.core.store.latest("env-1")
        assert latest["temperature"][1] == 21.5
    finally:
        stop.set()
        server.join(30)
