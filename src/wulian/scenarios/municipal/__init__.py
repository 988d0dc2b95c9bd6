"""Municipal (智慧城市/市政): streetlights, manhole covers and waste-bin fill levels."""

from __future__ import annotations

import random

from wulian.scenarios import Area, Scenario, ScenarioProduct
from wulian.scenarios import _kit as k
from wulian.sim import signals as sig
from wulian.sim.products import STREETLIGHT

MANHOLE_DOC: k.Doc = {
    "id": "municipal-manhole-cover", "name": "Smart manhole cover",
    "description": "Tilt and water-level sensor under a sewer or utility manhole cover",
    "properties": [
        k.num("tilt_deg", "°", 0, 90), k.num("water_level_cm", "cm", 0, 300),
        k.num("battery_pct", "%", 0, 100, integer=True),
        k.enum("state", "closed", "open", "displaced"),
    ],
    "events": [k.event("cover_open", "critical", k.num("tilt_deg", "°", 0, 90)),
               k.event("overflow_risk", "major", k.num("water_level_cm", "cm", 0, 300))],
    "commands": [k.command("set_report_interval", k.num("seconds", "s", 60, 86400,
                                                       integer=True))],
}
COVER_OPEN_DEG = 15.0
OVERFLOW_CM = 200.0


def _manhole(i: int, t_ms: int, rng: random.Random) -> k.Values:
    state = k.pick(rng, "closed", {"open": 0.002, "displaced": 0.001})
    tilt = rng.uniform(20, 85) if state != "closed" else abs(sig.noise(rng, 0.4))
    # Rain comes in spells: a wet day per device-independent weather, water rises by evening.
    rain = 1.0 if sig.unit(t_ms // sig.DAY_MS, "municipal.rain") < 0.25 else 0.0
    level = k.wave(i, t_ms, rng, "manhole.level", mean=(20, 60), swing=10 + 60 * rain,
                   peak_hour=19.0, sigma=2.0, lo=0, hi=300)
    battery = int(sig.clamp(sig.spread(i, "manhole.bat", 40, 100) - sig.drift(i, t_ms, 3), 0, 100))
    values = {"tilt_deg": round(sig.clamp(tilt, 0, 90), 1), "water_level_cm": level,
              "battery_pct": battery, "state": state}
    return k.drop(values, rng, 0.02, "water_level_cm")


WASTE_BIN_DOC: k.Doc = {
    "id": "municipal-waste-bin", "name": "Waste bin fill-level sensor",
    "description": "Ultrasonic fill-level sensor in a street litter bin or sorting station",
    "properties": [
        k.num("fill_pct", "%", 0, 100, integer=True), k.num("temperature", "°C", -40, 85),
        k.enum("waste_type", "recyclable", "kitchen", "hazardous", "residual"),
        k.num("battery_pct", "%", 0, 100, integer=True),
    ],
    "events": [k.event("full", "minor", k.num("fill_pct", "%", 0, 100, integer=True)),
               k.event("fire_suspected", "critical", k.num("temperature", "°C", -40, 85))],
    "commands": [k.command("mark_emptied")],
}
WASTE_TYPES = ("recyclable", "kitchen", "hazardous", "residual")
EMPTIED_EVERY_H = 12.0  # collection rounds at 06:00 and 18:00 local


def _waste_bin(i: int, t_ms: int, rng: random.Random) -> k.Values:
    since_round = (sig.local_hour(t_ms) - 6.0) % EMPTIED_EVERY_H
    per_hour = sig.spread(i, "bin.rate", 3.0, 8.0) * (1.3 if k.weekend(t_ms) else 1.0)
    fill = sig.clamp(since_round * per_hour + sig.noise(rng, 1.5), 0, 100)
    temp = k.wave(i, t_ms, rng, "bin.temp", mean=(14, 20), swing=6, sigma=0.3, lo=-40, hi=85)
    temp = round(temp + abs(sig.spike(rng, 0.0005, 45.0)), 1)
    values = {"fill_pct": int(fill), "temperature": min(temp, 85.0),
              "waste_type": WASTE_TYPES[i % len(WASTE_TYPES)],
              "battery_pct": int(sig.spread(i, "bin.bat", 30, 100))}
    return k.drop(values, rng, 0.01, "temperature")


MANHOLE = k.product(MANHOLE_DOC, _manhole, "manhole", k.first(
    k.when("tilt_deg", lambda v: v > COVER_OPEN_DEG, "cover_open"),
    k.when("water_level_cm", lambda v: v > OVERFLOW_CM, "overflow_risk")))
WASTE_BIN = k.product(WASTE_BIN_DOC, _waste_bin, "bin", k.first(
    k.when("temperature", lambda v: v > 60, "fire_suspected"),
    k.when("fill_pct", lambda v: v >= 95, "full")))

SCENARIO = Scenario(
    id="municipal", field="social_governance",
    products=(
        ScenarioProduct(STREETLIGHT, devices=20, tags=(("asset", "lighting"),),
                        cycle=("power_w", 21.0), counters=("burn_hours",)),
        ScenarioProduct(MANHOLE, devices=10, tags=(("asset", "drainage"),),
                        cycle=("water_level_cm", 19.0)),
        ScenarioProduct(WASTE_BIN, devices=10, tags=(("asset", "sanitation"),)),
    ),
    area=Area("hangzhou", "xihu", lat=(30.245, 30.285), lon=(120.110, 120.160)),
    tags=(("industry", "municipal"),),
    default_rules=(
        k.on_event("municipal-cover-open", "Manhole cover open", MANHOLE.id, "cover_open",
                   severity="critical"),
        k.threshold("municipal-water-high", "Sewer water level high", MANHOLE.id,
                    "water_level_cm", ">", OVERFLOW_CM, hold="5m"),
        k.threshold("municipal-bin-full", "Waste bin nearly full", WASTE_BIN.id, "fill_pct",
                    ">=", 90, hold="15m", severity="minor"),
        k.on_event("municipal-lamp-failure", "Streetlight failure", STREETLIGHT.id,
                   "lamp_failure"),
    ),
)
