"""The FastAPI application: routers under /api/v1, JSON errors in the caller's language."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wulian import __version__
from wulian.accounts import AccountService
from wulian.api import audit
from wulian.api.audit import AuditTrail
from wulian.api.bodygate import AuthBeforeBody
from wulian.api.deps import (
    RETRY_AFTER_S,
    ApiError,
    read_or_admin,
    read_or_operator,
    request_lang,
    require_role,
)
from wulian.api.routes import (
    alarms,
    auth,
    deliveries,
    devices,
    ingest,
    overview,
    products,
    prom,
    quotas,
    rejections,
    rules,
    scenarios,
    stats,
    stream,
    telemetry,
)
from wulian.api.routes.quotas import api_rate
from wulian.bootstrap import Core
from wulian.console import mount_console
from wulian.domain.account import AccountError, Role
from wulian.domain.device import DeviceError
from wulian.domain.rejection import RejectCode, Rejection
from wulian.domain.thingmodel import ThingModelError
from wulian.errors import WulianError
from wulian.i18n import t
from wulian.pipeline.batcher import AsyncBatcher
from wulian.ports import StorageUnavailable
from wulian.quotas.api import ApiRateLimiter, OrgQuotaCache
from wulian.storage.accounts import SqlAccounts
from wulian.storage.audit import SqlAuditLog

log = logging.getLogger(__name__)
API_PREFIX = "/api/v1"
_HTTP_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}
# pydantic error types with a translated wording; the rest get a generic one naming the type
_PROBLEMS = {
    "missing": "missing", "extra_forbidden": "extra_forbidden", "string_type": "string",
    "int_type": "int", "int_parsing": "int", "int_from_float": "int", "float_type": "number",
    "float_parsing": "number", "bool_type": "bool", "bool_parsing": "bool", "dict_type": "object",
    "model_type": "object", "model_attributes_type": "object", "list_type": "array",
    "greater_than_equal": "ge", "less_than_equal": "le", "greater_than": "gt",
    "less_than": "lt", "string_too_long": "too_long", "string_too_short": "too_short",
    "literal_error": "literal", "enum": "literal", "json_invalid": "json",
}


def _error(exc: ApiError, lang: str | None) -> JSONResponse:
    return JSONResponse(exc.body(lang), exc.status, headers=exc.headers)


def _field(loc: tuple[Any, ...]) -> tuple[str, str]:
    """(`tags.room` or `items[2]`, where: body/query/path/header) from a pydantic location."""
    where = str(loc[0]) if loc else "body"
    name = ""
    for part in loc[1:]:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or where, where


def _validation_error(exc: RequestValidationError, lang: str | None) -> JSONResponse:
    errors = []
    for err in exc.errors():
        kind = str(err.get("type", ""))
        # a JSON syntax error is located by character offset, which is no field
        loc = tuple(err.get("loc", ()))[:1] if kind == "json_invalid" else err.get("loc", ())
        field, where = _field(tuple(loc))
        ctx = {k: (", ".join(v) if isinstance(v, list | tuple) else v)
               for k, v in (err.get("ctx") or {}).items()}
        problem = t(f"api.problem.{_PROBLEMS.get(kind, 'other')}", lang, type=kind, **ctx)
        errors.append({"field": field, "in": where, "type": kind, "message": problem})
    first = errors[0] if errors else {"field": "body", "in": "body", "message": ""}
    body = {"code": "invalid_request",
            "message": t("api.invalid_request", lang, field=first["field"],
                         problem=first["message"]),
            "field": first["field"], "in": first["in"], "errors": errors}
    return JSONResponse(body, 422)


class CatchAll:
    """Turn an unexpected exception into a logged 500 JSON answer, never a traceback.

    Starlette's own catch-all answers and then re-raises for the server to log; catching
    here instead gives one log line of ours and keeps the connection's answer JSON.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unexpected error answering %s %s", scope.get("method"),
                          scope.get("path"))
            if started:
                raise  # too late to answer cleanly; let the server drop the connection
            lang = request_lang(Request(scope)) if "app" in scope else None
            response = JSONResponse(
                {"code": "internal_error", "message": t("api.internal_error", lang)}, 500)
            await response(scope, receive, send)


def create_app(core: Core, *, admin_token: str) -> FastAPI:
    """The HTTP API over `core`: callers show `Authorization: Bearer <admin_token>` (admin)
    or a console session cookie (the user's role); devices use HTTP Basic."""
    if not admin_token:
        raise ValueError(t("api.admin_token_required"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = core.settings
        batcher = AsyncBatcher(core.pipeline, settings.batch_max, settings.batch_ms)
        await batcher.start()
        app.state.batcher = batcher
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title="wulian", version=__version__, openapi_url="/openapi.json",
                  docs_url="/docs", redoc_url=None, lifespan=lifespan,
                  description="wulian (物联): devices, thing models, telemetry.")
    app.state.core = core
    app.state.admin_token_digest = hashlib.sha256(admin_token.encode()).digest()
    app.state.auth_flights = {}
    app.state.accounts = SqlAccounts.for_store(core.store)
    app.state.audit = SqlAuditLog.for_store(core.store)
    app.state.account_service = AccountService(
        app.state.accounts, session_ttl_ms=core.settings.session_ttl_s * 1000)

    # Every console role may read; changing needs the role named (the admin token is admin).
    app.state.api_limiter = ApiRateLimiter(OrgQuotaCache(core.store))
    read_admin = [Depends(read_or_admin), Depends(api_rate)]
    for module in (products, devices, telemetry, rejections, rules, deliveries, stream,
                   scenarios, overview, quotas):
        app.include_router(module.router, prefix=API_PREFIX, dependencies=read_admin)
    # operators handle alarms (acknowledge, clear); only admins change what raises them
    app.include_router(alarms.router, prefix=API_PREFIX,
                       dependencies=[Depends(read_or_operator), Depends(api_rate)])
    app.include_router(stats.router, prefix=API_PREFIX, dependencies=read_admin)
    app.include_router(auth.users_router, prefix=API_PREFIX,
                       dependencies=[Depends(require_role(Role.ADMIN))])
    app.include_router(auth.router, prefix=API_PREFIX)  # login: open; the rest per route
    app.include_router(audit.router, prefix=API_PREFIX,
                       dependencies=[Depends(require_role(Role.ADMIN))])
    app.include_router(stats.health_router, prefix=API_PREFIX)
    app.include_router(ingest.router, prefix=API_PREFIX)
    app.include_router(prom.router)  # /metrics, where Prometheus looks by default

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc, request_lang(request))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc, request_lang(request))

    @app.exception_handler(ThingModelError)
    async def invalid_thing_model(request: Request, exc: ThingModelError) -> JSONResponse:
        return _error(ApiError(422, "invalid_thing_model",
                               params={"field": exc.path, "problem": exc.problem},
                               extra={"field": exc.path}), request_lang(request))

    @app.exception_handler(DeviceError)
    async def invalid_device(request: Request, exc: DeviceError) -> JSONResponse:
        return _error(ApiError(422, "invalid_device",
                               params={"field": exc.field, "problem": exc.problem},
                               extra={"field": exc.field}), request_lang(request))

    @app.exception_handler(AccountError)
    async def invalid_account(request: Request, exc: AccountError) -> JSONResponse:
        lang = request_lang(request)
        return _error(ApiError(422, "invalid_account",
                               params={"field": exc.field, "problem": exc.message(lang)},
                               extra={"field": exc.field}), lang)

    @app.exception_handler(WulianError)
    async def wulian_error(request: Request, exc: WulianError) -> JSONResponse:
        return _error(ApiError(exc.status, exc.code, params=exc.params, extra=exc.extra,
                               headers=exc.headers, message_key=exc.message_key),
                      request_lang(request))

    @app.exception_handler(StorageUnavailable)
    async def storage_unavailable(request: Request, exc: StorageUnavailable) -> JSONResponse:
        log.warning("storage unavailable answering %s: %s", request.url.path, exc)
        return _error(ApiError.from_rejection(503, Rejection(RejectCode.STORAGE_UNAVAILABLE),
                                              {"Retry-After": RETRY_AFTER_S}),
                      request_lang(request))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return _error(ApiError(exc.status_code, code, headers=dict(exc.headers or {}), params={
            "status": exc.status_code, "path": request.url.path}), request_lang(request))

    mount_console(app)  # after the API: its catch-all page routes must not shadow it
    # added first, so it runs inside the gate: the caller is known when a change is recorded
    app.add_middleware(AuditTrail, prefix=API_PREFIX, audit=app.state.audit)
    app.add_middleware(AuthBeforeBody, prefix=API_PREFIX, limit=core.settings.max_request_bytes)
    app.add_middleware(CatchAll)
    return app
