"""Decode and validate device payloads against a thing model.

Two paths with one meaning. The fast path is a msgspec decoder compiled once per product
(typed, bounded struct: decode and validation in C). Only when it refuses a payload does the
explaining path walk the document in Python to name the exact reason and place, so the
common case pays nothing for good error messages.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

import msgspec

from wulian.domain.message import Value
from wulian.domain.rejection import RejectCode, Rejection
from wulian.domain.thingmodel import (
    DEFAULT_STRING_MAX,
    INT_MAX,
    INT_MIN,
    Event,
    Field,
    ThingModel,
)

# Device clocks in seconds instead of milliseconds are the commonest mistake: a `ts` before
# 2000-01-01 in epoch ms is refused rather than stored in 1970.
MIN_TS_MS = 946_684_800_000

Record = tuple[int | None, list[tuple[str, Value]]]
"""One reported sample: its timestamp (None: stamp on arrival) and (property, value) pairs."""


# Both paths take their bounds from these two helpers, so they cannot drift apart.
def _int_bounds(f: Field) -> tuple[int, int]:
    lo = INT_MIN if f.min is None else max(INT_MIN, int(f.min))
    hi = INT_MAX if f.max is None else min(INT_MAX, int(f.max))
    return lo, hi


def _float_bounds(f: Field) -> tuple[float | None, float | None]:
    # msgspec compares a float with float bounds; so does the explaining path.
    return (None if f.min is None else float(f.min)), (None if f.max is None else float(f.max))


def _field_type(f: Field) -> Any:
    if f.type == "int":
        lo, hi = _int_bounds(f)
        return Annotated[int, msgspec.Meta(ge=lo, le=hi)]
    if f.type == "float":
        fmin, fmax = _float_bounds(f)
        if fmin is None and fmax is None:
            return float
        return Annotated[float, msgspec.Meta(ge=fmin, le=fmax)]
    if f.type == "bool":
        return bool
    if f.type == "string":
        return Annotated[str, msgspec.Meta(max_length=f.max_length or DEFAULT_STRING_MAX)]
    # enum: a Literal of the allowed strings, checked in C
    return Literal[tuple(f.values)]


def _struct(name: str, fields: tuple[Field, ...]) -> type[msgspec.Struct]:
    # Attributes get neutral names and the JSON keys are given with `name=`: a field id such
    # as `__init__` or `__dict__` is a fine JSON key but not a possible Struct attribute.
    spec: list[tuple[str, Any, Any]] = [
        ("t", Annotated[int, msgspec.Meta(ge=MIN_TS_MS, le=INT_MAX)] | msgspec.UnsetType,
         msgspec.field(default=msgspec.UNSET, name="ts"))]
    spec += [(f"p{i}", _field_type(f) | msgspec.UnsetType,
              msgspec.field(default=msgspec.UNSET, name=f.id)) for i, f in enumerate(fields)]
    return msgspec.defstruct(name, spec, forbid_unknown_fields=True, omit_defaults=True)


# What a decoder may raise on hostile bytes: DecodeError/ValidationError, UnicodeDecodeError
# (a ValueError) for invalid UTF-8 in a string, RecursionError for deep nesting.
_DECODE_ERRORS = (ValueError, RecursionError)


class CompiledModel:
    """A thing model ready for the hot path: one compiled decoder per payload kind."""

    __slots__ = ("_event_decoders", "_names", "_telemetry", "model")

    def __init__(self, model: ThingModel) -> None:
        self.model = model
        struct = _struct("Telemetry", model.properties)
        shape: Any = struct | list[struct]  # type: ignore[valid-type]
        self._telemetry: msgspec.json.Decoder[Any] = msgspec.json.Decoder(shape)
        self._names = ("ts", *(f.id for f in model.properties))
        self._event_decoders: dict[str, tuple[msgspec.json.Decoder[Any], tuple[str, ...]]] = {}
        for ev in model.events:
            es = _struct(f"Event_{ev.id}", ev.params)
            self._event_decoders[ev.id] = (msgspec.json.Decoder(es),
                                           ("ts", *(p.id for p in ev.params)))

    def decode_telemetry(self, payload: bytes) -> list[Record] | Rejection:
        """Decode a telemetry payload (object or array of objects) or say why not."""
        try:
            decoded = self._telemetry.decode(payload)
        except _DECODE_ERRORS:
            return explain_telemetry(self.model, payload)
        items = decoded if isinstance(decoded, list) else (decoded,)
        if not items:
            return Rejection(RejectCode.EMPTY_PAYLOAD)
        names = self._names
        records: list[Record] = []
        unset = msgspec.UNSET
        for i, item in enumerate(items):
            values = msgspec.structs.astuple(item)
            pairs = [(names[k], v) for k, v in enumerate(values) if k and v is not unset]
            if not pairs:
                path = f"$[{i}]" if isinstance(decoded, list) else "$"
                return Rejection(RejectCode.EMPTY_PAYLOAD, path)
            ts = values[0]
            records.append((None if ts is unset else ts, pairs))
        return records

    def decode_event(self, event_id: str, payload: bytes) -> tuple[int | None, dict[str, Any]] | \
            Rejection:
        """Decode an event's parameters or say why not."""
        entry = self._event_decoders.get(event_id)
        if entry is None:
            return Rejection(RejectCode.UNKNOWN_EVENT, params={"event": event_id[:128]})
        decoder, names = entry
        try:
            item = decoder.decode(payload or b"{}")
        except _DECODE_ERRORS:
            event = self.model.event(event_id)
            assert event is not None
            return explain_event(event, payload or b"{}")
        values = msgspec.structs.astuple(item)
        params = {names[k]: v for k, v in enumerate(values) if k and v is not msgspec.UNSET}
        ts = values[0]
        return (None if ts is msgspec.UNSET else ts), params


# --- the explaining path ---------------------------------------------------------------
# It must accept exactly what the compiled decoders accept. msgspec checks every occurrence
# of a repeated key (the last one wins), so this path reads objects as key/value pairs.


class _Object:
    """A JSON object as its key/value pairs, in document order, repeats included."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def check_value(f: Field, value: Any, path: str) -> Rejection | None:
    """Check one value against its field; None when it is acceptable."""
    got = _type_name(value)
    if f.type == "int":
        if got != "int":
            return Rejection(RejectCode.WRONG_TYPE, path, {"expected": "int", "got": got})
        lo, hi = _int_bounds(f)
        if not lo <= value <= hi:
            return Rejection(RejectCode.OUT_OF_RANGE, path, {"value": _show(value),
                                                             "min": f.min, "max": f.max})
    elif f.type == "float":
        if got not in ("int", "float"):
            return Rejection(RejectCode.WRONG_TYPE, path, {"expected": "float", "got": got})
        number = _as_float(value)
        fmin, fmax = _float_bounds(f)
        if (number is None or (fmin is not None and number < fmin)
                or (fmax is not None and number > fmax)):
            return Rejection(RejectCode.OUT_OF_RANGE, path, {"value": _show(value),
                                                             "min": f.min, "max": f.max})
    elif f.type == "bool":
        if got != "bool":
            return Rejection(RejectCode.WRONG_TYPE, path, {"expected": "bool", "got": got})
    elif f.type == "string":
        if got != "string":
            return Rejection(RejectCode.WRONG_TYPE, path, {"expected": "string", "got": got})
        limit = f.max_length or DEFAULT_STRING_MAX
        if len(value) > limit:
            return Rejection(RejectCode.TOO_LONG, path, {"length": len(value), "max": limit})
    elif f.type == "enum":
        if got != "string":
            return Rejection(RejectCode.WRONG_TYPE, path, {"expected": "enum", "got": got})
        if value not in f.values:
            return Rejection(RejectCode.INVALID_ENUM, path,
                             {"value": value[:64], "allowed": ", ".join(f.values)})
    return None


def _as_float(value: int | float) -> float | None:
    """The value as the float msgspec would store, or None when no finite float is it."""
    try:
        number = float(value)
    except OverflowError:  # an int of 309+ digits
        return None
    return number if math.isfinite(number) else None


def _show(value: Any) -> Any:
    """A value for a message: huge integers are cut rather than printed in full."""
    text = str(value)
    return value if len(text) <= 32 else text[:29] + "..."


def _stored(f: Field, value: Any) -> Any:
    """A checked value as the compiled decoder returns it (floats as float)."""
    return float(value) if f.type == "float" else value


def _check_ts(value: Any, path: str) -> Rejection | None:
    if _type_name(value) != "int" or not MIN_TS_MS <= value <= INT_MAX:
        return Rejection(RejectCode.BAD_TIMESTAMP, path, {"value": str(value)[:32]})
    return None


def _check_object(obj: Any, path: str, lookup: Callable[[str], Field | None],
                  unknown: RejectCode) -> Rejection | None:
    if not isinstance(obj, _Object):
        return Rejection(RejectCode.BAD_SHAPE, path, {"got": _type_name(obj)})
    for key, value in obj.pairs:
        sub = f"{path}.{key}"
        if key == "ts":
            problem = _check_ts(value, sub)
        else:
            f = lookup(key)
            problem = (Rejection(unknown, sub, {"name": key[:64]}) if f is None
                       else check_value(f, value, sub))
        if problem is not None:
            return problem
    return None


def _values(obj: _Object, fields: Iterable[Field]) -> tuple[int | None, list[tuple[str, Any]]]:
    """The checked object's ts and (id, value) pairs in the model's order, last repeat wins."""
    last = dict(obj.pairs)
    return (last.get("ts"),
            [(f.id, _stored(f, last[f.id])) for f in fields if f.id in last])


def _loads(payload: bytes) -> Any | Rejection:
    try:
        # The verdict on well-formedness comes from the parser the fast path uses ...
        msgspec.json.decode(payload)
    except RecursionError:
        return Rejection(RejectCode.MALFORMED_JSON, params={"detail": "nested too deeply"})
    except ValueError as exc:  # msgspec.DecodeError, or UnicodeDecodeError in a string
        return Rejection(RejectCode.MALFORMED_JSON, params={"detail": str(exc)[:120]})
    try:
        # ... and the standard library reads objects as pairs, so repeated keys are seen.
        return json.loads(bytes(payload).decode("utf-8"), object_pairs_hook=_Object)
    except (ValueError, RecursionError) as exc:  # not expected after msgspec accepted it
        return Rejection(RejectCode.MALFORMED_JSON, params={"detail": str(exc)[:120]})


def explain_telemetry(model: ThingModel, payload: bytes) -> list[Record] | Rejection:
    """Validate a telemetry payload in plain Python, naming the first problem found."""
    doc = _loads(payload)
    if isinstance(doc, Rejection):
        return doc
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        return Rejection(RejectCode.EMPTY_PAYLOAD)
    records: list[Record] = []
    for i, item in enumerate(items):
        path = f"$[{i}]" if isinstance(doc, list) else "$"
        problem = _check_object(item, path, model.property, RejectCode.UNKNOWN_PROPERTY)
        if problem is not None:
            return problem
        ts, pairs = _values(item, model.properties)
        if not pairs:
            return Rejection(RejectCode.EMPTY_PAYLOAD, path)
        records.append((ts, pairs))
    return records


def explain_event(event: Event, payload: bytes) -> tuple[int | None, dict[str, Any]] | Rejection:
    """Validate an event payload in plain Python, naming the first problem found."""
    doc = _loads(payload or b"{}")
    if isinstance(doc, Rejection):
        return doc
    params = {p.id: p for p in event.params}
    problem = _check_object(doc, "$", params.get, RejectCode.UNKNOWN_PARAM)
    if problem is not None:
        return problem
    ts, pairs = _values(doc, event.params)
    return ts, dict(pairs)
