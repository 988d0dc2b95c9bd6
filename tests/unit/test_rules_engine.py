"""The rule engine, every rule type driven by a clock the test controls (no sleeps)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from wulian.domain.device import Location
from wulian.domain.message import EventRecord, SeenRecord, Value, WriteBatch
from wulian.rules import GROUP, AlarmChange, ChangeKind, RuleEngine, parse_rule
from wulian.rules.conditions import haversine_m

MIN = 60_000


@dataclass(frozen=True)
class Dev:
    product: str = "aq"
    tags: dict[str, str] = field(default_factory=dict)
    location: Location | None = None


class Harness:
    """An engine, a registry of devices and a hand-turned clock."""

    def __init__(self, *conditions: dict[str, Any], devices: dict[str, Dev] | None = None,
                 **options: Any) -> None:
        self.now = 0
        self.devices = devices or {"d1": Dev()}
        docs = [{"id": f"r{i}", "name": f"rule {i}", "scope": {"product": "aq"},
                 "condition": c, **options} for i, c in enumerate(conditions)]
        self.engine = RuleEngine([parse_rule(d) for d in docs], lambda: self.now)

    def observe(self, batch: WriteBatch) -> list[AlarmChange]:
        return self.engine.observe(batch, self.devices.get)

    def point(self, ts: int, value: Value, prop: str = "t", device: str = "d1") -> list[str]:
        return kinds(self.observe(WriteBatch(points=[(device, prop, ts, value)])))

    def event(self, ts: int, params: dict[str, Any], device: str = "d1",
              name: str = "fault") -> list[str]:
        return kinds(self.observe(WriteBatch(
            events=[EventRecord(device, name, "major", ts, params)])))

    def seen(self, ts: int, device: str = "d1") -> list[str]:
        return kinds(self.observe(WriteBatch(seen={device: SeenRecord(ts, "mqtt", None)})))

    def tick(self, ts: int) -> list[str]:
        return kinds(self.engine.tick(ts))

    def alarm(self, device: str = "d1", rule: str = "r0") -> Any:
        return self.engine.alarms.get(rule, device)


def kinds(changes: list[AlarmChange]) -> list[str]:
    return [c.kind.value for c in changes]


def threshold(op: str, value: Any, prop: str = "t") -> dict[str, Any]:
    return {"type": "threshold", "property": prop, "op": op, "value": value}


@pytest.mark.parametrize(("op", "ref", "reading", "fires"), [
    (">", 80, 80.1, True), (">", 80, 80, False), (">=", 80, 80, True), ("<", 0, -1, True),
    ("<=", 0, 0.5, False), ("==", "open", "open", True), ("!=", "open", "open", False),
    ("between", [10, 20], 20, True), ("between", [10, 20], 20.5, False),
    ("outside", [10, 20], 9.9, True), ("outside", [10, 20], 10, False),
    (">", 80, "hot", False),
])
def test_threshold_operators(op: str, ref: Any, reading: Value, fires: bool) -> None:
    h = Harness(threshold(op, ref))
    assert h.point(1000, reading) == (["raised"] if fires else [])


def test_threshold_fires_once_updates_and_clears_when_it_stops_holding() -> None:
    h = Harness(threshold(">", 80))
    assert h.point(0, 70) == []
    assert h.point(1 * MIN, 85) == ["raised"]
    assert h.point(2 * MIN, 90) == []  # the same alarm, updated
    alarm = h.alarm()
    assert (alarm.count, alarm.value, alarm.last_ms, alarm.first_value) == (2, 90, 2 * MIN, 85)
    assert h.point(3 * MIN, 79) == ["cleared"]
    assert h.alarm() is None
    assert h.point(4 * MIN, 81) == ["raised"]  # a new episode is a new alarm
    assert h.alarm().id == f"r0/d1/{4 * MIN}"


def test_only_rules_of_the_device_product_and_property_are_met() -> None:
    h = Harness(threshold(">", 0), devices={"d1": Dev(), "x": Dev(product="other")})
    assert h.point(0, 5, device="x") == []
    assert h.point(0, 5, prop="humidity") == []
    assert h.point(0, 5, device="ghost") == []  # unregistered: nothing to judge
    assert h.point(0, 5) == ["raised"]


def test_late_points_do_not_rewrite_the_present() -> None:
    h = Harness(threshold(">", 80))
    assert h.point(10 * MIN, 50) == []
    assert h.point(5 * MIN, 99) == []


def test_for_duration_needs_the_condition_sustained() -> None:
    h = Harness(threshold(">", 80), **{"for": "5m"})
    assert h.point(0, 85) == []
    assert h.tick(4 * MIN) == []
    assert h.point(4 * MIN + 30_000, 70) == []  # dipped: the wait starts over
    assert h.point(5 * MIN, 90) == []
    assert h.tick(9 * MIN) == []
    assert h.tick(10 * MIN) == ["raised"]  # raised by time passing, not by a reading
    assert h.alarm().raised_ms == 10 * MIN


def test_flapping_around_a_threshold_with_hysteresis_is_one_alarm() -> None:
    wobble = [79, 81, 79.5, 80.5, 78, 82, 77, 81, 76, 80.2]
    plain = Harness(threshold(">", 80))
    raised_plain = sum(plain.point(i * MIN, v).count("raised") for i, v in enumerate(wobble))
    assert raised_plain == 5
    h = Harness(threshold(">", 80), hysteresis=5)
    log = [k for i, v in enumerate(wobble) for k in h.point(i * MIN, v)]
    assert log == ["raised"]
    assert h.alarm().count == 5
    assert h.point(20 * MIN, 75) == ["cleared"]  # back past the band


def test_explicit_clear_condition_and_clear_for() -> None:
    h = Harness(threshold(">", 80), clear=threshold("<", 60), clear_for="2m")
    assert h.point(0, 90) == ["raised"]
    assert h.point(1 * MIN, 70) == []
    assert h.point(2 * MIN, 50) == []
    assert h.tick(3 * MIN) == []
    assert h.tick(4 * MIN) == ["cleared"]


def test_rate_of_change_over_a_window() -> None:
    h = Harness({"type": "rate", "property": "level", "window": "5m", "op": ">", "value": 10})
    assert h.point(0, 100.0, "level") == []
    assert h.point(2 * MIN, 105.0, "level") == []
    assert h.point(4 * MIN, 111.0, "level") == ["raised"]  # +11 in 4 min
    assert h.point(8 * MIN, 112.0, "level") == ["cleared"]  # 111 → 112 within the window
    slow = Harness({"type": "rate", "property": "level", "window": "5m", "op": ">",
                    "value": 10})
    assert [k for i in range(30) for k in slow.point(i * MIN, 100.0 + 2 * i, "level")] == []


def test_no_data_is_decided_on_tick() -> None:
    h = Harness({"type": "no_data", "after": "10m"})
    assert h.tick(30 * MIN) == []  # never heard of: no opinion
    assert h.seen(0) == []
    assert h.tick(9 * MIN) == []
    assert h.tick(10 * MIN) == ["raised"]
    assert h.tick(11 * MIN) == []
    assert h.alarm().count == 1  # ticks are not repeated firings
    assert h.seen(12 * MIN) == ["cleared"]


def test_no_data_of_one_property_and_tracking_registered_devices() -> None:
    h = Harness({"type": "no_data", "after": "5m", "property": "t"},
                {"type": "no_data", "after": "5m"})
    h.engine.track("d1", h.devices["d1"], 0)
    assert h.seen(1 * MIN) == []
    assert h.point(1 * MIN, 20) == []
    assert h.seen(5 * MIN) == []  # heard from, but no temperature
    assert sorted(h.tick(6 * MIN)) == ["raised"]
    assert h.alarm(rule="r0") is not None and h.alarm(rule="r1") is None
    assert h.point(7 * MIN, 21) == ["cleared"]


def test_event_with_a_parameter_filter_latches_until_cleared() -> None:
    h = Harness({"type": "event", "event": "fault", "where": {"code": {"in": [3, 4]}}})
    assert h.event(0, {"code": 2}) == []
    assert h.event(1 * MIN, {"code": 3}) == ["raised"]
    assert h.event(2 * MIN, {"code": 4}) == []
    assert h.alarm().count == 2
    assert h.tick(60 * MIN) == []  # a momentary event never clears itself
    assert h.event(61 * MIN, {"code": 9}) == []
    change = h.engine.clear(h.alarm().id, by="ops")
    assert change.kind is ChangeKind.CLEARED
    assert h.event(62 * MIN, {"code": 3}) == ["raised"]


def test_event_within_a_window_clears_when_the_window_passes() -> None:
    h = Harness({"type": "event", "event": "door_open", "within": "2m"})
    assert h.event(0, {}, name="door_open") == ["raised"]
    assert h.tick(1 * MIN) == []
    assert h.tick(2 * MIN) == ["cleared"]


def test_composite_on_one_device() -> None:
    h = Harness({"type": "and", "of": [
        threshold(">", 60),
        {"type": "not", "of": threshold("==", True, prop="fan")}]})
    assert h.point(0, 70) == []  # the fan state is not known yet
    assert h.point(1, True, prop="fan") == []
    assert h.point(2, False, prop="fan") == ["raised"]
    assert h.point(3, 50) == ["cleared"]
    either = Harness({"type": "or", "of": [threshold(">", 60), threshold("<", 0)]})
    assert either.point(0, -5) == ["raised"]


def test_aggregate_across_a_tag_group_in_a_sliding_window() -> None:
    devices = {"h1": Dev(tags={"district": "haidian"}), "h2": Dev(tags={"district": "haidian"}),
               "h3": Dev(tags={"district": "haidian"}), "c1": Dev(tags={"district": "chaoyang"})}
    h = Harness({"type": "aggregate", "property": "pm25", "fn": "mean", "window": "10m",
                 "op": ">", "value": 75, "min_devices": 2}, devices=devices)
    h.engine.put_rule(parse_rule({"id": "r0", "scope": {"tags": {"district": "haidian"}},
                                  "condition": h.engine.rules[0].doc["condition"]}))
    assert h.point(0, 500, "pm25", "c1") == []  # not in the group
    assert h.point(0, 100, "pm25", "h1") == []  # one device is below min_devices
    # h2 reports three times: it counts once, so the mean is (100 + 60) / 2 = 80
    for i in range(3):
        h.point(MIN + i, 60, "pm25", "h2")
    alarm = h.alarm(device=GROUP)
    assert alarm is not None and alarm.value == 80
    assert h.point(2 * MIN, 30, "pm25", "h3") == ["cleared"]  # (100 + 60 + 30) / 3
    assert h.point(9 * MIN, 200, "pm25", "h3") == ["raised"]  # (100 + 60 + 115) / 3
    # the window slides: h1's and h2's readings age out; one device alone is no verdict
    assert h.tick(12 * MIN) == []
    assert h.point(12 * MIN, 20, "pm25", "h1") == ["cleared"]  # (20 + 115) / 2


def test_aggregate_count_of_reporting_devices() -> None:
    devices = {f"s{i}": Dev() for i in range(3)}
    h = Harness({"type": "aggregate", "property": "t", "fn": "count", "window": "5m",
                 "op": "<", "value": 2}, devices=devices)
    assert h.point(0, 1, device="s0") == ["raised"]  # one of three reporting
    assert h.point(1, 1, device="s1") == ["cleared"]
    assert h.tick(6 * MIN) == ["raised"]  # nobody reported in the last 5 minutes


SQUARE = [[39.9, 116.3], [39.9, 116.4], [40.0, 116.4], [40.0, 116.3]]


@pytest.mark.parametrize(("lat", "lon", "inside"), [
    (39.95, 116.35, True), (39.9, 116.35, True),  # on an edge
    (40.0, 116.4, True),  # on a corner
    (39.95, 116.3, True), (39.8999, 116.35, False), (39.95, 116.4001, False),
])
def test_geofence_polygon_edges(lat: float, lon: float, inside: bool) -> None:
    h = Harness({"type": "geofence", "when": "inside", "polygon": SQUARE})
    h.point(0, lat, "lat")
    assert h.point(0, lon, "lon") == (["raised"] if inside else [])


def test_geofence_crossing_a_circle_and_registry_location() -> None:
    center = (39.99, 116.31)
    fence = {"type": "geofence", "when": "outside",
             "circle": {"center": list(center), "radius_m": 500}}
    h = Harness(fence)
    h.point(0, 39.99, "lat")
    assert h.point(0, 116.31, "lon") == []
    step = 0.000_01
    lat = 39.99 + 0.004  # ~445 m north: inside
    while haversine_m(center, (lat + step, 116.31)) <= 500:
        lat += step
    assert h.point(1, lat, "lat") == []  # the last position within the circle
    assert h.point(2, lat + step, "lat") == ["raised"]  # one step over the line
    assert h.point(3, lat, "lat") == ["cleared"]
    parked = Harness(fence, devices={"d1": Dev(location=Location(40.5, 116.31))})
    assert parked.point(0, 1, "speed") == []  # not a geofence property: not evaluated
    assert parked.tick(1) == []
    parked.engine.put_rule(parse_rule({"id": "r0", "scope": {"product": "aq"}, "condition": {
        "type": "and", "of": [fence, threshold(">=", 0, prop="speed")]}}))
    assert parked.point(2, 1, "speed") == ["raised"]  # from the registry's location


def daily_cycle(days: int, step_ms: int, seed: int = 7) -> list[tuple[int, float]]:
    """Temperature-like readings: a 24 h sinusoid (amplitude 10) with Gaussian noise."""
    rng = random.Random(seed)
    day = 86_400_000
    return [(ts, 20 + 10 * math.sin(2 * math.pi * ts / day) + rng.gauss(0, 0.5))
            for ts in range(0, days * day, step_ms)]


def test_anomaly_flags_a_spike_but_not_the_daily_cycle() -> None:
    h = Harness({"type": "anomaly", "property": "t", "window": 288, "warmup": 50,
                 "sensitivity": 5})
    readings = daily_cycle(days=4, step_ms=5 * MIN)
    log = [k for ts, v in readings for k in h.point(ts, v)]
    assert log == []  # four days of an ordinary cycle: nothing unusual
    last = readings[-1][0]
    assert h.point(last + 5 * MIN, 95.0) == ["raised"]
    assert h.point(last + 10 * MIN, 20.0) == ["cleared"]


def test_anomaly_waits_for_warm_up_and_watches_one_direction() -> None:
    h = Harness({"type": "anomaly", "property": "t", "window": 50, "warmup": 20,
                 "direction": "down"})
    assert [k for i in range(19) for k in h.point(i, 10.0 + (i % 3))] == []
    assert h.point(19, 500.0) == []  # an upward jump, and still warming up anyway
    for i in range(20, 40):
        h.point(i, 10.0 + (i % 3))
    assert h.point(40, 500.0) == []
    assert h.point(41, -400.0) == ["raised"]


def test_rules_can_be_replaced_and_removed() -> None:
    h = Harness(threshold(">", 80))
    assert h.point(0, 90) == ["raised"]
    dropped = h.engine.remove_rule("r0")
    assert [a.rule_id for a in dropped] == ["r0"] and len(h.engine.alarms) == 0
    assert h.point(1, 95) == []
    h.engine.put_rule(parse_rule({"id": "r0", "scope": {"devices": ["d1"]},
                                  "condition": threshold(">", 90), "enabled": False}))
    assert h.point(2, 99) == []


def test_a_device_moved_into_a_rules_scope_is_judged_once_the_engine_is_told() -> None:
    devices = {"d1": Dev(tags={"district": "chaoyang"})}
    engine = RuleEngine([parse_rule({
        "id": "hd", "scope": {"product": "aq", "tags": {"district": "haidian"}},
        "condition": {"type": "threshold", "property": "t", "op": ">", "value": 10}})],
        lambda: 0)
    hot = WriteBatch(points=[("d1", "t", 1, 50.0)])
    assert engine.observe(hot, devices.get) == []  # not in scope
    devices["d1"] = Dev(tags={"district": "haidian"})  # re-tagged in the registry
    engine.devices_changed()
    assert kinds(engine.observe(WriteBatch(points=[("d1", "t", 2, 51.0)]), devices.get)) == \
        ["raised"]
