"""Home (智能家居): smart plugs, door locks and smoke alarms."""

from __future__ import annotations

import random

from wulian.scenarios import Area, Scenario, ScenarioProduct
from wulian.scenarios import _kit as k
from wulian.sim import signals as sig

PLUG_DOC: k.Doc = {
    "id": "home-smart-plug", "name": "Smart plug",
    "description": "Wi-Fi plug with metering (GB 2099 10 A socket)",
    "properties": [
        k.flag("on", rw=True), k.num("power_w", "W", 0, 2500), k.num("voltage", "V", 0, 300),
        k.num("current", "A", 0, 16), k.num("energy_kwh", "kWh", 0, description="register"),
    ],
    "events": [k.event("overcurrent", "major", k.num("current", "A", 0, 16))],
    "commands": [k.command("switch", k.flag("on")),
                 k.command("set_schedule", k.num("on_hour", "h", 0, 23, integer=True),
                           k.num("off_hour", "h", 0, 23, integer=True))],
}


def _plug(i: int, t_ms: int, rng: random.Random) -> k.Values:
    appliance = sig.spread(i, "plug.w", 60, 1800)  # lamp, TV, kettle, heater
    # Evenings at home, more of the day at weekends.
    wanted = k.busy(t_ms, 20.5) + (0.3 if k.weekend(t_ms) else 0.0)
    on = rng.random() < wanted ** 2
    power = appliance * (1 + sig.noise(rng, 0.03)) if on else 0.4  # standby draw
    volts = 220 + sig.noise(rng, 2) - 4 * k.busy(t_ms, 19.0)
    values = {"on": on, "power_w": round(sig.clamp(power, 0, 2500), 1),
              "voltage": round(sig.clamp(volts, 0, 300), 1),
              "current": round(sig.clamp(power / volts, 0, 16), 3),
              "energy_kwh": round(k.counter(i, t_ms, "plug.e", per_hour=(0.02, 0.3),
                                            swing=0.9, peak_hour=20.5, start=(0, 800)), 3)}
    return k.drop(values, rng, 0.01, "voltage")


LOCK_DOC: k.Doc = {
    "id": "home-door-lock", "name": "Smart door lock",
    "description": "Fingerprint/PIN door lock with a door-position sensor",
    "properties": [
        k.flag("locked"), k.flag("door_closed"), k.num("battery_pct", "%", 0, 100, integer=True),
        k.num("unlocks_total", None, 0, integer=True),
    ],
    "events": [k.event("unlocked", "info", k.enum("method", "fingerprint", "pin", "card",
                                                  "app", "key")),
               k.event("tamper", "critical"),
               k.event("door_ajar", "warning")],
    "commands": [k.command("unlock", k.num("seconds", "s", 1, 30, integer=True)),
                 k.command("lock")],
}


def _lock(i: int, t_ms: int, rng: random.Random) -> k.Values:
    around = k.busy(t_ms, 8.0) ** 8 + k.busy(t_ms, 18.5) ** 8  # leaving, coming home
    open_now = rng.random() < 0.2 * around
    values = {"locked": not open_now, "door_closed": not open_now or rng.random() < 0.5,
              "battery_pct": int(sig.clamp(sig.spread(i, "lock.bat", 20, 100)
                                           - sig.drift(i, t_ms, 5), 0, 100)),
              "unlocks_total": int(k.counter(i, t_ms, "lock.n", per_hour=(0.2, 0.6), swing=0.7,
                                             peak_hour=13.0, start=(0, 3000)))}
    return values


SMOKE_DOC: k.Doc = {
    "id": "home-smoke-alarm", "name": "Smoke alarm",
    "description": "Photoelectric smoke alarm (GB 20517) with temperature sensor",
    "properties": [
        k.num("smoke_db_m", "dB/m", 0, 2), k.num("temperature", "°C", -10, 80),
        k.num("battery_pct", "%", 0, 100, integer=True),
        k.enum("state", "normal", "alarm", "test", "fault"),
    ],
    "events": [k.event("smoke", "critical", k.num("smoke_db_m", "dB/m", 0, 2)),
               k.event("low_battery", "warning",
                       k.num("battery_pct", "%", 0, 100, integer=True))],
    "commands": [k.command("silence"), k.command("self_test")],
}
SMOKE_ALARM_DB_M = 0.15


def _smoke(i: int, t_ms: int, rng: random.Random) -> k.Values:
    cooking = k.busy(t_ms, 18.5) ** 6  # frying at dinner sets off kitchen alarms now and then
    smoke = sig.clamp(0.01 + 0.03 * cooking + abs(sig.noise(rng, 0.005))
                      + abs(sig.spike(rng, 0.002 * (1 + 5 * cooking), 0.3)), 0, 2)
    state = "alarm" if smoke > SMOKE_ALARM_DB_M else k.pick(rng, "normal", {"fault": 0.0005})
    values = {"smoke_db_m": round(smoke, 3),
              "temperature": k.wave(i, t_ms, rng, "smoke.t", mean=(20, 25), swing=2,
                                    peak_hour=18.5, sigma=0.1, lo=-10, hi=80),
              "battery_pct": int(sig.spread(i, "smoke.bat", 5, 100)), "state": state}
    return values


PLUG = k.product(PLUG_DOC, _plug, "plug", k.when(
    "current", lambda v: v > 10, "overcurrent"))
LOCK = k.product(LOCK_DOC, _lock, "lock", k.first(
    k.when("locked", lambda v: v is False, "unlocked",
           lambda v, r: {"method": r.choice(["fingerprint", "pin", "card", "app"])}),
    k.rarely(0.0001, "tamper", lambda v, r: {})))
SMOKE = k.product(SMOKE_DOC, _smoke, "smoke", k.first(
    k.when("smoke_db_m", lambda v: v > SMOKE_ALARM_DB_M, "smoke"),
    k.when("battery_pct", lambda v: v < 10, "low_battery")))

SCENARIO = Scenario(
    id="home", field="consumption",
    products=(
        ScenarioProduct(PLUG, devices=20, tags=(("room", "living"),),
                        cycle=("power_w", 20.5), counters=("energy_kwh",)),
        ScenarioProduct(LOCK, devices=10, tags=(("room", "entrance"),),
                        counters=("unlocks_total",)),
        ScenarioProduct(SMOKE, devices=10, tags=(("room", "kitchen"),),
                        cycle=("temperature", 18.5)),
    ),
    area=Area("guangzhou", "tianhe", lat=(23.110, 23.160), lon=(113.300, 113.380)),
    tags=(("industry", "home"),),
    default_rules=(
        k.on_event("home-smoke", "Smoke detected", SMOKE.id, "smoke", severity="critical"),
        k.on_event("home-tamper", "Door lock tampered with", LOCK.id, "tamper",
                   severity="critical"),
        k.threshold("home-lock-battery", "Door lock battery low", LOCK.id, "battery_pct", "<",
                    15, hold="1h", severity="warning"),
        k.threshold("home-plug-overload", "Plug near its 10 A rating", PLUG.id, "current", ">",
                    9.5, hold="1m"),
    ),
)
