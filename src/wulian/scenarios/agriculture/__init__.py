"""Agriculture (智慧农业): soil moisture/EC probes and greenhouse climate controllers."""

from __future__ import annotations

import random

from wulian.scenarios import Area, Scenario, ScenarioProduct
from wulian.scenarios import _kit as k
from wulian.sim import signals as sig

SOIL_DOC: k.Doc = {
    "id": "agriculture-soil-probe", "name": "Soil moisture and EC probe",
    "description": "Buried multi-depth probe: volumetric water content, salinity, temperature",
    "properties": [
        k.num("moisture_vwc", "%", 0, 100), k.num("ec_dsm", "dS/m", 0, 20),
        k.num("soil_temp", "°C", -20, 60), k.num("soil_ph", None, 3, 10),
        k.num("battery_v", "V", 0, 4.5),
    ],
    "events": [k.event("dry_soil", "warning", k.num("moisture_vwc", "%", 0, 100))],
    "commands": [k.command("set_depth_profile", k.enum("profile", "shallow", "deep"))],
}
IRRIGATE_BELOW_VWC = 18.0


def _soil(i: int, t_ms: int, rng: random.Random) -> k.Values:
    # Moisture dries out over a few days, then drip irrigation tops it up: a sawtooth.
    cycle_h = sig.spread(i, "soil.period", 48, 96)
    since = ((t_ms - sig.COUNTER_EPOCH_MS) / sig.HOUR_MS) % cycle_h
    moisture = 34 - 13 * since / cycle_h + sig.drift(i, t_ms, 2) + sig.noise(rng, 0.3)
    values = {"moisture_vwc": round(sig.clamp(moisture, 0, 100), 1),
              "ec_dsm": k.wave(i, t_ms, rng, "soil.ec", mean=(0.8, 2.5), drift=0.3,
                               sigma=0.03, lo=0, hi=20, digits=2),
              # Soil lags the air: its warmest hour is late afternoon.
              "soil_temp": k.wave(i, t_ms, rng, "soil.t", mean=(14, 22), swing=3,
                                  peak_hour=17.0, sigma=0.1, lo=-20, hi=60),
              "soil_ph": k.wave(i, t_ms, rng, "soil.ph", mean=(5.5, 7.5), sigma=0.02,
                                lo=3, hi=10, digits=2),
              "battery_v": round(3.3 + 0.5 * sig.daylight(t_ms) + sig.noise(rng, 0.01), 2)}
    return k.drop(values, rng, 0.03, "ec_dsm", "soil_ph")


GREENHOUSE_DOC: k.Doc = {
    "id": "agriculture-greenhouse", "name": "Greenhouse climate controller",
    "description": "Multi-span greenhouse: air climate, CO2, light and actuators",
    "properties": [
        k.num("air_temp", "°C", -20, 60), k.num("humidity", "%", 0, 100),
        k.num("co2_ppm", "ppm", 0, 5000, integer=True), k.num("par_umol", "µmol/m²/s", 0, 2500),
        k.num("vent_open_pct", "%", 0, 100, integer=True, rw=True), k.flag("irrigating"),
        k.num("target_temp", "°C", 5, 40, rw=True),
    ],
    "events": [k.event("frost_risk", "major", k.num("air_temp", "°C", -20, 60)),
               k.event("heat_stress", "major", k.num("air_temp", "°C", -20, 60))],
    "commands": [k.command("irrigate", k.num("minutes", "min", 1, 120, integer=True)),
                 k.command("set_vent", k.num("open_pct", "%", 0, 100, integer=True))],
}


def _greenhouse(i: int, t_ms: int, rng: random.Random) -> k.Values:
    sun = sig.daylight(t_ms)
    temp = sig.spread(i, "gh.base", 14, 18) + 14 * sun + sig.noise(rng, 0.3)
    vent = int(sig.clamp((temp - 26) * 12, 0, 100))
    # Plants draw CO2 down while the sun is up; it builds up again overnight.
    co2 = int(sig.clamp(650 - 230 * sun + sig.noise(rng, 15), 0, 5000))
    hour = sig.local_hour(t_ms)
    values = {"air_temp": round(sig.clamp(temp - vent * 0.04, -20, 60), 1),
              "humidity": round(sig.clamp(85 - 30 * sun + sig.noise(rng, 2), 0, 100), 1),
              "co2_ppm": co2, "par_umol": round(sig.clamp(1400 * sun + abs(sig.noise(rng, 3)),
                                                          0, 2500), 1),
              "vent_open_pct": vent, "irrigating": 7.0 <= hour < 7.5 or 16.0 <= hour < 16.5,
              "target_temp": 22.0}
    return k.drop(values, rng, 0.01, "par_umol")


SOIL = k.product(SOIL_DOC, _soil, "soil", k.when(
    "moisture_vwc", lambda v: v < IRRIGATE_BELOW_VWC, "dry_soil"))
GREENHOUSE = k.product(GREENHOUSE_DOC, _greenhouse, "greenhouse", k.first(
    k.when("air_temp", lambda v: v < 5, "frost_risk"),
    k.when("air_temp", lambda v: v > 35, "heat_stress")))

SCENARIO = Scenario(
    id="agriculture", field="industry",
    products=(
        ScenarioProduct(SOIL, devices=24, tags=(("asset", "field"),),
                        cycle=("soil_temp", 17.0)),
        ScenarioProduct(GREENHOUSE, devices=4, tags=(("asset", "greenhouse"),),
                        cycle=("air_temp", 12.25)),
    ),
    area=Area("shouguang", "sunjiaji", lat=(36.830, 36.900), lon=(118.700, 118.800)),
    tags=(("industry", "agriculture"),),
    default_rules=(
        k.threshold("agriculture-dry-soil", "Soil too dry", SOIL.id, "moisture_vwc", "<",
                    IRRIGATE_BELOW_VWC, hold="30m", severity="warning"),
        k.threshold("agriculture-salinity", "Soil salinity high", SOIL.id, "ec_dsm", ">", 4,
                    hold="1h", severity="minor"),
        k.threshold("agriculture-heat", "Greenhouse too hot", GREENHOUSE.id, "air_temp", ">",
                    35, hold="10m"),
        k.threshold("agriculture-frost", "Greenhouse frost risk", GREENHOUSE.id, "air_temp",
                    "<", 5, hold="10m", severity="critical"),
    ),
)
