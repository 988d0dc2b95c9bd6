"""Device connection history (`connection_log`): what set_connected logs, how it is kept
bounded, and `GET /api/v1/devices/{id}/connections`, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, insert, select

import wulian.storage.metadata as sql_metadata
from tests.fixtures.api import Api
from tests.fixtures.common import ENV_SENSOR
from wulian.domain.device import Device, DeviceState
from wulian.domain.message import SeenRecord, WriteBatch
from wulian.domain.thingmodel import parse_thing_model
from wulian.pipeline.ingest import now_ms
from wulian.ports import Store
from wulian.storage import open_store
from wulian.storage.schema import connection_log

DAY = 86_400_000
A, B, C = "10.0.0.1:50000", "[2001:db8::2]:50001", "10.0.0.3:50002"


@pytest.fixture
def store(database: str) -> Iterator[Store]:
    s = open_store(database)
    s.put_product(parse_thing_model(ENV_SENSOR))
    for device_id in ("d1", "d2"):
        s.add_device(Device(id=device_id, product="env-sensor", name=device_id,
                            secret_hash="scrypt$x", state=DeviceState.ACTIVE, tags={},
                            location=None, created_ms=0))
    yield s
    s.close()


def history(store: Store, device_id: str = "d1", limit: int = 100) -> list[tuple[Any, ...]]:
    return [(e.ts, e.connected, e.protocol, e.remote, e.ip_version)
            for e in store.connection_history(device_id, limit)]


def rows(store: Store, device_id: str) -> int:
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        return int(conn.scalar(select(func.count()).select_from(connection_log)
                               .where(connection_log.c.device_id == device_id)) or 0)


def mqtt(store: Store, connected: bool, ts: int, remote: str | None,
         device_id: str = "d1") -> None:
    store.set_connected(device_id, connected, ts_ms=ts, protocol="mqtt", remote=remote)


def test_transitions_are_logged_once_and_reconnects_from_elsewhere_too(store: Store) -> None:
    t = now_ms()
    mqtt(store, False, t - 10, None)  # a disconnect of a device never connected: no news
    mqtt(store, True, t, A)
    mqtt(store, True, t + 1, A)  # the same connection again (two workers saw it)
    mqtt(store, False, t + 2, A)
    mqtt(store, False, t + 3, None)  # and its disconnect twice
    mqtt(store, True, t + 4, B)
    mqtt(store, True, t + 5, C)  # a reconnect whose disconnect went unseen
    mqtt(store, False, t + 1, None)  # a late notice of an old session: ignored, as by status
    assert store.device_status("d1").connected is True  # type: ignore[union-attr]
    assert history(store) == [
        (t + 5, True, "mqtt", C, 4),
        (t + 4, True, "mqtt", B, 6),
        (t + 2, False, "mqtt", A, 4),
        (t, True, "mqtt", A, 4),
    ]
    assert history(store, limit=1) == [(t + 5, True, "mqtt", C, 4)]
    assert history(store, "d2") == []


def test_http_traffic_adds_no_row(store: Store) -> None:
    t = now_ms()
    for i in range(20):  # HTTP requests only update the status, with the client's address
        store.write(WriteBatch(seen={"d1": SeenRecord(t + i, "http", f"10.0.0.9:{4000 + i}")}))
    assert history(store) == []
    mqtt(store, True, t + 100, A)
    # HTTP traffic rewrites the status's protocol and address; it is no reconnect
    store.write(WriteBatch(seen={"d1": SeenRecord(t + 101, "http", "10.0.0.9:4100")}))
    mqtt(store, True, t + 102, A)
    assert history(store) == [(t + 100, True, "mqtt", A, 4)]


def test_notices_for_unknown_devices_log_nothing(store: Store) -> None:
    mqtt(store, True, now_ms(), A, device_id="ghost")
    assert rows(store, "ghost") == 0


def test_concurrent_notices_of_one_connect_log_one_row(store: Store) -> None:
    t = now_ms()
    start = threading.Barrier(6)

    def notice(i: int) -> None:
        start.wait()
        mqtt(store, True, t + i, A)

    threads = [threading.Thread(target=notice, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert rows(store, "d1") == 1


def test_history_is_pruned_to_30_days_and_1000_rows(store: Store,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    t = now_ms()
    old = [{"device_id": "d1", "ts": t - 31 * DAY + i, "connected": i % 2 == 0,
            "protocol": "mqtt", "remote": A, "ip_version": 4} for i in range(50)]
    recent = [{"device_id": "d1", "ts": t - DAY + i, "connected": i % 2 == 0,
               "protocol": "mqtt", "remote": A, "ip_version": 4} for i in range(1_100)]
    gone = [{"device_id": "d2", "ts": t - 40 * DAY, "connected": True, "protocol": "mqtt",
             "remote": B, "ip_version": 6}]  # a device that no longer connects
    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(insert(connection_log), old + recent + gone)
    monkeypatch.setattr(sql_metadata, "PRUNE_CHANCE", 0.0)  # no per-device pruning yet
    mqtt(store, True, t, C)  # the first logged notice of a process sweeps by age
    assert rows(store, "d2") == 0
    assert rows(store, "d1") == 1_101  # the per-device bound waits for its turn
    mqtt(store, False, t + 1, None)
    assert rows(store, "d1") == 1_102  # swept once a day only: nothing else happened

    monkeypatch.setattr(sql_metadata, "PRUNE_CHANCE", 1.0)
    mqtt(store, True, t + 2, A)
    assert rows(store, "d1") == 1_000
    kept = history(store, limit=1_000)
    assert kept[0] == (t + 2, True, "mqtt", A, 4)  # the newest stay
    assert kept[-1][0] == t - DAY + 103
    assert history(store, limit=5_000) == kept


def test_delete_device_removes_its_history(store: Store) -> None:
    t = now_ms()
    mqtt(store, True, t, A)
    mqtt(store, True, t, B, device_id="d2")
    assert store.delete_device("d1")
    assert rows(store, "d1") == 0 and rows(store, "d2") == 1
    store.add_device(Device(id="d1", product="env-sensor", name="again", secret_hash="x",
                            state=DeviceState.ACTIVE, tags={}, location=None, created_ms=0))
    assert history(store) == []  # a new device of the same id starts with a clean history


# --- API ------------------------------------------------------------------------------------


def test_the_api_lists_connections_newest_first(api: Api) -> None:
    api.product(ENV_SENSOR)
    auth = api.device("d1")
    t = now_ms()
    store = api.core.store
    store.set_connected("d1", True, ts_ms=t, protocol="mqtt", remote=B)
    store.set_connected("d1", False, ts_ms=t + 5, protocol="mqtt", remote=None)
    for _ in range(3):  # HTTP ingest is no connection: no rows
        assert api.send("d1", auth, b'{"temperature": 20.5}').status_code == 202
    r = api.get("/devices/d1/connections")
    assert r.status_code == 200, r.text
    assert r.json() == {"device": "d1", "connections": [
        {"ts": t + 5, "connected": False, "protocol": "mqtt", "remote": None,
         "ip_version": None},
        {"ts": t, "connected": True, "protocol": "mqtt", "remote": B, "ip_version": 6},
    ]}
    assert [c["ts"] for c in api.get("/devices/d1/connections",
                                      params={"limit": 1}).json()["connections"]] == [t + 5]
    assert api.get("/devices/d1/connections", params={"limit": 0}).status_code == 422
    assert api.get("/devices/d1/connections", params={"limit": 1001}).status_code == 422
    missing = api.get("/devices/nope/connections")
    assert (missing.status_code, missing.json()["code"]) == (404, "device_not_found")
