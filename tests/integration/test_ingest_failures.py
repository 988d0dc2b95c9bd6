"""Messages the platform fails on, over real brokers and databases: each is kept as an
`internal_error` dead letter and spares its neighbours, and no failure leaves a batch
unacknowledged in the broker's hands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tests.fixtures.api import Api
from tests.fixtures.mosquitto import DeviceClient, MqttPlatform, TransportIngest, wait_until
from tests.fixtures.refuse_rows import refuse_rows
from wulian.domain.message import Inbound, Outcome
from wulian.pipeline.ingest import now_ms

pytestmark = pytest.mark.timeout(90)
Make = Callable[..., MqttPlatform]
POISON = 66.5  # a valid temperature and humidity the test makes the database refuse
REFUSE_POISON = f"NEW.num = {POISON}"


def publish(device: DeviceClient, values: list[float], start_ts: int) -> None:
    """QoS 1 temperature readings with consecutive ts; returns once the broker has all."""
    infos = [device.client.publish(f"devices/{device.device_id}/telemetry",
                                   orjson.dumps({"temperature": v, "ts": start_ts + n}), qos=1)
             for n, v in enumerate(values)]
    for info in infos:
        info.wait_for_publish(10)


@pytest.mark.parametrize(("mode", "backend"), [
    ("embedded", "sqlite"), ("mosquitto", "sqlite"),
    pytest.param("mosquitto", "postgres", marks=pytest.mark.postgres)])
def test_a_message_the_database_refuses_is_kept_as_internal_error_and_spares_its_batch(
        make_mqtt_platform: Make, request: pytest.FixtureRequest, mode: str,
        backend: str) -> None:
    settings = {"database": request.getfixturevalue("pg_url")} if backend == "postgres" else {}
    p = make_mqtt_platform(mode, **settings)
    refuse_rows(p.core.settings.database_url, "points", REFUSE_POISON)
    dev = p.connect("poi-1", p.provision("poi-1"))
    assert dev.subscribe("devices/poi-1/errors")
    p.stop_ingest()  # the six arrive as one batch when the consumer is back
    start = now_ms() - 60_000
    values = [1.0, 2.0, POISON, 4.0, 5.0, 6.0]
    publish(dev, values, start)
    ingest = p.start_ingest()

    wait_until(lambda: ingest.counters().get("acked") == 6, 20, "all six acknowledged")
    assert p.points("poi-1") == [(start + n, v) for n, v in enumerate(values) if v != POISON]
    [kept] = p.store.rejections(device_id="poi-1", since=None, limit=10)
    assert kept.code == "internal_error" and kept.protocol == "mqtt"
    assert orjson.loads(kept.payload) == {"temperature": POISON, "ts": start + 2}
    counters = p.store.counters()
    assert counters["rejected.internal_error"] == 1 and counters["messages_accepted"] == 5
    [reply] = wait_until(lambda: dev.messages("devices/poi-1/errors"), what="the error reply")
    assert (reply["code"], reply["topic"]) == ("internal_error", "devices/poi-1/telemetry")
    assert ingest.counters()["rejected"] == 1


def test_when_even_the_dead_letter_is_refused_the_message_is_held_not_lost(
        make_mqtt_platform: Make) -> None:
    p = make_mqtt_platform("mosquitto")
    url = p.core.settings.database_url
    refuse_rows(url, "points", REFUSE_POISON)
    lift = refuse_rows(url, "rejections", "NEW.code = 'internal_error'")
    dev = p.connect("held-1", p.provision("held-1"))
    p.stop_ingest()
    start = now_ms() - 60_000
    publish(dev, [1.0, POISON, 3.0], start)
    ingest = p.start_ingest()

    # The database takes no record of the poisonous message: held as in an outage.
    wait_until(lambda: ingest.counters().get("store_failures", 0) >= 2, 20, "retries")
    assert ingest.counters().get("acked", 0) == 0
    assert p.points("held-1") == [(start, 1.0)]  # the part before it is stored already
    lift()
    wait_until(lambda: ingest.counters().get("acked") == 3, 20, "all three acknowledged")
    assert p.points("held-1") == [(start, 1.0), (start + 2, 3.0)]
    assert [r.code for r in p.store.rejections(device_id="held-1", since=None,
                                               limit=10)] == ["internal_error"]
    assert p.store.counters()["messages_accepted"] == 2  # no part stored twice


@pytest.mark.parametrize("mode", ["embedded", "mosquitto"])
def test_a_consumer_failure_before_storing_is_retried_not_left_unacknowledged(
        make_mqtt_platform: Make, mode: str) -> None:
    p = make_mqtt_platform(mode)
    ingest = p.ingest
    assert ingest is not None
    failures: list[int] = []
    if isinstance(ingest, TransportIngest):  # the embedded transport stores by itself
        transport = ingest.transport
        real_store = transport._store

        async def store_fails_once(batch: list[Any]) -> list[Outcome | None]:
            if not failures:
                failures.append(len(batch))
                raise RuntimeError("a bug in the transport")
            return await real_store(batch)

        transport._store = store_fails_once  # type: ignore[method-assign]
    else:
        real = ingest._handle

        def fails_once(inbound: list[Inbound]) -> list[Outcome | None]:
            if not failures:
                failures.append(len(inbound))
                raise RuntimeError("a bug in the consumer")
            return real(inbound)

        ingest._handle = fails_once  # type: ignore[method-assign]
    dev = p.connect("bug-1", p.provision("bug-1"))
    start = now_ms() - 60_000
    publish(dev, [1.0, 2.0, 3.0], start)
    wait_until(lambda: len(p.points("bug-1")) == 3, 15, "three points after the retry")
    wait_until(lambda: ingest.counters().get("acked") == 3, 10, "three PUBACKs")
    assert failures and ingest.counters()["internal_errors"] == 1
    assert p.store.counters()["messages_accepted"] == 3


def test_a_failed_puback_forces_a_redelivery_that_is_not_stored_twice(
        make_mqtt_platform: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    p = make_mqtt_platform("mosquitto")
    dev = p.connect("ack-1", p.provision("ack-1"))
    p.stop_ingest()  # the three arrive as one batch when the consumer is back
    start = now_ms() - 60_000
    publish(dev, [1.0, 2.0, 3.0], start)
    ingest = p.make_ingest()
    real = ingest._client.ack
    failed: list[int] = []

    def fails_once(mid: int, qos: int) -> Any:
        if not failed:
            failed.append(mid)
            raise OSError("the PUBACK could not be queued")
        return real(mid, qos)

    monkeypatch.setattr(ingest._client, "ack", fails_once)
    p.ingest = ingest
    assert ingest.start(wait_s=10)
    # Stored, not acknowledged: the consumer reconnects at once, the broker resends what
    # it had not had acknowledged (DUP), and those copies are only acknowledged.
    wait_until(lambda: ingest.counters().get("acked") == 3, 20, "three PUBACKs")
    assert failed
    counters = ingest.counters()
    assert counters["duplicates_skipped"] == counters["ack_lost"] >= 1
    assert p.points("ack-1") == [(start, 1.0), (start + 1, 2.0), (start + 2, 3.0)]
    assert p.store.counters()["messages_accepted"] == 3


def test_over_http_a_message_the_database_refuses_is_a_500_and_a_dead_letter(
        api: Api, env_sensor_doc: dict[str, Any]) -> None:
    api.product(env_sensor_doc)
    auth = api.device("d1")
    refuse_rows(api.core.settings.database_url, "points", REFUSE_POISON)
    r = api.send("d1", auth, orjson.dumps({"humidity": POISON}))
    assert r.status_code == 500 and r.json()["code"] == "internal_error"
    assert api.send("d1", auth, b'{"humidity": 5}').status_code == 202
    [kept] = api.rejections("d1")
    assert kept["code"] == "internal_error"
    assert api.stats()["rejected_by_code"] == {"internal_error": 1}
