"""Health (智慧健康): wearables for elderly care (heart rate, SpO2, steps, falls)."""

from __future__ import annotations

import random

from wulian.scenarios import Area, Scenario, ScenarioProduct
from wulian.scenarios import _kit as k
from wulian.sim import signals as sig

WEARABLE_DOC: k.Doc = {
    "id": "health-wearable", "name": "Health wearable",
    "description": "Wristband for home elderly care: vitals, activity and fall detection",
    "properties": [
        k.num("heart_rate", "bpm", 20, 250, integer=True), k.num("spo2", "%", 50, 100,
                                                                 integer=True),
        k.num("skin_temp", "°C", 25, 42), k.num("steps_today", "steps", 0, 100000,
                                                integer=True),
        k.enum("activity", "sleeping", "resting", "walking", "exercising"),
        k.num("battery_pct", "%", 0, 100, integer=True), k.flag("worn"),
    ],
    "events": [k.event("fall", "critical", k.num("impact_g", "g", 0, 16)),
               k.event("sos", "critical"),
               k.event("abnormal_heart_rate", "major",
                       k.num("heart_rate", "bpm", 20, 250, integer=True))],
    "commands": [k.command("vibrate", k.num("seconds", "s", 1, 10, integer=True)),
                 k.command("measure_now")],
}
HR_HIGH, SPO2_LOW = 120, 90


def _wearable(i: int, t_ms: int, rng: random.Random) -> k.Values:
    hour = sig.local_hour(t_ms)
    asleep = hour < 6.5 or hour >= 22.0
    active = 0.0 if asleep else k.busy(t_ms, 10.0)  # morning walks in the park
    activity = ("sleeping" if asleep else "walking" if rng.random() < 0.5 * active
                else "exercising" if rng.random() < 0.03 else "resting")
    rest_hr = sig.spread(i, "wear.hr", 58, 78)
    extra = {"sleeping": -8, "resting": 0, "walking": 25, "exercising": 45}[activity]
    hr = rest_hr + extra + sig.noise(rng, 3) + abs(sig.spike(rng, 0.002, 60))
    spo2 = sig.spread(i, "wear.spo2", 95, 99) - (1.5 if asleep else 0) + sig.noise(rng, 0.6)
    # Steps count since local midnight: today's share of a cumulative daily walk.
    midnight = t_ms - int(hour * sig.HOUR_MS)
    steps = (k.counter(i, t_ms, "wear.steps", per_hour=(150, 400), swing=1.0, peak_hour=10.0)
             - k.counter(i, midnight, "wear.steps", per_hour=(150, 400), swing=1.0,
                         peak_hour=10.0))
    values = {"heart_rate": int(sig.clamp(hr, 20, 250)), "spo2": int(sig.clamp(spo2, 50, 100)),
              "skin_temp": round(sig.clamp(33.5 - 0.8 * asleep + sig.noise(rng, 0.2), 25, 42),
                                 1),
              "steps_today": int(sig.clamp(steps, 0, 100000)), "activity": activity,
              # About a day per charge; back to full on the cradle when it runs low.
              "battery_pct": int(100 - (hour * 3.5 + sig.spread(i, "wear.bat", 0, 10)) % 90),
              "worn": not sig.dropout(rng, 0.02)}
    if not values["worn"]:  # off the wrist: no vitals to report
        for key in ("heart_rate", "spo2", "skin_temp"):
            del values[key]
    return k.drop(values, rng, 0.02, "spo2")


WEARABLE = k.product(WEARABLE_DOC, _wearable, "band", k.first(
    k.rarely(0.0003, "fall", lambda v, r: {"impact_g": round(r.uniform(3.0, 8.0), 2)}),
    k.rarely(0.0001, "sos", lambda v, r: {}),
    k.when("heart_rate", lambda v: v > HR_HIGH or v < 40, "abnormal_heart_rate")))

SCENARIO = Scenario(
    id="health", field="consumption",
    products=(
        ScenarioProduct(WEARABLE, devices=30, tags=(("cohort", "elderly-care"),),
                        cycle=("heart_rate", 10.0)),
    ),
    area=Area("chengdu", "wuhou", lat=(30.620, 30.660), lon=(104.020, 104.070)),
    tags=(("industry", "health"),),
    default_rules=(
        k.on_event("health-fall", "Fall detected", WEARABLE.id, "fall", severity="critical"),
        k.on_event("health-sos", "SOS pressed", WEARABLE.id, "sos", severity="critical"),
        k.threshold("health-spo2", "Blood oxygen low", WEARABLE.id, "spo2", "<", SPO2_LOW,
                    hold="5m"),
        k.threshold("health-hr", "Heart rate high at rest", WEARABLE.id, "heart_rate", ">",
                    HR_HIGH, hold="10m"),
    ),
)
