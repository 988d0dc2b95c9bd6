"""Live push: stored batches and alarm changes fanned out to subscribers (SSE).

Producers are threads (ingest, the rules service); consumers are asyncio tasks of the
HTTP server. Each subscriber has a bounded queue: a slow one loses messages (counted, and
told with a `lag` message so it can reload) instead of growing memory without end.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from wulian.domain.message import WriteBatch
from wulian.rules.alarms import AlarmChange

log = logging.getLogger(__name__)
QUEUE_MAX = 1000  # messages a subscriber may fall behind by before it is told to reload
MAX_SUBSCRIBERS = 500  # live pages at once; one more is refused (counted), not queued


@dataclass(eq=False)
class Subscription:
    """One live client: what it wants and where its messages wait."""

    loop: asyncio.AbstractEventLoop
    devices: frozenset[str] | None  # None: every device
    alarms: bool
    lang: str | None = None
    queue: asyncio.Queue[tuple[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    lagging: bool = False
    id: int = field(default_factory=itertools.count().__next__)


class LiveHub:
    """Fan-out of committed data and alarm changes to live subscribers."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self.stats: Counter[str] = Counter()
        self._watched: frozenset[str] | None = frozenset()

    def subscribe(self, devices: frozenset[str] | None, alarms: bool,
                  lang: str | None = None) -> Subscription:
        """Register a subscriber on the running loop; alarm texts come in `lang`."""
        sub = Subscription(asyncio.get_running_loop(), devices, alarms, lang)
        with self._lock:
            self._subs.add(sub)
            self._rewatch()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)
            self._rewatch()

    def _rewatch(self) -> None:
        if any(s.devices is None for s in self._subs):
            self._watched = None
        else:
            self._watched = frozenset().union(*(s.devices or () for s in self._subs))

    def __len__(self) -> int:
        return len(self._subs)

    @property
    def full(self) -> bool:
        """True when one more subscriber would pass MAX_SUBSCRIBERS."""
        return len(self._subs) >= MAX_SUBSCRIBERS

    def publish_batch(self, batch: WriteBatch) -> None:
        """Called after a batch is stored: push its points and events to who watches them."""
        watched = self._watched
        if watched is not None and not watched:
            return  # nobody listens to devices: the ingest path pays one attribute read
        points: dict[str, list[tuple[str, int, Any]]] = {}
        for device_id, prop, ts, value in batch.points:
            if watched is None or device_id in watched:
                points.setdefault(device_id, []).append((prop, ts, value))
        events = [e for e in batch.events if watched is None or e.device_id in watched]
        if not points and not events:
            return
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            for device_id, rows in points.items():
                if sub.devices is None or device_id in sub.devices:
                    self._put(sub, "points", {"device": device_id, "points": rows})
            for event in events:
                if sub.devices is None or event.device_id in sub.devices:
                    self._put(sub, "event", {"device": event.device_id, "event": event.event,
                                             "level": event.level, "ts": event.ts,
                                             "params": event.params})

    def publish_alarm(self, change: AlarmChange) -> None:
        """Push an alarm change to alarm subscribers, worded in each one's language."""
        with self._lock:
            subs = [s for s in self._subs if s.alarms]
        for sub in subs:
            self._put(sub, "alarm", change_dict(change, sub.lang))

    def _put(self, sub: Subscription, kind: str, data: Any) -> None:
        # decided here, on the producing thread: a stalled client must not grow the event
        # loop's callback queue either
        if sub.lagging or sub.queue.qsize() >= QUEUE_MAX:
            if not sub.lagging:
                sub.lagging = True
                self.stats["lagged"] += 1
            self.stats["dropped"] += 1
            return
        try:
            sub.loop.call_soon_threadsafe(self._deliver, sub, kind, data)
        except RuntimeError:  # the subscriber's loop is closed: it is going away
            self.unsubscribe(sub)

    def _deliver(self, sub: Subscription, kind: str, data: Any) -> None:
        if sub.lagging:
            self.stats["dropped"] += 1
            return
        try:
            sub.queue.put_nowait((kind, data))
            self.stats["sent"] += 1
        except asyncio.QueueFull:
            # tell it once; it drops until it has drained, then reloads what it shows
            sub.lagging = True
            self.stats["dropped"] += 1
            self.stats["lagged"] += 1

    @staticmethod
    async def next(sub: Subscription, timeout: float) -> tuple[str, Any] | None:
        """The next message, ("lag", None) after an overflow, or None after `timeout`."""
        if sub.lagging and sub.queue.empty():
            sub.lagging = False
            return ("lag", None)
        try:
            return await asyncio.wait_for(sub.queue.get(), timeout)
        except TimeoutError:
            return None


def change_dict(change: AlarmChange, lang: str | None) -> dict[str, Any]:
    """An alarm change as the API and the live stream show it."""
    return {"alarm_id": change.alarm_id, "rule_id": change.rule_id, "subject": change.subject,
            "kind": change.kind.value, "ts": change.ts, "severity": change.severity.value,
            "value": change.value, "by": change.by, "comment": change.comment,
            "message": change.message(lang)}
