"""The admin API for products and devices, over a real store, as an operator's client sees it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.api import ADMIN_TOKEN, Api, basic
from wulian.api import create_app
from wulian.ports import StorageUnavailable

ADMIN_ROUTES = [
    ("get", "/products"), ("post", "/products"), ("get", "/products/env-sensor"),
    ("delete", "/products/env-sensor"), ("get", "/devices"), ("post", "/devices"),
    ("get", "/devices/d1"), ("patch", "/devices/d1"), ("delete", "/devices/d1"),
    ("post", "/devices/d1/secret"), ("get", "/devices/d1/latest"),
    ("get", "/devices/d1/telemetry?property=temperature"), ("get", "/devices/d1/events"),
    ("get", "/rejections"), ("get", "/stats"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_admin_routes_need_the_admin_token(sqlite_api: Api, method: str, path: str) -> None:
    client = sqlite_api.client
    for headers in ({}, {"Authorization": "Bearer wrong"},
                    {"Authorization": f"Basic {ADMIN_TOKEN}"},
                    {"Authorization": f"Bearer {ADMIN_TOKEN}x"}):
        r = client.request(method, f"/api/v1{path}", headers=headers, json={})
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["code"] == "unauthorized"
        assert r.json()["message"]


def test_health_needs_no_token_and_checks_storage(sqlite_api: Api,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert sqlite_api.client.get("/api/v1/health").json() == {"status": "ok", "storage": "ok"}

    def down() -> int:
        raise StorageUnavailable("database is gone")

    monkeypatch.setattr(sqlite_api.core.store, "count_devices", down)
    r = sqlite_api.client.get("/api/v1/health")
    assert r.status_code == 503
    assert r.json()["code"] == "storage_unavailable"
    assert r.headers["retry-after"]


def test_import_the_env_sensor_product(api: Api, env_sensor_doc: dict[str, Any]) -> None:
    r = api.post("/products", json=env_sensor_doc)
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["id"] == "env-sensor"
    assert [p["id"] for p in doc["properties"]] == ["temperature", "humidity", "status",
                                                     "setpoint"]
    assert doc["properties"][0] == {"id": "temperature", "type": "float", "unit": "°C",
                                    "min": -40, "max": 85}
    assert doc["events"][0]["id"] == "fault" and doc["events"][0]["level"] == "major"
    assert doc["commands"][0]["id"] == "reboot"

    env_sensor_doc["name"] = "Environment sensor v2"
    r = api.post("/products", json=env_sensor_doc)
    assert r.status_code == 200, "importing again replaces the model"
    assert api.get("/products/env-sensor").json()["name"] == "Environment sensor v2"
    assert [p["id"] for p in api.get("/products").json()["data"]] == ["env-sensor"]

    r = api.get("/products/nope")
    assert r.status_code == 404 and r.json()["code"] == "product_not_found"


def test_a_bad_thing_model_names_the_field(api: Api, env_sensor_doc: dict[str, Any]) -> None:
    env_sensor_doc["properties"][2]["min"] = 0  # min on an enum
    r = api.post("/products", json=env_sensor_doc)
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "invalid_thing_model"
    assert body["field"] == "$.properties[2].min"
    assert "$.properties[2].min" in body["message"]

    r = api.post("/products", json=[1, 2], headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_request" and r.json()["field"] == "body"
    assert "请求无效" in r.json()["message"]
    r = api.post("/products", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"
    assert r.json()["field"] == "body" and "JSON" in r.json()["message"]
    assert api.get("/products").json()["data"] == []


def test_device_lifecycle(api: Api, env_sensor_doc: dict[str, Any]) -> None:
    api.product(env_sensor_doc)
    r = api.post("/devices", json={"id": "room-1", "product": "env-sensor", "name": "Room 1",
                                   "tags": {"site": "hz", "floor": "3"},
                                   "location": {"lat": 30.27, "lon": 120.15}})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"] and created["state"] == "active"
    assert created["location"] == {"lat": 30.27, "lon": 120.15}
    api.device("room-2")
    api.device("hall-1")

    device = api.get("/devices/room-1").json()
    assert device["name"] == "Room 1" and device["tags"] == {"site": "hz", "floor": "3"}
    assert device["status"]["connected"] is False and device["status"]["online"] is False

    def ids(**params: Any) -> list[str]:
        r = api.get("/devices", params=params)
        assert r.status_code == 200, r.text
        return [d["id"] for d in r.json()["data"]]

    assert ids() == ["hall-1", "room-1", "room-2"]
    assert ids(tag="site:hz") == ["room-1"]
    assert ids(q="room") == ["room-1", "room-2"]
    assert ids(product="env-sensor", limit=1, offset=1) == ["room-1"]
    assert ids(product="other") == []

    r = api.patch("/devices/room-1", json={"name": "Room one", "tags": {"site": "sh"},
                                           "state": "disabled"})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Room one" and r.json()["state"] == "disabled"
    assert ids(state="disabled") == ["room-1"]
    assert ids(tag="site:hz") == []

    r = api.delete("/devices/room-2")
    assert r.status_code == 204
    assert api.get("/devices/room-2").status_code == 404
    r = api.delete("/devices/room-2")
    assert r.status_code == 404 and r.json()["code"] == "device_not_found"
    assert api.patch("/devices/room-2", json={"name": "x"}).status_code == 404
    assert api.post("/devices/room-2/secret").status_code == 404


@pytest.mark.parametrize(("body", "status", "code", "field"), [
    ({"id": "bad id!", "product": "env-sensor"}, 422, "invalid_device", "id"),
    ({"id": "d2", "product": "nope"}, 422, "invalid_device", "product"),
    ({"id": "d2", "product": "env-sensor", "location": {"lat": 95, "lon": 0}}, 422,
     "invalid_device", "location.lat"),
    ({"id": "d2", "product": "env-sensor", "tags": {"bad key": "x"}}, 422, "invalid_device",
     "tags.bad key"),
    ({"id": "d2", "product": "env-sensor", "tags": {"k": 5}}, 422, "invalid_request", "tags.k"),
    ({"id": "d2", "product": "env-sensor", "colour": "red"}, 422, "invalid_request", "colour"),
    ({"product": "env-sensor"}, 422, "invalid_request", "id"),
    ({"id": "d1", "product": "env-sensor"}, 409, "device_exists", "id"),
])
def test_a_bad_device_names_the_field(sqlite_api: Api, env_sensor_doc: dict[str, Any],
                                      body: dict[str, Any], status: int, code: str,
                                      field: str) -> None:
    sqlite_api.product(env_sensor_doc)
    sqlite_api.device("d1")
    r = sqlite_api.post("/devices", json=body)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    assert r.json()["field"] == field
    assert r.json()["message"]


def test_the_secret_is_shown_once_and_rotation_replaces_it(
        api: Api, env_sensor_doc: dict[str, Any]) -> None:
    api.product(env_sensor_doc)
    r = api.post("/devices", json={"id": "d1", "product": "env-sensor"})
    secret = r.json()["secret"]
    for path in ("/devices/d1", "/devices", "/devices?q=d1"):
        text = api.get(path).text
        assert secret not in text and "secret" not in text, path

    r = api.post("/devices/d1/secret")
    assert r.status_code == 200
    new_secret = r.json()["secret"]
    assert new_secret != secret
    r = api.send("d1", basic("d1", secret), b'{"temperature": 20}')
    assert r.status_code == 401 and r.json()["code"] == "bad_credentials"
    r = api.send("d1", basic("d1", new_secret), b'{"temperature": 20}')
    assert r.status_code == 202, r.text


def test_a_disabled_device_is_refused_until_enabled(api: Api,
                                                    env_sensor_doc: dict[str, Any]) -> None:
    api.product(env_sensor_doc)
    auth = api.device("d1")
    assert api.send("d1", auth, b'{"temperature": 20}').status_code == 202

    assert api.patch("/devices/d1", json={"state": "disabled"}).status_code == 200
    r = api.send("d1", auth, b'{"temperature": 21}')
    assert r.status_code == 403
    assert r.json()["code"] == "device_disabled"

    assert api.patch("/devices/d1", json={"state": "active"}).status_code == 200
    r = api.send("d1", auth, b'{"temperature": 22}')
    assert r.status_code == 202
    assert api.get("/devices/d1/latest").json()["temperature"]["value"] == 22
    assert api.patch("/devices/d1", json={"state": "asleep"}).json()["field"] == "state"


def test_a_product_in_use_cannot_be_deleted(api: Api, env_sensor_doc: dict[str, Any]) -> None:
    api.product(env_sensor_doc)
    api.device("d1")
    r = api.delete("/products/env-sensor")
    assert r.status_code == 409 and r.json()["code"] == "product_in_use"
    assert api.delete("/devices/d1").status_code == 204
    assert api.delete("/products/env-sensor").status_code == 204
    assert api.delete("/products/env-sensor").status_code == 404


def test_online_filter_and_status(api: Api, env_sensor_doc: dict[str, Any]) -> None:
    api.product(env_sensor_doc)
    auth = api.device("talker")
    api.device("quiet")
    assert api.send("talker", auth, b'{"humidity": 50}').status_code == 202

    status = api.get("/devices/talker").json()["status"]
    assert status["online"] is True and status["protocol"] == "http"
    assert status["last_seen_ms"] > 0 and status["remote"]
    online = api.get("/devices", params={"online": "true"}).json()["data"]
    offline = api.get("/devices", params={"online": "false"}).json()["data"]
    assert [d["id"] for d in online] == ["talker"]
    assert [d["id"] for d in offline] == ["quiet"]
    stats = api.stats()
    assert stats["devices"] == 2 and stats["devices_online"] == 1


def test_errors_speak_the_callers_language(sqlite_api: Api) -> None:
    r = sqlite_api.get("/devices/nope", headers={"Accept-Language": "zh-CN"})
    assert r.json() == {"code": "device_not_found", "message": "设备“nope”未注册"}
    r = sqlite_api.get("/devices/nope", headers={"Accept-Language": "en-GB,en;q=0.5"})
    assert r.json()["message"] == "device 'nope' is not registered"
    r = sqlite_api.get("/devices", params={"limit": 5000}, headers={"Accept-Language": "zh"})
    assert r.status_code == 422
    assert r.json()["field"] == "limit" and r.json()["in"] == "query"
    assert "1000" in r.json()["message"] and "请求无效" in r.json()["message"]
    r = sqlite_api.client.get("/api/v1/nowhere", headers={"Accept-Language": "zh"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert "资源不存在" in r.json()["message"]


def test_failures_inside_are_json_never_a_traceback(sqlite_api: Api,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise StorageUnavailable("connection refused")

    monkeypatch.setattr(sqlite_api.core.store, "counters", broken)
    r = sqlite_api.get("/stats")
    assert r.status_code == 500
    assert r.json()["code"] == "internal_error"
    assert "secret internals" not in r.text and "Traceback" not in r.text

    monkeypatch.setattr(sqlite_api.core.store, "list_products", unavailable)
    r = sqlite_api.get("/products")
    assert r.status_code == 503
    assert r.json()["code"] == "storage_unavailable" and r.headers["retry-after"]
    assert sqlite_api.client.get("/api/v1/health").status_code == 200, "still alive"


def test_the_openapi_schema_is_served(sqlite_api: Api) -> None:
    r = sqlite_api.client.get("/openapi.json")
    assert r.status_code == 200
    schema = r.json()
    assert schema["info"]["title"] == "wulian"
    paths = schema["paths"]
    assert set(paths["/api/v1/devices/{device_id}/telemetry"]) == {"get", "post"}
    assert "post" in paths["/api/v1/devices/{device_id}/events/{event}"]
    assert "/api/v1/products" in paths and "/api/v1/stats" in paths
    schemes = schema["components"]["securitySchemes"]
    # admin token, device Basic, and the console's session cookie
    assert {s.get("scheme") or s["in"] for s in schemes.values()} == {"bearer", "basic",
                                                                       "cookie"}
    assert sqlite_api.client.get("/docs").status_code == 200


def test_the_admin_api_is_never_open(sqlite_api: Api) -> None:
    with pytest.raises(ValueError, match="admin token"):
        create_app(sqlite_api.core, admin_token="")
