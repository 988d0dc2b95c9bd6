"""Rule documents: every type parses, malformed ones are refused with the field named."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wulian.rules.conditions import (
    Aggregate,
    Anomaly,
    Composite,
    EventOccurred,
    Geofence,
    NoData,
    RateOfChange,
    Threshold,
)
from wulian.rules.model import RuleError, Severity, parse_duration, parse_rule

SCOPE = {"product": "aq-sensor"}


def rule(condition: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": "r1", "name": "test", "scope": SCOPE, "condition": condition, **extra}


EXAMPLES: dict[str, dict[str, Any]] = {
    "threshold": {"type": "threshold", "property": "temperature", "op": ">", "value": 80},
    "between": {"type": "threshold", "property": "ph", "op": "outside", "value": [6.5, 8.5]},
    "rate": {"type": "rate", "property": "water_level", "window": "5m", "op": ">",
             "value": 10},
    "no_data": {"type": "no_data", "after": "10m"},
    "event": {"type": "event", "event": "fault", "where": {"code": {"in": [3, 4]}}},
    "and": {"type": "and", "of": [
        {"type": "threshold", "property": "temperature", "op": ">", "value": 60},
        {"type": "not", "of": {"type": "threshold", "property": "fan", "op": "==",
                               "value": True}}]},
    "aggregate": {"type": "aggregate", "property": "pm25", "fn": "mean", "window": "10m",
                  "op": ">", "value": 75},
    "geofence": {"type": "geofence", "when": "outside",
                 "circle": {"center": [39.99, 116.31], "radius_m": 500}},
    "polygon": {"type": "geofence", "when": "inside",
                "polygon": [[39.9, 116.3], [39.9, 116.4], [40.0, 116.4], [40.0, 116.3]]},
    "anomaly": {"type": "anomaly", "property": "flow", "window": 288, "warmup": 50,
                "sensitivity": 5},
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_documented_example_parses(name: str) -> None:
    parsed = parse_rule(rule(EXAMPLES[name], scope={"tags": {"district": "haidian"}}))
    assert parsed.scope.tags == (("district", "haidian"),)
    kinds = {"threshold": Threshold, "between": Threshold, "rate": RateOfChange,
             "no_data": NoData, "event": EventOccurred, "and": Composite,
             "aggregate": Aggregate, "geofence": Geofence, "polygon": Geofence,
             "anomaly": Anomaly}
    assert isinstance(parsed.condition, kinds[name])


def test_defaults_and_options() -> None:
    parsed = parse_rule(rule(EXAMPLES["threshold"], severity="critical", **{"for": "5m"},
                             hysteresis=5))
    assert parsed.severity is Severity.CRITICAL and parsed.for_ms == 300_000
    assert isinstance(parsed.clear, Threshold)
    assert (parsed.clear.op, parsed.clear.value) == ("<=", 75)
    plain = parse_rule(rule(EXAMPLES["threshold"]))
    assert plain.severity is Severity.MAJOR and plain.clear is None and plain.enabled
    assert parse_rule(rule(EXAMPLES["event"])).latched
    assert parse_rule(rule(EXAMPLES["aggregate"])).group


@pytest.mark.parametrize(("raw", "ms"), [("5m", 300_000), ("30s", 30_000), ("1.5h", 5_400_000),
                                         ("250ms", 250), ("1d", 86_400_000), (1500, 1500)])
def test_durations(raw: Any, ms: int) -> None:
    assert parse_duration(raw, "$.for") == ms


@pytest.mark.parametrize(("doc", "path"), [
    ({"id": "r1", "scope": SCOPE}, "$.condition"),
    (rule(EXAMPLES["threshold"], id="bad id"), "$.id"),
    (rule(EXAMPLES["threshold"], severity="huge"), "$.severity"),
    (rule(EXAMPLES["threshold"], scope={}), "$.scope"),
    (rule(EXAMPLES["threshold"], scope={"tags": {"district": 3}}), "$.scope.tags.district"),
    (rule(EXAMPLES["threshold"], **{"for": "5 minutes"}), "$.for"),
    (rule(EXAMPLES["threshold"], surprise=1), "$.surprise"),
    (rule({**EXAMPLES["threshold"], "op": "=>"}), "$.condition.op"),
    (rule({**EXAMPLES["threshold"], "value": [1]}), "$.condition.value"),
    (rule({**EXAMPLES["between"], "value": [9, 1]}), "$.condition.value"),
    (rule({**EXAMPLES["threshold"], "property": "1abc"}), "$.condition.property"),
    (rule({"type": "magic"}), "$.condition.type"),
    (rule({"type": "and", "of": [EXAMPLES["threshold"], {"type": "threshold"}]}),
     "$.condition.of[1].op"),
    (rule({"type": "and", "of": [EXAMPLES["aggregate"]]}), "$.condition.of[0]"),
    (rule({**EXAMPLES["event"], "where": {"code": {"like": 3}}}),
     "$.condition.where.code.like"),
    (rule({**EXAMPLES["rate"], "window": "0s"}), "$.condition.window"),
    (rule({**EXAMPLES["geofence"], "circle": {"center": [91, 0], "radius_m": 5}}),
     "$.condition.circle.center[0]"),
    (rule({**EXAMPLES["polygon"], "polygon": [[0, 0], [1, 1]]}), "$.condition.polygon"),
    (rule({**EXAMPLES["anomaly"], "sensitivity": 0}), "$.condition.sensitivity"),
    (rule(EXAMPLES["no_data"], hysteresis=2), "$.hysteresis"),
    (rule(EXAMPLES["aggregate"], clear=EXAMPLES["threshold"]), "$.clear"),
])
def test_malformed_rules_name_the_field(doc: dict[str, Any], path: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_rule(doc)
    assert caught.value.path == path


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
field_names = st.sampled_from(["type", "property", "op", "value", "of", "window", "after",
                               "event", "where", "fn", "when", "polygon", "circle",
                               "sensitivity", "warmup", "min_devices", "within", "center",
                               "radius_m", "direction"])
conditions = st.recursive(
    st.fixed_dictionaries({"type": st.sampled_from(
        ["threshold", "rate", "no_data", "event", "aggregate", "geofence", "anomaly"])},
        optional={"property": st.sampled_from(["t", "pm25", "", 3]),
                  "op": st.sampled_from([">", "between", "in", "?"]), "value": json_values,
                  "window": json_values, "after": json_values, "event": json_values,
                  "where": json_values, "fn": json_values, "when": json_values,
                  "circle": json_values, "polygon": json_values}),
    lambda inner: st.fixed_dictionaries({"type": st.sampled_from(["and", "or", "not"]),
                                         "of": st.lists(inner, max_size=3) | inner})
    | st.dictionaries(field_names, inner | json_values, max_size=4),
    max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(doc=st.fixed_dictionaries({}, optional={
    "id": st.sampled_from(["r1", "", "a b", 7]), "scope": json_values | st.just(SCOPE),
    "condition": conditions | json_values, "severity": json_values, "for": json_values,
    "clear": conditions, "hysteresis": json_values, "enabled": json_values,
    "name": json_values}))
def test_fuzzed_rules_only_ever_raise_rule_error(doc: dict[str, Any]) -> None:
    try:
        parse_rule(doc)
    except RuleError as error:
        assert error.path.startswith("$")


@settings(max_examples=100, deadline=None)
@given(raw=json_values)
def test_fuzzed_documents_of_any_shape(raw: Any) -> None:
    with contextlib.suppress(RuleError):
        parse_rule(raw)


def test_product_shorthand_beside_the_condition() -> None:
    parsed = parse_rule({"id": "r1", "product": "aq-sensor", "condition": EXAMPLES["event"]})
    assert parsed.scope.products == ("aq-sensor",)
    with pytest.raises(RuleError) as caught:
        parse_rule({**rule(EXAMPLES["event"]), "product": "aq-sensor"})
    assert caught.value.path == "$.product"
