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
from wulian.storage.telemetry import SqlStore, counter_bumps, encode

BUSY_TIMEOUT_MS = 10_000  # several processes (workers, CLI, API) may write the same file
WAL_CHECKPOINT_PAGES = 16_384

_INSERT_POINT = "INSERT OR IGNORE INTO points (series_id, ts, num, txt) VALUES (?, ?, ?, ?)"
_UPSERT_LATEST = (
    "INSERT INTO latest (series_id, ts, num, txt) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (series_id) DO UPDATE SET ts = excluded.ts, num = excluded.num, "
    "txt = excluded.txt WHERE excluded.ts > latest.ts")
_INSERT_EVENT = "INSERT INTO events (device_id, event, level, ts, params) VALUES (?, ?, ?, ?, ?)"
_INSERT_REJECTION = (
    "INSERT INTO rejections (received_ms, device_id, protocol, topic, code, message, payload) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)")
_UPSERT_SEEN = (
    "INSERT INTO device_status (device_id, connected, last_seen_ms, protocol, remote, "
    "ip_version) VALUES (?, 0, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET "
    "last_seen_ms = excluded.last_seen_ms, protocol = excluded.protocol, "
    "remote = excluded.remote, ip_version = excluded.ip_version "
    "WHERE device_status.last_seen_ms IS NULL "
    "OR excluded.last_seen_ms >= device_status.last_seen_ms")
_BUMP = ("INSERT INTO counters (name, value) VALUES (?, ?) "
         "ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value")


def _pragmas(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; WAL keeps it safe
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
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                     timeout=busy_timeout_ms / 1000)
        try:
            self._conn.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
            _pragmas(self._conn, busy_timeout_ms)
            engine = sqlite_engine(self.path, busy_timeout_ms)
            super().__init__(engine)
            upgrade(engine)
        except Exception:
            self._conn.close()
            raise
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], int] = {}
        self._epoch = -1  # SERIES_EPOCH value the cache was filled under; -1: never read

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
        cur.execute("INSERT OR IGNORE INTO series (device_id, property) VALUES (?, ?)",
                    (device_id, prop))
        cur.execute("SELECT id FROM series WHERE device_id = ? AND property = ?",
                    (device_id, prop))
        return int(cur.fetchone()[0])

    def write(self, batch: WriteBatch) -> int:
        """Store a batch in one transaction (duplicates ignored); returns points inserted."""
        with self._lock:
            try:
                return self._write(batch)
            except sqlite3.DatabaseError as exc:
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):  # the file may be gone
                        self._conn.execute("ROLLBACK")
                raise StorageUnavailable(f"SQLite write failed: {exc}") from exc

    def _write(self, batch: WriteBatch) -> int:
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        cur.execute("SELECT value FROM counters WHERE name = ?", (SERIES_EPOCH,))
        row = cur.fetchone()
        epoch = row[0] if row else 0
        if epoch != self._epoch:  # a device was deleted somewhere: its ids are gone
            self._series.clear()
        cache = self._series
        fresh: dict[tuple[str, str], int] = {}  # cached only once the batch commits
        rows: list[tuple[int, int, float | None, str | None]] = []
        newest: dict[int, tuple[int, int, float | None, str | None]] = {}
        for device_id, prop, ts, value in batch.points:
            key = (device_id, prop)
            sid = cache.get(key)
            if sid is None:
                sid = fresh.get(key)
                if sid is None:
                    sid = fresh[key] = self._series_id(cur, device_id, prop)
            num, txt = encode(value)
            point = (sid, ts, num, txt)
            rows.append(point)
            # Strictly newer: of two points with one ts the first is stored, so keep it.
            top = newest.get(sid)
            if top is None or ts > top[1]:
                newest[sid] = point
        before = self._conn.total_changes
        cur.executemany(_INSERT_POINT, rows)
        inserted = self._conn.total_changes - before
        cur.executemany(_UPSERT_LATEST, newest.values())
        if batch.events:
            cur.executemany(_INSERT_EVENT, [
                (e.device_id, e.event, e.level, e.ts, orjson.dumps(e.params).decode())
                for e in batch.events])
        if batch.rejections:
            cur.executemany(_INSERT_REJECTION, [
                (r.received_ms, r.device_id, r.protocol, r.topic, r.code, r.message,
                 r.payload) for r in batch.rejections])
        if batch.seen:
            cur.executemany(_UPSERT_SEEN, [
                (device_id, s.ts, s.protocol, s.remote, ip_version(s.remote))
                for device_id, s in batch.seen.items()])
        cur.executemany(_BUMP, counter_bumps(batch, inserted).items())
        cur.execute("COMMIT")
        self._epoch = epoch
        cache.update(fresh)
        return inserted

