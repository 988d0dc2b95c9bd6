"""The caller's organisation's quotas and usage, and the API request rate per caller."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from wulian.api.deps import CallerDep, CoreDep
from wulian.bootstrap import Core
from wulian.domain.actor import DEFAULT_ORG
from wulian.pipeline.ingest import now_ms
from wulian.quotas.api import ApiRateLimiter
from wulian.quotas.usage import org_report

router = APIRouter(tags=["quotas"])


def api_rate(request: Request, who: CallerDep) -> None:
    """Count the request against its caller's rate (429 + Retry-After when over it)."""
    limiter: ApiRateLimiter = request.app.state.api_limiter
    # Callers belong to the default organisation until organisations reach the API (spine).
    kind = "session" if who.session else "token"
    limiter.hit(DEFAULT_ORG, f"{kind}:{who.name}")


@router.get("/quotas", summary="The organisation's quotas and what it uses of them")
async def get_quotas(core: CoreDep) -> dict[str, Any]:
    return await run_in_threadpool(_report, core)


def _report(core: Core) -> dict[str, Any]:
    return org_report(core.store, core.rule_store, core.pipeline.gate, DEFAULT_ORG, now_ms())
