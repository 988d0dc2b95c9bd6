"""Alarms: list and filter, counts, one alarm with its history, acknowledge, clear."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from wulian.alerting.live import change_dict
from wulian.alerting.service import RulesBusy
from wulian.api.deps import ApiError, Caller, CoreDep, caller, parse_time, request_lang
from wulian.bootstrap import Core
from wulian.rules.alarms import GROUP, AlarmChange, AlarmError, AlarmState, ChangeKind
from wulian.storage.rules import AlarmQuery, AlarmRecord

router = APIRouter(prefix="/alarms", tags=["alarms"])
_STATE_CHANGE = {AlarmState.ACTIVE: ChangeKind.RAISED,
                 AlarmState.ACKNOWLEDGED: ChangeKind.ACKNOWLEDGED,
                 AlarmState.CLEARED: ChangeKind.CLEARED}


class PersonNote(BaseModel):
    """What a person may add when acknowledging or clearing."""

    model_config = ConfigDict(extra="forbid")
    comment: str | None = Field(default=None, max_length=2000)


def alarm_out(record: AlarmRecord, lang: str | None) -> dict[str, Any]:
    """An alarm as the API shows it, with its current state in words."""
    alarm = record.alarm
    kind = _STATE_CHANGE[alarm.state]
    by = alarm.acknowledged_by if kind is ChangeKind.ACKNOWLEDGED else alarm.cleared_by
    ts = {ChangeKind.RAISED: alarm.raised_ms, ChangeKind.ACKNOWLEDGED: alarm.acknowledged_ms,
          ChangeKind.CLEARED: alarm.cleared_ms}[kind] or alarm.last_ms
    said = AlarmChange(alarm.id, alarm.rule_id, alarm.subject, kind, ts, alarm.severity,
                       alarm.value, by, None, record.rule_name)
    return {**record.to_dict(), "group": alarm.subject == GROUP, "message": said.message(lang)}


@router.get("", summary="List alarms, newest first")
def list_alarms(
    request: Request, core: CoreDep,
    state: Annotated[Literal["open", "active", "acknowledged", "cleared"] | None,
                     Query()] = None,
    severity: Annotated[Literal["critical", "major", "minor", "warning"] | None,
                        Query()] = None,
    device: Annotated[str | None, Query(max_length=128)] = None,
    rule: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[str | None, Query()] = None,
    until: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    query = AlarmQuery(state, severity, device, rule, parse_time(since, "since"),
                       parse_time(until, "until"), limit, offset)
    lang = request_lang(request)
    return {"items": [alarm_out(r, lang) for r in core.rule_store.list_alarms(query)]}


@router.get("/counts", summary="Open alarms by state and severity")
def alarm_counts(core: CoreDep) -> dict[str, dict[str, int]]:
    return core.rule_store.counts()


def _existing(core: Core, alarm_id: str) -> AlarmRecord:
    record = core.rule_store.get_alarm(alarm_id)
    if record is None:
        raise ApiError(404, "alarm_not_found", params={"alarm": alarm_id[:300]})
    return record


async def _person(request: Request, core: Core, alarm_id: str, who: Caller,
                  note: PersonNote | None, ack: bool) -> dict[str, Any]:
    await run_in_threadpool(_existing, core, alarm_id)
    comment = note.comment if note else None
    action = core.rules.acknowledge if ack else core.rules.clear
    try:
        change = await run_in_threadpool(action, alarm_id, who.name, comment)
    except AlarmError as exc:
        raise ApiError(409, "alarm_not_acknowledgeable" if ack else "alarm_not_open",
                       params={"alarm": alarm_id[:300], "problem": exc.problem}) from None
    except RulesBusy:
        raise ApiError(503, "rules_busy", headers={"Retry-After": "5"}) from None
    lang = request_lang(request)
    record = await run_in_threadpool(_existing, core, alarm_id)
    return {"change": change_dict(change, lang), "alarm": alarm_out(record, lang)}


@router.post("/{alarm_id:path}/acknowledge", summary="Acknowledge an active alarm")
async def acknowledge(alarm_id: str, request: Request, core: CoreDep,
                      who: Annotated[Caller, Depends(caller)],
                      note: PersonNote | None = None) -> dict[str, Any]:
    return await _person(request, core, alarm_id, who, note, ack=True)


@router.post("/{alarm_id:path}/clear", summary="Clear an open alarm by hand")
async def clear(alarm_id: str, request: Request, core: CoreDep,
                who: Annotated[Caller, Depends(caller)],
                note: PersonNote | None = None) -> dict[str, Any]:
    return await _person(request, core, alarm_id, who, note, ack=False)


@router.get("/{alarm_id:path}", summary="One alarm with its history")
def get_alarm(alarm_id: str, request: Request, core: CoreDep) -> dict[str, Any]:
    record = _existing(core, alarm_id)
    lang = request_lang(request)
    return {**alarm_out(record, lang),
            "history": [change_dict(c, lang) for c in core.rule_store.history(alarm_id)]}
