"""Alembic migrations, run programmatically: no alembic.ini is needed at runtime."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

HERE = Path(__file__).resolve().parent
# Any constant works; all wulian processes must agree on it.
PG_MIGRATION_LOCK = 0x77756C69616E  # "wulian"
_IN_PROCESS = threading.Lock()


def alembic_config() -> Config:
    """An Alembic config pointing at the migrations shipped inside the package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to `revision` in one transaction, safe with concurrent openers.

    SQLite: `wulian_immediate` makes it BEGIN IMMEDIATE (see sqlite.sqlite_engine), which
    queues a second process before it reads the version table; PostgreSQL: an advisory
    lock does the same. Both have transactional DDL: a failed migration leaves nothing.
    """
    cfg = alembic_config()
    # Alembic's `context` is module-global: two threads must not migrate at once.
    with _IN_PROCESS, engine.execution_options(wulian_immediate=True).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_MIGRATION_LOCK})")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
