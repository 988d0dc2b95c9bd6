"""`wulian scenario list|show` in both languages."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from wulian import scenarios
from wulian.bootstrap import build_core
from wulian.cli import build_app
from wulian.cli._common import console
from wulian.cli._provision import plan_scenarios, provision
from wulian.config import Settings
from wulian.i18n import set_language, t


@pytest.fixture(autouse=True)
def _english_and_wide(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    set_language("en")  # each test starts in English whatever the last one chose
    monkeypatch.setattr(console, "width", 200)  # no folded names to match across lines
    yield
    set_language("en")


def run(*args: str) -> Result:
    return CliRunner().invoke(build_app(), list(args))


def test_list_shows_every_scenario_in_english() -> None:
    result = run("scenario", "list")
    assert result.exit_code == 0, result.output
    for s in scenarios.all_scenarios():
        assert s.id in result.output
        assert s.name("en") in result.output
        assert all(p.id in result.output for p in s.products)
    assert "Social governance" in result.output and "Consumption" in result.output


def test_list_in_chinese() -> None:
    result = run("--lang", "zh", "scenario", "list")
    assert result.exit_code == 0, result.output
    for name in ("智慧城市（市政）", "数字乡村", "智慧交通", "智慧能源", "公共卫生", "智慧农业",
                 "智能制造", "智能建造", "生态环境", "文化旅游", "智能家居", "智慧健康"):
        assert name in result.output
    assert "社会治理" in result.output and "民生消费" in result.output
    assert "Smart home" not in result.output


def test_show_lists_products_properties_and_rules() -> None:
    result = run("scenario", "show", "construction")
    assert result.exit_code == 0, result.output
    s = scenarios.get("construction")
    assert s.description("en") in result.output
    for sp in s.products:
        assert sp.id in result.output
        assert all(f.id in result.output for f in sp.product.model.properties)
    assert all(str(r["id"]) in result.output for r in s.default_rules)
    assert "wind_speed_ms > 20.0" in result.output


def test_show_in_chinese() -> None:
    result = run("--lang", "zh", "scenario", "show", "health")
    assert result.exit_code == 0, result.output
    assert "智慧健康" in result.output and "默认规则" in result.output
    assert "heart_rate" in result.output


def test_show_unknown_scenario_is_a_usage_error() -> None:
    result = run("scenario", "show", "mining")
    assert result.exit_code == 2
    assert t("cli.scenario.not_found", "en", name="mining",
             names=", ".join(scenarios.REGISTRY)) in result.output


def test_help_is_translated() -> None:
    # Help texts are taken when the command tree is built: a fresh process, as a user runs it.
    code = "from wulian.cli import main; main()"
    env = {k: v for k, v in os.environ.items() if k not in ("LANG", "LC_ALL", "WULIAN_LANG")}
    zh = subprocess.run([sys.executable, "-c", code, "--lang", "zh", "scenario", "--help"],
                        capture_output=True, text=True, env=env, timeout=60)
    assert zh.returncode == 0 and "十二个行业的场景模板" in zh.stdout


def test_demo_plan_follows_the_scenarios_hints() -> None:
    everything = plan_scenarios(scenarios.all_scenarios())
    assert len(everything) == sum(s.device_count for s in scenarios.all_scenarios())
    assert len({d.id for d in everything}) == len(everything)
    assert len({d.index for d in everything}) == len(everything)
    home = scenarios.get("home")
    planned = plan_scenarios([home])
    # A device is the same whether its scenario runs alone or with all the others.
    assert [(d.id, d.index, d.lat) for d in planned] == [
        (d.id, d.index, d.lat) for d in everything if d.tags["industry"] == "home"]
    for d in planned:
        assert d.tags["city"] == home.area.city
        assert home.area.lat[0] <= d.lat <= home.area.lat[1]
        assert home.area.lon[0] <= d.lon <= home.area.lon[1]
    scaled = plan_scenarios([home], total=12)
    assert {d.product.id for d in scaled} == {p.id for p in home.products}
    assert 10 <= len(scaled) <= 14


def test_demo_provisions_a_scenario(tmp_path: Path) -> None:
    core = build_core(Settings(data_dir=tmp_path))
    try:
        s = scenarios.get("rural")
        fleet, created = provision(core, tmp_path, plan_scenarios([s], total=4))
        assert created == len(fleet) == 4
        assert {m.id for m in core.store.list_products()} == {p.id for p in s.products}
        device = core.store.get_device(fleet[0].id)
        assert device is not None and device.tags["site"] == s.area.district
    finally:
        core.close()


def test_demo_refuses_an_unknown_scenario(tmp_path: Path) -> None:
    result = run("demo", "--scenario", "mining", "--data-dir", str(tmp_path))
    assert result.exit_code == 2
    assert "mining" in result.output
