"""HTTP ingest: a device posts telemetry or an event, authenticated with HTTP Basic.

The answer comes after the pipeline owns the message: 202 once it is durably stored, or
the reason it was refused (kept as a dead letter and counted, whatever the reason).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from starlette.requests import ClientDisconnect

from wulian.access.presence import format_remote
from wulian.api.deps import RETRY_AFTER_S, ApiError, DeviceAuth
from wulian.domain.message import Inbound, Kind, Protocol
from wulian.domain.rejection import RejectCode, Rejection
from wulian.i18n import t
from wulian.pipeline.batcher import AsyncBatcher
from wulian.pipeline.directory import Known
from wulian.pipeline.ingest import DEAD_LETTER_PAYLOAD_MAX, now_ms

log = logging.getLogger(__name__)
router = APIRouter(prefix="/devices", tags=["ingest"])

# Everything else the pipeline refuses is a validation problem: 422.
STATUS = {
    RejectCode.MALFORMED_JSON: 400, RejectCode.BAD_SHAPE: 400, RejectCode.EMPTY_PAYLOAD: 400,
    RejectCode.PAYLOAD_TOO_LARGE: 413,
    RejectCode.BAD_CREDENTIALS: 401, RejectCode.UNKNOWN_DEVICE: 401,
    RejectCode.DEVICE_DISABLED: 403, RejectCode.FORBIDDEN_TOPIC: 403,
    RejectCode.UNKNOWN_TOPIC: 404, RejectCode.UNKNOWN_PRODUCT: 409,
    RejectCode.STORAGE_UNAVAILABLE: 503, RejectCode.OVERLOADED: 503,
    RejectCode.INTERNAL_ERROR: 500,  # the platform's fault, not the sender's
    RejectCode.RATE_LIMITED: 429, RejectCode.QUOTA_EXCEEDED: 429,
}
_HEADERS = {
    RejectCode.BAD_CREDENTIALS: {"WWW-Authenticate": 'Basic realm="wulian"'},
    RejectCode.UNKNOWN_DEVICE: {"WWW-Authenticate": 'Basic realm="wulian"'},
    RejectCode.STORAGE_UNAVAILABLE: {"Retry-After": RETRY_AFTER_S},
    RejectCode.OVERLOADED: {"Retry-After": RETRY_AFTER_S},
}
_RAW_JSON_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"description": "thing-model values; see DESIGN.md"}}}}}
_ACCEPTED: dict[int | str, dict[str, Any]] = {202: {"description": "Stored", "content": {
    "application/json": {"example": {"accepted": True, "points": 2}}}}}


class _TooLarge(Exception):
    def __init__(self, size: int, head: bytes) -> None:
        super().__init__(size)
        self.size = size
        self.head = head


def remote_address(request: Request) -> str | None:
    """`ip:port`, or `[ip6]:port` for IPv6."""
    client = request.client
    return format_remote(client.host, client.port) if client is not None else None


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed `limit` (never buffered whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge(int(declared), b"")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:  # a chunked or lying sender: stop reading here
                raise _TooLarge(size, b"".join(chunks)[:DEAD_LETTER_PAYLOAD_MAX])
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "incomplete_body") from None
    return b"".join(chunks)


def refusal(rejection: Rejection) -> ApiError:
    """The HTTP answer for a refused message."""
    code = rejection.code
    headers = _HEADERS.get(code)
    wait = rejection.params.get("retry_after_s")
    if wait is not None:  # over a rate or quota: the sender learns when to come back
        headers = {"Retry-After": str(wait)}
    return ApiError.from_rejection(STATUS.get(code, 422), rejection, headers)


async def _refuse(batcher: AsyncBatcher, inbound: Inbound, rejection: Rejection) -> ApiError:
    """Keep a message refused before the pipeline as a dead letter; the answer to raise."""
    try:
        await batcher.submit(inbound, rejection)
    except Exception:  # the sender still hears why it was refused
        log.warning(t("ingest.dead_letter_not_stored", device=inbound.device_id,
                      topic=inbound.topic), exc_info=True)
    return refusal(rejection)


async def _ingest(request: Request, device_id: str, auth: Known | Rejection, kind: Kind,
                  event: str | None = None) -> dict[str, Any]:
    batcher: AsyncBatcher = request.app.state.batcher

    def inbound(payload: bytes) -> Inbound:
        return Inbound(device_id=device_id, kind=kind, payload=payload, protocol=Protocol.HTTP,
                       received_ms=now_ms(), topic=request.url.path, event=event,
                       remote=remote_address(request))

    if isinstance(auth, Rejection):
        raise await _refuse(batcher, inbound(b""), auth)
    limit = request.app.state.core.settings.max_payload_bytes
    try:
        payload = await read_body(request, limit)
    except _TooLarge as exc:
        too_large = Rejection(RejectCode.PAYLOAD_TOO_LARGE, params={"size": exc.size,
                                                                    "limit": limit})
        raise await _refuse(batcher, inbound(exc.head), too_large) from None
    outcome = await batcher.submit(inbound(payload))
    if outcome.rejection is not None:
        raise refusal(outcome.rejection)
    return {"accepted": True, "points": outcome.points}


@router.post("/{device_id}/telemetry", status_code=202, openapi_extra=_RAW_JSON_BODY,
             responses=_ACCEPTED)
async def post_telemetry(request: Request, device_id: str, auth: DeviceAuth) -> dict[str, Any]:
    """A device reports property values: one object, or an array of them (each may carry ts)."""
    return await _ingest(request, device_id, auth, Kind.TELEMETRY)


@router.post("/{device_id}/events/{event}", status_code=202, openapi_extra=_RAW_JSON_BODY,
             responses=_ACCEPTED)
async def post_event(request: Request, device_id: str,
                     event: Annotated[str, Path(max_length=128)],
                     auth: DeviceAuth) -> dict[str, Any]:
    """A device reports an event of its thing model with its parameters."""
    return await _ingest(request, device_id, auth, Kind.EVENT, event)
