"""Three realistic products: their thing models and how a device of each kind behaves."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from wulian.domain.thingmodel import Field, ThingModel, parse_thing_model
from wulian.sim import signals as sig

DEFAULT_BAD_RATE = 0.01

Sampler = Callable[[int, int, random.Random], dict[str, Any]]
EventRule = Callable[[int, dict[str, Any], random.Random], tuple[str, dict[str, Any]] | None]


@dataclass(frozen=True)
class Product:
    """A product's thing-model document and a generator of its devices' readings."""

    doc: dict[str, Any]
    sampler: Sampler
    event_rule: EventRule
    id_prefix: str

    @property
    def id(self) -> str:
        return str(self.doc["id"])

    @cached_property
    def model(self) -> ThingModel:
        return parse_thing_model(self.doc)

    def sample(self, device_index: int, t_ms: int, rng: random.Random, *,
               bad_rate: float = DEFAULT_BAD_RATE) -> dict[str, Any]:
        """One telemetry reading; with probability `bad_rate` one value is deliberately bad."""
        values = self.sampler(device_index, t_ms, rng)
        if bad_rate > 0 and rng.random() < bad_rate:
            corrupt(self.model, values, rng)
        return values

    def reading(self, device_index: int, t_ms: int, rng: random.Random, *,
                bad_rate: float = DEFAULT_BAD_RATE) -> \
            tuple[dict[str, Any], tuple[str, dict[str, Any]] | None]:
        """One reading as a device sends it, and the event it raises: (values, event or None).

        The event is decided on the clean sample, as the device's own firmware would see
        it; the deliberately bad value (probability `bad_rate`) is what goes on the wire.
        Event rules therefore only ever see values of their thing model's types.
        """
        clean = self.sampler(device_index, t_ms, rng)
        raised = self.event_rule(device_index, clean, rng)
        if bad_rate > 0 and rng.random() < bad_rate:
            sent = dict(clean)
            corrupt(self.model, sent, rng)
            return sent, raised
        return clean, raised

    def event(self, device_index: int, values: dict[str, Any],
              rng: random.Random) -> tuple[str, dict[str, Any]] | None:
        """The event a device raises after reporting `values`, if any: (event id, params)."""
        return self.event_rule(device_index, values, rng)


def corrupt(model: ThingModel, values: dict[str, Any], rng: random.Random) -> None:
    """Spoil one value the way real devices do: out of range, or the wrong type."""
    if not values:
        return
    key = rng.choice(sorted(values))
    f = model.property(key)
    values[key] = _bad_value(f, rng) if f is not None else rng.choice(["NaN", None])


def _bad_value(f: Field, rng: random.Random) -> Any:
    if f.type in ("int", "float") and f.max is not None and rng.random() < 0.7:
        over = f.max + 1 + abs(f.max) * rng.uniform(0.1, 1.0)
        return int(over) if f.type == "int" else round(over, 2)
    if f.type in ("int", "float") and f.min is not None and rng.random() < 0.5:
        under = f.min - 1 - abs(f.min) * rng.uniform(0.1, 1.0)
        return int(under) if f.type == "int" else round(under, 2)
    if f.type == "enum":
        return rng.choice(["unknown", "ERR", ""])
    if f.type == "bool":
        return rng.choice(["on", 1, None])
    if f.type == "string":
        return rng.randint(0, 9)
    return rng.choice(["NaN", "err", None, True])


# --- env-sensor: the foundation issue's thing model, as written there ---------------------

ENV_SENSOR_DOC: dict[str, Any] = {
    "id": "env-sensor", "name": "Environment sensor",
    "properties": [
        {"id": "temperature", "type": "float", "unit": "°C", "min": -40, "max": 85},
        {"id": "humidity", "type": "float", "unit": "%", "min": 0, "max": 100},
        {"id": "status", "type": "enum", "values": ["ok", "fault"]},
        {"id": "setpoint", "type": "float", "min": 5, "max": 35, "access": "rw"},
    ],
    "events": [{"id": "fault", "level": "major", "params": [{"id": "code", "type": "int"}]}],
    "commands": [{"id": "reboot", "params": [
        {"id": "delay_s", "type": "int", "min": 0, "max": 3600}]}],
}


def _env_sample(i: int, t_ms: int, rng: random.Random) -> dict[str, Any]:
    mean = sig.spread(i, "env.mean", 17.0, 25.0)  # indoor vs outdoor placements
    swing = sig.spread(i, "env.swing", 2.0, 7.0)
    cycle = sig.daily_cycle(t_ms, peak_hour=15.0)
    temp = (mean + swing * cycle + sig.drift(i, t_ms, 1.5) + sig.noise(rng, 0.25)
            + sig.spike(rng, 0.003, 12.0))
    humidity = 55.0 - 15.0 * cycle + sig.drift(i, t_ms, 5.0, 17.0) + sig.noise(rng, 1.5)
    values: dict[str, Any] = {
        "temperature": round(sig.clamp(temp, -40, 85), 2),
        "humidity": round(sig.clamp(humidity, 0, 100), 1),
        "status": "fault" if rng.random() < 0.002 else "ok",
        "setpoint": 20.0 + 2 * round(sig.unit(i, "env.setpoint") * 3),
    }
    if sig.dropout(rng, 0.02):
        del values["humidity"]
    return values


def _env_event(i: int, values: dict[str, Any],
               rng: random.Random) -> tuple[str, dict[str, Any]] | None:
    if values.get("status") == "fault":
        return "fault", {"code": rng.choice([17, 23, 42])}
    return None


# --- smart-meter: a three-phase electricity meter ------------------------------------------

SMART_METER_DOC: dict[str, Any] = {
    "id": "smart-meter", "name": "Three-phase smart meter",
    "description": "Three-phase four-wire energy meter (220/380 V)",
    "properties": [
        {"id": "voltage_a", "type": "float", "unit": "V", "min": 0, "max": 300},
        {"id": "voltage_b", "type": "float", "unit": "V", "min": 0, "max": 300},
        {"id": "voltage_c", "type": "float", "unit": "V", "min": 0, "max": 300},
        {"id": "current", "type": "float", "unit": "A", "min": 0, "max": 200,
         "description": "mean phase current"},
        {"id": "power_kw", "type": "float", "unit": "kW", "min": 0, "max": 120},
        {"id": "energy_kwh", "type": "float", "unit": "kWh", "min": 0,
         "description": "import energy register, never decreases"},
        {"id": "power_factor", "type": "float", "min": 0, "max": 1},
    ],
    "events": [{"id": "overvoltage", "level": "warning", "params": [
        {"id": "phase", "type": "enum", "values": ["a", "b", "c"]},
        {"id": "voltage", "type": "float", "unit": "V"}]}],
    "commands": [{"id": "read_register", "params": [
        {"id": "register", "type": "enum", "values": ["energy", "demand", "events"]}]}],
}
NOMINAL_V = 220.0
OVERVOLTAGE_V = NOMINAL_V * 1.1  # GB/T 12325: ±10 % for 220 V supply; above it is an event


def _meter_load_kw(i: int) -> float:
    return sig.spread(i, "meter.load", 3.0, 40.0)


def _meter_sample(i: int, t_ms: int, rng: random.Random) -> dict[str, Any]:
    base = _meter_load_kw(i)
    evening = sig.daily_cycle(t_ms, peak_hour=19.0)
    load = base * (0.6 + 0.4 * evening) * (1 + sig.noise(rng, 0.05))
    load = sig.clamp(load, 0.0, 120.0)
    pf = sig.clamp(sig.spread(i, "meter.pf", 0.86, 0.97) + sig.noise(rng, 0.01), 0.5, 1.0)
    sag = 4.0 * evening  # the grid sags when everyone cooks
    volts = {}
    for phase in "abc":
        v = (NOMINAL_V + 3.0 - sag + sig.drift(i, t_ms, 2.0) + sig.noise(rng, 1.0)
             + abs(sig.spike(rng, 0.002, 35.0)))
        volts[f"voltage_{phase}"] = round(sig.clamp(v, 0, 300), 1)
    mean_v = sum(volts.values()) / 3
    current = load * 1000 / (3 * mean_v * pf)
    # Energy is the closed-form integral of the mean load curve: monotonic without state.
    hours = (t_ms - sig.COUNTER_EPOCH_MS) / sig.HOUR_MS
    energy = (sig.spread(i, "meter.e0", 100.0, 5000.0)
              + base * (0.6 * hours + 0.4 * sig.cycle_integral_h(t_ms, 19.0)))
    return {**volts, "current": round(sig.clamp(current, 0, 200), 2),
            "power_kw": round(load, 3), "energy_kwh": round(max(energy, 0.0), 3),
            "power_factor": round(pf, 3)}


def _meter_event(i: int, values: dict[str, Any],
                 rng: random.Random) -> tuple[str, dict[str, Any]] | None:
    for phase in "abc":
        v = values.get(f"voltage_{phase}")
        if isinstance(v, float) and OVERVOLTAGE_V < v <= 300:
            return "overvoltage", {"phase": phase, "voltage": v}
    return None


# --- streetlight: a smart LED street lamp --------------------------------------------------

STREETLIGHT_DOC: dict[str, Any] = {
    "id": "streetlight", "name": "Smart streetlight",
    "description": "LED street lamp with light sensor and dimming controller",
    "properties": [
        {"id": "lamp_on", "type": "bool"},
        {"id": "dim_level", "type": "int", "unit": "%", "min": 0, "max": 100, "access": "rw"},
        {"id": "power_w", "type": "float", "unit": "W", "min": 0, "max": 250},
        {"id": "ambient_lux", "type": "float", "unit": "lx", "min": 0, "max": 120000},
        {"id": "burn_hours", "type": "int", "unit": "h", "min": 0},
        {"id": "mode", "type": "enum", "values": ["auto", "manual", "maintenance"]},
    ],
    "events": [{"id": "lamp_failure", "level": "major", "params": [
        {"id": "reason", "type": "enum", "values": ["open_circuit", "driver_fault",
                                                    "overheat"]}]}],
    "commands": [{"id": "set_dim", "params": [
        {"id": "level", "type": "int", "min": 0, "max": 100}]}],
}
LAMP_ON_LUX = 30.0
NIGHT_HOURS_PER_DAY = 11.5


def _light_sample(i: int, t_ms: int, rng: random.Random) -> dict[str, Any]:
    clouds = 0.4 + 0.6 * sig.unit(t_ms // sig.DAY_MS, "light.sky")  # one weather per day
    lux = 80000.0 * clouds * sig.daylight(t_ms) + abs(sig.noise(rng, 2.0))
    lux *= sig.spread(i, "light.shade", 0.5, 1.0)  # trees, buildings
    on = lux < LAMP_ON_LUX
    hour = sig.local_hour(t_ms)
    dim = (100 if hour >= 17 or hour < 1 else 60) if on else 0  # dimmed after midnight
    rated = sig.spread(i, "light.rated", 90.0, 180.0)
    power = rated * dim / 100 * (1 + sig.noise(rng, 0.02)) if on else 0.6
    days = (t_ms - sig.COUNTER_EPOCH_MS) / sig.DAY_MS
    burn = int(sig.spread(i, "light.h0", 0, 20000) + max(days, 0) * NIGHT_HOURS_PER_DAY)
    values: dict[str, Any] = {
        "lamp_on": on, "dim_level": dim, "power_w": round(sig.clamp(power, 0, 250), 1),
        "ambient_lux": round(sig.clamp(lux, 0, 120000), 1), "burn_hours": burn,
        "mode": "maintenance" if sig.unit(i, "light.mode") < 0.02 else "auto",
    }
    if sig.dropout(rng, 0.01):
        del values["ambient_lux"]
    return values


def _light_event(i: int, values: dict[str, Any],
                 rng: random.Random) -> tuple[str, dict[str, Any]] | None:
    if values.get("lamp_on") is True and rng.random() < 0.0005:
        return "lamp_failure", {"reason": rng.choice(["open_circuit", "driver_fault",
                                                      "overheat"])}
    return None


ENV_SENSOR = Product(ENV_SENSOR_DOC, _env_sample, _env_event, "env")
SMART_METER = Product(SMART_METER_DOC, _meter_sample, _meter_event, "meter")
STREETLIGHT = Product(STREETLIGHT_DOC, _light_sample, _light_event, "light")
PRODUCTS: tuple[Product, ...] = (ENV_SENSOR, SMART_METER, STREETLIGHT)


def product(product_id: str) -> Product:
    """The simulated product with this id (KeyError when there is none)."""
    for p in PRODUCTS:
        if p.id == product_id:
            return p
    raise KeyError(product_id)
