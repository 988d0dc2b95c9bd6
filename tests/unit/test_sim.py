"""Simulated products: valid against their own thing models, realistic, and deterministic."""

from __future__ import annotations

import itertools
import random
import statistics

import orjson
import pytest

from tests.fixtures.common import ENV_SENSOR
from wulian.domain.rejection import Rejection
from wulian.domain.thingmodel import parse_thing_model
from wulian.domain.validation import CompiledModel
from wulian.sim import PRODUCTS, SMART_METER, STREETLIGHT, Product, product
from wulian.sim import signals as sig

DAY_START = 1_764_000_000_000 - 1_764_000_000_000 % sig.DAY_MS - 8 * sig.HOUR_MS  # local 00:00
STEP_MS = 60_000  # one reading a minute for a simulated day, in fast-forward


def _day(prod: Product, device_index: int, seed: int, bad_rate: float) -> list[dict]:
    rng = random.Random(seed)
    return [prod.sample(device_index, DAY_START + k * STEP_MS, rng, bad_rate=bad_rate)
            for k in range(sig.DAY_MS // STEP_MS)]


def _rejected(compiled: CompiledModel, values: dict) -> bool:
    return isinstance(compiled.decode_telemetry(orjson.dumps(values)), Rejection)


@pytest.mark.parametrize("prod", PRODUCTS, ids=lambda p: p.id)
def test_a_day_of_readings_validates_against_the_products_own_model(prod: Product) -> None:
    compiled = CompiledModel(parse_thing_model(prod.doc))
    for device_index in range(5):
        for values in _day(prod, device_index, seed=device_index, bad_rate=0.0):
            result = compiled.decode_telemetry(orjson.dumps(values))
            assert not isinstance(result, Rejection), (values, result)


@pytest.mark.parametrize("prod", PRODUCTS, ids=lambda p: p.id)
def test_bad_values_are_rejected_at_about_the_bad_rate(prod: Product) -> None:
    compiled = CompiledModel(prod.model)
    bad_rate = 0.05
    samples = [v for i in range(4) for v in _day(prod, i, seed=100 + i, bad_rate=bad_rate)]
    fraction = sum(_rejected(compiled, v) for v in samples) / len(samples)
    assert abs(fraction - bad_rate) < 0.015, fraction


@pytest.mark.parametrize("prod", PRODUCTS, ids=lambda p: p.id)
def test_events_a_product_raises_are_in_its_model(prod: Product) -> None:
    compiled = CompiledModel(prod.model)
    rng = random.Random(7)
    raised = 0
    for k in range(20_000):
        values = prod.sample(k % 50, DAY_START + k * 30_000, rng, bad_rate=0.0)
        event = prod.event(k % 50, values, rng)
        if event is not None:
            raised += 1
            assert not isinstance(compiled.decode_event(event[0], orjson.dumps(event[1])),
                                  Rejection), event
    assert raised > 0


def test_env_sensor_is_the_issues_thing_model() -> None:
    assert product("env-sensor").doc == ENV_SENSOR
    with pytest.raises(KeyError):
        product("no-such-product")


def test_same_seed_same_readings_other_seed_other_readings() -> None:
    for prod in PRODUCTS:
        assert _day(prod, 3, seed=1, bad_rate=0.05) == _day(prod, 3, seed=1, bad_rate=0.05)
    assert _day(PRODUCTS[0], 3, seed=1, bad_rate=0.0) != _day(PRODUCTS[0], 3, seed=2,
                                                              bad_rate=0.0)


def test_temperature_follows_the_day() -> None:
    day = _day(product("env-sensor"), 0, seed=0, bad_rate=0.0)
    by_hour = [statistics.mean(v["temperature"] for v in day[h * 60:(h + 1) * 60])
               for h in range(24)]
    assert max(range(24), key=by_hour.__getitem__) in range(13, 18)  # afternoon peak
    assert min(range(24), key=by_hour.__getitem__) in (*range(0, 6), 23)  # coldest before dawn
    assert by_hour[15] - by_hour[3] > 2


def test_daily_cycle_and_daylight_shapes() -> None:
    peak = DAY_START + 15 * sig.HOUR_MS
    assert sig.daily_cycle(peak, peak_hour=15) == pytest.approx(1.0)
    assert sig.daily_cycle(peak + 12 * sig.HOUR_MS, peak_hour=15) == pytest.approx(-1.0)
    assert sig.daylight(DAY_START + 2 * sig.HOUR_MS) == 0.0
    assert sig.daylight(DAY_START + 12 * sig.HOUR_MS + 15 * 60_000) == pytest.approx(1.0)


def test_meter_energy_never_decreases_and_tracks_power() -> None:
    rng = random.Random(0)
    energies = [SMART_METER.sample(2, DAY_START + k * STEP_MS, rng, bad_rate=0.0)["energy_kwh"]
                for k in range(3 * 24 * 60)]
    assert all(b >= a for a, b in itertools.pairwise(energies))
    per_day = (energies[-1] - energies[0]) / 3
    assert 24 * 3.0 * 0.5 < per_day < 24 * 40.0  # within the range of the meters' loads


def test_streetlights_burn_at_night_only() -> None:
    day = _day(STREETLIGHT, 1, seed=0, bad_rate=0.0)
    assert all(v["lamp_on"] for v in day[0:5 * 60])  # 00:00-05:00
    assert not any(v["lamp_on"] for v in day[10 * 60:15 * 60])  # 10:00-15:00
    assert all(v["dim_level"] == 60 for v in day[2 * 60:4 * 60])  # dimmed after midnight


def test_signal_building_blocks_are_bounded_and_stable() -> None:
    rng = random.Random(3)
    assert sig.unit(5, "x") == sig.unit(5, "x") and 0 <= sig.unit(5, "x") < 1
    assert sig.unit(5, "x") != sig.unit(6, "x")
    spikes = [sig.spike(rng, 0.1, 5.0) for _ in range(10_000)]
    assert set(spikes) <= {0.0, 5.0, -5.0} and 700 < sum(s != 0 for s in spikes) < 1300
    assert 700 < sum(sig.dropout(rng, 0.1) for _ in range(10_000)) < 1300
    assert abs(sig.drift(1, DAY_START, 2.0)) <= 2.0
    assert sig.clamp(5, 0, 3) == 3 and sig.clamp(-1, 0, 3) == 0
