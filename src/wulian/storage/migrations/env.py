"""Alembic environment: migrates the connection `wulian.storage.migrations.upgrade` passes."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from wulian.storage.schema import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations through wulian.storage.migrations.upgrade(engine)")

# render_as_batch: later ALTERs on SQLite need Alembic's copy-and-move batch mode.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():  # the caller's transaction: a no-op here
    context.run_migrations()
