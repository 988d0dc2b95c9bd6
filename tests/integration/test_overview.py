"""Counter samples, the sampler thread, fleet counts and GET /api/v1/overview, on real
databases (SQLite, and PostgreSQL where reachable)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import Depends

from tests.fixtures.api import ADMIN_TOKEN, Api
from tests.fixtures.common import ENV_SENSOR
from wulian.api import create_app
from wulian.bootstrap import build_core
from wulian.config import Settings
from wulian.domain.device import Device
from wulian.domain.message import WriteBatch
from wulian.domain.thingmodel import parse_thing_model
from wulian.metrics import (
    MINUTE_MS,
    RATE_WINDOW_MS,
    CounterSampler,
    CounterSamples,
    fleet_counts,
)
from wulian.pipeline.ingest import now_ms
from wulian.ports import StorageUnavailable, Store
from wulian.scenarios import get as scenario
from wulian.storage import open_store

BASE = 1_699_999_980_000  # a whole minute
DAY = 86_400_000


@pytest.fixture
def store(database: str) -> Iterator[Store]:
    s = open_store(database)
    yield s
    s.close()


class Counting:
    """A store whose counters the test sets (and may make fail), over a real database."""

    def __init__(self, store: Store) -> None:
        self.engine = store.engine  # type: ignore[attr-defined]
        self.values: dict[str, int] = {"messages_accepted": 0}
        self.down = False

    def counters(self) -> dict[str, int]:
        if self.down:
            raise StorageUnavailable("database unavailable: test")
        return dict(self.values)


class Clock:
    def __init__(self, start: int) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


# --- counter samples -----------------------------------------------------------------------


def test_samples_become_per_minute_rates_and_old_ones_are_pruned(store: Store) -> None:
    samples = CounterSamples.of(store)
    # one minute at 600 messages, a two-minute gap holding 240, and a counter that went back
    for minute, value in ((0, 1000), (1, 1600), (3, 1840), (4, 100)):
        samples.record(BASE + minute * MINUTE_MS + 5_000, {"messages_accepted": value})
    assert samples.rates("messages_accepted", BASE + MINUTE_MS) == [
        (BASE + MINUTE_MS, 10.0), (BASE + 3 * MINUTE_MS, 2.0), (BASE + 4 * MINUTE_MS, 0.0)]
    # the minute not over yet is left out
    assert samples.rates("messages_accepted", BASE, BASE + 4 * MINUTE_MS)[-1][0] == \
        BASE + 3 * MINUTE_MS
    # within a minute the latest (largest) value is kept, whatever order writers come in
    samples.record(BASE + MINUTE_MS + 50_000, {"messages_accepted": 1700})
    samples.record(BASE + MINUTE_MS + 20_000, {"messages_accepted": 1650})
    assert dict(samples.values("messages_accepted", BASE))[BASE + MINUTE_MS] == 1700
    assert samples.prune(BASE + 3 * MINUTE_MS) == 2
    assert [m for m, _ in samples.values("messages_accepted", 0)] == [
        BASE + 3 * MINUTE_MS, BASE + 4 * MINUTE_MS]
    assert samples.rates("other", 0) == []


def test_the_sampler_knows_the_rate_now_and_persists_minutes(store: Store) -> None:
    counting = Counting(store)
    clock = Clock(BASE)
    sampler = CounterSampler(counting, clock=clock, names=("messages_accepted",))  # type: ignore[arg-type]
    assert sampler.rate_now() is None
    sampler.sample()
    assert sampler.rate_now() is None  # one sample tells no rate
    for _ in range(6):
        clock.now += 10_000
        counting.values["messages_accepted"] += 500
        sampler.sample()
    assert sampler.rate_now() == 50.0  # over the last ~30 s only
    counting.values["messages_accepted"] += 3000
    clock.now += 10_000
    sampler.sample()
    assert sampler.rate_now() == pytest.approx((1000 + 3000) / (RATE_WINDOW_MS / 1000))
    rates = sampler.samples.rates("messages_accepted", BASE)
    assert rates == [(BASE + MINUTE_MS, (6000 - 2500) / 60)]  # last value of each minute


def test_the_sampler_thread_samples_at_once_survives_failures_and_stops(store: Store) -> None:
    counting = Counting(store)
    sampler = CounterSampler(counting, interval_s=0.05, names=("messages_accepted",))  # type: ignore[arg-type]
    counting.down = True
    sampler.start()
    time.sleep(0.2)
    counting.down = False  # the database comes back: sampling goes on
    counting.values["messages_accepted"] = 42
    deadline = time.monotonic() + 5
    while not sampler.samples.values("messages_accepted", 0) and time.monotonic() < deadline:
        time.sleep(0.02)
    sampler.stop()
    assert sampler.samples.values("messages_accepted", 0)[-1][1] == 42
    assert not [t for t in threading.enumerate() if t.name == "wulian-counter-sampler"]


def test_old_samples_are_pruned_by_the_sampler(store: Store) -> None:
    samples = CounterSamples.of(store)
    now = now_ms()
    samples.record(now - 9 * DAY, {"messages_accepted": 1})
    samples.record(now - 7 * DAY, {"messages_accepted": 2})
    CounterSampler(Counting(store), names=("messages_accepted",)).sample()  # type: ignore[arg-type]
    kept = [m for m, _ in samples.values("messages_accepted", 0)]
    assert len(kept) == 2 and min(kept) >= now - 8 * DAY


# --- fleet counts --------------------------------------------------------------------------


def add_device(store: Store, device_id: str, product: str) -> None:
    store.add_device(Device(id=device_id, product=product, name=device_id,
                            secret_hash="scrypt$x", created_ms=BASE))


def test_fleet_counts_per_product_online_and_ip_versions(store: Store) -> None:
    meter = scenario("energy").product("smart-meter").product
    store.put_product(parse_thing_model(ENV_SENSOR))
    store.put_product(meter.model)
    for n in range(3):
        add_device(store, f"env-{n}", "env-sensor")
    add_device(store, "meter-0", "smart-meter")
    now = now_ms()
    store.set_connected("env-0", True, ts_ms=now, protocol="mqtt", remote="[2001:db8::7]:4000")
    store.set_connected("env-1", True, ts_ms=now - DAY, protocol="mqtt", remote="10.0.0.2:1")
    store.set_connected("env-1", False, ts_ms=now - DAY + 1, protocol="mqtt",
                        remote="10.0.0.2:1")
    store.write(WriteBatch(accepted=1, seen={}))  # nothing seen: counts stay
    counts = fleet_counts(store, now - 300_000)
    assert [(p.product, p.devices, p.online) for p in counts.products] == [
        ("env-sensor", 3, 1), ("smart-meter", 1, 0)]
    assert (counts.devices, counts.online, counts.ipv4, counts.ipv6) == (4, 1, 1, 1)


# --- the endpoint --------------------------------------------------------------------------


@pytest.fixture
def oapi(tmp_path: Path, database: str) -> Iterator[Api]:
    """The app with /overview (included here as the lead includes it in create_app)."""
    from fastapi.testclient import TestClient

    from wulian.api.deps import read_or_admin
    from wulian.api.routes import overview

    core = build_core(Settings(data_dir=tmp_path, database=database), provision_broker=False)
    try:
        app = create_app(core, admin_token=ADMIN_TOKEN)
        if "/api/v1/overview" not in {getattr(r, "path", None) for r in app.routes}:
            app.include_router(overview.router, prefix="/api/v1",
                               dependencies=[Depends(read_or_admin)])
        with TestClient(app) as client:
            yield Api(client, core)
    finally:
        core.close()


def test_overview_sums_up_the_fleet(oapi: Api) -> None:
    oapi.product(ENV_SENSOR)
    meter = scenario("energy").product("smart-meter").product
    oapi.product(meter.doc)
    streetlight = scenario("municipal").product("streetlight").product
    oapi.product(streetlight.doc)
    auth = {d: oapi.device(d, p) for d, p in (("env-1", "env-sensor"), ("env-2", "env-sensor"),
                                               ("meter-1", "smart-meter"),
                                               ("light-1", "streetlight"))}
    assert oapi.send("env-1", auth["env-1"], b'{"temperature": 20}').status_code == 202
    store = oapi.core.store
    now = now_ms()
    store.set_connected("meter-1", True, ts_ms=now, protocol="mqtt", remote="[2001:db8::1]:9")
    samples = CounterSamples.of(store)
    minute = now - now % MINUTE_MS
    samples.record(minute - 3 * MINUTE_MS, {"messages_accepted": 0})
    samples.record(minute - 2 * MINUTE_MS, {"messages_accepted": 120})
    samples.record(minute - MINUTE_MS, {"messages_accepted": 180})
    samples.record(minute, {"messages_accepted": 181})  # this minute is not over
    body = oapi.get("/overview", headers={"Accept-Language": "zh-CN"}).json()
    assert (body["devices"], body["online"], body["online_rate"]) == (4, 2, 0.5)
    # env-1 came over HTTP from the test client (no IP address): only meter-1's is known
    assert (body["ipv6_share"], body["ipv6_devices"], body["ip_known_devices"]) == (1.0, 1, 1)
    assert body["messages_24h"] == [[minute - 2 * MINUTE_MS, 2.0], [minute - MINUTE_MS, 1.0]]
    assert body["messages_per_s"] == 1.0  # no sampler in this app: the last whole minute
    industries = {e["industry"]: e for e in body["by_industry"]}
    assert industries["energy"] == {"industry": "energy", "name": "智慧能源", "devices": 1,
                                    "online": 1}
    assert industries["municipal"]["devices"] == 1 and industries["municipal"]["online"] == 0
    assert industries["other"] == {"industry": "other", "name": "其他", "devices": 2,
                                   "online": 1}
    assert body["by_industry"][-1]["industry"] == "other"  # "other" comes last
    products = {p["id"]: p for p in body["products"]}
    assert products["env-sensor"] == {"id": "env-sensor", "name": "Environment sensor",
                                      "industry": "other", "devices": 2, "online": 1}


def test_overview_of_an_empty_platform_and_with_a_sampler(oapi: Api) -> None:
    body = oapi.get("/overview").json()
    assert body["devices"] == 0 and body["online_rate"] is None
    assert body["ipv6_share"] is None and body["messages_per_s"] is None
    assert body["messages_24h"] == [] and body["by_industry"] == []

    class Steady:
        samples = CounterSamples.of(oapi.core.store)

        def rate_now(self, name: str = "messages_accepted") -> float:
            return 12.3456

    oapi.client.app.state.sampler = Steady()  # type: ignore[attr-defined]
    assert oapi.get("/overview").json()["messages_per_s"] == 12.346


def test_overview_needs_a_caller(oapi: Api) -> None:
    assert oapi.client.get("/api/v1/overview").status_code == 401


def test_the_device_list_may_carry_each_status(oapi: Api) -> None:
    oapi.product(ENV_SENSOR)
    auth = oapi.device("d1")
    oapi.device("d2")
    assert oapi.send("d1", auth, b'{"temperature": 20}').status_code == 202
    plain = oapi.get("/devices").json()["data"]
    assert all("status" not in d for d in plain)
    rows = {d["id"]: d for d in oapi.get("/devices", params={"status": "true"}).json()["data"]}
    assert rows["d1"]["status"]["online"] is True and rows["d1"]["status"]["protocol"] == "http"
    assert rows["d2"]["status"] == oapi.get("/devices/d2").json()["status"]
    assert rows["d2"]["status"]["online"] is False
