"""Manufacturing (智能制造): CNC machine-tool monitors and compressed-air flow meters."""

from __future__ import annotations

import random

from wulian.scenarios import Area, Scenario, ScenarioProduct
from wulian.scenarios import _kit as k
from wulian.sim import signals as sig

CNC_DOC: k.Doc = {
    "id": "manufacturing-cnc", "name": "CNC machine monitor",
    "description": "Machining centre: state, spindle, vibration (ISO 10816) and part count",
    "properties": [
        k.enum("state", "running", "idle", "setup", "alarm", "off"),
        k.num("spindle_load_pct", "%", 0, 150), k.num("spindle_rpm", "rpm", 0, 24000,
                                                      integer=True),
        k.num("vibration_mms", "mm/s", 0, 50, description="RMS velocity"),
        k.num("coolant_temp", "°C", 0, 80),
        k.num("parts_total", None, 0, integer=True, description="parts made since installation"),
    ],
    "events": [k.event("machine_alarm", "major", k.num("code", None, 1000, 9999, integer=True)),
               k.event("tool_wear", "warning", k.num("vibration_mms", "mm/s", 0, 50))],
    "commands": [k.command("feed_hold"), k.command("reset_alarm")],
}
VIBRATION_ALERT_MMS = 7.1  # ISO 10816-3 zone C boundary for medium machines


def _shift(t_ms: int) -> bool:
    """Two shifts, 08:00-24:00 local, Monday to Saturday."""
    return sig.local_hour(t_ms) >= 8.0 and k.weekday(k.local_day(t_ms)) != 6


def _cnc(i: int, t_ms: int, rng: random.Random) -> k.Values:
    state = (k.pick(rng, "running", {"idle": 0.12, "setup": 0.05, "alarm": 0.004})
             if _shift(t_ms) else k.pick(rng, "off", {"idle": 0.05}))
    cutting = state == "running"
    load = sig.spread(i, "cnc.load", 40, 80) + sig.noise(rng, 6) if cutting else 0.0
    # Bearings wear: vibration creeps up over weeks on some machines.
    wear = sig.drift(i, t_ms, 1.2, 31.0) + 1.2
    vib = (sig.spread(i, "cnc.vib", 1.0, 3.0) + wear) * (1 if cutting else 0.1) \
        + abs(sig.noise(rng, 0.2))
    parts = k.counter(i, t_ms, "cnc.parts", per_hour=(6, 20), swing=0.9, peak_hour=16.0,
                      start=(1e4, 2e5))
    values = {"state": state, "spindle_load_pct": round(sig.clamp(load, 0, 150), 1),
              "spindle_rpm": int(sig.spread(i, "cnc.rpm", 6000, 12000)) if cutting else 0,
              "vibration_mms": round(sig.clamp(vib, 0, 50), 2),
              "coolant_temp": k.wave(i, t_ms, rng, "cnc.cool", mean=(22, 28), swing=4,
                                     peak_hour=16.0, sigma=0.2, lo=0, hi=80),
              "parts_total": int(parts)}
    return k.drop(values, rng, 0.005, "coolant_temp")


AIR_DOC: k.Doc = {
    "id": "manufacturing-air-meter", "name": "Compressed-air flow meter",
    "description": "Thermal mass flow meter on a workshop's compressed-air main",
    "properties": [
        k.num("flow_nm3h", "Nm³/h", 0, 3000), k.num("pressure_bar", "bar", 0, 16),
        k.num("dew_point", "°C", -70, 20), k.num("total_nm3", "Nm³", 0,
                                                 description="volume register"),
    ],
    "events": [k.event("pressure_low", "major", k.num("pressure_bar", "bar", 0, 16))],
    "commands": [k.command("reset_total")],
}


def _air(i: int, t_ms: int, rng: random.Random) -> k.Values:
    working = _shift(t_ms)
    # A leaking network draws air even when the shop is empty: the leak is the night base.
    leak = sig.spread(i, "air.leak", 40, 160)
    flow = leak + (sig.spread(i, "air.use", 400, 1200) * (1 + sig.noise(rng, 0.08))
                   if working else 0.0)
    pressure = 7.2 - 0.0008 * flow + sig.noise(rng, 0.05) - abs(sig.spike(rng, 0.002, 2.0))
    values = {"flow_nm3h": round(sig.clamp(flow, 0, 3000), 1),
              "pressure_bar": round(sig.clamp(pressure, 0, 16), 2),
              "dew_point": k.wave(i, t_ms, rng, "air.dew", mean=(-40, -20), drift=3,
                                  sigma=0.3, lo=-70, hi=20),
              "total_nm3": round(k.counter(i, t_ms, "air.total", per_hour=(300, 900),
                                           swing=0.8, peak_hour=16.0, start=(1e5, 1e7)), 1)}
    return k.drop(values, rng, 0.01, "dew_point")


CNC = k.product(CNC_DOC, _cnc, "cnc", k.first(
    k.when("state", lambda v: v == "alarm", "machine_alarm",
           lambda v, r: {"code": r.choice([1021, 2003, 4510, 7002])}),
    k.when("vibration_mms", lambda v: v > VIBRATION_ALERT_MMS, "tool_wear")))
AIR = k.product(AIR_DOC, _air, "air", k.when(
    "pressure_bar", lambda v: v < 5.5, "pressure_low"))

SCENARIO = Scenario(
    id="manufacturing", field="industry",
    products=(
        ScenarioProduct(CNC, devices=16, tags=(("asset", "machine-tool"),),
                        cycle=("spindle_load_pct", 16.0), counters=("parts_total",)),
        ScenarioProduct(AIR, devices=3, tags=(("asset", "utilities"),),
                        cycle=("flow_nm3h", 16.0), counters=("total_nm3",)),
    ),
    area=Area("suzhou", "industrial-park", lat=(31.280, 31.340), lon=(120.650, 120.750)),
    tags=(("industry", "manufacturing"),),
    default_rules=(
        k.threshold("manufacturing-vibration", "Spindle vibration high", CNC.id,
                    "vibration_mms", ">", VIBRATION_ALERT_MMS, hold="5m"),
        k.on_event("manufacturing-alarm", "CNC machine alarm", CNC.id, "machine_alarm"),
        k.threshold("manufacturing-overload", "Spindle overloaded", CNC.id, "spindle_load_pct",
                    ">", 120, hold="1m", severity="warning"),
        k.threshold("manufacturing-air-pressure", "Compressed air pressure low", AIR.id,
                    "pressure_bar", "<", 5.5, hold="2m"),
    ),
)
