"""The stores under refusal and concurrency, against real SQLite files and PostgreSQL: which
errors mean "unavailable", deletes racing batch writes, counters shared by writers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from tests.fixtures.refuse_rows import refuse_rows
from wulian.domain.device import Device
from wulian.domain.message import EventRecord, SeenRecord, WriteBatch
from wulian.domain.thingmodel import parse_thing_model
from wulian.ports import StorageUnavailable, Store
from wulian.storage import open_store
from wulian.storage.postgres import COUNTER_SHARDS

pytestmark = pytest.mark.timeout(120)
BASE = 1_699_999_980_000
METER = {"id": "meter", "name": "Meter", "properties": [
    {"id": "temperature", "type": "float"}, {"id": "count", "type": "int"}],
    "events": [{"id": "fault", "level": "major"}]}
# Rows whose device (or series) is gone: what a delete racing a batch write must not leave.
ORPHANS = {
    "series": "SELECT count(*) FROM series s "
              "WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = s.device_id)",
    "points": "SELECT count(*) FROM points p "
              "WHERE NOT EXISTS (SELECT 1 FROM series s WHERE s.id = p.series_id)",
    "latest": "SELECT count(*) FROM latest l "
              "WHERE NOT EXISTS (SELECT 1 FROM series s WHERE s.id = l.series_id)",
    "events": "SELECT count(*) FROM events e "
              "WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = e.device_id)",
    "device_status": "SELECT count(*) FROM device_status st "
                     "WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = st.device_id)",
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture
def meter(url: str) -> Iterator[Store]:
    """A store with the meter product and device m1."""
    store = open_store(url)
    store.put_product(parse_thing_model(METER))
    store.add_device(device("m1"))
    yield store
    store.close()


def device(device_id: str) -> Device:
    return Device(id=device_id, product="meter", name=device_id, secret_hash="scrypt$x",
                  created_ms=BASE)


def batch(points: list[tuple[str, str, int, Any]], **more: Any) -> WriteBatch:
    return WriteBatch(points=points, accepted=1, **more)


def sql(store: Store, query: str) -> list[Any]:
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        return list(conn.execute(text(query)).all())


# --- which errors mean "unavailable" ----------------------------------------------------


@pytest.mark.parametrize("refusal", ["a refused row", "a ts beyond int8"])
def test_a_batch_the_database_refuses_is_its_own_error_not_an_outage(
        meter: Store, url: str, refusal: str) -> None:
    if refusal == "a refused row":
        refuse_rows(url, "points", "NEW.num = 66.5")
        bad = batch([("m1", "temperature", BASE, 66.5)],
                    events=[EventRecord("m1", "fault", "major", BASE, {})])
    else:
        bad = batch([("m1", "count", 2**63, 1)])
    with pytest.raises(Exception) as err:
        meter.write(bad)
    # Retried as an outage, it would fail the same way forever.
    assert not isinstance(err.value, StorageUnavailable), repr(err.value)
    assert meter.events("m1", since=None, until=None, limit=10) == []
    assert meter.counters()["messages_accepted"] == 0  # nothing of it stayed
    assert meter.write(batch([("m1", "temperature", BASE, 1.0)])) == 1  # and the store goes on
    assert meter.latest("m1") == {"temperature": (BASE, 1.0)}


# --- deletes racing batch writes ----------------------------------------------------------


def test_deleting_devices_while_batches_are_written_leaves_no_orphans(url: str) -> None:
    admin = open_store(url)
    writers = [open_store(url) for _ in range(2)]  # other processes' stores, say
    ids = [f"r{n:02}" for n in range(16)]
    errors: list[BaseException] = []
    written = [0, 0]
    stop = threading.Event()

    def write(store: Store, w: int) -> None:
        try:
            for n in range(1, 5000):  # bounded, whatever happens
                if stop.is_set():
                    return
                ts = BASE + n
                # A known series (cached ids) and a new one (created now) per device.
                points = [(d, p, ts, float(n)) for d in ids
                          for p in ("temperature", f"x{w}_{n}")]
                store.write(batch(points,
                                  events=[EventRecord(d, "fault", "major", ts, {}) for d in ids],
                                  seen={d: SeenRecord(ts, "mqtt", None) for d in ids}))
                written[w] += 1
                stop.wait(0.002)  # SQLite's busy wait is not fair: leave the deleter a turn
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    try:
        admin.put_product(parse_thing_model(METER))
        for d in ids:
            admin.add_device(device(d))
        threads = [threading.Thread(target=write, args=(s, w)) for w, s in enumerate(writers)]
        for th in threads:
            th.start()
        for d in ids:
            while sum(written) < 2 and not errors:  # deletes meet writes in full flow
                stop.wait(0.01)
            assert admin.delete_device(d)
            stop.wait(0.02)
        stop.set()
        for th in threads:
            th.join(60)
        assert not errors, errors
        assert sum(written) >= 10
        orphans = {table: sql(admin, query)[0][0] for table, query in ORPHANS.items()}
        assert orphans == dict.fromkeys(ORPHANS, 0)
    finally:
        stop.set()
        for s in (*writers, admin):
            s.close()


# --- counters -----------------------------------------------------------------------------


def test_counters_add_up_every_row_of_a_name(meter: Store, url: str) -> None:
    meter.write(batch([("m1", "count", BASE, 1)]))
    # another writer's shard: never this store's own (on PostgreSQL it follows the pid)
    other = (getattr(meter, "_shard", 0) + 1) % COUNTER_SHARDS
    with meter.engine.begin() as conn:  # type: ignore[attr-defined]
        # As other writers (another shard) and a plain single row would have left them.
        conn.execute(text("INSERT INTO counters (name, value) VALUES "
                          f"('messages_accepted@{other}', 2), "
                          f"('rejected.wrong_type@{other}', 3), "
                          f"('rejected.wrong_type', 4), ('_some_epoch@{other}', 9)"))
    counters = meter.counters()
    assert counters["messages_accepted"] == 3 and counters["rejected.wrong_type"] == 7
    assert not [name for name in counters if "@" in name or name.startswith("_")]


@pytest.mark.postgres
def test_postgres_writers_do_not_queue_on_each_others_counter_rows(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = open_store(pg_url), open_store(pg_url)  # two ingest workers
    try:
        first.put_product(parse_thing_model(METER))
        for d in ("m1", "m2", "gone"):
            first.add_device(device(d))
        first.write(batch([("m1", "count", BASE, 1)]))  # each knows its series already
        second.write(batch([("m2", "count", BASE, 1)]))
        first.delete_device("gone")  # bumps the series epoch

        inside, release = threading.Event(), threading.Event()
        real = first._write  # type: ignore[attr-defined]

        def slow_commit(*args: Any) -> Any:
            result = real(*args)
            inside.set()  # its transaction holds its row locks until released
            release.wait(10)
            return result

        monkeypatch.setattr(first, "_write", slow_commit)
        held = threading.Thread(target=first.write, args=(batch([("m1", "count", BASE + 1, 2)]),))
        held.start()
        try:
            assert inside.wait(10)
            other = threading.Thread(target=second.write,
                                     args=(batch([("m2", "count", BASE + 1, 2)]),))
            other.start()
            other.join(3)
            waited = other.is_alive()
        finally:
            release.set()
            held.join(10)
        other.join(10)
        assert not waited, "the second writer waited for the first one's commit"
        counters = first.counters()
        assert counters["messages_accepted"] == 4 and counters["points_stored"] == 4
        names = [row[0] for row in sql(first, "SELECT name FROM counters")]
        assert len({n for n in names if n.startswith("messages_accepted@")}) == 2
        assert {n for n in names if n.startswith("_")} >= {"_series_epoch", "_registry_epoch"}
        assert not [n for n in names if n.startswith("_") and "@" in n]
    finally:
        first.close()
        second.close()
