"""The console's overview in one call: fleet, online rate, IPv6 share, traffic, industries."""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from wulian.api.deps import CoreDep, request_lang
from wulian.bootstrap import Core
from wulian.i18n import t
from wulian.metrics import DAY_MS, MINUTE_MS, CounterSampler, CounterSamples, fleet_counts
from wulian.pipeline.ingest import now_ms

router = APIRouter(tags=["overview"])
OTHER = "other"
ACCEPTED = "messages_accepted"
# Without a running sampler (a process that only serves the API), "now" is the last minute
# the database holds, if it is this recent; older than that, nothing is known about now.
STALE_MS = 3 * 60_000


@cache
def industry_of_products() -> dict[str, str]:
    """Product id → the scenario (industry) that deploys it; the first one wins."""
    from wulian.scenarios import all_scenarios

    found: dict[str, str] = {}
    for scenario in all_scenarios():
        for product in scenario.products:
            found.setdefault(product.id, scenario.id)
    return found


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def overview_doc(core: Core, sampler: CounterSampler | None, lang: str | None) -> dict[str, Any]:
    """The overview document (blocking: reads the database)."""
    now = now_ms()
    fleet = fleet_counts(core.store, now - core.settings.online_window_s * 1000)
    names = {m.id: m.name for m in core.store.list_products()}
    industries = industry_of_products()
    by_industry: dict[str, dict[str, Any]] = {}
    products = []
    for p in fleet.products:
        industry = industries.get(p.product, OTHER)
        products.append({"id": p.product, "name": names.get(p.product, p.product),
                         "industry": industry, "devices": p.devices, "online": p.online})
        entry = by_industry.setdefault(industry, {
            "industry": industry, "name": t("console.overview.industry_other", lang)
            if industry == OTHER else t(f"scenario.{industry}.name", lang),
            "devices": 0, "online": 0})
        entry["devices"] += p.devices
        entry["online"] += p.online
    samples = sampler.samples if sampler else CounterSamples.of(core.store)
    history = samples.rates(ACCEPTED, now - DAY_MS, now - now % MINUTE_MS)
    rate = sampler.rate_now(ACCEPTED) if sampler else None
    if rate is None and history and history[-1][0] >= now - STALE_MS:
        rate = history[-1][1]
    known_ip = fleet.ipv4 + fleet.ipv6
    return {
        "ts": now,
        "devices": fleet.devices,
        "online": fleet.online,
        "online_rate": _ratio(fleet.online, fleet.devices),
        "ipv6_share": _ratio(fleet.ipv6, known_ip),
        "ipv6_devices": fleet.ipv6,
        "ip_known_devices": known_ip,
        "messages_per_s": None if rate is None else round(rate, 3),
        "messages_24h": [[minute, round(value, 3)] for minute, value in history],
        "by_industry": sorted(by_industry.values(),
                              key=lambda e: (e["industry"] == OTHER, -e["devices"])),
        "products": products,
    }


@router.get("/overview")
async def overview(core: CoreDep, request: Request) -> dict[str, Any]:
    """Devices, online rate, IPv6 share, messages/s now and per minute over 24 h, industries.

    `ipv6_share` is over devices whose last connection's address is known (IPv4 or IPv6);
    `messages_24h` is `[[minute_ms, messages per second], …]` of accepted messages, from
    the counter samples `wulian serve` takes; `by_industry` groups products by the scenario
    template they come from (others are `other`).
    """
    sampler: CounterSampler | None = getattr(request.app.state, "sampler", None)
    return await run_in_threadpool(overview_doc, core, sampler, request_lang(request))
