"""The audit trail of the API: every change (POST, PUT, PATCH, DELETE) leaves one entry in
the hash-chained audit log before its answer leaves, with who, what, target, source and
outcome; `GET /api/v1/audit` reads it back (JSON pages, or a JSONL/CSV export).

Recorded at the ASGI edge until the service layer lands (issue 11): the action is the
route's method and path template (`POST /devices/{device_id}/secret`), stable for every
operation in the OpenAPI document. Device telemetry is not audited: that is data.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wulian.api.deps import parse_time
from wulian.domain.actor import DEFAULT_ORG
from wulian.domain.clock import now_ms
from wulian.i18n import t
from wulian.ports import AuditEntry, AuditLog, AuditRecord

log = logging.getLogger(__name__)
CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CONVERTER = re.compile(r"\{(\w+):\w+\}")
_DEVICE_DATA = re.compile(r"^/api/v1/devices/[^/]+/(telemetry|events/[^/]+)$")

router = APIRouter(prefix="/audit", tags=["audit"])


def actor_label(scope: Scope) -> str:
    """`user:alice` (console session), `token:admin` (the admin token), else `anonymous`."""
    caller = scope.get("state", {}).get("caller")
    if caller is None:
        return "anonymous"
    return f"{'user' if caller.session else 'token'}:{caller.name}"


class AuditTrail:
    """ASGI middleware: append one audit entry per API change, before its answer goes out."""

    def __init__(self, app: ASGIApp, *, prefix: str, audit: AuditLog) -> None:
        self.app = app
        self.prefix = prefix
        self.audit = audit
        self.failures = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (scope["type"] != "http" or scope["method"] not in CHANGES
                or not path.startswith(self.prefix + "/") or _DEVICE_DATA.match(path)):
            await self.app(scope, receive, send)
            return

        async def audited(message: Message) -> None:
            if message["type"] == "http.response.start":
                await run_in_threadpool(self._append, scope, message["status"])
            await send(message)

        await self.app(scope, receive, audited)

    def _append(self, scope: Scope, status: int) -> None:
        route = scope.get("route")
        # `{alarm_id:path}` in the route is `{alarm_id}` in the OpenAPI document
        template = _CONVERTER.sub(r"{\1}", getattr(route, "path", None) or scope["path"])
        params = scope.get("path_params") or {}
        client = scope.get("client")
        record = AuditRecord(
            ts=now_ms(), actor=actor_label(scope), org_id=DEFAULT_ORG,
            action=f"{scope['method']} {template.removeprefix(self.prefix)}",
            target="/".join(str(v) for v in params.values()) or None,
            outcome="ok" if status < 400 else f"http_{status}",
            source=f"{client[0]}:{client[1]}" if client else None)
        try:
            self.audit.append(record)
        except Exception:  # the change is made; say loudly that its entry is missing
            self.failures += 1
            log.exception(t("audit.append_failed", action=record.action, actor=record.actor))


def get_audit(request: Request) -> AuditLog:
    audit: AuditLog = request.app.state.audit
    return audit


def _row(entry: AuditEntry) -> dict[str, Any]:
    r = entry.record
    return {"seq": entry.seq, "ts": r.ts, "actor": r.actor, "org": r.org_id,
            "action": r.action, "target": r.target, "outcome": r.outcome, "source": r.source,
            "before": r.before, "after": r.after, "prev_hash": entry.prev_hash,
            "hash": entry.hash}


@router.get("")
def list_audit(
    audit: Annotated[AuditLog, Depends(get_audit)],
    since: str | None = None, until: str | None = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=200)] = None,
    after: Annotated[int | None, Query(ge=0, description="cursor: the last seq seen")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    format: Literal["json", "jsonl", "csv"] = "json",
) -> Any:
    """Audit entries oldest first; `next` is the cursor for the page after (null at the end).

    `format=jsonl|csv` streams every matching entry from `after` on as a download.
    """
    start, end = parse_time(since, "since"), parse_time(until, "until")

    def read(cursor: int | None, size: int) -> list[AuditEntry]:
        return audit.entries(org_id=None, since=start, until=end, actor=actor, action=action,
                             after_seq=cursor, limit=size)

    if format == "json":
        page = read(after, limit)
        last = page[-1].seq if len(page) == limit else None
        return {"items": [_row(e) for e in page], "next": last}

    def pages() -> Iterator[AuditEntry]:
        cursor = after
        while True:
            got = read(cursor, 1000)
            yield from got
            if len(got) < 1000:
                return
            cursor = got[-1].seq

    if format == "jsonl":
        body: Iterator[bytes] = (orjson.dumps(_row(e)) + b"\n" for e in pages())
        return StreamingResponse(body, media_type="application/x-ndjson", headers={
            "Content-Disposition": 'attachment; filename="wulian-audit.jsonl"'})
    return StreamingResponse(_csv(pages()), media_type="text/csv", headers={
        "Content-Disposition": 'attachment; filename="wulian-audit.csv"'})


CSV_FIELDS = ("seq", "ts", "actor", "org", "action", "target", "outcome", "source", "hash")


def _csv(entries: Iterator[AuditEntry]) -> Iterator[bytes]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for entry in entries:
        row = _row(entry)
        writer.writerow([row[k] for k in CSV_FIELDS])
        yield out.getvalue().encode()
        out.seek(0)
        out.truncate()
    yield out.getvalue().encode()
