"""Backtest: run one rule over stored history and report when it would have fired and cleared.

The engine judges data by its own timestamps, so replaying stored points in time order
through a fresh engine gives the answers live ingest would have given; timers (`for`,
no-data, windows) advance on ticks placed between the readings.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from wulian.domain.message import EventRecord, SeenRecord, WriteBatch
from wulian.ports import Store
from wulian.rules.alarms import AlarmChange, ChangeKind
from wulian.rules.conditions import NoData
from wulian.rules.engine import RuleEngine
from wulian.rules.model import Rule

MAX_DEVICES = 2000
MAX_ITEMS = 2_000_000  # points and events read for one backtest
MAX_TICKS = 200_000
MAX_CHANGES = 10_000  # transitions reported; past that the result says it is cut short
MAX_SECONDS = 60.0  # wall time one backtest may take
CHUNK = 500


class BacktestTooLarge(ValueError):
    """The history asked for is more than one backtest reads; narrow the time or scope."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"{what} exceeds {limit}")
        self.what = what
        self.limit = limit


@dataclass
class BacktestResult:
    rule_id: str
    since: int
    until: int
    devices: int = 0
    points: int = 0
    events: int = 0
    resolution_ms: int = 1000
    changes: list[AlarmChange] = field(default_factory=list)
    open_at_end: int = 0
    truncated: bool = False

    def to_dict(self, lang: str | None = None) -> dict[str, Any]:
        raised = sum(c.kind is ChangeKind.RAISED for c in self.changes)
        return {
            "rule_id": self.rule_id, "since": self.since, "until": self.until,
            "devices": self.devices, "points": self.points, "events": self.events,
            "resolution_ms": self.resolution_ms, "raised": raised,
            "cleared": len(self.changes) - raised, "open_at_end": self.open_at_end,
            "truncated": self.truncated,
            "changes": [{"kind": c.kind.value, "alarm_id": c.alarm_id, "subject": c.subject,
                         "ts": c.ts, "value": c.value, "message": c.message(lang)}
                        for c in self.changes],
        }


def _scope_devices(rule: Rule, store: Store) -> list[Any]:
    found: list[Any] = []
    for product in rule.scope.products or (None,):
        offset = 0
        while True:
            page = store.list_devices(product=product, limit=1000, offset=offset)
            found.extend(d for d in page if rule.scope.matches(d.id, d.product, d.tags))
            if len(found) > MAX_DEVICES:
                raise BacktestTooLarge("devices", MAX_DEVICES)
            if len(page) < 1000:
                break
            offset += 1000
    return found


Item = tuple[int, int, str, str, Any]  # ts, order, device, property or "", value or event


def backtest(rule: Rule, store: Store, since: int, until: int) -> BacktestResult:
    """Evaluate `rule` (enabled or not) over stored data in [since, until)."""
    rule = rule if rule.enabled else replace(rule, enabled=True)  # tune before enabling
    result = BacktestResult(rule.id, since, until)
    devices = {d.id: d for d in _scope_devices(rule, store)}
    result.devices = len(devices)
    nodes = list(rule.condition.walk()) + list(rule.clear.walk() if rule.clear else ())
    props = sorted(frozenset().union(*(n.props() for n in nodes)))
    wants_events = frozenset().union(*(n.events() for n in nodes))
    streams: list[Iterator[Item]] = []
    budget = MAX_ITEMS
    for device_id in devices:
        for prop in props:
            rows = store.points(device_id, prop, since=since, until=until, limit=budget + 1)
            budget -= len(rows)
            if budget < 0:
                raise BacktestTooLarge("points", MAX_ITEMS)
            result.points += len(rows)
            streams.append(iter([(ts, 0, device_id, prop, v) for ts, v in rows]))
        if wants_events:
            every = store.events(device_id, since=since, until=until, limit=budget + 1)
            budget -= len(every)  # counted before filtering: a cut list would miss some
            if budget < 0:
                raise BacktestTooLarge("points", MAX_ITEMS)
            evs = [e for e in every if e.event in wants_events]
            result.events += len(evs)
            # oldest first; the index keeps two events of one millisecond apart in order
            streams.append(iter(sorted(((e.ts, 1, device_id, "", e) for e in evs),
                                       key=lambda item: item[0])))
    clock = [since]
    engine = RuleEngine([rule], lambda: clock[0])
    if any(isinstance(n, NoData) for n in nodes):
        for device in devices.values():
            engine.track(device.id, device, since)
    step = max(1000, (until - since) // MAX_TICKS)
    result.resolution_ms = step
    next_tick = since + step
    batch = WriteBatch()
    changes = result.changes

    def flush() -> None:
        nonlocal batch
        if batch.points or batch.events:
            changes.extend(engine.observe(batch, devices.get))
            batch = WriteBatch()

    deadline = time.monotonic() + MAX_SECONDS
    for n, (ts, _, device_id, prop, value) in enumerate(heapq.merge(
            *streams, key=lambda item: (item[0], item[1]))):
        if n % 10_000 == 0 and time.monotonic() > deadline:
            raise BacktestTooLarge("seconds", int(MAX_SECONDS))
        if len(changes) >= MAX_CHANGES:
            result.truncated = True
            break
        if ts >= next_tick:
            flush()
            while next_tick <= ts:
                clock[0] = next_tick
                changes.extend(engine.tick(next_tick))
                next_tick += step
        clock[0] = ts
        if prop:
            batch.points.append((device_id, prop, ts, value))
        else:
            event: EventRecord = value
            batch.events.append(event)
        seen = batch.seen.get(device_id)
        if seen is None or seen.ts < ts:
            batch.seen[device_id] = SeenRecord(ts, "backtest", None)
        if len(batch.points) + len(batch.events) >= CHUNK:
            flush()
    flush()
    ticks = 0
    while next_tick <= until and not result.truncated:
        ticks += 1
        if ticks % 10_000 == 0 and time.monotonic() > deadline:
            raise BacktestTooLarge("seconds", int(MAX_SECONDS))
        clock[0] = next_tick
        changes.extend(engine.tick(next_tick))
        next_tick += step
    result.open_at_end = len(engine.alarms)
    return result
