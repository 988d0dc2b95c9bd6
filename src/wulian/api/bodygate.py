"""Refuse a change before its body is read: unauthenticated (401) or too large (413).

FastAPI reads and parses a request's body before it runs the route's dependencies, so a
100 MB POST without credentials to `/api/v1/devices` was read and parsed (~250 MB of
memory) before its 401; four at once took the process near 1 GB. This gate answers from
the headers alone, and caps what a body may grow to while it streams.
"""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wulian.api.deps import ApiError, identify, request_credentials, request_lang

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Devices authenticate with HTTP Basic and their routes read (and cap) the body themselves,
# after authentication; logging in and out is open to anyone.
_SELF_GUARDED = re.compile(r"^/api/v1/devices/[^/]+/(telemetry|events/[^/]+)$")
_OPEN = frozenset({"/api/v1/auth/login", "/api/v1/auth/logout"})


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "request_too_large", params={"limit": limit})


class AuthBeforeBody:
    """ASGI middleware: authenticate API changes from their headers, cap their bodies."""

    def __init__(self, app: ASGIApp, *, prefix: str, limit: int) -> None:
        self.app = app
        self.prefix = prefix + "/"
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (scope["type"] != "http" or scope["method"] not in BODY_METHODS
                or not path.startswith(self.prefix) or _SELF_GUARDED.match(path)):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            if path not in _OPEN:
                creds, token = request_credentials(request)
                who = await run_in_threadpool(identify, request, creds, token)
                scope.setdefault("state", {})["caller"] = who
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.limit:
                raise BodyTooLarge(self.limit)
        except ApiError as exc:
            response = JSONResponse(exc.body(request_lang(request)), exc.status,
                                    headers=exc.headers)
            await response(scope, receive, send)
            return
        await self._capped(scope, receive, send, request)

    async def _capped(self, scope: Scope, receive: Receive, send: Send,
                      request: Request) -> None:
        """Run the app, answering 413 itself once a (chunked or lying) body passes the limit.

        FastAPI turns any error while reading a body into a 400, so the gate answers first
        and drops what the app sends after it.
        """
        size = 0
        answered = False

        async def capped_receive() -> Message:
            nonlocal size, answered
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > self.limit and not answered:
                    answered = True
                    exc = BodyTooLarge(self.limit)
                    await JSONResponse(exc.body(request_lang(request)), exc.status)(
                        scope, receive, send)
                    raise exc
            return message

        async def guarded_send(message: Message) -> None:
            if not answered:
                await send(message)

        await self.app(scope, capped_receive, guarded_send)
