"""The web console end to end: `wulian serve` in a thread, Debian's chromium driven by
Playwright, a real MQTT device publishing, and the REST API as the witness.

No browser is downloaded: Playwright drives /usr/bin/chromium (`apt-get install chromium`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.fixtures.common import ENV_SENSOR
from tests.fixtures.console import (
    PASSWORD,
    Platform,
    log_in,
    needs_chromium,
    pages,
    running_platform,
    text,
    wait_for,
)
from wulian.console.router import console_messages
from wulian.domain.account import Role

pytest.importorskip("playwright.sync_api")

USERS = {"ada": Role.ADMIN, "otto": Role.OPERATOR, "vera": Role.VIEWER}
HOT = {"id": "e2e-hot", "name": "Room too hot", "severity": "major", "product": "env-sensor",
       "condition": {"type": "threshold", "property": "temperature", "op": ">", "value": 50}}
pytestmark = needs_chromium()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("console"), USERS) as (ready, client):
        assert client.post("/api/v1/products", json=ENV_SENSOR).status_code == 201
        device_secrets = {}
        for number, (lat, lon) in enumerate([(30.259, 120.13), (30.242, 120.169)], 1):
            answer = client.post("/api/v1/devices", json={
                "id": f"room-{number}", "product": "env-sensor", "name": f"Room {number}",
                "tags": {"site": "hq"}, "location": {"lat": lat, "lon": lon}})
            assert answer.status_code == 201, answer.text
            device_secrets[f"room-{number}"] = answer.json()["secret"]
        yield Platform(ready.http_url, ready.mqtt_port, client, device_secrets)


@pytest.fixture
def page_factory(browser: Any, platform: Platform) -> Iterator[Callable[..., Any]]:
    yield from pages(browser, platform.base)


# --- language and login ---------------------------------------------------------------------


@pytest.mark.parametrize(("locale", "lang"), [("zh-CN", "zh"), ("en-US", "en")])
def test_the_login_page_speaks_the_browsers_language(page_factory: Callable[..., Any],
                                                     platform: Platform, locale: str,
                                                     lang: str) -> None:
    page = page_factory(locale)
    page.goto(f"{platform.base}/")
    messages = console_messages(lang)
    heading = page.locator("[data-testid=login-heading]")
    heading.wait_for()
    assert heading.inner_text() == messages["login.title"]
    assert page.locator("[data-testid=login-submit]").inner_text() == messages["login.submit"]
    assert page.evaluate("document.documentElement.lang") == ("zh-CN" if lang == "zh" else "en")
    if lang == "zh":
        assert re.search(r"[\u4e00-\u9fff]", page.locator("body").inner_text())


def test_log_in_then_out(page_factory: Callable[..., Any], platform: Platform) -> None:
    page = page_factory("en-US")
    page.goto(f"{platform.base}/#/devices")
    page.wait_for_selector("[data-testid=login-form]")  # no session: the login page first
    page.fill("[data-testid=username]", "ada")
    page.fill("[data-testid=password]", "not the password")
    page.click("[data-testid=login-submit]")
    error = page.locator("[data-testid=login-error]")
    error.wait_for()
    refused = httpx.post(f"{platform.base}/api/v1/auth/login",
                         json={"username": "ada", "password": "not the password"})
    assert refused.status_code == 401
    assert error.inner_text() == refused.json()["message"]  # the server's own words

    page.fill("[data-testid=password]", PASSWORD)
    page.click("[data-testid=login-submit]")
    page.wait_for_selector("[data-testid=devices]")  # back where the user was going
    assert "#/devices" in page.url
    assert "ada" in text(page, "user")
    assert text(page, "user-role") == console_messages("en")["role.admin"]
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["wulian_session"]["httpOnly"]

    page.click("[data-testid=logout]")
    page.wait_for_selector("[data-testid=login-form]")
    status = page.evaluate("fetch('/api/v1/auth/me').then(r => r.status)")
    assert status == 401


# --- overview -------------------------------------------------------------------------------


def test_the_overview_shows_the_figures_the_api_reports(page_factory: Callable[..., Any],
                                                        platform: Platform) -> None:
    with platform.device("room-2") as dev:  # one device online, one never seen
        dev.publish_telemetry({"temperature": 21.5, "humidity": 40.0})
        dev.wait_published()
        wait_for(lambda: platform.api.get("/api/v1/overview").json()["online"] == 1,
                 what="room-2 online")
    page = page_factory("en-US")
    log_in(page, platform.base, "vera")
    page.wait_for_selector("[data-testid=industries] table")
    page.wait_for_function(
        "document.querySelector('[data-testid=kpi-alarms]').textContent !== '—'")
    overview = platform.api.get("/api/v1/overview").json()
    counts = platform.api.get("/api/v1/alarms/counts").json()
    assert (overview["devices"], overview["online"]) == (2, 1)
    assert text(page, "kpi-devices") == str(overview["devices"])
    assert text(page, "kpi-online") == str(overview["online"])
    assert text(page, "kpi-online-rate") == f"{overview['online_rate']:.0%}"
    assert text(page, "kpi-ipv6") == f"{overview['ipv6_share']:.0%}"  # 127.0.0.1: 0 %
    assert text(page, "kpi-alarms") == str(sum(counts["open"].values()))
    for severity, n in counts["open"].items():
        assert text(page, f"sev-{severity}") == str(n)
    row = page.locator("[data-testid=industries] tr[data-industry=other]")
    assert row.locator("td").nth(1).inner_text() == str(overview["devices"])


# --- device page ------------------------------------------------------------------------------


def test_a_device_chart_gains_the_point_published_over_mqtt(page_factory: Callable[..., Any],
                                                            platform: Platform) -> None:
    page = page_factory("en-US")
    log_in(page, platform.base, "vera")
    page.goto(f"{platform.base}/#/devices/room-1")
    chart = page.locator("[data-testid=chart-temperature] .chart[data-points]")
    chart.wait_for()
    page.wait_for_selector("[data-testid=live][data-state=live]")
    before = int(chart.get_attribute("data-points") or "0")
    with platform.device("room-1") as dev:
        # the connect is logged (the point below makes the page look at the status again)
        connect = wait_for(lambda: [c for c in platform.api.get(
            "/api/v1/devices/room-1/connections").json()["connections"]
            if c["connected"]][:1], what="the connect in the history")[0]
        dev.publish_telemetry({"temperature": 23.25})
        dev.wait_published()
    page.wait_for_function(
        "n => Number(document.querySelector("
        "'[data-testid=chart-temperature] .chart').dataset.points) === n", arg=before + 1)
    assert text(page, "latest-temperature") == "23.25 °C"
    # nothing was polled for it: the page asked for the series once, then listened
    # (the SSE stream is one long request)

    # the connection history card gained the connect (newest first), as the API lists it
    row = page.locator("[data-testid=connection-history] tr[data-connected=true]").first
    row.wait_for()
    cells = [c.strip() for c in row.locator("td").all_inner_texts()]
    assert cells[1:] == [console_messages("en")["device.history.connected"], "MQTT · IPv4",
                         connect["remote"]]
    assert connect["remote"].startswith("127.0.0.1:")


# --- alarms --------------------------------------------------------------------------------------


def raise_alarm(platform: Platform, device_id: str, temperature: float) -> dict[str, Any]:
    if platform.api.get(f"/api/v1/rules/{HOT['id']}").status_code == 404:
        assert platform.api.post("/api/v1/rules", json=HOT).status_code == 201
    with platform.device(device_id) as dev:
        dev.publish_telemetry({"temperature": temperature})
        dev.wait_published()

    def open_alarm() -> dict[str, Any] | None:
        items = platform.api.get("/api/v1/alarms", params={
            "state": "active", "device": device_id, "rule": HOT["id"]}).json()["items"]
        return items[0] if items else None

    return wait_for(open_alarm, what=f"an alarm on {device_id}")


def test_an_operator_acknowledges_an_alarm_with_a_click(page_factory: Callable[..., Any],
                                                       platform: Platform) -> None:
    alarm = raise_alarm(platform, "room-1", 61.0)
    page = page_factory("en-US")
    log_in(page, platform.base, "otto")
    page.goto(f"{platform.base}/#/alarms")
    row = page.locator(f"tr[data-alarm='{alarm['id']}']")
    row.locator("[data-testid=ack]").click()
    page.locator(f"tr[data-alarm='{alarm['id']}'][data-state=acknowledged]").wait_for()
    seen = platform.api.get(f"/api/v1/alarms/{quote(alarm['id'], safe='')}").json()
    assert (seen["state"], seen["acknowledged_by"]) == ("acknowledged", "otto")
    # the operator may clear it as well
    page.locator(f"tr[data-alarm='{alarm['id']}'] [data-testid=clear]").click()
    wait_for(lambda: platform.api.get(
        f"/api/v1/alarms/{quote(alarm['id'], safe='')}").json()["state"] == "cleared",
        what="cleared")


def test_a_viewer_cannot_do_what_an_operator_can(page_factory: Callable[..., Any],
                                                 platform: Platform) -> None:
    alarm = raise_alarm(platform, "room-2", 62.0)
    page = page_factory("en-US")
    log_in(page, platform.base, "vera")
    page.goto(f"{platform.base}/#/alarms")
    row = page.locator(f"tr[data-alarm='{alarm['id']}']")
    row.wait_for()
    assert page.locator("[data-testid=read-only]").is_visible()
    assert row.locator("[data-testid=ack], [data-testid=clear]").count() == 0
    row.click()  # the detail dialog has no buttons either
    page.locator("[data-testid=alarm-dialog][open]").wait_for()
    assert page.locator("[data-testid=alarm-dialog] .dialog-foot").count() == 0
    page.keyboard.press("Escape")
    # and the server refuses the viewer anyway, with the console's own headers
    status = page.evaluate("""id => fetch(`/api/v1/alarms/${encodeURIComponent(id)}/acknowledge`,
        {method: 'POST', headers: {'Content-Type': 'application/json',
         'X-Wulian-Console': '1'}, body: '{}'}).then(r => r.status)""", alarm["id"])
    assert status == 403
    assert platform.api.get(
        f"/api/v1/alarms/{quote(alarm['id'], safe='')}").json()["state"] == "active"
    page.goto(f"{platform.base}/#/products")
    page.wait_for_selector("[data-testid=products] table")
    assert page.locator("[data-testid=import]").count() == 0
    assert page.locator("[data-testid=read-only]").is_visible()

    operator = page_factory("en-US")
    log_in(operator, platform.base, "otto")
    operator.goto(f"{platform.base}/#/alarms")
    operator.locator(f"tr[data-alarm='{alarm['id']}'] [data-testid=ack]").wait_for()


# --- map and assets -------------------------------------------------------------------------------


def test_the_map_draws_devices_from_the_package_alone(page_factory: Callable[..., Any],
                                                      platform: Platform) -> None:
    page = page_factory("zh-CN")  # every request off the origin fails the test (page_factory)
    log_in(page, platform.base, "vera")
    page.goto(f"{platform.base}/#/map")
    page.wait_for_selector("[data-testid=map][data-markers='2']")
    page.wait_for_selector("[data-testid=map] canvas")
    legend = page.locator("[data-testid=map-legend]").inner_text()
    assert console_messages("zh")["device.online"] in legend


def test_static_assets_are_versioned_and_cached(platform: Platform) -> None:
    shell = httpx.get(f"{platform.base}/")
    assert shell.status_code == 200 and shell.headers["cache-control"] == "no-cache"
    assert "default-src 'self'" in shell.headers["content-security-policy"]
    found = re.search(r'src="(/static/[0-9a-f]{12}/app\.js)"', shell.text)
    assert found, shell.text
    app_js = httpx.get(f"{platform.base}{found.group(1)}")
    assert app_js.status_code == 200
    assert "immutable" in app_js.headers["cache-control"]
    assert app_js.headers["content-type"].split(";")[0] in ("text/javascript",
                                                            "application/javascript")
    world = httpx.get(f"{platform.base}{found.group(1).rsplit('/', 1)[0]}"
                      "/vendor/world-atlas/countries-50m.json",
                      headers={"Accept-Encoding": "gzip"})
    assert world.headers.get("content-encoding") == "gzip"
    assert httpx.get(f"{platform.base}/console/i18n/zh.json").json()["nav.overview"] == "总览"


def test_an_admin_imports_a_thing_model(page_factory: Callable[..., Any],
                                        platform: Platform) -> None:
    doc = {"id": "e2e-meter", "name": "E2E meter",
           "properties": [{"id": "kwh", "type": "float", "unit": "kWh", "min": 0}]}
    page = page_factory("en-US")
    log_in(page, platform.base, "ada")
    page.goto(f"{platform.base}/#/products")
    page.click("[data-testid=import]")
    page.fill("[data-testid=import-text]", '{"id": "bad", "properties": [{"id": 1}]}')
    page.click("[data-testid=import-submit]")
    error = page.locator("[data-testid=import-error]")
    error.wait_for()
    assert "properties" in error.inner_text()  # the server names the offending field
    page.fill("[data-testid=import-text]", json.dumps(doc))
    page.click("[data-testid=import-submit]")
    page.wait_for_selector("[data-testid=properties] table")
    assert "#/products/e2e-meter" in page.url
    assert platform.api.get("/api/v1/products/e2e-meter").json()["name"] == "E2E meter"
