"""Console users and their sessions over SQLAlchemy Core, for SQLite and PostgreSQL alike.

A session token is shown to the browser once (in its cookie); the database keeps only its
SHA-256, so a copy of the database lets nobody in. SHA-256 and not scrypt: the token is 256
random bits, so there is nothing to guess, and it is checked on every request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, delete, func, insert, select, update
from sqlalchemy import exc as sa_exc

from wulian.domain.account import Role, User
from wulian.domain.clock import now_ms
from wulian.ports import Conflict, NotFound, Store
from wulian.storage.metadata import SqlMetadata
from wulian.storage.schema import sessions, users
from wulian.storage.sqlbase import SqlBase

# A used session is extended ("sliding expiry"), but its row is rewritten at most this
# often: a console polling every few seconds must not turn every read into a write.
SLIDE_EVERY_MS = 60_000
# However active, a session ends this long after its login; a stolen cookie cannot be
# kept alive for ever by using it.
MAX_SESSION_MS = 7 * 24 * 3600 * 1000
# Oldest sessions beyond this many per user are ended at login: scripted logins with a
# valid password must not grow the table without bound.
MAX_SESSIONS_PER_USER = 50


class LastAdmin(Conflict):
    """The change would leave no enabled admin, and nobody could manage the console."""


@dataclass(frozen=True, slots=True)
class Session:
    """A live session: whose it is and until when it is valid (as of the last check)."""

    user: User
    created_ms: int
    expires_ms: int


def token_hash(token: str) -> str:
    """The hex SHA-256 under which a session token is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _user(row: Row[Any]) -> User:
    m = row._mapping
    return User(username=m["username"], role=Role(m["role"]), disabled=bool(m["disabled"]),
                created_ms=m["created_ms"], updated_ms=m["updated_ms"],
                password_hash=m["password_hash"])


class SqlAccounts(SqlBase):
    """Users and sessions in the platform's database (tables `users` and `sessions`).

    The read-then-write checks below (last admin, user exists) hold the write lock from
    their first statement on SQLite (SqlBase).
    """

    @classmethod
    def for_store(cls, store: Store) -> SqlAccounts:
        """The accounts kept in the same database as `store`."""
        if not isinstance(store, SqlMetadata):
            raise TypeError(f"{type(store).__name__} is not an SQL store")
        return cls(store.engine)

    # --- users -----------------------------------------------------------------------------

    def add_user(self, username: str, password_hash: str, role: Role, *,
                 now: int | None = None) -> User:
        """Create a user (name and password already checked and hashed); Conflict if taken."""
        now = now_ms() if now is None else now
        user = User(username, role, False, now, now, password_hash)
        try:
            with self._writing() as conn:
                conn.execute(insert(users).values(
                    username=username, password_hash=password_hash, role=role.value,
                    disabled=False, created_ms=now, updated_ms=now))
        except sa_exc.IntegrityError:
            raise Conflict(f"user {username} exists") from None
        return user

    def get_user(self, username: str) -> User | None:
        """The user, or None."""
        with self._reading() as conn:
            row = conn.execute(select(users).where(users.c.username == username)).first()
        return _user(row) if row is not None else None

    def list_users(self) -> list[User]:
        """All users, ordered by name."""
        with self._reading() as conn:
            rows = conn.execute(select(users).order_by(users.c.username)).all()
        return [_user(row) for row in rows]

    def count_users(self) -> int:
        with self._reading() as conn:
            return int(conn.scalar(select(func.count()).select_from(users)) or 0)

    def _locked_user(self, conn: Connection, username: str) -> User:
        row = conn.execute(select(users).where(users.c.username == username)
                           .with_for_update()).first()
        if row is None:
            raise NotFound(username)
        return _user(row)

    def _check_admins_remain(self, conn: Connection, username: str) -> None:
        """LastAdmin unless an enabled admin other than `username` exists."""
        # FOR UPDATE (PostgreSQL; SQLite already holds the write lock): of two transactions
        # demoting the last two admins at once, the second waits, then sees the first's
        # change when its condition is re-checked, and refuses.
        others = conn.execute(
            select(users.c.username)
            .where(users.c.role == Role.ADMIN.value, users.c.disabled.is_(False),
                   users.c.username != username)
            .with_for_update()).all()
        if not others:
            raise LastAdmin(username)

    def _change(self, username: str, values: dict[str, Any], *, end_sessions: bool,
                demotes: bool) -> User:
        now = values.setdefault("updated_ms", now_ms())
        with self._writing() as conn:
            user = self._locked_user(conn, username)
            if demotes and user.role is Role.ADMIN and not user.disabled:
                self._check_admins_remain(conn, username)
            conn.execute(update(users).where(users.c.username == username).values(**values))
            if end_sessions:
                conn.execute(delete(sessions).where(sessions.c.username == username))
        changed = {k: v for k, v in values.items() if k in ("password_hash", "disabled")}
        role = Role(values["role"]) if "role" in values else user.role
        return User(user.username, role, changed.get("disabled", user.disabled),
                    user.created_ms, now, changed.get("password_hash", user.password_hash))

    def set_password(self, username: str, password_hash: str) -> User:
        """Replace the password hash and end all of the user's sessions; NotFound if absent."""
        return self._change(username, {"password_hash": password_hash}, end_sessions=True,
                            demotes=False)

    def set_role(self, username: str, role: Role) -> User:
        """Change the role; LastAdmin if that would leave no enabled admin."""
        return self._change(username, {"role": role.value}, end_sessions=False,
                            demotes=role is not Role.ADMIN)

    def set_disabled(self, username: str, disabled: bool) -> User:
        """Disable (ending the user's sessions) or enable a user; LastAdmin as for set_role."""
        return self._change(username, {"disabled": disabled}, end_sessions=disabled,
                            demotes=disabled)

    def delete_user(self, username: str) -> bool:
        """Remove the user and their sessions; False when absent, LastAdmin as for set_role."""
        with self._writing() as conn:
            try:
                user = self._locked_user(conn, username)
            except NotFound:
                return False
            if user.role is Role.ADMIN and not user.disabled:
                self._check_admins_remain(conn, username)
            # the foreign key cascades too; said here so it holds whatever the connection's
            # foreign-key setting
            conn.execute(delete(sessions).where(sessions.c.username == username))
            conn.execute(delete(users).where(users.c.username == username))
        return True

    # --- sessions --------------------------------------------------------------------------

    def create_session(self, username: str, ttl_ms: int, now: int | None = None) -> str:
        """A new session for an enabled user, valid `ttl_ms`; the token (shown only here)."""
        now = now_ms() if now is None else now
        token = secrets.token_urlsafe(32)
        with self._writing() as conn:
            if self._locked_user(conn, username).disabled:
                raise NotFound(username)
            conn.execute(insert(sessions).values(
                token_hash=token_hash(token), username=username, created_ms=now,
                expires_ms=now + ttl_ms, last_ms=now))
            keep = (select(sessions.c.token_hash).where(sessions.c.username == username)
                    .order_by(sessions.c.last_ms.desc(), sessions.c.created_ms.desc())
                    .limit(MAX_SESSIONS_PER_USER))
            conn.execute(delete(sessions).where(sessions.c.username == username,
                                                sessions.c.token_hash.not_in(keep)))
        return token

    def session(self, token: str, now: int | None = None) -> Session | None:
        """The live session of `token` (extending it when due), or None.

        None for an unknown, ended or expired token and for a disabled user.
        """
        if not token or len(token) > 256:
            return None
        now = now_ms() if now is None else now
        key = token_hash(token)
        # labelled: `users` has a created_ms of its own
        query = (select(sessions.c.created_ms.label("s_created"),
                        sessions.c.expires_ms.label("s_expires"),
                        sessions.c.last_ms.label("s_last"), users)
                 .join(users, users.c.username == sessions.c.username)
                 .where(sessions.c.token_hash == key))
        with self._reading() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        m = row._mapping
        created, expires, last = m["s_created"], m["s_expires"], m["s_last"]
        if expires <= now:
            self.end_session(token)
            return None
        if m["disabled"]:
            return None
        user = _user(row)
        if now - last >= SLIDE_EVERY_MS:
            # every write sets expires = last + ttl, so the session's ttl needs no column
            ttl = expires - last
            extended = max(expires, min(now + ttl, created + MAX_SESSION_MS))
            with self._writing() as conn:
                # conditional: of concurrent requests only one writes, and an older `now`
                # never moves the expiry back
                conn.execute(update(sessions)
                             .where(sessions.c.token_hash == key,
                                    sessions.c.last_ms <= now - SLIDE_EVERY_MS)
                             .values(last_ms=now, expires_ms=extended))
            expires = extended
        return Session(user, created, expires)

    def resolve(self, token: str, now: int | None = None) -> User | None:
        """The user of a live session (extending it when due), or None."""
        found = self.session(token, now)
        return found.user if found is not None else None

    def end_session(self, token: str) -> bool:
        """End one session; False when there was none."""
        with self._writing() as conn:
            done = conn.execute(delete(sessions).where(sessions.c.token_hash == token_hash(token)))
        return bool(done.rowcount)

    def end_sessions(self, username: str) -> int:
        """End every session of a user; how many there were."""
        with self._writing() as conn:
            done = conn.execute(delete(sessions).where(sessions.c.username == username))
        return int(done.rowcount or 0)

    def count_sessions(self, username: str | None = None, now: int | None = None) -> int:
        """Live sessions (of one user, or all)."""
        now = now_ms() if now is None else now
        query = select(func.count()).select_from(sessions).where(sessions.c.expires_ms > now)
        if username is not None:
            query = query.where(sessions.c.username == username)
        with self._reading() as conn:
            return int(conn.scalar(query) or 0)

    def purge_expired(self, now: int | None = None) -> int:
        """Delete the sessions that have expired; how many."""
        now = now_ms() if now is None else now
        with self._writing() as conn:
            done = conn.execute(delete(sessions).where(sessions.c.expires_ms <= now))
        return int(done.rowcount or 0)
