"""The platform's MQTT consumer: broker → batches → pipeline → PUBACK, for both broker modes.

A message is acknowledged to the broker only once the pipeline owns it (stored, or stored
as a dead letter). Until then the broker keeps it: in flight (bounded by Receive Maximum)
or in this consumer's persistent session while the consumer is away.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from wulian.access import topics
from wulian.access.mosquitto import PLATFORM_SECRET, PLATFORM_USER, BrokerUrl
from wulian.access.mqtt_netloop import BoundedLoop
from wulian.access.mqtt_sys import SysWatcher
from wulian.config import Settings
from wulian.domain.message import Inbound, Outcome, Protocol
from wulian.i18n import t
from wulian.pipeline.ingest import BatchRun, Pipeline, now_ms
from wulian.ports import StorageUnavailable
from wulian.prom import LatencyHistogram, write_worker_figures

if TYPE_CHECKING:
    from wulian.bootstrap import Core

__all__ = ["PLATFORM_SECRET", "PLATFORM_USER", "BrokerUrl", "MqttIngest", "run_worker",
           "worker_count"]
log = logging.getLogger(__name__)

SHARE_GROUP = "wulian"
RECEIVE_MAXIMUM = 4000
# Long enough to outlast any outage an operator would sit through, short enough that the
# session of a worker that was scaled away stops hoarding its share of the messages.
SESSION_EXPIRY_S = 7 * 24 * 3600
ERRORS_QUEUE_MAX = 10_000  # error replies waiting for the broker; past this they are dropped
RETRY_MIN_S, RETRY_MAX_S = 0.05, 5.0
_DEDUP_MAX = 100_000
# What one consumer may hold unacknowledged (received, not yet stored and acked). Past
# either cap it stops reading its socket (BoundedLoop). Raw bytes undercount memory: a
# paho MQTT 5 message object takes ~7 KB, so the message cap bounds the rest.
MAX_HELD_BYTES = 64 * 1024 * 1024
MAX_HELD_MESSAGES = 10_000


@dataclass(slots=True)
class _Received:
    msg: mqtt.MQTTMessage
    generation: int  # which connection it came on: its mid means nothing on another
    received_ms: int


@dataclass(slots=True)
class _Stored:
    owned: int  # the first `owned` messages of the batch are the pipeline's now
    replies: list[tuple[Inbound, Outcome]]  # refused among them: each device hears why


class MqttIngest:
    """Subscribes to devices' telemetry and events and feeds them to the pipeline in batches."""

    def __init__(self, pipeline: Pipeline, url: BrokerUrl, *, client_id: str,
                 mqtt5: bool = True, shared: bool = False, watch: SysWatcher | None = None,
                 batch_max: int = 2000, batch_ms: int = 50, lang: str | None = None,
                 receive_maximum: int = RECEIVE_MAXIMUM,
                 session_expiry_s: int = SESSION_EXPIRY_S,
                 max_held_bytes: int = MAX_HELD_BYTES,
                 max_held_messages: int = MAX_HELD_MESSAGES) -> None:
        self.pipeline = pipeline
        self.url = url
        self.client_id = client_id
        self.batch_max = batch_max
        self.batch_ms = batch_ms
        self.lang = lang
        self.stats: Counter[str] = Counter()
        self.store_latency = LatencyHistogram()  # per batch, for /metrics
        self._mqtt5 = mqtt5
        plain = list(topics.INGEST_FILTERS)
        group = [f"$share/{SHARE_GROUP}/{f}" for f in plain]
        self._filters, self._other_filters = (group, plain) if shared else (plain, group)
        self.watch = watch
        self._cond = threading.Condition()
        self._buffer: list[_Received] = []
        # everything received and not yet acked or given back to the broker: the buffer and
        # the batch being stored
        self.max_held_bytes = max_held_bytes
        self.max_held_messages = max(max_held_messages, batch_max)
        self._held_bytes = 0
        self._held_messages = 0
        self._paused = False
        self._generation = 0
        # QoS 1 messages received on a connection older than this the broker resends itself
        # (a later one found the session present): copies of them here are not to be stored.
        self._resent_below = 0
        self._closing = False  # no new messages: they stay with the broker
        self._stopping = False  # drain the buffer, then end
        self._abandon = threading.Event()  # give up retrying a batch (stop timed out)
        self._ready = threading.Event()
        self._stored_unacked: Counter[tuple[str, bytes]] = Counter()
        self._thread: threading.Thread | None = None
        self._subscribe_mid: int | None = None
        protocol = MQTTProtocolVersion.MQTTv5 if mqtt5 else MQTTProtocolVersion.MQTTv311
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=protocol, clean_session=None if mqtt5 else False,
                             manual_ack=True)
        client.username_pw_set(url.username, url.password)
        client.max_queued_messages_set(ERRORS_QUEUE_MAX)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        if watch is not None:
            watch.attach(client)
        self._client = client
        self._net = BoundedLoop(client, self._may_read, f"{client_id}-net")
        self._connect_props: Properties | None = None
        if mqtt5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = session_expiry_s
            # Enough messages in flight that a batch fills while the previous one is written.
            props.ReceiveMaximum = min(65535, max(receive_maximum, 2 * batch_max))
            self._connect_props = props

    # -- construction -------------------------------------------------------------------
    @classmethod
    def for_broker(cls, core: Core, index: int = 0, workers: int | None = None) -> MqttIngest:
        """Ingest worker `index` of `workers` (default: worker_count) on an external broker."""
        s = core.settings
        url = BrokerUrl.from_settings(s)
        watch = None
        if index == 0:
            watch = SysWatcher(url.safe(), core.store, lambda user: user != url.username)
        # Shared only when there are several: Mosquitto 2.0.11 does not restore a shared
        # subscription from its persistence file, so after a broker restart messages find no
        # session until the workers are back; a plain subscription is restored and keeps them.
        shared = (workers or worker_count(s)) > 1
        return cls(core.pipeline, url, client_id=f"wulian-ingest-{index}", mqtt5=True,
                   shared=shared, watch=watch, batch_max=s.batch_max, batch_ms=s.batch_ms,
                   lang=s.lang)

    @staticmethod
    def broker_address(settings: Settings) -> tuple[str, int]:
        """Host and port devices should connect to for the configured broker."""
        url = BrokerUrl.from_settings(settings)
        return url.host, url.port

    # -- life cycle ---------------------------------------------------------------------
    def start(self, wait_s: float | None = None) -> bool:
        """Connect and start consuming; with `wait_s`, wait that long for the subscriptions.

        Without it, return at once (the embedded broker may share the caller's event loop).
        """
        self._thread = threading.Thread(target=self._run, name=f"{self.client_id}-flush",
                                        daemon=True)
        self._thread.start()
        if self._mqtt5:
            self._client.connect_async(self.url.host, self.url.port, keepalive=30,
                                       clean_start=False, properties=self._connect_props)
        else:
            self._client.connect_async(self.url.host, self.url.port, keepalive=30)
        self._net.start()
        return self._ready.wait(wait_s) if wait_s else False

    def wait_ready(self, timeout_s: float) -> bool:
        """True once connected and subscribed."""
        return self._ready.wait(timeout_s)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Store and acknowledge what was received, then disconnect (the session stays)."""
        with self._cond:
            self._closing = self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():  # storage still down: leave the batch to the broker
                self._abandon.set()
                self._thread.join(timeout_s)
        self._client.disconnect()
        self._net.stop()
        self._ready.clear()
        if self.watch is not None:
            self.watch.close()

    def counters(self) -> dict[str, int]:
        """received, acked, batches, rejected, store_failures, broker_dropped, ..."""
        with self._cond:
            counters = {**self.stats, "buffered": len(self._buffer),
                        "held_bytes": self._held_bytes, "held_messages": self._held_messages}
        if self.watch is not None:
            counters.update(self.watch.stats)
            if self.watch.dropped_total is not None:
                counters["broker_dropped_total"] = self.watch.dropped_total
        return counters

    def _may_read(self) -> bool:
        over = (self._held_bytes >= self.max_held_bytes
                or self._held_messages >= self.max_held_messages)
        if over and not self._paused:
            self.stats["reads_paused"] += 1
        self._paused = over
        return not over

    def _hold(self, items: Sequence[_Received], sign: int) -> None:
        """Count `items` in (1) or out (-1) of what is held; under self._cond."""
        self._held_messages += sign * len(items)
        self._held_bytes += sign * sum(_size(r.msg) for r in items)

    # -- paho callbacks (network thread) ------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, flags: mqtt.ConnectFlags,
                    rc: ReasonCode, _p: Properties | None) -> None:
        if rc.is_failure:
            self.stats["connect_refused"] += 1
            log.error(t("mqtt.consumer_refused", url=self.url.safe(), reason=rc.getName()))
            return
        with self._cond:
            self._generation += 1
            if flags.session_present and self._mqtt5:
                # The broker resends every unacknowledged QoS 1 message (DUP): a copy still
                # waiting here would be stored twice.
                kept = [r for r in self._buffer if r.msg.qos == 0]
                self._hold([r for r in self._buffer if r.msg.qos != 0], -1)
                self.stats["left_for_redelivery"] += len(self._buffer) - len(kept)
                self._buffer = kept
                self._resent_below = self._generation
        log.info(t("mqtt.consumer_connected", client=self.client_id, url=self.url.safe(),
                   session=flags.session_present))
        if self._mqtt5:  # no retained messages on (re)subscribing: each would be stored again
            keep = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
            _, self._subscribe_mid = client.subscribe([(f, keep) for f in self._filters])
        else:
            _, self._subscribe_mid = client.subscribe([(f, 1) for f in self._filters])
        if flags.session_present and self._mqtt5:
            # The worker count changed since this session subscribed: with both forms it
            # would receive messages twice. (After subscribing: no gap where none holds.)
            client.unsubscribe(self._other_filters)
        if self.watch is not None:
            self.watch.subscribe(client)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, codes: list[ReasonCode],
                      _p: Properties | None) -> None:
        if mid != self._subscribe_mid:
            return  # the $SYS subscription: refused by brokers that are not Mosquitto
        if any(code.is_failure for code in codes):
            log.error(t("mqtt.subscribe_refused", filters=", ".join(self._filters)))
            return
        self._ready.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode,
                       _p: Properties | None) -> None:
        self._ready.clear()
        with self._cond:
            # paho sends CONNECT before our on_connect runs: an ack queued in between would
            # carry an old packet id onto the new connection. A new generation starts here.
            self._generation += 1
        if not self._closing:
            log.warning(t("mqtt.consumer_disconnected", client=self.client_id,
                          reason=rc.getName()))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            if self._closing:
                return  # never acknowledged: the broker hands it to the next session
            item = _Received(msg, self._generation, now_ms())
            self._buffer.append(item)
            self._hold((item,), 1)
            self.stats["received"] += 1
            if len(self._buffer) == 1 or len(self._buffer) >= self.batch_max:
                self._cond.notify_all()

    # -- the flush thread ---------------------------------------------------------------
    def _run(self) -> None:
        delay = RETRY_MIN_S
        while (batch := self._next_batch()) is not None:
            try:
                stored = self._store(batch)
            except Exception:
                # A bug in this consumer (the pipeline keeps what it fails on as dead
                # letters), before anything of the batch was stored or acknowledged: try the
                # batch again, as in a storage outage. Left unacknowledged, it would hold
                # its Receive Maximum slots until the next reconnect.
                self.stats["internal_errors"] += 1
                log.exception(t("mqtt.batch_failed", count=len(batch), retry_s=round(delay, 2)))
                if not self._abandon.wait(delay):  # else stop gave up: the broker keeps it
                    self._retry(batch)
                else:
                    with self._cond:
                        self._hold(batch, -1)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            delay = RETRY_MIN_S
            self._finish(batch, stored)

    def _next_batch(self) -> list[_Received] | None:
        with self._cond:
            while not self._buffer:
                if self._stopping:
                    return None
                self._cond.wait(0.5)
            # A batch closes at batch_max or batch_ms after its first message arrived.
            deadline = self._buffer[0].received_ms + self.batch_ms
            while len(self._buffer) < self.batch_max and not self._stopping:
                left = deadline - now_ms()
                if left <= 0:
                    break
                self._cond.wait(left / 1000)
            batch = self._buffer[:self.batch_max]
            del self._buffer[:self.batch_max]
            return batch

    def _retry(self, batch: list[_Received]) -> None:
        with self._cond:
            kept = [r for r in batch if r.msg.qos == 0 or r.generation >= self._resent_below]
            self._hold([r for r in batch if not (r.msg.qos == 0
                                                 or r.generation >= self._resent_below)], -1)
            self._buffer[:0] = kept

    def _store(self, batch: list[_Received]) -> _Stored:
        """Hand the batch to the pipeline; what it owns is a prefix of the batch."""
        todo: list[tuple[int, Inbound]] = []
        skipped: list[tuple[int, tuple[str, bytes]]] = []
        claimed: Counter[tuple[str, bytes]] = Counter()  # of _stored_unacked, by this batch
        for index, item in enumerate(batch):
            msg = item.msg
            payload = bytes(msg.payload)  # already bytes: no copy
            where = topics.parse(msg.topic)
            kind = where.kind if where else None
            if where is None or kind is None:
                self.stats["outside_contract"] += 1
                log.debug(t("mqtt.outside_contract", topic=msg.topic))
            elif msg.dup and self._stored_unacked[(msg.topic, payload)] > claimed[
                    (msg.topic, payload)]:
                # Stored earlier, but the connection ended before its PUBACK went out.
                claimed[(msg.topic, payload)] += 1
                skipped.append((index, (msg.topic, payload)))
            else:
                todo.append((index, Inbound(where.device_id, kind, payload, Protocol.MQTT,
                                            item.received_ms, topic=msg.topic,
                                            event=where.name)))
        outcomes = self._handle([inbound for _, inbound in todo])
        # Up to the first message not stored (stop gave up while the store was down).
        owned = next((index for (index, _), outcome in zip(todo, outcomes, strict=True)
                      if outcome is None), len(batch))
        for index, key in skipped:
            if index < owned:  # acknowledged below: no copy of it is to come any more
                self.stats["duplicates_skipped"] += 1
                self._stored_unacked[key] -= 1
                if self._stored_unacked[key] <= 0:
                    del self._stored_unacked[key]
        replies = [(inbound, outcome) for (index, inbound), outcome
                   in zip(todo, outcomes, strict=True)
                   if index < owned and outcome is not None and outcome.rejection is not None]
        return _Stored(owned, replies)

    def _finish(self, batch: list[_Received], stored: _Stored) -> None:
        if stored.owned == len(batch):
            self.stats["batches"] += 1
        self._ack(batch[:stored.owned])
        with self._cond:  # acked, or (not owned: stop gave up) left to the broker
            self._hold(batch, -1)
        for inbound, outcome in stored.replies:
            self.stats["rejected"] += 1
            self._reply_error(inbound, outcome)

    def _handle(self, inbound: list[Inbound]) -> list[Outcome | None]:
        """Each message's outcome, retried while the store is unavailable.

        A message that makes the pipeline or the database fail becomes an internal_error
        dead letter (BatchRun). None marks a message not stored when stop gave up.
        """
        run = BatchRun(self.pipeline, inbound)
        delay = RETRY_MIN_S
        while True:
            try:
                started = time.perf_counter()
                run.run()
                self.store_latency.observe(time.perf_counter() - started)
                return run.outcomes
            except StorageUnavailable as exc:
                self.stats["store_failures"] += 1
                log.warning(t("mqtt.store_unavailable", count=run.outcomes.count(None),
                              detail=str(exc), retry_s=round(delay, 2)))
            if self._abandon.wait(delay):
                return run.outcomes  # the broker redelivers the rest to the next session
            delay = min(delay * 2, RETRY_MAX_S)

    def _ack(self, batch: Sequence[_Received]) -> None:
        """PUBACK, in arrival order, what came on the current connection; remember the rest."""
        # Held throughout, so the connection cannot change generation between check and ack
        # (client.ack only takes paho's own outgoing-packet lock: no lock-order inversion).
        with self._cond:
            self._ack_locked(batch, self._generation)

    def _ack_locked(self, batch: Sequence[_Received], generation: int) -> None:
        for n, item in enumerate(batch):
            msg = item.msg
            if item.generation == generation:
                try:
                    self._client.ack(msg.mid, msg.qos)
                except Exception:
                    # Never seen (paho only queues the packet). Stored but unacknowledged,
                    # these must not wait for a reconnect that may never come: end the
                    # connection now; the broker resends them and the copies are only acked.
                    log.exception(t("mqtt.ack_failed", count=len(batch) - n))
                    for rest in batch[n:]:
                        self._remember_stored(rest)
                    self._drop_connection()
                    return
                self.stats["acked"] += 1
            else:
                self._remember_stored(item)

    def _remember_stored(self, item: _Received) -> None:
        msg = item.msg
        if msg.qos > 0:
            # Its mid may now name another message: the broker resends it (dup) instead.
            if len(self._stored_unacked) >= _DEDUP_MAX:
                self._stored_unacked.clear()
            self._stored_unacked[(msg.topic, bytes(msg.payload))] += 1
            self.stats["ack_lost"] += 1

    def _drop_connection(self) -> None:
        """End the connection without DISCONNECT: paho reconnects, the session resends."""
        sock = self._client.socket()
        if isinstance(sock, socket.socket):  # paho's TLS socket is one too
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _reply_error(self, inbound: Inbound, outcome: Outcome) -> None:
        assert outcome.rejection is not None
        try:
            body = outcome.rejection.to_dict(self.lang)
            body["topic"] = inbound.topic
            info = self._client.publish(topics.errors(inbound.device_id), orjson.dumps(body),
                                        qos=1)
        except Exception:  # the message is owned already: only this answer is lost
            log.exception(t("mqtt.error_reply_failed", topic=inbound.topic))
            self.stats["errors_dropped"] += 1
            return
        if info.rc == mqtt.MQTT_ERR_SUCCESS or info.rc == mqtt.MQTT_ERR_NO_CONN:
            self.stats["errors_sent"] += 1
        else:
            self.stats["errors_dropped"] += 1


def _size(msg: mqtt.MQTTMessage) -> int:
    return len(msg.payload) + len(msg._topic)  # bytes: .topic would decode


def worker_count(settings: Settings) -> int:
    """How many ingest processes serve an external broker: configured, else one per core."""
    return settings.ingest_workers or max(1, os.cpu_count() or 1)


def run_worker(settings_json: str, index: int, ready: Any = None,
               workers: int | None = None, parent_pid: int | None = None) -> None:
    """Entry point of one ingest process (multiprocessing, spawn): consume until SIGTERM.

    `ready`, a multiprocessing Event, is set once the worker's subscriptions stand: on a
    broker's first start, messages published before that have no session to wait in.
    `workers` must be the number started (default: worker_count): with one, a worker
    subscribes plainly; with several, shared. Got wrong, every message arrives twice.
    The worker stops when its parent (`parent_pid`, default: whoever spawned it) dies.
    """
    from wulian.access.worker_life import IngestLock, die_with_parent
    from wulian.alerting.feed import FeedPublisher
    from wulian.bootstrap import build_core
    from wulian.quotas.gate import IngestGate

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING,
                            format=f"%(asctime)s ingest-{index} %(levelname)s %(message)s")
        logging.getLogger("wulian").setLevel(logging.INFO)
    settings = Settings.model_validate_json(settings_json)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def orphaned() -> None:
        log.warning(t("hardening.worker_orphaned", index=index))
        stop.set()

    die_with_parent(parent_pid or os.getppid(), orphaned)
    lock = IngestLock(settings.data_dir)
    lock.hold_shared()  # until this process ends
    core = build_core(settings, provision_broker=False)
    # the shared subscription gives each worker ~1/N of every device's messages
    core.pipeline.gate = IngestGate(share=1 / (workers or worker_count(settings)))
    ingest = MqttIngest.for_broker(core, index, workers)
    # what this worker stores reaches the serving process's rules and live pages
    feed = FeedPublisher(BrokerUrl.from_settings(settings), f"wulian-feed-{index}")
    core.pipeline.subscribe(feed)
    gc.freeze()  # the long-lived core out of the collector's walks (see wulian.service)
    try:
        feed.start()
        ingest.start()
        while ready is not None and not ready.is_set() and not stop.is_set():
            if ingest.wait_ready(0.1):
                ready.set()
        while not stop.wait(1.0):
            with contextlib.suppress(OSError):  # figures for /metrics: never worth a crash
                write_worker_figures(settings.data_dir, index, ingest.counters(),
                                     ingest.store_latency)
    finally:
        # within serve's budget (service.WORKER_STOP_S): what is not stored by then stays
        # unacknowledged with the broker
        ingest.stop(timeout_s=3.0)
        feed.stop()
        core.close()
        log.info(t("mqtt.worker_stopped", index=index, counters=ingest.counters()))
        with contextlib.suppress(OSError):  # the final figures, for serve's summary
            write_worker_figures(settings.data_dir, index, ingest.counters(),
                                 ingest.store_latency)
        lock.release()
