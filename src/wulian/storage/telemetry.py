"""Telemetry reads shared by both backends, and what both batch writers share.

Writes are each backend's own hot path (raw sqlite3, psycopg); reads are not hot and go
through SQLAlchemy Core, so the SQL and the decoding live once, here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select, text

from wulian.domain.message import EventRecord, Value, WriteBatch
from wulian.ports import AGGREGATES, Aggregate, StoredRejection
from wulian.storage.metadata import SqlMetadata
from wulian.storage.schema import (
    counters,
    devices,
    events,
    latest,
    points,
    products,
    rejections,
    series,
)

# Beyond 2**53 a double cannot hold every integer: such ints also keep their digits in txt.
EXACT_INT = 2**53
MAX_CACHED_SERIES = 1_000_000  # ~200 MB of cache at most; refilled from the index after
Row = tuple[int, int, float | None, str | None]  # a points/latest row: sid, ts, num, txt
SeriesKey = tuple[str, str]  # (device id, property)
STANDARD_COUNTERS = ("messages_accepted", "messages_rejected", "points_stored",
                     "events_stored")
# A counter may be kept in several rows, `name@shard`, so concurrent writers do not queue
# on one row lock per counter; reading adds the rows of a name up.
SHARD_SEP = "@"
TEXT_TYPES = frozenset({"string", "enum"})
NUMERIC_ONLY = frozenset({"avg", "sum", "min", "max"})

# The value of the earliest (latest) point per bucket. SQLite: with exactly one min()/max()
# aggregate, bare columns come from the row that holds it (documented SQLite behaviour).
# PostgreSQL has no such rule; array_agg ordered by ts picks the row instead.
_FIRST_LAST = {
    "sqlite": {"first": "min(ts) AS t, num, txt", "last": "max(ts) AS t, num, txt"},
    "postgresql": {
        "first": "min(ts) AS t, (array_agg(num ORDER BY ts))[1] AS num, "
                 "(array_agg(txt ORDER BY ts))[1] AS txt",
        "last": "max(ts) AS t, (array_agg(num ORDER BY ts DESC))[1] AS num, "
                "(array_agg(txt ORDER BY ts DESC))[1] AS txt",
    },
}
_AGG_SQL = {"avg": "avg(num)", "min": "min(num)", "max": "max(num)", "sum": "sum(num)",
            "count": "count(*)"}
_BUCKETS = """
SELECT bucket, {agg} FROM (
  SELECT ((ts - :origin) / :bucket) * :bucket + :origin AS bucket, ts, num, txt
  FROM points
  WHERE series_id = (SELECT id FROM series WHERE device_id = :device AND property = :prop)
    AND ts >= :since AND ts < :until
) AS p GROUP BY bucket ORDER BY bucket LIMIT :limit
"""


def encode(value: Value) -> tuple[float | None, str | None]:
    """(num, txt) columns for a typed value."""
    # `type() is`, not isinstance: bool is an int subclass, and this runs once per point.
    if type(value) is float:
        return value, None
    if type(value) is int:
        return float(value), (str(value) if not -EXACT_INT <= value <= EXACT_INT else None)
    if type(value) is bool:
        return (1.0 if value else 0.0), None
    # NUL becomes U+FFFD: PostgreSQL text cannot hold it, and both backends should agree.
    txt = str(value)
    return None, (txt.replace("\x00", "\ufffd") if "\x00" in txt else txt)


class SeriesIds:
    """One writer's (device, property) → series id cache, dropped when SERIES_EPOCH moves."""

    def __init__(self) -> None:
        self._ids: dict[SeriesKey, int] = {}
        self._epoch = -1  # the SERIES_EPOCH value the ids were read under; -1: never

    def valid(self, epoch: int) -> dict[SeriesKey, int]:
        """The cached ids if they were filled under `epoch`, else none."""
        return self._ids if epoch == self._epoch else {}

    def keep(self, epoch: int, fresh: Mapping[SeriesKey, int]) -> None:
        """Remember the ids a committed batch resolved (never those of a rolled-back one)."""
        if epoch != self._epoch or len(self._ids) + len(fresh) > MAX_CACHED_SERIES:
            self._ids = {}
            self._epoch = epoch
        self._ids.update(fresh)


def missing_series(points: Sequence[tuple[str, str, int, Value]],
                   known: Mapping[SeriesKey, int]) -> list[SeriesKey]:
    """The batch's series not in `known`, sorted (a stable lock order between writers)."""
    return sorted({(d, p) for d, p, _, _ in points} - known.keys())


def point_rows(points: Sequence[tuple[str, str, int, Value]], known: Mapping[SeriesKey, int],
               fresh: Mapping[SeriesKey, int]) -> tuple[list[Row], list[Row]]:
    """Rows for `points`, and the newest row of each series sorted by id.

    Points of series in neither mapping (their device is not registered) are left out.
    """
    rows: list[Row] = []
    newest: dict[int, Row] = {}
    for device_id, prop, ts, value in points:
        key = (device_id, prop)
        sid = known.get(key) or fresh.get(key)
        if sid is None:
            continue
        num, txt = encode(value)
        row = (sid, ts, num, txt)
        rows.append(row)
        # Strictly newer: of two points with one ts the first is stored, so keep it.
        top = newest.get(sid)
        if top is None or ts > top[1]:
            newest[sid] = row
    return rows, [newest[sid] for sid in sorted(newest)]


def decode(vtype: str | None, num: float | None, txt: str | None) -> Value:
    """The typed value back from (num, txt), using the property's thing-model type."""
    if vtype in TEXT_TYPES or num is None:
        return txt if txt is not None else _plain(num)
    if vtype == "int":
        return int(txt) if txt is not None else int(num)
    if vtype == "bool":
        return num != 0
    if vtype == "float":
        return float(num)
    return _plain(num)  # property no longer in the model: the best guess from the value


def counter_bumps(batch: WriteBatch, points: int, events: int,
                  shard: int | None = None) -> dict[str, int]:
    """The counter increments one stored batch makes (zeros left out, sorted by row name).

    With `shard`, into the rows `name@shard` (see SHARD_SEP).
    """
    bumps: Counter[str] = Counter({
        "messages_accepted": batch.accepted, "messages_rejected": len(batch.rejections),
        "points_stored": points, "events_stored": events})
    bumps.update(f"rejected.{r.code}" for r in batch.rejections)
    bumps.update(batch.counts)
    suffix = "" if shard is None else f"{SHARD_SEP}{shard}"
    # Sorted: writers sharing rows lock them in one order, so they never deadlock.
    return dict(sorted((f"{name}{suffix}", n) for name, n in bumps.items() if n))


def _plain(num: float | None) -> Value:
    if num is None:
        return ""
    return int(num) if num.is_integer() and abs(num) <= EXACT_INT else num


def _aggregate_value(agg: str, vtype: str | None, num: Any, txt: Any) -> Value | None:
    if agg == "count":
        return int(num)
    if num is None and txt is None:
        return None
    if agg == "avg":
        return float(num)
    if agg == "sum":
        return int(num) if vtype in ("int", "bool") else float(num)
    return decode(vtype, num, txt if agg in ("first", "last") else None)


class SqlStore(SqlMetadata):
    """Metadata and telemetry reads over SQLAlchemy; subclasses add the write path."""

    def _types(self, conn: Connection, device_id: str) -> dict[str, str]:
        """Property id → value type for the device's product (empty if unknown)."""
        doc = conn.scalar(select(products.c.doc)
                          .join(devices, devices.c.product == products.c.id)
                          .where(devices.c.id == device_id))
        if not isinstance(doc, Mapping):
            return {}
        return {p["id"]: p["type"] for p in doc.get("properties", ())}

    def latest(self, device_id: str) -> dict[str, tuple[int, Value]]:
        """Property → (ts, value) of the newest point of each of the device's series."""
        stmt = (select(series.c.property, latest.c.ts, latest.c.num, latest.c.txt)
                .join(series, series.c.id == latest.c.series_id)
                .where(series.c.device_id == device_id))
        with self._reading() as conn:
            types = self._types(conn, device_id)
            rows = conn.execute(stmt).all()
        return {prop: (ts, decode(types.get(prop), num, txt)) for prop, ts, num, txt in rows}

    def points(self, device_id: str, prop: str, *, since: int | None, until: int | None,
               limit: int, descending: bool = False) -> list[tuple[int, Value]]:
        """Points with since <= ts < until, oldest first (or newest first), at most `limit`."""
        sid = (select(series.c.id).where(series.c.device_id == device_id,
                                         series.c.property == prop).scalar_subquery())
        stmt = select(points.c.ts, points.c.num, points.c.txt).where(points.c.series_id == sid)
        if since is not None:
            stmt = stmt.where(points.c.ts >= since)
        if until is not None:
            stmt = stmt.where(points.c.ts < until)
        stmt = stmt.order_by(points.c.ts.desc() if descending else points.c.ts)
        stmt = stmt.limit(max(0, limit))
        with self._reading() as conn:
            vtype = self._types(conn, device_id).get(prop)
            rows = conn.execute(stmt).all()
        return [(ts, decode(vtype, num, txt)) for ts, num, txt in rows]

    def buckets(self, device_id: str, prop: str, *, since: int, until: int, bucket_ms: int,
                agg: Aggregate, limit: int) -> list[tuple[int, Value | None]]:
        """Aggregate over [since, until) in buckets of floor(ts/bucket_ms)*bucket_ms."""
        if agg not in AGGREGATES:
            raise ValueError(f"unknown aggregate '{agg}': use one of {', '.join(AGGREGATES)}")
        if bucket_ms <= 0:
            raise ValueError("bucket_ms must be a positive number of milliseconds")
        if agg in ("first", "last"):
            select_list = _FIRST_LAST[self.engine.dialect.name][agg]
        else:
            select_list = f"{_AGG_SQL[agg]} AS num, NULL AS t, NULL AS txt"
        # Shifting ts by a bucket-aligned origin <= since keeps the dividend >= 0, where
        # SQL's truncating integer division equals floor division, on both backends.
        origin = (since // bucket_ms) * bucket_ms
        params = {"origin": origin, "bucket": bucket_ms, "device": device_id, "prop": prop,
                  "since": since, "until": until, "limit": max(0, limit)}
        with self._reading() as conn:
            vtype = self._types(conn, device_id).get(prop)
            if vtype in TEXT_TYPES and agg in NUMERIC_ONLY:
                raise ValueError(f"'{agg}' needs a numeric property; '{prop}' is a {vtype} "
                                 "(use count, first or last)")
            rows = conn.execute(text(_BUCKETS.format(agg=select_list)), params).mappings().all()
        return [(int(r["bucket"]), _aggregate_value(agg, vtype, r["num"], r["txt"]))
                for r in rows]

    def events(self, device_id: str, *, since: int | None, until: int | None,
               limit: int) -> list[EventRecord]:
        """The device's events with since <= ts < until, newest first."""
        stmt = select(events.c.device_id, events.c.event, events.c.level, events.c.ts,
                      events.c.params).where(events.c.device_id == device_id)
        if since is not None:
            stmt = stmt.where(events.c.ts >= since)
        if until is not None:
            stmt = stmt.where(events.c.ts < until)
        stmt = stmt.order_by(events.c.ts.desc(), events.c.id.desc()).limit(max(0, limit))
        with self._reading() as conn:
            rows = conn.execute(stmt).all()
        return [EventRecord(r[0], r[1], r[2], r[3], dict(r[4])) for r in rows]

    def rejections(self, *, device_id: str | None, since: int | None,
                   limit: int) -> list[StoredRejection]:
        """Dead letters received since `since` (of one device, if given), newest first."""
        r = rejections.c
        stmt = select(rejections)
        if device_id is not None:
            stmt = stmt.where(r.device_id == device_id)
        if since is not None:
            stmt = stmt.where(r.received_ms >= since)
        stmt = stmt.order_by(r.received_ms.desc(), r.id.desc()).limit(max(0, limit))
        with self._reading() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [StoredRejection(id=m["id"], received_ms=m["received_ms"],
                                device_id=m["device_id"], protocol=m["protocol"],
                                topic=m["topic"], code=m["code"], message=m["message"],
                                payload=bytes(m["payload"])) for m in rows]

    def counters(self) -> dict[str, int]:
        """messages_accepted, messages_rejected, points_stored, events_stored, rejected.<code>."""
        with self._reading() as conn:
            rows = conn.execute(select(counters.c.name, counters.c.value)).all()
        found: Counter[str] = Counter(dict.fromkeys(STANDARD_COUNTERS, 0))
        for name, value in rows:
            if not name.startswith("_"):  # epochs and other internal markers
                found[name.partition(SHARD_SEP)[0]] += int(value)
        return dict(found)
