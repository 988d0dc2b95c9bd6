"""The committed-batch feed: how ingest worker processes tell the main process what they stored.

With an external broker, ingest runs in N processes behind a shared subscription, so no
process sees every device; rules and live push need to. After each commit a worker
publishes a compact copy of the batch (points, events, seen; msgpack) on `FEED_TOPIC`,
and the main process's subscriber hands it to the same listeners the embedded mode calls
directly. Devices cannot publish there: their broker role allows only `devices/{id}/#`.

What the feed carries is already stored: a worker that dies between commit and publish
costs the rules that batch (they judge the next one), never data.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from wulian.access.mosquitto import BrokerUrl
from wulian.domain.message import EventRecord, SeenRecord, WriteBatch
from wulian.i18n import t

log = logging.getLogger(__name__)
FEED_TOPIC = "wulian/internal/committed"
CONNECT_TIMEOUT_S = 10.0

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


def encode_batch(batch: WriteBatch) -> bytes:
    """The parts of a stored batch that rules and live push read, as msgpack."""
    return _encoder.encode({
        "p": batch.points,
        "e": [(e.device_id, e.event, e.level, e.ts, e.params) for e in batch.events],
        "s": {d: (s.ts, s.protocol, s.remote) for d, s in batch.seen.items()},
        "a": batch.accepted,
    })


def decode_batch(payload: bytes) -> WriteBatch:
    """The batch `encode_batch` wrote (ValueError when the payload is not one)."""
    try:
        doc: Any = _decoder.decode(payload)
        points = [(str(d), str(p), int(ts), v) for d, p, ts, v in doc["p"]]
        events = [EventRecord(str(d), str(ev), str(lv), int(ts), dict(params))
                  for d, ev, lv, ts, params in doc["e"]]
        seen = {str(d): SeenRecord(int(ts), str(proto), remote)
                for d, (ts, proto, remote) in doc["s"].items()}
        return WriteBatch(points=points, events=events, seen=seen, accepted=int(doc["a"]))
    except (msgspec.DecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"not a committed-batch message: {exc}") from None


def _client(url: BrokerUrl, client_id: str, *, clean: bool) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=MQTTProtocolVersion.MQTTv311, clean_session=clean)
    client.username_pw_set(url.username, url.password)
    client.reconnect_delay_set(1, 5)
    return client


class FeedPublisher:
    """A pipeline listener that republishes each stored batch on the feed (QoS 1)."""

    def __init__(self, url: BrokerUrl, client_id: str) -> None:
        self._client = _client(url, client_id, clean=True)
        self._url = url
        self.stats: Counter[str] = Counter()

    def start(self) -> None:
        self._client.connect_async(self._url.host, self._url.port)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __call__(self, batch: WriteBatch) -> None:
        if not (batch.points or batch.events or batch.seen):
            return
        info = self._client.publish(FEED_TOPIC, encode_batch(batch), qos=1)
        if info.rc == mqtt.MQTT_ERR_SUCCESS or info.rc == mqtt.MQTT_ERR_NO_CONN:
            self.stats["published"] += 1  # paho queues it while reconnecting
        else:
            self.stats["failed"] += 1


class FeedSubscriber:
    """The main process's end of the feed: decodes batches and calls the sinks in order."""

    def __init__(self, url: BrokerUrl, client_id: str,
                 sinks: Iterable[Callable[[WriteBatch], None]]) -> None:
        self._url = url
        self._sinks = list(sinks)
        # a persistent session: batches published while this process restarts wait for it
        self._client = _client(url, client_id, clean=False)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.stats: Counter[str] = Counter()

    def start(self, timeout: float = CONNECT_TIMEOUT_S) -> bool:
        """Connect and subscribe; True once the subscription stands."""
        self._client.connect_async(self._url.host, self._url.port)
        self._client.loop_start()
        return self._subscribed.wait(timeout)

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                    _props: Any) -> None:
        if not reason.is_failure:
            client.subscribe(FEED_TOPIC, qos=1)

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int,
                      codes: list[Any], _props: Any) -> None:
        # subscribed only when the broker says so: a refusal (an ACL) leaves rules blind
        if codes and not any(code.is_failure for code in codes):
            self._subscribed.set()
        else:
            self.stats["refused"] += 1
            log.error(t("feed.log.refused", topic=FEED_TOPIC))

    def _on_message(self, _client: mqtt.Client, _userdata: Any,
                    msg: mqtt.MQTTMessage) -> None:
        try:
            batch = decode_batch(bytes(msg.payload))
        except ValueError as exc:
            self.stats["invalid"] += 1
            log.warning(t("feed.log.invalid", detail=str(exc)[:200]))
            return
        self.stats["batches"] += 1
        for sink in self._sinks:
            try:
                sink(batch)
            except Exception:  # one failing sink must not starve the others
                self.stats["errors"] += 1
                log.exception(t("feed.log.sink_failed"))
