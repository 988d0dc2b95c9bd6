"""GET /metrics: Prometheus text with ingest, rejection, backlog and per-worker figures."""

from __future__ import annotations

import multiprocessing as mp
import re
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.api import ADMIN, Api, running_api
from tests.fixtures.common import ENV_SENSOR
from tests.fixtures.mosquitto import MqttPlatform, wait_until
from tests.integration.test_mqtt_durability import publish_many
from wulian.access.mqtt_ingest import run_worker
from wulian.pipeline.ingest import now_ms

Make = Callable[..., MqttPlatform]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def test_metrics_count_what_was_accepted_and_refused(sqlite_api: Api) -> None:
    sqlite_api.product(ENV_SENSOR)
    auth = sqlite_api.device("m-1")
    assert sqlite_api.send("m-1", auth, '{"temperature": 20.5}').status_code == 202
    assert sqlite_api.send("m-1", auth, '{"no_such_property": 1}').status_code == 422
    assert sqlite_api.client.get("/metrics").status_code == 401  # not public by default
    r = sqlite_api.client.get("/metrics", headers=ADMIN)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = samples(r.text)
    assert got[("wulian_messages_accepted_total", ())] == 1
    assert sum(v for (name, _), v in got.items()
               if name == "wulian_messages_rejected_total") == 1
    assert ("wulian_rules_waiting_points", ()) in got
    assert ("process_resident_memory_bytes", ()) in got


def test_metrics_can_be_made_public(tmp_path: Path) -> None:
    for api in running_api(tmp_path, f"sqlite:///{tmp_path / 'w.db'}", metrics_public=True):
        r = api.client.get("/metrics")
        assert r.status_code == 200 and "wulian_messages_accepted_total" in r.text


def test_a_scrape_shows_each_ingest_worker(make_mqtt_platform: Make) -> None:
    p = make_mqtt_platform("mosquitto")
    p.stop_ingest()
    dev = p.connect("mw-1", p.provision("mw-1"))
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    worker = ctx.Process(target=run_worker, args=(p.core.settings.model_dump_json(), 0, ready, 1),
                         daemon=True)
    worker.start()
    try:
        assert ready.wait(30)
        publish_many(dev, 50, now_ms() - 60_000)
        for api in running_api(p.core.settings.data_dir, p.core.settings.database_url,
                               broker=p.core.settings.broker):
            def scraped(api: Api = api) -> dict[tuple[str, tuple[tuple[str, str], ...]],
                                                float] | None:
                got = samples(api.client.get("/metrics", headers=ADMIN).text)
                acked = got.get(("wulian_ingest_acked_total", (("worker", "0"),)), 0)
                return got if acked >= 50 else None

            got = wait_until(scraped, 20, "worker 0's figures on /metrics")
            assert got[("wulian_messages_accepted_total", ())] == 50
            assert got[("wulian_ingest_held_messages", (("worker", "0"),))] == 0
            assert got[("wulian_storage_write_seconds_count", (("worker", "0"),))] >= 1
            assert got[("wulian_ingest_worker_resident_bytes", (("worker", "0"),))] > 0
            assert re.search(r'wulian_storage_write_seconds_bucket\{le="\+Inf",worker="0"\}',
                             api.client.get("/metrics", headers=ADMIN).text)
    finally:
        worker.terminate()
        worker.join(15)
    assert worker.exitcode == 0
