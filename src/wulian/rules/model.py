"""Rule documents: parse and validate a JSON/YAML mapping into a typed `Rule`.

Errors are `RuleError(path, problem)` with a JSONPath-like `path` such as
`$.condition.of[1].op`, so the API and the CLI can point at the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

from wulian.domain.duration import duration_ms
from wulian.domain.thingmodel import IDENT
from wulian.rules.conditions import (
    FILTER_OPS,
    OPS,
    ORDERED_OPS,
    Aggregate,
    Anomaly,
    Composite,
    Condition,
    EventOccurred,
    Geofence,
    NoData,
    ParamFilter,
    RateOfChange,
    Threshold,
)

if TYPE_CHECKING:
    from wulian.rules.actions import Action

RULE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
MAX_DURATION_MS = 366 * 86_400_000
MAX_DEPTH = 8
MAX_PARTS = 32
MAX_POLYGON = 1000
CONDITION_TYPES = ("threshold", "rate", "no_data", "event", "and", "or", "not", "aggregate",
                   "geofence", "anomaly")


class RuleError(ValueError):
    """A rule document is invalid; `path` names the offending field."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class Severity(StrEnum):
    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Scope:
    """Which devices a rule watches; every given criterion must match."""

    products: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    devices: tuple[str, ...] = ()

    def matches(self, device_id: str, product: str, tags: Mapping[str, str]) -> bool:
        if self.devices and device_id not in self.devices:
            return False
        if self.products and product not in self.products:
            return False
        return all(tags.get(k) == v for k, v in self.tags)


@dataclass(frozen=True, slots=True)
class Rule:
    """A validated rule. `clear` is None when the alarm clears as the condition stops."""

    id: str
    name: str
    severity: Severity
    scope: Scope
    condition: Condition
    for_ms: int = 0
    clear: Condition | None = None
    clear_for_ms: int = 0
    enabled: bool = True
    description: str | None = None
    actions: tuple[Action, ...] = ()
    doc: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def group(self) -> bool:
        """An aggregate rule: one alarm for the whole group, not one per device."""
        return isinstance(self.condition, Aggregate)

    @property
    def latched(self) -> bool:
        """Raised by a momentary event: it stays until a person clears it."""
        return self.clear is None and any(
            isinstance(c, EventOccurred) and c.within_ms == 0 for c in self.condition.walk())


def parse_duration(raw: Any, path: str) -> int:
    """`"5m"`, `"30s"`, `"1.5h"`, `"250ms"`, `"1d"` or a number of milliseconds → ms."""
    if isinstance(raw, bool):
        raise RuleError(path, "must be a duration like \"5m\" or milliseconds")
    if isinstance(raw, int | float):
        ms = raw
    elif isinstance(raw, str) and (parsed := duration_ms(raw)) is not None:
        ms = parsed
    else:
        raise RuleError(path, "must be a duration like \"5m\" or milliseconds")
    if not math.isfinite(ms) or not 0 <= ms <= MAX_DURATION_MS:
        raise RuleError(path, "must be between 0 and 366 days")
    return int(ms)


def _obj(raw: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise RuleError(path, "must be an object")
    return raw


def _known(doc: Mapping[str, Any], path: str, allowed: set[str]) -> None:
    for key in doc:
        if key not in allowed:
            raise RuleError(f"{path}.{key}", "is not a known field")


def _need(doc: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in doc:
        raise RuleError(f"{path}.{key}", "is required")
    return doc[key]


def _ident(doc: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str:
    raw = doc.get(key, default) if default is not None else _need(doc, key, path)
    if not isinstance(raw, str) or not IDENT.fullmatch(raw):
        raise RuleError(f"{path}.{key}", "must be an identifier like pm25 or water_level")
    return raw


def _number(raw: Any, path: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise RuleError(path, "must be a finite number")
    return raw


def _int(raw: Any, path: str, low: int, high: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        raise RuleError(path, f"must be an integer from {low} to {high}")
    return raw


def _op(doc: Mapping[str, Any], path: str, ops: tuple[str, ...]) -> str:
    op = _need(doc, "op", path)
    if op not in ops:
        raise RuleError(f"{path}.op", "must be one of: " + ", ".join(ops))
    return cast(str, op)


def _comparand(doc: Mapping[str, Any], op: str, path: str, numeric: bool) -> Any:
    raw = _need(doc, "value", path)
    where = f"{path}.value"
    if op in ("between", "outside"):
        if not isinstance(raw, list | tuple) or len(raw) != 2:
            raise RuleError(where, "must be [low, high] for between/outside")
        low, high = (_number(v, f"{where}[{i}]") for i, v in enumerate(raw))
        if low > high:
            raise RuleError(where, "low must not exceed high")
        return (low, high)
    if numeric or op in ORDERED_OPS:
        if isinstance(raw, str) and op in ORDERED_OPS and not numeric:
            return raw  # strings compare in order too (e.g. firmware "2.1.0")
        return _number(raw, where)
    if isinstance(raw, bool | str) or (isinstance(raw, int | float) and math.isfinite(raw)):
        return raw
    raise RuleError(where, "must be a number, a string or true/false")


def parse_condition(raw: Any, path: str = "$.condition", depth: int = 0) -> Condition:
    """One condition (recursively for and/or/not)."""
    doc = _obj(raw, path)
    kind = _need(doc, "type", path)
    if kind not in CONDITION_TYPES:
        raise RuleError(f"{path}.type", "must be one of: " + ", ".join(CONDITION_TYPES))
    if depth > MAX_DEPTH:
        raise RuleError(path, f"conditions nest at most {MAX_DEPTH} deep")
    if kind == "threshold":
        _known(doc, path, {"type", "property", "op", "value"})
        op = _op(doc, path, OPS)
        return Threshold(_ident(doc, "property", path), op, _comparand(doc, op, path, False))
    if kind == "rate":
        _known(doc, path, {"type", "property", "window", "op", "value"})
        op = _op(doc, path, OPS)
        window = parse_duration(_need(doc, "window", path), f"{path}.window")
        if window == 0:
            raise RuleError(f"{path}.window", "must be longer than 0")
        return RateOfChange(_ident(doc, "property", path), window, op,
                            _comparand(doc, op, path, True))
    if kind == "no_data":
        _known(doc, path, {"type", "after", "property"})
        after = parse_duration(_need(doc, "after", path), f"{path}.after")
        if after == 0:
            raise RuleError(f"{path}.after", "must be longer than 0")
        prop = _ident(doc, "property", path) if "property" in doc else None
        return NoData(after, prop)
    if kind == "event":
        return _event(doc, path)
    if kind in ("and", "or", "not"):
        return _composite(doc, kind, path, depth)
    if kind == "aggregate":
        return _aggregate(doc, path, depth)
    if kind == "geofence":
        return _geofence(doc, path)
    return _anomaly(doc, path)


def _event(doc: Mapping[str, Any], path: str) -> EventOccurred:
    _known(doc, path, {"type", "event", "where", "within"})
    filters: list[ParamFilter] = []
    for param, test in _obj(doc.get("where", {}), f"{path}.where").items():
        where = f"{path}.where.{param}"
        if not isinstance(param, str) or not IDENT.fullmatch(param):
            raise RuleError(where, "must be an identifier")
        if not isinstance(test, Mapping):  # `"code": 3` is shorthand for == 3
            test = {"==": test}
        if not test:
            raise RuleError(where, "needs a test such as {\"in\": [3, 4]}")
        for op, ref in test.items():
            if op not in FILTER_OPS:
                raise RuleError(f"{where}.{op}", "must be one of: " + ", ".join(FILTER_OPS))
            if op in ("in", "not_in"):
                if not isinstance(ref, list) or not ref or len(ref) > 256:
                    raise RuleError(f"{where}.{op}", "must be a list of 1 to 256 values")
                for i, item in enumerate(ref):
                    _scalar(item, f"{where}.{op}[{i}]")
                ref = tuple(ref)
            else:
                _scalar(ref, f"{where}.{op}")
            filters.append(ParamFilter(param, op, ref))
    within = parse_duration(doc.get("within", 0), f"{path}.within")
    return EventOccurred(_ident(doc, "event", path), tuple(filters), within)


def _scalar(raw: Any, path: str) -> None:
    if isinstance(raw, bool | str) or (isinstance(raw, int | float) and math.isfinite(raw)):
        return
    raise RuleError(path, "must be a number, a string or true/false")


def _composite(doc: Mapping[str, Any], kind: str, path: str, depth: int) -> Composite:
    _known(doc, path, {"type", "of"})
    parts_raw = _need(doc, "of", path)
    parts: tuple[Condition, ...]
    if kind == "not":
        if isinstance(parts_raw, list):
            if len(parts_raw) != 1:
                raise RuleError(f"{path}.of", "not takes exactly one condition")
            parts_raw = parts_raw[0]
        parts = (parse_condition(parts_raw, f"{path}.of", depth + 1),)
    else:
        if not isinstance(parts_raw, list) or not 1 <= len(parts_raw) <= MAX_PARTS:
            raise RuleError(f"{path}.of", f"must be a list of 1 to {MAX_PARTS} conditions")
        parts = tuple(parse_condition(p, f"{path}.of[{i}]", depth + 1)
                      for i, p in enumerate(parts_raw))
    for i, part in enumerate(parts):
        if any(isinstance(c, Aggregate) for c in part.walk()):
            raise RuleError(f"{path}.of[{i}]", "an aggregate spans devices: it cannot be "
                            "combined with per-device conditions")
    return Composite(kind, parts)  # type: ignore[arg-type]


def _aggregate(doc: Mapping[str, Any], path: str, depth: int) -> Aggregate:
    _known(doc, path, {"type", "property", "fn", "window", "op", "value", "min_devices"})
    if depth:
        raise RuleError(path, "an aggregate must be the rule's whole condition")
    fn = _need(doc, "fn", path)
    if fn not in ("mean", "min", "max", "count"):
        raise RuleError(f"{path}.fn", "must be one of: mean, min, max, count")
    window = parse_duration(_need(doc, "window", path), f"{path}.window")
    if window == 0:
        raise RuleError(f"{path}.window", "must be longer than 0")
    op = _op(doc, path, OPS)
    min_devices = _int(doc.get("min_devices", 1), f"{path}.min_devices", 1, 1_000_000)
    return Aggregate(_ident(doc, "property", path), fn, window, op,
                     _comparand(doc, op, path, True), min_devices)


def _latlon(raw: Any, path: str) -> tuple[float, float]:
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        raise RuleError(path, "must be [lat, lon]")
    lat, lon = _number(raw[0], f"{path}[0]"), _number(raw[1], f"{path}[1]")
    if not -90 <= lat <= 90:
        raise RuleError(f"{path}[0]", "latitude must be between -90 and 90")
    if not -180 <= lon <= 180:
        raise RuleError(f"{path}[1]", "longitude must be between -180 and 180")
    return (float(lat), float(lon))


def _geofence(doc: Mapping[str, Any], path: str) -> Geofence:
    _known(doc, path, {"type", "when", "polygon", "circle", "lat_property", "lon_property"})
    when = _need(doc, "when", path)
    if when not in ("inside", "outside"):
        raise RuleError(f"{path}.when", "must be inside or outside")
    lat_p = _ident(doc, "lat_property", path, "lat")
    lon_p = _ident(doc, "lon_property", path, "lon")
    if ("polygon" in doc) == ("circle" in doc):
        raise RuleError(path, "needs exactly one of polygon or circle")
    if "circle" in doc:
        circle = _obj(doc["circle"], f"{path}.circle")
        _known(circle, f"{path}.circle", {"center", "radius_m"})
        center = _latlon(_need(circle, "center", f"{path}.circle"), f"{path}.circle.center")
        radius = _number(_need(circle, "radius_m", f"{path}.circle"), f"{path}.circle.radius_m")
        if not 0 < radius <= 20_000_000:
            raise RuleError(f"{path}.circle.radius_m", "must be between 0 and 20000 km")
        return Geofence(when, center=center, radius_m=float(radius), lat_property=lat_p,
                        lon_property=lon_p)
    ring = doc["polygon"]
    if not isinstance(ring, list) or not 3 <= len(ring) <= MAX_POLYGON:
        raise RuleError(f"{path}.polygon", f"must be a list of 3 to {MAX_POLYGON} [lat, lon]")
    points = tuple(_latlon(p, f"{path}.polygon[{i}]") for i, p in enumerate(ring))
    return Geofence(when, polygon=points, lat_property=lat_p, lon_property=lon_p)


def _anomaly(doc: Mapping[str, Any], path: str) -> Anomaly:
    _known(doc, path, {"type", "property", "window", "warmup", "sensitivity", "direction"})
    window = _int(doc.get("window", 288), f"{path}.window", 10, 4096)
    warmup = _int(doc.get("warmup", 30), f"{path}.warmup", 5, window)
    sensitivity = _number(doc.get("sensitivity", 4.0), f"{path}.sensitivity")
    if not 1 <= sensitivity <= 100:
        raise RuleError(f"{path}.sensitivity", "must be between 1 and 100 (robust z-score)")
    direction = doc.get("direction", "both")
    if direction not in ("both", "up", "down"):
        raise RuleError(f"{path}.direction", "must be one of: both, up, down")
    return Anomaly(_ident(doc, "property", path), window, warmup, float(sensitivity),
                   direction)


def _scope(raw: Any) -> Scope:
    doc = _obj(raw, "$.scope")
    _known(doc, "$.scope", {"product", "products", "tags", "devices"})
    products: list[str] = []
    if "product" in doc:
        products.append(doc["product"])
    products_raw = doc.get("products", [])
    if not isinstance(products_raw, list):
        raise RuleError("$.scope.products", "must be a list of product ids")
    products.extend(products_raw)
    for i, p in enumerate(products):
        if not isinstance(p, str) or not RULE_ID.fullmatch(p):
            where = "$.scope.product" if "product" in doc and i == 0 else "$.scope.products"
            raise RuleError(where, "must be a product id")
    tags = _obj(doc.get("tags", {}), "$.scope.tags")
    for k, v in tags.items():
        if not isinstance(k, str) or not isinstance(v, str) or len(v) > 256:
            raise RuleError(f"$.scope.tags.{k}", "tag selectors map names to strings")
    devices = doc.get("devices", [])
    if not isinstance(devices, list) or len(devices) > 10_000 or not all(
            isinstance(d, str) and RULE_ID.fullmatch(d) for d in devices):
        raise RuleError("$.scope.devices", "must be a list of device ids")
    if not (products or tags or devices):
        raise RuleError("$.scope", "name a product, tags or devices (a rule never "
                        "watches every device by accident)")
    return Scope(tuple(products), tuple(sorted(tags.items())), tuple(devices))


def _clear(doc: Mapping[str, Any], condition: Condition) -> Condition | None:
    if "clear" in doc and "hysteresis" in doc:
        raise RuleError("$.hysteresis", "give either clear or hysteresis, not both")
    if "clear" in doc:
        return parse_condition(doc["clear"], "$.clear")
    if "hysteresis" not in doc:
        return None
    band = _number(doc["hysteresis"], "$.hysteresis")
    usable = isinstance(condition, Threshold | RateOfChange | Aggregate) and (
        condition.op in ORDERED_OPS and not isinstance(condition.value, str))
    if not usable or band <= 0:
        raise RuleError("$.hysteresis", "needs a positive band and a condition with "
                        "op >, >=, < or <= on a number")
    assert isinstance(condition, Threshold | RateOfChange | Aggregate)
    # Clear only once the value is back past the threshold by the band: `> 80` with band 5
    # clears at `<= 75`, so readings wobbling around 80 keep one alarm.
    above = condition.op in (">", ">=")
    limit = condition.value - band if above else condition.value + band
    back = "<=" if above else ">="
    if isinstance(condition, Threshold):
        return Threshold(condition.property, back, limit)
    if isinstance(condition, RateOfChange):
        return RateOfChange(condition.property, condition.window_ms, back, limit)
    return Aggregate(condition.property, condition.fn, condition.window_ms, back, limit,
                     condition.min_devices)


def parse_rule(raw: Any) -> Rule:
    """Validate a rule document (a decoded JSON/YAML mapping) into a `Rule`."""
    from wulian.rules.actions import parse_actions  # it imports this module's helpers

    doc = _obj(raw, "$")
    _known(doc, "$", {"id", "name", "description", "severity", "scope", "product",
                      "condition", "for", "clear", "clear_for", "hysteresis", "enabled",
                      "actions"})
    rule_id = _need(doc, "id", "$")
    if not isinstance(rule_id, str) or not RULE_ID.fullmatch(rule_id):
        raise RuleError("$.id", "must match [A-Za-z0-9_.:-]{1,128}")
    name = doc.get("name", rule_id)
    if not isinstance(name, str) or not 1 <= len(name) <= 200:
        raise RuleError("$.name", "must be a string of 1 to 200 characters")
    description = doc.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 2000):
        raise RuleError("$.description", "must be a string of at most 2000 characters")
    severity = doc.get("severity", "major")
    if severity not in tuple(Severity):
        raise RuleError("$.severity", "must be one of: critical, major, minor, warning")
    enabled = doc.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RuleError("$.enabled", "must be true or false")
    if "product" in doc:  # shorthand for {"scope": {"product": ...}}
        if "scope" in doc:
            raise RuleError("$.product", "give the product inside scope, not beside it")
        scope = _scope({"product": doc["product"]})
    else:
        scope = _scope(_need(doc, "scope", "$"))
    condition = parse_condition(_need(doc, "condition", "$"))
    clear = _clear(doc, condition)
    if clear is not None and isinstance(condition, Aggregate) != isinstance(clear, Aggregate):
        raise RuleError("$.clear", "an aggregate rule clears on an aggregate, and only then")
    return Rule(id=rule_id, name=name, severity=Severity(severity), scope=scope,
                condition=condition, for_ms=parse_duration(doc.get("for", 0), "$.for"),
                clear=clear, clear_for_ms=parse_duration(doc.get("clear_for", 0), "$.clear_for"),
                enabled=enabled, description=description,
                actions=parse_actions(doc.get("actions", [])), doc=dict(doc))
