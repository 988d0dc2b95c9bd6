"""Quotas and rate limits over real brokers, the HTTP API and the CLI, on real stores.

Answers chosen: a device over its rate is refused `rate_limited` (HTTP 429 + Retry-After;
on MQTT the reason on `devices/{id}/errors`); an organisation at `max_devices` or
`max_rules` gets 429 `quota_exceeded` naming the quota and limit, without Retry-After
(waiting does not help) — as EMQX and ThingsBoard answer a 4xx with a code to act on.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from tests.fixtures.api import Api
from tests.fixtures.mosquitto import MqttPlatform, wait_until
from tests.fixtures.orgs import move_device, put_org
from wulian.cli import build_app
from wulian.pipeline.ingest import now_ms

pytestmark = pytest.mark.timeout(90)
HOT = {"id": "hot", "name": "Too hot", "severity": "critical", "product": "env-sensor",
       "condition": {"type": "threshold", "property": "temperature", "op": ">", "value": 30}}


def test_a_flooding_device_is_refused_on_its_errors_topic_and_neighbours_lose_nothing(
        mqtt_platform: MqttPlatform) -> None:
    p = mqtt_platform
    put_org(p.store, "acme", {"device_msgs_per_s": 5})
    secrets = {d: p.provision(d) for d in ("flood", "calm", "other")}
    for d in ("flood", "calm"):
        move_device(p.store, d, "acme")  # "other" stays in the unlimited default org
    p.core.directory.forget()
    flood, calm, other = (p.connect(d, s) for d, s in secrets.items())
    assert flood.subscribe("devices/flood/errors")
    start = now_ms() - 60_000

    def steady(dev: Any, count: int) -> None:
        for n in range(count):
            dev.telemetry({"temperature": n / 4, "ts": start + n})

    threads = [threading.Thread(target=steady, args=(calm, 5)),  # within its burst
               threading.Thread(target=steady, args=(other, 200))]
    for th in threads:
        th.start()
    sent = 100
    steady(flood, sent)
    for th in threads:
        th.join(30)

    def settled() -> Any:
        errors = flood.messages("devices/flood/errors")
        return len(errors) + len(p.points("flood")) == sent and errors
    errors = wait_until(settled, what="every flood message stored or refused")
    # the broker delivers 100 QoS 1 messages in far less than the 20 s 100 would take
    assert len(errors) >= 50
    assert {e["code"] for e in errors} == {"rate_limited"}
    assert all("5" in e["message"] and e["topic"] == "devices/flood/telemetry"
               for e in errors)
    wait_until(lambda: len(p.points("other")) == 200, what="all 200 of the other org's device")
    wait_until(lambda: len(p.points("calm")) == 5, what="all 5 of the calm neighbour")
    letters = p.store.rejections(device_id="flood", since=None, limit=1000)
    assert len(letters) == len(errors) and {r.code for r in letters} == {"rate_limited"}
    assert p.store.counters()["rejected.rate_limited"] == len(errors)
    assert p.store.counters()["org.acme.rejected.rate_limited"] == len(errors)  # stored
    assert "org.default.rejected.rate_limited" not in p.store.counters()
    assert p.core.pipeline.stats["org.acme.rejected.rate_limited"] == len(errors)
    assert p.core.pipeline.gate.usage["acme"].refused == {"rate_limited": len(errors)}


def test_an_http_device_over_its_rate_gets_429_with_retry_after(
        api: Api, env_sensor_doc: dict[str, Any]) -> None:
    api.product(env_sensor_doc)
    loud, quiet = api.device("loud"), api.device("quiet")
    api.core.store.set_org_quotas("default", {"device_msgs_per_s": 1})
    api.core.directory.forget()
    body = orjson.dumps({"humidity": 40})
    answers = [api.send("loud", loud, body) for _ in range(6)]
    assert answers[0].status_code == 202
    refused = [r for r in answers if r.status_code == 429]
    assert len(refused) >= 4  # one a second; six posts take far less than four seconds
    for r in refused:
        assert r.headers["retry-after"] == "1"
        assert r.json()["code"] == "rate_limited"
        assert "device_msgs_per_s" in r.json()["message"]
    zh = api.send("loud", loud, body, **{"Accept-Language": "zh-CN"})
    assert zh.status_code == 429 and "秒" in zh.json()["message"]
    assert api.send("quiet", quiet, body).status_code == 202  # its own budget
    stats = api.stats()
    assert stats["rejected_by_code"]["rate_limited"] == len(refused) + 1
    report = api.get("/quotas").json()
    assert report["quotas"] == {"device_msgs_per_s": 1.0}
    assert report["usage"]["refused"] == {"rate_limited": len(refused) + 1}
    assert report["usage"]["bytes_today"] == 2 * len(body)


def test_an_org_at_max_devices_cannot_register_one_more(
        api: Api, env_sensor_doc: dict[str, Any]) -> None:
    api.product(env_sensor_doc)
    api.core.store.set_org_quotas("default", {"max_devices": 2, "max_rules": 1})
    api.device("a")
    api.device("b")
    r = api.post("/devices", json={"id": "c", "product": "env-sensor"})
    assert r.status_code == 429, r.text
    assert "retry-after" not in r.headers
    assert r.json()["code"] == "quota_exceeded"
    assert r.json()["quota"] == "max_devices" and r.json()["limit"] == 2
    assert api.get("/devices/c").status_code == 404
    zh = api.post("/devices", json={"id": "c", "product": "env-sensor"},
                  headers={"Accept-Language": "zh-CN"}).json()["message"]
    assert "配额" in zh
    assert api.post("/rules", json=HOT).status_code == 201
    r = api.post("/rules", json={**HOT, "id": "hot2"})
    assert r.status_code == 429 and r.json()["quota"] == "max_rules"
    report = api.get("/quotas").json()
    assert report["quotas"] == {"max_devices": 2, "max_rules": 1}
    assert report["usage"]["devices"] == 2 and report["usage"]["rules"] == 1


def test_the_cli_refuses_past_max_devices_and_shows_the_quotas(tmp_path: Path,
                                                              env_sensor_doc: Any) -> None:
    data = tmp_path / "data"
    product = tmp_path / "env.json"
    product.write_bytes(orjson.dumps(env_sensor_doc))

    def run(*args: str) -> Any:
        result = CliRunner().invoke(build_app(), ["--data-dir", str(data), *args])
        assert "Traceback" not in result.output, result.output
        return result

    assert run("product", "import", str(product)).exit_code == 0
    assert run("device", "add", "one", "-p", "env-sensor").exit_code == 0
    from wulian.bootstrap import build_core
    from wulian.config import Settings
    core = build_core(Settings(data_dir=data), provision_broker=False)
    core.store.set_org_quotas("default", {"max_devices": 1})
    core.close()
    refused = run("device", "add", "two", "-p", "env-sensor")
    assert refused.exit_code == 6  # 429: "try later / ask for more", as scripts tell it
    assert "max_devices" in refused.output
    shown = run("quota", "show")
    assert shown.exit_code == 0
    assert "max_devices" in shown.output and "│ 1 " in shown.output
    assert run("quota", "show", "--org", "nope").exit_code == 1


def test_api_requests_beyond_the_callers_rate_get_429(api: Api) -> None:
    api.core.store.set_org_quotas("default", {"api_per_s": 3})
    answers = [api.get("/quotas") for _ in range(8)]
    assert [r.status_code for r in answers[:3]] == [200, 200, 200]
    refused = [r for r in answers if r.status_code == 429]
    assert refused, [r.status_code for r in answers]
    assert int(refused[0].headers["retry-after"]) >= 1
    assert refused[0].json()["code"] == "rate_limited"
    assert "3" in refused[0].json()["message"]
    zh = api.get("/quotas", headers={"Accept-Language": "zh-CN"})
    assert zh.status_code == 429 and "请求过于频繁" in zh.json()["message"]
