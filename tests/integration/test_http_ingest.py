"""Devices posting over HTTP: every refusal is a clear 4xx, counted and kept; good data flows."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from tests.fixtures.api import ADMIN, ADMIN_TOKEN, Api, basic
from wulian.api import create_app
from wulian.bootstrap import build_core
from wulian.config import Settings
from wulian.pipeline.ingest import now_ms
from wulian.ports import StorageUnavailable

HOUR = 3_600_000
LIMIT = 256 * 1024  # Settings().max_payload_bytes

# (what, device in the path, whose credentials, event, body, status, code, path in payload)
BAD = [
    ("malformed JSON", "d1", "d1", None, b'{"temperature": ', 400, "malformed_json", None),
    ("not an object", "d1", "d1", None, b"[1, 2]", 400, "bad_shape", "$[0]"),
    ("nothing in it", "d1", "d1", None, b"{}", 400, "empty_payload", "$"),
    ("unknown property", "d1", "d1", None, b'{"pressure": 1013}', 422, "unknown_property",
     "$.pressure"),
    ("wrong type", "d1", "d1", None, b'{"temperature": "hot"}', 422, "wrong_type",
     "$.temperature"),
    ("out of range", "d1", "d1", None, b'{"humidity": 120}', 422, "out_of_range", "$.humidity"),
    ("not in the enum", "d1", "d1", None, b'{"status": "meh"}', 422, "invalid_enum", "$.status"),
    ("ts in seconds", "d1", "d1", None, b'{"ts": 1700000000, "humidity": 1}', 422,
     "bad_timestamp", "$.ts"),
    ("ts in the future", "d1", "d1", None, None, 422, "timestamp_in_future", "$.ts"),
    ("unknown event", "d1", "d1", "explosion", b"{}", 422, "unknown_event", None),
    ("bad event param", "d1", "d1", "fault", b'{"code": 1.5}', 422, "wrong_type", "$.code"),
    ("oversize body", "d1", "d1", None, b'{"status": "' + b"x" * LIMIT + b'"}', 413,
     "payload_too_large", None),
    ("wrong secret", "d1", "wrong", None, b'{"humidity": 1}', 401, "bad_credentials", None),
    ("unknown device", "ghost", "ghost", None, b'{"humidity": 1}', 401, "bad_credentials",
     None),
    ("no credentials", "d1", None, None, b'{"humidity": 1}', 401, "bad_credentials", None),
    ("another's path", "good", "d1", None, b'{"humidity": 1}', 403, "forbidden_topic", None),
]


@pytest.fixture
def fleet(api: Api, env_sensor_doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    """env-sensor devices d1 and good, with their auth headers."""
    api.product(env_sensor_doc)
    return {"d1": api.device("d1"), "good": api.device("good")}


def test_every_bad_input_is_refused_clearly_counted_and_kept(
        api: Api, fleet: dict[str, dict[str, str]]) -> None:
    start = now_ms() - HOUR
    for i, (what, device, creds, event, body, status, code, path) in enumerate(BAD):
        auth = (fleet[creds] if creds in fleet else basic(device, "not-the-secret")
                if creds else {})
        if body is None:
            body = orjson.dumps({"ts": now_ms() + HOUR, "temperature": 20})
        r = api.send(device, auth, body, event=event)
        assert r.status_code == status, (what, r.text)
        answer = r.json()
        assert answer["code"] == code, what
        assert answer["message"] and "Traceback" not in r.text, what
        assert answer.get("path") == path, what
        if status == 401:
            assert r.headers["www-authenticate"].startswith("Basic"), what
        # a well-behaved device posting in between is not disturbed
        good = api.send("good", fleet["good"], orjson.dumps({"ts": start + i, "humidity": i}))
        assert good.status_code == 202, (what, good.text)

    points = api.get("/devices/good/telemetry", params={"property": "humidity",
                                                        "since": start}).json()["points"]
    assert points == [{"ts": start + i, "value": i} for i in range(len(BAD))]
    assert api.get("/devices/d1/latest").json() == {}, "nothing of d1's bad input was stored"

    stats = api.stats()
    assert stats["messages_rejected"] == len(BAD)
    assert stats["messages_accepted"] == len(BAD)
    expected: dict[str, int] = {}
    for row in BAD:
        expected[row[6]] = expected.get(row[6], 0) + 1
    assert stats["rejected_by_code"] == expected

    kept = api.rejections()
    assert len(kept) == len(BAD)
    assert sorted(r["code"] for r in kept) == sorted(row[6] for row in BAD)
    assert {r["protocol"] for r in kept} == {"http"}
    by_device = {r["device_id"] for r in kept}
    assert by_device == {"d1", "ghost", "good"}
    wrong = next(r for r in kept if r["code"] == "wrong_type" and "hot" in r["payload"])
    assert wrong["payload"] == '{"temperature": "hot"}' and wrong["device_id"] == "d1"
    assert wrong["topic"] == "/api/v1/devices/d1/telemetry"
    assert "$.temperature" in wrong["message"]
    too_big = next(r for r in kept if r["code"] == "payload_too_large")
    assert len(too_big["payload"]) <= 4096, "a dead letter keeps the head of a payload only"
    assert [r["code"] for r in api.rejections(device="ghost")] == ["bad_credentials"]


def test_refusals_speak_chinese_when_asked(api: Api,
                                           fleet: dict[str, dict[str, str]]) -> None:
    r = api.send("d1", fleet["d1"], b'{"humidity": 120}', **{"Accept-Language": "zh-CN"})
    assert r.status_code == 422
    assert r.json() == {"code": "out_of_range", "path": "$.humidity",
                        "message": "数值 120 超出允许范围 [0, 100] ($.humidity)"}
    r = api.send("d1", {}, b"{}", **{"Accept-Language": "zh"})
    assert r.json()["message"] == "设备 ID 或密钥错误"


def test_binary_garbage_is_kept_as_base64(api: Api, fleet: dict[str, dict[str, str]]) -> None:
    garbage = bytes(range(256))
    r = api.send("d1", fleet["d1"], garbage)
    assert r.status_code == 400 and r.json()["code"] == "malformed_json"
    (kept,) = api.rejections("d1")
    assert kept["payload_base64"] is True
    import base64

    assert base64.b64decode(kept["payload"]) == garbage


def test_arrays_and_the_largest_allowed_body_are_accepted(
        api: Api, fleet: dict[str, dict[str, str]]) -> None:
    start = now_ms() - HOUR
    body = orjson.dumps([{"ts": start + k, "temperature": k % 80} for k in range(200)])
    r = api.send("d1", fleet["d1"], body)
    assert r.status_code == 202 and r.json()["points"] == 200
    pad = LIMIT - len(b'{"status": "ok", "ts": 1700000000000}')
    body = b'{"status": "ok", "ts": 1700000000000' + b" " * pad + b"}"
    assert len(body) == LIMIT
    assert api.send("d1", fleet["d1"], body).status_code == 202


def test_storage_down_is_503_and_nothing_is_acknowledged(
        sqlite_api: Api, env_sensor_doc: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    sqlite_api.product(env_sensor_doc)
    auth = sqlite_api.device("d1")

    def down(batch: Any) -> int:
        raise StorageUnavailable("disk full")

    monkeypatch.setattr(sqlite_api.core.store, "write", down)
    r = sqlite_api.send("d1", auth, b'{"humidity": 3}')
    assert r.status_code == 503
    assert r.json()["code"] == "storage_unavailable" and r.headers["retry-after"]
    monkeypatch.undo()
    assert sqlite_api.send("d1", auth, b'{"humidity": 4}').status_code == 202
    assert sqlite_api.get("/devices/d1/latest").json()["humidity"]["value"] == 4


# --- the streamed read, through the ASGI interface itself -------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_an_endless_body_is_cut_off_not_buffered(tmp_path: Path,
                                                       env_sensor_doc: dict[str, Any]) -> None:
    core = build_core(Settings(data_dir=tmp_path), provision_broker=False)
    core.registry.import_product(env_sensor_doc)
    secret = core.registry.add_device("d1", "env-sensor").secret
    app = create_app(core, admin_token=ADMIN_TOKEN)
    chunk = b" " * 1024
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": True}  # never ends

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/api/v1/devices/d1/telemetry",
             "raw_path": b"/api/v1/devices/d1/telemetry", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
             "headers": [(b"authorization", basic("d1", secret)["Authorization"].encode()),
                         (b"transfer-encoding", b"chunked")]}
    try:
        async with app.router.lifespan_context(app):
            await asyncio.wait_for(app(scope, receive, send), 10)
    finally:
        core.close()
    assert sent[0]["status"] == 413
    assert orjson.loads(sent[1]["body"])["code"] == "payload_too_large"
    assert pulled == LIMIT // len(chunk) + 1, "reading stops at the first byte past the limit"


# --- a real server, over IPv4 and IPv6 ----------------------------------------------------


def _ipv6_dual_stack() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", 0))
        return True
    except OSError:
        return False


@pytest.fixture
def live(tmp_path: Path, env_sensor_doc: dict[str, Any]) -> Iterator[tuple[int, str]]:
    """uvicorn on `::` (both IPv4 and IPv6), one env-sensor device d1: (port, secret)."""
    if not _ipv6_dual_stack():
        pytest.skip("no dual-stack IPv6 on this machine")
    core = build_core(Settings(data_dir=tmp_path), provision_broker=False)
    core.registry.import_product(env_sensor_doc)
    secret = core.registry.add_device("d1", "env-sensor").secret
    # asyncio's own `::` sockets are IPv6-only: bind a dual-stack one and hand it over,
    # so IPv4 peers arrive as ::ffff:a.b.c.d, as they do behind many real deployments
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(core, admin_token=ADMIN_TOKEN),
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield port, secret
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        core.close()


def test_over_a_real_socket_on_ipv4_and_ipv6(live: tuple[int, str]) -> None:
    port, secret = live
    for host, version in (("127.0.0.1", 4), ("[::1]", 6)):
        url = f"http://{host}:{port}/api/v1"
        r = httpx.post(f"{url}/devices/d1/telemetry", content=b'{"humidity": 12}',
                       headers=basic("d1", secret))
        assert r.status_code == 202, r.text
        status = httpx.get(f"{url}/devices/d1", headers=ADMIN).json()["status"]
        assert status["ip_version"] == version
        assert status["remote"].startswith("127.0.0.1:" if version == 4 else "[::1]:")


def test_a_declared_oversize_body_is_refused_before_it_is_sent(live: tuple[int, str]) -> None:
    port, secret = live
    head = (f"POST /api/v1/devices/d1/telemetry HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {basic('d1', secret)['Authorization']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {100 * LIMIT}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.encode())  # and not one byte of the body
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = s.recv(4096)
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"payload_too_large"' in answer
