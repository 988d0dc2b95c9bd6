"""One pipeline for every protocol: turn a batch of `Inbound` into stored data or rejections."""

from __future__ import annotations

import logging
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
from wulian.i18n import current, t
from wulian.pipeline.directory import DeviceDirectory, Known
from wulian.ports import StorageUnavailable, TelemetryStore
from wulian.quotas.gate import IngestGate, Spent

log = logging.getLogger(__name__)
DEAD_LETTER_PAYLOAD_MAX = 4096  # keep enough of a refused payload to debug it, no more
LOGGED_PAYLOAD_MAX = 200  # of a message the platform failed on, in the log line
INTERNAL_ERROR = Rejection(RejectCode.INTERNAL_ERROR)


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
    A message the pipeline itself fails on is refused as `internal_error` (see `BatchRun`
    for one the database refuses).
    """

    def __init__(self, store: TelemetryStore, directory: DeviceDirectory,
                 limits: IngestLimits | None = None, *, clock: Callable[[], int] = now_ms,
                 lang: str | None = None, gate: IngestGate | None = None) -> None:
        self.store = store
        self.gate = gate or IngestGate()
        self.directory = directory
        self.limits = limits or IngestLimits()
        self._clock = clock
        self._lang = lang
        self._listeners: list[Listener] = []
        self.stats: Counter[str] = Counter()  # this process's view; the store holds totals

    @property
    def lang(self) -> str:
        """The language of dead letters: the configured one, else the process's."""
        return self._lang or current()

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(batch)` after every stored batch (live subscribers, rules)."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def prepare(self, messages: Sequence[Inbound],
                refusals: Sequence[Rejection | None] | None = None,
                spent: Spent | None = None) -> tuple[WriteBatch, list[Outcome]]:
        """Decode and validate without storing: the batch to write and each message's fate.

        `refusals[i]`, when given and not None, is why message i was refused before the
        pipeline (authentication, size): it is kept as a dead letter without validation.
        """
        batch = WriteBatch()
        outcomes: list[Outcome] = []
        now = self._clock()
        lang = self.lang
        for n, msg in enumerate(messages):
            refusal = refusals[n] if refusals is not None else None
            if refusal is not None:
                outcome = Outcome(rejection=refusal)
            else:
                outcome = self._checked(msg, batch, now, spent)
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

    def _checked(self, msg: Inbound, batch: WriteBatch, now: int,
                 spent: Spent | None) -> Outcome:
        try:
            return self._one(msg, batch, now, spent)
        except StorageUnavailable:
            raise  # the directory could not read the registry: not this message's fault
        except Exception as exc:
            # A bug on one message's path must not take its neighbours down with it. `_one`
            # adds to `batch` only as its last step, so nothing of this message is in it.
            return self._failed(msg, exc)

    def _failed(self, msg: Inbound, cause: BaseException) -> Outcome:
        self.stats["internal_errors"] += 1
        log.error(t("ingest.internal_error", device=msg.device_id or None, topic=msg.topic,
                    payload=msg.payload[:LOGGED_PAYLOAD_MAX]), exc_info=cause)
        return Outcome(rejection=INTERNAL_ERROR)

    def keep_failed(self, msg: Inbound, cause: BaseException) -> Outcome:
        """Keep `msg`, which made the pipeline or the store fail, as an internal_error dead letter.

        It is written in a transaction of its own; raises StorageUnavailable if even that fails.
        """
        outcome = self._failed(msg, cause)
        batch = WriteBatch()
        batch.rejections.append(dead_letter(msg, INTERNAL_ERROR, self.lang))
        try:
            self.commit(batch)
        except StorageUnavailable:
            raise
        except Exception as exc:
            # This dead letter holds little of the message, so its refusal points at the
            # database (read-only after a failover, permissions, schema): hold the message
            # as in an outage rather than acknowledge it stored nowhere.
            raise StorageUnavailable(f"the database refuses even a dead letter: {exc}") from exc
        return outcome

    def _one(self, msg: Inbound, batch: WriteBatch, now: int,
             spent: Spent | None = None) -> Outcome:
        """The message's fate; what it stores goes into `batch` as the very last step."""
        size = len(msg.payload)
        if size > self.limits.max_payload_bytes:
            return Outcome(rejection=Rejection(RejectCode.PAYLOAD_TOO_LARGE, params={
                "size": size, "limit": self.limits.max_payload_bytes}))
        known = self.directory.lookup(msg.device_id)
        if isinstance(known, Rejection):
            return Outcome(rejection=known)
        # Rates by arrival, not by when the batch is processed: a backlog drained after a
        # pause must not be refused for arriving late.
        refusal = self.gate.check(known.org_id, msg.device_id, known.quotas, size,
                                  msg.received_ms, spent)
        if refusal is not None:
            counter = f"org.{known.org_id}.rejected.{refusal.code.value}"
            self.stats[counter] += 1
            batch.counts[counter] += 1  # stored with the batch: every process's refusals
            return Outcome(rejection=refusal)
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

    def handle(self, messages: Sequence[Inbound],
               refusals: Sequence[Rejection | None] | None = None) -> list[Outcome]:
        """Validate and durably store a batch; raises StorageUnavailable (ack nothing then).

        Any other exception comes from the store refusing the batch; `BatchRun` finds the
        message at fault instead of failing all of them.
        """
        spent: Spent = []
        try:
            batch, outcomes = self.prepare(messages, refusals, spent)
            self.commit(batch)
        except BaseException:
            self.gate.refund(spent)  # the batch comes again: charge it once
            raise
        return outcomes

    def commit(self, batch: WriteBatch) -> int:
        """Write a prepared batch and tell the listeners; returns points inserted."""
        if not len(batch):
            return 0
        inserted = self.store.write(batch)  # stores serialise their own writers
        self.stats["messages_accepted"] += batch.accepted
        self.stats["messages_rejected"] += len(batch.rejections)
        self.stats["points_stored"] += inserted
        for listener in list(self._listeners):
            try:
                listener(batch)
            except Exception:  # a broken subscriber must not break ingest
                log.exception(t("ingest.listener_failed"))
        return inserted


class BatchRun:
    """One batch through `Pipeline.handle`, safe from a poisonous message, resumable.

    The batch is stored in one transaction. Should the store refuse it for a reason other
    than being unavailable (a row the database rejects, a bug), it is halved until the
    message at fault is alone; that one is kept as an `internal_error` dead letter and its
    neighbours are stored as usual, at the cost of about 2·log2(n) transactions.

    `run` raises StorageUnavailable with the progress kept: called again it resumes and
    stores no part twice. `outcomes` holds None for each message not stored yet; the
    stored ones always form a prefix of the batch (parts are stored in order).
    """

    def __init__(self, pipeline: Pipeline, messages: Sequence[Inbound],
                 refusals: Sequence[Rejection | None] | None = None) -> None:
        self._pipeline = pipeline
        self._messages = list(messages)
        self._refusals = list(refusals) if refusals is not None else None
        self.outcomes: list[Outcome | None] = [None] * len(self._messages)
        self._todo = [(0, len(self._messages))] if self._messages else []  # next: the last

    def run(self) -> list[Outcome]:
        """Every message's outcome, in order, once all are stored."""
        pipeline = self._pipeline
        while self._todo:
            lo, hi = self._todo[-1]
            refusals = self._refusals[lo:hi] if self._refusals is not None else None
            try:
                done = pipeline.handle(self._messages[lo:hi], refusals)
            except StorageUnavailable:
                raise
            except Exception as exc:
                if hi - lo > 1:
                    if hi - lo == len(self._messages):
                        log.warning(t("ingest.batch_refused", count=hi - lo, detail=repr(exc)))
                    mid = (lo + hi) // 2
                    self._todo[-1:] = [(mid, hi), (lo, mid)]
                    continue
                kept = pipeline.keep_failed(self._messages[lo], exc)
                refusal = refusals[0] if refusals is not None else None
                # A message refused before the pipeline: its sender still hears why.
                done = [kept if refusal is None else Outcome(rejection=refusal)]
            self._todo.pop()
            self.outcomes[lo:hi] = done
        outcomes = [o for o in self.outcomes if o is not None]
        assert len(outcomes) == len(self.outcomes)
        return outcomes
