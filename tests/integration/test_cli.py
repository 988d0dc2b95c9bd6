"""The `wulian` command against a real store in a temporary data directory."""

from __future__ import annotations

import csv
import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from wulian.bootstrap import build_core
from wulian.cli import build_app
from wulian.cli._common import parse_time
from wulian.cli._provision import SECRETS_FILE, load_secrets, plan, provision
from wulian.config import Settings
from wulian.domain.device import verify_secret
from wulian.domain.message import Inbound, Kind, Protocol
from wulian.i18n import set_language

T0 = 1_764_000_000_000  # 2025-11-24T16:00:00Z


@pytest.fixture(autouse=True)
def _english() -> None:
    set_language("en")  # each test starts in English whatever the last one chose


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def run(data_dir: Path, *args: str, input: str | None = None) -> object:
    result = CliRunner().invoke(build_app(), ["--data-dir", str(data_dir), *args], input=input)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    return result


def ok(data_dir: Path, *args: str, input: str | None = None) -> str:
    result = run(data_dir, *args, input=input)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    return str(result.output)  # type: ignore[attr-defined]


def failing(data_dir: Path, code: int, *args: str) -> str:
    result = run(data_dir, *args)
    assert result.exit_code == code, result.output  # type: ignore[attr-defined]
    return " ".join(str(result.output).split())  # type: ignore[attr-defined]


@pytest.fixture
def with_device(data_dir: Path, tmp_path: Path, env_sensor_doc: dict) -> str:
    """The issue's env-sensor imported and device env-1 registered; returns its secret."""
    doc = tmp_path / "env.json"
    doc.write_bytes(orjson.dumps(env_sensor_doc))
    ok(data_dir, "product", "import", str(doc))
    out = ok(data_dir, "device", "add", "env-1", "--product", "env-sensor", "--tag", "site=xihu",
             "--lat", "30.25", "--lon", "120.13")
    return next(word for line in out.splitlines() if "secret" in line
                for word in line.replace("│", " ").split() if len(word) >= 30)


def _ingest(data_dir: Path, *bodies: bytes) -> None:
    core = build_core(Settings(data_dir=data_dir))
    try:
        core.pipeline.handle([Inbound("env-1", Kind.TELEMETRY, body, Protocol.MQTT, T0 + k * 1000,
                                      topic="devices/env-1/telemetry")
                              for k, body in enumerate(bodies)])
    finally:
        core.close()


def test_product_import_list_show(data_dir: Path, tmp_path: Path, env_sensor_doc: dict) -> None:
    path = tmp_path / "env.json"
    path.write_bytes(orjson.dumps(env_sensor_doc))
    assert "env-sensor" in ok(data_dir, "product", "import", str(path))
    assert "updated" in ok(data_dir, "product", "import", "-",
                           input=orjson.dumps(env_sensor_doc).decode())
    assert "env-sensor" in ok(data_dir, "product", "list")
    shown = ok(data_dir, "product", "show", "env-sensor")
    assert "temperature" in shown and "reboot" in shown and "fault" in shown
    as_json = orjson.loads(ok(data_dir, "product", "show", "env-sensor", "--json"))
    assert as_json["id"] == "env-sensor" and len(as_json["properties"]) == 4


def test_bad_product_files_name_the_problem(data_dir: Path, tmp_path: Path,
                                            env_sensor_doc: dict) -> None:
    env_sensor_doc["properties"][1]["type"] = "floaty"
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps(env_sensor_doc))
    assert "$.properties[1].type" in failing(data_dir, 2, "product", "import", str(bad))
    (tmp_path / "broken.json").write_text("{not json")
    assert "not valid JSON" in failing(data_dir, 2, "product", "import",
                                       str(tmp_path / "broken.json"))
    assert "cannot read" in failing(data_dir, 2, "product", "import", str(tmp_path / "nope.json"))
    assert "not found" in failing(data_dir, 1, "product", "show", "nope")


def test_device_add_shows_the_secret_once(data_dir: Path, with_device: str) -> None:
    core = build_core(Settings(data_dir=data_dir))
    try:
        device = core.registry.device("env-1")
    finally:
        core.close()
    assert verify_secret(with_device, device.secret_hash)
    assert device.tags == {"site": "xihu"} and device.location is not None
    assert "already exists" in failing(data_dir, 1, "device", "add", "env-1", "-p", "env-sensor")
    assert "nope" in failing(data_dir, 1, "device", "add", "env-2", "-p", "nope")
    assert "id" in failing(data_dir, 2, "device", "add", "bad id!", "-p", "env-sensor")
    assert "key=value" in failing(data_dir, 2, "device", "add", "env-3", "-p", "env-sensor",
                                  "--tag", "novalue")


def test_device_list_show_disable_enable_rotate_delete(data_dir: Path, with_device: str) -> None:
    listing = ok(data_dir, "device", "list")
    assert "env-1" in listing and "site=xihu" in listing and "never" in listing
    assert "env-1" in ok(data_dir, "device", "list", "--tag", "site=xihu")
    assert "No devices" in ok(data_dir, "device", "list", "--product", "other")
    shown = ok(data_dir, "device", "show", "env-1")
    assert "env-sensor" in shown and "30.25000" in shown and "No data" in shown
    ok(data_dir, "device", "disable", "env-1")
    assert "env-1" in ok(data_dir, "device", "list", "--state", "disabled")
    assert "disabled" in ok(data_dir, "device", "show", "env-1")
    ok(data_dir, "device", "enable", "env-1")
    assert "No devices" in ok(data_dir, "device", "list", "--state", "disabled")
    rotated = ok(data_dir, "device", "rotate-secret", "env-1")
    assert with_device not in rotated and "secret" in rotated
    assert "not found" in failing(data_dir, 1, "device", "show", "nope")
    ok(data_dir, "device", "delete", "env-1", "--yes")
    assert "not found" in failing(data_dir, 1, "device", "disable", "env-1")


def test_query_returns_stored_points(data_dir: Path, with_device: str) -> None:
    _ingest(data_dir, b'{"temperature": 20.5, "humidity": 40}', b'{"temperature": 21.5}',
            b'{"temperature": 22.5, "ts": %d}' % (T0 + 10_000), b'{"temperature": 999}')
    table = ok(data_dir, "query", "env-1", "temperature")
    assert all(v in table for v in ("20.5", "21.5", "22.5"))
    rows = list(csv.reader(io.StringIO(ok(data_dir, "query", "env-1", "temperature", "--csv",
                                          "--since", str(T0), "--until", str(T0 + 5000)))))
    assert rows[0] == ["ts", "time", "temperature"]
    assert [(int(r[0]), float(r[2])) for r in rows[1:]] == [(T0, 20.5), (T0 + 1000, 21.5)]
    buckets = list(csv.reader(io.StringIO(ok(
        data_dir, "query", "env-1", "temperature", "--bucket", "1m", "--agg", "max", "--csv",
        "--since", str(T0 - 60_000), "--until", str(T0 + 60_000)))))
    assert [float(r[2]) for r in buckets[1:] if r[2]] == [22.5]
    assert "humidity" in failing(data_dir, 2, "query", "env-1", "pressure")
    assert "aggregate" in failing(data_dir, 2, "query", "env-1", "temperature", "--bucket", "1m",
                                  "--agg", "median")
    assert "not a time" in failing(data_dir, 2, "query", "env-1", "temperature", "--since", "x")
    assert "not a duration" in failing(data_dir, 2, "query", "env-1", "temperature",
                                       "--bucket", "5x")
    latest = ok(data_dir, "device", "show", "env-1")
    assert "22.5" in latest and "°C" in latest


def test_rejections_and_stats(data_dir: Path, with_device: str) -> None:
    _ingest(data_dir, b'{"temperature": 20.5}', b'{"temperature": 999}', b'{"nope": 1}')
    rejected = ok(data_dir, "rejections")
    assert "out_of_range" in rejected and "unknown_property" in rejected
    assert "No rejected" in ok(data_dir, "rejections", "--device", "other")
    stats = " ".join(ok(data_dir, "stats").split())
    assert "messages accepted │ 1" in stats and "messages rejected │ 2" in stats
    assert "rejected: out_of_range │ 1" in stats


def test_lang_zh_prints_chinese(data_dir: Path, with_device: str) -> None:
    assert "已注册设备" in ok(data_dir, "--lang", "zh", "stats")
    result = CliRunner().invoke(build_app(), ["--lang", "zh", "--data-dir", str(data_dir),
                                              "device", "show", "nope"])
    assert result.exit_code == 1 and "找不到设备" in result.output
    result = CliRunner().invoke(build_app(), ["--lang", "xx", "stats"])
    assert result.exit_code == 2 and "xx" in result.output


def test_database_errors_are_one_line(data_dir: Path, tmp_path: Path) -> None:
    out = failing(data_dir, 2, "--database", "mysql://root:hunter2@localhost/x", "stats")
    assert "database URL" in out and "hunter2" not in out
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert "database" in failing(data_dir, 1, "--database", f"sqlite:///{blocker}/sub/w.db",
                                 "stats")


@pytest.mark.postgres
def test_unreachable_postgres_is_one_line(data_dir: Path) -> None:
    out = failing(data_dir, 1, "--database", "postgresql://u:s3cret@127.0.0.1:1/x", "stats")
    assert "database" in out and "s3cret" not in out


def test_broker_config_writes_mosquitto_files(data_dir: Path, tmp_path: Path) -> None:
    out = ok(data_dir, "broker-config", str(tmp_path / "mq"), "--port", "18830")
    assert (tmp_path / "mq" / "mosquitto.conf").exists()
    assert "mosquitto -c" in out and "--broker mqtt://127.0.0.1:18830" in " ".join(out.split())
    assert (data_dir / "mqtt-platform.secret").exists()


def test_time_specs() -> None:
    now = T0
    assert parse_time("1h", now) == now - 3_600_000
    assert parse_time(str(T0), now) == T0
    assert parse_time("2025-11-24T16:00:00Z", now) == T0
    assert parse_time("now", now) == now


def test_demo_provisioning_is_idempotent(data_dir: Path) -> None:
    core = build_core(Settings(data_dir=data_dir))
    try:
        planned = plan(12)
        assert {p.product.id for p in planned} == {"env-sensor", "smart-meter", "streetlight"}
        first, created = provision(core, data_dir, planned)
        assert created == 12 and len({d.id for d in first}) == 12
        secrets_file = data_dir / SECRETS_FILE
        assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
        again, created = provision(core, data_dir, planned)
        assert created == 0 and [d.secret for d in again] == [d.secret for d in first]
        secrets_file.unlink()  # secrets lost: the devices stay, with new secrets
        third, created = provision(core, data_dir, planned)
        assert created == 0 and third[0].secret != first[0].secret
        device = core.registry.device(third[0].id)
        assert verify_secret(third[0].secret, device.secret_hash)
        assert device.tags["site"] and device.location is not None
        assert load_secrets(secrets_file)[third[0].id]["secret"] == third[0].secret
    finally:
        core.close()


def test_entry_point_help_follows_lang() -> None:
    code = "from wulian.cli import main; main()"
    env = {k: v for k, v in os.environ.items() if k not in ("LANG", "LC_ALL", "WULIAN_LANG")}
    zh = subprocess.run([sys.executable, "-c", code, "--lang", "zh", "device", "--help"],
                        capture_output=True, text=True, env=env, timeout=60)
    assert zh.returncode == 0 and "注册设备" in zh.stdout
    en = subprocess.run([sys.executable, "-c", code, "device", "--help"],
                        capture_output=True, text=True, env=env, timeout=60)
    assert en.returncode == 0 and "Register a device" in en.stdout
