"""Dead letters: every refused message, why, and what it carried."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Query

from wulian.api.deps import CoreDep, parse_time
from wulian.ports import StoredRejection

router = APIRouter(prefix="/rejections", tags=["rejections"])


def _payload(raw: bytes) -> dict[str, Any]:
    """Payload as text when it is UTF-8, else base64 with `payload_base64: true`."""
    try:
        return {"payload": raw.decode("utf-8"), "payload_base64": False}
    except UnicodeDecodeError:
        return {"payload": base64.b64encode(raw).decode("ascii"), "payload_base64": True}


def _row(r: StoredRejection) -> dict[str, Any]:
    return {"id": r.id, "received_ms": r.received_ms, "device_id": r.device_id,
            "protocol": r.protocol, "topic": r.topic, "code": r.code, "message": r.message,
            **_payload(r.payload)}


@router.get("")
def list_rejections(
    core: CoreDep, device: str | None = None, since: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The most recent refused messages, optionally of one device or since a time."""
    rows = core.store.rejections(device_id=device, since=parse_time(since, "since"),
                                 limit=limit)
    return {"data": [_row(r) for r in rows]}
