"""SQLite store: the embedded default. Writes go through a raw sqlite3 connection."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import ConnectionPoolEntry

from wulian.domain.message import WriteBatch
from wulian.ports import StorageUnavailable
from wulian.storage.metadata import SERIES_EPOCH, ip_version
from wulian.storage.migrations import upgrade
from wulian.storage.sqlbase import UNAVAILABLE
from wulian.storage.telemetry import (
    SeriesIds,
    SeriesKey,
    SqlStore,
    counter_bumps,
    missing_series,
    point_rows,
)

BUSY_TIMEOUT_MS = 10_000  # several processes (workers, CLI, API) may write the same file
WAL_CHECKPOINT_PAGES = 16_384

_INSERT_POINT = "INSERT OR IGNORE INTO points (series_id, ts, num, txt) VALUES (?, ?, ?, ?)"
_UPSERT_LATEST = (
    "INSERT INTO latest (series_id, ts, num, txt) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (series_id) DO UPDATE SET ts = excluded.ts, num = excluded.num, "
    "txt = excluded.txt WHERE excluded.ts > latest.ts")
# Series, events and status are written only for registered devices: data racing a
# delete_device (sent before the directory cache noticed) must not outlive the device.
_KNOWN = "WHERE EXISTS (SELECT 1 FROM devices WHERE id = ?)"
_NEW_SERIES = f"INSERT OR IGNORE INTO series (device_id, property) SELECT ?, ? {_KNOWN}"
_INSERT_EVENT = ("INSERT OR IGNORE INTO events (device_id, event, level, ts, params) "
                 f"SELECT ?, ?, ?, ?, ? {_KNOWN}")
_INSERT_REJECTION = (
    "INSERT INTO rejections (received_ms, device_id, protocol, topic, code, message, payload) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)")
_UPSERT_SEEN = (
    "INSERT INTO device_status (device_id, connected, last_seen_ms, protocol, remote, "
    f"ip_version) SELECT ?, 0, ?, ?, ?, ? {_KNOWN} ON CONFLICT (device_id) DO UPDATE SET "
    "last_seen_ms = excluded.last_seen_ms, protocol = excluded.protocol, "
    # MQTT messages do not carry the address (the connect notice did): keep the one known
    # for the same protocol instead of blanking it on every message.
    "remote = CASE WHEN excluded.remote IS NOT NULL THEN excluded.remote "
    "WHEN excluded.protocol = device_status.protocol THEN device_status.remote END, "
    "ip_version = CASE WHEN excluded.remote IS NOT NULL THEN excluded.ip_version "
    "WHEN excluded.protocol = device_status.protocol THEN device_status.ip_version END "
    "WHERE device_status.last_seen_ms IS NULL "
    "OR excluded.last_seen_ms >= device_status.last_seen_ms")
_BUMP = ("INSERT INTO counters (name, value) VALUES (?, ?) "
         "ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value")


def _pragmas(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    # FULL: the WAL is fsynced at every commit. A commit is what lets the platform acknowledge
    # a message (PUBACK, HTTP 202), so it must survive a power cut, not only a crash; with
    # batches of tens of milliseconds that is a few fsyncs a second.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    # A batch dirties one points leaf per series it touches; checkpointing every 4 MB (the
    # default) copied them back after almost every commit. 64 MB measured +25 % points/s;
    # journal_size_limit trims the WAL file back after a checkpoint.
    conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
    conn.execute(f"PRAGMA journal_size_limit = {WAL_CHECKPOINT_PAGES * 4096}")


def sqlite_engine(path: Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Engine:
    """A SQLAlchemy engine whose transactions are real SQLite transactions.

    pysqlite's own transaction handling does not BEGIN before every statement; we turn it
    off and issue BEGIN ourselves (the SQLAlchemy-documented recipe), IMMEDIATE for
    writers so they queue on the lock instead of failing when they upgrade from reading.
    """
    engine = create_engine(f"sqlite+pysqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: sqlite3.Connection, _record: ConnectionPoolEntry) -> None:
        dbapi_conn.isolation_level = None
        _pragmas(dbapi_conn, busy_timeout_ms)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("wulian_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def sqlite_path(url: str) -> Path:
    """The file of a `sqlite:///relative` or `sqlite:////absolute` URL."""
    scheme, sep, rest = url.partition(":///")
    if not sep or scheme not in ("sqlite", "sqlite+pysqlite") or not rest:
        raise ValueError("a SQLite URL looks like sqlite:///path/to/wulian.db")
    path = rest.split("?", 1)[0]
    if path == ":memory:":
        raise ValueError("in-memory SQLite is one database per connection: use a file")
    return Path(path)


class SqliteStore(SqlStore):
    """Metadata and telemetry in one SQLite file (WAL), safe for several processes."""

    def __init__(self, url: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we BEGIN IMMEDIATE ourselves, so the batch holds the write
        # lock from its first statement and never has to upgrade (no mid-batch "busy").
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None,
                                         check_same_thread=False,
                                         timeout=busy_timeout_ms / 1000)
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"cannot open SQLite file {self.path}: {exc}") from exc
        try:
            self._conn.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
            _pragmas(self._conn, busy_timeout_ms)
            engine = sqlite_engine(self.path, busy_timeout_ms)
            super().__init__(engine)
            upgrade(engine)
        except (sqlite3.Error, *UNAVAILABLE) as exc:
            self._conn.close()
            raise StorageUnavailable(f"cannot open SQLite file {self.path}: {exc}") from exc
        except BaseException:
            self._conn.close()
            raise
        self._lock = threading.Lock()
        self._series = SeriesIds()

    def close(self) -> None:
        """Close the writer connection and the engine's pool."""
        with self._lock:
            self._conn.close()
        self.engine.dispose()

    def info(self) -> dict[str, Any]:
        """Backend name and version, for `/api/v1/stats` and the logs."""
        return {"backend": "sqlite", "version": sqlite3.sqlite_version,
                "path": str(self.path.resolve())}

    def _series_id(self, cur: sqlite3.Cursor, device_id: str, prop: str) -> int:
        """The series id, created if need be; 0 when the device is not registered."""
        cur.execute(_NEW_SERIES, (device_id, prop, device_id))
        cur.execute("SELECT id FROM series WHERE device_id = ? AND property = ?",
                    (device_id, prop))
        row = cur.fetchone()
        return int(row[0]) if row else 0

    def write(self, batch: WriteBatch) -> int:
        """Store a batch in one transaction (duplicates ignored); returns points inserted."""
        with self._lock:
            try:
                return self._write(batch)
            except BaseException as exc:
                # Whatever failed, never leave the file write-locked for every other process.
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # the file may be gone
                        self._conn.execute("ROLLBACK")
                # Locked, I/O, disk full, read-only, or a damaged file: the database's state,
                # not the batch's. Any other error (a constraint, a value it cannot bind) is
                # the batch's and propagates: retried, it would fail again forever.
                if (isinstance(exc, sqlite3.OperationalError)
                        or type(exc) is sqlite3.DatabaseError):
                    raise StorageUnavailable(f"SQLite write failed: {exc}") from exc
                raise

    def _write(self, batch: WriteBatch) -> int:
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        cur.execute("SELECT value FROM counters WHERE name = ?", (SERIES_EPOCH,))
        row = cur.fetchone()
        epoch = int(row[0]) if row else 0
        known = self._series.valid(epoch)
        fresh: dict[SeriesKey, int] = {}
        for device_id, prop in missing_series(batch.points, known):
            sid = self._series_id(cur, device_id, prop)
            if sid:
                fresh[(device_id, prop)] = sid
        rows, newest = point_rows(batch.points, known, fresh)
        before = self._conn.total_changes
        cur.executemany(_INSERT_POINT, rows)
        inserted = self._conn.total_changes - before
        cur.executemany(_UPSERT_LATEST, newest)
        events = 0
        if batch.events:
            before = self._conn.total_changes
            cur.executemany(_INSERT_EVENT, [
                (e.device_id, e.event, e.level, e.ts, orjson.dumps(e.params).decode(),
                 e.device_id) for e in batch.events])
            events = self._conn.total_changes - before
        if batch.rejections:
            cur.executemany(_INSERT_REJECTION, [
                (r.received_ms, r.device_id, r.protocol, r.topic, r.code, r.message,
                 r.payload) for r in batch.rejections])
        if batch.seen:
            cur.executemany(_UPSERT_SEEN, [
                (device_id, s.ts, s.protocol, s.remote, ip_version(s.remote), device_id)
                for device_id, s in batch.seen.items()])
        cur.executemany(_BUMP, counter_bumps(batch, inserted, events).items())
        cur.execute("COMMIT")
        self._series.keep(epoch, fresh)
        return inserted

