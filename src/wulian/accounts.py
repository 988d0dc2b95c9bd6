"""Console accounts, the use cases: log in (throttled), sessions, managing users.

Checks and hashing are the domain's (`wulian.domain.account`), rows are the storage's
(`wulian.storage.accounts`); this module adds what needs both, plus the in-memory login
throttle. All methods are synchronous and may take tens of milliseconds (scrypt): async
callers run them in a worker thread.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from wulian.config import Settings
from wulian.domain.account import (
    USERNAME,
    Role,
    User,
    check_password,
    check_role,
    check_username,
    hash_password,
    new_password,
    verify_password,
)
from wulian.domain.clock import now_ms
from wulian.i18n import t
from wulian.ports import Conflict, NotFound
from wulian.storage.accounts import Session, SqlAccounts

log = logging.getLogger(__name__)

FIRST_ADMIN = "admin"
FIRST_ADMIN_SECRET = "console-admin.password"
PURGE_EVERY_MS = 3600 * 1000


class LoginRefused(Exception):
    """A login (or password check) refused: `code` is `login_failed`, `login_locked` or
    `wrong_password`; `retry_after_s` is set for a lock."""

    def __init__(self, code: str, retry_after_s: int | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A new session: its token (for the cookie, shown only here) and what it grants."""

    token: str
    session: Session


class Throttle:
    """Counts failed logins per key (a username, a remote address) and locks busy keys.

    `max_failures` failures of one key within `window_ms` lock it for `lock_ms`. Kept in
    memory, per process, and bounded: past `max_keys` the least recently touched key is
    forgotten, so a flood of made-up names costs memory only up to the bound.
    """

    def __init__(self, *, max_failures: int = 10, window_ms: int = 15 * 60_000,
                 lock_ms: int = 15 * 60_000, max_keys: int = 50_000) -> None:
        self.max_failures = max_failures
        self.window_ms = window_ms
        self.lock_ms = lock_ms
        self.max_keys = max_keys
        # key -> [window start, failures in the window, locked until]
        self._keys: OrderedDict[str, list[int]] = OrderedDict()
        self._lock = threading.Lock()

    def locked_until(self, keys: Iterable[str], now: int) -> int | None:
        """The latest end of a lock on any of `keys` still in force at `now`, or None."""
        with self._lock:
            ends = [state[2] for key in keys
                    if (state := self._keys.get(key)) is not None and state[2] > now]
        return max(ends) if ends else None

    def failed(self, keys: Iterable[str], now: int) -> None:
        """Count one failure against each key."""
        with self._lock:
            for key in keys:
                state = self._keys.get(key)
                if state is None or now - state[0] >= self.window_ms:
                    state = [now, 0, state[2] if state else 0]
                    self._keys[key] = state
                self._keys.move_to_end(key)
                state[1] += 1
                if state[1] >= self.max_failures:
                    state[:] = [now + self.lock_ms, 0, now + self.lock_ms]
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)

    def reset(self, key: str) -> None:
        """Forget the failures of one key (a successful login)."""
        with self._lock:
            self._keys.pop(key, None)

    def __len__(self) -> int:
        return len(self._keys)


@functools.cache
def _dummy_hash() -> str:
    # verified against when the user does not exist, so that "no such user" takes as long
    # as "wrong password" and the timing does not tell which names exist
    return hash_password(new_password())


class AccountService:
    """Logging in and managing console users over `SqlAccounts`."""

    def __init__(self, store: SqlAccounts, *, session_ttl_ms: int,
                 clock: Callable[[], int] = now_ms, throttle: Throttle | None = None) -> None:
        self.store = store
        self.session_ttl_ms = session_ttl_ms
        self.clock = clock
        self.throttle = throttle or Throttle()
        self._last_purge = 0

    # --- sessions --------------------------------------------------------------------------

    @staticmethod
    def _keys(username: str, remote: str | None) -> list[str]:
        # a username is locked per address it is tried from: locked for everyone, one
        # stranger could keep the admin out for good by failing ten times a quarter hour
        if not remote:
            return [f"user:{username[:64]}"]
        return [f"user:{username[:64]}@{remote[:64]}", f"remote:{remote[:64]}"]

    def _check_lock(self, keys: list[str], now: int) -> None:
        until = self.throttle.locked_until(keys, now)
        if until is not None:
            raise LoginRefused("login_locked", retry_after_s=math.ceil((until - now) / 1000))

    def start_session(self, user: User) -> LoginResult:
        """A new session for a user already authenticated otherwise (no password check)."""
        return self._open(user, self.clock())

    def _open(self, user: User, now: int) -> LoginResult:
        token = self.store.create_session(user.username, self.session_ttl_ms, now)
        if now - self._last_purge >= PURGE_EVERY_MS:
            self._last_purge = now
            self.store.purge_expired(now)
        return LoginResult(token, Session(user, now, now + self.session_ttl_ms))

    def login(self, username: str, password: str, remote: str | None) -> LoginResult:
        """A new session for the user, or LoginRefused (`login_failed`, `login_locked`)."""
        now = self.clock()
        name = username.lower() if isinstance(username, str) else ""
        keys = self._keys(name, remote)
        self._check_lock(keys, now)
        user = self.store.get_user(name) if USERNAME.fullmatch(name) else None
        matches = verify_password(password, user.password_hash if user else _dummy_hash())
        if user is None or not matches or user.disabled:
            self.throttle.failed(keys, now)
            log.info(t("account.log.refused", name=name[:64], remote=remote))
            raise LoginRefused("login_failed")
        self.throttle.reset(keys[0])
        try:
            return self._open(user, now)
        except NotFound:  # deleted or disabled since we looked
            raise LoginRefused("login_failed") from None

    def session(self, token: str) -> Session | None:
        """The live session of a token (extended when due), or None."""
        return self.store.session(token, self.clock())

    def logout(self, token: str) -> bool:
        """End the session of a token; False when there was none."""
        return self.store.end_session(token)

    def change_own_password(self, username: str, current: str, new: str,
                            remote: str | None) -> LoginResult:
        """Replace a user's password after checking the current one.

        Every session of the user ends (a thief's too); the new one returned replaces the
        caller's. LoginRefused `wrong_password` / `login_locked`, counted like logins.
        """
        now = self.clock()
        keys = self._keys(username, remote)
        self._check_lock(keys, now)
        user = self.store.get_user(username)
        if user is None:
            raise NotFound(username)
        if not verify_password(current, user.password_hash):
            self.throttle.failed(keys, now)
            raise LoginRefused("wrong_password")
        check_password(new, username, field="new")
        user = self.store.set_password(username, hash_password(new))
        return self._open(user, now)

    # --- users -----------------------------------------------------------------------------

    def add_user(self, username: str, password: str, role: Role | str) -> User:
        """Create a user; AccountError for a bad field, Conflict when the name is taken."""
        check_username(username)
        chosen = check_role(role)
        check_password(password, username)
        return self.store.add_user(username, hash_password(password), chosen, now=self.clock())

    def update_user(self, username: str, *, role: Role | str | None = None,
                    disabled: bool | None = None, password: str | None = None) -> User:
        """Change a user's role, state and/or password; NotFound, LastAdmin, AccountError.

        The password is checked first and written last, so a refused role change leaves
        the password as it was.
        """
        user = self.store.get_user(username)
        if user is None:
            raise NotFound(username)
        if password is not None:
            check_password(password, username)
        if role is not None:
            user = self.store.set_role(username, check_role(role))
        if disabled is not None:
            user = self.store.set_disabled(username, disabled)
        if password is not None:
            user = self.store.set_password(username, hash_password(password))
        return user

    def delete_user(self, username: str) -> bool:
        """Remove a user and their sessions; False when absent, LastAdmin for the last admin."""
        return self.store.delete_user(username)


def ensure_first_admin(accounts: SqlAccounts, settings: Settings) -> str | None:
    """Create the user `admin` when there is no user at all; its password when just created.

    The password is generated once and kept in `<data dir>/console-admin.password`, so two
    processes starting together create the same account and the operator can look it up.
    """
    if accounts.count_users():
        return None
    password, _ = settings.ensure_secret(FIRST_ADMIN_SECRET)
    check_password(password, FIRST_ADMIN)
    try:
        accounts.add_user(FIRST_ADMIN, hash_password(password), Role.ADMIN)
    except Conflict:  # another process was quicker
        return None
    log.info(t("account.log.first_admin", name=FIRST_ADMIN,
               path=settings.secret_file(FIRST_ADMIN_SECRET)))
    return password
