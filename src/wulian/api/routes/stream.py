"""Live push over Server-Sent Events: points and events of chosen devices, alarm changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from wulian.api.deps import ApiError, CoreDep, request_lang

router = APIRouter(tags=["stream"])
MAX_DEVICES = 200
PING_S = 15.0


def _frame(kind: str, data: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


@router.get("/stream", summary="Server-Sent Events: `points`, `event`, `alarm`, `lag`")
async def stream(
    request: Request, core: CoreDep,
    devices: Annotated[str | None, Query(
        description="Comma-separated device ids, or * for every device")] = None,
    alarms: Annotated[bool, Query(description="Also push alarm changes")] = False,
) -> StreamingResponse:
    wanted: frozenset[str] | None = frozenset()
    if devices == "*":
        wanted = None
    elif devices:
        wanted = frozenset(d for d in devices.split(",") if d)
        if len(wanted) > MAX_DEVICES:
            raise ApiError(422, "stream_too_many_devices", params={"limit": MAX_DEVICES})
    if wanted is not None and not wanted and not alarms:
        raise ApiError(422, "stream_nothing", params={})
    hub = core.live
    if hub.full:
        hub.stats["refused"] += 1
        raise ApiError(503, "stream_full", headers={"Retry-After": "30"})
    lang = request_lang(request)

    async def frames() -> AsyncIterator[bytes]:
        # subscribed here, so a client gone before the first frame leaves nothing behind
        sub = hub.subscribe(wanted, alarms, lang)
        try:
            yield b"retry: 3000\n\n"
            while True:
                item = await hub.next(sub, PING_S)
                if await request.is_disconnected():
                    return
                if item is None:
                    yield b": ping\n\n"
                else:
                    yield _frame(item[0], item[1])
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(frames(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
