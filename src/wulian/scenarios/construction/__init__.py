"""Construction (智能建造): tower-crane safety monitors and structural strain gauges."""

from __future__ import annotations

import random

from wulian.scenarios import Area, Scenario, ScenarioProduct
from wulian.scenarios import _kit as k
from wulian.sim import signals as sig

CRANE_DOC: k.Doc = {
    "id": "construction-tower-crane", "name": "Tower-crane safety monitor",
    "description": "Black box on a tower crane: load moment, wind, slew and trolley (GB/T 28264)",
    "properties": [
        k.num("load_t", "t", 0, 20), k.num("load_moment_pct", "%", 0, 150),
        k.num("wind_speed_ms", "m/s", 0, 60), k.num("slew_angle_deg", "°", 0, 360),
        k.num("trolley_radius_m", "m", 0, 80), k.num("hook_height_m", "m", 0, 200),
        k.enum("operator_state", "operating", "idle", "locked"),
    ],
    "events": [k.event("overload", "critical", k.num("load_moment_pct", "%", 0, 150)),
               k.event("high_wind", "major", k.num("wind_speed_ms", "m/s", 0, 60))],
    "commands": [k.command("lock_out", k.enum("reason", "wind", "inspection", "night"))],
}
WIND_STOP_MS = 20.0  # GB 5144: no lifting above level 6 wind at the jib
MOMENT_LIMIT_PCT = 100.0


def _crane(i: int, t_ms: int, rng: random.Random) -> k.Values:
    hour = sig.local_hour(t_ms)
    working = 7.0 <= hour < 19.0
    wind = sig.clamp(sig.spread(i, "crane.wind", 3, 7) + 3 * sig.daily_cycle(t_ms, 14.0)
                     + abs(sig.noise(rng, 1.5)) + abs(sig.spike(rng, 0.003, 15)), 0, 60)
    lifting = working and wind < WIND_STOP_MS and rng.random() < 0.6
    radius = rng.uniform(3, 60)
    # The load chart: rated load falls with the trolley radius (a constant moment), capped.
    rated_t = min(sig.spread(i, "crane.max", 6, 10),
                  sig.spread(i, "crane.rated", 90, 150) / radius)
    # Operators lift within the chart; now and then a misjudged load goes over it.
    load = rated_t * (rng.uniform(0.2, 0.9) + abs(sig.spike(rng, 0.003, 0.3))) if lifting else 0.0
    moment = 100 * load / rated_t
    # The jib slews back and forth through the day; the angle wraps at 360°.
    slew = (sig.spread(i, "crane.slew0", 0, 360) + 37.0 * hour + sig.noise(rng, 5)) % 360
    values = {"load_t": round(sig.clamp(load, 0, 20), 2),
              "load_moment_pct": round(sig.clamp(moment, 0, 150), 1),
              "wind_speed_ms": round(wind, 1), "slew_angle_deg": round(slew, 1),
              "trolley_radius_m": round(radius, 1),
              "hook_height_m": round(rng.uniform(5, sig.spread(i, "crane.h", 60, 150)), 1),
              "operator_state": "operating" if working else "locked"}
    return k.drop(values, rng, 0.01, "slew_angle_deg")


STRAIN_DOC: k.Doc = {
    "id": "construction-strain-gauge", "name": "Structural strain gauge",
    "description": "Vibrating-wire strain gauge on a girder or column, with temperature",
    "properties": [
        k.num("strain_ue", "µε", -3000, 3000), k.num("temperature", "°C", -30, 70),
        k.num("crack_width_mm", "mm", 0, 10), k.num("battery_pct", "%", 0, 100, integer=True),
    ],
    "events": [k.event("strain_limit", "major", k.num("strain_ue", "µε", -3000, 3000))],
    "commands": [k.command("zero")],
}
STRAIN_LIMIT_UE = 1500.0


def _strain(i: int, t_ms: int, rng: random.Random) -> k.Values:
    temp = k.wave(i, t_ms, rng, "sg.t", mean=(12, 20), swing=8, peak_hour=14.0, sigma=0.2,
                  lo=-30, hi=70)
    # Steel expands with heat (≈12 µε/°C) on top of the dead load; concrete creeps slowly.
    strain = (sig.spread(i, "sg.dead", -600, 600) + 12 * (temp - 15) + sig.drift(i, t_ms, 40)
              + sig.noise(rng, 3) + sig.spike(rng, 0.001, 900))
    values = {"strain_ue": round(sig.clamp(strain, -3000, 3000), 1), "temperature": temp,
              "crack_width_mm": round(sig.spread(i, "sg.crack", 0.05, 0.3)
                                      + abs(sig.drift(i, t_ms, 0.02)), 3),
              "battery_pct": int(sig.spread(i, "sg.bat", 50, 100))}
    return k.drop(values, rng, 0.01, "crack_width_mm")


CRANE = k.product(CRANE_DOC, _crane, "crane", k.first(
    k.when("load_moment_pct", lambda v: v > MOMENT_LIMIT_PCT, "overload"),
    k.when("wind_speed_ms", lambda v: v > WIND_STOP_MS, "high_wind")))
STRAIN = k.product(STRAIN_DOC, _strain, "strain", k.when(
    "strain_ue", lambda v: abs(v) > STRAIN_LIMIT_UE, "strain_limit"))

SCENARIO = Scenario(
    id="construction", field="industry",
    products=(
        ScenarioProduct(CRANE, devices=4, tags=(("asset", "crane"),),
                        cycle=("load_t", 13.0)),
        ScenarioProduct(STRAIN, devices=20, tags=(("asset", "structure"),),
                        cycle=("temperature", 14.0)),
    ),
    area=Area("xiongan", "rongdong", lat=(38.990, 39.030), lon=(115.920, 115.990)),
    tags=(("industry", "construction"),),
    default_rules=(
        k.on_event("construction-crane-overload", "Tower crane overload", CRANE.id,
                   "overload", severity="critical"),
        k.threshold("construction-wind", "Wind too strong for lifting", CRANE.id,
                    "wind_speed_ms", ">", WIND_STOP_MS, hold="1m"),
        k.threshold("construction-strain", "Structural strain beyond limit", STRAIN.id,
                    "strain_ue", ">", STRAIN_LIMIT_UE, hold="5m"),
        k.threshold("construction-crack", "Crack widening", STRAIN.id, "crack_width_mm", ">",
                    0.3, hold="1h", severity="warning"),
    ),
)
