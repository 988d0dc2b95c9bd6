"""What routes share: the core, the caller's language, who may call (admin token, console
sessions, devices), error answers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import (
    APIKeyCookie,
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from wulian.accounts import AccountService
from wulian.bootstrap import Core
from wulian.domain.account import Role
from wulian.domain.rejection import RejectCode, Rejection
from wulian.i18n import from_accept_language, t
from wulian.pipeline.directory import Known

RETRY_AFTER_S = "5"
ADMIN_CALLER = "admin"  # the name the admin token acts under (in alarms' "by" and the like)


class ApiError(Exception):
    """An error answer: HTTP status, a stable code, a translated message and extra fields.

    The message is rendered per request (`body`), so the same error speaks the caller's
    language. With `rejection` the code, message and path are the pipeline's own.
    """

    def __init__(self, status: int, code: str, *, params: dict[str, Any] | None = None,
                 extra: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                 rejection: Rejection | None = None, message_key: str | None = None) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.params = params or {}
        self.extra = extra or {}
        self.headers = headers
        self.rejection = rejection
        # one code may be worded for the case: an expired session is `unauthorized` too
        self.message_key = message_key or f"api.{code}"

    @classmethod
    def from_rejection(cls, status: int, rejection: Rejection,
                       headers: dict[str, str] | None = None) -> ApiError:
        return cls(status, rejection.code.value, rejection=rejection, headers=headers)

    def body(self, lang: str | None) -> dict[str, Any]:
        """The JSON error body `{"code", "message", ...}` in `lang`."""
        if self.rejection is not None:
            body = self.rejection.to_dict(lang)
        else:
            body = {"code": self.code, "message": t(self.message_key, lang, **self.params)}
        body.update(self.extra)
        return body


def get_core(request: Request) -> Core:
    core: Core = request.app.state.core
    return core


CoreDep = Annotated[Core, Depends(get_core)]


def request_lang(request: HTTPConnection) -> str | None:
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


# --- console users: who is calling, and may they? -------------------------------------

SESSION_COOKIE = "wulian_session"
CONSOLE_HEADER = "X-Wulian-Console"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, scheme_name="ConsoleSession",
                       description="The console's session (`POST /api/v1/auth/login` sets it)")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: a console user (by session cookie) or the admin token (`admin`)."""

    name: str
    role: Role
    session: bool = False  # authenticated by the session cookie, not the token
    expires_ms: int | None = None  # when the session ends unless used again

    def allows(self, needed: Role) -> bool:
        """True when the caller's role may do what `needed` may."""
        return self.role.allows(needed)


def session_cookie(request: Request, token: str, *, delete: bool = False) -> str:
    """The Set-Cookie value for a session token, or one that deletes the cookie."""
    # HttpOnly: page scripts (and so injected ones) cannot read it; SameSite=Strict: the
    # browser sends it only on requests the console's own pages start
    parts = [f"{SESSION_COOKIE}={'' if delete else token}", "HttpOnly", "SameSite=Strict",
             "Path=/"]
    if delete:
        parts.append("Max-Age=0")
    if request.url.scheme == "https":
        parts.append("Secure")
    return "; ".join(parts)


def check_origin(request: Request) -> None:
    """403 `csrf` when the browser says the request was started by another site."""
    origin = request.headers.get("origin")
    host = request.headers.get("host", "")
    if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
        raise ApiError(403, "csrf")
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise ApiError(403, "csrf")


def check_csrf(request: Request) -> None:
    """403 `csrf` unless a cookie-authenticated change comes from the console's own pages.

    SameSite=Strict already keeps the cookie off other sites' requests; the same-origin
    check and the custom header (which no other site can add without a CORS grant, and
    wulian grants none) hold even where a browser ignores SameSite.
    """
    if request.method in SAFE_METHODS:
        return
    check_origin(request)
    if request.headers.get(CONSOLE_HEADER) != "1":
        raise ApiError(403, "csrf")


def account_service(request: Request) -> AccountService:
    service: AccountService = request.app.state.account_service
    return service


def caller(request: Request,
           creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
           token: Annotated[str | None, Depends(_cookie)]) -> Caller:
    """The authenticated caller: admin token or console session; 401 `unauthorized` else.

    A bearer token, when sent, decides alone: a wrong one is refused even beside a valid
    cookie. Cookie-authenticated changes must pass `check_csrf`.
    """
    known: Caller | None = getattr(request.state, "caller", None)
    if known is not None:  # authenticated before its body was read (`AuthBeforeBody`)
        return known
    return identify(request, creds, token)


def request_credentials(request: Request) -> tuple[HTTPAuthorizationCredentials | None,
                                                   str | None]:
    """The bearer credentials and session cookie a request carries, as `caller` takes them."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    creds = (HTTPAuthorizationCredentials(scheme=scheme, credentials=value.strip())
             if scheme.lower() == "bearer" and value.strip() else None)
    return creds, request.cookies.get(SESSION_COOKIE) or None


def identify(request: Request, creds: HTTPAuthorizationCredentials | None,
             token: str | None) -> Caller:
    """Who `creds` (a bearer token) or `token` (a session cookie) say the caller is."""
    if creds is not None:
        require_admin(request, creds)
        return Caller(ADMIN_CALLER, Role.ADMIN)
    if not token:
        raise ApiError(401, "unauthorized", message_key="api.login_required",
                       headers={"WWW-Authenticate": "Bearer"})
    found = account_service(request).session(token)
    if found is None:
        raise ApiError(401, "unauthorized", message_key="api.session_expired", headers={
            "WWW-Authenticate": "Bearer", "Set-Cookie": session_cookie(request, "", delete=True)})
    check_csrf(request)
    return Caller(found.user.username, found.user.role, session=True,
                  expires_ms=found.expires_ms)


CallerDep = Annotated[Caller, Depends(caller)]


def has_credentials(conn: HTTPConnection) -> bool:
    """Whether `caller` would find a caller, without a database write (for GET /metrics).

    The same rule as `caller` (a bearer token decides alone, else the session cookie);
    roles and CSRF are left to the route. A new kind of credential must be added here too.
    """
    scheme, _, given = conn.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and given:
        expected: bytes = conn.app.state.admin_token_digest
        return hmac.compare_digest(hashlib.sha256(given.strip().encode()).digest(), expected)
    token = conn.cookies.get(SESSION_COOKIE)
    if not token:
        return False
    service: AccountService = conn.app.state.account_service
    return service.session(token) is not None


def role_name(role: Role, lang: str | None) -> str:
    """A role as people call it, in `lang`."""
    return t(f"account.role.{role.value}", lang)


def ensure_role(request: Request, who: Caller, needed: Role) -> Caller:
    """`who`, if their role allows `needed`; else 403 `forbidden` naming the role needed."""
    if who.allows(needed):
        return who
    lang = request_lang(request)
    raise ApiError(403, "forbidden", params={
        "role": role_name(needed, lang), "name": who.name, "your_role": role_name(who.role, lang),
    }, extra={"needed": needed.value})


def require_role(role: Role) -> Callable[[Request, Caller], Caller]:
    """A dependency letting through callers whose role allows `role`."""

    def needs_role(request: Request, who: CallerDep) -> Caller:
        return ensure_role(request, who, role)

    needs_role.__name__ = f"require_{role.value}"
    return needs_role


def read_or_admin(request: Request, who: CallerDep) -> Caller:
    """Reading (GET/HEAD) for every console role; anything else for admins only."""
    return ensure_role(request, who,
                       Role.VIEWER if request.method in SAFE_METHODS else Role.ADMIN)


def read_or_operator(request: Request, who: CallerDep) -> Caller:
    """Reading (GET/HEAD) for every console role; anything else for operators and admins."""
    return ensure_role(request, who,
                       Role.VIEWER if request.method in SAFE_METHODS else Role.OPERATOR)


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
