"""The async batcher over the real pipeline and SQLite: grouping, back-pressure, failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.fixtures.api import ADMIN_TOKEN, basic
from tests.fixtures.refuse_rows import refuse_rows
from wulian.api import create_app
from wulian.bootstrap import Core, build_core
from wulian.config import Settings
from wulian.domain.message import Inbound, Kind, Protocol
from wulian.domain.rejection import RejectCode, Rejection
from wulian.i18n import t
from wulian.pipeline.batcher import AsyncBatcher
from wulian.pipeline.ingest import now_ms
from wulian.ports import StorageUnavailable

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def core(tmp_path: Path, env_sensor_doc: dict[str, Any]) -> Iterator[Core]:
    core = build_core(Settings(data_dir=tmp_path), provision_broker=False)
    core.registry.import_product(env_sensor_doc)
    core.registry.add_device("d1", "env-sensor")
    yield core
    core.close()


def message(value: float, ts: int | None = None) -> Inbound:
    body = {"humidity": value} if ts is None else {"humidity": value, "ts": ts}
    return Inbound("d1", Kind.TELEMETRY, orjson.dumps(body), Protocol.HTTP, now_ms())


async def test_concurrent_submissions_share_a_batch(core: Core) -> None:
    batcher = AsyncBatcher(core.pipeline, batch_max=500, batch_ms=50)
    await batcher.start()
    start = now_ms() - 60_000
    outcomes = await asyncio.gather(*(batcher.submit(message(k % 100, start + k))
                                      for k in range(300)))
    await batcher.stop()
    assert all(o.ok and o.points == 1 for o in outcomes)
    assert batcher.stats["messages"] == 300
    assert batcher.stats["batches"] <= 3, "300 waiting messages are not 300 transactions"
    assert len(core.store.points("d1", "humidity", since=start, until=None, limit=1000)) == 300


async def test_a_full_queue_fails_fast_and_counts(core: Core,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    write = core.store.write

    def slow_write(batch: Any) -> int:
        time.sleep(0.2)
        return write(batch)

    monkeypatch.setattr(core.store, "write", slow_write)
    batcher = AsyncBatcher(core.pipeline, batch_max=4, batch_ms=1, queue_max=8)
    await batcher.start()
    outcomes = await asyncio.gather(*(batcher.submit(message(k)) for k in range(40)))
    await batcher.stop()
    refused = [o for o in outcomes if not o.ok]
    assert refused and all(o.rejection and o.rejection.code is RejectCode.OVERLOADED
                           for o in refused)
    assert batcher.stats["overloaded"] == len(refused)
    assert len(outcomes) - len(refused) == batcher.stats["messages"] >= 8


async def test_storage_failure_reaches_every_waiter_and_the_batcher_goes_on(
        core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(batch: Any) -> int:
        raise StorageUnavailable("connection refused")

    batcher = AsyncBatcher(core.pipeline)
    await batcher.start()
    monkeypatch.setattr(core.store, "write", down)
    results = await asyncio.gather(*(batcher.submit(message(1)) for _ in range(5)),
                                   return_exceptions=True)
    assert all(isinstance(r, StorageUnavailable) for r in results)
    monkeypatch.undo()
    assert (await batcher.submit(message(2))).ok
    await batcher.stop()
    assert batcher.stats["failed_batches"] >= 1


async def test_stop_stores_what_is_queued_then_refuses(core: Core) -> None:
    batcher = AsyncBatcher(core.pipeline)
    await batcher.start()
    pending = [asyncio.create_task(batcher.submit(message(k))) for k in range(20)]
    await asyncio.sleep(0)
    await batcher.stop()
    assert all(t.result().ok for t in pending)
    late = await batcher.submit(message(3))
    assert late.rejection is not None and late.rejection.code is RejectCode.OVERLOADED


async def test_a_refusal_becomes_a_dead_letter_without_validation(core: Core) -> None:
    batcher = AsyncBatcher(core.pipeline)
    await batcher.start()
    refusal = Rejection(RejectCode.BAD_CREDENTIALS)
    ok, refused = await asyncio.gather(batcher.submit(message(5)),
                                       batcher.submit(message(6), refusal))
    await batcher.stop()
    assert ok.ok and refused.rejection is refusal
    (kept,) = core.store.rejections(device_id="d1", since=None, limit=10)
    assert kept.code == "bad_credentials" and kept.payload == b'{"humidity":6}'
    assert core.store.latest("d1")["humidity"][1] == 5


async def test_concurrent_http_posts_are_batched(core: Core) -> None:
    secret = core.registry.rotate_secret("d1").secret
    app = create_app(core, admin_token=ADMIN_TOKEN)
    start = now_ms() - 60_000
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), \
            httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answers = await asyncio.gather(*(client.post(
            "/api/v1/devices/d1/telemetry", headers=basic("d1", secret),
            content=orjson.dumps({"ts": start + k, "humidity": k % 100})) for k in range(200)))
        batcher: AsyncBatcher = app.state.batcher
        assert [a.status_code for a in answers] == [202] * 200
        assert batcher.stats["batches"] < 100
    assert len(core.store.points("d1", "humidity", since=start, until=None, limit=1000)) == 200


async def test_dead_letters_are_in_the_pipelines_language(tmp_path: Path,
                                                          env_sensor_doc: dict[str, Any]) -> None:
    core = build_core(Settings(data_dir=tmp_path, lang="zh"), provision_broker=False)
    try:
        core.registry.import_product(env_sensor_doc)
        core.registry.add_device("d1", "env-sensor")
        batcher = AsyncBatcher(core.pipeline)  # no language of its own to fall out of step
        await batcher.start()
        refused = await batcher.submit(message(1), Rejection(RejectCode.BAD_CREDENTIALS))
        await batcher.stop()
        assert refused.rejection is not None
        (kept,) = core.store.rejections(device_id="d1", since=None, limit=10)
        assert kept.message == t("reject.bad_credentials", "zh")
    finally:
        core.close()


async def test_a_message_the_database_refuses_spares_its_batch(core: Core) -> None:
    refuse_rows(core.settings.database_url, "points", "NEW.num = 66.5")
    batcher = AsyncBatcher(core.pipeline, batch_max=100, batch_ms=50)
    await batcher.start()
    start = now_ms() - 60_000
    refusal = Rejection(RejectCode.BAD_CREDENTIALS)
    outcomes = await asyncio.gather(*(batcher.submit(message(v, start + k)) for k, v in
                                      enumerate([1, 2, 66.5, 4])),
                                    batcher.submit(message(5, start + 4), refusal))
    await batcher.stop()
    assert [o.rejection.code if o.rejection else None for o in outcomes] == [
        None, None, RejectCode.INTERNAL_ERROR, None, RejectCode.BAD_CREDENTIALS]
    points = core.store.points("d1", "humidity", since=start, until=None, limit=10)
    assert [v for _, v in points] == [1, 2, 4]
    kept = core.store.rejections(device_id="d1", since=None, limit=10)
    assert sorted(r.code for r in kept) == ["bad_credentials", "internal_error"]
    assert core.store.counters()["rejected.internal_error"] == 1
