"""Public health (公共卫生): cold-chain vaccine refrigerators at clinics and CDC depots."""

from __future__ import annotations

import random

from wulian.scenarios import Area, Scenario, ScenarioProduct
from wulian.scenarios import _kit as k
from wulian.sim import signals as sig

FRIDGE_DOC: k.Doc = {
    "id": "public-health-vaccine-fridge", "name": "Vaccine refrigerator monitor",
    "description": "Cold-chain logger in a 2-8 °C vaccine refrigerator (WHO PQS E003)",
    "properties": [
        k.num("temperature", "°C", -40, 50), k.num("humidity", "%", 0, 100),
        k.flag("door_open"), k.flag("mains_power"),
        k.num("battery_pct", "%", 0, 100, integer=True),
        k.num("door_opens_total", None, 0, integer=True, description="door openings counted"),
    ],
    "events": [k.event("excursion", "critical", k.num("temperature", "°C", -40, 50),
                       k.enum("direction", "too_warm", "too_cold")),
               k.event("power_lost", "major")],
    "commands": [k.command("set_alarm_band", k.num("low", "°C", -10, 10),
                           k.num("high", "°C", 0, 20))],
}
LOW_C, HIGH_C = 2.0, 8.0


def _fridge(i: int, t_ms: int, rng: random.Random) -> k.Values:
    clinic_hours = 8 <= sig.local_hour(t_ms) < 17 and not k.weekend(t_ms)
    door = clinic_hours and rng.random() < 0.08
    mains = not sig.dropout(rng, 0.001)
    # The compressor holds ~5 °C; an open door or a power cut lets it warm up.
    temp = (sig.spread(i, "vf.set", 4.2, 5.8) + 0.6 * sig.daily_cycle(t_ms, 14.0)
            + sig.drift(i, t_ms, 0.4) + sig.noise(rng, 0.15) + (2.5 if door else 0)
            + (4.0 if not mains else 0) - abs(sig.spike(rng, 0.0005, 4.0)))
    values = {"temperature": round(sig.clamp(temp, -40, 50), 2),
              "humidity": k.wave(i, t_ms, rng, "vf.rh", mean=(40, 60), sigma=1.0, lo=0, hi=100),
              "door_open": door, "mains_power": mains,
              "battery_pct": int(sig.spread(i, "vf.bat", 60, 100)),
              "door_opens_total": int(k.counter(i, t_ms, "vf.doors", per_hour=(0.5, 3),
                                                swing=1.0, peak_hour=12.0, start=(0, 5000)))}
    return k.drop(values, rng, 0.01, "humidity")


def _excursion(v: k.Values, rng: random.Random) -> dict[str, object]:
    return {"temperature": v["temperature"],
            "direction": "too_warm" if v["temperature"] > HIGH_C else "too_cold"}


FRIDGE = k.product(FRIDGE_DOC, _fridge, "fridge", k.first(
    k.when("mains_power", lambda v: v is False, "power_lost", lambda v, r: {}),
    k.when("temperature", lambda v: not LOW_C <= v <= HIGH_C, "excursion", _excursion)))

SCENARIO = Scenario(
    id="public_health", field="social_governance",
    products=(
        ScenarioProduct(FRIDGE, devices=15, tags=(("asset", "cold-chain"),),
                        cycle=("temperature", 14.0), counters=("door_opens_total",)),
    ),
    area=Area("wuhan", "wuchang", lat=(30.520, 30.570), lon=(114.290, 114.350)),
    tags=(("industry", "public_health"),),
    default_rules=(
        k.threshold("public-health-too-warm", "Vaccine fridge above 8 °C", FRIDGE.id,
                    "temperature", ">", HIGH_C, hold="10m", severity="critical"),
        k.threshold("public-health-too-cold", "Vaccine fridge below 2 °C", FRIDGE.id,
                    "temperature", "<", LOW_C, hold="10m", severity="critical"),
        k.on_event("public-health-power", "Vaccine fridge on battery", FRIDGE.id,
                   "power_lost"),
        k.threshold("public-health-door", "Vaccine fridge door left open", FRIDGE.id,
                    "door_open", "==", True, hold="3m", severity="warning"),
    ),
)
