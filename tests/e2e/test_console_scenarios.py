"""The console's scenario pages end to end: `wulian serve` in a thread with the energy
scenario's products, a few devices and its default rules; Debian's chromium driven by
Playwright; real MQTT devices publishing; the REST API as the witness.

No browser is downloaded: Playwright drives /usr/bin/chromium (`apt-get install chromium`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fixtures.console import (
    Platform,
    log_in,
    needs_chromium,
    pages,
    running_platform,
    text,
    wait_for,
)
from wulian import scenarios
from wulian.console.router import console_messages
from wulian.domain.account import Role

pytest.importorskip("playwright.sync_api")

USERS = {"vera": Role.VIEWER}
ENERGY = scenarios.get("energy")
METERS = [f"meter-{n:03d}" for n in range(1, 5)]  # four: the dashboard charts the first three
TRANSFORMERS = ["tx-001", "tx-002"]
OVERVOLTAGE = "energy-overvoltage"
pytestmark = needs_chromium()


class Energy(Platform):
    def scenario(self, lang: str = "en") -> dict[str, Any]:
        answer = self.api.get("/api/v1/scenarios/energy", headers={"Accept-Language": lang})
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result


def default_rules() -> list[dict[str, Any]]:
    """The energy scenario's default rules; the overvoltage one without its one-minute hold,
    so that one reading raises its alarm and the test need not wait a minute."""
    rules = []
    for rule in ENERGY.default_rules:
        doc = dict(rule)
        if doc["id"] == OVERVOLTAGE:
            doc.pop("for", None)
        rules.append(doc)
    return rules


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Energy]:
    data = tmp_path_factory.mktemp("console-scenarios")
    with running_platform(data, USERS) as (ready, client):
        for sp in ENERGY.products:
            answer = client.post("/api/v1/products", json=sp.product.doc)
            assert answer.status_code == 201, answer.text
        device_secrets = {}
        for number, (device_id, product) in enumerate(
                [(m, "smart-meter") for m in METERS]
                + [(x, "energy-transformer") for x in TRANSFORMERS], 1):
            lat, lon = ENERGY.area.locate(number, product)
            answer = client.post("/api/v1/devices", json={
                "id": device_id, "product": product, "name": f"{device_id.title()}",
                "tags": {"industry": "energy"}, "location": {"lat": lat, "lon": lon}})
            assert answer.status_code == 201, answer.text
            device_secrets[device_id] = answer.json()["secret"]
        for rule in default_rules():
            answer = client.post("/api/v1/rules", json=rule)
            assert answer.status_code == 201, answer.text
        platform = Energy(ready.http_url, ready.mqtt_port, client, device_secrets)
        # one meter reports a supply overvoltage: an alarm of a default rule, and a reading
        with platform.device(METERS[0]) as dev:
            dev.publish_telemetry({"voltage_a": 251.0, "voltage_b": 229.5, "voltage_c": 230.1,
                                   "power_kw": 12.5, "energy_kwh": 1520.25,
                                   "power_factor": 0.93})
            dev.wait_published()
        with platform.device(TRANSFORMERS[0]) as dev:
            dev.publish_telemetry({"top_oil_temp": 61.0, "load_pct": 64.0})
            dev.wait_published()
        wait_for(lambda: platform.scenario()["open_alarms"] == 1, what="the overvoltage alarm")
        yield platform


@pytest.fixture
def page_factory(browser: Any, platform: Energy) -> Iterator[Callable[..., Any]]:
    yield from pages(browser, platform.base, missing_text_fails=True)


def online_devices(platform: Energy, product: str) -> int:
    rows = platform.api.get("/api/v1/devices", params={
        "product": product, "status": "true", "limit": 1000}).json()["data"]
    return sum(1 for d in rows if d["status"] and d["status"]["online"])


# --- the twelve templates ---------------------------------------------------------------------


@pytest.mark.parametrize(("locale", "lang"), [("en-US", "en"), ("zh-CN", "zh")])
def test_the_scenarios_page_shows_every_template_with_the_apis_figures(
        page_factory: Callable[..., Any], platform: Energy, locale: str, lang: str) -> None:
    page = page_factory(locale)
    log_in(page, platform.base, "vera")
    page.click("nav a[data-page=scenarios]")  # from the sidebar
    page.wait_for_selector("[data-testid=scenario-energy]")
    messages = console_messages(lang)
    listed = platform.api.get("/api/v1/scenarios",
                              headers={"Accept-Language": lang}).json()["items"]
    assert len(listed) == 12
    assert page.locator(".scenario-card").count() == 12
    assert text(page, "page-title") == messages["nav.scenarios"]
    for field in ("social_governance", "industry", "consumption"):
        group = page.locator(f".scenario-group[data-field={field}]")
        assert messages[f"scenarios.field.{field}"] in group.locator("h2").inner_text()
        expected = sorted(s["id"] for s in listed if s["field"] == field)
        shown = group.locator(".scenario-card").evaluate_all(
            "cards => cards.map(c => c.dataset.scenario)")
        assert sorted(shown) == expected
    for s in listed:
        detail = platform.api.get(f"/api/v1/scenarios/{s['id']}").json()
        registered = sum(p["registered"] for p in detail["products"])
        assert text(page, f"scenario-name-{s['id']}") == s["name"]
        assert text(page, f"scenario-devices-{s['id']}") == str(registered)
        assert text(page, f"scenario-alarms-{s['id']}") == str(detail["open_alarms"])
        installed = messages["scenarios.of"].format(
            n=len(detail["rules_installed"]), total=len(detail["default_rules"]))
        assert text(page, f"scenario-rules-{s['id']}") == installed
    assert text(page, "scenario-devices-energy") == str(len(METERS) + len(TRANSFORMERS))
    assert text(page, "scenario-alarms-energy") == "1"
    card = page.locator("[data-testid=scenario-energy]")
    for sp in ENERGY.products:
        assert sp.product.model.name in card.inner_text()
    card.click()
    page.wait_for_selector("[data-testid=kpi-registered]")
    assert page.url.endswith("#/scenarios/energy")


# --- one dashboard ---------------------------------------------------------------------------


def test_the_energy_dashboard_shows_the_figures_the_api_reports(
        page_factory: Callable[..., Any], platform: Energy) -> None:
    page = page_factory("en-US")
    log_in(page, platform.base, "vera")
    page.goto(f"{platform.base}/#/scenarios/energy")
    page.wait_for_selector("[data-testid=scenario-alarms] tr[data-alarm]")
    messages = console_messages("en")
    scenario = platform.scenario()
    assert text(page, "page-title") == scenario["name"]
    registered = {p["id"]: p["registered"] for p in scenario["products"]}
    assert registered == {"smart-meter": len(METERS), "energy-transformer": len(TRANSFORMERS)}
    online = {p: online_devices(platform, p) for p in registered}
    assert online == {"smart-meter": 1, "energy-transformer": 1}  # the two that reported
    assert text(page, "kpi-registered") == str(sum(registered.values()))
    assert text(page, "kpi-online") == str(sum(online.values()))
    assert text(page, "kpi-alarms") == str(scenario["open_alarms"]) == "1"
    assert text(page, "kpi-rules") == messages["scenarios.of"].format(
        n=len(scenario["rules_installed"]), total=len(scenario["default_rules"]))
    assert len(scenario["rules_installed"]) == len(ENERGY.default_rules)
    for product, n in registered.items():
        assert text(page, f"registered-{product}") == str(n)
        assert text(page, f"online-{product}") == str(online[product])

    # one panel per product of the dashboard, one chart per property it names
    for panel in scenario["dashboard"]:
        product = panel["product"]
        card = page.locator(f"[data-testid=panel-{product}]")
        for prop in panel["charts"]:
            assert card.locator(f"[data-testid=chart-{product}-{prop}] .chart").count() == 1
        for rule in panel["rules"]:
            assert rule in card.locator(".panel-rules").inner_text()
    note = text(page, "series-note-smart-meter")
    assert note == messages["scenario.series_first"].format(n=3, total=len(METERS), hours=24)
    legend = page.locator("[data-testid=chart-smart-meter-power_kw] .u-legend").inner_text()
    assert all(m.title() in legend for m in METERS[:3]) and METERS[3].title() not in legend
    # the reading sent before the page opened is in its 5-minute bucket
    page.wait_for_selector("[data-testid=panel-smart-meter][data-series=loaded]")
    points = page.locator("[data-testid=chart-smart-meter-power_kw] .chart")
    assert int(points.get_attribute("data-points") or "0") >= 1
    assert text(page, f"counter-{METERS[0]}-energy_kwh") == "1,520.25"

    # the scenario's open alarms: the overvoltage of the first meter
    alarms = platform.api.get("/api/v1/alarms", params={"state": "open",
                                                        "rule": OVERVOLTAGE}).json()["items"]
    rows = page.locator("[data-testid=scenario-alarms] tr[data-alarm]")
    assert rows.count() == len(alarms) == 1
    assert rows.first.get_attribute("data-alarm") == alarms[0]["id"]
    assert METERS[0] in rows.first.inner_text()

    # and a map of its devices, every one of them placed
    page.wait_for_selector("[data-testid=scenario-map][data-markers] canvas", state="attached")
    assert page.locator("[data-testid=scenario-map]").get_attribute("data-markers") == str(
        len(METERS) + len(TRANSFORMERS))


def test_a_dashboard_chart_gains_the_point_a_device_publishes(
        page_factory: Callable[..., Any], platform: Energy) -> None:
    page = page_factory("en-US")
    log_in(page, platform.base, "vera")
    page.goto(f"{platform.base}/#/scenarios/energy")
    page.wait_for_selector("[data-testid=panel-smart-meter][data-series=loaded]")
    page.wait_for_selector("[data-testid=live][data-state=live]")
    chart = page.locator("[data-testid=chart-smart-meter-power_kw] .chart")
    before = int(chart.get_attribute("data-points") or "0")
    with platform.device(METERS[1]) as dev:  # the second charted meter
        dev.publish_telemetry({"power_kw": 17.75, "energy_kwh": 2048.5})
        dev.wait_published()
    page.wait_for_function(
        "n => Number(document.querySelector("
        "'[data-testid=chart-smart-meter-power_kw] .chart').dataset.points) === n",
        arg=before + 1)
    page.wait_for_function(
        "() => document.querySelector("
        f"'[data-testid=counter-{METERS[1]}-energy_kwh]').textContent === '2,048.5'")
    # a meter that is not charted changes nothing on the chart
    with platform.device(METERS[3]) as dev:
        dev.publish_telemetry({"power_kw": 3.5})
        dev.wait_published()
    page.wait_for_timeout(1000)
    assert int(chart.get_attribute("data-points") or "0") == before + 1


def test_a_new_alarm_of_the_scenario_appears_without_reloading(
        page_factory: Callable[..., Any], platform: Energy) -> None:
    page = page_factory("en-US")
    log_in(page, platform.base, "vera")
    page.goto(f"{platform.base}/#/scenarios/energy")
    page.wait_for_selector("[data-testid=scenario-alarms] tr[data-alarm]")
    before = platform.scenario()["open_alarms"]
    with platform.device(METERS[2]) as dev:
        dev.publish_telemetry({"voltage_a": 255.0})
        dev.wait_published()
    wait_for(lambda: platform.scenario()["open_alarms"] == before + 1, what="a second alarm")
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=scenario-alarms] tr[data-alarm]').length"
        " === n", arg=before + 1)
    page.wait_for_function(
        "n => document.querySelector('[data-testid=kpi-alarms]').textContent === String(n)",
        arg=before + 1)


def test_an_unknown_scenario_says_so(page_factory: Callable[..., Any],
                                     platform: Energy) -> None:
    page = page_factory("zh-CN")
    log_in(page, platform.base, "vera")
    page.goto(f"{platform.base}/#/scenarios/nope")
    page.wait_for_selector(".empty")
    assert text(page, "page-title") == "nope"
    expected = console_messages("zh")["scenario.not_found"].replace("{id}", "nope")
    assert page.locator(".empty").inner_text() == expected
