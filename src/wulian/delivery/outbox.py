"""The action outbox: the `action_deliveries` table, on SQLite or PostgreSQL.

Rows move pending → delivered, or pending → dead (permanent failure or out of attempts);
`retry` moves a dead one back. The worker takes due rows with `claim`, which pushes their
`next_ms` past a lease in the same transaction, so two workers (or processes) never send
the same row at once, and a worker that dies mid-send leaves the row due again later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, update

from wulian.rules.actions import DeliveryDraft, draft_row, iso_ms, redact
from wulian.storage.schema import action_deliveries as table
from wulian.storage.sqlbase import SqlBase

STATES = ("pending", "delivered", "dead")
MAX_ERROR = 1000


@dataclass(frozen=True, slots=True)
class Delivery:
    """One row of the outbox."""

    id: int
    rule_id: str
    alarm_id: str
    change: str
    action: int
    kind: str
    target: str
    spec: dict[str, Any]
    body: dict[str, Any]
    state: str
    attempts: int
    next_ms: int
    last_error: str | None
    created_ms: int
    done_ms: int | None

    def to_dict(self) -> dict[str, Any]:
        """For API output: secrets in the spec shown as ***, times also in ISO 8601."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["spec"] = redact(self.spec)
        out["created"] = iso_ms(self.created_ms)
        out["done"] = iso_ms(self.done_ms) if self.done_ms is not None else None
        return out


def _delivery(row: Row[Any]) -> Delivery:
    m = row._mapping
    return Delivery(id=m["id"], rule_id=m["rule_id"], alarm_id=m["alarm_id"],
                    change=m["change"], action=m["action"], kind=m["kind"], target=m["target"],
                    spec=dict(m["spec"]), body=dict(m["body"]), state=m["state"],
                    attempts=m["attempts"], next_ms=m["next_ms"], last_error=m["last_error"],
                    created_ms=m["created_ms"], done_ms=m["done_ms"])


def _error(text: str) -> str:
    return text if len(text) <= MAX_ERROR else text[:MAX_ERROR - 1] + "…"


class SqlOutbox(SqlBase):
    """The `action_deliveries` table over one SQLAlchemy engine.

    On SQLite claim's read-then-write holds the write lock from its first statement
    (SqlBase), so two claimers are serialised.
    """

    def enqueue(self, drafts: Sequence[DeliveryDraft], now: int) -> list[int]:
        """Insert drafts as pending deliveries due now; their ids, in order."""
        if not drafts:
            return []
        rows = [draft_row(d, now) for d in drafts]
        with self._writing() as conn:
            result = conn.execute(
                insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
            return [int(i) for i in result.scalars().all()]

    def get(self, delivery_id: int) -> Delivery | None:
        """One delivery, or None."""
        with self._reading() as conn:
            row = conn.execute(select(table).where(table.c.id == delivery_id)).first()
        return _delivery(row) if row is not None else None

    def due(self, now: int, limit: int = 100) -> list[Delivery]:
        """Pending deliveries whose time has come, oldest first (read only)."""
        with self._reading() as conn:
            rows = conn.execute(select(table)
                                .where(table.c.state == "pending", table.c.next_ms <= now)
                                .order_by(table.c.next_ms, table.c.id).limit(limit)).all()
        return [_delivery(r) for r in rows]

    def claim(self, now: int, limit: int, lease_ms: int) -> list[Delivery]:
        """Take due deliveries for sending: no one else gets them until `now + lease_ms`."""
        with self._writing() as conn:
            # PostgreSQL: SKIP LOCKED lets concurrent claimers take disjoint rows instead of
            # queueing behind each other; SQLite ignores it (BEGIN IMMEDIATE serialises).
            rows = conn.execute(select(table)
                                .where(table.c.state == "pending", table.c.next_ms <= now)
                                .order_by(table.c.next_ms, table.c.id).limit(limit)
                                .with_for_update(skip_locked=True)).all()
            if rows:
                conn.execute(update(table).where(table.c.id.in_([r.id for r in rows]))
                             .values(next_ms=now + lease_ms))
        return [_delivery(r) for r in rows]

    def _finish(self, delivery_id: int, **values: Any) -> bool:
        with self._writing() as conn:
            done = conn.execute(update(table)
                                .where(table.c.id == delivery_id, table.c.state == "pending")
                                .values(attempts=table.c.attempts + 1, **values))
            return bool(done.rowcount)

    def mark_delivered(self, delivery_id: int, now: int) -> bool:
        """The receiver took it; False when it was no longer pending."""
        return self._finish(delivery_id, state="delivered", done_ms=now)

    def mark_failed(self, delivery_id: int, error: str, next_ms: int) -> bool:
        """One attempt failed; try again at `next_ms`."""
        return self._finish(delivery_id, last_error=_error(error), next_ms=next_ms)

    def mark_dead(self, delivery_id: int, error: str, now: int) -> bool:
        """Give up on it (kept, visible, and `retry`-able)."""
        return self._finish(delivery_id, state="dead", last_error=_error(error), done_ms=now)

    def retry(self, delivery_id: int, now: int) -> bool:
        """Put a dead delivery back to pending, due now, with a fresh count of attempts."""
        with self._writing() as conn:
            done = conn.execute(update(table)
                                .where(table.c.id == delivery_id, table.c.state == "dead")
                                .values(state="pending", attempts=0, next_ms=now,
                                        done_ms=None))
            return bool(done.rowcount)

    def list(self, state: str | None = None, rule_id: str | None = None,
             limit: int = 100, alarm_id: str | None = None) -> list[Delivery]:
        """The most recent deliveries, newest first, optionally of one state/rule/alarm."""
        if state is not None and state not in STATES:
            raise ValueError(f"state must be one of: {', '.join(STATES)}")
        query = select(table)
        if state is not None:
            query = query.where(table.c.state == state)
        if rule_id is not None:
            query = query.where(table.c.rule_id == rule_id)
        if alarm_id is not None:
            query = query.where(table.c.alarm_id == alarm_id)
        with self._reading() as conn:
            rows = conn.execute(query.order_by(table.c.id.desc()).limit(limit)).all()
        return [_delivery(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """How many deliveries are in each state (every state named, zeros included)."""
        with self._reading() as conn:
            rows = conn.execute(select(table.c.state, func.count())
                                .group_by(table.c.state)).all()
        counts = dict.fromkeys(STATES, 0)
        counts.update({state: int(n) for state, n in rows})
        return counts

    def purge(self, done_before_ms: int) -> int:
        """Delete delivered rows finished before the given time; how many went."""
        with self._writing() as conn:
            done = conn.execute(delete(table).where(table.c.state == "delivered",
                                                    table.c.done_ms < done_before_ms))
            return int(done.rowcount)
