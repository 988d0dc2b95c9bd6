"""What Mosquitto tells about itself on `$SYS`: messages it dropped, devices coming and going.

One ingest worker (index 0) listens; the others would only repeat it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import paho.mqtt.client as mqtt

from wulian.access.presence import LOG_TOPIC, Presence, PresenceParser
from wulian.i18n import t
from wulian.pipeline.ingest import now_ms
from wulian.ports import MetadataStore

log = logging.getLogger(__name__)

DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"
SYS_TOPICS = (DROPPED_TOPIC, LOG_TOPIC)


class SysWatcher:
    """Turns `$SYS` messages into a loud counter of dropped messages and presence records."""

    def __init__(self, broker: str, store: MetadataStore | None,
                 is_device: Callable[[str], bool]) -> None:
        self.broker = broker  # for messages: the URL without its password
        self.stats: Counter[str] = Counter()
        self.dropped_total: int | None = None  # the broker's own count, once heard
        self._store = store
        self._presence = PresenceParser(is_device)
        # Status writes leave the network thread, and stay in the order they happened.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="wulian-presence")

    def attach(self, client: mqtt.Client) -> None:
        """Route the `$SYS` topics to this watcher (call before connecting)."""
        client.message_callback_add(DROPPED_TOPIC, self._on_dropped)
        client.message_callback_add(LOG_TOPIC, self._on_log)

    def subscribe(self, client: mqtt.Client) -> None:
        """Subscribe on each connect; brokers other than Mosquitto may refuse: harmless."""
        client.subscribe([(topic, 0) for topic in SYS_TOPICS])

    def _on_dropped(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            total = int(msg.payload)
        except ValueError:
            return
        last, self.dropped_total = self.dropped_total, total
        if last is None:  # the retained value on subscribing: what happened before us
            if total:
                log.warning(t("mqtt.broker_dropped_before", total=total, url=self.broker))
            return
        if total < last:
            last = 0  # the broker restarted and counts from zero again
        if total > last:
            self.stats["broker_dropped"] += total - last
            log.error(t("mqtt.broker_dropped", count=total - last, total=total,
                        url=self.broker))

    def _on_log(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        seen = self._presence.feed(bytes(msg.payload).decode("utf-8", "replace"))
        if seen is not None and self._store is not None:
            self._writer.submit(self._record, seen, now_ms())

    def _record(self, seen: Presence, ts: int) -> None:
        assert self._store is not None
        try:
            self._store.set_connected(seen.device_id, seen.connected, ts_ms=ts,
                                      protocol="mqtt", remote=seen.remote)
            self.stats["presence_recorded"] += 1
        except Exception as exc:  # informative only: never worth more than a line
            key = "mqtt.connect_not_recorded" if seen.connected else "mqtt.disconnect_not_recorded"
            log.warning(t(key, device=seen.device_id, detail=exc))

    def close(self) -> None:
        self._writer.shutdown(wait=True)
