"""The rule engine: feed it stored batches and clock ticks, get alarm changes back.

Rules are indexed by (product, property) and (product, event), so a point meets only the
rules that can use it. State is kept per (rule, subject) — a device, or the group of an
aggregate rule — and lives only as long as the rule and the device do.
Time is data time: a point is judged at its own timestamp, so replaying history
(backtest) gives the answers live ingest gave; `tick(now)` advances timers (no-data,
`for`, windows) when nothing arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from wulian.domain.device import Location
from wulian.domain.message import Value, WriteBatch
from wulian.rules.alarms import GROUP, Alarm, AlarmBook, AlarmChange
from wulian.rules.conditions import (
    Aggregate,
    Condition,
    Context,
    EventOccurred,
    GroupWindow,
    NoData,
    RateOfChange,
)
from wulian.rules.model import Rule

_NOTHING: Mapping[str, tuple[int, Value]] = {}
CANDIDATES_MAX = 1_000_000


class DeviceInfo(Protocol):
    """What the engine needs to know of a device (`wulian.domain.device.Device` fits)."""

    @property
    def product(self) -> str: ...

    @property
    def tags(self) -> Mapping[str, str]: ...

    @property
    def location(self) -> Location | None: ...


DeviceLookup = Callable[[str], DeviceInfo | None]


@dataclass(slots=True)
class Subject:
    """The evaluation state of one (rule, subject)."""

    states: dict[int, Any]
    location: tuple[float, float] | None = None
    pending_since: int | None = None  # condition holds, waiting out `for`
    clearing_since: int | None = None  # clear condition holds, waiting out `clear_for`
    armed: bool = True  # False after a person cleared an alarm whose condition still held


@dataclass(slots=True)
class Compiled:
    """A rule with what the engine precomputes for it."""

    rule: Rule
    stateful: tuple[Condition, ...]
    by_prop: dict[str, tuple[Condition, ...]]
    events: tuple[EventOccurred, ...]
    timed: bool
    subjects: dict[str, Subject] = field(default_factory=dict)

    @classmethod
    def of(cls, rule: Rule) -> Compiled:
        nodes = list(rule.condition.walk())
        if rule.clear is not None:
            nodes.extend(rule.clear.walk())
        stateful = tuple(n for n in nodes if n.new_state() is not None)
        by_prop: dict[str, list[Condition]] = {}
        for node in stateful:
            for prop in node.props():
                by_prop.setdefault(prop, []).append(node)
        events = tuple(n for n in nodes if isinstance(n, EventOccurred))
        timed = bool(rule.for_ms or rule.clear_for_ms) or any(
            isinstance(n, NoData | RateOfChange | Aggregate)
            or (isinstance(n, EventOccurred) and n.within_ms) for n in nodes)
        return cls(rule, stateful, {k: tuple(v) for k, v in by_prop.items()}, events, timed)

    def subject(self, key: str) -> Subject:
        subject = self.subjects.get(key)
        if subject is None:
            subject = self.subjects[key] = Subject({id(n): n.new_state() for n in self.stateful})
        return subject


class RuleEngine:
    """Evaluates rules over stored batches; owns the open alarms (`self.alarms`)."""

    def __init__(self, rules: Iterable[Rule], clock: Callable[[], int]) -> None:
        self._clock = clock
        self.alarms = AlarmBook()
        self._rules: dict[str, Compiled] = {}
        self._by_prop: dict[tuple[str | None, str], list[Compiled]] = {}
        self._by_event: dict[tuple[str | None, str], list[Compiled]] = {}
        self._by_seen: dict[str | None, list[Compiled]] = {}
        self._latest: dict[str, dict[str, tuple[int, Value]]] = {}
        # (device, property) -> the rules a point of it meets: scope matching per point was
        # most of the engine's time with a thousand rules; devices_changed() clears it
        self._candidates: dict[tuple[str, str], tuple[Compiled, ...]] = {}
        for rule in rules:
            self._rules[rule.id] = Compiled.of(rule)
        self._reindex()

    # --- rule set ----------------------------------------------------------------------

    @property
    def rules(self) -> list[Rule]:
        return [c.rule for c in self._rules.values()]

    def put_rule(self, rule: Rule) -> list[Alarm]:
        """Add or replace a rule (its state restarts); returns open alarms it dropped."""
        return self.put_rules([rule])

    def put_rules(self, rules: Iterable[Rule]) -> list[Alarm]:
        """Add or replace several rules, indexing once (a thousand at start-up)."""
        dropped: list[Alarm] = []
        for rule in rules:
            if self._rules.pop(rule.id, None) is not None:
                dropped.extend(self.alarms.forget(rule.id))
            self._rules[rule.id] = Compiled.of(rule)
        self._reindex()
        return dropped

    def remove_rule(self, rule_id: str) -> list[Alarm]:
        """Remove a rule and its state; returns its open alarms (the caller closes them)."""
        if self._rules.pop(rule_id, None) is None:
            return []
        self._reindex()
        return self.alarms.forget(rule_id)

    def devices_changed(self) -> None:
        """A device's product or tags may have changed: match scopes afresh."""
        self._candidates.clear()

    def forget_device(self, device_id: str) -> None:
        """Drop a deleted device's state (keeps memory bounded by the registry)."""
        self._candidates.clear()
        self._latest.pop(device_id, None)
        for compiled in self._rules.values():
            compiled.subjects.pop(device_id, None)

    def _reindex(self) -> None:
        self._candidates.clear()
        self._by_prop.clear()
        self._by_event.clear()
        self._by_seen.clear()
        for compiled in self._rules.values():
            rule = compiled.rule
            if not rule.enabled:
                continue
            products: tuple[str | None, ...] = rule.scope.products or (None,)
            nodes = list(rule.condition.walk()) + list(rule.clear.walk() if rule.clear else ())
            props = frozenset().union(*(n.props() for n in nodes))
            events = frozenset().union(*(n.events() for n in nodes))
            seen = any(isinstance(n, NoData) and n.property is None for n in nodes)
            for product in products:
                for prop in props:
                    self._by_prop.setdefault((product, prop), []).append(compiled)
                for event in events:
                    self._by_event.setdefault((product, event), []).append(compiled)
                if seen:
                    self._by_seen.setdefault(product, []).append(compiled)
        self._watched = {prop for _, prop in self._by_prop}

    # --- evaluation --------------------------------------------------------------------

    def observe(self, batch: WriteBatch, devices: DeviceLookup) -> list[AlarmChange]:
        """Evaluate the rules a stored batch can affect; returns the alarm transitions."""
        changes: list[AlarmChange] = []
        known: dict[str, DeviceInfo | None] = {}

        def info(device_id: str) -> DeviceInfo | None:
            if device_id not in known:
                known[device_id] = devices(device_id)
            return known[device_id]

        for device_id, prop, ts, value in batch.points:
            if prop not in self._watched:
                continue
            device = info(device_id)
            if device is None:
                continue
            candidates = self._candidates.get((device_id, prop))
            if candidates is None:
                candidates = tuple(
                    c for product in (device.product, None)
                    for c in self._by_prop.get((product, prop), ())
                    if c.rule.scope.matches(device_id, device.product, device.tags))
                if len(self._candidates) >= CANDIDATES_MAX:
                    self._candidates.clear()  # bounded; refilled as points come
                self._candidates[(device_id, prop)] = candidates
            if not candidates:
                continue  # remember values only where a rule can read them
            latest = self._latest.setdefault(device_id, {})
            previous = latest.get(prop)
            if previous is not None and previous[0] > ts:
                continue  # a late point is stored, but rules judge the newest reading
            latest[prop] = (ts, value)
            for compiled in candidates:
                self._point(compiled, device_id, device, prop, ts, value, changes)
        for event in batch.events:
            device = info(event.device_id)
            if device is None:
                continue
            for product in (device.product, None):
                for compiled in self._by_event.get((product, event.event), ()):
                    if not compiled.rule.scope.matches(event.device_id, device.product,
                                                       device.tags):
                        continue
                    subject = self._subject(compiled, event.device_id, device)
                    for node in compiled.events:
                        node.feed_event(subject.states[id(node)], event.event, event.ts,
                                        event.params)
                    self._decide(compiled, event.device_id, subject, event.ts, None, changes)
        for device_id, seen in batch.seen.items():
            device = info(device_id)
            if device is not None:
                self._seen(device_id, device, seen.ts, changes)
        return changes

    def track(self, device_id: str, device: DeviceInfo, since_ms: int) -> None:
        """Start no-data timers for a registered device not heard from since `since_ms`."""
        self._seen(device_id, device, since_ms, [])

    def tick(self, now_ms: int) -> list[AlarmChange]:
        """Advance time-driven rules (no-data, `for`, windows) to `now_ms`."""
        changes: list[AlarmChange] = []
        for compiled in self._rules.values():
            if compiled.timed and compiled.rule.enabled:
                for key, subject in list(compiled.subjects.items()):
                    self._decide(compiled, key, subject, now_ms, None, changes, fresh=False)
        return changes

    def _subject(self, compiled: Compiled, device_id: str, device: DeviceInfo) -> Subject:
        subject = compiled.subject(device_id)
        if device.location is not None:
            subject.location = (device.location.lat, device.location.lon)
        return subject

    def _point(self, compiled: Compiled, device_id: str, device: DeviceInfo, prop: str, ts: int,
               value: Value, changes: list[AlarmChange]) -> None:
        if compiled.rule.group:
            subject = compiled.subject(GROUP)
            if isinstance(value, int | float) and not isinstance(value, bool):
                for node in compiled.by_prop.get(prop, ()):
                    state: GroupWindow = subject.states[id(node)]
                    state.add(device_id, ts, float(value))
            self._decide(compiled, GROUP, subject, ts, None, changes)
            return
        subject = self._subject(compiled, device_id, device)
        for node in compiled.by_prop.get(prop, ()):
            node.feed_point(subject.states[id(node)], prop, ts, value)
        self._decide(compiled, device_id, subject, ts, value, changes)

    def _seen(self, device_id: str, device: DeviceInfo, ts: int,
              changes: list[AlarmChange]) -> None:
        for product in (device.product, None):
            for compiled in self._by_seen.get(product, ()):
                if not compiled.rule.scope.matches(device_id, device.product, device.tags):
                    continue
                subject = self._subject(compiled, device_id, device)
                for node in compiled.stateful:
                    if isinstance(node, NoData) and node.property is None:
                        node.feed_point(subject.states[id(node)], "", ts, 0)
                self._decide(compiled, device_id, subject, ts, None, changes)

    def _decide(self, compiled: Compiled, key: str, subject: Subject, now: int,
                value: Value | None, changes: list[AlarmChange], *, fresh: bool = True) -> None:
        """Turn the condition's answer at `now` into alarm transitions.

        `fresh` is False on a tick: time passing may raise or clear, but only data counts
        as a repeated firing of an open alarm.
        """
        rule = compiled.rule
        ctx = Context(self._latest.get(key, _NOTHING), subject.states, subject.location)
        holds = rule.condition.holds(ctx, now)
        if rule.group and isinstance(rule.condition, Aggregate):
            value = rule.condition.measure(subject.states[id(rule.condition)], now)
        for node in compiled.events:
            subject.states[id(node)].fresh = False
        alarm = self.alarms.get(rule.id, key)
        if alarm is not None:
            if holds and fresh:
                self.alarms.fire(rule.id, rule.name, key, rule.severity, now, value)
            if rule.latched:
                return
            cleared = rule.clear.holds(ctx, now) if rule.clear is not None else holds is False
            if not cleared:
                subject.clearing_since = None
                return
            if subject.clearing_since is None:
                subject.clearing_since = now
            if now - subject.clearing_since >= rule.clear_for_ms:
                change = self.alarms.auto_clear(rule.id, rule.name, key, now, value)
                if change is not None:
                    changes.append(change)
                subject.clearing_since = subject.pending_since = None
            return
        if holds is False:
            subject.pending_since = None
            subject.armed = True
        elif holds and subject.armed:
            if subject.pending_since is None:
                subject.pending_since = now
            if now - subject.pending_since >= rule.for_ms:
                change = self.alarms.fire(rule.id, rule.name, key, rule.severity, now, value)
                if change is not None:
                    changes.append(change)
                subject.pending_since = subject.clearing_since = None

    # --- people ------------------------------------------------------------------------

    def acknowledge(self, alarm_id: str, by: str, comment: str | None = None) -> AlarmChange:
        """Acknowledge an open alarm now (AlarmError when it cannot be)."""
        alarm = self.alarms.find(alarm_id)
        name = self._rules[alarm.rule_id].rule.name if alarm and alarm.rule_id in self._rules \
            else ""
        return self.alarms.acknowledge(alarm_id, by, self._clock(), comment, name)

    def clear(self, alarm_id: str, by: str, comment: str | None = None) -> AlarmChange:
        """Clear an open alarm now; it is raised again only after the condition lets go."""
        alarm = self.alarms.find(alarm_id)
        compiled = self._rules.get(alarm.rule_id) if alarm else None
        change = self.alarms.clear(alarm_id, by, self._clock(), comment,
                                   compiled.rule.name if compiled else "")
        if compiled is not None and not compiled.rule.latched:
            subject = compiled.subjects.get(change.subject)
            if subject is not None:
                subject.armed = False
                subject.pending_since = subject.clearing_since = None
        return change
