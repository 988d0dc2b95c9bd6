"""What every SQL adapter shares: reading and writing transactions, outages as one error.

On SQLite the writer's transactions start with BEGIN IMMEDIATE (see
`wulian.storage.sqlite.sqlite_engine`), so a read-then-write holds the write lock from its
first statement and never fails half-way as "busy".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from wulian.ports import StorageUnavailable
from wulian.storage.schema import counters

# Errors that mean "the database is unreachable or busy", not "your request is wrong".
UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError)


class SqlBase:
    """Transactions over one SQLAlchemy engine; driver outages become StorageUnavailable."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(wulian_immediate=True)
        self._upsert = sqlite_insert if engine.dialect.name == "sqlite" else pg_insert

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except UNAVAILABLE as exc:
            raise StorageUnavailable(f"database unavailable: {exc.orig}") from exc

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        try:
            with self._writer.begin() as conn:
                yield conn
        except UNAVAILABLE as exc:
            raise StorageUnavailable(f"database unavailable: {exc.orig}") from exc

    def _bump(self, conn: Connection, name: str) -> None:
        """Add one to a counter row (the change epochs other processes watch)."""
        ins = self._upsert(counters).values(name=name, value=1)
        conn.execute(ins.on_conflict_do_update(
            index_elements=[counters.c.name],
            set_={"value": counters.c.value + ins.excluded.value}))
