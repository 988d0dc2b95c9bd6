"""Persistence adapters: `open_store(url)` gives the `Store` for a database URL, migrated."""

from __future__ import annotations

from wulian.ports import Store

SQLITE_SCHEMES = ("sqlite", "sqlite+pysqlite")
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


def open_store(url: str) -> Store:
    """Open (and migrate to head) the store for `sqlite:///…` or `postgresql://…`."""
    scheme = url.partition(":")[0].lower() if "://" in url else ""
    if scheme in SQLITE_SCHEMES:
        from wulian.storage.sqlite import SqliteStore

        return SqliteStore(url)
    if scheme in POSTGRES_SCHEMES:
        from wulian.storage.postgres import PostgresStore

        return PostgresStore(url)
    # Only the scheme is echoed: the rest of a URL may hold a password.
    said = f"scheme '{scheme}'" if scheme else "no scheme://"
    raise ValueError(f"unsupported database URL ({said}): use sqlite:///path/to/wulian.db "
                     "or postgresql://user@host:5432/dbname")


__all__ = ["open_store"]
