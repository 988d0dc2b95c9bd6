"""Delivering rule actions to real receivers: an HTTP server, an SMTP sink, Mosquitto.

The worker is driven by `run_once(now)` with a clock the test holds, so the backoff
schedule is checked exactly and nothing sleeps through it.
"""

from __future__ import annotations

import email
import email.policy
import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest
from aiosmtpd.controller import Controller
from fastapi import Depends
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import create_engine

from tests.fixtures.api import running_api
from tests.fixtures.common import free_port
from tests.fixtures.mosquitto import MosquittoBroker, wait_until
from wulian.api.deps import require_admin
from wulian.api.routes import deliveries
from wulian.config import Settings
from wulian.delivery.outbox import SqlOutbox
from wulian.delivery.senders import (
    EmailSender,
    MqttSender,
    WebhookSender,
    build_senders,
    paho_publisher,
)
from wulian.delivery.worker import LEASE_MS, DeliveryWorker
from wulian.ports import StorageUnavailable, Store
from wulian.rules.actions import DELIVERY_HEADER, SIGNATURE_HEADER, DeliveryDraft, plan, verify
from wulian.rules.alarms import AlarmChange, ChangeKind
from wulian.rules.model import Severity, parse_rule
from wulian.storage import open_store

T0 = 1_700_000_000_000
SECRET = "receiver-shared-secret"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (f"sqlite:///{tmp_path / 'w.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    s = open_store(url)
    yield s
    s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'w.db'}")
    yield s
    s.close()


@pytest.fixture
def outbox(store: Store) -> SqlOutbox:
    return SqlOutbox(store.engine)  # type: ignore[attr-defined]


@dataclass
class Clock:
    """Time as the test says it is."""

    now: int = T0

    def __call__(self) -> int:
        return self.now


# --- a webhook receiver -------------------------------------------------------------------


@dataclass
class Hit:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server on loopback answering from a script (the last entry repeats)."""

    script: list[int | tuple[int, dict[str, str]]]
    delay_s: float = 0.0
    hits: list[Hit] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def answer(self) -> tuple[int, dict[str, str]]:
        step = self.script[min(len(self.hits), len(self.script) - 1)]
        return step if isinstance(step, tuple) else (step, {})

    def delivered(self) -> list[Hit]:
        return [h for h in self.hits if 200 <= h.status < 300]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver([200])

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status, extra = state.answer()
            state.hits.append(Hit(status, {k.lower(): v for k, v in self.headers.items()},
                                  body))
            if state.delay_s:
                time.sleep(state.delay_s)
            try:
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"no")
            except OSError:
                pass  # the sender gave up waiting (the timeout test)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def rule_with(*actions: dict[str, Any]) -> Any:
    return parse_rule({"id": "hot", "name": "Too hot", "product": "env-sensor",
                       "condition": {"type": "threshold", "property": "temperature",
                                     "op": ">", "value": 80}, "actions": list(actions)})


def raised(ts: int = T0) -> AlarmChange:
    return AlarmChange(f"hot/d1/{ts}", "hot", "d1", ChangeKind.RAISED, ts, Severity.MAJOR,
                       81.5, rule_name="Too hot")


def hook(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "webhook", "url": url, "secret": SECRET, **extra}


def local_http() -> httpx.Client:
    # no proxy from the environment: the receiver is on loopback
    return httpx.Client(trust_env=False, follow_redirects=False)


def webhook_worker(outbox: SqlOutbox, clock: Clock, **kw: Any) -> DeliveryWorker:
    return DeliveryWorker(outbox, {"webhook": WebhookSender(local_http(), lang="en")}, clock,
                          **kw)


# --- webhooks -----------------------------------------------------------------------------


def test_a_receiver_failing_twice_then_succeeding_gets_exactly_one_signed_delivery(
        outbox: SqlOutbox, receiver: Receiver) -> None:
    receiver.script = [500, 500, 200]
    clock = Clock()
    worker = webhook_worker(outbox, clock)
    drafts = plan(rule_with(hook(receiver.url)), raised(), clock.now, "en")
    [delivery_id] = outbox.enqueue(drafts, clock.now)

    assert worker.run_once(clock.now) == 1
    row = outbox.get(delivery_id)
    assert row is not None
    assert (row.state, row.attempts, row.next_ms) == ("pending", 1, T0 + 1000)
    assert row.last_error is not None and "HTTP 500" in row.last_error

    clock.now = T0 + 999
    assert worker.run_once(clock.now) == 0  # not due yet: the backoff holds
    clock.now = T0 + 1000
    assert worker.run_once(clock.now) == 1
    row = outbox.get(delivery_id)
    assert row is not None and (row.attempts, row.next_ms) == (2, T0 + 1000 + 2000)

    clock.now = T0 + 3000
    assert worker.run_once(clock.now) == 1
    row = outbox.get(delivery_id)
    assert row is not None
    assert (row.state, row.attempts, row.done_ms) == ("delivered", 3, T0 + 3000)
    clock.now += 3_600_000
    assert worker.run_once(clock.now) == 0

    assert [h.status for h in receiver.hits] == [500, 500, 200]
    [hit] = receiver.delivered()
    assert verify(SECRET, hit.body, hit.headers[SIGNATURE_HEADER.lower()], (T0 + 3000) // 1000)
    assert not verify("some-other-secret-value", hit.body,
                      hit.headers[SIGNATURE_HEADER.lower()], (T0 + 3000) // 1000)
    assert hit.headers[DELIVERY_HEADER.lower()] == str(delivery_id)
    assert hit.headers["content-type"] == "application/json"
    assert orjson.loads(hit.body) == drafts[0].body
    assert {h.headers[DELIVERY_HEADER.lower()] for h in receiver.hits} == {str(delivery_id)}
    assert worker.stats == {"delivered": 1, "failed": 2, "dead": 0}
    assert outbox.counts() == {"pending": 0, "delivered": 1, "dead": 0}


def test_a_receiver_always_failing_is_dead_after_max_attempts_and_can_be_retried(
        outbox: SqlOutbox, receiver: Receiver) -> None:
    receiver.script = [503]
    clock = Clock()
    worker = webhook_worker(outbox, clock, max_attempts=4, base_backoff_ms=1000,
                            max_backoff_ms=3000)
    [delivery_id] = outbox.enqueue(plan(rule_with(hook(receiver.url)), raised(), T0), T0)
    waits = []
    for _ in range(4):
        assert worker.run_once(clock.now) == 1
        row = outbox.get(delivery_id)
        assert row is not None
        waits.append(row.next_ms - clock.now)
        clock.now = row.next_ms
    assert waits[:3] == [1000, 2000, 3000]  # doubling, capped
    [dead] = outbox.list("dead")
    assert dead.id == delivery_id and dead.attempts == 4 and dead.done_ms is not None
    assert dead.last_error is not None and "503" in dead.last_error
    assert worker.run_once(clock.now + 10**9) == 0
    assert worker.stats == {"delivered": 0, "failed": 3, "dead": 1}

    receiver.script = [200]
    assert outbox.retry(delivery_id, clock.now)
    assert not outbox.retry(delivery_id, clock.now)  # only a dead one goes back
    row = outbox.get(delivery_id)
    assert row is not None and (row.state, row.attempts, row.done_ms) == ("pending", 0, None)
    assert worker.run_once(clock.now) == 1
    assert [d.id for d in outbox.list("delivered")] == [delivery_id]
    assert len(receiver.delivered()) == 1


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_a_client_error_is_dead_at_once(sqlite_store: Store, receiver: Receiver,
                                        status: int) -> None:
    outbox = SqlOutbox(sqlite_store.engine)  # type: ignore[attr-defined]
    receiver.script = [status]
    worker = webhook_worker(outbox, Clock())
    outbox.enqueue(plan(rule_with(hook(receiver.url)), raised(), T0), T0)
    assert worker.run_once(T0) == 1
    [dead] = outbox.list("dead")
    assert dead.attempts == 1 and f"HTTP {status}" in (dead.last_error or "")
    assert len(receiver.hits) == 1


@pytest.mark.parametrize(("answer", "wait"), [(408, 1000), (429, 1000),
                                              ((429, {"Retry-After": "30"}), 30_000),
                                              ((503, {"Retry-After": "7"}), 7000)])
def test_timeouts_and_throttling_are_retried(sqlite_store: Store, receiver: Receiver,
                                             answer: Any, wait: int) -> None:
    outbox = SqlOutbox(sqlite_store.engine)  # type: ignore[attr-defined]
    receiver.script = [answer, 204]
    worker = webhook_worker(outbox, Clock())
    [delivery_id] = outbox.enqueue(plan(rule_with(hook(receiver.url)), raised(), T0), T0)
    worker.run_once(T0)
    row = outbox.get(delivery_id)
    assert row is not None and row.state == "pending" and row.next_ms == T0 + wait
    worker.run_once(T0 + wait)
    assert outbox.counts()["delivered"] == 1


def test_a_redirect_is_not_followed(sqlite_store: Store, receiver: Receiver) -> None:
    outbox = SqlOutbox(sqlite_store.engine)  # type: ignore[attr-defined]
    receiver.script = [(302, {"Location": "http://127.0.0.1:1/elsewhere"})]
    outbox.enqueue(plan(rule_with(hook(receiver.url)), raised(), T0), T0)
    webhook_worker(outbox, Clock()).run_once(T0)
    [dead] = outbox.list("dead")
    assert "302" in (dead.last_error or "") and "/elsewhere" in (dead.last_error or "")
    assert len(receiver.hits) == 1


def test_unreachable_and_slow_receivers_are_retried(sqlite_store: Store,
                                                    receiver: Receiver) -> None:
    outbox = SqlOutbox(sqlite_store.engine)  # type: ignore[attr-defined]
    nobody = f"http://127.0.0.1:{free_port()}/hook"
    receiver.delay_s = 1.0
    rule = rule_with(hook(nobody), hook(receiver.url, timeout="200ms"))
    ids = outbox.enqueue(plan(rule, raised(), T0), T0)
    worker = webhook_worker(outbox, Clock())
    started = time.monotonic()
    assert worker.run_once(T0) == 2
    assert time.monotonic() - started < 0.9  # the timeout held, and the two went in parallel
    refused, slow = (outbox.get(i) for i in ids)
    assert refused is not None and refused.state == "pending"
    assert "could not reach" in (refused.last_error or "")
    assert slow is not None and slow.state == "pending"
    assert "0.2s" in (slow.last_error or "")


def test_a_delivery_without_a_sender_or_with_a_broken_spec_is_dead(outbox: SqlOutbox) -> None:
    bad = DeliveryDraft("hot", "hot/d1/1", "raised", 0, "webhook", "x",
                        {"type": "webhook", "url": "gopher://x"}, {"event": "alarm.raised"})
    fax = DeliveryDraft("hot", "hot/d1/1", "raised", 1, "fax", "x", {"type": "fax"}, {})
    outbox.enqueue([bad, fax], T0)
    DeliveryWorker(outbox, {"webhook": WebhookSender(local_http())}, Clock()).run_once(T0)
    errors = {d.kind: d.last_error or "" for d in outbox.list("dead")}
    assert "spec.url" in errors["webhook"] and "fax" in errors["fax"]


def test_a_sender_that_crashes_is_retried_not_fatal(outbox: SqlOutbox) -> None:
    class Broken:
        def send(self, delivery: Any, now_ms: int) -> None:
            raise KeyError("bug")

    outbox.enqueue([DeliveryDraft("hot", "a", "raised", 0, "webhook", "x", {}, {})], T0)
    worker = DeliveryWorker(outbox, {"webhook": Broken()}, Clock())
    assert worker.run_once(T0) == 1
    [row] = outbox.list("pending")
    assert "KeyError" in (row.last_error or "") and worker.stats["failed"] == 1


# --- the outbox on both backends ------------------------------------------------------------


def drafts(n: int, rule_id: str = "hot") -> list[DeliveryDraft]:
    return [DeliveryDraft(rule_id, f"{rule_id}/d{i}/1", "raised", 0, "mqtt", "alerts/x",
                          {"type": "mqtt", "topic": "alerts/x"}, {"n": i}) for i in range(n)]


def test_the_outbox_queues_claims_and_lists(outbox: SqlOutbox) -> None:
    ids = outbox.enqueue(drafts(3) + drafts(1, "cold"), T0)
    assert len(ids) == 4 and ids == sorted(ids)
    assert outbox.enqueue([], T0) == []
    assert [d.id for d in outbox.due(T0, 10)] == ids
    assert outbox.due(T0 - 1, 10) == []
    assert outbox.counts() == {"pending": 4, "delivered": 0, "dead": 0}

    first = outbox.claim(T0, 2, 60_000)
    assert [d.id for d in first] == ids[:2] and first[0].body == {"n": 0}
    second = outbox.claim(T0, 10, 60_000)  # the leased ones are not handed out again
    assert [d.id for d in second] == ids[2:]
    assert outbox.claim(T0 + 59_999, 10, 60_000) == []
    assert len(outbox.claim(T0 + 60_000, 10, 60_000)) == 4  # a lapsed lease: due again

    assert outbox.mark_delivered(ids[0], T0 + 5)
    assert not outbox.mark_delivered(ids[0], T0 + 6)  # no longer pending
    assert outbox.mark_failed(ids[1], "x" * 5000, T0 + 100)
    assert outbox.mark_dead(ids[2], "gone", T0 + 7)
    row = outbox.get(ids[1])
    assert row is not None and row.attempts == 1 and len(row.last_error or "") == 1000
    assert outbox.get(10**12) is None

    assert [d.id for d in outbox.list()] == ids[::-1]
    assert [d.id for d in outbox.list("pending")] == [ids[3], ids[1]]
    assert [d.id for d in outbox.list(rule_id="cold")] == [ids[3]]
    assert [d.id for d in outbox.list(alarm_id="hot/d2/1")] == [ids[2]]
    assert len(outbox.list(limit=1)) == 1
    with pytest.raises(ValueError):
        outbox.list("lost")
    assert outbox.counts() == {"pending": 2, "delivered": 1, "dead": 1}

    shown = outbox.list("delivered")[0].to_dict()
    assert shown["state"] == "delivered" and shown["done"] == "2023-11-14T22:13:20.005Z"
    assert outbox.purge(T0 + 5) == 0 and outbox.purge(T0 + 6) == 1
    assert outbox.counts()["delivered"] == 0


def test_a_lead_transaction_can_insert_draft_rows_itself(outbox: SqlOutbox) -> None:
    from sqlalchemy import insert

    from wulian.rules.actions import draft_row
    from wulian.storage.schema import action_deliveries

    rows = [draft_row(d, T0) for d in plan(rule_with(hook("http://127.0.0.1:9/h")), raised(),
                                           T0)]
    with outbox.engine.begin() as conn:
        conn.execute(insert(action_deliveries).values(rows))
    [row] = outbox.due(T0, 10)
    assert row.kind == "webhook" and row.spec["secret"] == SECRET
    assert row.to_dict()["spec"]["secret"] == "***"


def test_an_unreachable_database_is_storage_unavailable() -> None:
    engine = create_engine("postgresql+psycopg://u@127.0.0.1:1/x",
                           connect_args={"connect_timeout": 2})
    outbox = SqlOutbox(engine)
    with pytest.raises(StorageUnavailable):
        outbox.claim(T0, 1, 1)
    with pytest.raises(StorageUnavailable):
        outbox.counts()
    engine.dispose()


# --- the background thread ------------------------------------------------------------------


def test_the_thread_delivers_on_wake_and_survives_an_unavailable_store(
        sqlite_store: Store, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    outbox = SqlOutbox(sqlite_store.engine)  # type: ignore[attr-defined]
    worker = DeliveryWorker(outbox, {"webhook": WebhookSender(local_http())},
                            interval_s=30)  # only wake() can make it look in time
    worker.start()
    try:
        time.sleep(0.1)  # let its first (empty) look pass
        now = int(time.time() * 1000)
        outbox.enqueue(plan(rule_with(hook(receiver.url)), raised(now), now), now)
        worker.wake()
        wait_until(lambda: outbox.counts()["delivered"] == 1, 10, "the delivery")
        assert verify(SECRET, receiver.hits[0].body,
                      receiver.hits[0].headers[SIGNATURE_HEADER.lower()], now // 1000)
    finally:
        worker.stop()

    engine = create_engine("postgresql+psycopg://u@127.0.0.1:1/x",
                           connect_args={"connect_timeout": 1})
    down = DeliveryWorker(SqlOutbox(engine), {}, storage_retry_s=0.05)
    down.start()
    try:
        wait_until(lambda: "delivery worker" in caplog.text, 10, "the warning")
        assert down._thread is not None and down._thread.is_alive()
    finally:
        down.stop()
        engine.dispose()


def test_the_lease_covers_the_longest_send() -> None:
    assert LEASE_MS > 60_000


# --- e-mail ---------------------------------------------------------------------------------


class Sink:
    """An aiosmtpd handler that keeps what it receives and refuses some recipients."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: Any) -> str:
        if address.startswith("nobody@"):
            return "550 no such user"
        if address.startswith("busy@"):
            return "451 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_an_email_arrives_with_subject_and_body_in_the_language(
        sqlite_store: Store, smtp: tuple[Sink, int], lang: str) -> None:
    sink, port = smtp
    outbox = SqlOutbox(sqlite_store.engine)  # type: ignore[attr-defined]
    sender = EmailSender("127.0.0.1", port, "wulian@example.com", lang=lang, timeout_s=5)
    rule = rule_with({"type": "email", "to": ["ops@example.com", "duty@example.org"]},
                     {"type": "email", "to": ["lead@example.com"],
                      "subject": "ALERT {rule} / {device} / {value}"})
    outbox.enqueue(plan(rule, raised(), T0, lang), T0)
    worker = DeliveryWorker(outbox, {"email": sender}, Clock())
    assert worker.run_once(T0) == 2
    assert outbox.counts()["delivered"] == 2
    by_to = {tuple(to): msg for to, msg in sink.messages}
    msg = by_to[("ops@example.com", "duty@example.org")]
    text = msg.get_content()
    if lang == "en":
        assert msg["Subject"] == "[wulian] major alarm raised: Too hot on d1"
        assert "major alarm raised by rule 'Too hot' on d1 (value: 81.5)" in text
        assert "Time: 2023-11-14T22:13:20.000Z" in text
    else:
        assert msg["Subject"] == "[wulian] 重要告警产生：规则“Too hot”，d1"
        assert "规则：Too hot（hot）" in text and "数值：81.5" in text
    assert msg["From"] == "wulian@example.com"
    assert msg["To"] == "ops@example.com, duty@example.org"
    assert msg[DELIVERY_HEADER] is not None
    custom = by_to[("lead@example.com",)]
    assert custom["Subject"] == "ALERT Too hot / d1 / 81.5"


def test_email_failures_are_classified(sqlite_store: Store, smtp: tuple[Sink, int]) -> None:
    sink, port = smtp
    outbox = SqlOutbox(sqlite_store.engine)  # type: ignore[attr-defined]
    rule = rule_with({"type": "email", "to": ["nobody@example.com"]},
                     {"type": "email", "to": ["busy@example.com"]})
    refused, busy = outbox.enqueue(plan(rule, raised(), T0), T0)
    sender = EmailSender("127.0.0.1", port, lang="en", timeout_s=5)
    DeliveryWorker(outbox, {"email": sender}, Clock()).run_once(T0)
    gone, later = outbox.get(refused), outbox.get(busy)
    assert gone is not None and gone.state == "dead"
    assert "nobody@example.com" in (gone.last_error or "")
    assert later is not None and later.state == "pending"  # 4xx: try again
    assert sink.messages == []

    unconfigured = SqlOutbox(sqlite_store.engine)  # type: ignore[attr-defined]
    [mid] = unconfigured.enqueue(plan(rule_with({"type": "email", "to": ["a@example.com"]}),
                                      raised(), T0), T0)
    senders = build_senders(Settings(lang="en"), client=local_http())
    DeliveryWorker(unconfigured, senders, Clock()).run_once(T0)
    row = unconfigured.get(mid)
    assert row is not None and row.state == "dead" and "WULIAN_SMTP_HOST" in (row.last_error
                                                                             or "")


def test_email_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WULIAN_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("WULIAN_SMTP_PORT", "2525")
    monkeypatch.setenv("WULIAN_SMTP_PASSWORD", "pw")
    settings = Settings()
    sender = EmailSender.from_settings(settings)
    assert (sender.host, sender.port, sender.sender) == ("127.0.0.1", 2525, "wulian@localhost")
    assert "pw" not in repr(settings)


# --- MQTT republish ---------------------------------------------------------------------------


def paho(broker: MosquittoBroker, name: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{name}")
    client.username_pw_set(broker.admin_user, broker.admin_password)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    wait_until(client.is_connected, 10, f"{name} connected")
    return client


@pytest.mark.mosquitto
def test_mqtt_republish_reaches_a_subscriber(sqlite_store: Store,
                                             mosquitto: MosquittoBroker) -> None:
    received: list[mqtt.MQTTMessage] = []
    subscribed = threading.Event()
    listener = paho(mosquitto, "listener")
    listener.on_message = lambda _c, _u, msg: received.append(msg)
    listener.on_subscribe = lambda *_: subscribed.set()
    publisher = paho(mosquitto, "publisher")
    try:
        listener.subscribe("alerts/#", 1)
        assert subscribed.wait(10)
        outbox = SqlOutbox(sqlite_store.engine)  # type: ignore[attr-defined]
        rule = rule_with({"type": "mqtt", "topic": "alerts/air", "qos": 1})
        [mid] = outbox.enqueue(plan(rule, raised(), T0, "en"), T0)
        worker = DeliveryWorker(outbox, {"mqtt": MqttSender(paho_publisher(publisher, 5))},
                                Clock())
        assert worker.run_once(T0) == 1
        assert outbox.counts()["delivered"] == 1
        wait_until(lambda: received, 10, "the republished alarm")
        msg = received[0]
        assert msg.topic == "alerts/air" and msg.qos == 1
        payload = orjson.loads(msg.payload)
        assert payload["delivery_id"] == mid and payload["event"] == "alarm.raised"
        assert payload["device"] == "d1" and payload["value"] == 81.5
    finally:
        for client in (listener, publisher):
            client.disconnect()
            client.loop_stop()


def test_mqtt_without_a_broker_is_dead_or_retried(outbox: SqlOutbox) -> None:
    rule = rule_with({"type": "mqtt", "topic": "alerts/air"})
    [first] = outbox.enqueue(plan(rule, raised(), T0), T0)
    DeliveryWorker(outbox, {"mqtt": MqttSender(None, lang="en")}, Clock()).run_once(T0)
    row = outbox.get(first)
    assert row is not None and row.state == "dead"

    def down(topic: str, payload: bytes, qos: int, retain: bool) -> None:
        raise ConnectionError("not connected")

    [second] = outbox.enqueue(plan(rule, raised(), T0), T0)
    DeliveryWorker(outbox, {"mqtt": MqttSender(down, lang="en")}, Clock()).run_once(T0)
    row = outbox.get(second)
    assert row is not None and row.state == "pending" and "not connected" in (row.last_error
                                                                              or "")


# --- the API --------------------------------------------------------------------------------


def test_the_deliveries_api_lists_redacted_and_retries_dead_ones(tmp_path: Path) -> None:
    api_gen = running_api(tmp_path, f"sqlite:///{tmp_path / 'api.db'}")
    api = next(api_gen)
    try:
        app: Any = api.client.app
        app.include_router(deliveries.router, prefix="/api/v1",
                           dependencies=[Depends(require_admin)])
        assert api.get("/deliveries").status_code == 503
        assert api.get("/deliveries").json()["code"] == "delivery_unavailable"

        outbox = SqlOutbox(api.core.store.engine)  # type: ignore[attr-defined]
        app.state.outbox = outbox
        rule = rule_with(hook("http://127.0.0.1:9/h"), {"type": "mqtt", "topic": "a/b"})
        hook_id, mqtt_id = outbox.enqueue(plan(rule, raised(), T0), T0)
        outbox.mark_dead(hook_id, "HTTP 410", T0)

        assert api.client.get("/api/v1/deliveries").status_code == 401
        r = api.get("/deliveries")
        assert r.status_code == 200
        body = r.json()
        assert [d["id"] for d in body["data"]] == [mqtt_id, hook_id]
        assert body["counts"] == {"pending": 1, "delivered": 0, "dead": 1}
        assert body["data"][1]["spec"]["secret"] == "***" and SECRET not in r.text
        assert [d["id"] for d in api.get("/deliveries", params={"state": "dead"}).json()[
            "data"]] == [hook_id]
        assert api.get("/deliveries", params={"rule": "cold"}).json()["data"] == []
        assert api.get("/deliveries", params={"state": "lost"}).status_code == 422
        assert api.get("/deliveries", params={"limit": 0}).status_code == 422

        woken: list[bool] = []
        app.state.delivery_worker = type("W", (), {"wake": lambda self: woken.append(True)})()
        r = api.post(f"/deliveries/{hook_id}/retry")
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "pending" and r.json()["attempts"] == 0 and woken
        r = api.post(f"/deliveries/{hook_id}/retry", headers={"Accept-Language": "zh"})
        assert r.status_code == 409 and r.json()["code"] == "delivery_not_dead"
        assert "只有失败" in r.json()["message"]
        r = api.post("/deliveries/999999/retry")
        assert r.status_code == 404 and "999999" in r.json()["message"]
        assert api.post("/deliveries/0/retry").status_code == 422
    finally:
        with pytest.raises(StopIteration):
            next(api_gen)  # leaves the app's lifespan and closes the core
