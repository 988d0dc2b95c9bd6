"""Thing-model documents: what imports, what round-trips, and the exact path of every refusal."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wulian.domain.thingmodel import (
    EVENT_LEVELS,
    INT_MAX,
    INT_MIN,
    MAX_STRING_LENGTH,
    Command,
    Event,
    Field,
    ThingModel,
    ThingModelError,
    parse_thing_model,
)
from wulian.domain.validation import CompiledModel

# --- the document --------------------------------------------------------------


def test_env_sensor_imports_as_written(env_sensor_doc: dict) -> None:
    model = parse_thing_model(env_sensor_doc)
    assert model.id == "env-sensor"
    assert model.name == "Environment sensor"
    assert [p.id for p in model.properties] == ["temperature", "humidity", "status", "setpoint"]
    temperature = model.property("temperature")
    assert temperature == Field(id="temperature", type="float", unit="°C", min=-40, max=85)
    assert model.property("status") == Field(id="status", type="enum", values=("ok", "fault"))
    setpoint = model.property("setpoint")
    assert setpoint is not None and setpoint.access == "rw"
    assert model.property("humidity") is not None
    assert model.property("humidity").access == "r"  # type: ignore[union-attr]
    assert model.events == (Event(id="fault", level="major",
                                  params=(Field(id="code", type="int"),)),)
    assert model.commands == (Command(id="reboot", params=(
        Field(id="delay_s", type="int", min=0, max=3600),)),)


def test_env_sensor_round_trips_through_to_doc(env_sensor_doc: dict) -> None:
    original = copy.deepcopy(env_sensor_doc)
    model = parse_thing_model(env_sensor_doc)
    assert env_sensor_doc == original  # parsing does not touch the caller's document
    doc = model.to_doc()
    assert doc == original
    # ... and exactly as JSON: ints stay ints (`-40`, not `-40.0`)
    assert json.dumps(doc, sort_keys=True) == json.dumps(original, sort_keys=True)
    assert parse_thing_model(json.loads(json.dumps(doc))) == model


def test_lookups_by_id(env_sensor_doc: dict) -> None:
    model = parse_thing_model(env_sensor_doc)
    assert model.property("nope") is None
    assert model.event("fault") is model.events[0]
    assert model.event("nope") is None
    assert model.command("reboot") is model.commands[0]
    assert model.command("nope") is None


def test_defaults_are_filled_in() -> None:
    model = parse_thing_model({"id": "p", "events": [{"id": "e"}]})
    assert model.name == "p"
    assert model.properties == () and model.commands == ()
    assert model.events[0].level == "info" and model.events[0].params == ()
    assert parse_thing_model({"id": "p", "properties": None}).properties == ()


def test_descriptions_and_names_survive_the_round_trip() -> None:
    doc = {"id": "p", "name": "P", "description": "",
           "properties": [{"id": "x", "type": "int", "name": "", "description": "d"}],
           "events": [{"id": "e", "level": "info", "name": "", "description": "an event",
                       "params": []}],
           "commands": [{"id": "c", "name": "", "description": "a command", "params": [],
                         "result": [{"id": "ok", "type": "bool"}]}]}
    model = parse_thing_model(doc)
    assert model.events[0].description == "an event"
    assert model.commands[0].description == "a command"
    assert model.to_doc() == doc


@pytest.mark.parametrize("level", EVENT_LEVELS)
def test_every_event_level_is_accepted(level: str) -> None:
    model = parse_thing_model({"id": "p", "events": [{"id": "e", "level": level}]})
    assert model.events[0].level == level


@pytest.mark.parametrize("product_id", ["a", "A" * 128, "env-sensor_v2.1:cn"])
def test_good_product_ids(product_id: str) -> None:
    assert parse_thing_model({"id": product_id}).id == product_id


def test_whole_float_bounds_of_an_int_become_ints() -> None:
    prop = parse_thing_model({"id": "p", "properties": [
        {"id": "x", "type": "int", "min": -5.0, "max": 5.0}]}).properties[0]
    assert (prop.min, prop.max) == (-5, 5)
    assert type(prop.min) is int and type(prop.max) is int


def test_int64_edges_are_allowed_as_int_bounds() -> None:
    prop = parse_thing_model({"id": "p", "properties": [
        {"id": "x", "type": "int", "min": INT_MIN, "max": INT_MAX}]}).properties[0]
    assert (prop.min, prop.max) == (INT_MIN, INT_MAX)


@pytest.mark.parametrize("length", [1, MAX_STRING_LENGTH])
def test_max_length_edges(length: int) -> None:
    prop = parse_thing_model({"id": "p", "properties": [
        {"id": "s", "type": "string", "max_length": length}]}).properties[0]
    assert prop.max_length == length


def test_min_equal_to_max_is_allowed() -> None:
    prop = parse_thing_model({"id": "p", "properties": [
        {"id": "x", "type": "float", "min": 1.5, "max": 1.5}]}).properties[0]
    assert prop.min == prop.max == 1.5


@pytest.mark.parametrize("ident", ["a", "_", "A_b9", "x" * 64, "__init__", "class"])
def test_good_field_ids(ident: str) -> None:
    model = parse_thing_model({"id": "p", "properties": [{"id": ident, "type": "int"}]})
    assert model.property(ident) is not None
    CompiledModel(model)  # any id the parser accepts compiles


# --- refusals: each names the offending field exactly --------------------------------------

GOOD_PROPS: list[dict[str, Any]] = [{"id": "a", "type": "int"}, {"id": "b", "type": "bool"}]


def with_prop(prop: Any) -> dict[str, Any]:
    """A document whose third property (index 2) is `prop`."""
    return {"id": "p", "properties": [*copy.deepcopy(GOOD_PROPS), prop]}


def with_event(event: Any) -> dict[str, Any]:
    return {"id": "p", "events": [{"id": "ok"}, event]}


def with_param(param: Any) -> dict[str, Any]:
    return {"id": "p", "events": [{"id": "e", "params": [{"id": "a", "type": "int"}, param]}]}


def with_command(command: Any) -> dict[str, Any]:
    return {"id": "p", "commands": [{"id": "ok"}, command]}


P = "$.properties[2]"
E = "$.events[1]"
EP = "$.events[0].params[1]"
C = "$.commands[1]"

REFUSALS: list[tuple[str, Any, str]] = [
    # the document itself
    ("doc is an array", [], "$"),
    ("doc is a string", "env-sensor", "$"),
    ("doc is null", None, "$"),
    ("unknown top-level field", {"id": "p", "colour": "red"}, "$.colour"),
    ("version is not a field", {"id": "p", "version": "1"}, "$.version"),
    ("missing id", {"name": "x"}, "$.id"),
    ("empty id", {"id": ""}, "$.id"),
    ("id too long", {"id": "a" * 129}, "$.id"),
    ("id bad char", {"id": "a/b"}, "$.id"),
    ("id trailing newline", {"id": "env\n"}, "$.id"),
    ("id not a string", {"id": 7}, "$.id"),
    ("empty name", {"id": "p", "name": ""}, "$.name"),
    ("name not a string", {"id": "p", "name": 5}, "$.name"),
    ("null name", {"id": "p", "name": None}, "$.name"),
    ("description not a string", {"id": "p", "description": 1}, "$.description"),
    ("properties an object", {"id": "p", "properties": {"a": {}}}, "$.properties"),
    ("properties a string", {"id": "p", "properties": "a"}, "$.properties"),
    ("events an object", {"id": "p", "events": {}}, "$.events"),
    ("commands a number", {"id": "p", "commands": 1}, "$.commands"),
    # a property's shape
    ("property is a string", with_prop("temperature"), P),
    ("property is an array", with_prop([]), P),
    ("unknown property field", with_prop({"id": "x", "type": "int", "colour": 1}), f"{P}.colour"),
    ("property without id", with_prop({"type": "int"}), f"{P}.id"),
    ("property id starts with digit", with_prop({"id": "1x", "type": "int"}), f"{P}.id"),
    ("property id with dash", with_prop({"id": "a-b", "type": "int"}), f"{P}.id"),
    ("property id empty", with_prop({"id": "", "type": "int"}), f"{P}.id"),
    ("property id 65 chars", with_prop({"id": "x" * 65, "type": "int"}), f"{P}.id"),
    ("property id newline", with_prop({"id": "x\n", "type": "int"}), f"{P}.id"),
    ("property id not a string", with_prop({"id": 1, "type": "int"}), f"{P}.id"),
    ("property id ts is reserved", with_prop({"id": "ts", "type": "int"}), f"{P}.id"),
    ("duplicate property id", with_prop({"id": "a", "type": "float"}), f"{P}.id"),
    ("missing type", with_prop({"id": "x"}), f"{P}.type"),
    ("unknown type", with_prop({"id": "x", "type": "double"}), f"{P}.type"),
    ("type not a string", with_prop({"id": "x", "type": ["int"]}), f"{P}.type"),
    ("type null", with_prop({"id": "x", "type": None}), f"{P}.type"),
    ("name not a string", with_prop({"id": "x", "type": "int", "name": 1}), f"{P}.name"),
    ("unit not a string", with_prop({"id": "x", "type": "int", "unit": ["C"]}), f"{P}.unit"),
    ("description not a string", with_prop({"id": "x", "type": "int", "description": {}}),
     f"{P}.description"),
    # bounds
    ("int min not whole", with_prop({"id": "x", "type": "int", "min": 1.5}), f"{P}.min"),
    ("int max not whole", with_prop({"id": "x", "type": "int", "max": 2.5}), f"{P}.max"),
    ("int min below int64", with_prop({"id": "x", "type": "int", "min": INT_MIN - 1}), f"{P}.min"),
    ("int max above int64", with_prop({"id": "x", "type": "int", "max": INT_MAX + 1}), f"{P}.max"),
    ("int max huge float", with_prop({"id": "x", "type": "int", "max": 1e300}), f"{P}.max"),
    ("int min > max", with_prop({"id": "x", "type": "int", "min": 5, "max": 4}), f"{P}.min"),
    ("float min > max", with_prop({"id": "x", "type": "float", "min": 0.5, "max": 0.25}),
     f"{P}.min"),
    ("min is a string", with_prop({"id": "x", "type": "float", "min": "0"}), f"{P}.min"),
    ("max is a bool", with_prop({"id": "x", "type": "int", "max": True}), f"{P}.max"),
    ("min is an array", with_prop({"id": "x", "type": "float", "min": [0]}), f"{P}.min"),
    ("min is NaN", with_prop({"id": "x", "type": "float", "min": float("nan")}), f"{P}.min"),
    ("max is infinite", with_prop({"id": "x", "type": "float", "max": float("inf")}), f"{P}.max"),
    ("min beyond any float", with_prop({"id": "x", "type": "float", "min": 10**400}), f"{P}.min"),
    ("min on a bool", with_prop({"id": "x", "type": "bool", "min": 0}), f"{P}.min"),
    ("max alone on a string", with_prop({"id": "x", "type": "string", "max": 9}), f"{P}.max"),
    ("max alone on an enum", with_prop({"id": "x", "type": "enum", "values": ["a"], "max": 1}),
     f"{P}.max"),
    # max_length
    ("max_length on an int", with_prop({"id": "x", "type": "int", "max_length": 4}),
     f"{P}.max_length"),
    ("max_length on an enum", with_prop({"id": "x", "type": "enum", "values": ["a"],
                                         "max_length": 4}), f"{P}.max_length"),
    ("max_length zero", with_prop({"id": "x", "type": "string", "max_length": 0}),
     f"{P}.max_length"),
    ("max_length negative", with_prop({"id": "x", "type": "string", "max_length": -1}),
     f"{P}.max_length"),
    ("max_length fractional", with_prop({"id": "x", "type": "string", "max_length": 1.5}),
     f"{P}.max_length"),
    ("max_length a bool", with_prop({"id": "x", "type": "string", "max_length": True}),
     f"{P}.max_length"),
    ("max_length a string", with_prop({"id": "x", "type": "string", "max_length": "10"}),
     f"{P}.max_length"),
    ("max_length too large", with_prop({"id": "x", "type": "string",
                                        "max_length": MAX_STRING_LENGTH + 1}), f"{P}.max_length"),
    ("max_length absurd", with_prop({"id": "x", "type": "string", "max_length": 10**30}),
     f"{P}.max_length"),
    # enum values
    ("enum without values", with_prop({"id": "x", "type": "enum"}), f"{P}.values"),
    ("enum values empty", with_prop({"id": "x", "type": "enum", "values": []}), f"{P}.values"),
    ("enum values duplicate", with_prop({"id": "x", "type": "enum", "values": ["a", "b", "a"]}),
     f"{P}.values"),
    ("enum value not a string", with_prop({"id": "x", "type": "enum", "values": ["a", 1]}),
     f"{P}.values"),
    ("enum value null", with_prop({"id": "x", "type": "enum", "values": [None]}), f"{P}.values"),
    ("enum value empty string", with_prop({"id": "x", "type": "enum", "values": ["a", ""]}),
     f"{P}.values"),
    ("enum values a string", with_prop({"id": "x", "type": "enum", "values": "ab"}),
     f"{P}.values"),
    ("values on a string", with_prop({"id": "x", "type": "string", "values": ["a"]}),
     f"{P}.values"),
    ("values on an int", with_prop({"id": "x", "type": "int", "values": []}), f"{P}.values"),
    # access
    ("access w", with_prop({"id": "x", "type": "int", "access": "w"}), f"{P}.access"),
    ("access RW", with_prop({"id": "x", "type": "int", "access": "RW"}), f"{P}.access"),
    ("access a number", with_prop({"id": "x", "type": "int", "access": 1}), f"{P}.access"),
    ("access null", with_prop({"id": "x", "type": "int", "access": None}), f"{P}.access"),
    # events
    ("event is a string", with_event("fault"), E),
    ("unknown event field", with_event({"id": "e", "severity": "major"}), f"{E}.severity"),
    ("event without id", with_event({"level": "info"}), f"{E}.id"),
    ("event id bad", with_event({"id": "a b"}), f"{E}.id"),
    ("event id newline", with_event({"id": "e\n"}), f"{E}.id"),
    ("duplicate event id", with_event({"id": "ok"}), f"{E}.id"),
    ("unknown level", with_event({"id": "e", "level": "fatal"}), f"{E}.level"),
    ("level upper case", with_event({"id": "e", "level": "MAJOR"}), f"{E}.level"),
    ("level a number", with_event({"id": "e", "level": 3}), f"{E}.level"),
    ("level null", with_event({"id": "e", "level": None}), f"{E}.level"),
    ("event name not a string", with_event({"id": "e", "name": 1}), f"{E}.name"),
    ("event description not a string", with_event({"id": "e", "description": 1}),
     f"{E}.description"),
    ("event params an object", with_event({"id": "e", "params": {}}), f"{E}.params"),
    # event params
    ("param not an object", with_param(1), EP),
    ("param unknown field", with_param({"id": "x", "type": "int", "unit": "s", "u": 1}),
     f"{EP}.u"),
    ("param bad type", with_param({"id": "x", "type": "integer"}), f"{EP}.type"),
    ("duplicate param id", with_param({"id": "a", "type": "string"}), f"{EP}.id"),
    ("param ts is reserved", with_param({"id": "ts", "type": "int"}), f"{EP}.id"),
    ("param enum without values", with_param({"id": "x", "type": "enum"}), f"{EP}.values"),
    ("param int min not whole", with_param({"id": "x", "type": "int", "min": 0.1}), f"{EP}.min"),
    # commands
    ("command is a number", with_command(1), C),
    ("unknown command field", with_command({"id": "c", "timeout": 5}), f"{C}.timeout"),
    ("command without id", with_command({"params": []}), f"{C}.id"),
    ("command id bad", with_command({"id": "re-boot"}), f"{C}.id"),
    ("duplicate command id", with_command({"id": "ok"}), f"{C}.id"),
    ("command name not a string", with_command({"id": "c", "name": False}), f"{C}.name"),
    ("command params a string", with_command({"id": "c", "params": "x"}), f"{C}.params"),
    ("command result an object", with_command({"id": "c", "result": {}}), f"{C}.result"),
    ("command param bad access", with_command({"id": "c", "params": [
        {"id": "x", "type": "int", "access": "x"}]}), f"{C}.params[0].access"),
    ("duplicate command param", with_command({"id": "c", "params": [
        {"id": "x", "type": "int"}, {"id": "y", "type": "int"}, {"id": "x", "type": "int"}]}),
     f"{C}.params[2].id"),
    ("duplicate command result", with_command({"id": "c", "result": [
        {"id": "x", "type": "int"}, {"id": "x", "type": "bool"}]}), f"{C}.result[1].id"),
    ("command result enum duplicate values", with_command({"id": "c", "result": [
        {"id": "x", "type": "enum", "values": ["a", "a"]}]}), f"{C}.result[0].values"),
]


@pytest.mark.parametrize(("doc", "path"), [(doc, path) for _, doc, path in REFUSALS],
                         ids=[name for name, _, _ in REFUSALS])
def test_refusal_names_the_offending_field(doc: Any, path: str) -> None:
    with pytest.raises(ThingModelError) as caught:
        parse_thing_model(doc)
    assert caught.value.path == path
    assert caught.value.problem
    assert str(caught.value) == f"{path}: {caught.value.problem}"


def test_thing_model_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^\$\.id: "):
        parse_thing_model({"id": ""})


# --- round trip of random valid models ----------------------------------------------------

IDENTS = st.builds(lambda head, tail: head + tail, st.sampled_from("abcxyzAZ_"),
                   st.text("abz09_", max_size=6))
TEXT = st.text(max_size=12)


@st.composite
def field_docs(draw: st.DrawFn, ident: str) -> dict[str, Any]:
    vtype = draw(st.sampled_from(["int", "float", "bool", "string", "enum"]))
    doc: dict[str, Any] = {"id": ident, "type": vtype}
    for key in ("name", "unit", "description"):
        if draw(st.booleans()):
            doc[key] = draw(TEXT)
    if vtype == "int":
        bounds = sorted(draw(st.lists(st.integers(INT_MIN, INT_MAX), min_size=2, max_size=2)))
    elif vtype == "float":
        number = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**6, 10**6)
        bounds = sorted(draw(st.lists(number, min_size=2, max_size=2)))
    else:
        bounds = []
    if bounds:
        if draw(st.booleans()):
            doc["min"] = bounds[0]
        if draw(st.booleans()):
            doc["max"] = bounds[1]
    if vtype == "string" and draw(st.booleans()):
        doc["max_length"] = draw(st.integers(1, MAX_STRING_LENGTH))
    if vtype == "enum":
        doc["values"] = draw(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=5,
                                      unique=True))
    if draw(st.booleans()):
        doc["access"] = "rw"
    return doc


@st.composite
def field_lists(draw: st.DrawFn, max_size: int = 5) -> list[dict[str, Any]]:
    ids = draw(st.lists(IDENTS, max_size=max_size, unique=True))
    return [draw(field_docs(ident)) for ident in ids]


@st.composite
def model_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A valid thing-model document in canonical form (every default written out)."""
    doc: dict[str, Any] = {
        "id": draw(st.from_regex(r"[A-Za-z0-9_.:-]{1,20}", fullmatch=True)),
        "name": draw(st.text(min_size=1, max_size=12)),
    }
    if draw(st.booleans()):
        doc["description"] = draw(TEXT)
    doc["properties"] = draw(field_lists())
    doc["events"] = [
        {"id": ident, "level": draw(st.sampled_from(EVENT_LEVELS)),
         "params": draw(field_lists(3))}
        for ident in draw(st.lists(IDENTS, max_size=3, unique=True))]
    doc["commands"] = []
    for ident in draw(st.lists(IDENTS, max_size=3, unique=True)):
        command: dict[str, Any] = {"id": ident, "params": draw(field_lists(3))}
        result = draw(field_lists(3))
        if result:
            command["result"] = result
        doc["commands"].append(command)
    return doc


@settings(max_examples=150, deadline=None)
@given(model_docs())
def test_any_valid_document_round_trips_and_compiles(doc: dict[str, Any]) -> None:
    model = parse_thing_model(doc)
    assert model.to_doc() == doc
    assert parse_thing_model(json.loads(json.dumps(model.to_doc()))) == model
    compiled = CompiledModel(model)  # never an exception for a model the parser accepted
    assert compiled.model is model


def test_thing_model_built_in_code_knows_its_properties() -> None:
    model = ThingModel(id="p", name="p", properties=(Field(id="x", type="bool"),))
    assert model.property("x") == Field(id="x", type="bool")
    assert model == parse_thing_model({"id": "p", "properties": [{"id": "x", "type": "bool"}]})


def test_replace_gives_an_independent_model() -> None:
    model = parse_thing_model({"id": "p", "properties": [{"id": "a", "type": "int"}]})
    changed = dataclasses.replace(model, properties=(Field(id="b", type="bool"),))
    assert model.property("a") is not None and model.property("b") is None
    assert changed.property("b") is not None and changed.property("a") is None
