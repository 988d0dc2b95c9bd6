"""GET /metrics in Prometheus' text format (see wulian.prom for what it holds).

Needs the admin token (or a console session) unless `metrics_public` is set: figures such
as device counts and rejection reasons are not for the open internet, and Prometheus can
send a bearer token (`authorization: {credentials_file: ...}` in its scrape config).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool

from wulian.api.deps import ApiError, get_core, has_credentials
from wulian.prom import build_registry

router = APIRouter(tags=["metrics"])


def _local(request: Request) -> list[tuple[str, dict[str, Any]]]:
    consumers = getattr(request.app.state, "local_ingest", None) or []
    return [(f"local-{n}", c.counters()) for n, c in enumerate(consumers)]


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    core = get_core(request)
    if not core.settings.metrics_public and not await run_in_threadpool(has_credentials,
                                                                          request):
        raise ApiError(401, "unauthorized", headers={"WWW-Authenticate": "Bearer"})
    registry: CollectorRegistry | None = getattr(request.app.state, "prom_registry", None)
    if registry is None:
        registry = build_registry(core, lambda: _local(request))
        request.app.state.prom_registry = registry
    body = await run_in_threadpool(generate_latest, registry)  # database reads
    return Response(body, media_type=CONTENT_TYPE_LATEST)
