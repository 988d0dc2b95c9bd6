"""The twelve industry scenarios: thing models, a simulated day of each, default rules."""

from __future__ import annotations

import random
import statistics
from functools import cache

import orjson
import pytest

from wulian import scenarios
from wulian.domain.duration import duration_ms
from wulian.domain.rejection import Rejection
from wulian.domain.thingmodel import EVENT_LEVELS, parse_thing_model
from wulian.domain.validation import CompiledModel
from wulian.i18n import catalogue, t
from wulian.rules.model import parse_rule
from wulian.scenarios import Scenario, ScenarioProduct
from wulian.scenarios import _kit as kit
from wulian.sim import signals as sig
from wulian.sim.products import Product

INDUSTRIES = {
    "social_governance": {"municipal", "rural", "transport", "energy", "public_health"},
    "industry": {"agriculture", "manufacturing", "construction", "eco_environment",
                 "culture_tourism"},
    "consumption": {"home", "health"},
}
WEDNESDAY = 1_764_086_400_000  # 2025-11-26 00:00 in UTC+8
STEP_MS = 5 * 60_000
DEVICES = 3
OPS = {">", ">=", "<", "<=", "==", "!="}

PAIRS = [(s, p) for s in scenarios.all_scenarios() for p in s.products]
PAIR_IDS = [p.id for _, p in PAIRS]

Sample = tuple[int, int, dict[str, object]]


@cache
def day(product_id: str, start_ms: int = WEDNESDAY) -> tuple[Sample, ...]:
    """One simulated day of three devices, one reading each per 5 minutes, seeded, no bad values."""
    sp = _product(product_id)
    rng = random.Random(product_id)
    return tuple((t_ms, i, sp.product.sample(i, t_ms, rng, bad_rate=0.0))
                 for t_ms in range(start_ms, start_ms + sig.DAY_MS, STEP_MS)
                 for i in range(DEVICES))


def _product(product_id: str) -> ScenarioProduct:
    return next(p for _, p in PAIRS if p.id == product_id)


def _compiled(product_id: str) -> tuple[Product, CompiledModel]:
    product = _product(product_id).product
    return product, CompiledModel(product.model)


def test_twelve_scenarios_one_per_industry() -> None:
    found: dict[str, set[str]] = {}
    for s in scenarios.all_scenarios():
        found.setdefault(s.field, set()).add(s.id)
    assert found == INDUSTRIES
    assert len(scenarios.REGISTRY) == 12
    assert scenarios.get("home") is scenarios.REGISTRY["home"]
    with pytest.raises(KeyError):
        scenarios.get("mining")


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_names_and_descriptions_are_translated(lang: str) -> None:
    for s in scenarios.all_scenarios():
        for key in (f"scenario.{s.id}.name", f"scenario.{s.id}.description"):
            assert key in catalogue(lang)
    assert scenarios.get("home").name("zh") == "智能家居"
    assert t("scenario.energy.name", "en") != t("scenario.energy.name", "zh")


def test_every_scenario_has_products_devices_and_an_area() -> None:
    for s in scenarios.all_scenarios():
        assert 1 <= len(s.products) <= 3, s.id
        assert all(p.devices > 0 for p in s.products)
        assert s.area.lat[0] < s.area.lat[1] and s.area.lon[0] < s.area.lon[1]
        for i in range(10):
            lat, lon = s.area.locate(i)
            assert s.area.lat[0] <= lat <= s.area.lat[1]
            assert s.area.lon[0] <= lon <= s.area.lon[1]


def test_product_ids_are_unique_across_scenarios() -> None:
    assert len(set(PAIR_IDS)) == len(PAIR_IDS)
    prefixes = [p.product.id_prefix for _, p in PAIRS]
    assert len(set(prefixes)) == len(prefixes)


@pytest.mark.parametrize("product_id", PAIR_IDS)
def test_thing_model_parses_and_round_trips(product_id: str) -> None:
    product = _product(product_id).product
    model = parse_thing_model(product.doc)
    assert parse_thing_model(model.to_doc()) == model
    assert model.properties and model.commands
    assert all(e.level in EVENT_LEVELS for e in model.events)


@pytest.mark.parametrize("product_id", PAIR_IDS)
def test_a_simulated_day_validates_against_its_own_model(product_id: str) -> None:
    product, compiled = _compiled(product_id)
    rng = random.Random(1)
    events = 0
    for _, i, values in day(product_id):
        decoded = compiled.decode_telemetry(orjson.dumps(values))
        assert not isinstance(decoded, Rejection), (values, decoded)
        raised = product.event(i, values, rng)
        if raised is not None:
            events += 1
            params = compiled.decode_event(raised[0], orjson.dumps(raised[1]))
            assert not isinstance(params, Rejection), (raised, params)
    assert events < len(day(product_id)) / 2  # events are news, not a second telemetry


@pytest.mark.parametrize("product_id", PAIR_IDS)
def test_only_injected_values_are_rejected(product_id: str) -> None:
    product, compiled = _compiled(product_id)
    rng = random.Random(7)
    bad = 0
    for step in range(300):
        t_ms = WEDNESDAY + step * STEP_MS
        twin = random.Random()
        twin.setstate(rng.getstate())
        clean = product.sampler(0, t_ms, twin)
        values = product.sample(0, t_ms, rng, bad_rate=0.2)
        rejected = isinstance(compiled.decode_telemetry(orjson.dumps(values)), Rejection)
        assert rejected == (orjson.dumps(values) != orjson.dumps(clean)), (clean, values)
        bad += rejected
    assert 20 < bad < 110


@pytest.mark.parametrize("product_id", [p.id for _, p in PAIRS if p.cycle])
def test_daily_cycle_peaks_where_declared(product_id: str) -> None:
    sp = _product(product_id)
    assert sp.cycle is not None
    prop, peak = sp.cycle

    def mean_around(hour: float) -> float:
        return statistics.fmean(
            float(v[prop]) for t_ms, _, v in day(product_id)  # type: ignore[arg-type]
            if prop in v and abs((sig.local_hour(t_ms) - hour + 12) % 24 - 12) <= 2)

    high, low = mean_around(peak), mean_around(peak + 12)
    assert high > low, (prop, high, low)
    assert high - low > 0.1 * (abs(high) + abs(low)) / 2, (prop, high, low)


@pytest.mark.parametrize("product_id", [p.id for _, p in PAIRS if p.counters])
def test_counters_never_decrease(product_id: str) -> None:
    sp = _product(product_id)
    for prop in sp.counters:
        for i in range(DEVICES):
            series = [v[prop] for _, d, v in day(product_id) if d == i and prop in v]
            assert len(series) > 200
            assert series == sorted(series), prop  # type: ignore[type-var]
            assert series[-1] > series[0], prop  # type: ignore[operator]


def test_traffic_is_lighter_at_the_weekend() -> None:
    saturday = WEDNESDAY + 3 * sig.DAY_MS
    assert kit.weekend(saturday) and not kit.weekend(WEDNESDAY)
    pid = "transport-traffic-counter"

    def total(start: int) -> float:
        return sum(v["vehicles_5min"] for _, _, v in day(pid, start))  # type: ignore[misc]

    assert total(saturday) < 0.9 * total(WEDNESDAY)


def _rules() -> list[tuple[Scenario, dict[str, object]]]:
    return [(s, r) for s in scenarios.all_scenarios() for r in s.default_rules]


def test_default_rules_reference_their_scenarios_products() -> None:
    ids = [str(r["id"]) for _, r in _rules()]
    assert len(ids) == len(set(ids))
    for s, rule in _rules():
        assert rule["severity"] in EVENT_LEVELS
        model = s.product(str(rule["product"])).product.model
        cond = rule["condition"]
        assert isinstance(cond, dict)
        if cond["type"] == "event":
            assert model.event(cond["event"]) is not None, rule
            continue
        assert cond["type"] == "threshold" and cond["op"] in OPS, rule
        f = model.property(cond["property"])
        assert f is not None, rule
        if f.type in ("int", "float"):
            assert isinstance(cond["value"], int | float) and not isinstance(cond["value"], bool)
            assert f.min is None or cond["value"] >= f.min, rule
            assert f.max is None or cond["value"] <= f.max, rule
        elif f.type == "bool":
            assert isinstance(cond["value"], bool), rule
        if "for" in rule:
            assert duration_ms(str(rule["for"])), rule


def test_every_scenario_has_default_rules() -> None:
    assert all(len(s.default_rules) >= 3 for s in scenarios.all_scenarios())


def test_default_rules_parse_as_rules() -> None:
    for _, rule in _rules():
        parse_rule(rule)
