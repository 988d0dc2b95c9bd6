"""The storage adapters against real SQLite files and a real PostgreSQL, same tests for both."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from wulian.domain.device import Device, DeviceState, Location
from wulian.domain.message import EventRecord, RejectionRecord, SeenRecord, WriteBatch
from wulian.domain.thingmodel import parse_thing_model
from wulian.ports import Conflict, NotFound, StorageUnavailable, Store
from wulian.storage import open_store
from wulian.storage.metadata import ip_version
from wulian.storage.schema import metadata
from wulian.storage.sqlite import SqliteStore

BASE = 1_699_999_980_000  # a whole minute, so 60 s buckets start exactly here
MINUTE = 60_000
METER = {
    "id": "meter", "name": "Meter",
    "properties": [
        {"id": "temperature", "type": "float"},
        {"id": "count", "type": "int"},
        {"id": "on", "type": "bool"},
        {"id": "label", "type": "string"},
        {"id": "status", "type": "enum", "values": ["ok", "fault"]},
    ],
    "events": [{"id": "fault", "level": "major", "params": [{"id": "code", "type": "int"}]}],
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    s = open_store(url)
    yield s
    s.close()


@pytest.fixture
def meter(store: Store) -> Store:
    """A store with the meter product and devices m1, m2 (m2 disabled, tagged)."""
    store.put_product(parse_thing_model(METER))
    store.add_device(device("m1", tags={"site": "north", "floor": "1"}))
    store.add_device(device("m2", name="Boiler Two", state=DeviceState.DISABLED,
                            tags={"site": "south"}))
    return store


def device(device_id: str, *, product: str = "meter", name: str | None = None,
           state: DeviceState = DeviceState.ACTIVE, tags: dict[str, str] | None = None,
           location: Location | None = None) -> Device:
    return Device(id=device_id, product=product, name=name or device_id,
                  secret_hash="scrypt$x", state=state, tags=tags or {}, location=location,
                  created_ms=BASE)


def batch(points: list[tuple[str, str, int, object]], *, accepted: int = 1,
          **more: object) -> WriteBatch:
    return WriteBatch(points=points, accepted=accepted, **more)  # type: ignore[arg-type]


# --- migrations and opening ------------------------------------------------------------


def test_migrates_an_empty_database_and_reopens_idempotently(url: str) -> None:
    first = open_store(url)
    try:
        tables = set(inspect(first.engine).get_table_names())  # type: ignore[attr-defined]
        assert set(metadata.tables) <= tables and "alembic_version" in tables
        with first.engine.connect() as conn:  # type: ignore[attr-defined]
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert context.get_current_revision() == "0006"
            # The revision and schema.py describe the same tables, column for column.
            assert compare_metadata(context, metadata) == []
        first.put_product(parse_thing_model(METER))
    finally:
        first.close()
    again = open_store(url)
    try:
        assert [m.id for m in again.list_products()] == ["meter"]
    finally:
        again.close()


def test_two_processes_opening_a_fresh_database_both_succeed(url: str) -> None:
    code = "import sys; from wulian.storage import open_store; open_store(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE)
             for _ in range(2)]
    errors = [p.communicate(timeout=60)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors


@pytest.mark.parametrize("bad", ["mysql://u:secret@h/db", "wulian.db", "sqlite://",
                                 "sqlite:///:memory:"])
def test_unsupported_urls_are_refused_without_echoing_secrets(bad: str) -> None:
    with pytest.raises(ValueError) as err:
        open_store(bad)
    assert "secret" not in str(err.value)


def test_unreachable_databases_are_unavailable(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StorageUnavailable):
        open_store(f"sqlite:///{tmp_path / 'dir.db'}")
    with pytest.raises(StorageUnavailable) as err:  # nothing listens on port 1
        open_store("postgresql://u:secret@127.0.0.1:1/db")
    assert "secret" not in str(err.value)


@pytest.mark.parametrize(("remote", "version"), [
    ("1.2.3.4:5", 4), ("[::1]:5", 6), ("[2001:db8::7]:5683", 6), ("10.0.0.1", 4),
    ("fe80::1", 6), ("[::ffff:192.0.2.1]:80", 4), ("localhost:80", None), (None, None),
    ("", None),
])
def test_ip_version_from_remote(remote: str | None, version: int | None) -> None:
    assert ip_version(remote) == version


# --- products and devices --------------------------------------------------------------


def test_products_crud(store: Store) -> None:
    model = parse_thing_model(METER)
    assert store.put_product(model) is True
    renamed = parse_thing_model({**METER, "name": "Smart meter"})
    assert store.put_product(renamed) is False
    assert store.get_product("meter") == renamed
    assert store.get_product("nope") is None
    store.put_product(parse_thing_model({"id": "a-first", "name": "A"}))
    assert [m.id for m in store.list_products()] == ["a-first", "meter"]
    store.add_device(device("d1"))
    with pytest.raises(Conflict):
        store.delete_product("meter")
    with pytest.raises(NotFound):
        store.delete_product("nope")
    store.delete_product("a-first")
    assert store.get_product("a-first") is None


def test_devices_crud_and_filters(meter: Store) -> None:
    with pytest.raises(Conflict):
        meter.add_device(device("m1"))
    with pytest.raises(NotFound):
        meter.add_device(device("x1", product="nope"))
    m1 = meter.get_device("m1")
    assert m1 == device("m1", tags={"site": "north", "floor": "1"})
    assert meter.get_device("nope") is None
    meter.add_device(device("a0", location=Location(31.2, 121.5)))
    assert meter.get_device("a0").location == Location(31.2, 121.5)  # type: ignore[union-attr]
    assert meter.count_devices() == 3

    def ids(**filters: object) -> list[str]:
        return [d.id for d in meter.list_devices(**filters)]  # type: ignore[arg-type]

    assert ids() == ["a0", "m1", "m2"]
    assert ids(product="meter", limit=2) == ["a0", "m1"]
    assert ids(limit=2, offset=2) == ["m2"]
    assert ids(product="other") == []
    assert ids(state=DeviceState.DISABLED) == ["m2"]
    assert ids(tag=("site", "south")) == ["m2"]
    assert ids(tag=("floor", "1")) == ["m1"]
    assert ids(tag=("site", "nowhere")) == []
    assert ids(search="BOILER") == ["m2"]  # the name, case-insensitive
    assert ids(search="m") == ["m1", "m2"]
    assert ids(search="%") == []  # LIKE wildcards are matched literally

    changed = meter.update_device("m1", state=DeviceState.DISABLED, name="First",
                                  tags={"site": "east"}, location=Location(1.0, 2.0))
    assert (changed.state, changed.name, changed.tags, changed.location) == (
        DeviceState.DISABLED, "First", {"site": "east"}, Location(1.0, 2.0))
    assert meter.get_device("m1") == changed
    assert meter.update_device("m1") == changed  # nothing asked, nothing changed
    assert meter.set_secret_hash("m1", "scrypt$new").secret_hash == "scrypt$new"
    with pytest.raises(NotFound):
        meter.update_device("nope", name="x")
    with pytest.raises(NotFound):
        meter.set_secret_hash("nope", "x")


# --- telemetry -------------------------------------------------------------------------

TEMPS = [(0, 10.0), (10_000, 20.0), (50_000, 30.0), (60_000, 5.0), (119_999, 7.0),
         (180_000, 1.0)]


@pytest.fixture
def temps(meter: Store) -> Store:
    """m1.temperature: 10, 20, 30 in the first minute; 5, 7 in the second; 1 in the fourth."""
    # Written in two batches, the later one older, so `latest` must compare timestamps.
    meter.write(batch([("m1", "temperature", BASE + dt, v) for dt, v in TEMPS[3:]]))
    meter.write(batch([("m1", "temperature", BASE + dt, v) for dt, v in TEMPS[:3]]))
    return meter


def test_points_ranges_limits_and_order(temps: Store) -> None:
    everything = temps.points("m1", "temperature", since=None, until=None, limit=100)
    assert everything == [(BASE + dt, v) for dt, v in TEMPS]
    window = temps.points("m1", "temperature", since=BASE + 10_000, until=BASE + 119_999,
                          limit=100)  # since inclusive, until exclusive
    assert window == [(BASE + 10_000, 20.0), (BASE + 50_000, 30.0), (BASE + 60_000, 5.0)]
    assert temps.points("m1", "temperature", since=None, until=None, limit=2,
                        descending=True) == [(BASE + 180_000, 1.0), (BASE + 119_999, 7.0)]
    assert temps.points("m1", "temperature", since=None, until=None, limit=2) == [
        (BASE, 10.0), (BASE + 10_000, 20.0)]
    assert temps.points("m1", "count", since=None, until=None, limit=10) == []
    assert temps.points("nope", "temperature", since=None, until=None, limit=10) == []
    assert temps.latest("m1") == {"temperature": (BASE + 180_000, 1.0)}
    assert temps.latest("m2") == {}


AGGREGATES_BY_HAND = {
    "avg": [20.0, 6.0, 1.0], "min": [10.0, 5.0, 1.0], "max": [30.0, 7.0, 1.0],
    "sum": [60.0, 12.0, 1.0], "count": [3, 2, 1], "first": [10.0, 5.0, 1.0],
    "last": [30.0, 7.0, 1.0],
}


def test_every_aggregate_by_hand(temps: Store) -> None:
    for agg, expected in AGGREGATES_BY_HAND.items():
        got = temps.buckets("m1", "temperature", since=BASE, until=BASE + 4 * MINUTE,
                            bucket_ms=MINUTE, agg=agg, limit=100)  # type: ignore[arg-type]
        starts = [BASE, BASE + MINUTE, BASE + 3 * MINUTE]
        assert got == list(zip(starts, expected, strict=True)), agg
        assert [type(v) for _, v in got] == [type(e) for e in expected], agg


def test_buckets_align_to_the_epoch_and_respect_range_and_limit(temps: Store) -> None:
    # since mid-bucket: the first bucket still starts at the minute, holding 20 and 30 only.
    got = temps.buckets("m1", "temperature", since=BASE + 10_000, until=BASE + 119_999,
                        bucket_ms=MINUTE, agg="sum", limit=100)
    assert got == [(BASE, 50.0), (BASE + MINUTE, 5.0)]
    assert temps.buckets("m1", "temperature", since=BASE, until=BASE + 4 * MINUTE,
                         bucket_ms=MINUTE, agg="count", limit=1) == [(BASE, 3)]
    hour = temps.buckets("m1", "temperature", since=BASE - 3_600_000, until=BASE + 3_600_000,
                         bucket_ms=3_600_000, agg="max", limit=10)
    assert hour == [((BASE // 3_600_000) * 3_600_000, 30.0)]
    with pytest.raises(ValueError):
        temps.buckets("m1", "temperature", since=BASE, until=BASE + 1, bucket_ms=0,
                      agg="avg", limit=1)
    with pytest.raises(ValueError):
        temps.buckets("m1", "temperature", since=BASE, until=BASE + 1, bucket_ms=1,
                      agg="median", limit=1)  # type: ignore[arg-type]


def test_typed_round_trip_and_typed_aggregates(meter: Store) -> None:
    big = 2**62 + 1  # not representable in a double
    meter.write(batch([
        ("m1", "count", BASE, 3), ("m1", "on", BASE, True), ("m1", "label", BASE, "hello 你好"),
        ("m1", "status", BASE, "ok"), ("m1", "temperature", BASE, 21.5),
        ("m1", "count", BASE + 1, big), ("m1", "on", BASE + 1, False),
        ("m1", "label", BASE + 1, ""), ("m1", "status", BASE + 1, "fault"),
        ("m1", "count", BASE + 2, -4), ("m1", "on", BASE + 2, True),
    ]))
    latest = meter.latest("m1")
    assert latest == {"count": (BASE + 2, -4), "on": (BASE + 2, True), "label": (BASE + 1, ""),
                      "status": (BASE + 1, "fault"), "temperature": (BASE, 21.5)}
    assert {k: type(v) for k, (_, v) in latest.items()} == {
        "count": int, "on": bool, "label": str, "status": str, "temperature": float}
    counts = meter.points("m1", "count", since=None, until=None, limit=10)
    assert counts == [(BASE, 3), (BASE + 1, big), (BASE + 2, -4)]
    assert all(type(v) is int for _, v in counts)
    ons = meter.points("m1", "on", since=None, until=None, limit=10)
    assert ons == [(BASE, True), (BASE + 1, False), (BASE + 2, True)]
    assert all(type(v) is bool for _, v in ons)

    def one(prop: str, agg: str) -> object:
        rows = meter.buckets("m1", prop, since=BASE, until=BASE + 3, bucket_ms=MINUTE,
                             agg=agg, limit=5)  # type: ignore[arg-type]
        assert len(rows) == 1
        return rows[0][1]

    assert one("on", "avg") == pytest.approx(2 / 3)
    assert one("on", "sum") == 2 and type(one("on", "sum")) is int
    assert one("on", "min") is False and one("on", "max") is True
    assert one("count", "min") == -4 and type(one("count", "min")) is int
    assert one("status", "first") == "ok" and one("status", "last") == "fault"
    assert one("label", "count") == 2
    for agg in ("avg", "sum", "min", "max"):
        with pytest.raises(ValueError, match="numeric"):
            one("status", agg)


def test_text_with_nul_is_stored(meter: Store) -> None:
    # PostgreSQL text cannot hold NUL: U+FFFD rather than a failed batch (values: on both).
    meter.write(batch([("m1", "label", BASE, "a\x00b")],
                      events=[EventRecord("m1", "fault", "major", BASE, {"k\x00": "v\x00"})],
                      rejections=[RejectionRecord(BASE, "m\x00", "mqtt", "t\x00", "bad_shape",
                                                  "m\x00", b"\x00")]))
    assert meter.latest("m1")["label"][1] == "a\ufffdb"
    params = meter.events("m1", since=None, until=None, limit=1)[0].params
    assert params in ({"k\x00": "v\x00"}, {"k\ufffd": "v\ufffd"})
    assert meter.rejections(device_id=None, since=None, limit=1)[0].payload == b"\x00"


def test_duplicates_are_stored_once_and_counted_once(meter: Store) -> None:
    first = batch([("m1", "temperature", BASE, 1.0), ("m1", "temperature", BASE, 2.0),
                   ("m1", "temperature", BASE + 1, 3.0)])
    assert meter.write(first) == 2  # same (device, property, ts) twice in one batch
    assert meter.write(batch([("m1", "temperature", BASE + 1, 9.0),
                              ("m1", "temperature", BASE + 2, 4.0)])) == 1
    assert meter.points("m1", "temperature", since=None, until=None, limit=10) == [
        (BASE, 1.0), (BASE + 1, 3.0), (BASE + 2, 4.0)]
    assert meter.latest("m1")["temperature"] == (BASE + 2, 4.0)
    assert meter.counters()["points_stored"] == 3


def test_events_rejections_counters_round_trip(meter: Store) -> None:
    assert meter.counters() == {"messages_accepted": 0, "messages_rejected": 0,
                                "points_stored": 0, "events_stored": 0}
    meter.write(batch([], accepted=3, events=[
        EventRecord("m1", "fault", "major", BASE + 5, {"code": 7, "note": "温度过高"}),
        EventRecord("m1", "fault", "major", BASE + 9, {"code": 8}),
        EventRecord("m2", "fault", "major", BASE + 6, {}),
    ]))
    meter.write(batch([("m1", "count", BASE, 1)], accepted=1, rejections=[
        RejectionRecord(BASE + 1, "m1", "mqtt", "devices/m1/telemetry", "wrong_type",
                        "temperature must be a number", b'{"temperature":"hot"}'),
        RejectionRecord(BASE + 2, None, "http", "/api/v1/ingest", "unknown_device",
                        "no such device", b"\x00\xff binary"),
        RejectionRecord(BASE + 3, "m1", "coap", "t", "wrong_type", "again", b""),
    ]))
    assert meter.events("m1", since=None, until=None, limit=10) == [
        EventRecord("m1", "fault", "major", BASE + 9, {"code": 8}),
        EventRecord("m1", "fault", "major", BASE + 5, {"code": 7, "note": "温度过高"})]
    assert meter.events("m1", since=BASE + 6, until=None, limit=10)[0].ts == BASE + 9
    assert meter.events("m1", since=None, until=BASE + 9, limit=10)[0].ts == BASE + 5
    assert len(meter.events("m1", since=None, until=None, limit=1)) == 1
    every = meter.rejections(device_id=None, since=None, limit=10)
    assert [(r.received_ms, r.device_id, r.code) for r in every] == [
        (BASE + 3, "m1", "wrong_type"), (BASE + 2, None, "unknown_device"),
        (BASE + 1, "m1", "wrong_type")]
    assert every[1].payload == b"\x00\xff binary" and every[1].protocol == "http"
    assert every[2].topic == "devices/m1/telemetry"
    assert every[2].message == "temperature must be a number"
    assert [r.received_ms for r in meter.rejections(device_id="m1", since=BASE + 2,
                                                    limit=10)] == [BASE + 3]
    assert len(meter.rejections(device_id=None, since=None, limit=2)) == 2
    assert meter.counters() == {
        "messages_accepted": 4, "messages_rejected": 3, "points_stored": 1,
        "events_stored": 3, "rejected.unknown_device": 1, "rejected.wrong_type": 2}


def test_device_status_and_online_count(meter: Store) -> None:
    assert meter.device_status("nope") is None
    never = meter.device_status("m1")
    assert never is not None and not never.connected and never.last_seen_ms is None
    assert meter.online_count(0) == 0
    meter.set_connected("m1", True, ts_ms=BASE, protocol="mqtt", remote="[2001:db8::1]:51000")
    st = meter.device_status("m1")
    assert st is not None
    assert (st.connected, st.last_seen_ms, st.protocol, st.ip_version, st.changed_ms) == (
        True, BASE, "mqtt", 6, BASE)
    meter.write(batch([], seen={"m2": SeenRecord(BASE + 10, "http", "10.1.2.3:8080")}))
    st2 = meter.device_status("m2")
    assert st2 is not None
    assert (st2.connected, st2.last_seen_ms, st2.remote, st2.ip_version) == (
        False, BASE + 10, "10.1.2.3:8080", 4)
    meter.write(batch([], seen={"m2": SeenRecord(BASE + 5, "coap", "[::1]:5683")}))
    assert meter.device_status("m2").protocol == "http"  # type: ignore[union-attr]  # older
    assert meter.online_count(BASE + 10) == 2  # m1 connected, m2 seen at the limit
    assert meter.online_count(BASE + 11) == 1
    # A late disconnect of an old session must not undo a newer connect.
    meter.set_connected("m1", False, ts_ms=BASE - 1, protocol="mqtt", remote=None)
    assert meter.device_status("m1").connected is True  # type: ignore[union-attr]
    meter.set_connected("m1", False, ts_ms=BASE + 20, protocol="mqtt", remote=None)
    st = meter.device_status("m1")
    assert st is not None and not st.connected and st.changed_ms == BASE + 20
    assert st.last_seen_ms == BASE + 20
    assert meter.online_count(BASE + 11) == 1  # m1 still seen at BASE + 20
    assert meter.online_count(BASE + 21) == 0



def test_messages_without_an_address_keep_the_one_the_connect_gave(meter: Store) -> None:
    meter.set_connected("m1", True, ts_ms=BASE, protocol="mqtt", remote="[2001:db8::1]:51000")
    meter.write(batch([], seen={"m1": SeenRecord(BASE + 5, "mqtt", None)}))
    st = meter.device_status("m1")
    assert st is not None and st.last_seen_ms == BASE + 5
    assert (st.remote, st.ip_version) == ("[2001:db8::1]:51000", 6)
    # Another protocol without an address: the MQTT address no longer describes it.
    meter.write(batch([], seen={"m1": SeenRecord(BASE + 6, "http", None)}))
    st = meter.device_status("m1")
    assert st is not None and (st.protocol, st.remote, st.ip_version) == ("http", None, None)


def test_registry_epoch_moves_with_every_registry_change(meter: Store) -> None:
    seen = [meter.registry_epoch()]

    def moved() -> bool:
        seen.append(meter.registry_epoch())
        return seen[-1] != seen[-2]

    meter.write(batch([("m1", "temperature", BASE, 1.0)]))
    assert not moved()  # telemetry is not a registry change
    meter.add_device(device("m9"))
    assert moved()
    meter.update_device("m9", state=DeviceState.DISABLED)
    assert moved()
    meter.set_secret_hash("m9", "scrypt$y")
    assert moved()
    meter.delete_device("m9")
    assert moved()
    meter.put_product(meter.get_product("meter"))  # type: ignore[arg-type]
    assert moved()

def test_delete_device_cascades_but_keeps_dead_letters(meter: Store, url: str) -> None:
    meter.write(batch([("m1", "temperature", BASE, 1.0), ("m2", "temperature", BASE, 2.0)],
                      events=[EventRecord("m1", "fault", "major", BASE, {})],
                      rejections=[RejectionRecord(BASE, "m1", "mqtt", "t", "wrong_type", "m",
                                                  b"x")],
                      seen={"m1": SeenRecord(BASE, "mqtt", None)}))
    other = open_store(url)  # a second process's view, with its own series-id cache
    try:
        other.write(batch([("m1", "count", BASE, 1)]))
        assert meter.delete_device("m1") is True
        assert meter.delete_device("m1") is False
        assert meter.get_device("m1") is None and meter.device_status("m1") is None
        assert meter.events("m1", since=None, until=None, limit=10) == []
        assert len(meter.rejections(device_id="m1", since=None, limit=10)) == 1
        assert meter.latest("m2") == {"temperature": (BASE, 2.0)}
        # Data still in flight for the deleted device (directory caches lag) is dropped,
        # also by the store that had its series ids cached.
        late = batch([("m1", "count", BASE + 1, 5), ("m1", "label", BASE, "x")],
                     events=[EventRecord("m1", "fault", "major", BASE, {})],
                     seen={"m1": SeenRecord(BASE + 1, "mqtt", None)})
        assert meter.write(late) == 0 and other.write(late) == 0
        assert meter.counters()["events_stored"] == 1
        assert meter.online_count(0) == 0
        # Same id registered again: no old data, and the other store's cached series ids
        # for m1 must not swallow its new points.
        meter.add_device(device("m1"))
        assert meter.latest("m1") == {}
        assert meter.points("m1", "temperature", since=None, until=None, limit=10) == []
        assert other.write(batch([("m1", "count", BASE + 1, 2)])) == 1
        assert meter.latest("m1") == {"count": (BASE + 1, 2)}
    finally:
        other.close()


# --- failure and concurrency -----------------------------------------------------------


@pytest.mark.postgres
def test_postgres_connection_killed_then_recovers(pg_url: str, pg_server: str) -> None:
    store = open_store(pg_url)
    try:
        store.put_product(parse_thing_model(METER))
        store.add_device(device("m1"))
        assert store.write(batch([("m1", "count", BASE, 1)])) == 1
        with psycopg.connect(pg_server, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()",
                          (pg_url.rsplit("/", 1)[1],))
        with pytest.raises(StorageUnavailable):
            store.write(batch([("m1", "count", BASE + 1, 2)]))
        assert store.write(batch([("m1", "count", BASE + 2, 3)])) == 1
        assert store.points("m1", "count", since=None, until=None, limit=10) == [
            (BASE, 1), (BASE + 2, 3)]
        assert store.counters()["points_stored"] == 2
    finally:
        store.close()


def test_sqlite_locked_write_is_unavailable_and_leaves_nothing(sqlite_url: str) -> None:
    store = SqliteStore(sqlite_url, busy_timeout_ms=100)
    try:
        store.put_product(parse_thing_model(METER))
        store.add_device(device("m1"))
        blocker = SqliteStore(sqlite_url)
        try:
            blocker._conn.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            with pytest.raises(StorageUnavailable):
                store.write(batch([("m1", "count", BASE, 1)], events=[
                    EventRecord("m1", "fault", "major", BASE, {})]))
            blocker._conn.execute("ROLLBACK")
        finally:
            blocker.close()
        assert store.points("m1", "count", since=None, until=None, limit=10) == []
        assert store.events("m1", since=None, until=None, limit=10) == []
        assert store.counters()["messages_accepted"] == 0
        assert store.write(batch([("m1", "count", BASE, 1)])) == 1
    finally:
        store.close()


def test_concurrent_writers_lose_nothing(meter: Store, url: str) -> None:
    second = open_store(url)
    per_writer, devices = 40, ["m1", "m2"]
    errors: list[BaseException] = []

    def run(s: Store, offset: int) -> None:
        try:
            for i in range(per_writer):
                ts = BASE + offset + 2 * i
                points = [(d, p, ts, v) for d in devices
                          for p, v in (("count", 1), ("on", True))]
                points += [(d, "temperature", BASE, 0.5) for d in devices]  # duplicates
                s.write(batch(points, accepted=2))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=run, args=(s, off))
                   for s, off in ((meter, 0), (second, 1))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        second.close()
    assert not errors
    for d in devices:
        assert len(meter.points(d, "count", since=None, until=None, limit=1000)) == 80
        assert len(meter.points(d, "temperature", since=None, until=None, limit=10)) == 1
    counters = meter.counters()
    assert counters["messages_accepted"] == 2 * 2 * per_writer
    assert counters["points_stored"] == 2 * 2 * 2 * per_writer + 2


def test_a_sqlite_write_failing_for_any_reason_releases_the_file(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    first = open_store(sqlite_url)
    first.put_product(parse_thing_model({"id": "meter", "properties": [
        {"id": "temperature", "type": "float"}]}))
    first.add_device(device("m1"))
    other = SqliteStore(sqlite_url, busy_timeout_ms=300)  # another process's view
    try:
        def boom(*_: object) -> dict[str, int]:
            raise ValueError("not a database error")

        monkeypatch.setattr("wulian.storage.sqlite.counter_bumps", boom)
        with pytest.raises(ValueError):
            first.write(batch([("m1", "temperature", BASE, 1.0)]))
        monkeypatch.undo()
        # Had the failed transaction stayed open, this would time out as "database is locked".
        assert other.write(batch([("m1", "temperature", BASE + 1, 2.0)])) == 1
        assert first.write(batch([("m1", "temperature", BASE, 1.0)])) == 1
    finally:
        other.close()
        first.close()
