"""`/api/v1/rules` and `/api/v1/alarms` over a real store, with the rules service running."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fixtures.api import Api, running_api
from tests.fixtures.common import ENV_SENSOR

HOT = {"id": "hot", "name": "Too hot", "severity": "critical", "product": "env-sensor",
       "condition": {"type": "threshold", "property": "temperature", "op": ">", "value": 30},
       "hysteresis": 2}
HOT_YAML = """
id: hot-yaml
name: 太热了
severity: major
scope: {product: env-sensor, tags: {room: lab}}
condition: {type: threshold, property: temperature, op: ">=", value: 40}
for: 5m
"""


@pytest.fixture
def rapi(tmp_path: Path, database: str) -> Iterator[Api]:
    """The API with the rules service fed by its own pipeline, as `wulian serve` runs it."""
    for api in running_api(tmp_path, database):
        api.core.start_alerting()
        api.product(ENV_SENSOR)
        yield api


def wait_for(fn: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_rule_crud_in_json_and_yaml(rapi: Api) -> None:
    r = rapi.post("/rules", json=HOT)
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 1 and r.json()["enabled"] is True
    r = rapi.post("/rules", content=HOT_YAML.encode(),
                  headers={"Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "太热了" and r.json()["doc"]["for"] == "5m"
    assert [x["id"] for x in rapi.get("/rules").json()["items"]] == ["hot", "hot-yaml"]
    assert rapi.post("/rules", json=HOT).json()["code"] == "rule_exists"
    r = rapi.client.put("/api/v1/rules/hot", json={**HOT, "severity": "minor"},
                        headers={"Authorization": "Bearer test-admin-token"})
    assert r.status_code == 200 and r.json()["version"] == 2
    assert r.json()["severity"] == "minor"
    assert rapi.post("/rules/hot/disable").json()["enabled"] is False
    assert rapi.get("/rules/hot").json()["doc"]["enabled"] is False
    assert rapi.post("/rules/hot/enable").json()["enabled"] is True
    assert rapi.delete("/rules/hot").status_code == 204
    assert rapi.get("/rules/hot").json()["code"] == "rule_not_found"
    assert rapi.delete("/rules/hot").status_code == 404


@pytest.mark.parametrize(("doc", "field"), [
    ({**HOT, "severity": "apocalyptic"}, "$.severity"),
    ({**HOT, "condition": {"type": "threshold", "property": "temperature", "op": "~",
                           "value": 3}}, "$.condition.op"),
    ({k: v for k, v in HOT.items() if k != "condition"}, "$.condition"),
    ({**HOT, "actions": [{"type": "command", "command": "reboot"}]}, "$.actions[0].type"),
    ({**HOT, "surprise": 1}, "$.surprise"),
])
def test_malformed_rules_are_refused_with_the_field(rapi: Api, doc: dict[str, Any],
                                                    field: str) -> None:
    r = rapi.post("/rules", json=doc)
    assert r.status_code == 422
    assert (r.json()["code"], r.json()["field"]) == ("invalid_rule", field)
    zh = rapi.post("/rules", json=doc, headers={"Accept-Language": "zh-CN"}).json()
    assert zh["message"].startswith("规则无效")
    assert rapi.get("/rules").json()["items"] == []


def test_unparseable_documents_are_refused(rapi: Api) -> None:
    r = rapi.post("/rules", content=b"{not json", headers={"Content-Type": "application/json"})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_rule_syntax")
    r = rapi.post("/rules", content=b"id: [unclosed", headers={"Content-Type": "text/yaml"})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_rule_syntax")
    r = rapi.post("/rules", content=b"x" * (300 * 1024))
    assert r.status_code == 413


def test_webhook_secrets_are_not_shown(rapi: Api) -> None:
    doc = {**HOT, "actions": [{"type": "webhook", "url": "http://127.0.0.1:9/x",
                               "secret": "a-very-secret-value-1234"}]}
    assert rapi.post("/rules", json=doc).status_code == 201
    shown = rapi.get("/rules/hot").text
    assert "a-very-secret-value-1234" not in shown and "***" in shown
    # what GET gave, edited and sent back, keeps the secret it could not see
    edited = {**rapi.get("/rules/hot").json()["doc"], "severity": "minor"}
    r = rapi.client.put("/api/v1/rules/hot", json=edited,
                        headers={"Authorization": "Bearer test-admin-token"})
    assert r.status_code == 200, r.text
    stored = rapi.core.rule_store.get_rule("hot")
    assert stored is not None
    assert stored.doc["actions"][0]["secret"] == "a-very-secret-value-1234"


def test_an_alarm_raised_by_ingest_is_listed_acknowledged_and_cleared(rapi: Api) -> None:
    assert rapi.post("/rules", json=HOT).status_code == 201
    auth = rapi.device("lab-1")
    now = int(time.time() * 1000)
    assert rapi.send("lab-1", auth, orjson.dumps({"ts": now, "temperature": 35.5})) \
        .status_code == 202
    items = wait_for(lambda: rapi.get("/alarms", params={"state": "open"}).json()["items"])
    alarm = items[0]
    assert (alarm["rule_id"], alarm["subject"], alarm["severity"], alarm["state"],
            alarm["value"]) == ("hot", "lab-1", "critical", "active", 35.5)
    assert "lab-1" in alarm["message"]
    counts = rapi.get("/alarms/counts").json()
    assert counts["open"]["critical"] == 1 and counts["active"]["critical"] == 1
    alarm_id = alarm["id"]
    r = rapi.post(f"/alarms/{alarm_id}/acknowledge", json={"comment": "checking"})
    assert r.status_code == 200, r.text
    assert r.json()["alarm"]["state"] == "acknowledged"
    assert r.json()["alarm"]["acknowledged_by"] == "admin"
    again = rapi.post(f"/alarms/{alarm_id}/acknowledge")
    assert (again.status_code, again.json()["code"]) == (409, "alarm_not_acknowledgeable")
    assert rapi.get("/alarms/counts").json()["acknowledged"]["critical"] == 1
    # cooling down clears it by itself
    assert rapi.send("lab-1", auth, orjson.dumps({"ts": now + 1000, "temperature": 20})) \
        .status_code == 202
    wait_for(lambda: rapi.get(f"/alarms/{alarm_id}").json()["state"] == "cleared")
    one = rapi.get(f"/alarms/{alarm_id}").json()
    assert [h["kind"] for h in one["history"]] == ["raised", "acknowledged", "cleared"]
    assert one["history"][1]["comment"] == "checking"
    assert rapi.post(f"/alarms/{alarm_id}/clear").json()["code"] == "alarm_not_open"
    assert rapi.get("/alarms/nope/x/1").json()["code"] == "alarm_not_found"


def test_alarm_filters(rapi: Api) -> None:
    assert rapi.post("/rules", json=HOT).status_code == 201
    assert rapi.post("/rules", json={**HOT, "id": "cold", "severity": "warning", "condition": {
        "type": "threshold", "property": "temperature", "op": "<", "value": 0}}).status_code \
        == 201
    now = int(time.time() * 1000)
    for device, value in (("a", 35), ("b", -5), ("c", 36)):
        auth = rapi.device(device)
        rapi.send(device, auth, orjson.dumps({"ts": now, "temperature": value}))
    wait_for(lambda: len(rapi.get("/alarms").json()["items"]) == 3)

    def ids(**params: Any) -> list[str]:
        return sorted(a["subject"] for a in rapi.get("/alarms", params=params).json()["items"])

    assert ids(severity="critical") == ["a", "c"]
    assert ids(rule="cold") == ["b"]
    assert ids(device="c") == ["c"]
    assert ids(since=now + 1) == []
    assert ids(state="cleared") == []
    assert rapi.get("/alarms", params={"state": "bogus"}).status_code == 422


def test_backtest_reports_when_a_rule_would_have_fired(rapi: Api) -> None:
    auth = rapi.device("lab-1")
    t0 = int(time.time() * 1000) - 3_600_000
    readings = [20, 25, 31, 33, 29, 27, 26, 35, 20]
    body = orjson.dumps([{"ts": t0 + i * 60_000, "temperature": v}
                         for i, v in enumerate(readings)])
    assert rapi.send("lab-1", auth, body).status_code == 202
    doc = {**HOT, "enabled": False}
    assert rapi.post("/rules", json=doc).status_code == 201
    r = rapi.post("/rules/hot/backtest", params={"since": t0, "until": t0 + 3_600_000})
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["devices"], result["points"], result["raised"], result["cleared"]) == \
        (1, 9, 2, 2)
    assert [(c["kind"], c["ts"]) for c in result["changes"]] == [
        ("raised", t0 + 2 * 60_000), ("cleared", t0 + 5 * 60_000),
        ("raised", t0 + 7 * 60_000), ("cleared", t0 + 8 * 60_000)]
    # a disabled rule is backtested as if on, and raised nothing live
    assert rapi.get("/alarms").json()["items"] == []
    # an unsaved document, with `for`: only the spell that lasted 90 s raises, and at the
    # moment the 90 s were up (a timer between readings), not at the next reading
    r = rapi.post("/rules/backtest", params={"since": t0, "until": t0 + 3_600_000},
                  json={**HOT, "id": "draft", "for": "90s"})
    assert [c["ts"] for c in r.json()["changes"] if c["kind"] == "raised"] == \
        [t0 + 2 * 60_000 + 90_000]
    bad = rapi.post("/rules/hot/backtest", params={"since": t0, "until": t0 - 1})
    assert bad.json()["code"] == "invalid_range"


def test_scenarios_say_what_they_deploy_and_what_is_installed(rapi: Api) -> None:
    from wulian.rules import parse_rule
    from wulian.scenarios import get

    listed = rapi.get("/scenarios", headers={"Accept-Language": "zh"}).json()["items"]
    assert len(listed) == 12 and listed[0]["id"] == "municipal"
    energy = get("energy")
    for sp in energy.products:
        rapi.product(sp.product.doc)
    rapi.device("meter-1", "smart-meter")
    rapi.core.rule_store.put_rule(parse_rule(energy.default_rules[0]))
    one = rapi.get("/scenarios/energy").json()
    assert {p["id"]: p["registered"] for p in one["products"]} == \
        {"smart-meter": 1, "energy-transformer": 0}
    assert one["rules_installed"] == [energy.default_rules[0]["id"]]
    assert one["open_alarms"] == 0
    panels = {p["product"]: p for p in one["dashboard"]}
    assert panels["smart-meter"]["charts"][0] == "power_kw"  # its daily-cycle property
    assert "energy_kwh" not in panels["smart-meter"]["charts"]  # a counter, not a chart
    assert "energy-oil-hot" in panels["energy-transformer"]["rules"]
    assert rapi.get("/scenarios/atlantis").json()["code"] == "scenario_not_found"
