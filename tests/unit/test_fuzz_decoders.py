"""Every decoder fuzzed: whatever a client sends, the answer is a result or a Rejection /
ThingModelError — never another exception (one would reach the pipeline and a batch)."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.common import ENV_SENSOR
from wulian.domain.rejection import RejectCode, Rejection
from wulian.domain.thingmodel import ThingModel, ThingModelError, parse_thing_model
from wulian.domain.validation import CompiledModel, explain_event, explain_telemetry

MODEL = CompiledModel(parse_thing_model({
    **ENV_SENSOR,
    "properties": [*ENV_SENSOR["properties"],
                   {"id": "label", "type": "string", "max_length": 3},
                   {"id": "count", "type": "int", "min": 0},
                   {"id": "on", "type": "bool"}],
    "events": [*ENV_SENSOR["events"],
               {"id": "note", "params": [{"id": "text", "type": "string"},
                                         {"id": "ratio", "type": "float"}]}]}))
KEYS = ["temperature", "humidity", "status", "setpoint", "label", "count", "on", "ts", "code",
        "text", "ratio", "x", ""]

SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10))
JSON: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=5),
    max_leaves=12)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_telemetry(payload: bytes) -> None:
    for got in (MODEL.decode_telemetry(payload), explain_telemetry(MODEL.model, payload)):
        if isinstance(got, Rejection):
            assert isinstance(got.code, RejectCode)
            got.to_dict("en")
            got.to_dict("zh")
        else:
            assert isinstance(got, list) and got
            for ts, pairs in got:
                assert ts is None or isinstance(ts, int)
                assert pairs and all(MODEL.model.property(k) is not None for k, _ in pairs)


def check_event(event_id: str, payload: bytes) -> None:
    results = [MODEL.decode_event(event_id, payload)]
    event = MODEL.model.event(event_id)
    if event is not None:
        results.append(explain_event(event, payload))
    for got in results:
        if isinstance(got, Rejection):
            assert isinstance(got.code, RejectCode)
            got.message("zh")
        else:
            ts, params = got
            assert ts is None or isinstance(ts, int)
            assert isinstance(params, dict)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_into_telemetry(payload: bytes) -> None:
    check_telemetry(payload)


@FUZZ
@given(st.binary(max_size=200), st.sampled_from(["fault", "note", "nope", ""]))
def test_random_bytes_into_events(payload: bytes, event_id: str) -> None:
    check_event(event_id, payload)


@FUZZ
@given(JSON)
def test_random_json_into_telemetry(doc: Any) -> None:
    check_telemetry(json.dumps(doc).encode())


@FUZZ
@given(st.lists(JSON, max_size=4))
def test_random_json_arrays_into_telemetry(items: list[Any]) -> None:
    check_telemetry(json.dumps(items).encode())


@FUZZ
@given(JSON, st.sampled_from(["fault", "note", "nope"]))
def test_random_json_into_events(doc: Any, event_id: str) -> None:
    check_event(event_id, json.dumps(doc).encode())


@FUZZ
@given(st.text(st.characters(exclude_categories=()), max_size=60))
def test_random_text_into_telemetry(text: str) -> None:
    # any code point, lone surrogates included: raw (invalid UTF-8) and as \uXXXX escapes
    check_telemetry(text.encode("utf-8", "surrogatepass"))
    check_telemetry(json.dumps({"label": text}).encode())
    check_event("note", json.dumps({"text": text}).encode())


@FUZZ
@given(st.binary(min_size=1, max_size=40), st.integers(0, 60))
def test_random_bytes_spliced_into_valid_json(junk: bytes, at: int) -> None:
    valid = b'[{"temperature": 21.5, "status": "ok", "ts": 1700000000000}, {"count": 3}]'
    at = min(at, len(valid))
    check_telemetry(valid[:at] + junk + valid[at:])
    check_telemetry(valid[:at] + junk)


def test_pathological_payloads() -> None:
    for payload in [b"[" * 200_000, b"{" * 200_000, b'{"a":' * 100_000,
                    b'{"temperature": ' + b"9" * 5000 + b"}", b'{"count": -' + b"9" * 5000 + b"}",
                    b'{"label": "' + b"\\u0000" * 1000 + b'"}', b"\x00" * 100, b"\xff\xfe{}",
                    b'{"temperature": 1e999999}', b'{"status": "\\udfff\\ud800"}',
                    json.dumps([{"count": 1}] * 10_000).encode()]:
        check_telemetry(payload)
        check_event("note", payload)


# --- thing-model documents ----------------------------------------------------------------

MODEL_KEYS = ["id", "name", "type", "min", "max", "max_length", "values", "access", "level",
              "params", "result", "properties", "events", "commands", "unit", "description"]
MODEL_JSON: st.SearchStrategy[Any] = st.recursive(
    SCALARS | st.sampled_from(["int", "float", "bool", "string", "enum", "rw", "r", "major",
                               "x", "ts", "__init__", "__dict__", "a\n", 10**400, 2**63, 1e308,
                               -(2**63) - 1, 10**30, 1 << 20, (1 << 20) + 1]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(MODEL_KEYS) | st.text(max_size=3), inner, max_size=6),
    max_leaves=20)


def check_model_doc(doc: Any) -> None:
    try:
        model = parse_thing_model(doc)
    except ThingModelError as exc:
        assert exc.path.startswith("$")
        return
    assert isinstance(model, ThingModel)
    compiled = CompiledModel(model)  # anything accepted compiles ...
    assert parse_thing_model(model.to_doc()) == model
    # ... and `ts` stays the timestamp, whatever the model defines
    for event in model.events:
        got = compiled.decode_event(event.id, b'{"ts": "yesterday"}')
        assert isinstance(got, Rejection) and got.code is RejectCode.BAD_TIMESTAMP
    got = compiled.decode_telemetry(b'{"ts": "yesterday"}')
    assert isinstance(got, Rejection) and got.code is RejectCode.BAD_TIMESTAMP


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MODEL_JSON)
def test_random_json_trees_as_thing_models(doc: Any) -> None:
    check_model_doc(doc)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON tree, as the keys and indexes that reach it."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_valid_documents_with_one_node_replaced(data: st.DataObject) -> None:
    # Random trees rarely get past `$.id`; mutating a valid document reaches every check.
    doc = copy.deepcopy(ENV_SENSOR)
    doc["commands"][0]["result"] = [{"id": "ok", "type": "bool"}]  # type: ignore[index]
    where = data.draw(st.sampled_from(paths(doc)[1:]), label="where")
    replacement = data.draw(MODEL_JSON, label="replacement")
    node: Any = doc
    for step in where[:-1]:
        node = node[step]
    if isinstance(node, dict) and data.draw(st.booleans(), label="rename the key instead"):
        node[data.draw(st.text(max_size=5), label="new key")] = node.pop(where[-1])
    else:
        node[where[-1]] = replacement
    check_model_doc(doc)
