"""Payload validation: every rejection code with its path, and the fast path agreeing with the
explaining path on random models and payloads."""

from __future__ import annotations

import json
import math
import string
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wulian.domain import validation
from wulian.domain.rejection import RejectCode, Rejection
from wulian.domain.thingmodel import INT_MAX, INT_MIN, parse_thing_model
from wulian.domain.validation import (
    MIN_TS_MS,
    CompiledModel,
    explain_event,
    explain_telemetry,
)

TS = 1_700_000_000_000

DOC = {
    "id": "all-types",
    "properties": [
        {"id": "i", "type": "int", "min": -10, "max": 10},
        {"id": "f", "type": "float", "min": -40, "max": 85.5},
        {"id": "b", "type": "bool"},
        {"id": "s", "type": "string", "max_length": 4},
        {"id": "e", "type": "enum", "values": ["ok", "fault"]},
        {"id": "big", "type": "int"},
        {"id": "free", "type": "float"},
        {"id": "text", "type": "string"},
    ],
    "events": [
        {"id": "fault", "level": "major", "params": [
            {"id": "code", "type": "int", "min": 0, "max": 999},
            {"id": "note", "type": "string", "max_length": 8}]},
        {"id": "ping"},
    ],
}
MODEL = CompiledModel(parse_thing_model(DOC))


def telemetry(payload: bytes) -> Any:
    return MODEL.decode_telemetry(payload)


# --- accepted ----------------------------------------------------------------------------


def test_an_object_becomes_one_record_in_model_order() -> None:
    got = telemetry(b'{"e": "ok", "i": 3, "f": 21.5, "b": true, "s": "abcd", "text": ""}')
    assert got == [(None, [("i", 3), ("f", 21.5), ("b", True), ("s", "abcd"), ("e", "ok"),
                           ("text", "")])]


def test_an_array_becomes_one_record_per_object() -> None:
    got = telemetry(b'[{"i": 1, "ts": %d}, {"i": 2}, {"f": 0.5, "ts": %d}]' % (TS, TS + 1))
    assert got == [(TS, [("i", 1)]), (None, [("i", 2)]), (TS + 1, [("f", 0.5)])]


def test_an_int_is_accepted_for_a_float_and_stored_as_float() -> None:
    got = telemetry(b'{"f": 20, "free": -3}')
    assert got == [(None, [("f", 20.0), ("free", -3.0)])]
    values = [v for _, v in got[0][1]]
    assert all(type(v) is float for v in values)


@pytest.mark.parametrize(("prop", "raw", "value"), [
    ("i", b"-10", -10), ("i", b"10", 10),
    ("f", b"-40", -40.0), ("f", b"-40.0", -40.0), ("f", b"85.5", 85.5),
    ("big", str(INT_MIN).encode(), INT_MIN), ("big", str(INT_MAX).encode(), INT_MAX),
    ("free", b"1.7976931348623157e308", 1.7976931348623157e308),
    ("free", b"-0.0", -0.0),
    ("s", '"温度传感"'.encode(), "温度传感"),  # four characters, twelve bytes: chars count
])
def test_values_exactly_at_a_bound_are_accepted(prop: str, raw: bytes, value: Any) -> None:
    got = telemetry(b'{"%s": %s}' % (prop.encode(), raw))
    assert got == [(None, [(prop, value)])]
    assert type(got[0][1][0][1]) is type(value)


def test_timestamp_bounds() -> None:
    assert telemetry(b'{"b": false, "ts": %d}' % MIN_TS_MS) == [(MIN_TS_MS, [("b", False)])]
    assert telemetry(b'{"b": false, "ts": %d}' % INT_MAX) == [(INT_MAX, [("b", False)])]


def test_repeated_key_last_wins_when_every_occurrence_is_valid() -> None:
    assert telemetry(b'{"i": 1, "i": 2}') == [(None, [("i", 2)])]


def test_whitespace_around_the_document_is_fine() -> None:
    assert telemetry(b' \r\n\t{"b": true}\n') == [(None, [("b", True)])]


def test_enum_string_and_emoji_lengths() -> None:
    assert telemetry('{"s": "😀😀😀😀"}'.encode()) == [(None, [("s", "😀😀😀😀")])]
    assert telemetry(b'{"text": "%s"}' % (b"x" * 1024)) == [(None, [("text", "x" * 1024)])]


def test_field_ids_that_are_not_possible_attribute_names_work() -> None:
    ids = ["__init__", "__dict__", "__slots__", "__weakref__", "p0", "t", "class", "_"]
    model = CompiledModel(parse_thing_model({"id": "odd", "properties": [
        {"id": ident, "type": "int"} for ident in ids]}))
    payload = json.dumps({ident: n for n, ident in enumerate(ids)}).encode()
    assert model.decode_telemetry(payload) == [(None, [(ident, n) for n, ident in enumerate(ids)])]
    # the decoder's internal attribute names are not JSON keys
    assert model.decode_telemetry(b'{"p1": 5}') == Rejection(
        RejectCode.UNKNOWN_PROPERTY, "$.p1", {"name": "p1"})


# --- refused -------------------------------------------------------------------------------

R = RejectCode
DEEP = b"[" * 100_000 + b"]" * 100_000

CASES: list[tuple[str, bytes, RejectCode, str | None, dict[str, Any]]] = [
    # malformed_json
    ("not json", b"temperature=20", R.MALFORMED_JSON, None, {}),
    ("empty bytes", b"", R.MALFORMED_JSON, None, {}),
    ("truncated", b'{"i": 1', R.MALFORMED_JSON, None, {}),
    ("trailing comma", b'{"i": 1,}', R.MALFORMED_JSON, None, {}),
    ("trailing garbage", b'{"i": 1} x', R.MALFORMED_JSON, None, {}),
    ("single quotes", b"{'i': 1}", R.MALFORMED_JSON, None, {}),
    ("NaN", b'{"f": NaN}', R.MALFORMED_JSON, None, {}),
    ("Infinity", b'{"free": Infinity}', R.MALFORMED_JSON, None, {}),
    ("float beyond double", b'{"free": 1e400}', R.MALFORMED_JSON, None, {}),
    ("invalid utf-8 in a string", b'{"s": "\xff"}', R.MALFORMED_JSON, None, {}),
    ("utf-8 surrogate bytes", b'{"s": "\xed\xa0\x80"}', R.MALFORMED_JSON, None, {}),
    ("lone surrogate escape", b'{"s": "\\ud800"}', R.MALFORMED_JSON, None, {}),
    ("raw control character", b'{"s": "a\x01"}', R.MALFORMED_JSON, None, {}),
    ("byte order mark", b'\xef\xbb\xbf{"i": 1}', R.MALFORMED_JSON, None, {}),
    ("nested too deeply", DEEP, R.MALFORMED_JSON, None, {}),
    ("deep inside a value", b'{"i": ' + DEEP + b"}", R.MALFORMED_JSON, None, {}),
    # bad_shape
    ("a number", b"5", R.BAD_SHAPE, "$", {"got": "int"}),
    ("a string", b'"hello"', R.BAD_SHAPE, "$", {"got": "string"}),
    ("null", b"null", R.BAD_SHAPE, "$", {"got": "null"}),
    ("a bool", b"true", R.BAD_SHAPE, "$", {"got": "bool"}),
    ("array of numbers", b"[1]", R.BAD_SHAPE, "$[0]", {"got": "int"}),
    ("array with an array", b'[{"i": 1}, []]', R.BAD_SHAPE, "$[1]", {"got": "array"}),
    ("array with null", b'[{"i": 1}, {"i": 2}, null]', R.BAD_SHAPE, "$[2]", {"got": "null"}),
    # empty_payload
    ("empty object", b"{}", R.EMPTY_PAYLOAD, "$", {}),
    ("empty array", b"[]", R.EMPTY_PAYLOAD, None, {}),
    ("only ts", b'{"ts": %d}' % TS, R.EMPTY_PAYLOAD, "$", {}),
    ("empty record in array", b'[{"i": 1}, {}]', R.EMPTY_PAYLOAD, "$[1]", {}),
    # unknown_property
    ("unknown property", b'{"zzz": 1}', R.UNKNOWN_PROPERTY, "$.zzz", {"name": "zzz"}),
    ("unknown property in array", b'[{"i": 1}, {"i": 1, "Temp": 1}]', R.UNKNOWN_PROPERTY,
     "$[1].Temp", {"name": "Temp"}),
    ("property names are case-sensitive", b'{"I": 1}', R.UNKNOWN_PROPERTY, "$.I", {"name": "I"}),
    # wrong_type, every type
    ("string for int", b'{"i": "1"}', R.WRONG_TYPE, "$.i", {"expected": "int", "got": "string"}),
    ("bool for int", b'{"i": true}', R.WRONG_TYPE, "$.i", {"expected": "int", "got": "bool"}),
    ("float for int", b'{"i": 1.5}', R.WRONG_TYPE, "$.i", {"expected": "int", "got": "float"}),
    ("whole float for int", b'{"i": 1.0}', R.WRONG_TYPE, "$.i", {"expected": "int",
                                                                  "got": "float"}),
    ("exponent for int", b'{"i": 1e1}', R.WRONG_TYPE, "$.i", {"expected": "int", "got": "float"}),
    ("null for int", b'{"i": null}', R.WRONG_TYPE, "$.i", {"expected": "int", "got": "null"}),
    ("bool for float", b'{"f": false}', R.WRONG_TYPE, "$.f", {"expected": "float",
                                                               "got": "bool"}),
    ("string for float", b'{"f": "20.5"}', R.WRONG_TYPE, "$.f", {"expected": "float",
                                                                  "got": "string"}),
    ("array for float", b'{"f": [1]}', R.WRONG_TYPE, "$.f", {"expected": "float",
                                                              "got": "array"}),
    ("int for bool", b'{"b": 1}', R.WRONG_TYPE, "$.b", {"expected": "bool", "got": "int"}),
    ("string for bool", b'{"b": "true"}', R.WRONG_TYPE, "$.b", {"expected": "bool",
                                                                 "got": "string"}),
    ("int for string", b'{"s": 1}', R.WRONG_TYPE, "$.s", {"expected": "string", "got": "int"}),
    ("object for string", b'{"s": {}}', R.WRONG_TYPE, "$.s", {"expected": "string",
                                                               "got": "object"}),
    ("int for enum", b'{"e": 0}', R.WRONG_TYPE, "$.e", {"expected": "enum", "got": "int"}),
    ("array for enum", b'{"e": ["ok"]}', R.WRONG_TYPE, "$.e", {"expected": "enum",
                                                                "got": "array"}),
    ("wrong type in 2nd record", b'[{"i": 1}, {"i": "x"}]', R.WRONG_TYPE, "$[1].i",
     {"expected": "int", "got": "string"}),
    # out_of_range, both bounds of each numeric type
    ("int above max", b'{"i": 11}', R.OUT_OF_RANGE, "$.i", {"value": 11, "min": -10, "max": 10}),
    ("int below min", b'{"i": -11}', R.OUT_OF_RANGE, "$.i", {"value": -11}),
    ("float above max", b'{"f": 85.50001}', R.OUT_OF_RANGE, "$.f", {"value": 85.50001}),
    ("float below min", b'{"f": -40.1}', R.OUT_OF_RANGE, "$.f", {"value": -40.1, "min": -40}),
    ("int above int64", b'{"big": %d}' % (INT_MAX + 1), R.OUT_OF_RANGE, "$.big",
     {"value": INT_MAX + 1, "min": None, "max": None}),
    ("int below int64", b'{"big": %d}' % (INT_MIN - 1), R.OUT_OF_RANGE, "$.big",
     {"value": INT_MIN - 1}),
    ("int beyond any float for a float", b'{"free": 1%s}' % (b"0" * 400), R.OUT_OF_RANGE,
     "$.free", {"min": None, "max": None}),
    ("out of range in 2nd record", b'[{"i": 1}, {"i": 99}]', R.OUT_OF_RANGE, "$[1].i", {}),
    # too_long
    ("string over max_length", b'{"s": "abcde"}', R.TOO_LONG, "$.s", {"length": 5, "max": 4}),
    ("string over the default", b'{"text": "%s"}' % (b"x" * 1025), R.TOO_LONG, "$.text",
     {"length": 1025, "max": 1024}),
    # invalid_enum
    ("enum value wrong case", b'{"e": "OK"}', R.INVALID_ENUM, "$.e",
     {"value": "OK", "allowed": "ok, fault"}),
    ("enum value empty", b'{"e": ""}', R.INVALID_ENUM, "$.e", {"value": ""}),
    # bad_timestamp
    ("ts in seconds", b'{"i": 1, "ts": 1700000000}', R.BAD_TIMESTAMP, "$.ts",
     {"value": "1700000000"}),
    ("ts negative", b'{"i": 1, "ts": -1}', R.BAD_TIMESTAMP, "$.ts", {"value": "-1"}),
    ("ts a float", b'{"i": 1, "ts": 1700000000000.5}', R.BAD_TIMESTAMP, "$.ts", {}),
    ("ts a whole float", b'{"i": 1, "ts": 1.7e12}', R.BAD_TIMESTAMP, "$.ts", {}),
    ("ts a string", b'{"i": 1, "ts": "1700000000000"}', R.BAD_TIMESTAMP, "$.ts", {}),
    ("ts a bool", b'{"i": 1, "ts": true}', R.BAD_TIMESTAMP, "$.ts", {}),
    ("ts null", b'{"i": 1, "ts": null}', R.BAD_TIMESTAMP, "$.ts", {"value": "None"}),
    ("ts just before 2000", b'{"i": 1, "ts": %d}' % (MIN_TS_MS - 1), R.BAD_TIMESTAMP, "$.ts", {}),
    ("ts beyond int64", b'{"i": 1, "ts": %d}' % (INT_MAX + 1), R.BAD_TIMESTAMP, "$.ts", {}),
    ("ts bad in 2nd record", b'[{"i": 1}, {"i": 1, "ts": 5}]', R.BAD_TIMESTAMP, "$[1].ts", {}),
    # msgspec checks every occurrence of a repeated key; so must the explaining path
    ("invalid first of repeated keys", b'{"i": 99, "i": 1}', R.OUT_OF_RANGE, "$.i", {}),
    ("invalid last of repeated keys", b'{"i": 1, "i": "x"}', R.WRONG_TYPE, "$.i", {}),
]


@pytest.mark.parametrize(("payload", "code", "path", "params"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_telemetry_refusals(payload: bytes, code: RejectCode, path: str | None,
                            params: dict[str, Any]) -> None:
    got = telemetry(payload)
    assert isinstance(got, Rejection), got
    assert (got.code, got.path) == (code, path)
    assert {k: got.params.get(k) for k in params} == params
    # the explaining path, asked directly, gives the very same answer
    assert explain_telemetry(MODEL.model, payload) == got
    # and the human text has every placeholder filled, in both languages
    for lang in ("en", "zh"):
        message = got.message(lang)
        assert "{" not in message, message
        assert (path is None) or message.endswith(f"({path})")


def test_malformed_json_says_where() -> None:
    got = telemetry(b'{"i": 1,}')
    assert isinstance(got, Rejection)
    assert got.params["detail"]
    assert "nested too deeply" in telemetry(DEEP).params["detail"]  # type: ignore[union-attr]


def test_huge_values_are_cut_in_messages() -> None:
    got = telemetry(b'{"free": 1%s}' % (b"0" * 4000))
    assert isinstance(got, Rejection) and got.code is R.OUT_OF_RANGE
    assert len(got.message("en")) < 200


# --- events --------------------------------------------------------------------------------


def test_event_accepted_with_params_and_ts() -> None:
    got = MODEL.decode_event("fault", b'{"note": "door", "code": 7, "ts": %d}' % TS)
    assert got == (TS, {"code": 7, "note": "door"})


@pytest.mark.parametrize("payload", [b"", b"{}"])
def test_event_without_params(payload: bytes) -> None:
    assert MODEL.decode_event("ping", payload) == (None, {})
    assert MODEL.decode_event("fault", payload) == (None, {})


EVENT_CASES: list[tuple[str, str, bytes, RejectCode, str | None, dict[str, Any]]] = [
    ("unknown event", "nope", b"{}", R.UNKNOWN_EVENT, None, {"event": "nope"}),
    ("unknown event, empty id", "", b"{}", R.UNKNOWN_EVENT, None, {"event": ""}),
    ("event ids are case-sensitive", "Fault", b"{}", R.UNKNOWN_EVENT, None, {"event": "Fault"}),
    ("unknown param", "fault", b'{"code": 1, "zzz": 2}', R.UNKNOWN_PARAM, "$.zzz",
     {"name": "zzz"}),
    ("param on an event without params", "ping", b'{"x": 1}', R.UNKNOWN_PARAM, "$.x", {}),
    ("param wrong type", "fault", b'{"code": "1"}', R.WRONG_TYPE, "$.code",
     {"expected": "int", "got": "string"}),
    ("param bool for int", "fault", b'{"code": false}', R.WRONG_TYPE, "$.code", {"got": "bool"}),
    ("param out of range", "fault", b'{"code": 1000}', R.OUT_OF_RANGE, "$.code", {"max": 999}),
    ("param too long", "fault", b'{"note": "123456789"}', R.TOO_LONG, "$.note", {"max": 8}),
    ("event ts in seconds", "fault", b'{"ts": 1700000000}', R.BAD_TIMESTAMP, "$.ts", {}),
    ("event array", "fault", b"[]", R.BAD_SHAPE, "$", {"got": "array"}),
    ("event number", "ping", b"1", R.BAD_SHAPE, "$", {"got": "int"}),
    ("event malformed", "fault", b'{"code":', R.MALFORMED_JSON, None, {}),
    ("event invalid utf-8", "fault", b'{"note": "\xc0"}', R.MALFORMED_JSON, None, {}),
    ("event nested too deeply", "fault", DEEP, R.MALFORMED_JSON, None, {}),
]


@pytest.mark.parametrize(("event", "payload", "code", "path", "params"),
                         [case[1:] for case in EVENT_CASES], ids=[c[0] for c in EVENT_CASES])
def test_event_refusals(event: str, payload: bytes, code: RejectCode, path: str | None,
                        params: dict[str, Any]) -> None:
    got = MODEL.decode_event(event, payload)
    assert isinstance(got, Rejection), got
    assert (got.code, got.path) == (code, path)
    assert {k: got.params.get(k) for k in params} == params
    definition = MODEL.model.event(event)
    if definition is not None:
        assert explain_event(definition, payload) == got
    for lang in ("en", "zh"):
        assert "{" not in got.message(lang)


def test_unknown_event_id_is_cut_in_the_rejection() -> None:
    got = MODEL.decode_event("x" * 10_000, b"{}")
    assert isinstance(got, Rejection) and len(got.params["event"]) <= 128


# --- the property that matters most: both paths mean the same -----------------------------

FIELD_IDS = ["a", "b", "c", "d", "e", "__init__", "p0", "t"]
JUNK: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(INT_MAX - 2, INT_MAX + 2)
    | st.integers(-10**30, 10**30) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=3),
    max_leaves=6)
NUMBER = st.integers(-1000, 1000) | st.floats(-1000, 1000, allow_nan=False)


@st.composite
def random_fields(draw: st.DrawFn) -> list[dict[str, Any]]:
    ids = draw(st.lists(st.sampled_from(FIELD_IDS), min_size=1, max_size=5, unique=True))
    fields = []
    for ident in ids:
        vtype = draw(st.sampled_from(["int", "float", "bool", "string", "enum"]))
        field: dict[str, Any] = {"id": ident, "type": vtype}
        if vtype == "int":
            edges = st.sampled_from([INT_MIN, INT_MIN + 1, -1, 0, 1, INT_MAX - 1, INT_MAX])
            lo, hi = sorted(draw(st.lists(st.integers(-50, 50) | edges, min_size=2,
                                          max_size=2)))
            field.update({k: v for k, v in (("min", lo), ("max", hi)) if draw(st.booleans())})
        elif vtype == "float":
            lo, hi = sorted(draw(st.lists(NUMBER, min_size=2, max_size=2)))
            field.update({k: v for k, v in (("min", lo), ("max", hi)) if draw(st.booleans())})
        elif vtype == "string" and draw(st.booleans()):
            field["max_length"] = draw(st.integers(1, 5))
        elif vtype == "enum":
            field["values"] = draw(st.lists(st.text(string.ascii_lowercase, min_size=1,
                                                    max_size=3), min_size=1, max_size=3,
                                            unique=True))
        fields.append(field)
    return fields


def one_in(n: int, draw: st.DrawFn) -> bool:
    """True about once in `n` draws (hypothesis favours the ends of a range, so not 0)."""
    return draw(st.integers(0, n - 1)) == n // 2


def valid_value(draw: st.DrawFn, field: dict[str, Any]) -> Any:
    """A value the field accepts."""
    vtype = field["type"]
    if vtype == "int":
        return draw(st.integers(field.get("min", INT_MIN), field.get("max", INT_MAX)))
    if vtype == "float":
        lo, hi = field.get("min"), field.get("max")
        floats = st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)
        first = -10**6 if lo is None else math.ceil(lo)
        last = 10**6 if hi is None else math.floor(hi)
        return draw(floats | st.integers(first, last) if first <= last else floats)
    if vtype == "bool":
        return draw(st.booleans())
    if vtype == "string":
        return draw(st.text(max_size=field.get("max_length", 8)))
    return draw(st.sampled_from(field["values"]))


def value_for(draw: st.DrawFn, field: dict[str, Any]) -> Any:
    """Plausible values for the field, near and across its bounds; sometimes junk."""
    vtype = field["type"]
    if one_in(10, draw):
        return draw(JUNK)
    if vtype in ("int", "float"):
        near = [field.get("min"), field.get("max")]
        near = [b for b in near if b is not None]
        options = st.integers(-100, 100) | st.sampled_from([INT_MIN, INT_MAX, INT_MAX + 1,
                                                            INT_MIN - 1, 0])
        if near:
            bound = draw(st.sampled_from(near))
            options |= st.sampled_from([bound, int(bound) - 1, int(bound) + 1])
            options |= st.floats(min_value=float(bound) - 2, max_value=float(bound) + 2)
        if vtype == "float":
            options |= st.floats(allow_nan=False, allow_infinity=False) | st.booleans()
        else:
            options |= st.sampled_from([1.0, 0.5, True])
        return draw(options)
    if vtype == "bool":
        return draw(st.booleans() | st.sampled_from([0, 1, "true"]))
    if vtype == "string":
        return draw(st.text(max_size=7))
    return draw(st.sampled_from(field["values"]) | st.text(string.ascii_lowercase, max_size=3))


@st.composite
def record_json(draw: st.DrawFn, fields: list[dict[str, Any]]) -> str:
    """One JSON object: a valid record half the time, else one with likely mistakes."""
    if draw(st.booleans()):
        chosen = draw(st.lists(st.sampled_from(fields), min_size=1, unique_by=lambda f: f["id"]))
        pairs = [(f["id"], valid_value(draw, f)) for f in chosen]
        if draw(st.booleans()):
            pairs.append(("ts", draw(st.integers(MIN_TS_MS, INT_MAX))))
        return json.dumps(dict(draw(st.permutations(pairs))))
    chosen = draw(st.lists(st.sampled_from(fields), min_size=0 if one_in(10, draw) else 1,
                           unique_by=lambda f: f["id"]))
    pairs = [(f["id"], value_for(draw, f)) for f in chosen]
    if one_in(4, draw):
        pairs.append(("ts", draw(st.sampled_from([TS, MIN_TS_MS, MIN_TS_MS - 1, 1_700_000_000,
                                                  -1, INT_MAX, INT_MAX + 1, 1.7e12, "1",
                                                  None]))))
    if one_in(8, draw):
        pairs.append((draw(st.sampled_from(["zzz", "A", "ts2", ""])), 1))
    if pairs and one_in(8, draw):  # a repeated key, as a careless device sends
        key = draw(st.sampled_from([k for k, _ in pairs]))
        spec = next((f for f in fields if f["id"] == key), {"type": "int"})
        pairs.insert(draw(st.integers(0, len(pairs))), (key, value_for(draw, spec)))
    pairs = draw(st.permutations(pairs))
    return "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}"


@st.composite
def telemetry_payloads(draw: st.DrawFn, fields: list[dict[str, Any]]) -> bytes:
    if one_in(20, draw):
        text = json.dumps(draw(JUNK))
    elif draw(st.booleans()):
        text = draw(record_json(fields))
    else:
        items = draw(st.lists(record_json(fields), min_size=0 if one_in(10, draw) else 1,
                              max_size=4))
        if one_in(10, draw):
            items.insert(0, draw(st.sampled_from(["null", "[]", "1", '"x"', "[{}]"])))
        text = "[" + ", ".join(items) + "]"
    payload = text.encode()
    if one_in(20, draw):  # cut or corrupt a valid document
        cut = draw(st.integers(0, len(payload)))
        payload = payload[:cut] + draw(st.binary(max_size=3))
    return payload


def typed(records: list[Any]) -> list[Any]:
    """Records with each value's type, so 20 and 20.0 are told apart."""
    return [(ts, [(k, type(v).__name__, v) for k, v in pairs]) for ts, pairs in records]


FAST_REFUSED = Rejection(RejectCode.OVERLOADED, "fast path refused")


def fast_only(model: CompiledModel, payload: bytes) -> Any:
    """The compiled decoder's own verdict, without the explaining fallback."""
    with mock.patch.object(validation, "explain_telemetry", lambda _m, _p: FAST_REFUSED):
        return model.decode_telemetry(payload)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fast_and_explaining_paths_agree_on_telemetry(data: st.DataObject) -> None:
    fields = data.draw(random_fields(), label="fields")
    payload = data.draw(telemetry_payloads(fields), label="payload")
    model = CompiledModel(parse_thing_model({"id": "m", "properties": fields}))
    fast = fast_only(model, payload)
    explained = explain_telemetry(model.model, payload)  # must never raise
    if isinstance(explained, Rejection):
        assert isinstance(explained.code, RejectCode)
        assert explained.code is not RejectCode.OVERLOADED
        explained.message("en")
        explained.message("zh")
        assert fast is FAST_REFUSED or (fast == explained and fast.code in (
            RejectCode.EMPTY_PAYLOAD,)), (fast, explained)
    else:
        assert isinstance(fast, list), (fast, explained)
        assert typed(fast) == typed(explained)
    # and the public method answers what the explaining path would have
    assert model.decode_telemetry(payload) == (explained if fast is FAST_REFUSED else fast)


@st.composite
def event_payloads(draw: st.DrawFn, fields: list[dict[str, Any]]) -> bytes:
    if one_in(8, draw):
        return draw(st.sampled_from([b"", b"[]", b"null", b'"x"'])) or json.dumps(
            draw(JUNK)).encode()
    payload = draw(record_json(fields)).encode()
    if one_in(10, draw):
        payload = payload[:draw(st.integers(0, len(payload)))]
    return payload


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fast_and_explaining_paths_agree_on_events(data: st.DataObject) -> None:
    fields = data.draw(random_fields(), label="params")
    payload = data.draw(event_payloads(fields), label="payload")
    model = CompiledModel(parse_thing_model({"id": "m", "events": [
        {"id": "ev", "params": fields}]}))
    event = model.model.events[0]
    with mock.patch.object(validation, "explain_event", lambda _e, _p: FAST_REFUSED):
        fast = model.decode_event("ev", payload)
    explained = explain_event(event, payload)
    if isinstance(explained, Rejection):
        assert isinstance(explained.code, RejectCode)
        assert fast is FAST_REFUSED, (fast, explained)
        explained.message("zh")
    else:
        assert fast is not FAST_REFUSED, explained
        ts, params = fast
        assert (ts, {k: (type(v), v) for k, v in params.items()}) == (
            explained[0], {k: (type(v), v) for k, v in explained[1].items()})
    assert model.decode_event("ev", payload) == (explained if fast is FAST_REFUSED else fast)
