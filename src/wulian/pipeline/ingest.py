"""One pipeline for every protocol: turn a batch of `Inbound` into stored data or rejections."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from wulian.domain.clock import now_ms as now_ms  # re-exported: the API and CLI use it
from wulian.domain.message import (
    EventRecord,
    Inbound,
    Kind,
    Outcome,
    RejectionRecord,
    SeenRecord,
    Value,
    WriteBatch,
)
from wulian.domain.rejection import RejectCode, Rejection
from wulian.i18n import current
from wulian.pipeline.directory import DeviceDirectory, Known
from wulian.ports import TelemetryStore

log = logging.getLogger(__name__)
DEAD_LETTER_PAYLOAD_MAX = 4096  # keep enough of a refused payload to debug it, no more


def dead_letter(msg: Inbound, rejection: Rejection, lang: str) -> RejectionRecord:
    """The record kept of a refused message: what came, from where, and why not."""
    return RejectionRecord(
        received_ms=msg.received_ms, device_id=msg.device_id or None,
        protocol=msg.protocol.value, topic=msg.topic, code=rejection.code.value,
        message=rejection.message(lang), payload=msg.payload[:DEAD_LETTER_PAYLOAD_MAX])


@dataclass(frozen=True, slots=True)
class IngestLimits:
    max_payload_bytes: int = 256 * 1024
    max_future_skew_ms: int = 300_000


Listener = Callable[[WriteBatch], None]


class Pipeline:
    """decode → validate → store (one transaction per batch) → notify listeners.

    Adapters authenticate and hand over `Inbound` messages; `handle` returns one `Outcome`
    per message, in order, once the batch is durably stored. If the store fails it raises
    `StorageUnavailable` and nothing is acknowledged: the adapter must not ack.
    """

    def __init__(self, store: TelemetryStore, directory: DeviceDirectory,
                 limits: IngestLimits | None = None, *, clock: Callable[[], int] = now_ms,
                 lang: str | None = None) -> None:
        self.store = store
        self.directory = directory
        self.limits = limits or IngestLimits()
        self._clock = clock
        self._lang = lang
        self._listeners: list[Listener] = []
        self._write_lock = threading.Lock()
        self.stats: Counter[str] = Counter()  # this process's view; the store holds totals

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(batch)` after every stored batch (live subscribers, rules)."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def prepare(self, messages: Sequence[Inbound]) -> tuple[WriteBatch, list[Outcome]]:
        """Decode and validate without storing: the batch to write and each message's fate."""
        batch = WriteBatch()
        outcomes: list[Outcome] = []
        now = self._clock()
        lang = self._lang or current()
        for msg in messages:
            outcome = self._one(msg, batch, now)
            if outcome.rejection is not None:
                batch.rejections.append(dead_letter(msg, outcome.rejection, lang))
            else:
                batch.accepted += 1
                seen = batch.seen.get(msg.device_id)
                if seen is None or seen.ts < msg.received_ms:
                    batch.seen[msg.device_id] = SeenRecord(msg.received_ms, msg.protocol.value,
                                                           msg.remote)
            outcomes.append(outcome)
        return batch, outcomes

    def _one(self, msg: Inbound, batch: WriteBatch, now: int) -> Outcome:
        size = len(msg.payload)
        if size > self.limits.max_payload_bytes:
            return Outcome(rejection=Rejection(RejectCode.PAYLOAD_TOO_LARGE, params={
                "size": size, "limit": self.limits.max_payload_bytes}))
        known = self.directory.lookup(msg.device_id)
        if isinstance(known, Rejection):
            return Outcome(rejection=known)
        if msg.kind is Kind.TELEMETRY:
            return self._telemetry(msg, known, batch, now)
        return self._event(msg, known, batch, now)

    def _future(self, ts: int, now: int) -> Rejection | None:
        ahead = ts - now
        if ahead > self.limits.max_future_skew_ms:
            return Rejection(RejectCode.TIMESTAMP_IN_FUTURE, "$.ts", {
                "ahead_s": ahead // 1000, "skew_s": self.limits.max_future_skew_ms // 1000})
        return None

    def _telemetry(self, msg: Inbound, known: Known, batch: WriteBatch, now: int) -> Outcome:
        records = known.model.decode_telemetry(msg.payload)
        if isinstance(records, Rejection):
            return Outcome(rejection=records)
        device_id = msg.device_id
        points: list[tuple[str, str, int, Value]] = []
        for ts, pairs in records:
            if ts is None:
                ts = msg.received_ms
            else:
                problem = self._future(ts, now)
                if problem is not None:
                    return Outcome(rejection=problem)
            points.extend((device_id, prop, ts, value) for prop, value in pairs)
        batch.points.extend(points)
        return Outcome(points=len(points))

    def _event(self, msg: Inbound, known: Known, batch: WriteBatch, now: int) -> Outcome:
        event_id = msg.event or ""
        decoded = known.model.decode_event(event_id, msg.payload)
        if isinstance(decoded, Rejection):
            return Outcome(rejection=decoded)
        ts, params = decoded
        if ts is not None:
            problem = self._future(ts, now)
            if problem is not None:
                return Outcome(rejection=problem)
        event = known.model.model.event(event_id)
        level = event.level if event else "info"
        batch.events.append(EventRecord(msg.device_id, event_id, level,
                                        ts if ts is not None else msg.received_ms, params))
        return Outcome(points=0)

    def handle(self, messages: Sequence[Inbound]) -> list[Outcome]:
        """Validate and durably store a batch; raises StorageUnavailable (ack nothing then)."""
        batch, outcomes = self.prepare(messages)
        self.commit(batch)
        return outcomes

    def commit(self, batch: WriteBatch) -> int:
        """Write a prepared batch and tell the listeners; returns points inserted."""
        if not len(batch):
            return 0
        with self._write_lock:
            inserted = self.store.write(batch)
        self.stats["messages_accepted"] += batch.accepted
        self.stats["messages_rejected"] += len(batch.rejections)
        self.stats["points_stored"] += inserted
        for listener in list(self._listeners):
            try:
                listener(batch)
            except Exception:  # a broken subscriber must not break ingest
                log.exception("ingest listener failed")
        return inserted
