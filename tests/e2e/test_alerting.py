"""Status early warning end to end on `wulian serve` (embedded broker): a device publishes
over MQTT, the rule raises an alarm, the live stream pushes it, the webhook receiver gets
one signed delivery after failing twice, the MQTT republish arrives, and a person clears it.
"""

from __future__ import annotations

import http.server
import json
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.fixtures.common import ENV_SENSOR, free_port
from tests.fixtures.mosquitto import start_mosquitto
from wulian.access.mosquitto import PLATFORM_SECRET, PLATFORM_USER
from wulian.config import Settings
from wulian.rules.actions import verify
from wulian.sdk import Device
from wulian.service import Ready, serve

SECRET = "webhook-secret-0123456789"


@dataclass
class Platform:
    ready: Ready
    settings: Settings

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.ready.admin_token}"}

    def url(self, path: str) -> str:
        return f"{self.ready.http_url}/api/v1{path}"


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    settings = Settings(data_dir=tmp_path / "data", http_port=free_port(),
                        mqtt_port=free_port(), admin_token="e2e-admin-token")
    ready: queue.Queue[Ready] = queue.Queue()
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(settings,),
                              kwargs={"on_ready": ready.put, "stop": stop}, daemon=True)
    thread.start()
    try:
        yield Platform(ready.get(timeout=60), settings)
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive()


class Receiver(http.server.BaseHTTPRequestHandler):
    """Fails the first two deliveries with 500, then takes them."""

    calls: ClassVar[list[tuple[int, bytes, dict[str, str]]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = 500 if len(Receiver.calls) < 2 else 200
        Receiver.calls.append((status, body, dict(self.headers)))
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def sse_events(platform: Platform, query: str, out: queue.Queue[tuple[str, Any]],
               opened: threading.Event, stop: threading.Event) -> None:
    with httpx.stream("GET", platform.url(f"/stream?{query}"), headers=platform.headers,
                      timeout=httpx.Timeout(5.0, read=30.0)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in response.iter_lines():
            opened.set()
            if stop.is_set():
                return
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind:
                out.put((kind, json.loads(line[6:])))


def next_of(events: queue.Queue[tuple[str, Any]], kind: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got, data = events.get(timeout=max(0.01, deadline - time.monotonic()))
        if got == kind:
            return data
    raise AssertionError(f"no {kind} event")


@pytest.mark.timeout(180)
def test_publish_to_alarm_to_actions_to_clear(platform: Platform) -> None:
    Receiver.calls = []
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    republished: queue.Queue[bytes] = queue.Queue()
    watcher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="e2e-watcher")
    password, _ = platform.settings.ensure_secret(PLATFORM_SECRET)
    watcher.username_pw_set(PLATFORM_USER, password)
    watcher.on_message = lambda c, u, m: republished.put(m.payload)
    watcher.connect(platform.ready.mqtt_host, platform.ready.mqtt_port)
    watcher.subscribe("alerts/lab", qos=1)
    watcher.loop_start()
    http_ = httpx.Client(headers=platform.headers, timeout=10)
    try:
        assert http_.post(platform.url("/products"), json=ENV_SENSOR).status_code in (200, 201)
        secret = http_.post(platform.url("/devices"),
                            json={"id": "lab-1", "product": "env-sensor"}).json()["secret"]
        rule = {"id": "hot", "name": "Lab too hot", "severity": "critical",
                "product": "env-sensor",
                "condition": {"type": "threshold", "property": "temperature", "op": ">",
                              "value": 30}, "hysteresis": 2,
                "actions": [
                    {"type": "webhook", "url": f"http://127.0.0.1:{hook.server_port}/hook",
                     "secret": SECRET},
                    {"type": "mqtt", "topic": "alerts/lab", "qos": 1}]}
        assert http_.post(platform.url("/rules"), json=rule).status_code == 201

        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        opened, stop = threading.Event(), threading.Event()
        threading.Thread(target=sse_events, args=(platform, "devices=lab-1&alarms=true",
                                                  events, opened, stop), daemon=True).start()
        assert opened.wait(10)
        with Device("lab-1", secret, platform.ready.mqtt_host,
                    platform.ready.mqtt_port) as device:
            device.publish_telemetry({"temperature": 36.5}, qos=1)
            points = next_of(events, "points")
            assert points["device"] == "lab-1"
            assert ["temperature", 36.5] in [[p[0], p[2]] for p in points["points"]]
            raised = next_of(events, "alarm")
            assert (raised["kind"], raised["subject"], raised["severity"], raised["value"]) == \
                ("raised", "lab-1", "critical", 36.5)

            # MQTT republish: one message on the rule's topic
            body = json.loads(republished.get(timeout=20))
            assert body["alarm_id"] == raised["alarm_id"] and body["change"] == "raised"

            # the webhook failed twice: the worker retries with backoff (1 s, 2 s)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(Receiver.calls) < 3:
                time.sleep(0.1)
            statuses = [s for s, _, _ in Receiver.calls]
            assert statuses == [500, 500, 200]
            _, delivered, headers = Receiver.calls[2]
            assert verify(SECRET, delivered, headers["X-Wulian-Signature"], int(time.time()))
            assert not verify("wrong-secret-0123456789", delivered,
                              headers["X-Wulian-Signature"], int(time.time()))
            assert json.loads(delivered)["alarm_id"] == raised["alarm_id"]
            ok = http_.get(platform.url("/deliveries"), params={"state": "delivered"}).json()
            assert {d["kind"] for d in ok["data"]} == {"webhook", "mqtt"}

            # a person clears it from the API; the stream says so
            r = http_.post(platform.url(f"/alarms/{raised['alarm_id']}/clear"),
                           json={"comment": "window opened"})
            assert r.status_code == 200, r.text
            cleared = next_of(events, "alarm")
            assert (cleared["kind"], cleared["by"]) == ("cleared", "admin")
        stop.set()
        deadline = time.monotonic() + 15  # the clear is delivered too, once
        while time.monotonic() < deadline and len(Receiver.calls) < 4:
            time.sleep(0.1)
        assert [s for s, _, _ in Receiver.calls] == [500, 500, 200, 200]
        assert json.loads(Receiver.calls[3][1])["change"] == "cleared"
    finally:
        http_.close()
        watcher.loop_stop()
        watcher.disconnect()
        hook.shutdown()


@pytest.mark.mosquitto
@pytest.mark.timeout(180)
def test_rules_see_what_every_ingest_worker_stores(tmp_path: Path) -> None:
    """External broker, two ingest processes sharing devices at random: every reading still
    reaches the one rules engine (through the committed-batch feed)."""
    mosq = start_mosquitto(tmp_path / "mosquitto")
    settings = Settings(data_dir=tmp_path / "data", http_port=free_port(), broker=mosq.url,
                        ingest_workers=2, admin_token="e2e-admin-token")
    ready: queue.Queue[Ready] = queue.Queue()
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(settings,),
                              kwargs={"on_ready": ready.put, "stop": stop}, daemon=True)
    thread.start()
    try:
        platform = Platform(ready.get(timeout=90), settings)
        http_ = httpx.Client(headers=platform.headers, timeout=10)
        assert http_.post(platform.url("/products"), json=ENV_SENSOR).status_code in (200, 201)
        rule = {"id": "all-reporting", "product": "env-sensor", "severity": "minor",
                "condition": {"type": "aggregate", "property": "temperature", "fn": "count",
                              "window": "1h", "op": ">=", "value": 4}}
        assert http_.post(platform.url("/rules"), json=rule).status_code == 201
        devices = []
        for i in range(4):
            secret = http_.post(platform.url("/devices"), json={
                "id": f"w{i}", "product": "env-sensor"}).json()["secret"]
            devices.append(Device(f"w{i}", secret, "127.0.0.1", mosq.port))
        for device in devices:
            device.connect()
        now = int(time.time() * 1000)
        for n in range(10):  # 40 readings in all, spread over both workers
            for device in devices:
                device.publish_telemetry({"ts": now + n, "temperature": 20.0 + n}, qos=1)
        rules = platform.ready.core.rules
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and rules.stats["points"] < 40:
            time.sleep(0.1)
        assert rules.stats["points"] == 40  # every reading, whichever worker stored it
        alarms: list[Any] = []
        while time.monotonic() < deadline and not alarms:
            alarms = http_.get(platform.url("/alarms")).json()["items"]
            time.sleep(0.1)
        assert len(alarms) == 1, alarms  # one group alarm, once all four have reported
        assert (alarms[0]["subject"], alarms[0]["value"]) == ("*", 4)
        for device in devices:
            device.disconnect()
        http_.close()
    finally:
        stop.set()
        thread.join(60)
        mosq.stop()
    assert not thread.is_alive()
