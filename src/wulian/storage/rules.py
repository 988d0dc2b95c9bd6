"""Rules, alarms and alarm history on SQLAlchemy Core, for both backends.

The rules service is the only writer of alarm transitions it decides itself; a person's
acknowledge/clear made without a running service (the CLI) is written here directly and
announced through the `_alarms_epoch` counter, which the service watches.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    and_,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import exc as sa_exc

from wulian.domain.clock import now_ms
from wulian.i18n import t
from wulian.ports import Conflict, NotFound
from wulian.rules.alarms import Alarm, AlarmChange, AlarmError, AlarmState, ChangeKind
from wulian.rules.model import Rule, RuleError, Severity, parse_rule
from wulian.storage.schema import action_deliveries, alarm_changes, alarms, counters, rules
from wulian.storage.sqlbase import SqlBase

log = logging.getLogger(__name__)
RULES_EPOCH = "_rules_epoch"  # bumped with every rule change: the service reloads its set
ALARMS_EPOCH = "_alarms_epoch"  # bumped when a person changes an alarm outside the service
OPEN_STATES = (AlarmState.ACTIVE.value, AlarmState.ACKNOWLEDGED.value)


@dataclass(frozen=True, slots=True)
class StoredRule:
    """A rule as kept: the document as given, parsed, with bookkeeping."""

    rule: Rule
    version: int
    created_ms: int
    updated_ms: int

    @property
    def doc(self) -> Mapping[str, Any]:
        return self.rule.doc


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """An alarm with the name its rule had when it was raised."""

    alarm: Alarm
    rule_name: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.alarm.to_dict(), "rule_name": self.rule_name}


@dataclass(frozen=True, slots=True)
class AlarmQuery:
    """Filters for listing alarms; `state` may also be "open" (active or acknowledged)."""

    state: str | None = None
    severity: str | None = None
    device: str | None = None
    rule: str | None = None
    since: int | None = None
    until: int | None = None
    limit: int = 100
    offset: int = 0


def _clean_value(value: Any) -> Any:
    # PostgreSQL's text and JSONB take no NUL character; a device may still send one
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else value


def _clean_change(change: AlarmChange) -> AlarmChange:
    if isinstance(change.value, str) or change.comment or change.by:
        return replace(change, value=_clean_value(change.value),
                       comment=_clean_value(change.comment), by=_clean_value(change.by))
    return change


def _alarm(row: Row[Any]) -> AlarmRecord:
    m = row._mapping
    alarm = Alarm(
        id=m["id"], rule_id=m["rule_id"], subject=m["subject"],
        severity=Severity(m["severity"]), state=AlarmState(m["state"]),
        raised_ms=m["raised_ms"], last_ms=m["last_ms"], count=m["count"], value=m["value"],
        first_value=m["first_value"], acknowledged_by=m["acknowledged_by"],
        acknowledged_ms=m["acknowledged_ms"], ack_comment=m["ack_comment"],
        cleared_by=m["cleared_by"], cleared_ms=m["cleared_ms"],
        clear_comment=m["clear_comment"])
    return AlarmRecord(alarm, m["rule_name"])


def change_from_row(row: Row[Any]) -> AlarmChange:
    m = row._mapping
    return AlarmChange(m["alarm_id"], m["rule_id"], m["subject"], ChangeKind(m["kind"]),
                       m["ts"], Severity(m["severity"]), m["value"], m["by"], m["comment"])


class SqlRules(SqlBase):
    """Rules, alarms, alarm history and the action outbox's inserts over one engine."""

    def epochs(self) -> tuple[int, int]:
        """(rules epoch, alarms epoch): cheap to read once a second."""
        with self._reading() as conn:
            found = dict(conn.execute(select(counters.c.name, counters.c.value).where(
                counters.c.name.in_((RULES_EPOCH, ALARMS_EPOCH)))).all())
        return int(found.get(RULES_EPOCH, 0)), int(found.get(ALARMS_EPOCH, 0))

    # --- rules -------------------------------------------------------------------------

    def put_rule(self, rule: Rule, *, create_only: bool = False) -> StoredRule:
        """Insert or replace a rule (its version goes up); Conflict with create_only."""
        now = now_ms()
        doc = dict(rule.doc)
        with self._writing() as conn:
            old = conn.execute(select(rules.c.version, rules.c.created_ms)
                               .where(rules.c.id == rule.id)).first()
            if old is not None and create_only:
                raise Conflict(f"rule {rule.id} exists")
            self._bump(conn, RULES_EPOCH)
            values = {"name": rule.name, "doc": doc, "enabled": rule.enabled,
                      "updated_ms": now}
            if old is None:
                conn.execute(insert(rules).values(id=rule.id, version=1, created_ms=now,
                                                  **values))
                return StoredRule(rule, 1, now, now)
            conn.execute(update(rules).where(rules.c.id == rule.id)
                         .values(version=old.version + 1, **values))
            return StoredRule(rule, old.version + 1, old.created_ms, now)

    def set_enabled(self, rule_id: str, enabled: bool) -> StoredRule:
        """Switch a rule on or off (the document's `enabled` follows); NotFound when absent."""
        stored = self.get_rule(rule_id)
        if stored is None:
            raise NotFound(rule_id)
        doc = {**stored.doc, "enabled": enabled}
        return self.put_rule(parse_rule(doc))

    def get_rule(self, rule_id: str) -> StoredRule | None:
        with self._reading() as conn:
            row = conn.execute(select(rules).where(rules.c.id == rule_id)).first()
        return self._stored(row) if row is not None else None

    @staticmethod
    def _stored(row: Row[Any]) -> StoredRule:
        m = row._mapping
        return StoredRule(parse_rule(m["doc"]), m["version"], m["created_ms"], m["updated_ms"])

    def rule_versions(self) -> dict[str, int]:
        """Each rule's id and version: cheap to compare, so a change re-reads one rule."""
        with self._reading() as conn:
            rows = conn.execute(select(rules.c.id, rules.c.version)).all()
        return {rule_id: int(version) for rule_id, version in rows}

    def list_rules(self) -> list[StoredRule]:
        """Every stored rule that parses; one that no longer does is logged and skipped."""
        with self._reading() as conn:
            rows = conn.execute(select(rules).order_by(rules.c.id)).all()
        found = []
        for row in rows:
            try:
                found.append(self._stored(row))
            except RuleError as exc:
                # e.g. written by a newer version: the others must still run
                log.error(t("rules.log.unparseable", rule=row._mapping["id"], detail=str(exc)))
        return found

    def count_org_rules(self, org_id: str) -> int:
        """How many rules an organisation holds."""
        with self._reading() as conn:
            return int(conn.scalar(select(func.count()).select_from(rules)
                                   .where(rules.c.org_id == org_id)) or 0)

    def delete_rule(self, rule_id: str, *, by: str | None = None) -> bool:
        """Remove a rule; its open alarms are cleared (kept in history). False when absent."""
        now = now_ms()
        with self._writing() as conn:
            gone = conn.execute(delete(rules).where(rules.c.id == rule_id)).rowcount
            if not gone:
                return False
            self._bump(conn, RULES_EPOCH)
            open_rows = conn.execute(select(alarms).where(
                alarms.c.rule_id == rule_id, alarms.c.state.in_(OPEN_STATES))).all()
            for row in open_rows:
                record = _alarm(row)
                self._close(conn, record.alarm, by, now, None)
        return True

    # --- alarms: the service's transitions -------------------------------------------

    def apply(self, changes: Sequence[AlarmChange], updated: Sequence[Alarm],
              delivery_rows: Sequence[Mapping[str, Any]] = (),
              ) -> tuple[list[AlarmChange], list[str]]:
        """Write transitions, updated open alarms and outbox rows in one transaction.

        Returns the changes actually written, and the ids of raises that were not: one
        another process already holds open for the same (rule, subject), one whose id is
        taken, or one of a rule deleted meanwhile (never duplicated; their outbox rows and
        later changes are not written either).
        """
        written: list[AlarmChange] = []
        dropped: list[str] = []
        with self._writing() as conn:
            for change in changes:
                change = _clean_change(change)
                if change.alarm_id in dropped:
                    continue
                if change.kind is ChangeKind.RAISED:
                    alarm = Alarm(change.alarm_id, change.rule_id, change.subject,
                                  change.severity, AlarmState.ACTIVE, change.ts, change.ts, 1,
                                  change.value, change.value)
                    rule_exists = conn.scalar(select(rules.c.id).where(
                        rules.c.id == change.rule_id)) is not None
                    if not rule_exists or not self._insert_alarm(conn, alarm,
                                                                 change.rule_name):
                        dropped.append(change.alarm_id)
                        continue
                elif change.kind is ChangeKind.ACKNOWLEDGED:
                    done = conn.execute(update(alarms).where(
                        alarms.c.id == change.alarm_id,
                        alarms.c.state == AlarmState.ACTIVE.value).values(
                        state=AlarmState.ACKNOWLEDGED.value, acknowledged_by=change.by,
                        acknowledged_ms=change.ts, ack_comment=change.comment))
                    if not done.rowcount:
                        continue  # no longer active in the store: nothing to record
                else:
                    conn.execute(update(alarms).where(
                        alarms.c.id == change.alarm_id,
                        alarms.c.state.in_(OPEN_STATES)).values(
                        state=AlarmState.CLEARED.value, cleared_by=change.by,
                        cleared_ms=change.ts, clear_comment=change.comment,
                        last_ms=func.max(alarms.c.last_ms, change.ts)
                        if self.engine.dialect.name == "sqlite"
                        else func.greatest(alarms.c.last_ms, change.ts)))
                self._history(conn, change)
                written.append(change)
            for alarm in updated:
                conn.execute(update(alarms).where(
                    alarms.c.id == alarm.id, alarms.c.state.in_(OPEN_STATES)).values(
                    count=alarm.count, value=_clean_value(alarm.value), last_ms=alarm.last_ms))
            kept = {(c.alarm_id, c.kind.value) for c in written}
            rows = [r for r in delivery_rows if (r["alarm_id"], r["change"]) in kept]
            if rows:
                conn.execute(insert(action_deliveries), rows)
        return written, dropped

    def _insert_alarm(self, conn: Connection, alarm: Alarm, rule_name: str) -> bool:
        values = {**alarm.to_dict(), "state": alarm.state.value,
                  "severity": alarm.severity.value, "rule_name": rule_name}
        try:
            with conn.begin_nested():
                conn.execute(insert(alarms).values(**values))
        except sa_exc.IntegrityError:
            return False  # already open elsewhere (or the same id written before a crash)
        return True

    @staticmethod
    def _history(conn: Connection, change: AlarmChange) -> None:
        conn.execute(insert(alarm_changes).values(
            alarm_id=change.alarm_id, rule_id=change.rule_id, subject=change.subject,
            kind=change.kind.value, ts=change.ts, severity=change.severity.value,
            value=change.value, by=change.by, comment=change.comment))

    def _close(self, conn: Connection, alarm: Alarm, by: str | None, ts: int,
               comment: str | None) -> AlarmChange:
        conn.execute(update(alarms).where(alarms.c.id == alarm.id).values(
            state=AlarmState.CLEARED.value, cleared_by=by, cleared_ms=ts,
            clear_comment=comment))
        change = AlarmChange(alarm.id, alarm.rule_id, alarm.subject, ChangeKind.CLEARED, ts,
                             alarm.severity, alarm.value, by, comment)
        self._history(conn, change)
        return change

    # --- alarms: people, without the service -------------------------------------------

    def acknowledge(self, alarm_id: str, by: str, comment: str | None = None,
                    ts: int | None = None) -> AlarmChange:
        """Acknowledge an active alarm directly in the store (AlarmError when it cannot be)."""
        return self._person(alarm_id, by, comment, ts, ChangeKind.ACKNOWLEDGED)

    def clear(self, alarm_id: str, by: str, comment: str | None = None,
              ts: int | None = None) -> AlarmChange:
        """Clear an open alarm directly in the store (AlarmError when it is not open)."""
        return self._person(alarm_id, by, comment, ts, ChangeKind.CLEARED)

    def _person(self, alarm_id: str, by: str, comment: str | None, ts: int | None,
                kind: ChangeKind) -> AlarmChange:
        if not by.strip():
            raise AlarmError(alarm_id, "needs who (by)")
        by, comment = _clean_value(by), _clean_value(comment)
        ts = now_ms() if ts is None else ts
        with self._writing() as conn:
            row = conn.execute(select(alarms).where(alarms.c.id == alarm_id)).first()
            if row is None or row._mapping["state"] not in OPEN_STATES:
                raise AlarmError(alarm_id, "is not open (already cleared or unknown)")
            alarm = _alarm(row).alarm
            self._bump(conn, ALARMS_EPOCH)
            if kind is ChangeKind.CLEARED:
                return self._close(conn, alarm, by, ts, comment)
            if alarm.state is not AlarmState.ACTIVE:
                raise AlarmError(alarm_id, "is already acknowledged")
            conn.execute(update(alarms).where(alarms.c.id == alarm_id).values(
                state=AlarmState.ACKNOWLEDGED.value, acknowledged_by=by, acknowledged_ms=ts,
                ack_comment=comment))
            change = AlarmChange(alarm.id, alarm.rule_id, alarm.subject,
                                 ChangeKind.ACKNOWLEDGED, ts, alarm.severity, alarm.value, by,
                                 comment)
            self._history(conn, change)
            return change

    # --- alarms: reading ---------------------------------------------------------------

    def open_alarms(self) -> list[AlarmRecord]:
        with self._reading() as conn:
            rows = conn.execute(select(alarms).where(alarms.c.state.in_(OPEN_STATES))).all()
        return [_alarm(row) for row in rows]

    def get_alarm(self, alarm_id: str) -> AlarmRecord | None:
        with self._reading() as conn:
            row = conn.execute(select(alarms).where(alarms.c.id == alarm_id)).first()
        return _alarm(row) if row is not None else None

    def list_alarms(self, query: AlarmQuery) -> list[AlarmRecord]:
        """Alarms matching `query`, newest raised first."""
        where: list[ColumnElement[bool]] = []
        if query.state == "open":
            where.append(alarms.c.state.in_(OPEN_STATES))
        elif query.state:
            where.append(alarms.c.state == query.state)
        if query.severity:
            where.append(alarms.c.severity == query.severity)
        if query.device:
            where.append(alarms.c.subject == query.device)
        if query.rule:
            where.append(alarms.c.rule_id == query.rule)
        if query.since is not None:
            where.append(alarms.c.raised_ms >= query.since)
        if query.until is not None:
            where.append(alarms.c.raised_ms < query.until)
        stmt = (select(alarms).where(and_(*where)) if where else select(alarms))
        stmt = stmt.order_by(alarms.c.raised_ms.desc(), alarms.c.id).limit(query.limit) \
            .offset(query.offset)
        with self._reading() as conn:
            rows = conn.execute(stmt).all()
        return [_alarm(row) for row in rows]

    def history(self, alarm_id: str) -> list[AlarmChange]:
        """The transitions of one alarm, oldest first."""
        with self._reading() as conn:
            rows = conn.execute(select(alarm_changes).where(alarm_changes.c.alarm_id == alarm_id)
                                .order_by(alarm_changes.c.id)).all()
        return [change_from_row(row) for row in rows]

    def counts(self) -> dict[str, dict[str, int]]:
        """Open alarms by state and severity: {"open"|"active"|"acknowledged": {sev: n}}."""
        with self._reading() as conn:
            rows = conn.execute(
                select(alarms.c.state, alarms.c.severity, func.count())
                .where(alarms.c.state.in_(OPEN_STATES))
                .group_by(alarms.c.state, alarms.c.severity)).all()
        result = {k: {s.value: 0 for s in Severity} for k in ("open", *OPEN_STATES)}
        for state, severity, n in rows:
            if severity in result["open"]:
                result[state][severity] += n
                result["open"][severity] += n
        return result

    def open_counts_by_rule(self) -> dict[str, int]:
        with self._reading() as conn:
            rows = conn.execute(select(alarms.c.rule_id, func.count())
                                .where(alarms.c.state.in_(OPEN_STATES))
                                .group_by(alarms.c.rule_id)).all()
        return {rule_id: n for rule_id, n in rows}
