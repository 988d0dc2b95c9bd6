"""Platform metrics over time: counter samples (messages/s now and per minute) and fleet counts.

The store keeps only running totals (`Store.counters()`); a rate needs the totals at two
moments. `CounterSampler` reads them every few seconds in a thread, keeps the last minute
in memory for "messages/s now", and writes one row per counter and minute to
`counter_samples` so the per-minute history survives restarts and is shared by every
process reading the same database. Several samplers on one database are harmless: a
minute's row holds the counter's value, and whoever writes last writes a later value.

`fleet_counts` is the overview's aggregate over devices and their status. The `Store` port
has no such query and walking it device by device costs a query per device, so this is
one GROUP BY on the shared schema (SQLAlchemy Core, both backends).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import pairwise

from sqlalchemy import Engine, and_, case, delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from wulian.domain.clock import now_ms
from wulian.i18n import t
from wulian.ports import Store
from wulian.storage.schema import counter_samples, device_status, devices

log = logging.getLogger(__name__)

MINUTE_MS = 60_000
DAY_MS = 86_400_000
SAMPLE_EVERY_S = 10.0
RETENTION_MS = 8 * DAY_MS  # a week of history plus a day, so "the same hour last week" exists
PRUNE_EVERY_MS = 3_600_000
RATE_WINDOW_MS = 30_000  # "now" is the last half minute: steady, yet reacts within seconds
SAMPLED = ("messages_accepted", "messages_rejected", "points_stored", "events_stored")


def _engine(store: Store) -> Engine:
    engine = getattr(store, "engine", None)
    if not isinstance(engine, Engine):
        raise TypeError(f"{type(store).__name__} has no SQLAlchemy engine to keep samples in")
    return engine


class CounterSamples:
    """The `counter_samples` table: record, read as per-minute rates, prune."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = sqlite_insert if engine.dialect.name == "sqlite" else pg_insert

    @classmethod
    def of(cls, store: Store) -> CounterSamples:
        """The samples kept in `store`'s database."""
        return cls(_engine(store))

    def record(self, ts_ms: int, values: dict[str, int]) -> None:
        """Store each counter's value as its value for the minute holding `ts_ms`."""
        if not values:
            return
        minute = ts_ms - ts_ms % MINUTE_MS
        ins = self._insert(counter_samples).values(
            [{"name": name, "minute_ms": minute, "value": value}
             for name, value in values.items()])
        stmt = ins.on_conflict_do_update(
            index_elements=[counter_samples.c.name, counter_samples.c.minute_ms],
            # a counter never decreases: keep the larger value whatever order writers come in
            set_={"value": case((ins.excluded.value > counter_samples.c.value,
                                 ins.excluded.value), else_=counter_samples.c.value)})
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def values(self, name: str, since_ms: int) -> list[tuple[int, int]]:
        """(minute_ms, value) of one counter from `since_ms` on, oldest first."""
        c = counter_samples.c
        stmt = (select(c.minute_ms, c.value).where(c.name == name, c.minute_ms >= since_ms)
                .order_by(c.minute_ms))
        with self.engine.connect() as conn:
            return [(int(m), int(v)) for m, v in conn.execute(stmt)]

    def rates(self, name: str, since_ms: int, until_ms: int | None = None,
              ) -> list[tuple[int, float]]:
        """[(minute_ms, per second)] over consecutive minute samples in [since, until).

        The rate of minute m is (value[m] − value[previous sample]) / elapsed time, so a
        gap (the platform was down) is spread over the gap instead of spiking one minute.
        A counter that went down (a fresh database) counts as zero, not negative. Pass the
        start of the current minute as `until_ms`: that minute is not over, its rate not
        known yet.
        """
        rows = self.values(name, since_ms - MINUTE_MS)
        out: list[tuple[int, float]] = []
        for (m0, v0), (m1, v1) in pairwise(rows):
            if m1 < since_ms or (until_ms is not None and m1 >= until_ms):
                continue
            out.append((m1, max(0, v1 - v0) / ((m1 - m0) / 1000)))
        return out

    def prune(self, before_ms: int) -> int:
        """Delete samples older than `before_ms`; how many went."""
        with self.engine.begin() as conn:
            result = conn.execute(delete(counter_samples)
                                  .where(counter_samples.c.minute_ms < before_ms))
        return int(result.rowcount or 0)


@dataclass
class _Recent:
    """The last samples of one counter, for the rate now."""

    points: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=64))

    def add(self, ts_ms: int, value: int) -> None:
        self.points.append((ts_ms, value))
        while len(self.points) > 2 and self.points[1][0] <= ts_ms - RATE_WINDOW_MS:
            self.points.popleft()

    def rate(self) -> float | None:
        if len(self.points) < 2:
            return None
        (t0, v0), (t1, v1) = self.points[0], self.points[-1]
        return max(0, v1 - v0) / ((t1 - t0) / 1000) if t1 > t0 else None


class CounterSampler:
    """Samples `store.counters()` every `interval_s` in a thread; start() and stop()."""

    def __init__(self, store: Store, *, interval_s: float = SAMPLE_EVERY_S,
                 names: Iterable[str] = SAMPLED, retention_ms: int = RETENTION_MS,
                 clock: Callable[[], int] = now_ms) -> None:
        self.store = store
        self.samples = CounterSamples(_engine(store))
        self.interval_s = interval_s
        self.names = tuple(names)
        self.retention_ms = retention_ms
        self.clock = clock
        self._recent = {name: _Recent() for name in self.names}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pruned_ms = 0

    def start(self) -> None:
        """Take a first sample now, then one every `interval_s` until stop()."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="wulian-counter-sampler",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop sampling (returns once the thread has ended, or after `timeout`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                self.sample()
            except Exception as exc:
                # the database may be down for a while: skip this sample, never die
                log.warning(t("console.log.sampling_failed", detail=str(exc)[:200]))
            if self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started))):
                return

    def sample(self) -> None:
        """Read the counters once, remember them, write the minute's row, prune daily."""
        counters = self.store.counters()
        ts = self.clock()
        values = {name: int(counters.get(name, 0)) for name in self.names}
        with self._lock:
            for name, value in values.items():
                self._recent[name].add(ts, value)
        self.samples.record(ts, values)
        if ts - self._pruned_ms >= PRUNE_EVERY_MS:
            self.samples.prune(ts - self.retention_ms)
            self._pruned_ms = ts

    def rate_now(self, name: str = "messages_accepted") -> float | None:
        """Per second over the last ~30 s; None until two samples exist."""
        with self._lock:
            recent = self._recent.get(name)
            return recent.rate() if recent else None


# --- fleet counts for the overview -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProductCounts:
    product: str
    devices: int
    online: int


@dataclass(frozen=True, slots=True)
class FleetCounts:
    products: list[ProductCounts]
    ipv4: int  # devices whose last known address was IPv4
    ipv6: int

    @property
    def devices(self) -> int:
        return sum(p.devices for p in self.products)

    @property
    def online(self) -> int:
        return sum(p.online for p in self.products)


def fleet_counts(store: Store, online_since_ms: int) -> FleetCounts:
    """Devices and online devices per product, and devices by IP version, in two queries.

    Online is what `/stats` and the device API call online: connected now, or seen since
    `online_since_ms`.
    """
    st = device_status.c
    online = or_(st.connected.is_(True),
                 and_(st.last_seen_ms.is_not(None), st.last_seen_ms >= online_since_ms))
    joined = devices.outerjoin(device_status, st.device_id == devices.c.id)
    per_product = (select(devices.c.product, func.count(),
                          func.coalesce(func.sum(case((online, 1), else_=0)), 0))
                   .select_from(joined).group_by(devices.c.product)
                   .order_by(devices.c.product))
    by_ip = (select(st.ip_version, func.count()).select_from(joined)
             .where(st.ip_version.is_not(None)).group_by(st.ip_version))
    with _engine(store).connect() as conn:
        products = [ProductCounts(str(p), int(n), int(o))
                    for p, n, o in conn.execute(per_product)]
        versions = {int(v): int(n) for v, n in conn.execute(by_ip)}
    return FleetCounts(products, versions.get(4, 0), versions.get(6, 0))
