"""A change is refused from its headers: no body is read for a caller without credentials,
and none past the size limit (issue 10: a 100 MB unauthenticated POST was read and parsed
before its 401)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import uvicorn

from tests.fixtures.api import ADMIN_TOKEN
from tests.fixtures.common import free_port
from wulian.api import create_app
from wulian.bootstrap import build_core
from wulian.config import Settings

LIMIT = 64 * 1024


@pytest.fixture
def server(tmp_path: Path) -> Iterator[int]:
    """The API served by uvicorn on a free port (a real socket: what a body costs shows)."""
    core = build_core(Settings(data_dir=tmp_path, max_request_bytes=LIMIT),
                      provision_broker=False)
    port = free_port()
    config = uvicorn.Config(create_app(core, admin_token=ADMIN_TOKEN), host="127.0.0.1",
                            port=port, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        srv.should_exit = True
        thread.join(10)
        core.close()


def _answer(port: int, head: str, body: bytes = b"", timeout_s: float = 5.0) -> tuple[int, dict]:
    """Send the request head (and `body`, if any), read the answer: (status, JSON body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(head.encode() + body)
        data = b""
        while b"\r\n\r\n" not in data or not _complete(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head_bytes, _, payload = data.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    return status, orjson.loads(payload) if payload else {}


def _complete(data: bytes) -> bool:
    head, _, payload = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(payload) >= int(line.split(b":", 1)[1])
    return True


@pytest.mark.parametrize("path", ["/api/v1/devices", "/api/v1/products", "/api/v1/rules"])
def test_an_unauthenticated_change_is_refused_before_its_body_is_sent(server: int,
                                                                      path: str) -> None:
    # 100 MB announced and not one byte of it sent: the 401 must come from the headers
    # alone (before, the server waited to read and parse the whole body first).
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {100 * 1024 * 1024}\r\n\r\n")
    status, body = _answer(server, head, timeout_s=5)
    assert status == 401 and body["code"] == "unauthorized"


def test_a_wrong_token_is_refused_before_its_body_is_sent(server: int) -> None:
    head = ("POST /api/v1/devices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Authorization: Bearer not-the-token\r\nContent-Length: 1000\r\n\r\n")
    status, body = _answer(server, head)
    assert status == 401 and body["code"] == "unauthorized"


def test_a_declared_body_over_the_limit_is_refused_from_its_headers(server: int) -> None:
    head = ("POST /api/v1/products HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: {LIMIT + 1}\r\n\r\n")
    status, body = _answer(server, head)
    assert status == 413 and body["code"] == "request_too_large"


def test_a_chunked_body_is_cut_off_at_the_limit(server: int) -> None:
    chunk = b"x" * 16384
    stream = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(LIMIT // 16384 + 2))
    head = ("POST /api/v1/products HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {ADMIN_TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n")
    status, body = _answer(server, head, stream + b"0\r\n\r\n")
    assert status == 413 and body["code"] == "request_too_large"


def test_an_authenticated_change_within_the_limit_still_works(server: int) -> None:
    doc = orjson.dumps({"id": "p1", "name": "P1", "properties": [
        {"id": "t", "type": "float"}]})
    head = ("POST /api/v1/products HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: {len(doc)}\r\n\r\n")
    status, _ = _answer(server, head, doc)
    assert status in (200, 201)
