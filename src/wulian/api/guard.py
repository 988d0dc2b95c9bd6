"""Request bodies at the ASGI level: who may send one, and how large it may be.

FastAPI reads and parses a route's body before it runs the route's dependencies, so the
401 of `caller` came only after a 100 MB upload had been read and parsed. This middleware
answers before the body: 401 to a caller without valid credentials, 413 to a body past
`max_body` (on the declared length, or as soon as a chunked body passes it).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wulian.api.deps import ApiError, has_credentials, request_lang

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Open to callers without a token or session (the body is still capped).
_OPEN = re.compile(r"^/api/v1/auth/(login|logout)/?$")
# Device ingest checks the device's Basic credentials, then streams the body under its own
# limit (max_payload_bytes) and keeps what it refuses as a dead letter: left alone here.
_INGEST = re.compile(r"^/api/v1/devices/[^/]+/(telemetry|events/[^/]+)/?$")


class _TooLarge(Exception):
    pass


class BodyGuard:
    """Authenticate before the body is read; refuse bodies past `max_body` bytes."""

    def __init__(self, app: ASGIApp, *, max_body: int,
                 check: Callable[[HTTPConnection], bool] = has_credentials) -> None:
        self.app = app
        self.max_body = max_body
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (scope["type"] != "http" or scope["method"] not in BODY_METHODS
                or not path.startswith("/api/v1/") or _INGEST.match(path)):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        # a session check is a database read: off the event loop
        if not _OPEN.match(path) and not await run_in_threadpool(self.check, conn):
            await self._answer(scope, receive, send, ApiError(
                401, "unauthorized", headers={"WWW-Authenticate": "Bearer", "Connection": "close"}))
            return
        declared = conn.headers.get("content-length", "")
        too_large = ApiError(413, "body_too_large", params={"limit": self.max_body},
                             message_key="hardening.body_too_large",
                             headers={"Connection": "close"})
        if declared.isdigit() and int(declared) > self.max_body:
            await self._answer(scope, receive, send, too_large)
            return
        try:
            body = await self._read(receive)
        except _TooLarge:
            await self._answer(scope, receive, send, too_large)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> list[Message]:
        """The body's messages, read whole but never past `max_body` bytes."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages  # disconnected: the app sees it as it would have
            size += len(message.get("body", b""))
            if size > self.max_body:
                raise _TooLarge
            if not message.get("more_body", False):
                return messages

    async def _answer(self, scope: Scope, receive: Receive, send: Send, error: ApiError) -> None:
        lang = request_lang(HTTPConnection(scope))
        await JSONResponse(error.body(lang), error.status, headers=error.headers)(
            scope, receive, send)


def _replay(messages: list[Message], receive: Receive) -> Callable[[], Awaitable[Message]]:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
