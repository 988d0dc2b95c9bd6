"""What routes share: the core, the caller's language, admin and device auth, error answers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import (
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)
from starlette.concurrency import run_in_threadpool

from wulian.bootstrap import Core
from wulian.domain.rejection import RejectCode, Rejection
from wulian.i18n import from_accept_language, t
from wulian.pipeline.directory import Known

RETRY_AFTER_S = "5"


class ApiError(Exception):
    """An error answer: HTTP status, a stable code, a translated message and extra fields.

    The message is rendered per request (`body`), so the same error speaks the caller's
    language. With `rejection` the code, message and path are the pipeline's own.
    """

    def __init__(self, status: int, code: str, *, params: dict[str, Any] | None = None,
                 extra: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                 rejection: Rejection | None = None) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.params = params or {}
        self.extra = extra or {}
        self.headers = headers
        self.rejection = rejection

    @classmethod
    def from_rejection(cls, status: int, rejection: Rejection,
                       headers: dict[str, str] | None = None) -> ApiError:
        return cls(status, rejection.code.value, rejection=rejection, headers=headers)

    def body(self, lang: str | None) -> dict[str, Any]:
        """The JSON error body `{"code", "message", ...}` in `lang`."""
        if self.rejection is not None:
            body = self.rejection.to_dict(lang)
        else:
            body = {"code": self.code, "message": t(f"api.{self.code}", lang, **self.params)}
        body.update(self.extra)
        return body


def get_core(request: Request) -> Core:
    core: Core = request.app.state.core
    return core


CoreDep = Annotated[Core, Depends(get_core)]


def request_lang(request: Request) -> str | None:
    """The language to answer in: Accept-Language, else the configured one (else the process's)."""
    core: Core = request.app.state.core
    return from_accept_language(request.headers.get("accept-language")) or core.settings.lang


# --- admin -----------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, scheme_name="AdminToken",
                     description="The admin token (`wulian serve` prints it)")


def require_admin(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None,
                                                     Depends(_bearer)]) -> None:
    """Let the request through only with `Authorization: Bearer <admin token>`."""
    expected: bytes = request.app.state.admin_token_digest
    given = creds.credentials if creds and creds.scheme.lower() == "bearer" else ""
    # digests of equal length, compared in constant time: the answer's timing tells
    # neither where the tokens differ nor how long the real one is
    if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), expected):
        raise ApiError(401, "unauthorized", headers={"WWW-Authenticate": "Bearer"})


# --- devices ---------------------------------------------------------------------------


class _DeviceBasic(HTTPBasic):
    """HTTP Basic that yields None for a missing or garbled header: the route answers then."""

    async def __call__(self, request: Request) -> HTTPBasicCredentials | None:  # type: ignore[override]
        try:
            return await super().__call__(request)
        except HTTPException:
            return None


_basic = _DeviceBasic(auto_error=False, scheme_name="DeviceBasic", realm="wulian",
                      description="Device id and secret")


async def authenticate_device(
    request: Request, device_id: Annotated[str, Path(max_length=128)],
    creds: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
) -> Known | Rejection:
    """The device behind the Basic credentials, or why it is refused (the route records it)."""
    if creds is None:
        return Rejection(RejectCode.BAD_CREDENTIALS)
    if creds.username != device_id:
        return Rejection(RejectCode.FORBIDDEN_TOPIC, params={"device": creds.username[:128]})
    core: Core = request.app.state.core
    flights: dict[tuple[str, bytes], asyncio.Future[Known | Rejection]] = \
        request.app.state.auth_flights
    # keyed by digest, like the directory's cache: no secret kept in clear longer than needed
    key = (device_id, hashlib.sha256(creds.password.encode("utf-8", "surrogatepass")).digest())
    flight = flights.get(key)
    if flight is None:
        # scrypt takes ~50 ms: keep it off the event loop, and let a burst of requests with
        # the same credentials share one check instead of queueing one each (the directory
        # caches only after the first one finishes)
        flight = asyncio.ensure_future(
            run_in_threadpool(core.directory.authenticate, device_id, creds.password))
        flights[key] = flight
        flight.add_done_callback(lambda _: flights.pop(key, None))
    return await asyncio.shield(flight)  # one caller going away must not cancel the others


DeviceAuth = Annotated[Known | Rejection, Depends(authenticate_device)]


# --- query parameters ------------------------------------------------------------------

_INT = re.compile(r"^-?\d{1,19}$")


def parse_time(value: str | None, field: str) -> int | None:
    """Epoch milliseconds from `123…` (ms) or an ISO 8601 time (UTC unless it says otherwise)."""
    if value is None or value == "":
        return None
    if _INT.fullmatch(value):
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(422, "invalid_time", params={"field": field, "value": value[:64]},
                       extra={"field": field}) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def iso_time(ts_ms: int) -> str:
    """`2024-05-01T08:00:00.000Z` for epoch milliseconds."""
    moment = datetime.fromtimestamp(ts_ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
