"""How one-day queries hold up as the points table grows (not run by the tests).

Fills N points for 1,000 devices x 5 properties, one a minute, in time order with all
series interleaved the way ingest writes them (so the B-tree has ingest's page layout,
not a perfectly packed bulk load). Then times, through the Store API, a one-day
`points()` query of one device property (its last day: 1,440 points once N >= 7.2 M),
a one-day hourly `buckets()` average of it, and `latest()`. Prints one line of JSON.

    uv run python bench/storage_scale.py                      # SQLite, 10 M points
    uv run python bench/storage_scale.py --points 5000000     # smaller
    uv run python bench/storage_scale.py --database postgresql://postgres@127.0.0.1/empty_db

SQLite fills with executemany in large chunks on its own connection; PostgreSQL with COPY
(its bulk path; executemany there is several times slower). The fill rate is a bulk-load
figure, not the ingest path's: for that, see the ingest benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from wulian.domain.device import Device
from wulian.domain.thingmodel import parse_thing_model
from wulian.ports import Store
from wulian.storage import open_store

DEVICES, PROPERTIES = 1_000, 5
DAY_MS = 86_400_000
START_MS = 1_700_000_000_000 - 1_700_000_000_000 % DAY_MS  # midnight UTC
CHUNK = 500_000
PRODUCT = {"id": "bench-meter", "name": "Bench meter",
           "properties": [{"id": f"p{i}", "type": "float"} for i in range(PROPERTIES)]}


def register(store: Store) -> list[tuple[int, str, str]]:
    """The product, the devices, and one series per (device, property): (sid, device, prop)."""
    if store.count_devices():
        raise SystemExit("the database already has devices: give an empty one")
    store.put_product(parse_thing_model(PRODUCT))
    for i in range(DEVICES):
        store.add_device(Device(id=f"dev-{i:04d}", product="bench-meter", name=f"dev {i}",
                                secret_hash="-"))
    keys = [(f"dev-{i:04d}", f"p{p}") for i in range(DEVICES) for p in range(PROPERTIES)]
    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        from wulian.storage.schema import series

        conn.execute(series.insert(), [{"device_id": d, "property": p} for d, p in keys])
        rows = conn.execute(series.select().order_by(series.c.id)).all()
    return [(int(r.id), r.device_id, r.property) for r in rows]


def chunks(sids: list[int], total: int, step_ms: int) -> Iterator[list[tuple[Any, ...]]]:
    """Rows (series_id, ts, num, None) in ingest order: every series at t, then t + step."""
    rows: list[tuple[Any, ...]] = []
    per_series = total // len(sids)
    for k in range(per_series):
        ts = START_MS + k * step_ms
        value = 20.0 + (k % 100) * 0.1
        rows.extend((sid, ts, value + (sid % 7), None) for sid in sids)
        if len(rows) >= CHUNK:
            yield rows
            rows = []
    if rows:
        yield rows


def fill_sqlite(store: Store, sids: list[int], total: int, step_ms: int,
                advance: Callable[[int], None]) -> None:
    conn = sqlite3.connect(store.path, isolation_level=None)  # type: ignore[attr-defined]
    conn.execute("PRAGMA synchronous = NORMAL")
    try:
        for rows in chunks(sids, total, step_ms):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT OR IGNORE INTO points VALUES (?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
            advance(len(rows))
        conn.execute("INSERT OR REPLACE INTO latest SELECT series_id, max(ts), num, txt "
                     "FROM points GROUP BY series_id")
    finally:
        conn.close()


def fill_postgres(store: Store, sids: list[int], total: int, step_ms: int,
                  advance: Callable[[int], None]) -> None:
    import psycopg

    from wulian.storage.postgres import pg_urls

    with psycopg.connect(pg_urls(store.url)[1], autocommit=True) as conn:
        for rows in chunks(sids, total, step_ms):
            with conn.transaction(), conn.cursor().copy(
                    "COPY points (series_id, ts, num, txt) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "int8", "float8", "text"])
                for row in rows:
                    copy.write_row(row)
            advance(len(rows))
        conn.execute("INSERT INTO latest SELECT DISTINCT ON (series_id) series_id, ts, num, txt "
                     "FROM points ORDER BY series_id, ts DESC ON CONFLICT DO NOTHING")
        conn.execute("ANALYZE")


def timed(fn: Callable[[], object], runs: int) -> tuple[dict[str, float], object]:
    """Milliseconds of `runs` calls: first (cold-ish), min, median, max; and the last result."""
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return {"first": round(times[0], 2), "min": round(min(times), 2),
            "median": round(statistics.median(times), 2), "max": round(max(times), 2)}, result


def db_bytes(store: Store) -> int:
    if store.info()["backend"] == "sqlite":
        path = Path(store.path)  # type: ignore[attr-defined]
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    from sqlalchemy import text

    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        return int(conn.scalar(text("SELECT pg_database_size(current_database())")) or 0)


def main() -> None:
    """Fill, query, print one JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=10_000_000, help="points to store")
    ap.add_argument("--step-s", type=float, default=60.0,
                    help="seconds between a series' points (a device reporting each minute)")
    ap.add_argument("--database", help="postgresql://… of an EMPTY database; default SQLite")
    ap.add_argument("--runs", type=int, default=20, help="repetitions of each query")
    args = ap.parse_args()
    tmp = None
    url = args.database
    if url is None:
        tmp = tempfile.TemporaryDirectory(prefix="wulian-scale-")
        url = f"sqlite:///{tmp.name}/scale.db"
    store = open_store(url)
    try:
        series = register(store)
        sids = [sid for sid, _, _ in series]
        per_series = args.points // len(sids)
        step_ms = max(1, int(args.step_s * 1000))
        fill = fill_sqlite if store.info()["backend"] == "sqlite" else fill_postgres
        columns = (TextColumn("filling"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn())
        t0 = time.perf_counter()
        with Progress(*columns) as progress:
            task = progress.add_task("points", total=per_series * len(sids))
            fill(store, sids, args.points, step_ms,
                 lambda n: progress.advance(task, n))
        fill_s = time.perf_counter() - t0
        # The middle device's middle property, over the last day of its data.
        _, device_id, prop = series[len(series) // 2]
        since = START_MS + per_series * step_ms - DAY_MS
        day, rows = timed(lambda: store.points(device_id, prop, since=since,
                                               until=since + DAY_MS, limit=1_000_000),
                          args.runs)
        hourly, _ = timed(lambda: store.buckets(device_id, prop, since=since,
                                                until=since + DAY_MS, bucket_ms=3_600_000,
                                                agg="avg", limit=100), args.runs)
        latest, _ = timed(lambda: store.latest(device_id), args.runs)
        stored = per_series * len(sids)
        print(json.dumps({
            "test": "storage_scale", "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "backend": store.info()["backend"], "version": store.info()["version"],
            "points": stored, "devices": DEVICES, "properties": PROPERTIES,
            "step_ms": step_ms, "fill_s": round(fill_s, 1),
            "fill_points_per_s": round(stored / fill_s), "db_bytes": db_bytes(store),
            "day_query_points": len(rows),  # type: ignore[arg-type]
            "day_query_ms": day, "day_hourly_avg_ms": hourly, "latest_ms": latest,
            "cpus": os.cpu_count(),
        }))
    finally:
        store.close()
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
