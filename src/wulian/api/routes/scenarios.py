"""The twelve industry templates: what each deploys, its default rules, its dashboard."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import func, select

from wulian import scenarios
from wulian.api.deps import ApiError, CoreDep, request_lang
from wulian.bootstrap import Core
from wulian.storage.rules import OPEN_STATES
from wulian.storage.schema import alarms, devices

router = APIRouter(prefix="/scenarios", tags=["scenarios"])


def scenario_out(s: scenarios.Scenario, lang: str | None) -> dict[str, Any]:
    return {"id": s.id, "field": s.field, "name": s.name(lang),
            "description": s.description(lang),
            "area": {"city": s.area.city, "district": s.area.district,
                     "lat": list(s.area.lat), "lon": list(s.area.lon)},
            "products": [{"id": p.id, "name": p.product.model.name, "devices": p.devices}
                         for p in s.products],
            "default_rules": [r["id"] for r in s.default_rules]}


def _counts(core: Core, rule_ids: list[str], products: list[str]) -> tuple[int, dict[str, int]]:
    """Open alarms of the scenario's rules, and registered devices per product."""
    with core.rule_store.engine.connect() as conn:
        open_alarms = conn.scalar(select(func.count()).select_from(alarms).where(
            alarms.c.rule_id.in_(rule_ids), alarms.c.state.in_(OPEN_STATES))) if rule_ids \
            else 0
        rows = conn.execute(select(devices.c.product, func.count()).where(
            devices.c.product.in_(products)).group_by(devices.c.product)).all()
    return int(open_alarms or 0), {product: int(n) for product, n in rows}


@router.get("", summary="The scenario templates")
def list_scenarios(request: Request) -> dict[str, Any]:
    lang = request_lang(request)
    return {"items": [scenario_out(s, lang) for s in scenarios.all_scenarios()]}


@router.get("/{scenario_id}", summary="One scenario: its products here, rules and dashboard")
def get_scenario(scenario_id: str, request: Request, core: CoreDep) -> dict[str, Any]:
    try:
        s = scenarios.get(scenario_id)
    except KeyError:
        raise ApiError(404, "scenario_not_found", params={"scenario": scenario_id[:64]}) \
            from None
    out = scenario_out(s, request_lang(request))
    installed = {r.rule.id for r in core.rule_store.list_rules()}
    out["rules_installed"] = sorted(installed & set(out["default_rules"]))
    out["open_alarms"], registered = _counts(core, out["default_rules"],
                                             [p["id"] for p in out["products"]])
    for product in out["products"]:
        product["registered"] = registered.get(product["id"], 0)
    out["dashboard"] = s.dashboard()
    return out
