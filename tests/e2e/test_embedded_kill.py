"""kill -9 of `wulian serve` (embedded default) during a QoS 1 storm loses nothing that a
device saw acknowledged (issue 10: amqtt acknowledged on receipt, and kill -9 lost 99.5 %
of what devices had seen acknowledged)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.fixtures.common import ENV_SENSOR, free_port
from tests.fixtures.mosquitto import wait_until
from wulian.storage import open_store

TOKEN = "kill-test-token"
DEVICES = 20


class Storm:
    """Devices publishing QoS 1 readings with distinct ts as fast as their window allows;
    each remembers the ts of every reading the platform acknowledged."""

    def __init__(self, port: int, secrets: dict[str, str]) -> None:
        self.acked: dict[str, list[int]] = {d: [] for d in secrets}  # ts PUBACKed
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(d, s, port, n), daemon=True)
                        for n, (d, s) in enumerate(secrets.items())]

    def _run(self, device_id: str, secret: str, port: int, n: int) -> None:
        version = MQTTProtocolVersion.MQTTv5 if n % 2 else MQTTProtocolVersion.MQTTv311
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=version)
        client.username_pw_set(device_id, secret)
        client.max_queued_messages_set(200)  # publish() refuses past this: a bounded window
        client.connect("127.0.0.1", port)
        client.loop_start()
        ts = 1_700_000_000_000 + n * 10_000_000
        sent: list[tuple[mqtt.MQTTMessageInfo, int]] = []
        try:
            while not self.stop.is_set():
                info = client.publish(f"devices/{device_id}/telemetry",
                                      orjson.dumps({"temperature": 20.5, "ts": ts}), qos=1)
                if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                    time.sleep(0.005)
                    continue
                sent.append((info, ts))
                ts += 1
                if len(sent) % 100 == 0:  # PUBACKed: is_published() turns true, never back
                    self.acked[device_id] = [t for i, t in sent if i.is_published()]
        finally:
            self.acked[device_id] = [t for i, t in sent if i.is_published()]
            client.loop_stop()

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def total(self) -> int:
        """Acknowledged so far (as of each device's last look: a lower bound while running)."""
        return sum(len(v) for v in self.acked.values())


def _serve(data: Path, http_port: int, mqtt_port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WULIAN_DATA_DIR": str(data), "WULIAN_HTTP_PORT": str(http_port),
           "WULIAN_MQTT_PORT": str(mqtt_port), "WULIAN_ADMIN_TOKEN": TOKEN, "WULIAN_LANG": "en"}
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "wulian.cli", "serve"], env=env,
                                stdout=out, stderr=out)

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{http_port}/api/v1/health", timeout=1).is_success
        except httpx.HTTPError:
            return proc.poll() is not None

    wait_until(healthy, 60, "wulian serve to answer")
    assert proc.poll() is None, log.read_text()[-3000:]
    return proc


@pytest.mark.timeout(200)
@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_kill_9_loses_nothing_acknowledged(tmp_path: Path, attempt: int) -> None:
    data, log = tmp_path / "data", tmp_path / "serve.log"
    http_port, mqtt_port = free_port(), free_port()
    proc = _serve(data, http_port, mqtt_port, log)
    try:
        api = httpx.Client(base_url=f"http://127.0.0.1:{http_port}/api/v1",
                           headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert api.post("/products", json=ENV_SENSOR).status_code in (200, 201)
        secrets = {f"k{attempt}-{n}": api.post("/devices", json={
            "id": f"k{attempt}-{n}", "product": "env-sensor"}).json()["secret"]
            for n in range(DEVICES)}
        storm = Storm(mqtt_port, secrets)
        storm.start()
        wait_until(lambda: storm.total() >= 2000 * attempt, 60, "acknowledged readings")
        proc.send_signal(signal.SIGKILL)  # mid-storm: batches in flight, PUBACKs unsent
        proc.wait(10)
        storm.stop.set()  # each device now settles what it saw acknowledged
        for thread in storm.threads:
            thread.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    store = open_store(f"sqlite:///{data / 'wulian.db'}")
    try:
        lost = 0
        for device_id, acked in storm.acked.items():
            stored = [ts for ts, _ in store.points(device_id, "temperature", since=None,
                                                   until=None, limit=1_000_000)]
            assert len(stored) == len(set(stored))  # each at most once
            lost += len(set(acked) - set(stored))
        assert storm.total() >= 2000 * attempt
        assert lost == 0, f"{lost} of {storm.total()} acknowledged readings lost"
    finally:
        store.close()


@pytest.mark.timeout(200)
def test_a_fleet_at_its_pace_runs_quietly_and_stops_with_a_summary(tmp_path: Path) -> None:
    """100 devices at 1 msg/s for 10 s: everything stored, not one warning or traceback in
    the log, and SIGTERM stops the platform within 10 s with a one-line summary."""
    data, log = tmp_path / "data", tmp_path / "serve.log"
    http_port, mqtt_port = free_port(), free_port()
    proc = _serve(data, http_port, mqtt_port, log)
    clients: list[mqtt.Client] = []
    try:
        api = httpx.Client(base_url=f"http://127.0.0.1:{http_port}/api/v1",
                           headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert api.post("/products", json=ENV_SENSOR).status_code in (200, 201)
        for n in range(100):
            device_id = f"q-{n}"
            secret = api.post("/devices", json={"id": device_id,
                                                "product": "env-sensor"}).json()["secret"]
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id,
                                 protocol=MQTTProtocolVersion.MQTTv5 if n % 2
                                 else MQTTProtocolVersion.MQTTv311)
            client.username_pw_set(device_id, secret)
            client.connect("127.0.0.1", mqtt_port, keepalive=5)  # pings while it is quiet
            client.loop_start()
            clients.append(client)
        start = 1_700_000_000_000
        infos = []
        for second in range(10):
            began = time.monotonic()
            for n, client in enumerate(clients):
                infos.append(client.publish(f"devices/q-{n}/telemetry", orjson.dumps(
                    {"temperature": 20.0, "ts": start + second * 1000}), qos=1))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - began)))
        for info in infos:
            info.wait_for_publish(30)
        assert api.get("/stats").json()["messages_accepted"] == 100 * 10
        for client in clients:
            client.disconnect()
            client.loop_stop()
        clients.clear()
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        assert time.monotonic() - stopping < 10
    finally:
        for client in clients:
            client.loop_stop()
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "Traceback" not in text and "WARNING" not in text, text[-3000:]
    assert "1000 messages stored and acknowledged" in text  # the summary it stops with
