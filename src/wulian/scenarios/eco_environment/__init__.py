"""Eco-environment (生态环境): air-quality stations and water-quality buoys."""

from __future__ import annotations

import itertools
import random

from wulian.scenarios import Area, Scenario, ScenarioProduct
from wulian.scenarios import _kit as k
from wulian.sim import signals as sig

AIR_DOC: k.Doc = {
    "id": "eco-air-station", "name": "Air-quality station",
    "description": "Micro air-quality station (HJ 653): particulates and gases",
    "properties": [
        k.num("pm25", "µg/m³", 0, 1000), k.num("pm10", "µg/m³", 0, 2000),
        k.num("no2", "µg/m³", 0, 2000), k.num("o3", "µg/m³", 0, 1000),
        k.num("co", "mg/m³", 0, 50), k.num("aqi", None, 0, 500, integer=True),
    ],
    "events": [k.event("pollution_episode", "major", k.num("aqi", None, 0, 500, integer=True))],
    "commands": [k.command("zero_check")],
}
PM25_LIMIT = 75.0  # GB 3095-2012 grade II, 24 h mean


def _aqi(pm25: float) -> int:
    """AQI from PM2.5 alone (HJ 633 breakpoints), the pollutant that usually dominates."""
    bps = ((0, 0), (35, 50), (75, 100), (115, 150), (150, 200), (250, 300), (350, 400),
           (500, 500))
    for (c0, a0), (c1, a1) in itertools.pairwise(bps):
        if pm25 <= c1:
            return int(a0 + (a1 - a0) * (pm25 - c0) / (c1 - c0))
    return 500


def _air(i: int, t_ms: int, rng: random.Random) -> k.Values:
    # Smog builds up over a few days and clears with a front: a per-day weather factor.
    weather = 0.6 + 1.6 * sig.unit(t_ms // sig.DAY_MS, "eco.smog") ** 2
    traffic = k.busy(t_ms, 8.0) + k.busy(t_ms, 18.0)
    pm25 = sig.clamp(sig.spread(i, "eco.pm", 20, 45) * weather * (0.8 + 0.25 * traffic)
                     + sig.noise(rng, 3), 1, 1000)
    # Ozone is photochemical: it follows the afternoon sun, the opposite of NO2.
    o3 = 30 + 140 * sig.daylight(t_ms) ** 1.5 + sig.noise(rng, 5)
    values = {"pm25": round(pm25, 1),
              "pm10": round(sig.clamp(pm25 * sig.spread(i, "eco.ratio", 1.4, 2.0)
                                      + sig.noise(rng, 4), 0, 2000), 1),
              "no2": round(sig.clamp(25 + 25 * traffic + sig.noise(rng, 4), 0, 2000), 1),
              "o3": round(sig.clamp(o3, 0, 1000), 1),
              "co": round(sig.clamp(0.5 + 0.3 * traffic + sig.noise(rng, 0.05), 0, 50), 2),
              "aqi": _aqi(pm25)}
    return k.drop(values, rng, 0.02, "co", "no2")


BUOY_DOC: k.Doc = {
    "id": "eco-water-buoy", "name": "Water-quality buoy",
    "description": "Solar buoy on a lake or river: pH, dissolved oxygen, turbidity (GB 3838)",
    "properties": [
        k.num("ph", None, 0, 14), k.num("do_mgl", "mg/L", 0, 20),
        k.num("turbidity_ntu", "NTU", 0, 1000), k.num("water_temp", "°C", 0, 40),
        k.num("chlorophyll_ugl", "µg/L", 0, 500), k.num("battery_v", "V", 0, 15),
    ],
    "events": [k.event("hypoxia", "major", k.num("do_mgl", "mg/L", 0, 20)),
               k.event("sensor_fouled", "warning")],
    "commands": [k.command("wipe_sensors")],
}
DO_MIN_MGL = 5.0  # GB 3838 class III


def _buoy(i: int, t_ms: int, rng: random.Random) -> k.Values:
    # Algae photosynthesise by day: oxygen and pH rise in the afternoon, fall before dawn.
    photo = sig.daily_cycle(t_ms, 16.0)
    fouling = max(0.0, sig.drift(i, t_ms, 8.0, 29.0))  # biofilm builds until the wiper runs
    values = {"ph": round(sig.clamp(sig.spread(i, "buoy.ph", 7.2, 8.0) + 0.35 * photo
                                    + sig.noise(rng, 0.02), 0, 14), 2),
              "do_mgl": round(sig.clamp(sig.spread(i, "buoy.do", 6.5, 8.5) + 1.5 * photo
                                        + sig.noise(rng, 0.1), 0, 20), 2),
              "turbidity_ntu": round(sig.clamp(sig.spread(i, "buoy.turb", 5, 25) + fouling
                                               + abs(sig.spike(rng, 0.004, 60))
                                               + sig.noise(rng, 0.8), 0, 1000), 1),
              "water_temp": k.wave(i, t_ms, rng, "buoy.t", mean=(16, 24), swing=1.2,
                                   peak_hour=16.0, sigma=0.05, lo=0, hi=40, digits=2),
              "chlorophyll_ugl": k.wave(i, t_ms, rng, "buoy.chl", mean=(3, 20), drift=4,
                                        sigma=0.5, lo=0, hi=500),
              "battery_v": round(12.2 + 1.5 * sig.daylight(t_ms) + sig.noise(rng, 0.05), 2)}
    return k.drop(values, rng, 0.02, "chlorophyll_ugl")


AIR = k.product(AIR_DOC, _air, "aq", k.when(
    "aqi", lambda v: v > 200, "pollution_episode"))
BUOY = k.product(BUOY_DOC, _buoy, "buoy", k.first(
    k.when("do_mgl", lambda v: v < DO_MIN_MGL, "hypoxia"),
    k.when("turbidity_ntu", lambda v: v > 80, "sensor_fouled", lambda v, r: {})))

SCENARIO = Scenario(
    id="eco_environment", field="industry",
    products=(
        ScenarioProduct(AIR, devices=12, tags=(("asset", "air"),), cycle=("o3", 12.25)),
        ScenarioProduct(BUOY, devices=6, tags=(("asset", "water"),), cycle=("do_mgl", 16.0)),
    ),
    area=Area("wuxi", "binhu-taihu", lat=(31.450, 31.550), lon=(120.150, 120.280)),
    tags=(("industry", "eco_environment"),),
    default_rules=(
        k.threshold("eco-pm25", "PM2.5 above grade II", AIR.id, "pm25", ">", PM25_LIMIT,
                    hold="10m"),
        k.threshold("eco-o3", "Ozone high", AIR.id, "o3", ">", 200, hold="1h",
                    severity="warning"),
        k.threshold("eco-no2", "NO2 high", AIR.id, "no2", ">", 200, hold="1h",
                    severity="warning"),
        k.threshold("eco-hypoxia", "Dissolved oxygen low", BUOY.id, "do_mgl", "<", DO_MIN_MGL,
                    hold="30m"),
        k.threshold("eco-ph", "Water pH out of range", BUOY.id, "ph", ">", 9, hold="30m",
                    severity="warning"),
    ),
)
