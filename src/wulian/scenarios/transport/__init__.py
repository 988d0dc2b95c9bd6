"""Transport (智慧交通): roadside traffic counters and on-street parking sensors."""

from __future__ import annotations

import math
import random

from wulian.scenarios import Area, Scenario, ScenarioProduct
from wulian.scenarios import _kit as k
from wulian.sim import signals as sig

COUNTER_DOC: k.Doc = {
    "id": "transport-traffic-counter", "name": "Traffic counter",
    "description": "Radar/loop traffic detector on one carriageway, 5-minute aggregates",
    "properties": [
        k.num("vehicles_5min", "veh", 0, 1000, integer=True),
        k.num("avg_speed_kmh", "km/h", 0, 200), k.num("occupancy_pct", "%", 0, 100),
        k.num("heavy_share_pct", "%", 0, 100),
        k.num("vehicles_total", "veh", 0, integer=True, description="since installation"),
        k.enum("level_of_service", "free", "steady", "congested", "jammed"),
    ],
    "events": [k.event("congestion", "warning", k.num("avg_speed_kmh", "km/h", 0, 200)),
               k.event("wrong_way", "critical")],
    "commands": [k.command("reset_totals")],
}
FREE_FLOW_KMH = 60.0


def _rush(t_ms: int) -> float:
    """Traffic demand in [0, 1]: morning and evening peaks on weekdays, a flat day at weekends."""
    h = sig.local_hour(t_ms)
    if k.weekend(t_ms):
        return 0.1 + 0.5 * max(0.0, math.sin(math.pi * (h - 8) / 14)) if 8 < h < 22 else 0.1
    peaks = math.exp(-((h - 8.0) ** 2) / 2) + math.exp(-((h - 18.0) ** 2) / 2.5)
    return 0.05 + 0.35 * (1.0 if 6 < h < 22 else 0.0) + 0.6 * peaks


def _traffic(i: int, t_ms: int, rng: random.Random) -> k.Values:
    demand = _rush(t_ms)
    capacity = sig.spread(i, "tc.cap", 250, 450)
    vehicles = max(0, int(capacity * demand + sig.noise(rng, 6)))
    occupancy = sig.clamp(100 * demand ** 1.5 * 0.8 + sig.noise(rng, 1.0), 0, 100)
    speed = sig.clamp(FREE_FLOW_KMH * (1 - 0.8 * demand ** 2) + sig.noise(rng, 2.0), 0, 200)
    los = ("free" if speed > 50 else "steady" if speed > 35 else
           "congested" if speed > 20 else "jammed")
    total = k.counter(i, t_ms, "tc.total", per_hour=(1500, 3500), swing=0.9, peak_hour=13.0,
                      start=(1e5, 5e6))
    values = {"vehicles_5min": vehicles, "avg_speed_kmh": round(speed, 1),
              "occupancy_pct": round(occupancy, 1),
              "heavy_share_pct": k.wave(i, t_ms, rng, "tc.heavy", mean=(5, 15), swing=-4,
                                        peak_hour=14.0, sigma=1.0, lo=0, hi=100),
              "vehicles_total": int(total), "level_of_service": los}
    return k.drop(values, rng, 0.01, "avg_speed_kmh", "heavy_share_pct")


PARKING_DOC: k.Doc = {
    "id": "transport-parking-sensor", "name": "On-street parking sensor",
    "description": "Geomagnetic NB-IoT sensor buried in one parking bay",
    "properties": [
        k.flag("occupied"), k.num("magnetic_ut", "µT", -200, 200),
        k.num("battery_pct", "%", 0, 100, integer=True),
        k.num("rssi_dbm", "dBm", -140, -40, integer=True),
        k.num("parked_min", "min", 0, 10080, integer=True),
    ],
    "events": [k.event("overstay", "minor", k.num("parked_min", "min", 0, 10080, integer=True))],
    "commands": [k.command("recalibrate")],
}
MAX_STAY_MIN = 240


def _parking(i: int, t_ms: int, rng: random.Random) -> k.Values:
    busy = _rush(t_ms) if sig.unit(i, "pk.kind") < 0.5 else k.busy(t_ms, 20.0)  # office/home
    # One car per bay slot of 30 min: the same slot gives the same answer between samples.
    slot = t_ms // (30 * 60_000)
    occupied = sig.unit(slot, f"pk.occ.{i}") < 0.15 + 0.8 * busy
    # Most cars stay for a slot or two; a few for hours.
    stay = int((t_ms // 60_000) % 30) + 30 * int(sig.unit(slot, f"pk.stay.{i}") ** 3 * 10) \
        if occupied else 0
    field = sig.spread(i, "pk.base", -20, 20) + (sig.spread(i, "pk.car", 40, 90) if occupied
                                                  else 0) + sig.noise(rng, 1.5)
    values = {"occupied": occupied, "magnetic_ut": round(sig.clamp(field, -200, 200), 1),
              "battery_pct": int(sig.clamp(sig.spread(i, "pk.bat", 50, 100)
                                           - sig.drift(i, t_ms, 2), 0, 100)),
              "rssi_dbm": int(sig.clamp(sig.spread(i, "pk.rssi", -120, -80)
                                        + sig.noise(rng, 3), -140, -40)),
              "parked_min": stay}
    return k.drop(values, rng, 0.03, "rssi_dbm")


TRAFFIC = k.product(COUNTER_DOC, _traffic, "traffic", k.first(
    k.when("avg_speed_kmh", lambda v: v < 20, "congestion"),
    k.rarely(0.0002, "wrong_way", lambda v, r: {})))
PARKING = k.product(PARKING_DOC, _parking, "parking", k.when(
    "parked_min", lambda v: v > MAX_STAY_MIN, "overstay"))

SCENARIO = Scenario(
    id="transport", field="social_governance",
    products=(
        ScenarioProduct(TRAFFIC, devices=8, tags=(("asset", "road"),),
                        cycle=("vehicles_5min", 13.0), counters=("vehicles_total",)),
        ScenarioProduct(PARKING, devices=30, tags=(("asset", "parking"),)),
    ),
    area=Area("shenzhen", "futian", lat=(22.520, 22.560), lon=(114.020, 114.090)),
    tags=(("industry", "transport"),),
    default_rules=(
        k.threshold("transport-congestion", "Road congested", TRAFFIC.id, "avg_speed_kmh",
                    "<", 20, hold="10m", severity="warning"),
        k.on_event("transport-wrong-way", "Wrong-way driver", TRAFFIC.id, "wrong_way",
                   severity="critical"),
        k.threshold("transport-overstay", "Parking overstay", PARKING.id, "parked_min",
                    ">", MAX_STAY_MIN, severity="minor"),
        k.threshold("transport-sensor-battery", "Parking sensor battery low", PARKING.id,
                    "battery_pct", "<", 15, hold="1h", severity="warning"),
    ),
)
