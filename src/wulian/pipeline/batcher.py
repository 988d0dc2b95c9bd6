"""Group concurrent ingest submissions from an asyncio server into one pipeline batch each.

Each request awaits its own outcome, but the batch behind it is one transaction: a hundred
concurrent HTTP posts cost one commit, not a hundred. The queue is bounded so a flood is
refused at once (`overloaded`) instead of piling up memory and latency.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from wulian.domain.message import Inbound, Outcome
from wulian.domain.rejection import RejectCode, Rejection
from wulian.i18n import t
from wulian.pipeline.ingest import BatchRun, Pipeline
from wulian.ports import StorageUnavailable

log = logging.getLogger(__name__)
OVERLOADED = Outcome(rejection=Rejection(RejectCode.OVERLOADED))


@dataclass(slots=True)
class _Item:
    inbound: Inbound
    refusal: Rejection | None  # decided before the pipeline (auth, size): keep as dead letter
    future: asyncio.Future[Outcome]


class AsyncBatcher:
    """`await submit(inbound)` → its `Outcome`, once the batch holding it is durably stored.

    A batch closes at `batch_max` messages, after `batch_ms`, or as soon as the writer is
    free and an event-loop turn brings no new message: alone, a message waits for no one;
    under load, a batch holds what arrived while the previous one was being written.
    Dead letters are written in the pipeline's language.
    """

    def __init__(self, pipeline: Pipeline, batch_max: int = 2000, batch_ms: int = 50, *,
                 queue_max: int | None = None) -> None:
        self._pipeline = pipeline
        self._batch_max = batch_max
        self._linger_s = batch_ms / 1000
        self._queue_max = queue_max or 4 * batch_max
        self._queue: asyncio.Queue[_Item | None] | None = None
        self._task: asyncio.Task[None] | None = None
        # one writer thread: batches are serialised by the store anyway, and a pool of its
        # own keeps ingest from queueing behind slow requests in the shared threadpool
        self._executor: ThreadPoolExecutor | None = None
        self._closed = True
        self.stats: Counter[str] = Counter()

    async def start(self) -> None:
        """Start the batching task on the running event loop."""
        self._queue = asyncio.Queue(self._queue_max + 1)  # room for the stop sentinel
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="wulian-ingest")
        self._closed = False
        self._task = asyncio.create_task(self._run(), name="wulian-ingest-batcher")

    async def stop(self) -> None:
        """Refuse new submissions, store what is queued, then stop."""
        if self._closed or self._queue is None or self._task is None:
            return
        self._closed = True
        await self._queue.put(None)
        await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, inbound: Inbound, refusal: Rejection | None = None) -> Outcome:
        """Hand a message to the pipeline; with `refusal`, store it as a dead letter only."""
        queue = self._queue
        if self._closed or queue is None or queue.qsize() >= self._queue_max:
            self.stats["overloaded"] += 1
            return OVERLOADED
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        queue.put_nowait(_Item(inbound, refusal, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        writing: asyncio.Task[None] | None = None
        while True:
            first = await self._queue.get()
            if first is None:
                break
            items = [first]
            stopping = await self._gather(items, writing)
            if writing is not None:
                await writing
            # the next batch gathers while this one is written
            writing = asyncio.create_task(self._flush(items))
            if stopping:
                break
        if writing is not None:
            await writing

    async def _gather(self, items: list[_Item], writing: asyncio.Task[None] | None) -> bool:
        """Add queued messages to `items` until the batch closes; True when told to stop."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._linger_s
        while len(items) < self._batch_max:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                if writing is not None and not writing.done():
                    # nothing can be written before the writer is free: let messages pile up
                    await asyncio.wait((writing,), timeout=remaining)
                    continue
                await asyncio.sleep(0)  # let requests already in flight reach the queue
                if self._queue.empty():
                    break
                continue
            if item is None:
                return True
            items.append(item)
        return False

    async def _flush(self, items: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        try:
            outcomes, unavailable = await loop.run_in_executor(self._executor, self._handle,
                                                               items)
        except Exception as exc:  # a bug here: every waiter hears of it (HTTP 500)
            log.exception(t("ingest.batch_failed", count=len(items)))
            self.stats["failed_batches"] += 1
            for item in items:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        stored = len(items) - outcomes.count(None)
        if unavailable is not None:
            log.warning(t("ingest.store_unavailable", count=len(items) - stored,
                          detail=str(unavailable)))
            self.stats["failed_batches"] += 1
        if stored:
            self.stats["batches"] += 1
            self.stats["messages"] += stored
        for item, outcome in zip(items, outcomes, strict=True):
            if item.future.done():  # the caller may have gone (client disconnected)
                continue
            if outcome is not None:
                item.future.set_result(outcome)
            else:
                assert unavailable is not None
                item.future.set_exception(unavailable)

    def _handle(self, items: list[_Item],
                ) -> tuple[list[Outcome | None], StorageUnavailable | None]:
        """In the writer thread: each message's outcome, None for those not stored.

        A message that makes the pipeline or the database fail is kept as an internal_error
        dead letter and its neighbours are stored (BatchRun); if the store becomes
        unavailable part-way, what was stored already keeps its answer.
        """
        run = BatchRun(self._pipeline, [i.inbound for i in items], [i.refusal for i in items])
        try:
            run.run()
        except StorageUnavailable as exc:
            return run.outcomes, exc
        return run.outcomes, None
