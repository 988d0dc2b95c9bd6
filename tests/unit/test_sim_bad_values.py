"""Deliberately bad values never crash a simulated device: every scenario product's sampler
runs with bad values on, and its event rule decides on the clean sample."""

from __future__ import annotations

import random

import pytest

from wulian import scenarios
from wulian.scenarios import _kit as kit
from wulian.sim import PRODUCTS
from wulian.sim import signals as sig
from wulian.sim.products import Product

WEDNESDAY = 1_764_086_400_000  # 2025-11-26 00:00 in UTC+8
STEP_MS = 7 * 60_000  # a week in fast-forward: every hour of the day, weekdays and weekend
ALL = {p.id: p for p in PRODUCTS} | {
    sp.id: sp.product for s in scenarios.all_scenarios() for sp in s.products}


@pytest.mark.parametrize("product_id", sorted(ALL))
def test_a_week_of_readings_with_bad_values_never_raises(product_id: str) -> None:
    product = ALL[product_id]
    events = {e.id for e in product.model.events}
    rng = random.Random(product_id)
    spoiled = 0
    for step in range(7 * sig.DAY_MS // STEP_MS):
        t_ms = WEDNESDAY + step * STEP_MS
        for i in range(3):
            twin = random.Random()
            twin.setstate(rng.getstate())
            values, event = product.reading(i, t_ms, rng, bad_rate=0.5)
            clean = product.sampler(i, t_ms, twin)
            spoiled += values != clean
            if event is not None:
                assert event[0] in events
                # decided on the clean sample: the same as the event rule says of it
                assert product.event_rule(i, clean, twin) == event
            # and a rule handed a spoiled sample (as an older caller would) does not raise
            product.event(i, values, random.Random(step))
    assert spoiled > 0


@pytest.mark.parametrize("product_id", sorted(ALL))
def test_every_property_spoiled_in_every_way_leaves_the_event_rule_standing(
        product_id: str) -> None:
    product = ALL[product_id]
    rng = random.Random(3)
    base = product.sampler(0, WEDNESDAY + 15 * sig.HOUR_MS, rng)
    for prop in product.model.properties:
        for bad in ("NaN", "err", "", None, True, 1, [], {}):
            product.event(0, {**base, prop.id: bad}, rng)


def test_the_reported_crash_a_turbidity_string_is_no_event() -> None:
    quality = ALL["rural-water-quality"]
    assert quality.event(0, {"turbidity_ntu": "NaN"}, random.Random(1)) is None
    assert quality.event(0, {"turbidity_ntu": 3.0}, random.Random(1)) is not None


def test_a_when_rule_ignores_values_it_cannot_compare() -> None:
    rule = kit.when("x", lambda v: v > 1.0, "high")
    rng = random.Random(0)
    assert rule(0, {"x": "2"}, rng) is None
    assert rule(0, {"x": None}, rng) is None
    assert rule(0, {}, rng) is None
    assert rule(0, {"x": 2.0}, rng) == ("high", {"x": 2.0})


def test_reading_without_bad_values_is_the_clean_sample() -> None:
    product: Product = ALL["energy-transformer"]
    a, b = random.Random(5), random.Random(5)
    values, _ = product.reading(1, WEDNESDAY, a, bad_rate=0.0)
    assert values == product.sampler(1, WEDNESDAY, b)
