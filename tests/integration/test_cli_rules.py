"""`wulian rule …` and `wulian alarm …` against a real store in a temporary data directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.common import ENV_SENSOR
from tests.integration.test_cli import failing, ok
from wulian.bootstrap import build_core
from wulian.config import Settings
from wulian.domain.message import SeenRecord, WriteBatch
from wulian.i18n import set_language
from wulian.storage.rules import AlarmQuery

T0 = 1_764_000_000_000
RULE = """
id: hot
name: Too hot
severity: critical
product: env-sensor
condition: {type: threshold, property: temperature, op: ">", value: 30}
actions:
  - {type: webhook, url: "http://127.0.0.1:9/hook", secret: "do-not-show-this-1234"}
"""


@pytest.fixture(autouse=True)
def _english() -> None:
    set_language("en")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def rule_file(tmp_path: Path) -> Path:
    path = tmp_path / "hot.yaml"
    path.write_text(RULE, "utf-8")
    return path


def test_rules_from_a_file_listed_shown_switched_and_removed(data_dir: Path,
                                                             rule_file: Path) -> None:
    assert "rule hot saved (version 1)" in ok(data_dir, "rule", "add", str(rule_file))
    assert "already exists" in failing(data_dir, 1, "rule", "add", str(rule_file))
    assert "version 2" in ok(data_dir, "rule", "add", "--replace", str(rule_file))
    listed = ok(data_dir, "rule", "list")
    assert "hot" in listed and "Too hot" in listed
    shown = ok(data_dir, "rule", "show", "hot")
    assert "threshold" in shown and "do-not-show-this-1234" not in shown
    assert "is off" in ok(data_dir, "rule", "disable", "hot")
    assert "is on" in ok(data_dir, "rule", "enable", "hot")
    assert "removed" in ok(data_dir, "rule", "remove", "hot", "--yes")
    assert "no rules yet" in ok(data_dir, "rule", "list")
    assert "no rule with ID hot" in failing(data_dir, 1, "rule", "show", "hot")


def test_a_bad_rule_file_names_the_field(data_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nproduct: p\ncondition: {type: threshold, property: t, op: '~', "
                   "value: 1}\n", "utf-8")
    assert "$.condition.op" in failing(data_dir, 2, "rule", "add", str(bad))
    broken = tmp_path / "broken.yaml"
    broken.write_text("id: [x", "utf-8")
    assert "not valid JSON or YAML" in failing(data_dir, 2, "rule", "add", str(broken))
    assert "cannot read" in failing(data_dir, 2, "rule", "add", str(tmp_path / "nope.yaml"))


def test_backtest_and_alarms_from_the_command_line(data_dir: Path, rule_file: Path) -> None:
    settings = Settings(data_dir=data_dir)
    core = build_core(settings)
    try:
        core.registry.import_product(ENV_SENSOR)
        core.registry.add_device("d1", "env-sensor")
        core.store.write(WriteBatch(points=[("d1", "temperature", T0 + i * 60_000, v)
                                            for i, v in enumerate((20, 35, 36, 20))],
                                    seen={"d1": SeenRecord(T0, "mqtt", None)}, accepted=4))
    finally:
        core.close()
    ok(data_dir, "rule", "add", str(rule_file))
    tested = ok(data_dir, "rule", "test", "hot", "--since", str(T0), "--until",
                str(T0 + 3_600_000))
    assert "raised 1 times, cleared 1 times" in " ".join(tested.split())

    core = build_core(settings)  # an alarm raised by a running service earlier
    try:
        core.rules.start()
        core.rules.submit(WriteBatch(points=[("d1", "temperature", T0, 35.0)], accepted=1))
        core.rules.call(lambda: None)
        core.rules.stop()
        alarm_id = core.rule_store.list_alarms(AlarmQuery(state="open"))[0].alarm.id
    finally:
        core.close()
    assert alarm_id in ok(data_dir, "alarm", "list")
    assert "acknowledged by alice" in ok(data_dir, "alarm", "ack", alarm_id, "--by", "alice",
                                         "-m", "looking")
    assert "already acknowledged" in failing(data_dir, 1, "alarm", "ack", alarm_id)
    assert "cleared by bob" in ok(data_dir, "alarm", "clear", alarm_id, "--by", "bob")
    assert "no alarms" in ok(data_dir, "alarm", "list")
    assert alarm_id in ok(data_dir, "alarm", "list", "--state", "cleared")
    assert "unknown state" in failing(data_dir, 2, "alarm", "list", "--state", "weird")
