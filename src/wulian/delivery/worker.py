"""The delivery worker: sends what the outbox holds, with backoff, and dead-letters the rest.

Backoff doubles from `base_backoff_ms` without jitter (attempt n waits base * 2**(n-1),
capped at `max_backoff_ms`, or longer if the receiver said Retry-After), so tests and
operators can predict the schedule. Jitter would spread a thundering herd of retries; one
worker sending a handful of alarms has none to spread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from wulian.delivery.outbox import Delivery, SqlOutbox
from wulian.delivery.senders import DeliveryError, Sender
from wulian.domain.clock import now_ms
from wulian.i18n import t
from wulian.ports import StorageUnavailable
from wulian.rules.actions import MAX_TIMEOUT_MS

log = logging.getLogger(__name__)
# A claimed row is no one else's for this long: one send at the longest timeout, with room
# for a slow SMTP conversation. A worker that dies mid-send leaves it due again after that.
LEASE_MS = 2 * MAX_TIMEOUT_MS + 30_000
KEEP_DELIVERED_MS = 7 * 86_400_000
PURGE_EVERY_MS = 3_600_000


class DeliveryWorker:
    """Delivers due outbox rows through `senders` (keyed by action kind)."""

    def __init__(self, outbox: SqlOutbox, senders: Mapping[str, Sender],
                 clock: Callable[[], int] = now_ms, *, max_attempts: int = 8,
                 base_backoff_ms: int = 1000, max_backoff_ms: int = 300_000,
                 batch: int = 100, parallel: int = 4, interval_s: float = 0.5,
                 storage_retry_s: float = 5.0, lang: str | None = None) -> None:
        if max_attempts < 1 or base_backoff_ms < 1 or max_backoff_ms < base_backoff_ms:
            raise ValueError("need max_attempts >= 1 and 1 <= base_backoff_ms <= "
                             "max_backoff_ms")
        self.outbox = outbox
        self.senders = dict(senders)
        self.clock = clock
        self.max_attempts = max_attempts
        self.base_backoff_ms = base_backoff_ms
        self.max_backoff_ms = max_backoff_ms
        self.batch = max(1, batch)
        self.parallel = max(1, parallel)
        self.interval_s = interval_s
        self.storage_retry_s = storage_retry_s
        self.lang = lang
        self.delivered = 0
        self.failed = 0  # failed attempts that will be retried
        self.dead = 0
        self._lock = threading.Lock()  # one run_once at a time, thread or caller
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stats(self) -> dict[str, int]:
        """Counters since start: delivered, failed (attempts to retry), dead."""
        return {"delivered": self.delivered, "failed": self.failed, "dead": self.dead}

    def backoff_ms(self, attempts: int) -> int:
        """How long to wait after the `attempts`-th failed attempt (1-based)."""
        exponent = min(max(attempts - 1, 0), 40)  # bounded: 2**40 already exceeds any cap
        return min(self.base_backoff_ms << exponent, self.max_backoff_ms)

    def _attempt(self, delivery: Delivery, now: int) -> DeliveryError | None:
        sender = self.senders.get(delivery.kind)
        if sender is None:
            return DeliveryError(t("actions.error.no_sender", self.lang, kind=delivery.kind),
                                 permanent=True)
        try:
            sender.send(delivery, now)
        except DeliveryError as exc:
            return exc
        except Exception as exc:  # a sender bug must not stop the others: retry, visibly
            log.exception(t("actions.log.sender_bug", id=delivery.id, kind=delivery.kind))
            return DeliveryError(t("actions.error.internal", self.lang,
                                   error=f"{type(exc).__name__}: {exc}"))
        return None

    def _settle(self, delivery: Delivery, error: DeliveryError | None, now: int) -> None:
        attempts = delivery.attempts + 1
        if error is None:
            self.outbox.mark_delivered(delivery.id, now)
            self.delivered += 1
        elif error.permanent or attempts >= self.max_attempts:
            self.outbox.mark_dead(delivery.id, error.message, now)
            self.dead += 1
            log.warning(t("actions.log.dead", id=delivery.id, kind=delivery.kind,
                          target=delivery.target, attempts=attempts, error=error.message))
        else:
            delay = max(self.backoff_ms(attempts), error.retry_after_ms or 0)
            self.outbox.mark_failed(delivery.id, error.message, now + delay)
            self.failed += 1
            log.info(t("actions.log.retry", id=delivery.id, attempts=attempts, delay=delay,
                       error=error.message))

    def run_once(self, now: int | None = None) -> int:
        """Send what is due at `now` (default: the clock); how many were attempted."""
        with self._lock:
            done = 0
            # claim a few at a time so every claimed row is sent well within its lease
            while done < self.batch:
                at = self.clock() if now is None else now
                claimed = self.outbox.claim(at, min(self.parallel, self.batch - done),
                                            LEASE_MS)
                if not claimed:
                    break
                if len(claimed) == 1:
                    errors = [self._attempt(claimed[0], at)]
                else:
                    with ThreadPoolExecutor(len(claimed), "wulian-delivery") as pool:
                        errors = list(pool.map(self._attempt, claimed, [at] * len(claimed)))
                for delivery, error in zip(claimed, errors, strict=True):
                    self._settle(delivery, error, at)
                done += len(claimed)
            return done

    # --- background thread ----------------------------------------------------------------

    def wake(self) -> None:
        """Look at the outbox now (new rows were written) instead of at the next tick."""
        self._wake.set()

    def start(self) -> None:
        """Run in a daemon thread until `stop`."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="wulian-delivery", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the thread (after the send in progress, if any)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        self._wake.set()
        thread.join(timeout_s)

    def _run(self) -> None:
        next_purge = 0
        while not self._stopping.is_set():
            self._wake.clear()
            delay = self.interval_s
            try:
                if self.run_once() >= self.batch:
                    delay = 0  # a full batch: more may be due already
                now = self.clock()
                if now >= next_purge:  # delivered rows are kept a week, then go
                    self.outbox.purge(now - KEEP_DELIVERED_MS)
                    next_purge = now + PURGE_EVERY_MS
            except StorageUnavailable as exc:
                log.warning(t("actions.log.storage", detail=str(exc)[:200],
                              seconds=self.storage_retry_s))
                delay = self.storage_retry_s
            except Exception:
                log.exception(t("actions.log.error"))
            if delay:
                self._wake.wait(delay)
