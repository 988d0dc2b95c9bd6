"""Alarms: one per (rule, subject) at a time, with a lifecycle and a history of changes.

The subject is a device id, or `GROUP` for an aggregate rule. Every transition is an
`AlarmChange` (what persistence stores and the live stream pushes); repeated firings of an
open alarm only update it, and `take_dirty` hands those updates over in bulk.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from wulian.domain.message import Value
from wulian.rules.model import Severity

GROUP = "*"  # never a device id (DEVICE_ID does not allow it)


class AlarmState(StrEnum):
    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


class ChangeKind(StrEnum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


class AlarmError(ValueError):
    """An operator asked for a transition the alarm's state does not allow."""

    def __init__(self, alarm_id: str, problem: str) -> None:
        super().__init__(f"{alarm_id}: {problem}")
        self.alarm_id = alarm_id
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Alarm:
    """An alarm as it stands. `id` is deterministic: `{rule}/{subject}/{raised_ms}`."""

    id: str
    rule_id: str
    subject: str
    severity: Severity
    state: AlarmState
    raised_ms: int
    last_ms: int
    count: int
    value: Value | None
    first_value: Value | None
    acknowledged_by: str | None = None
    acknowledged_ms: int | None = None
    ack_comment: str | None = None
    cleared_by: str | None = None  # None with cleared_ms set: cleared by the rule itself
    cleared_ms: int | None = None
    clear_comment: str | None = None

    @property
    def open(self) -> bool:
        return self.state is not AlarmState.CLEARED

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """One transition, kept as history and pushed live."""

    alarm_id: str
    rule_id: str
    subject: str
    kind: ChangeKind
    ts: int
    severity: Severity
    value: Value | None = None
    by: str | None = None
    comment: str | None = None
    rule_name: str = ""

    def message(self, lang: str | None = None) -> str:
        """The human-readable line, in `lang` (see wulian.i18n)."""
        from wulian.i18n import t  # the domain stays free of the catalogue at import time

        subject = t("rules.group", lang) if self.subject == GROUP else self.subject
        key = f"rules.alarm.{self.kind.value}" + ("_by" if self.by else "")
        return t(key, lang, rule=self.rule_name or self.rule_id, subject=subject,
                 severity=t(f"rules.severity.{self.severity.value}", lang),
                 value=self.value, by=self.by)


class AlarmBook:
    """The open alarms of one engine, keyed by (rule, subject)."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], Alarm] = {}
        self._dirty: dict[str, Alarm] = {}
        # the time part of the last id handed out per (rule, subject), so an alarm raised
        # again in the same millisecond its predecessor was raised or cleared gets a new id
        self._last_id_ts: dict[tuple[str, str], int] = {}

    def __len__(self) -> int:
        return len(self._open)

    def get(self, rule_id: str, subject: str) -> Alarm | None:
        return self._open.get((rule_id, subject))

    def find(self, alarm_id: str) -> Alarm | None:
        rule_id, _, rest = alarm_id.partition("/")
        subject = rest.rpartition("/")[0]
        alarm = self._open.get((rule_id, subject))
        return alarm if alarm is not None and alarm.id == alarm_id else None

    def open_alarms(self) -> list[Alarm]:
        return list(self._open.values())

    def restore(self, alarm: Alarm) -> None:
        """Put back an open alarm loaded from storage (after a restart)."""
        if alarm.open:
            key = (alarm.rule_id, alarm.subject)
            self._open[key] = alarm
            id_ts = int(alarm.id.rpartition("/")[2] or 0)
            self._last_id_ts[key] = max(self._last_id_ts.get(key, id_ts), id_ts)

    def drop(self, alarm_id: str) -> Alarm | None:
        """Forget an open alarm without a transition (its raise was never stored)."""
        alarm = self.find(alarm_id)
        if alarm is not None:
            del self._open[(alarm.rule_id, alarm.subject)]
            self._dirty.pop(alarm.id, None)
        return alarm

    def fire(self, rule_id: str, rule_name: str, subject: str, severity: Severity, ts: int,
             value: Value | None) -> AlarmChange | None:
        """The condition holds: raise a new alarm, or update the open one (None then)."""
        key = (rule_id, subject)
        alarm = self._open.get(key)
        if alarm is not None:
            updated = replace(alarm, count=alarm.count + 1, value=value,
                              last_ms=max(alarm.last_ms, ts))
            self._open[key] = self._dirty[alarm.id] = updated
            return None
        last = self._last_id_ts.get(key)
        id_ts = ts if last is None or ts > last else last + 1
        self._last_id_ts[key] = id_ts
        alarm = Alarm(id=f"{rule_id}/{subject}/{id_ts}", rule_id=rule_id, subject=subject,
                      severity=severity, state=AlarmState.ACTIVE, raised_ms=ts, last_ms=ts,
                      count=1, value=value, first_value=value)
        self._open[key] = alarm
        return AlarmChange(alarm.id, rule_id, subject, ChangeKind.RAISED, ts, severity,
                           value, rule_name=rule_name)

    def auto_clear(self, rule_id: str, rule_name: str, subject: str, ts: int,
                   value: Value | None) -> AlarmChange | None:
        """The rule's clear condition holds: close the open alarm, if any."""
        alarm = self._open.pop((rule_id, subject), None)
        if alarm is None:
            return None
        self._dirty.pop(alarm.id, None)
        return AlarmChange(alarm.id, rule_id, subject, ChangeKind.CLEARED, ts, alarm.severity,
                           value, rule_name=rule_name)

    def acknowledge(self, alarm_id: str, by: str, ts: int, comment: str | None = None,
                    rule_name: str = "") -> AlarmChange:
        """A person takes the alarm on; only an active alarm can be acknowledged."""
        alarm = self._require(alarm_id, by)
        if alarm.state is not AlarmState.ACTIVE:
            raise AlarmError(alarm_id, "is already acknowledged")
        self._open[(alarm.rule_id, alarm.subject)] = replace(
            alarm, state=AlarmState.ACKNOWLEDGED, acknowledged_by=by, acknowledged_ms=ts,
            ack_comment=comment)
        self._dirty.pop(alarm.id, None)
        return AlarmChange(alarm.id, alarm.rule_id, alarm.subject, ChangeKind.ACKNOWLEDGED,
                           ts, alarm.severity, alarm.value, by, comment, rule_name)

    def clear(self, alarm_id: str, by: str, ts: int, comment: str | None = None,
              rule_name: str = "") -> AlarmChange:
        """A person closes the alarm (active or acknowledged)."""
        alarm = self._require(alarm_id, by)
        del self._open[(alarm.rule_id, alarm.subject)]
        self._dirty.pop(alarm.id, None)
        return AlarmChange(alarm.id, alarm.rule_id, alarm.subject, ChangeKind.CLEARED, ts,
                           alarm.severity, alarm.value, by, comment, rule_name)

    def forget(self, rule_id: str) -> list[Alarm]:
        """Drop the open alarms of a removed rule; returns them."""
        gone = [a for key, a in self._open.items() if key[0] == rule_id]
        for alarm in gone:
            del self._open[(alarm.rule_id, alarm.subject)]
            self._dirty.pop(alarm.id, None)
        return gone

    def take_dirty(self) -> list[Alarm]:
        """Open alarms whose count/value changed since the last call (for a bulk upsert)."""
        dirty, self._dirty = list(self._dirty.values()), {}
        return dirty

    def requeue(self, alarms: list[Alarm]) -> None:
        """Hand back updates `take_dirty` gave out that could not be stored; newer ones win."""
        for alarm in alarms:
            if self._open.get((alarm.rule_id, alarm.subject)) is not None:
                self._dirty.setdefault(alarm.id, self._open[(alarm.rule_id, alarm.subject)])

    def _require(self, alarm_id: str, by: str) -> Alarm:
        if not isinstance(by, str) or not by.strip():
            raise AlarmError(alarm_id, "needs who (by)")
        alarm = self.find(alarm_id)
        if alarm is None:
            raise AlarmError(alarm_id, "is not open (already cleared or unknown)")
        return alarm
