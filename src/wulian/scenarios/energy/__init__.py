"""Energy (智慧能源): three-phase smart meters and distribution-transformer monitors."""

from __future__ import annotations

import random

from wulian.scenarios import Area, Scenario, ScenarioProduct
from wulian.scenarios import _kit as k
from wulian.sim import signals as sig
from wulian.sim.products import SMART_METER

TRANSFORMER_DOC: k.Doc = {
    "id": "energy-transformer", "name": "Distribution transformer monitor",
    "description": "10 kV/0.4 kV oil-immersed transformer: temperatures, load and oil level",
    "properties": [
        k.num("top_oil_temp", "°C", -40, 150), k.num("winding_temp", "°C", -40, 180),
        k.num("ambient_temp", "°C", -40, 60), k.num("load_pct", "%", 0, 200),
        k.num("oil_level_pct", "%", 0, 100), k.enum("cooling", "onan", "onaf", "off"),
    ],
    "events": [k.event("overtemperature", "critical", k.num("top_oil_temp", "°C", -40, 150)),
               k.event("overload", "major", k.num("load_pct", "%", 0, 200))],
    "commands": [k.command("set_fans", k.enum("mode", "auto", "on", "off"))],
}
TOP_OIL_ALARM_C = 95.0  # DL/T 572: top-oil limit for ONAN distribution transformers
FANS_ON_C = 65.0


def _transformer(i: int, t_ms: int, rng: random.Random) -> k.Values:
    ambient = k.wave(i, t_ms, rng, "tx.amb", mean=(12, 22), swing=6, peak_hour=15.0,
                     sigma=0.2, lo=-40, hi=60)
    evening = k.busy(t_ms, 19.5)
    load = sig.spread(i, "tx.load", 35, 75) * (0.55 + 0.6 * evening) + sig.noise(rng, 2.0)
    load = sig.clamp(load + abs(sig.spike(rng, 0.001, 40.0)), 0, 200)
    # Top-oil rise grows with the square of the load (IEC 60076-7 simplified, steady state).
    oil = ambient + 45 * (load / 100) ** 2 + sig.noise(rng, 0.4)
    winding = oil + 20 * (load / 100) ** 1.6
    values = {"top_oil_temp": round(sig.clamp(oil, -40, 150), 1),
              "winding_temp": round(sig.clamp(winding, -40, 180), 1),
              "ambient_temp": ambient, "load_pct": round(load, 1),
              "oil_level_pct": k.wave(i, t_ms, rng, "tx.oillvl", mean=(70, 90), swing=2,
                                      drift=3, sigma=0.2, lo=0, hi=100),
              "cooling": k.pick(rng, "onaf" if oil > FANS_ON_C else "onan", {"off": 0.001})}
    return k.drop(values, rng, 0.01, "ambient_temp")


TRANSFORMER = k.product(TRANSFORMER_DOC, _transformer, "tx", k.first(
    k.when("top_oil_temp", lambda v: v > TOP_OIL_ALARM_C, "overtemperature"),
    k.when("load_pct", lambda v: v > 110, "overload")))

SCENARIO = Scenario(
    id="energy", field="social_governance",
    products=(
        ScenarioProduct(SMART_METER, devices=30, tags=(("asset", "metering"),),
                        cycle=("power_kw", 19.0), counters=("energy_kwh",)),
        ScenarioProduct(TRANSFORMER, devices=6, tags=(("asset", "distribution"),),
                        cycle=("load_pct", 19.5)),
    ),
    area=Area("shanghai", "pudong", lat=(31.190, 31.250), lon=(121.500, 121.600)),
    tags=(("industry", "energy"),),
    default_rules=(
        k.threshold("energy-overvoltage", "Supply overvoltage", SMART_METER.id, "voltage_a",
                    ">", 242, hold="1m", severity="warning"),
        k.threshold("energy-low-pf", "Low power factor", SMART_METER.id, "power_factor", "<",
                    0.85, hold="30m", severity="minor"),
        k.threshold("energy-oil-hot", "Transformer top oil too hot", TRANSFORMER.id,
                    "top_oil_temp", ">", TOP_OIL_ALARM_C, hold="5m", severity="critical"),
        k.threshold("energy-overload", "Transformer overloaded", TRANSFORMER.id, "load_pct",
                    ">", 110, hold="15m"),
    ),
)
