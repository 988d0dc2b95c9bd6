"""`wulian demo` end to end, as a user runs it: a subprocess, real MQTT, a real data dir."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from wulian.config import Settings
from wulian.storage import open_store

SUMMARY = re.compile(r"Fleet sent (\d+) readings \((\d+) acknowledged, (\d+) error replies\)\. "
                     r"Platform totals: (\d+) accepted, (\d+) rejected, (\d+) points\.")


def run_demo(workdir: Path, data: Path, seconds: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "WULIAN_LANG": "en"}
    env.pop("WULIAN_ADMIN_TOKEN", None)
    return subprocess.run(
        [sys.executable, "-m", "wulian.cli", "--lang", "en", "demo", "--data-dir", str(data),
         "--devices", "100", "--seconds", str(seconds), "--rate", "2", "--bad-rate", "0.05",
         "--mqtt-port", "0", "--http-port", "0"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=240, check=False)


@pytest.mark.timeout(600)
def test_demo_runs_stores_and_reuses_its_devices(tmp_path: Path) -> None:
    data = tmp_path / "demo-data"
    first = run_demo(tmp_path, data, 20)
    out = first.stdout + first.stderr
    assert first.returncode == 0, out
    assert "Traceback" not in out
    assert "/api/v1" in out and "/docs" in out and "mqtt://127.0.0.1:" in out
    assert "100 demo devices ready (100 new, 0 reused)" in out
    secrets_file = data / "demo-devices.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    summary = SUMMARY.search(out)
    assert summary, out
    sent, acked, errors, accepted, rejected, points = map(int, summary.groups())
    assert sent >= acked > 0 and accepted > 0 and points > 0
    assert rejected > 0 and errors > 0  # the odd bad value is refused and answered
    # Nothing the broker acknowledged to a device is lost: every acked reading was
    # stored or refused with a reason.
    assert accepted + rejected == acked, out

    store = open_store(Settings(data_dir=data).database_url)
    try:
        devices = store.list_devices(limit=1000)
        assert len(devices) == 100
        assert {d.product for d in devices} == {"env-sensor", "smart-meter", "streetlight"}
        assert all("site" in d.tags and d.location is not None for d in devices)
        assert store.counters()["messages_accepted"] == accepted
    finally:
        store.close()

    secrets_before = secrets_file.read_bytes()
    second = run_demo(tmp_path, data, 5)
    out2 = second.stdout + second.stderr
    assert second.returncode == 0, out2
    assert "100 demo devices ready (0 new, 100 reused)" in out2
    assert "admin.token" in out2  # the token is not shown again, only where it is kept
    assert secrets_file.read_bytes() == secrets_before
    # The demo writes only inside its data dir.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-data"]
