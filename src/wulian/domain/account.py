"""Console accounts: roles, username and password rules, password hashing. No I/O."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from wulian.domain.device import hash_secret, verify_secret

# Lower-case only, so `Admin` and `admin` can never be two accounts; `fullmatch`, because
# `$` also matches before a trailing newline.
USERNAME = re.compile(r"[a-z0-9][a-z0-9_.-]{1,63}")
MIN_PASSWORD = 10
# Long enough for any passphrase or manager-made password, short enough that nobody makes
# the server scrypt megabytes per login attempt.
MAX_PASSWORD = 1024


class Role(StrEnum):
    """What a console user may do; each role can do everything the roles below it can."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Role) -> bool:
        """True when this role may do what `needed` may."""
        return self.rank >= needed.rank


_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}
ROLES: tuple[str, ...] = tuple(role.value for role in Role)


class AccountError(ValueError):
    """An account field is invalid: `field` names it, `problem` is a stable code.

    `message(lang)` says what is wrong in a person's language; str() is English.
    """

    def __init__(self, field: str, problem: str, **params: Any) -> None:
        self.field = field
        self.problem = problem
        self.params = params
        super().__init__(f"{field}: {self.message('en')}")

    def message(self, lang: str | None = None) -> str:
        """What is wrong with the field, in `lang`."""
        from wulian.i18n import t  # the domain stays free of the catalogue at import time

        return t(f"account.problem.{self.problem}", lang, **self.params)


@dataclass(frozen=True, slots=True)
class User:
    """A console user. `password_hash` never leaves the platform."""

    username: str
    role: Role
    disabled: bool = False
    created_ms: int = 0
    updated_ms: int = 0
    password_hash: str = field(default="", repr=False)

    def public(self) -> dict[str, Any]:
        """The user as the API shows it (no password material)."""
        return {"username": self.username, "role": self.role.value, "disabled": self.disabled,
                "created_ms": self.created_ms, "updated_ms": self.updated_ms}


def check_username(username: Any) -> str:
    """Return `username` if it is a valid account name, else raise AccountError."""
    if not isinstance(username, str) or not USERNAME.fullmatch(username):
        raise AccountError("username", "username")
    return username


def check_role(role: Any) -> Role:
    """The Role named by `role`, else AccountError."""
    try:
        return Role(role)
    except ValueError:
        raise AccountError("role", "role", allowed=", ".join(ROLES)) from None


def check_password(password: Any, username: str, field: str = "password") -> str:
    """Return `password` if the policy accepts it for `username`, else raise AccountError."""
    if not isinstance(password, str):
        raise AccountError(field, "password_short", min=MIN_PASSWORD)
    if len(password) < MIN_PASSWORD:
        raise AccountError(field, "password_short", min=MIN_PASSWORD)
    if len(password) > MAX_PASSWORD:
        raise AccountError(field, "password_long", max=MAX_PASSWORD)
    if password.casefold() == username.casefold():
        raise AccountError(field, "password_username")
    if len(set(password)) == 1:
        raise AccountError(field, "password_repeated")
    try:
        password.encode()
    except UnicodeEncodeError:  # a lone surrogate, e.g. from a JSON "\\ud800" escape
        raise AccountError(field, "password_chars") from None
    return password


def hash_password(password: str) -> str:
    """Slow, salted hash of a password (the same scrypt format as device secrets)."""
    return hash_secret(password)


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches the stored hash (constant-time comparison)."""
    if not isinstance(password, str) or len(password) > MAX_PASSWORD:
        return False
    return verify_secret(password, stored)


def new_password() -> str:
    """A generated password that passes the policy for any username."""
    return secrets.token_urlsafe(18)
