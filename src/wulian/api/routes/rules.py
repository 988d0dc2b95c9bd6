"""Rules: create (JSON or YAML), list, read, replace, switch on/off, delete, backtest."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import yaml
from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from wulian.alerting.backtest import BacktestTooLarge, backtest
from wulian.api.deps import ApiError, CallerDep, CoreDep, parse_time, request_lang
from wulian.bootstrap import Core
from wulian.pipeline.ingest import now_ms
from wulian.ports import Conflict, NotFound
from wulian.quotas.resources import check_rule_room
from wulian.rules.actions import redact, restore_secrets
from wulian.rules.model import Rule, RuleError, parse_rule
from wulian.storage.rules import StoredRule

router = APIRouter(prefix="/rules", tags=["rules"])
MAX_DOC_BYTES = 256 * 1024
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
DEFAULT_BACKTEST_MS = 86_400_000
MAX_BACKTESTS = 2  # at once: each holds a worker thread and up to a few hundred MB
_backtests = [0]  # running now (touched only on the event loop)


def _rule_error(exc: RuleError) -> ApiError:
    return ApiError(422, "invalid_rule", params={"field": exc.path, "problem": exc.problem},
                    extra={"field": exc.path})


async def rule_document(request: Request) -> Any:
    """The request body as a rule document: JSON, or YAML when the content type says so."""
    body = await request.body()
    if len(body) > MAX_DOC_BYTES:
        raise ApiError(413, "rule_too_large", params={"limit": MAX_DOC_BYTES})
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if kind in YAML_TYPES:
            return yaml.safe_load(body.decode("utf-8"))
        return orjson.loads(body)
    except (yaml.YAMLError, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ApiError(422, "invalid_rule_syntax",
                       params={"format": "YAML" if kind in YAML_TYPES else "JSON",
                               "detail": detail}) from None


def parse_document(doc: Any) -> Rule:
    try:
        return parse_rule(doc)
    except RuleError as exc:
        raise _rule_error(exc) from None


def rule_out(stored: StoredRule, open_alarms: int | None = None) -> dict[str, Any]:
    rule = stored.rule
    out: dict[str, Any] = {
        "id": rule.id, "name": rule.name, "severity": rule.severity.value,
        "enabled": rule.enabled, "description": rule.description, "version": stored.version,
        "created_ms": stored.created_ms, "updated_ms": stored.updated_ms,
        "doc": redact(dict(stored.doc)),
    }
    if open_alarms is not None:
        out["open_alarms"] = open_alarms
    return out


def _existing(core: Core, rule_id: str) -> StoredRule:
    stored = core.rule_store.get_rule(rule_id)
    if stored is None:
        raise ApiError(404, "rule_not_found", params={"rule": rule_id[:128]})
    return stored


def _changed(core: Core) -> None:
    """Tell the running rules service at once (it would notice within a second anyway)."""
    if core.rules.running:
        core.rules.reload()


@router.get("", summary="List rules")
def list_rules(core: CoreDep) -> dict[str, Any]:
    counts = core.rule_store.open_counts_by_rule()
    return {"items": [rule_out(s, counts.get(s.rule.id, 0))
                      for s in core.rule_store.list_rules()]}


@router.post("", status_code=201, summary="Create a rule (JSON or YAML body)")
async def create_rule(request: Request, core: CoreDep) -> dict[str, Any]:
    rule = parse_document(await rule_document(request))
    await run_in_threadpool(check_rule_room, core.store, core.rule_store)
    try:
        stored = await run_in_threadpool(core.rule_store.put_rule, rule, create_only=True)
    except Conflict:
        raise ApiError(409, "rule_exists", params={"rule": rule.id}) from None
    await run_in_threadpool(_changed, core)
    return rule_out(stored, 0)


@router.post("/validate", summary="Check a rule document without saving it")
async def validate_rule(request: Request) -> dict[str, Any]:
    rule = parse_document(await rule_document(request))
    return {"valid": True, "id": rule.id}


@router.post("/backtest", summary="Backtest an unsaved rule document over stored history")
async def backtest_document(request: Request, core: CoreDep,
                            since: Annotated[str | None, Query()] = None,
                            until: Annotated[str | None, Query()] = None) -> dict[str, Any]:
    rule = parse_document(await rule_document(request))
    return await _backtest(request, core, rule, since, until)


@router.get("/{rule_id}", summary="One rule")
def get_rule(rule_id: str, core: CoreDep) -> dict[str, Any]:
    stored = _existing(core, rule_id)
    return rule_out(stored, core.rule_store.open_counts_by_rule().get(rule_id, 0))


@router.put("/{rule_id}", summary="Create or replace a rule (its evaluation state restarts)")
async def put_rule(rule_id: str, request: Request, core: CoreDep) -> dict[str, Any]:
    doc = await rule_document(request)
    if isinstance(doc, dict):
        doc.setdefault("id", rule_id)
        if doc["id"] != rule_id:
            raise ApiError(422, "rule_id_mismatch", params={"path": rule_id[:128],
                                                            "body": str(doc["id"])[:128]})
        # a client editing what GET gave it sends secrets back as ***: keep the stored ones
        old = await run_in_threadpool(core.rule_store.get_rule, rule_id)
        if old is not None:
            doc = restore_secrets(doc, old.doc)
    stored = await run_in_threadpool(core.rule_store.put_rule, parse_document(doc))
    await run_in_threadpool(_changed, core)
    return rule_out(stored)


def _switch(core: Core, rule_id: str, enabled: bool) -> dict[str, Any]:
    _existing(core, rule_id)
    try:
        stored = core.rule_store.set_enabled(rule_id, enabled)
    except NotFound:
        raise ApiError(404, "rule_not_found", params={"rule": rule_id[:128]}) from None
    _changed(core)
    return rule_out(stored)


@router.post("/{rule_id}/enable", summary="Switch a rule on")
def enable_rule(rule_id: str, core: CoreDep) -> dict[str, Any]:
    return _switch(core, rule_id, True)


@router.post("/{rule_id}/disable", summary="Switch a rule off (its open alarms stay)")
def disable_rule(rule_id: str, core: CoreDep) -> dict[str, Any]:
    return _switch(core, rule_id, False)


@router.delete("/{rule_id}", status_code=204, summary="Delete a rule (its open alarms clear)")
def delete_rule(rule_id: str, core: CoreDep, who: CallerDep) -> Response:
    if not core.rule_store.delete_rule(rule_id, by=who.name):
        raise ApiError(404, "rule_not_found", params={"rule": rule_id[:128]})
    _changed(core)
    return Response(status_code=204)


@router.post("/{rule_id}/backtest", summary="When a stored rule would have fired and cleared")
async def backtest_rule(rule_id: str, request: Request, core: CoreDep,
                        since: Annotated[str | None, Query()] = None,
                        until: Annotated[str | None, Query()] = None) -> dict[str, Any]:
    stored = await run_in_threadpool(_existing, core, rule_id)
    return await _backtest(request, core, stored.rule, since, until)


async def _backtest(request: Request, core: Core, rule: Rule, since_raw: str | None,
                    until_raw: str | None) -> dict[str, Any]:
    until = parse_time(until_raw, "until") or now_ms()
    since = parse_time(since_raw, "since")
    since = until - DEFAULT_BACKTEST_MS if since is None else since
    if since >= until:
        raise ApiError(422, "invalid_range", params={"since": since, "until": until})
    if _backtests[0] >= MAX_BACKTESTS:
        raise ApiError(503, "backtest_busy", headers={"Retry-After": "10"})
    _backtests[0] += 1
    try:
        result = await run_in_threadpool(backtest, rule, core.store, since, until)
    except BacktestTooLarge as exc:
        if exc.what == "seconds":
            raise ApiError(422, "backtest_too_slow", params={"limit": exc.limit}) from None
        raise ApiError(422, "backtest_too_large",
                       params={"what": exc.what, "limit": exc.limit}) from None
    finally:
        _backtests[0] -= 1
    return result.to_dict(request_lang(request))
