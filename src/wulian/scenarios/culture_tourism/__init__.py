"""Culture and tourism (文化旅游): scenic-area visitor counters and heritage microclimate."""

from __future__ import annotations

import math
import random

from wulian.scenarios import Area, Scenario, ScenarioProduct
from wulian.scenarios import _kit as k
from wulian.sim import signals as sig

VISITOR_DOC: k.Doc = {
    "id": "tourism-visitor-counter", "name": "Visitor counter",
    "description": "Stereo-camera people counter at a scenic-area gate",
    "properties": [
        k.num("entries_total", "persons", 0, integer=True),
        k.num("exits_total", "persons", 0, integer=True),
        k.num("occupancy", "persons", 0, 100000, integer=True),
        k.num("capacity", "persons", 1, 100000, integer=True, rw=True),
    ],
    "events": [k.event("crowding", "major", k.num("occupancy", "persons", 0, 100000,
                                                  integer=True))],
    "commands": [k.command("set_capacity", k.num("capacity", "persons", 1, 100000,
                                                 integer=True))],
}
OPEN_H, CLOSE_H = 8.0, 18.0
CROWDED_SHARE = 0.8  # Ministry of Culture and Tourism guideline: alert at 80 % of capacity


def _in_park(t_ms: int) -> float:
    """Share of the day's visitors inside now: a hump between opening and closing."""
    hour = sig.local_hour(t_ms)
    if not OPEN_H < hour < CLOSE_H:
        return 0.0
    return math.sin(math.pi * (hour - OPEN_H) / (CLOSE_H - OPEN_H)) ** 2


STAY_H = 2.0  # a visit lasts about two hours
WEEKEND_FACTOR = 1.8
OPEN_DAY_H = (CLOSE_H - OPEN_H) / 2  # the integral of `_in_park` over one day


def _opened_hours(t_ms: int) -> float:
    """Integral of `_in_park` from COUNTER_EPOCH_MS to `t_ms`, weekends weighted (closed form).

    Gate counters are this times a per-gate rate: they grow only while the park is open,
    faster at weekends, and never go back.
    """
    first, today = k.local_day(sig.COUNTER_EPOCH_MS), k.local_day(t_ms)
    days = max(0, today - first)
    weekends = 2 * (days // 7) + sum(
        1 for j in range(days % 7) if k.weekday(first + 7 * (days // 7) + j) >= 5)
    past = OPEN_DAY_H * (days + (WEEKEND_FACTOR - 1) * weekends)
    span = CLOSE_H - OPEN_H
    x = sig.clamp(sig.local_hour(t_ms) - OPEN_H, 0.0, span)
    partial = x / 2 - span / (4 * math.pi) * math.sin(2 * math.pi * x / span)
    return past + partial * (WEEKEND_FACTOR if k.weekend(t_ms) else 1.0)


def _visitors(i: int, t_ms: int, rng: random.Random) -> k.Values:
    capacity = int(sig.spread(i, "vc.cap", 2000, 8000))
    per_hour = 0.25 * capacity
    start = sig.spread(i, "vc.start", 1e5, 1e6)
    entries = int(start + per_hour * _opened_hours(t_ms))
    # Everyone leaves about two hours after coming in: exits are entries, delayed.
    exits = int(start + per_hour * _opened_hours(t_ms - int(STAY_H * sig.HOUR_MS)))
    return {"entries_total": entries, "exits_total": exits,
            "occupancy": max(0, entries - exits), "capacity": capacity}


CLIMATE_DOC: k.Doc = {
    "id": "tourism-heritage-climate", "name": "Heritage-site microclimate monitor",
    "description": "Sensor in a temple hall or museum gallery: climate, light and vibration",
    "properties": [
        k.num("temperature", "°C", -20, 50), k.num("humidity", "%", 0, 100),
        k.num("lux", "lx", 0, 100000), k.num("uv_uw_lm", "µW/lm", 0, 1000),
        k.num("co2_ppm", "ppm", 0, 5000, integer=True), k.num("vibration_mms", "mm/s", 0, 50),
    ],
    "events": [k.event("humidity_swing", "warning", k.num("humidity", "%", 0, 100))],
    "commands": [k.command("set_lighting", k.enum("scene", "closed", "visiting",
                                                  "conservation"))],
}
RH_BAND = (45.0, 65.0)  # WW/T 0066 guidance for mixed collections


def _climate(i: int, t_ms: int, rng: random.Random) -> k.Values:
    crowd = _in_park(t_ms) * (1.6 if k.weekend(t_ms) else 1.0)
    lit = OPEN_H <= sig.local_hour(t_ms) < CLOSE_H
    values = {"temperature": k.wave(i, t_ms, rng, "hc.t", mean=(16, 22), swing=2,
                                    peak_hour=15.0, sigma=0.1, lo=-20, hi=50),
              "humidity": round(sig.clamp(sig.spread(i, "hc.rh", 50, 60) + 4 * crowd
                                          + sig.drift(i, t_ms, 4) + sig.noise(rng, 0.5),
                                          0, 100), 1),
              "lux": round(sig.spread(i, "hc.lux", 50, 150) * (1 if lit else 0.02)
                           + abs(sig.noise(rng, 1)), 1),
              "uv_uw_lm": round(sig.clamp(20 * sig.daylight(t_ms) + abs(sig.noise(rng, 1)),
                                          0, 1000), 1),
              "co2_ppm": int(sig.clamp(420 + 700 * crowd + sig.noise(rng, 10), 0, 5000)),
              "vibration_mms": round(0.05 + 0.4 * crowd + abs(sig.noise(rng, 0.02)), 3)}
    return k.drop(values, rng, 0.01, "uv_uw_lm")


VISITORS = k.product(VISITOR_DOC, _visitors, "gate", k.when(
    "occupancy", lambda v: v > 4000, "crowding"))
CLIMATE = k.product(CLIMATE_DOC, _climate, "heritage", k.when(
    "humidity", lambda v: not RH_BAND[0] <= v <= RH_BAND[1], "humidity_swing"))

SCENARIO = Scenario(
    id="culture_tourism", field="industry",
    products=(
        ScenarioProduct(VISITORS, devices=6, tags=(("asset", "gate"),),
                        cycle=("occupancy", 13.0), counters=("entries_total", "exits_total")),
        ScenarioProduct(CLIMATE, devices=10, tags=(("asset", "heritage"),),
                        cycle=("co2_ppm", 13.0)),
    ),
    area=Area("xian", "lintong", lat=(34.360, 34.400), lon=(109.190, 109.290)),
    tags=(("industry", "culture_tourism"),),
    default_rules=(
        k.threshold("tourism-crowding", "Scenic area crowded", VISITORS.id, "occupancy", ">",
                    4000, hold="5m"),
        k.threshold("tourism-humidity-high", "Heritage hall too humid", CLIMATE.id, "humidity",
                    ">", RH_BAND[1], hold="30m", severity="warning"),
        k.threshold("tourism-humidity-low", "Heritage hall too dry", CLIMATE.id, "humidity",
                    "<", RH_BAND[0], hold="30m", severity="warning"),
        k.threshold("tourism-uv", "UV on exhibits too high", CLIMATE.id, "uv_uw_lm", ">", 75,
                    hold="10m", severity="minor"),
    ),
)
