"""The one exception tree: every error a person or a client acts on is a `WulianError`.

Each carries a stable `code` (what a client branches on), the HTTP status it maps to, and
parameters for a translated message rendered at read time (`message(lang)`), so the same
error speaks Chinese to one caller and English to the next. Mapped once to HTTP (the API's
exception handler), once to the CLI (exit codes) and once to MQTT error replies.
"""

from __future__ import annotations

from typing import Any, ClassVar

from wulian.i18n import t

# CLI exit codes by HTTP status class: scripts can tell "you asked wrong" from "try again".
EXIT_CODES = {400: 2, 401: 3, 403: 3, 404: 4, 409: 5, 413: 2, 422: 2, 429: 6, 503: 7}


class WulianError(Exception):
    """Base of every error wulian reports: a stable code, an HTTP status, message params."""

    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"

    def __init__(self, code: str | None = None, *, message_key: str | None = None,
                 headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None,
                 **params: Any) -> None:
        self.code = code or self.default_code
        self.params = params
        self.message_key = message_key or f"api.{self.code}"
        self.headers = headers
        self.extra = extra or {}
        super().__init__(self.code)

    def message(self, lang: str | None = None) -> str:
        """The error in a person's words, in `lang`."""
        return t(self.message_key, lang, **self.params)

    def body(self, lang: str | None = None) -> dict[str, Any]:
        """The JSON error body `{"code", "message", ...}` clients receive."""
        return {"code": self.code, "message": self.message(lang), **self.extra}

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.status, 1)

    def __str__(self) -> str:
        return self.message("en")


class InvalidInput(WulianError):
    """What the caller sent is malformed or breaks a rule; `field` names where."""

    status = 422
    default_code = "invalid_request"


class Unauthenticated(WulianError):
    """No valid credential came with the request."""

    status = 401
    default_code = "unauthorized"


class Forbidden(WulianError):
    """The caller is known but may not do this (role, scope, network, suspended org)."""

    status = 403
    default_code = "forbidden"


class NotFoundError(WulianError):
    """No such thing, or not one the caller's organisation may see (never tells which)."""

    status = 404
    default_code = "not_found"


class ConflictError(WulianError):
    """The thing exists already, or is still in use."""

    status = 409
    default_code = "conflict"


class TooLarge(WulianError):
    status = 413
    default_code = "too_large"


class QuotaExceeded(WulianError):
    """Over a quota or rate limit: `retry_after_s` says when to try again, when known."""

    status = 429
    default_code = "quota_exceeded"

    def __init__(self, code: str | None = None, *, retry_after_s: int | None = None,
                 **params: Any) -> None:
        headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
        super().__init__(code, headers=headers, **params)
        self.retry_after_s = retry_after_s


class Unavailable(WulianError):
    """A backing service (the database, the broker) cannot be reached; retry later."""

    status = 503
    default_code = "unavailable"
