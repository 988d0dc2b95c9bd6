"""Rural (数字乡村): a village water-supply pump station and its drinking-water quality."""

from __future__ import annotations

import math
import random

from wulian.scenarios import Area, Scenario, ScenarioProduct
from wulian.scenarios import _kit as k
from wulian.sim import signals as sig

PUMP_DOC: k.Doc = {
    "id": "rural-water-pump", "name": "Village water-supply pump",
    "description": "Booster pump feeding a village's drinking-water network",
    "properties": [
        k.enum("state", "running", "standby", "fault"),
        k.num("flow_m3h", "m³/h", 0, 120), k.num("outlet_pressure_mpa", "MPa", 0, 1.6),
        k.num("tank_level_pct", "%", 0, 100), k.num("motor_current", "A", 0, 80),
        k.num("total_m3", "m³", 0, description="delivered volume register"),
    ],
    "events": [k.event("pump_fault", "major",
                       k.enum("code", "dry_run", "overcurrent", "phase_loss")),
               k.event("low_tank", "warning", k.num("tank_level_pct", "%", 0, 100))],
    "commands": [k.command("start"), k.command("stop"),
                 k.command("set_pressure", k.num("mpa", "MPa", 0.1, 1.0))],
}


def _pump(i: int, t_ms: int, rng: random.Random) -> k.Values:
    # Villages draw water at breakfast and dinner (a 12 h cycle), little at night.
    twice = (1 + math.cos(4 * math.pi * (sig.local_hour(t_ms) - 7.0) / 24)) / 2
    demand = 0.1 + 0.9 * twice * (0.3 + 0.7 * k.busy(t_ms, 13.0))
    state = k.pick(rng, "running" if demand > 0.25 else "standby", {"fault": 0.002})
    on = state == "running"
    flow = sig.spread(i, "pump.flow", 25, 60) * demand * (1 + sig.noise(rng, 0.04)) if on else 0
    tank = k.wave(i, t_ms, rng, "pump.tank", mean=(55, 75), swing=-18, peak_hour=19.0,
                  sigma=1.0, lo=0, hi=100)
    values = {
        "state": state, "flow_m3h": round(sig.clamp(flow, 0, 120), 2),
        "outlet_pressure_mpa": round(sig.clamp(0.32 + 0.05 * on + sig.noise(rng, 0.01), 0,
                                               1.6), 3),
        "tank_level_pct": tank,
        "motor_current": round(sig.clamp(flow * 0.45 + sig.noise(rng, 0.3), 0, 80), 2) if on
        else 0.0,
        "total_m3": round(k.counter(i, t_ms, "pump.total", per_hour=(8, 25), swing=0.8,
                                    peak_hour=13.0), 2),
    }
    return k.drop(values, rng, 0.01, "tank_level_pct")


QUALITY_DOC: k.Doc = {
    "id": "rural-water-quality", "name": "Drinking-water quality monitor",
    "description": "Online analyser at the village waterworks outlet (GB 5749-2022 limits)",
    "properties": [
        k.num("ph", None, 0, 14), k.num("turbidity_ntu", "NTU", 0, 100),
        k.num("free_chlorine_mgl", "mg/L", 0, 5), k.num("conductivity_uscm", "µS/cm", 0, 5000),
        k.num("water_temp", "°C", 0, 40),
    ],
    "events": [k.event("limit_exceeded", "major",
                       k.enum("parameter", "ph", "turbidity", "chlorine"))],
    "commands": [k.command("calibrate", k.enum("sensor", "ph", "turbidity", "chlorine"))],
}
TURBIDITY_LIMIT_NTU = 1.0  # GB 5749-2022
CHLORINE_MIN_MGL = 0.05  # residual at the tap


def _quality(i: int, t_ms: int, rng: random.Random) -> k.Values:
    turbidity = abs(k.wave(i, t_ms, rng, "wq.turb", mean=(0.2, 0.5), drift=0.1, sigma=0.05,
                           lo=0, hi=100, digits=3)) + abs(sig.spike(rng, 0.002, 2.5))
    values = {
        "ph": k.wave(i, t_ms, rng, "wq.ph", mean=(7.0, 7.8), drift=0.15, sigma=0.03,
                     lo=0, hi=14, digits=2),
        "turbidity_ntu": round(min(turbidity, 100.0), 3),
        # Chlorine decays in warm afternoons when the water sits in the pipes.
        "free_chlorine_mgl": k.wave(i, t_ms, rng, "wq.cl", mean=(0.3, 0.6), swing=-0.1,
                                    sigma=0.02, lo=0, hi=5, digits=3),
        "conductivity_uscm": k.wave(i, t_ms, rng, "wq.ec", mean=(250, 550), drift=20,
                                    sigma=3, lo=0, hi=5000),
        "water_temp": k.wave(i, t_ms, rng, "wq.temp", mean=(14, 20), swing=1.5, sigma=0.1,
                             lo=0, hi=40, digits=2),
    }
    return k.drop(values, rng, 0.02, "free_chlorine_mgl")


PUMP = k.product(PUMP_DOC, _pump, "pump", k.first(
    k.when("state", lambda v: v == "fault", "pump_fault",
           lambda v, r: {"code": r.choice(["dry_run", "overcurrent", "phase_loss"])}),
    k.when("tank_level_pct", lambda v: v < 20, "low_tank")))
QUALITY = k.product(QUALITY_DOC, _quality, "wq", k.when(
    "turbidity_ntu", lambda v: v > TURBIDITY_LIMIT_NTU, "limit_exceeded",
    lambda v, r: {"parameter": "turbidity"}))

SCENARIO = Scenario(
    id="rural", field="social_governance",
    products=(
        ScenarioProduct(PUMP, devices=6, tags=(("asset", "water-supply"),),
                        cycle=("tank_level_pct", 7.0), counters=("total_m3",)),
        ScenarioProduct(QUALITY, devices=6, tags=(("asset", "water-quality"),),
                        cycle=("water_temp", 15.0)),
    ),
    area=Area("huzhou", "anji", lat=(30.600, 30.700), lon=(119.620, 119.740)),
    tags=(("industry", "rural"),),
    default_rules=(
        k.on_event("rural-pump-fault", "Water pump fault", PUMP.id, "pump_fault"),
        k.threshold("rural-tank-low", "Village water tank low", PUMP.id, "tank_level_pct",
                    "<", 20, hold="10m"),
        k.threshold("rural-turbidity", "Drinking water turbid", QUALITY.id, "turbidity_ntu",
                    ">", TURBIDITY_LIMIT_NTU, hold="10m", severity="critical"),
        k.threshold("rural-chlorine-low", "Residual chlorine too low", QUALITY.id,
                    "free_chlorine_mgl", "<", CHLORINE_MIN_MGL, hold="30m"),
    ),
)
