"""The Mosquitto consumer bounds what it holds, whatever the broker sends (issue 10).

Debian's Mosquitto 2.0.11 ignores Receive Maximum under backlog: with storage down a
worker held 66,051 unacknowledged messages at 606 MB. The consumer must stop reading its
socket past its own caps, and store everything once storage is back.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable

import orjson
import psutil

from tests.fixtures.mosquitto import MqttPlatform, wait_until
from tests.integration.test_mqtt_durability import quick_failing_core
from wulian.access.mosquitto import BrokerUrl
from wulian.access.mqtt_ingest import MqttIngest
from wulian.pipeline.ingest import now_ms

Make = Callable[..., MqttPlatform]
CAP_BYTES = 20_000
TOTAL = 900


def test_storage_down_the_consumer_holds_no_more_than_its_cap(make_mqtt_platform: Make) -> None:
    p = make_mqtt_platform("mosquitto", build=quick_failing_core)
    p.stop_ingest()
    ingest = MqttIngest(p.core.pipeline, BrokerUrl.from_settings(p.core.settings),
                        client_id="wulian-ingest-0", batch_max=50, batch_ms=20,
                        max_held_bytes=CAP_BYTES, max_held_messages=100_000)
    p.ingest = ingest
    assert ingest.start(wait_s=10)
    dev = p.connect("cap-1", p.provision("cap-1"))
    locker = sqlite3.connect(p.core.store.path, isolation_level=None)  # type: ignore[attr-defined]
    locker.execute("BEGIN EXCLUSIVE")  # every write now fails: database is locked
    peak = {"bytes": 0}
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak["bytes"] = max(peak["bytes"], ingest.counters()["held_bytes"])
            sampling.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rss_before = psutil.Process().memory_info().rss
    start = now_ms() - 60_000
    biggest = 0
    for n in range(TOTAL):
        body = orjson.dumps({"temperature": 21.5, "humidity": 40.0, "ts": start + n})
        biggest = max(biggest, len(body) + len("devices/cap-1/telemetry"))
        dev.client.publish("devices/cap-1/telemetry", body, qos=1)
    wait_until(lambda: ingest.counters().get("reads_paused", 0) >= 1, 20, "reads paused")
    wait_until(lambda: ingest.counters().get("store_failures", 0) >= 3, 20, "store failures")
    held = ingest.counters()
    # the broker keeps the rest: far fewer received than sent, and none acknowledged
    assert held["received"] < TOTAL / 2, held
    assert p.points("cap-1") == []  # nothing stored, so nothing of it acknowledged
    assert held["held_bytes"] <= CAP_BYTES + biggest
    assert psutil.Process().memory_info().rss - rss_before < 50 * 1024 * 1024
    locker.execute("ROLLBACK")
    locker.close()
    wait_until(lambda: len(p.points("cap-1")) == TOTAL, 60, f"{TOTAL} points")
    wait_until(lambda: ingest.counters()["held_messages"] == 0, 20, "all acknowledged")
    sampling.set()
    sampler.join(5)
    assert 0 < peak["bytes"] <= CAP_BYTES + biggest, peak  # one message past it at most
    assert [ts for ts, _ in p.points("cap-1")] == list(range(start, start + TOTAL))
    assert p.store.counters()["messages_accepted"] == TOTAL
    assert ingest.counters()["held_bytes"] == 0 and ingest.counters()["held_messages"] == 0
