"""The caller's organisation's quotas and usage, and the API request rate per caller."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from wulian.api.deps import CallerDep, CoreDep
from wulian.bootstrap import Core
from wulian.domain.actor import DEFAULT_ORG
from wulian.pipeline.ingest import now_ms
from wulian.quotas.api import ApiRateLimiter
from wulian.quotas.usage import org_report

router = APIRouter(tags=["quotas"])


class QuotaUsage(BaseModel):
    devices: int
    rules: int
    msgs_per_s: int = Field(description="messages admitted in the last whole second")
    bytes_today: int = Field(description="payload bytes admitted since 00:00 UTC")
    refused: dict[str, int] = Field(
        description="messages refused by code (rate_limited, ...), stored totals")


class QuotaReport(BaseModel):
    """msgs/s and bytes today are this API process's view of ingest (HTTP, embedded MQTT)."""

    org: str
    quotas: dict[str, int | float] = Field(description="the limits set; an absent key is unlimited")
    usage: QuotaUsage


def api_rate(request: Request, who: CallerDep) -> None:
    """Count the request against its caller's rate (429 + Retry-After when over it)."""
    limiter: ApiRateLimiter = request.app.state.api_limiter
    # Callers belong to the default organisation until organisations reach the API (spine).
    kind = "session" if who.session else "token"
    limiter.hit(DEFAULT_ORG, f"{kind}:{who.name}")


@router.get("/quotas", summary="The organisation's quotas and what it uses of them")
async def get_quotas(core: CoreDep) -> QuotaReport:
    return QuotaReport.model_validate(await run_in_threadpool(_report, core))


def _report(core: Core) -> dict[str, Any]:
    return org_report(core.store, core.rule_store, core.pipeline.gate, DEFAULT_ORG, now_ms())
