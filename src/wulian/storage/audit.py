"""The audit log in SQL (SQLite or PostgreSQL): appended under a lock so the chain never
forks, read back in order with filters and a cursor, verified page by page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, func, insert, select, text

from wulian.domain.audit import GENESIS, follow
from wulian.ports import AuditEntry, AuditRecord
from wulian.storage.schema import audit_log
from wulian.storage.sqlbase import SqlBase

# pg_advisory_xact_lock key: "wulian audit" — appends from every process queue here
_PG_LOCK = 0x7775_6C69_6175_6474 & 0x7FFF_FFFF_FFFF_FFFF


class SqlAuditLog(SqlBase):
    """`AuditLog` over the `audit_log` table."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._pg = engine.dialect.name == "postgresql"

    @classmethod
    def for_store(cls, store: Any) -> SqlAuditLog:
        """The audit log in the same database as `store` (a SQL store)."""
        return cls(store.engine)

    def append(self, record: AuditRecord) -> AuditEntry:
        a = audit_log.c
        with self._writing() as conn:
            # SQLite: the writer's BEGIN IMMEDIATE already serialises appends.
            if self._pg:
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
            last = conn.execute(select(a.seq, a.hash).order_by(a.seq.desc()).limit(1)).first()
            entry = follow(last[0], last[1], record) if last else follow(0, GENESIS, record)
            conn.execute(insert(audit_log).values(
                seq=entry.seq, ts=record.ts, actor=record.actor, org_id=record.org_id,
                action=record.action, target=record.target, outcome=record.outcome,
                source=record.source, before=record.before, after=record.after,
                prev_hash=entry.prev_hash, hash=entry.hash))
        return entry

    def entries(self, *, org_id: str | None, since: int | None = None,
                until: int | None = None, actor: str | None = None, action: str | None = None,
                after_seq: int | None = None, limit: int = 100) -> list[AuditEntry]:
        a = audit_log.c
        stmt = select(audit_log).order_by(a.seq).limit(limit)
        for column, value, op in ((a.org_id, org_id, "eq"), (a.ts, since, "ge"),
                                  (a.ts, until, "lt"), (a.actor, actor, "eq"),
                                  (a.action, action, "eq"), (a.seq, after_seq, "gt")):
            if value is None:
                continue
            stmt = stmt.where(column == value if op == "eq" else
                              column >= value if op == "ge" else
                              column < value if op == "lt" else column > value)
        with self._reading() as conn:
            return [_entry(row) for row in conn.execute(stmt).mappings()]

    def count(self) -> int:
        with self._reading() as conn:
            return int(conn.scalar(select(func.count()).select_from(audit_log)) or 0)

    def scan(self, page: int = 1000) -> Iterator[AuditEntry]:
        """Every entry, oldest first, read a page at a time."""
        after = 0
        while True:
            got = self.entries(org_id=None, after_seq=after, limit=page)
            yield from got
            if len(got) < page:
                return
            after = got[-1].seq


def _entry(row: Any) -> AuditEntry:
    record = AuditRecord(ts=row["ts"], actor=row["actor"], org_id=row["org_id"],
                         action=row["action"], target=row["target"], outcome=row["outcome"],
                         source=row["source"], before=row["before"], after=row["after"])
    return AuditEntry(row["seq"], record, row["prev_hash"], row["hash"])
