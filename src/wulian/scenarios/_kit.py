"""What the scenario packages share: thing-model fields, sampler shapes and rule documents.

Samplers are pure functions of (device index, time, seeded RNG) built from
`wulian.sim.signals`; these helpers hold the shapes that recur across industries so a
scenario package reads as a list of physical facts, not arithmetic.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from wulian.sim import signals as sig
from wulian.sim.products import EventRule, Product, Sampler

Doc = dict[str, Any]
Values = dict[str, Any]
EventOut = tuple[str, dict[str, Any]] | None

# --- thing-model fields ---------------------------------------------------------------


def num(ident: str, unit: str | None, lo: float | None = None, hi: float | None = None, *,
        integer: bool = False, rw: bool = False, description: str | None = None) -> Doc:
    """A numeric property or parameter."""
    doc: Doc = {"id": ident, "type": "int" if integer else "float"}
    for key, value in (("unit", unit), ("min", lo), ("max", hi), ("description", description)):
        if value is not None:
            doc[key] = value
    if rw:
        doc["access"] = "rw"
    return doc


def enum(ident: str, *values: str, rw: bool = False) -> Doc:
    """An enumerated property or parameter."""
    doc: Doc = {"id": ident, "type": "enum", "values": list(values)}
    if rw:
        doc["access"] = "rw"
    return doc


def flag(ident: str, *, rw: bool = False) -> Doc:
    """A boolean property or parameter."""
    return {"id": ident, "type": "bool", **({"access": "rw"} if rw else {})}


def event(ident: str, level: str, *params: Doc) -> Doc:
    return {"id": ident, "level": level, "params": list(params)}


def command(ident: str, *params: Doc) -> Doc:
    return {"id": ident, "params": list(params)}


# --- samplers -----------------------------------------------------------------------


def product(doc: Doc, sampler: Sampler, prefix: str, event_rule: EventRule | None = None) -> \
        Product:
    """A simulated product; devices without events get a rule that never fires."""
    return Product(doc, sampler, event_rule or no_event, prefix)


def no_event(i: int, values: Values, rng: random.Random) -> EventOut:
    return None


def busy(t_ms: int, peak_hour: float) -> float:
    """Activity in [0, 1] over the local day: 1 at `peak_hour`, 0 twelve hours later."""
    return (1.0 + sig.daily_cycle(t_ms, peak_hour)) / 2.0


def local_day(t_ms: int, tz_offset_h: float = sig.CHINA_TZ_H) -> int:
    """Days since 1970-01-01, local time."""
    return int((t_ms / sig.HOUR_MS + tz_offset_h) // 24)


def weekday(day: int) -> int:
    """Monday 0 ... Sunday 6 of a `local_day` (1970-01-01 was a Thursday)."""
    return (day + 3) % 7


def weekend(t_ms: int) -> bool:
    """Saturday or Sunday, local time."""
    return weekday(local_day(t_ms)) >= 5


def wave(i: int, t_ms: int, rng: random.Random, salt: str, *, mean: tuple[float, float],
         swing: float = 0.0, peak_hour: float = 15.0, sigma: float = 0.0,
         drift: float = 0.0, lo: float, hi: float, digits: int = 1) -> float:
    """Per-device mean, plus a daily cosine, slow drift and noise, clamped to the range."""
    value = (sig.spread(i, salt, *mean) + swing * sig.daily_cycle(t_ms, peak_hour)
             + sig.drift(i, t_ms, drift) + sig.noise(rng, sigma))
    return round(sig.clamp(value, lo, hi), digits)


def counter(i: int, t_ms: int, salt: str, *, per_hour: tuple[float, float],
            swing: float = 0.0, peak_hour: float = 15.0,
            start: tuple[float, float] = (0.0, 10_000.0)) -> float:
    """A register that only grows: the closed-form integral of a daily-cycling rate.

    `swing` (0..1) is the rate's daily amplitude as a share of its mean; kept ≤ 1 the rate
    never goes negative, so the register is monotonic without keeping state.
    """
    rate = sig.spread(i, f"{salt}.rate", *per_hour)
    hours = (t_ms - sig.COUNTER_EPOCH_MS) / sig.HOUR_MS
    total = hours + swing * sig.cycle_integral_h(t_ms, peak_hour)
    return max(0.0, sig.spread(i, f"{salt}.start", *start) + rate * total)


def pick(rng: random.Random, normal: str, rare: dict[str, float]) -> str:
    """`normal`, or one of the rare states with its probability (a fault, maintenance)."""
    roll = rng.random()
    for state, p in rare.items():
        if roll < p:
            return state
        roll -= p
    return normal


def drop(values: Values, rng: random.Random, probability: float, *keys: str) -> Values:
    """Remove each of `keys` with `probability`: a sensor that did not answer this time."""
    for key in keys:
        if key in values and sig.dropout(rng, probability):
            del values[key]
    return values


def when(prop: str, test: Callable[[Any], bool], event_id: str,
         params: Callable[[Values, random.Random], dict[str, Any]] | None = None) -> EventRule:
    """An event raised whenever the reported `prop` passes `test`; by default it carries `prop`.

    A value `test` cannot compare (a string where a number belongs: a spoiled reading)
    raises no event. The fleet derives events from the clean sample anyway
    (`Product.reading`); this keeps a rule safe for any other caller.
    """
    def rule(i: int, values: Values, rng: random.Random) -> EventOut:
        value = values.get(prop)
        if value is None:
            return None
        try:
            passed = test(value)
        except (TypeError, ValueError):
            return None
        if passed:
            return event_id, ({prop: value} if params is None else params(values, rng))
        return None
    return rule


def rarely(probability: float, event_id: str,
           params: Callable[[Values, random.Random], dict[str, Any]]) -> EventRule:
    """An event that happens now and then, whatever the readings (a fall, a door forced)."""
    def rule(i: int, values: Values, rng: random.Random) -> EventOut:
        if rng.random() < probability:
            return event_id, params(values, rng)
        return None
    return rule


def first(*rules: EventRule) -> EventRule:
    """The first of several event rules that fires."""
    def rule(i: int, values: Values, rng: random.Random) -> EventOut:
        for r in rules:
            out = r(i, values, rng)
            if out is not None:
                return out
        return None
    return rule


# --- default rules (data for the rule engine) ---------------------------------------------


def threshold(ident: str, name: str, product_id: str, prop: str, op: str, value: float | str,
              *, hold: str | None = None, severity: str = "major") -> Doc:
    """A rule document: alarm when `prop op value` holds (for `hold`, e.g. "10m")."""
    doc: Doc = {"id": ident, "name": name, "product": product_id,
                "condition": {"type": "threshold", "property": prop, "op": op, "value": value},
                "severity": severity}
    if hold is not None:
        doc["for"] = hold
    return doc


def on_event(ident: str, name: str, product_id: str, event_id: str, *,
             severity: str = "major") -> Doc:
    """A rule document: alarm whenever the device raises `event_id`."""
    return {"id": ident, "name": name, "product": product_id,
            "condition": {"type": "event", "event": event_id}, "severity": severity}
