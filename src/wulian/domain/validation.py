"""Decode and validate device payloads against a thing model.

Two paths with one meaning. The fast path is a msgspec decoder compiled once per product
(typed, bounded struct: decode and validation in C). Only when it refuses a payload does the
explaining path walk the document in Python to name the exact reason and place, so the
common case pays nothing for good error messages.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any

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


def _field_type(f: Field) -> Any:
    if f.type == "int":
        lo = INT_MIN if f.min is None else max(INT_MIN, int(f.min))
        hi = INT_MAX if f.max is None else min(INT_MAX, int(f.max))
        return Annotated[int, msgspec.Meta(ge=lo, le=hi)]
    if f.type == "float":
        meta = {k: v for k, v in (("ge", f.min), ("le", f.max)) if v is not None}
        return Annotated[float, msgspec.Meta(**meta)] if meta else float
    if f.type == "bool":
        return bool
    if f.type == "string":
        return Annotated[str, msgspec.Meta(max_length=f.max_length or DEFAULT_STRING_MAX)]
    # enum: a Literal of the allowed strings, checked in C
    from typing import Literal

    return Literal[tuple(f.values)]


def _struct(name: str, fields: tuple[Field, ...]) -> type[msgspec.Struct]:
    spec: list[tuple[str, Any, Any]] = [
        ("ts", Annotated[int, msgspec.Meta(ge=MIN_TS_MS, le=INT_MAX)] | msgspec.UnsetType,
         msgspec.UNSET)]
    spec += [(f.id, _field_type(f) | msgspec.UnsetType, msgspec.UNSET) for f in fields]
    return msgspec.defstruct(name, spec, forbid_unknown_fields=True, omit_defaults=True)


class CompiledModel:
    """A thing model ready for the hot path: one compiled decoder per payload kind."""

    __slots__ = ("_event_decoders", "_names", "_telemetry", "model")

    def __init__(self, model: ThingModel) -> None:
        self.model = model
        struct = _struct("Telemetry", model.properties)
        self._telemetry: msgspec.json.Decoder[Any] = msgspec.json.Decoder(struct | list[struct])
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
        except (msgspec.DecodeError, msgspec.ValidationError):
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
            return Rejection(RejectCode.UNKNOWN_EVENT, params={"event": event_id})
        decoder, names = entry
        try:
            item = decoder.decode(payload or b"{}")
        except (msgspec.DecodeError, msgspec.ValidationError):
            event = self.model.event(event_id)
            assert event is not None
            return explain_event(event, payload or b"{}")
        values = msgspec.structs.astuple(item)
        params = {names[k]: v for k, v in enumerate(values) if k and v is not msgspec.UNSET}
        ts = values[0]
        return (None if ts is msgspec.UNSET else ts), params


# --- the explaining path ---------------------------------------------------------------

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
        lo = INT_MIN if f.min is None else f.min
        hi = INT_MAX if f.max is None else f.max
        if not lo <= value <= hi:
            return Rejection(RejectCode.OUT_OF_RANGE, path, {"value": value, "min": f.min,
                                                             "max": f.max})
    elif f.type == "float":
        if got not in ("int", "float"):
            return Rejection(RejectCode.WRONG_TYPE, path, {"expected": "float", "got": got})
        if isinstance(value, float) and not math.isfinite(value):
            return Rejection(RejectCode.OUT_OF_RANGE, path, {"value": value, "min": f.min,
                                                             "max": f.max})
        if (f.min is not None and value < f.min) or (f.max is not None and value > f.max):
            return Rejection(RejectCode.OUT_OF_RANGE, path, {"value": value, "min": f.min,
                                                             "max": f.max})
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


def _check_ts(value: Any, path: str) -> Rejection | None:
    if _type_name(value) != "int" or not MIN_TS_MS <= value <= INT_MAX:
        return Rejection(RejectCode.BAD_TIMESTAMP, path, {"value": str(value)[:32]})
    return None


def _check_object(obj: Any, path: str, lookup: Callable[[str], Field | None],
                  unknown: RejectCode) -> Rejection | None:
    if not isinstance(obj, dict):
        return Rejection(RejectCode.BAD_SHAPE, path, {"got": _type_name(obj)})
    for key, value in obj.items():
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


def _loads(payload: bytes) -> Any | Rejection:
    try:
        return msgspec.json.decode(payload)
    except msgspec.DecodeError as exc:
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
        pairs = [(k, v) for k, v in item.items() if k != "ts"]
        if not pairs:
            return Rejection(RejectCode.EMPTY_PAYLOAD, path)
        records.append((item.get("ts"), pairs))
    return records


def explain_event(event: Event, payload: bytes) -> tuple[int | None, dict[str, Any]] | Rejection:
    """Validate an event payload in plain Python, naming the first problem found."""
    doc = _loads(payload)
    if isinstance(doc, Rejection):
        return doc
    params = {p.id: p for p in event.params}
    problem = _check_object(doc, "$", params.get, RejectCode.UNKNOWN_PARAM)
    if problem is not None:
        return problem
    return doc.get("ts"), {k: v for k, v in doc.items() if k != "ts"}
