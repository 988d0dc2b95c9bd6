"""Request bodies: nobody without credentials gets a body read, and no body is read past the cap.

The app is driven over ASGI directly so the test sees exactly how many body bytes the
server pulled: a 100 MB upload that the server read would show here as 100 MB received.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.api import ADMIN_TOKEN, Api, running_api

CHUNK = 64 * 1024
HUNDRED_MB = 100 * 1024 * 1024


@pytest.fixture
def small_cap_api(tmp_path: Path) -> Iterator[Api]:
    yield from running_api(tmp_path, f"sqlite:///{tmp_path / 'wulian.db'}",
                           max_body_bytes=64 * 1024)


def call(app: Any, method: str, path: str, headers: dict[str, str], size: int, *,
         declare: bool = True) -> tuple[int, dict[str, Any], int]:
    """(status, JSON body, body bytes the server pulled) for a `size`-byte upload."""
    pulled = 0
    answer: dict[str, Any] = {}
    body: list[bytes] = []
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-type", b"application/json"))
    if declare:
        raw.append((b"content-length", str(size).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "headers": raw, "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 8080), "root_path": ""}

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled >= size:
            await asyncio.sleep(3600)  # the client waits for the answer
        n = min(CHUNK, size - pulled)
        pulled += n
        return {"type": "http.request", "body": b"[" + b" " * (n - 1) if n else b"",
                "more_body": pulled < size}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    async def run() -> None:
        await asyncio.wait_for(app(scope, receive, send), 30)

    asyncio.run(run())
    return answer["status"], json.loads(b"".join(body) or b"{}"), pulled


@pytest.mark.parametrize("path", ["/api/v1/devices", "/api/v1/products"])
def test_an_unauthenticated_upload_is_refused_before_its_body_is_read(
        sqlite_api: Api, path: str) -> None:
    for declare in (True, False):  # with a Content-Length and chunked
        status, body, pulled = call(sqlite_api.client.app, "POST", path, {}, HUNDRED_MB,
                                    declare=declare)
        assert status == 401 and body["code"] == "unauthorized"
        assert pulled <= CHUNK, pulled
        status, body, pulled = call(sqlite_api.client.app, "POST", path,
                                    {"Authorization": "Bearer wrong"}, HUNDRED_MB,
                                    declare=declare)
        assert status == 401 and pulled <= CHUNK


def test_an_authenticated_body_past_the_cap_gets_413_unread(small_cap_api: Api) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Accept-Language": "zh"}
    status, body, pulled = call(small_cap_api.client.app, "POST", "/api/v1/devices", admin,
                                HUNDRED_MB)
    assert status == 413 and body["code"] == "body_too_large"
    assert "65536" in body["message"] and "请求" in body["message"]
    assert pulled == 0  # declared too large: refused on the headers alone
    status, body, pulled = call(small_cap_api.client.app, "POST", "/api/v1/products", admin,
                                HUNDRED_MB, declare=False)
    assert status == 413 and body["code"] == "body_too_large"
    assert pulled <= 64 * 1024 + CHUNK  # chunked: read only until past the cap


def test_a_body_under_the_cap_still_works(small_cap_api: Api) -> None:
    from tests.fixtures.common import ENV_SENSOR
    r = small_cap_api.post("/products", json=ENV_SENSOR)
    assert r.status_code in (200, 201), r.text
    r = small_cap_api.post("/devices", json={"id": "d1", "product": ENV_SENSOR["id"]})
    assert r.status_code == 201, r.text
    r = small_cap_api.client.post("/api/v1/products", content=b"x" * 70_000,
                                  headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 413
