"""The rules service: one thread that feeds stored batches to the rule engine.

Ingest hands every stored batch to `submit` (a bounded queue: ingest is slowed, never
lied to, when rules fall behind); the thread evaluates, ticks timers once a second and
writes alarm transitions with their action outbox rows in one transaction. People's
acknowledge/clear calls run on the same thread, so the engine needs no lock.
Rule changes made elsewhere (the API, the CLI, another process) are picked up through
the store's rules epoch; alarms changed without the service through its alarms epoch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from wulian.domain.clock import now_ms
from wulian.domain.message import WriteBatch
from wulian.i18n import t
from wulian.pipeline.directory import DeviceDirectory, Known
from wulian.ports import MetadataStore, StorageUnavailable
from wulian.rules.alarms import GROUP, Alarm, AlarmChange, AlarmState, ChangeKind
from wulian.rules.conditions import NoData
from wulian.rules.engine import DeviceInfo, RuleEngine
from wulian.rules.model import Rule, RuleError
from wulian.storage.rules import SqlRules

log = logging.getLogger(__name__)
T = TypeVar("T")
TICK_MS = 1000
QUEUE_POINTS_MAX = 500_000  # points waiting for evaluation before ingest is held back
SUBMIT_WAIT_S = 5.0  # how long ingest is held back before the batch is skipped (counted)
RETRY_S = 1.0
PENDING_MAX = 100_000  # alarm changes held while the database is down

ChangeListener = Callable[[AlarmChange], None]
Planner = Callable[[Rule, AlarmChange, int], list[dict[str, Any]]]


class RulesBusy(RuntimeError):
    """The rules thread did not get to a request in time; it was withdrawn, not done."""


@dataclass(frozen=True, slots=True)
class _Call:
    fn: Callable[[], Any]
    future: Future[Any]


class RulesService:
    """Owns a RuleEngine; thread-safe entry points, one evaluating thread."""

    def __init__(self, store: MetadataStore, rules: SqlRules, directory: DeviceDirectory, *,
                 clock: Callable[[], int] = now_ms, planner: Planner | None = None,
                 queue_points_max: int = QUEUE_POINTS_MAX) -> None:
        self.store = store
        self.rules = rules
        self.directory = directory
        self._clock = clock
        self._planner = planner
        self.engine = RuleEngine((), clock)
        self._queue: queue.Queue[_Sized | _Call | object | None] = queue.Queue()
        self._space = threading.Condition()
        self._waiting = 0  # points (and events, seen records) queued, not yet evaluated
        self._queue_points_max = queue_points_max
        self._listeners: list[ChangeListener] = []
        self._wakers: list[Callable[[], None]] = []
        self._thread: threading.Thread | None = None
        self._epochs = (-1, -1)
        self._versions: dict[str, int] = {}  # rule id -> version the engine runs
        self._pending: list[AlarmChange] = []  # decided but not yet stored (storage down)
        self._pending_rows: list[dict[str, Any]] = []
        self.stats: Counter[str] = Counter()

    # --- wiring ------------------------------------------------------------------------

    def on_change(self, listener: ChangeListener) -> None:
        """Call `listener(change)` after each stored alarm transition (live push)."""
        self._listeners.append(listener)

    def on_stored(self, waker: Callable[[], None]) -> None:
        """Call `waker()` after transitions with outbox rows are stored (the delivery worker)."""
        self._wakers.append(waker)

    def start(self) -> None:
        """Load rules and open alarms, then evaluate in a daemon thread."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="wulian-rules", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued, store it, and stop the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(None)
        thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None

    # --- entry points ------------------------------------------------------------------

    def submit(self, batch: WriteBatch) -> None:
        """Queue a stored batch for evaluation (a pipeline listener); may hold ingest back.

        Past `queue_points_max` waiting points the caller waits up to SUBMIT_WAIT_S; after
        that the batch is skipped by the rules (it is stored all the same), counted and
        logged, so a stalled rules thread can never stop ingest for good.
        """
        size = len(batch.points) + len(batch.events) + len(batch.seen)
        if size == 0:
            return
        with self._space:
            if not self._space.wait_for(
                    lambda: self._waiting == 0 or self._waiting + size <= self._queue_points_max,
                    SUBMIT_WAIT_S):
                self.stats["skipped_batches"] += 1
                self.stats["skipped_points"] += len(batch.points)
                log.warning(t("rules.log.skipped", points=len(batch.points)))
                return
            self._waiting += size
        self._queue.put(_Sized(batch, size))

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run `fn` on the rules thread (or here when the thread is not running)."""
        if self._thread is None or threading.current_thread() is self._thread:
            return fn()
        future: Future[T] = Future()
        self._queue.put(_Call(fn, future))
        try:
            return future.result(timeout)
        except TimeoutError:
            # not done by now: it must not happen later behind the caller's back
            if future.cancel():
                raise RulesBusy() from None
            return future.result()

    def acknowledge(self, alarm_id: str, by: str, comment: str | None = None) -> AlarmChange:
        """Acknowledge an open alarm (AlarmError when it cannot be)."""
        return self.call(lambda: self._person(alarm_id, by, comment, ack=True))

    def clear(self, alarm_id: str, by: str, comment: str | None = None) -> AlarmChange:
        """Clear an open alarm by hand (AlarmError when it is not open)."""
        return self.call(lambda: self._person(alarm_id, by, comment, ack=False))

    def reload(self) -> None:
        """Re-read the rule set soon, without waiting (it is noticed within a second anyway)."""
        if self._thread is not None:
            self._queue.put(_Call(self._sync_rules, Future()))

    # --- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        loaded = False
        next_tick = 0
        while True:
            if not loaded:
                try:
                    self._load()
                    loaded = True
                except StorageUnavailable as exc:
                    self._storage_down(exc)
                    continue
                except Exception:  # never leave `running` true over a dead thread
                    self.stats["errors"] += 1
                    log.exception(t("rules.log.error"))
                    time.sleep(RETRY_S)
                    continue
            now = self._clock()
            timeout = max(0.0, (next_tick - now) / 1000)
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = _TICK
            if item is None:
                self._drain()
                self._flush()
                return
            try:
                self._handle(item)
                now = self._clock()
                if item is _TICK or now >= next_tick:
                    next_tick = now + TICK_MS
                    self._flush()  # what memory decided is stored before it is compared
                    self._check_epochs()
                    self._collect(self.engine.tick(now))
                self._flush()
            except StorageUnavailable as exc:
                self._storage_down(exc)
            except Exception:  # a bug must not stop early warning for everyone else
                self.stats["errors"] += 1
                log.exception(t("rules.log.error"))

    def _drain(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                try:
                    self._handle(item)
                except Exception:
                    log.exception(t("rules.log.error"))

    def _handle(self, item: Any) -> None:
        if isinstance(item, _Sized):
            try:
                self._collect(self.engine.observe(item.batch, self._device))
                self.stats["batches"] += 1
                self.stats["points"] += len(item.batch.points)
            finally:
                with self._space:
                    self._waiting -= item.size
                    self._space.notify_all()
        elif isinstance(item, _Call) and item.future.set_running_or_notify_cancel():
            try:
                item.future.set_result(item.fn())
            except BaseException as exc:  # handed to the caller, who raises it
                item.future.set_exception(exc)

    def _storage_down(self, exc: StorageUnavailable) -> None:
        self.stats["storage_errors"] += 1
        log.warning(t("rules.log.storage", detail=str(exc)[:200]))
        time.sleep(RETRY_S)

    def _device(self, device_id: str) -> DeviceInfo | None:
        known = self.directory.lookup(device_id)
        return known.device if isinstance(known, Known) else None

    def _load(self) -> None:
        # epochs first: a change committed while loading must still look new afterwards
        self._epochs = self.rules.epochs()
        self._registry_epoch = self.store.registry_epoch()
        self._sync_rules()
        for record in self.rules.open_alarms():
            self.engine.alarms.restore(record.alarm)

    def _check_epochs(self) -> None:
        rules_epoch, alarms_epoch = self.rules.epochs()
        if rules_epoch != self._epochs[0]:
            self._sync_rules()
        if alarms_epoch != self._epochs[1]:
            self._sync_alarms()
        self._epochs = (rules_epoch, alarms_epoch)
        registry_epoch = self.store.registry_epoch()
        if registry_epoch != self._registry_epoch:
            self._registry_epoch = registry_epoch
            self.engine.devices_changed()
            self._sweep_deleted()

    def _sweep_deleted(self) -> None:
        """A deleted device's open alarms clear and its rule state goes (no-data would
        otherwise fire for it forever)."""
        now = self._clock()
        for alarm in self.engine.alarms.open_alarms():
            if alarm.subject != GROUP and self.store.get_device(alarm.subject) is None:
                change = self.engine.alarms.auto_clear(alarm.rule_id, "", alarm.subject, now,
                                                       alarm.value)
                if change is not None:
                    self._collect([change])
                self.engine.forget_device(alarm.subject)

    def _sync_rules(self) -> None:
        versions = self.rules.rule_versions()
        for rule_id in self._versions.keys() - versions.keys():
            self.engine.remove_rule(rule_id)  # the store already cleared its alarms
            del self._versions[rule_id]
        changed: list[Rule] = []
        for rule_id, version in versions.items():
            if self._versions.get(rule_id) == version:
                continue  # one rule changed: the other 999 are not read again
            try:
                stored = self.rules.get_rule(rule_id)
            except RuleError as exc:
                log.error(t("rules.log.unparseable", rule=rule_id, detail=str(exc)))
                self._versions[rule_id] = version
                continue
            if stored is None:
                continue
            self._versions[rule_id] = version
            changed.append(stored.rule)
        if changed:
            self._put(changed)
        self.stats["rules"] = len(self._versions)

    def _put(self, rules: list[Rule]) -> None:
        now = self._clock()
        by_id = {r.id: r for r in rules}
        for alarm in self.engine.put_rules(rules):
            # a new version keeps the open alarms it would still raise
            rule = by_id[alarm.rule_id]
            self.engine.alarms.restore(alarm)
            if not self._in_scope(rule, alarm.subject):
                change = self.engine.alarms.auto_clear(rule.id, rule.name, alarm.subject, now,
                                                       alarm.value)
                if change is not None:
                    self._collect([change])
        for rule in rules:
            self._track(rule)

    def _in_scope(self, rule: Rule, subject: str) -> bool:
        if rule.group or subject == GROUP:
            return rule.group and subject == GROUP
        device = self._device(subject)
        return device is not None and rule.scope.matches(subject, device.product, device.tags)

    def _track(self, rule: Rule) -> None:
        """Start no-data timers of a rule for the devices in its scope."""
        if not rule.enabled or not any(isinstance(n, NoData) for n in rule.condition.walk()):
            return
        now = self._clock()
        products = rule.scope.products or (None,)
        for product in products:
            offset = 0
            while True:
                page = self.store.list_devices(product=product, limit=1000, offset=offset)
                for device in page:
                    if rule.scope.matches(device.id, device.product, device.tags):
                        status = self.store.device_status(device.id)
                        since = status.last_seen_ms if status and status.last_seen_ms else now
                        self.engine.track(device.id, device, since)
                if len(page) < 1000:
                    break
                offset += 1000

    def _sync_alarms(self) -> None:
        """Follow acknowledges and clears people made without this service (the CLI)."""
        stored = {r.alarm.id: r.alarm for r in self.rules.open_alarms()}
        pending = {c.alarm_id for c in self._pending}
        for alarm in self.engine.alarms.open_alarms():
            if alarm.id in pending:
                continue  # decided here, not yet stored: not "cleared elsewhere"
            now_stored = stored.get(alarm.id)
            if now_stored is None:
                record = self.rules.get_alarm(alarm.id)
                by = record.alarm.cleared_by if record else None
                self.engine.clear(alarm.id, by or "?", None)
            elif now_stored.state is AlarmState.ACKNOWLEDGED and \
                    alarm.state is AlarmState.ACTIVE:
                self.engine.alarms.restore(now_stored)

    def _person(self, alarm_id: str, by: str, comment: str | None, *, ack: bool) -> AlarmChange:
        if self.engine.alarms.find(alarm_id) is None:
            # not in memory (raised by another process, or the service is not running):
            # the store decides
            change = (self.rules.acknowledge if ack else self.rules.clear)(
                alarm_id, by, comment)
            self._notify([change])
            return change
        before = self.engine.alarms.find(alarm_id)
        change = (self.engine.acknowledge if ack else self.engine.clear)(alarm_id, by, comment)
        self._collect([change])
        try:
            self._flush()
        except StorageUnavailable:
            # not stored, so not done: the person is told so (503) and may try again
            self._pending.remove(change)
            self._pending_rows = [r for r in self._pending_rows
                                  if not (r["alarm_id"] == alarm_id and
                                          r["change"] == change.kind.value)]
            if before is not None:
                self.engine.alarms.restore(before)
            raise
        return change

    # --- storing -----------------------------------------------------------------------

    def _collect(self, changes: list[AlarmChange]) -> None:
        if not changes:
            return
        self._pending.extend(changes)
        if self._planner is None:
            return
        rules = {r.id: r for r in self.engine.rules}
        for change in changes:
            rule = rules.get(change.rule_id)
            if rule is not None:
                try:
                    self._pending_rows.extend(self._planner(rule, change, self._clock()))
                except Exception:
                    self.stats["errors"] += 1
                    log.exception(t("rules.log.error"))

    def _flush(self) -> None:
        updated = self.engine.alarms.take_dirty()
        if not self._pending and not updated:
            return
        try:
            written, dropped = self.rules.apply(self._pending, updated, self._pending_rows)
        except StorageUnavailable:
            self.engine.alarms.requeue(updated)  # written with the next attempt
            if len(self._pending) > PENDING_MAX:  # a long outage: keep the newest
                self.stats["changes_lost"] += len(self._pending) - PENDING_MAX
                self._pending = self._pending[-PENDING_MAX:]
            raise
        except Exception:
            # the database refuses something in it (not an outage): store what it takes
            written, dropped = self._flush_one_by_one(updated)
        for alarm_id in dropped:
            self.engine.alarms.drop(alarm_id)  # memory follows the store
        had_rows = bool(self._pending_rows)
        self._pending, self._pending_rows = [], []
        self.stats["changes"] += len(written)
        self._notify(written)
        if had_rows:
            for waker in self._wakers:
                waker()

    def _flush_one_by_one(self, updated: list[Alarm]) -> tuple[list[AlarmChange], list[str]]:
        written: list[AlarmChange] = []
        dropped: list[str] = []
        for change in self._pending:
            rows = [r for r in self._pending_rows if r["alarm_id"] == change.alarm_id
                    and r["change"] == change.kind.value]
            try:
                done, lost = self.rules.apply([change], [], rows)
            except StorageUnavailable:
                raise
            except Exception:
                self.stats["changes_refused"] += 1
                log.exception(t("rules.log.refused", alarm=change.alarm_id))
                if change.kind is ChangeKind.RAISED:
                    dropped.append(change.alarm_id)
                continue
            written.extend(done)
            dropped.extend(lost)
        for alarm in updated:
            try:
                self.rules.apply([], [alarm], [])
            except StorageUnavailable:
                raise
            except Exception:
                self.stats["changes_refused"] += 1
                log.exception(t("rules.log.refused", alarm=alarm.id))
        return written, dropped

    def _notify(self, changes: list[AlarmChange]) -> None:
        for change in changes:
            self.stats[f"alarms.{change.kind.value}"] += 1
            for listener in self._listeners:
                try:
                    listener(change)
                except Exception:
                    log.exception(t("rules.log.error"))


@dataclass(frozen=True, slots=True)
class _Sized:
    batch: WriteBatch
    size: int


_TICK = object()
