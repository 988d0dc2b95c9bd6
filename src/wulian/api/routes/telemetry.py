"""Reading what devices reported: latest values, time series (raw, bucketed, CSV), events."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query, Request, Response

from wulian.api.deps import ApiError, CoreDep, iso_time, parse_time
from wulian.api.routes.devices import existing_device
from wulian.domain.duration import duration_ms
from wulian.domain.message import Value
from wulian.pipeline.ingest import now_ms
from wulian.ports import Aggregate

router = APIRouter(prefix="/devices", tags=["telemetry"])
DAY_MS = 86_400_000
MAX_POINTS = 100_000
MAX_BUCKET_MS = 366 * DAY_MS
NUMERIC_ONLY: frozenset[str] = frozenset({"avg", "sum", "min", "max"})
CSV = "text/csv"


def parse_bucket(value: str) -> int:
    """`500ms`, `60s`, `5m`, `1h`, `1d` or plain milliseconds → milliseconds."""
    text = value.strip()
    bucket_ms = int(text) if text.isdigit() and len(text) <= 12 else duration_ms(text) or 0
    if not 0 < bucket_ms <= MAX_BUCKET_MS:
        raise ApiError(422, "invalid_bucket", params={"value": value[:32]},
                       extra={"field": "bucket"})
    return bucket_ms


def time_range(since: str | None, until: str | None, skew_ms: int) -> tuple[int, int]:
    """[since, until) in ms; by default the last 24 h, up to the latest ts a device may send."""
    now = now_ms()
    end = parse_time(until, "until")
    # devices may stamp up to `skew_ms` ahead of our clock; "until now" includes them
    end = now + skew_ms + 1 if end is None else end
    start = parse_time(since, "since")
    start = now - DAY_MS if start is None else start
    if start > end:
        raise ApiError(422, "invalid_range", params={"since": start, "until": end},
                       extra={"field": "since"})
    return start, end


def _json(content: Any) -> Response:
    # orjson straight to bytes: a 100,000-point answer skips FastAPI's generic encoder
    return Response(orjson.dumps(content), media_type="application/json")


def _csv_value(value: Value | None) -> str | int | float:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _csv(rows: Sequence[tuple[int, Value | None]]) -> Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("ts", "time", "value"))
    writer.writerows((ts, iso_time(ts), _csv_value(value)) for ts, value in rows)
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8")


@router.get("/{device_id}/latest")
def latest(core: CoreDep, device_id: str) -> Response:
    """The last reported value of each property: `{"<property>": {"ts", "value"}}`."""
    existing_device(core, device_id)
    values = core.store.latest(device_id)
    return _json({prop: {"ts": ts, "value": value} for prop, (ts, value) in values.items()})


@router.get("/{device_id}/telemetry", responses={200: {"content": {CSV: {}}}})
def telemetry(
    core: CoreDep, request: Request, device_id: str,
    prop: Annotated[str, Query(alias="property", description="a property of the thing model")],
    since: Annotated[str | None, Query(description="ms or ISO 8601; default now − 24 h")] = None,
    until: Annotated[str | None, Query(description="ms or ISO 8601, excluded; default now")] = None,
    bucket: Annotated[str | None, Query(description="500ms, 60s, 5m, 1h, 1d or ms")] = None,
    agg: Aggregate = "avg",
    limit: Annotated[int, Query(ge=1, le=MAX_POINTS)] = 1000,
    order: Literal["asc", "desc"] = "asc",
) -> Response:
    """A property's time series, raw or aggregated per bucket; CSV with `Accept: text/csv`."""
    device = existing_device(core, device_id)
    model = core.store.get_product(device.product)
    field = model.property(prop) if model else None
    if field is None:
        raise ApiError(422, "unknown_property", params={"name": prop[:64]},
                       extra={"field": "property"})
    start, end = time_range(since, until, core.settings.max_future_skew_s * 1000)
    as_csv = CSV in request.headers.get("accept", "")
    base = {"device": device_id, "property": prop, "since": start, "until": end}
    if bucket is None:
        points = core.store.points(device_id, prop, since=start, until=end, limit=limit,
                                   descending=order == "desc")
        if as_csv:
            return _csv(points)
        return _json({**base, "points": [{"ts": ts, "value": v} for ts, v in points]})
    bucket_ms = parse_bucket(bucket)
    if agg in NUMERIC_ONLY and field.type in ("string", "enum"):
        raise ApiError(422, "bad_aggregate", params={"agg": agg, "property": prop,
                                                     "type": field.type},
                       extra={"field": "agg"})
    buckets = core.store.buckets(device_id, prop, since=start, until=end, bucket_ms=bucket_ms,
                                 agg=agg, limit=limit)
    if as_csv:
        return _csv(buckets)
    return _json({**base, "bucket_ms": bucket_ms, "agg": agg,
                  "buckets": [{"ts": ts, "value": v} for ts, v in buckets]})


@router.get("/{device_id}/events")
def events(
    core: CoreDep, device_id: str, since: str | None = None, until: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_POINTS)] = 1000,
) -> Response:
    """Events a device reported, with their level and parameters."""
    existing_device(core, device_id)
    records = core.store.events(device_id, since=parse_time(since, "since"),
                                until=parse_time(until, "until"), limit=limit)
    return _json({"device": device_id, "events": [
        {"event": e.event, "level": e.level, "ts": e.ts, "params": e.params} for e in records]})
