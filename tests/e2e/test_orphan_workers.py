"""Ingest workers never outlive `wulian serve`, and a restarted platform never runs beside
the workers of an earlier one (issue 10: after kill -9 of the main process alone, its
workers kept running, fought the new ones over their client ids and stored events twice)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from tests.fixtures.common import free_port
from tests.fixtures.mosquitto import start_mosquitto, wait_until
from wulian.workers import StaleWorkers, clear_stale_workers, hold_worker_lock


def _serve(data: Path, broker: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WULIAN_DATA_DIR": str(data), "WULIAN_BROKER": broker,
           "WULIAN_HTTP_PORT": str(port), "WULIAN_INGEST_WORKERS": "2",
           "WULIAN_ADMIN_TOKEN": "orphan-test-token", "WULIAN_LANG": "en"}
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "wulian.cli", "serve"], env=env,
                                stdout=out, stderr=out)

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).is_success
        except httpx.HTTPError:
            return proc.poll() is not None  # died: stop waiting, the assert below says so

    wait_until(healthy, 90, "wulian serve to answer")
    assert proc.poll() is None, log.read_text()[-3000:]
    return proc


def _workers(pid: int) -> list[psutil.Process]:
    """The ingest worker processes of `wulian serve` (not multiprocessing's helpers)."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        cmd = " ".join(child.cmdline())
        if "multiprocessing" in cmd and "resource_tracker" not in cmd:
            found.append(child)
    return found


@pytest.mark.mosquitto
@pytest.mark.timeout(240)
def test_killing_the_platform_takes_its_workers_and_a_restart_runs_alone(tmp_path: Path) -> None:
    mosq = start_mosquitto(tmp_path / "mosquitto")
    data, log = tmp_path / "data", tmp_path / "serve.log"
    try:
        first = _serve(data, mosq.url, free_port(), log)
        workers = wait_until(lambda: len(w := _workers(first.pid)) == 2 and w, 30,
                             "two ingest workers")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        _gone, alive = psutil.wait_procs(workers, timeout=20)
        assert not alive, f"workers outlived the killed platform: {[p.pid for p in alive]}"
        second = _serve(data, mosq.url, free_port(), log)
        try:
            assert len(wait_until(lambda: len(w := _workers(second.pid)) == 2 and w, 30,
                                  "the new workers")) == 2
            assert "already connected" not in mosq.log()
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                       for p in _workers_of_data(data))
    finally:
        mosq.stop()


def _workers_of_data(data: Path) -> list[psutil.Process]:
    procs = []
    for path in (data / "ingest-workers").glob("*.pid"):
        with contextlib.suppress(psutil.NoSuchProcess, ValueError):
            procs.append(psutil.Process(int(path.read_text())))
    return procs


_HOLDER = """
import signal, sys, time
from pathlib import Path
from wulian.workers import hold_worker_lock
if sys.argv[2] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
hold_worker_lock(Path(sys.argv[1]), 0)
print("holding", flush=True)
time.sleep(60)
"""


def _holder(data: Path, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(data), mode],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def test_a_stale_worker_is_stopped_before_new_ones_start(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    stale = _holder(tmp_path, "polite")
    assert clear_stale_workers(tmp_path, timeout_s=10) == 1
    assert stale.wait(5) == -signal.SIGTERM


def test_a_worker_that_will_not_stop_is_a_clear_error(tmp_path: Path) -> None:
    stubborn = _holder(tmp_path, "stubborn")
    try:
        with pytest.raises(StaleWorkers, match=str(stubborn.pid)):
            clear_stale_workers(tmp_path, timeout_s=0.5)
    finally:
        stubborn.kill()
        stubborn.wait(5)
    assert clear_stale_workers(tmp_path, timeout_s=5) == 0  # the lock died with it


def test_no_stale_worker_means_nothing_to_stop(tmp_path: Path) -> None:
    hold_worker_lock(tmp_path, 3).close()  # held, then released
    assert clear_stale_workers(tmp_path, timeout_s=1) == 0
