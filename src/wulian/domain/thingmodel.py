"""Thing models: the typed contract of a product (properties, events, commands).

A thing model is a JSON document. `parse_thing_model` checks it and names the offending
field on error; `ThingModel` then knows how to validate what devices report.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

ValueType = Literal["int", "float", "bool", "string", "enum"]
VALUE_TYPES: tuple[str, ...] = ("int", "float", "bool", "string", "enum")
EVENT_LEVELS: tuple[str, ...] = ("info", "warning", "minor", "major", "critical")
# Match with `fullmatch`: `$` also matches before a trailing newline, so `.match` would
# let "temperature\n" through.
IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
PRODUCT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
# `ts` is the sample's timestamp in telemetry and event payloads alike.
RESERVED_PROPERTIES = frozenset({"ts"})
# Integers beyond int64 cannot be stored in either backend.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
DEFAULT_STRING_MAX = 1024
# Longer than any payload the platform accepts; bounds what the compiled decoder is asked for.
MAX_STRING_LENGTH = 1 << 20


class ThingModelError(ValueError):
    """A thing-model document is invalid; `path` names the offending field."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Field:
    """A typed value: a property, or a parameter of an event or command."""

    id: str
    type: ValueType
    name: str | None = None
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    max_length: int | None = None
    values: tuple[str, ...] = ()
    access: Literal["r", "rw"] = "r"
    description: str | None = None

    def to_doc(self) -> dict[str, Any]:
        """The field as it appears in a thing-model document."""
        doc: dict[str, Any] = {"id": self.id, "type": self.type}
        for key in ("name", "unit", "min", "max", "max_length", "description"):
            value = getattr(self, key)
            if value is not None:
                doc[key] = value
        if self.values:
            doc["values"] = list(self.values)
        if self.access != "r":
            doc["access"] = self.access
        return doc


@dataclass(frozen=True, slots=True)
class Event:
    """Something a device tells once: a fault, a door opening, a fall."""

    id: str
    level: str = "info"
    name: str | None = None
    params: tuple[Field, ...] = ()
    description: str | None = None

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": self.id, "level": self.level}
        if self.name is not None:
            doc["name"] = self.name
        if self.description is not None:
            doc["description"] = self.description
        doc["params"] = [p.to_doc() for p in self.params]
        return doc


@dataclass(frozen=True, slots=True)
class Command:
    """Something the platform asks a device to do, with typed parameters and results."""

    id: str
    name: str | None = None
    params: tuple[Field, ...] = ()
    result: tuple[Field, ...] = ()
    description: str | None = None

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": self.id}
        if self.name is not None:
            doc["name"] = self.name
        if self.description is not None:
            doc["description"] = self.description
        doc["params"] = [p.to_doc() for p in self.params]
        if self.result:
            doc["result"] = [p.to_doc() for p in self.result]
        return doc


@dataclass(frozen=True, slots=True)
class ThingModel:
    """A product's thing model."""

    id: str
    name: str
    properties: tuple[Field, ...] = ()
    events: tuple[Event, ...] = ()
    commands: tuple[Command, ...] = ()
    description: str | None = None
    # Not an __init__ argument: `dataclasses.replace` would hand the old model's index to
    # the new one and both would then see each other's properties.
    _by_id: dict[str, Field] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {p.id: p for p in self.properties})

    def property(self, prop_id: str) -> Field | None:
        """The property named `prop_id`, or None."""
        return self._by_id.get(prop_id)

    def event(self, event_id: str) -> Event | None:
        """The event named `event_id`, or None."""
        return next((e for e in self.events if e.id == event_id), None)

    def command(self, command_id: str) -> Command | None:
        """The command named `command_id`, or None."""
        return next((c for c in self.commands if c.id == command_id), None)

    def to_doc(self) -> dict[str, Any]:
        """The thing model as a JSON-ready document (round-trips through `parse_thing_model`)."""
        doc: dict[str, Any] = {"id": self.id, "name": self.name}
        if self.description is not None:
            doc["description"] = self.description
        doc["properties"] = [p.to_doc() for p in self.properties]
        doc["events"] = [e.to_doc() for e in self.events]
        doc["commands"] = [c.to_doc() for c in self.commands]
        return doc


# --- parsing -------------------------------------------------------------------------


def _require_mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ThingModelError(path, "must be a JSON object")
    return value


def _require_list(value: Any, path: str) -> Sequence[Any]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ThingModelError(path, "must be a JSON array")
    return value


def _opt_str(doc: Mapping[str, Any], key: str, path: str) -> str | None:
    value = doc.get(key)
    if value is not None and not isinstance(value, str):
        raise ThingModelError(f"{path}.{key}", "must be a string")
    return value


def _number(doc: Mapping[str, Any], key: str, path: str) -> float | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ThingModelError(f"{path}.{key}", "must be a finite number")
    try:
        finite = math.isfinite(value)  # OverflowError: an int beyond any float
    except OverflowError:
        finite = False
    if not finite:
        raise ThingModelError(f"{path}.{key}", "must be a finite number")
    return value


def _check_unknown(doc: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in doc:
        if key not in allowed:
            raise ThingModelError(f"{path}.{key}", "is not a known field")


_FIELD_KEYS = {"id", "type", "name", "unit", "min", "max", "max_length", "values", "access",
               "description"}


def _parse_field(raw: Any, path: str) -> Field:
    doc = _require_mapping(raw, path)
    _check_unknown(doc, _FIELD_KEYS, path)
    ident = _ident(doc, path)
    raw_type = doc.get("type")
    if not isinstance(raw_type, str) or raw_type not in VALUE_TYPES:
        raise ThingModelError(f"{path}.type", f"must be one of {', '.join(VALUE_TYPES)}")
    vtype = cast(ValueType, raw_type)
    lo, hi = _number(doc, "min", path), _number(doc, "max", path)
    if vtype not in ("int", "float"):
        for key, bound in (("min", lo), ("max", hi)):
            if bound is not None:
                raise ThingModelError(f"{path}.{key}",
                                      f"min/max apply to int and float, not {vtype}")
    if vtype == "int":
        for key, bound in (("min", lo), ("max", hi)):
            if bound is not None and bound != int(bound):
                raise ThingModelError(f"{path}.{key}", "must be a whole number for an int")
            if bound is not None and not INT_MIN <= bound <= INT_MAX:
                raise ThingModelError(f"{path}.{key}", "must lie within the int64 range")
        lo = int(lo) if lo is not None else None
        hi = int(hi) if hi is not None else None
    if lo is not None and hi is not None and lo > hi:
        raise ThingModelError(f"{path}.min", f"min ({lo}) is greater than max ({hi})")
    max_length = doc.get("max_length")
    if max_length is not None:
        if vtype != "string":
            raise ThingModelError(f"{path}.max_length", "applies to string only")
        if (isinstance(max_length, bool) or not isinstance(max_length, int)
                or not 1 <= max_length <= MAX_STRING_LENGTH):
            raise ThingModelError(f"{path}.max_length",
                                  f"must be an integer from 1 to {MAX_STRING_LENGTH}")
    values: tuple[str, ...] = ()
    if vtype == "enum":
        raw_values = doc.get("values")
        if not isinstance(raw_values, list) or not raw_values:
            raise ThingModelError(f"{path}.values", "an enum needs a non-empty array of strings")
        if not all(isinstance(v, str) and v for v in raw_values):
            raise ThingModelError(f"{path}.values", "enum values must be non-empty strings")
        if len(set(raw_values)) != len(raw_values):
            raise ThingModelError(f"{path}.values", "enum values must be unique")
        values = tuple(raw_values)
    elif "values" in doc:
        raise ThingModelError(f"{path}.values", "applies to enum only")
    access = doc.get("access", "r")
    if access not in ("r", "rw"):
        raise ThingModelError(f"{path}.access", "must be 'r' or 'rw'")
    return Field(
        id=ident, type=vtype, name=_opt_str(doc, "name", path), unit=_opt_str(doc, "unit", path),
        min=lo, max=hi, max_length=max_length, values=values, access=access,
        description=_opt_str(doc, "description", path),
    )


def _parse_fields(raw: Any, path: str, *, reserved: frozenset[str] = frozenset()) -> \
        tuple[Field, ...]:
    fields = tuple(_parse_field(item, f"{path}[{i}]") for i, item in
                   enumerate(_require_list(raw, path)))
    for i, f in enumerate(fields):
        if f.id in reserved:
            raise ThingModelError(f"{path}[{i}].id", f"'{f.id}' is reserved")
    _unique(fields, path)
    return fields


def _unique(items: Sequence[Any], path: str) -> None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item.id in seen:
            raise ThingModelError(f"{path}[{i}].id", f"duplicate id '{item.id}'")
        seen.add(item.id)


def _ident(doc: Mapping[str, Any], path: str) -> str:
    ident = doc.get("id")
    if not isinstance(ident, str) or not IDENT.fullmatch(ident):
        raise ThingModelError(f"{path}.id", "must match [A-Za-z_][A-Za-z0-9_]{0,63}")
    return ident


def parse_thing_model(raw: Any) -> ThingModel:
    """Check a thing-model document and build the model; errors name the offending field."""
    doc = _require_mapping(raw, "$")
    _check_unknown(doc, {"id", "name", "description", "properties", "events", "commands"}, "$")
    ident = doc.get("id")
    if not isinstance(ident, str) or not PRODUCT_ID.fullmatch(ident):
        raise ThingModelError("$.id", "must match [A-Za-z0-9_.:-]{1,128}")
    name = doc.get("name", ident)
    if not isinstance(name, str) or not name:
        raise ThingModelError("$.name", "must be a non-empty string")
    properties = _parse_fields(doc.get("properties"), "$.properties",
                               reserved=RESERVED_PROPERTIES)
    events: list[Event] = []
    for i, raw_event in enumerate(_require_list(doc.get("events"), "$.events")):
        path = f"$.events[{i}]"
        edoc = _require_mapping(raw_event, path)
        _check_unknown(edoc, {"id", "name", "level", "params", "description"}, path)
        level = edoc.get("level", "info")
        if level not in EVENT_LEVELS:
            raise ThingModelError(f"{path}.level", f"must be one of {', '.join(EVENT_LEVELS)}")
        events.append(Event(id=_ident(edoc, path), level=level, name=_opt_str(edoc, "name", path),
                            params=_parse_fields(edoc.get("params"), f"{path}.params",
                                                 reserved=RESERVED_PROPERTIES),
                            description=_opt_str(edoc, "description", path)))
    _unique(events, "$.events")
    commands: list[Command] = []
    for i, raw_cmd in enumerate(_require_list(doc.get("commands"), "$.commands")):
        path = f"$.commands[{i}]"
        cdoc = _require_mapping(raw_cmd, path)
        _check_unknown(cdoc, {"id", "name", "params", "result", "description"}, path)
        commands.append(Command(id=_ident(cdoc, path), name=_opt_str(cdoc, "name", path),
                                params=_parse_fields(cdoc.get("params"), f"{path}.params"),
                                result=_parse_fields(cdoc.get("result"), f"{path}.result"),
                                description=_opt_str(cdoc, "description", path)))
    _unique(commands, "$.commands")
    return ThingModel(id=ident, name=name, properties=properties, events=tuple(events),
                      commands=tuple(commands), description=_opt_str(doc, "description", "$"))
