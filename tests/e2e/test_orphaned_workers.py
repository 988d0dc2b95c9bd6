"""Production mode (Mosquitto + PostgreSQL): kill -9 of the serve process alone.

Its ingest workers must not outlive it, a new serve must not run beside a stale one, and
every message a device saw acknowledged is stored exactly once after the restart.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.fixtures.common import ENV_SENSOR, free_port
from tests.fixtures.mosquitto import MosquittoBroker, wait_port, wait_until
from wulian.access.worker_life import IngestLock, StaleWorkers
from wulian.bootstrap import build_core
from wulian.config import Settings
from wulian.domain.clock import now_ms

pytestmark = pytest.mark.postgres


def start_serve(data: Path, database: str, broker: str, http_port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "wulian.cli", "--lang", "en", "serve", "--data-dir", str(data),
         "--database", database, "--broker", broker, "--workers", "2",
         "--http-port", str(http_port)],
        stdout=subprocess.DEVNULL, stderr=open(data.parent / f"serve-{http_port}.log", "wb"),  # noqa: SIM115
        env={**os.environ, "WULIAN_ADMIN_TOKEN": "t"})
    wait_port(http_port, 60)
    return proc


def workers_of(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    children = psutil.Process(proc.pid).children()
    return [c for c in children if "resource_tracker" not in " ".join(c.cmdline())]


class Storm:
    """One device publishing QoS 1 telemetry and events as fast as PUBACKs come back."""

    def __init__(self, port: int, device_id: str, secret: str) -> None:
        self.device_id = device_id
        self.acked: list[int] = []  # ts of each message the broker acknowledged
        self._stop = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id,
                                  protocol=MQTTProtocolVersion.MQTTv311)
        self.client.username_pw_set(device_id, secret)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        ts = now_ms() - 3_600_000
        while not self._stop.is_set() and len(self.acked) < 20_000:
            ts += 1
            if ts % 2:
                info = self.client.publish(f"devices/{self.device_id}/telemetry",
                                           orjson.dumps({"temperature": 20.5, "ts": ts}), 1)
            else:
                info = self.client.publish(f"devices/{self.device_id}/events/fault",
                                           orjson.dumps({"code": 1, "ts": ts}), 1)
            info.wait_for_publish(10)
            if info.is_published():
                self.acked.append(ts)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(15)
        self.client.disconnect()
        self.client.loop_stop()


def test_workers_die_with_a_killed_serve_and_nothing_is_stored_twice(
        tmp_path: Path, mosquitto: MosquittoBroker, pg_url: str) -> None:
    data = tmp_path / "data"
    core = build_core(Settings(data_dir=data, database=pg_url, broker=mosquitto.url))
    try:
        core.registry.import_product(ENV_SENSOR)
        secret = core.registry.add_device("storm-1", "env-sensor").secret
    finally:
        core.close()
    serve = start_serve(data, pg_url, mosquitto.url, free_port())
    storm: Storm | None = None
    try:
        workers = wait_until(lambda: (w := workers_of(serve)) and len(w) == 2 and w, 60,
                             "two ingest workers")
        storm = Storm(mosquitto.port, "storm-1", secret)
        storm.thread.start()
        wait_until(lambda: len(storm.acked) >= 500, 30, "the storm under way")  # type: ignore[union-attr]
        serve.kill()  # kill -9 of the main process alone
        serve.wait(10)
        _, alive = psutil.wait_procs(workers, timeout=15)
        assert alive == [], f"orphaned workers: {[p.pid for p in alive]}"
        time.sleep(0.5)  # the storm goes on into the broker's sessions of the dead workers
        storm.stop()
        serve = start_serve(data, pg_url, mosquitto.url, free_port())
        acked = set(storm.acked)
        core = build_core(Settings(data_dir=data, database=pg_url, broker=mosquitto.url),
                          provision_broker=False)
        try:
            def stored() -> tuple[list[int], list[int]]:
                points = [ts for ts, _ in core.store.points(
                    "storm-1", "temperature", since=None, until=None, limit=1_000_000)]
                events = [e.ts for e in core.store.events(
                    "storm-1", since=None, until=None, limit=1_000_000)]
                return points, events

            def all_there() -> bool:
                points, events = stored()
                return acked <= set(points) | set(events)

            wait_until(all_there, 60, "every acknowledged message stored")
            points, events = stored()
            assert len(points) == len(set(points)), "a point stored twice"
            assert len(events) == len(set(events)), "an event stored twice"
            # what the counters say was stored is what the tables hold
            wait_until(lambda: (core.store.counters().get("points_stored"),
                                core.store.counters().get("events_stored"))
                       == (len(points), len(events)), 10, "the counters to match the rows")
        finally:
            core.close()
    finally:
        if storm is not None:
            storm.stop()
        if serve.poll() is None:
            serve.terminate()
            serve.wait(30)


def test_a_serve_does_not_start_beside_a_stale_worker(tmp_path: Path) -> None:
    code = ("import sys,time; from wulian.access.worker_life import IngestLock;"
            "lock = IngestLock(sys.argv[1]); lock.hold_shared(); print('held', flush=True);"
            "time.sleep(60)")
    stale = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                             stdout=subprocess.PIPE)
    try:
        assert stale.stdout is not None and stale.stdout.readline() == b"held\n"
        started = time.monotonic()
        with pytest.raises(StaleWorkers):
            IngestLock(tmp_path).ensure_none_running(wait_s=0.5)
        assert time.monotonic() - started < 5
    finally:
        stale.kill()
        stale.wait(10)
    IngestLock(tmp_path).ensure_none_running(wait_s=5)  # once it is gone


def test_sigterm_stops_serve_and_its_workers_within_10s_with_a_summary(
        tmp_path: Path, mosquitto: MosquittoBroker) -> None:
    data = tmp_path / "data"
    database = f"sqlite:///{tmp_path / 'w.db'}"
    core = build_core(Settings(data_dir=data, database=database, broker=mosquitto.url))
    try:
        core.registry.import_product(ENV_SENSOR)
        secret = core.registry.add_device("calm-1", "env-sensor").secret
    finally:
        core.close()
    port = free_port()
    serve = start_serve(data, database, mosquitto.url, port)
    workers = wait_until(lambda: (w := workers_of(serve)) and len(w) == 2 and w, 60,
                         "two ingest workers")
    storm = Storm(mosquitto.port, "calm-1", secret)
    storm.thread.start()
    wait_until(lambda: len(storm.acked) >= 200, 30, "messages flowing")
    started = time.monotonic()
    serve.terminate()
    try:
        serve.wait(10)
    finally:
        storm.stop()
        if serve.poll() is None:
            serve.kill()
    assert time.monotonic() - started < 10
    _, alive = psutil.wait_procs(workers, timeout=1)
    assert alive == []
    log = (tmp_path / f"serve-{port}.log").read_text()
    assert "ingest workers stopped: 2 in" in log, log[-2000:]
    assert "(0 killed" in log
