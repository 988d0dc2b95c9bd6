"""`wulian serve`: one process hosting the API, the embedded MQTT transport and the ingest.

Embedded, everything runs in this process: one asyncio loop for the device transport and
the HTTP server, the pipeline's writes in a worker thread. With an external broker the MQTT
ingest runs in `settings.ingest_workers` separate processes (default: one per core)
behind an MQTT 5 shared subscription, so decoding, validation and writes use every core.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import uvicorn

from wulian.bootstrap import Core, build_core
from wulian.config import Settings
from wulian.domain.clock import now_ms
from wulian.i18n import t
from wulian.netutil import PortInUse, port_free

if TYPE_CHECKING:
    from wulian.access.mosquitto import BrokerUrl
    from wulian.delivery.outbox import SqlOutbox
    from wulian.delivery.worker import DeliveryWorker

log = logging.getLogger(__name__)
WORKER_START_S = 30.0
WORKER_STOP_S = 9.0  # SIGTERM to exit: the whole shutdown stays within 10 s


@dataclass
class Ready:
    """What a caller of `serve` learns once everything listens."""

    http_url: str
    mqtt_host: str
    mqtt_port: int
    admin_token: str
    admin_token_created: bool
    core: Core
    console_password: str | None = None  # the first admin's, when it was just created


def check_port(host: str, port: int, what: str) -> None:
    """Raise PortInUse when `host:port` cannot be bound (say so before any half-start)."""
    if not port_free(port, host):
        raise PortInUse(what, host, port)


def admin_token(settings: Settings) -> tuple[str, bool]:
    """The admin bearer token: WULIAN_ADMIN_TOKEN, else one kept in the data dir."""
    if settings.admin_token:
        return settings.admin_token, False
    return settings.ensure_secret("admin.token")


@dataclass
class Actions:
    """The delivery of rule actions: the outbox, its worker and the MQTT client it uses."""

    outbox: SqlOutbox
    worker: DeliveryWorker
    client: mqtt.Client
    senders: dict[str, Any]

    def stop(self) -> None:
        self.worker.stop()
        close = getattr(self.senders.get("webhook"), "close", None)
        if close is not None:
            close()
        self.client.disconnect()
        self.client.loop_stop()


def start_actions(core: Core, url: BrokerUrl) -> Actions:
    """Start delivering what the rules put in the outbox (webhook, e-mail, MQTT republish)."""
    from paho.mqtt.enums import CallbackAPIVersion

    from wulian.delivery.outbox import SqlOutbox
    from wulian.delivery.senders import build_senders, paho_publisher
    from wulian.delivery.worker import DeliveryWorker

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="wulian-actions")
    client.username_pw_set(url.username, url.password)
    client.connect_async(url.host, url.port)
    client.loop_start()
    outbox = SqlOutbox(core.store.engine)  # type: ignore[attr-defined]
    senders = build_senders(core.settings, publish=paho_publisher(client))
    # 12 attempts, doubling from 1 s up to 5 min between them: a receiver may be down for
    # about 18 minutes before its deliveries are dead-lettered (and a person can retry them)
    worker = DeliveryWorker(outbox, senders, now_ms, max_attempts=12, lang=core.settings.lang)
    core.rules.on_stored(worker.wake)
    worker.start()
    return Actions(outbox, worker, client, senders)


def stop_workers(workers: list[Any], data_dir: Path, budget_s: float = WORKER_STOP_S) -> None:
    """SIGTERM every ingest worker, wait for them within one budget, kill the rest; log a
    summary (their last figures: received, acknowledged, still held)."""
    from wulian.prom import metrics_dir

    started = time.monotonic()
    for proc in workers:
        if proc.is_alive():
            proc.terminate()  # each stores and acks what it holds, then disconnects
    deadline = started + budget_s
    for proc in workers:
        proc.join(max(0.0, deadline - time.monotonic()))
    killed = [proc for proc in workers if proc.is_alive()]
    for proc in killed:
        proc.kill()  # what it held stays unacknowledged with the broker: nothing lost
        proc.join(2)
    totals: dict[str, int] = {"received": 0, "acked": 0, "held_messages": 0}
    for index in range(len(workers)):
        with contextlib.suppress(OSError, ValueError):
            doc = json.loads((metrics_dir(data_dir) / f"ingest-{index}.json").read_text())
            for key in totals:
                totals[key] += int(doc.get("counters", {}).get(key, 0))
    log.info(t("hardening.workers_stopped", workers=len(workers), killed=len(killed),
               seconds=round(time.monotonic() - started, 1), received=totals["received"],
               acked=totals["acked"], held_messages=totals["held_messages"]))


def first_admin(core: Core) -> str | None:
    """Create the console's first admin when there is no user yet; its password if so."""
    from wulian.accounts import ensure_first_admin
    from wulian.storage.accounts import SqlAccounts

    return ensure_first_admin(SqlAccounts.for_store(core.store), core.settings)


def serve(settings: Settings, *, on_ready: Callable[[Ready], None] | None = None,
          stop: threading.Event | None = None) -> dict[str, int] | None:
    """Run the platform until SIGINT/SIGTERM or until `stop` is set.

    Returns the device transport's summary (embedded mode): connections, messages stored,
    refused and left unacknowledged.
    """
    check_port(settings.http_host, settings.http_port, "HTTP")
    if settings.embedded_broker:
        check_port(settings.mqtt_host, settings.mqtt_port, "MQTT")
    else:
        from wulian.access.worker_life import IngestLock

        # Workers of a serve killed with kill -9 stop on their own (they watch their parent);
        # never start new ones beside one still storing, with the same client ids.
        IngestLock(settings.data_dir).ensure_none_running()
    core = build_core(settings)
    try:
        return asyncio.run(_serve(core, on_ready, stop))
    finally:
        core.close()


async def _serve(core: Core, on_ready: Callable[[Ready], None] | None,
                 stop: threading.Event | None) -> dict[str, int] | None:
    from wulian.access.mqtt_ingest import (
        PLATFORM_SECRET,
        PLATFORM_USER,
        BrokerUrl,
        MqttIngest,
        run_worker,
        worker_count,
    )
    from wulian.alerting.feed import FeedSubscriber
    from wulian.api.app import create_app
    from wulian.metrics import CounterSampler

    settings = core.settings
    token, created = admin_token(settings)
    platform_password, _ = settings.ensure_secret(PLATFORM_SECRET)
    broker = None
    workers: list[mp.context.SpawnProcess] = []
    feed: FeedSubscriber | None = None
    core.start_alerting()
    if settings.embedded_broker:
        from wulian.access.mqtt_transport import DeviceTransport, TransportAdmin

        # devices' messages go from the socket to the pipeline, acknowledged once stored
        broker = DeviceTransport(core, host=settings.mqtt_host, port=settings.mqtt_port,
                                 platform_password=platform_password)
        await broker.start()
        # disabling, deleting or re-keying a device ends its live connection at once
        core.registry.broker = TransportAdmin(broker, asyncio.get_running_loop())
        mqtt_host, mqtt_port = settings.mqtt_host, settings.mqtt_port
    else:
        feed = FeedSubscriber(BrokerUrl.from_settings(settings), "wulian-feed",
                              core.batch_sinks())
        if not await asyncio.to_thread(feed.start, WORKER_START_S):
            log.warning(t("service.feed_slow", seconds=WORKER_START_S))
        ctx = mp.get_context("spawn")
        count = worker_count(settings)
        subscribed = []
        for index in range(count):
            ready_event = ctx.Event()
            proc = ctx.Process(target=run_worker,
                               args=(settings.model_dump_json(), index, ready_event, count,
                                     os.getpid()),
                               name=f"wulian-ingest-{index}", daemon=True)
            proc.start()
            workers.append(proc)
            subscribed.append(ready_event)
        # Ready means subscribed: on a broker's first start, a message published before the
        # workers' sessions exist has nowhere to wait.
        for index, event in enumerate(subscribed):
            if not await asyncio.to_thread(event.wait, WORKER_START_S):
                log.warning(t("service.worker_slow", index=index, seconds=WORKER_START_S))
        mqtt_host, mqtt_port = MqttIngest.broker_address(settings)

    platform_url = (BrokerUrl(settings.mqtt_host, settings.mqtt_port, PLATFORM_USER,
                              platform_password)
                    if settings.embedded_broker else BrokerUrl.from_settings(settings))
    actions = start_actions(core, platform_url)

    console_password = await asyncio.to_thread(first_admin, core)
    sampler = CounterSampler(core.store)  # messages/s over 24 h for the console's overview
    await asyncio.to_thread(sampler.start)
    app = create_app(core, admin_token=token)
    app.state.sampler = sampler
    # the embedded transport's own figures on /metrics (workers write theirs to files)
    app.state.local_ingest = [broker] if broker is not None else []
    # Everything built so far lives as long as the process: moved out of the collector's
    # reach, a full collection no longer walks it (it made every other week-long series
    # answer 4x slower in bench/console.py, and stalled the loop that runs the broker).
    gc.freeze()
    app.state.outbox = actions.outbox
    app.state.delivery_worker = actions.worker
    config = uvicorn.Config(app, host=settings.http_host, port=settings.http_port,
                            log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    # uvicorn would re-raise SIGINT after serving, in the middle of our orderly shutdown;
    # handle the signals here instead and let shutdown finish quietly.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, lambda: setattr(server, "should_exit", True))

    async def watch() -> None:
        while not server.started:
            await asyncio.sleep(0.05)
        host = settings.http_host
        shown = f"[{host}]" if ":" in host else host
        if on_ready is not None:
            ready = Ready(f"http://{shown}:{settings.http_port}", mqtt_host, mqtt_port, token,
                          created, core, console_password)
            await asyncio.to_thread(on_ready, ready)
        while not server.should_exit:
            if stop is not None and stop.is_set():
                server.should_exit = True
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    try:
        await server.serve()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        if workers:
            await asyncio.to_thread(stop_workers, workers, settings.data_dir)
        if feed is not None:
            await asyncio.to_thread(feed.stop)
        await asyncio.to_thread(core.rules.stop)
        await asyncio.to_thread(actions.stop)
        await asyncio.to_thread(sampler.stop)
        if broker is not None:
            await broker.stop()
    return broker.summary() if broker is not None else None
