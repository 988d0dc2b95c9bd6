"""Platform counters (admin) and a health probe (open)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request

from wulian.api.deps import RETRY_AFTER_S, ApiError, CoreDep
from wulian.domain.rejection import RejectCode, Rejection
from wulian.pipeline.ingest import now_ms

log = logging.getLogger(__name__)
router = APIRouter(tags=["stats"])
health_router = APIRouter(tags=["health"])
REJECTED = "rejected."


@router.get("/stats")
def stats(core: CoreDep, request: Request) -> dict[str, Any]:
    """Devices, messages accepted and refused (by reason), points stored, storage backend."""
    store = core.store
    counters = store.counters()
    since = now_ms() - core.settings.online_window_s * 1000
    batcher = getattr(request.app.state, "batcher", None)
    return {
        "devices": store.count_devices(),
        "devices_online": store.online_count(since),
        "messages_accepted": counters.get("messages_accepted", 0),
        "messages_rejected": counters.get("messages_rejected", 0),
        "points_stored": counters.get("points_stored", 0),
        "events_stored": counters.get("events_stored", 0),
        "rejected_by_code": {k.removeprefix(REJECTED): v for k, v in sorted(counters.items())
                             if k.startswith(REJECTED)},
        # refused before reaching storage, so only this process knows of them
        "http_ingest": {"overloaded": batcher.stats["overloaded"] if batcher else 0},
        "storage": store.info(),
    }


@health_router.get("/health")
def health(core: CoreDep) -> dict[str, Any]:
    """`ok` when the process answers and its storage does too (no auth: for probes)."""
    try:
        core.store.count_devices()
    except Exception as exc:
        log.warning("health check: storage unreachable: %s", exc)
        raise ApiError.from_rejection(503, Rejection(RejectCode.STORAGE_UNAVAILABLE),
                                      {"Retry-After": RETRY_AFTER_S}) from None
    return {"status": "ok", "storage": "ok"}
