"""Nothing acknowledged is lost: consumer restarts, storage outages, several workers, and
messages the broker itself drops made visible."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.fixtures.mosquitto import DeviceClient, MqttPlatform, wait_until
from wulian.access.mqtt_ingest import run_worker
from wulian.bootstrap import Core, broker_admin
from wulian.config import Settings
from wulian.pipeline import DeviceDirectory, IngestLimits, Pipeline
from wulian.pipeline.ingest import now_ms
from wulian.registry import Registry
from wulian.storage.sqlite import SqliteStore

pytestmark = pytest.mark.timeout(90)
Make = Callable[..., MqttPlatform]


def publish_many(device: DeviceClient, count: int, start_ts: int) -> None:
    """`count` QoS 1 telemetry messages with distinct ts; returns once the broker has all."""
    for info in publish_async(device, count, start_ts):
        info.wait_for_publish(30)


def publish_async(device: DeviceClient, count: int, start_ts: int) -> list[mqtt.MQTTMessageInfo]:
    """`count` QoS 1 telemetry messages with distinct ts, not waiting for their PUBACKs."""
    return [device.client.publish(f"devices/{device.device_id}/telemetry",
                                  orjson.dumps({"temperature": (n % 100) / 2,
                                                "ts": start_ts + n}), qos=1)
            for n in range(count)]


def quick_failing_core(settings: Settings) -> Core:
    """A core whose SQLite store gives up on a locked database after 0.2 s, not 10 s."""
    store = SqliteStore(settings.database_url, busy_timeout_ms=200)
    directory = DeviceDirectory(store)
    pipeline = Pipeline(store, directory, IngestLimits(), lang=settings.lang)
    return Core(settings, store, directory, pipeline,
                Registry(store, directory, broker_admin(settings)))


def test_messages_sent_while_the_consumer_is_down_arrive_once(make_mqtt_platform: Make) -> None:
    # Mosquitto only: the embedded transport has no consumer apart from itself, and a
    # device's PUBLISH is acknowledged only once stored (test_mqtt_transport.py).
    p = make_mqtt_platform("mosquitto")
    dev = p.connect("dur-1", p.provision("dur-1"))
    p.stop_ingest()
    start = now_ms() - 60_000
    publish_many(dev, 1000, start)
    assert p.points("dur-1") == []
    ingest = p.start_ingest()
    wait_until(lambda: len(p.points("dur-1")) == 1000, 30, "1000 points")
    wait_until(lambda: ingest.counters().get("acked") == 1000, 10, "1000 PUBACKs")
    assert [ts for ts, _ in p.points("dur-1")] == list(range(start, start + 1000))
    assert ingest.counters()["received"] == 1000
    assert p.store.counters()["messages_accepted"] == 1000


@pytest.mark.parametrize("mode", ["embedded", "mosquitto"])
def test_storage_outage_acks_nothing_and_loses_nothing(make_mqtt_platform: Make,
                                                       mode: str) -> None:
    p = make_mqtt_platform(mode, build=quick_failing_core)
    ingest = p.ingest
    assert ingest is not None
    dev = p.connect("out-1", p.provision("out-1"))
    start = now_ms() - 60_000
    db = p.core.store.path  # type: ignore[attr-defined]
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # every write now fails: database is locked
    if mode == "mosquitto":
        publish_many(dev, 100, start)
    else:  # the transport acknowledges only what is stored: nothing, for now
        pending = publish_async(dev, 100, start)
    # paho keeps at most 20 QoS 1 messages unacknowledged: all the transport can hold
    held = 100 if mode == "mosquitto" else 20
    wait_until(lambda: ingest.counters().get("received") == held, what=f"{held} received")
    wait_until(lambda: ingest.counters().get("store_failures", 0) >= 2, what="store failures")
    assert ingest.counters().get("acked", 0) == 0
    if mode == "mosquitto":
        # Give up while the store is down: the broker must still hold all 100.
        p.stop_ingest(timeout_s=0.5)
        locker.execute("ROLLBACK")
        ingest = p.start_ingest()
        wait_until(lambda: len(p.points("out-1")) == 100, 20, "100 points after restart")
        locker.execute("BEGIN EXCLUSIVE")
        publish_many(dev, 100, start + 100)
        wait_until(lambda: ingest.counters().get("store_failures", 0) >= 2, what="failures")
    else:
        assert not any(info.is_published() for info in pending)  # no PUBACK yet
    # The consumer recovers by itself once the store is back.
    locker.execute("ROLLBACK")
    locker.close()
    total = 200 if mode == "mosquitto" else 100
    wait_until(lambda: len(p.points("out-1")) == total, 20, f"{total} points")
    wait_until(lambda: ingest.counters().get("acked") == total, 10, "all acknowledged")
    assert [ts for ts, _ in p.points("out-1")] == list(range(start, start + total))
    assert p.store.counters()["messages_accepted"] == total


def test_two_worker_processes_share_the_load(make_mqtt_platform: Make) -> None:
    p = make_mqtt_platform("mosquitto", ingest_workers=2)
    # Worker 0's session so far held a plain subscription (one worker): now it shares,
    # and must not receive everything a second time through the old one.
    p.stop_ingest()
    dev = p.connect("shared-1", p.provision("shared-1"))
    ctx = mp.get_context("spawn")
    settings_json = p.core.settings.model_dump_json()
    ready = [ctx.Event() for _ in range(2)]
    workers = [ctx.Process(target=run_worker, args=(settings_json, i, ready[i]), daemon=True)
               for i in range(2)]
    for w in workers:
        w.start()
    try:
        assert all(r.wait(30) for r in ready), "a worker did not subscribe"
        start = now_ms() - 60_000
        publish_many(dev, 1000, start)
        wait_until(lambda: len(p.points("shared-1")) == 1000, 30, "1000 points")
        assert p.store.counters()["messages_accepted"] == 1000  # each stored exactly once
        time.sleep(0.3)
        assert p.store.counters()["messages_accepted"] == 1000
    finally:
        for w in workers:
            if w.pid is not None and w.is_alive():
                w.terminate()  # SIGTERM: drain, ack, disconnect
        for w in workers:
            w.join(15)
    assert [w.exitcode for w in workers] == [0, 0]


def test_messages_the_broker_drops_are_counted_and_reported(
        make_mqtt_platform: Make, caplog: pytest.LogCaptureFixture) -> None:
    p = make_mqtt_platform("mosquitto", broker_options={"max_queued_bytes": 2000})
    ingest = p.ingest
    assert ingest is not None
    wait_until(lambda: "broker_dropped_total" in ingest.counters(), what="the $SYS baseline")
    # A device with a persistent session goes away; its commands pile up past the limit.
    p.park("sleepy-1", p.provision("sleepy-1"), "devices/sleepy-1/commands/#")
    commander = p.connect_platform()
    body: dict[str, Any] = {"name": "reboot", "params": {"pad": "x" * 200}}
    for n in range(50):
        commander.publish(f"devices/sleepy-1/commands/c{n}", orjson.dumps(body),
                          qos=1).wait_for_publish(10)
    wait_until(lambda: ingest.counters().get("broker_dropped", 0) > 0, 15, "drops reported")
    assert any("dropped" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)


def test_a_batch_stored_after_its_connection_ended_is_not_stored_twice(
        make_mqtt_platform: Make) -> None:
    p = make_mqtt_platform("mosquitto", build=quick_failing_core)
    ingest, mosq = p.ingest, p.mosquitto
    assert ingest is not None and mosq is not None
    dev = p.connect("dup-1", p.provision("dup-1"))
    locker = sqlite3.connect(p.core.store.path, isolation_level=None)  # type: ignore[attr-defined]
    locker.execute("BEGIN EXCLUSIVE")
    start = now_ms() - 60_000
    publish_many(dev, 50, start)
    wait_until(lambda: ingest.counters().get("store_failures", 0) >= 1, what="a held batch")
    # Another client takes over the consumer's session for a moment, ending its connection
    # while the batch is held: its PUBACKs can no longer go out, the broker will resend.
    taker = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=ingest.client_id,
                        protocol=MQTTProtocolVersion.MQTTv5, manual_ack=True)
    taker.username_pw_set(mosq.admin_user, mosq.admin_password)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    taker.connect("127.0.0.1", mosq.port, clean_start=False, properties=props)
    taker.loop_start()
    wait_until(lambda: not ingest.wait_ready(0), what="the consumer's connection to end")
    taker.disconnect()
    taker.loop_stop()
    wait_until(lambda: ingest.wait_ready(0), 10, "the consumer back")
    locker.execute("ROLLBACK")
    locker.close()
    wait_until(lambda: ingest.counters().get("acked") == 50, 15, "the resent copies acked")
    counters = ingest.counters()
    assert counters["ack_lost"] >= 1
    assert counters["duplicates_skipped"] == counters["ack_lost"]
    assert [ts for ts, _ in p.points("dup-1")] == list(range(start, start + 50))
    assert p.store.counters()["messages_accepted"] == 50


def test_messages_published_after_a_broker_restart_wait_for_the_consumer(
        make_mqtt_platform: Make) -> None:
    p = make_mqtt_platform("mosquitto")
    secret = p.provision("rst-1")
    p.stop_ingest()
    mosq = p.mosquitto
    assert mosq is not None
    mosq.stop()  # Mosquitto saves its sessions (persistence) and comes back with them
    mosq.start()
    dev = p.connect("rst-1", secret)
    start = now_ms() - 60_000
    publish_many(dev, 100, start)
    p.start_ingest()
    wait_until(lambda: len(p.points("rst-1")) == 100, 15, "100 points")
