"""Action deliveries: what rules sent (or failed to send) and a retry for dead letters."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from wulian.api.deps import ApiError
from wulian.delivery.outbox import SqlOutbox
from wulian.domain.clock import now_ms

router = APIRouter(prefix="/deliveries", tags=["deliveries"])


def get_outbox(request: Request) -> SqlOutbox:
    """The outbox the service set on `app.state.outbox`."""
    outbox: SqlOutbox | None = getattr(request.app.state, "outbox", None)
    if outbox is None:
        raise ApiError(503, "delivery_unavailable")
    return outbox


OutboxDep = Annotated[SqlOutbox, Depends(get_outbox)]


@router.get("")
def list_deliveries(
    outbox: OutboxDep,
    state: Literal["pending", "delivered", "dead"] | None = None,
    rule: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The most recent deliveries (newest first), with the count in each state."""
    rows = outbox.list(state, rule, limit)
    return {"data": [d.to_dict() for d in rows], "counts": outbox.counts()}


@router.post("/{delivery_id}/retry")
def retry_delivery(request: Request, outbox: OutboxDep,
                   delivery_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> dict[str, Any]:
    """Send a dead delivery again: back to pending, due now, attempts counted afresh."""
    delivery = outbox.get(delivery_id)
    if delivery is None:
        raise ApiError(404, "delivery_not_found", params={"id": delivery_id})
    if delivery.state != "dead" or not outbox.retry(delivery_id, now_ms()):
        raise ApiError(409, "delivery_not_dead", params={"id": delivery_id,
                                                         "state": delivery.state})
    worker = getattr(request.app.state, "delivery_worker", None)
    if worker is not None:
        worker.wake()
    again = outbox.get(delivery_id)
    return again.to_dict() if again is not None else delivery.to_dict()
