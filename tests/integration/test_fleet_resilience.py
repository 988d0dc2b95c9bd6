"""A device, and a fleet, keep going through what a demo meets: a broker that is not up
yet, values spoiled on purpose, and a device that fails in a way nobody planned."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.common import free_port
from wulian import scenarios
from wulian.sdk import BrokerUnreachable, Device
from wulian.sim import Fleet, FleetDevice, Product
from wulian.sim.fleet import FleetStats

pytestmark = pytest.mark.mosquitto
PASSWORD = "s3cret-for-fleet"
NAMES = ["dev-a", "dev-b", "dev-c", "dev-d"]


class LateBroker:
    """A private Mosquitto on a port chosen now, started when the test says so."""

    def __init__(self, directory: Path) -> None:
        if not shutil.which("mosquitto") or not shutil.which("mosquitto_passwd"):
            if os.environ.get("CI"):
                raise RuntimeError("CI promises mosquitto and mosquitto_passwd: install them")
            pytest.skip("mosquitto is not installed")
        self.port = free_port()
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        passwd = self.directory / "passwd"
        for k, name in enumerate(NAMES):
            subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if k == 0 else []), str(passwd),
                            name, PASSWORD], check=True, capture_output=True)
        passwd.chmod(0o600)
        conf = self.directory / "mosquitto.conf"
        run_as = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(f"{run_as}listener {self.port} 127.0.0.1\nallow_anonymous false\n"
                        f"password_file {passwd}\npersistence false\n")
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def late_broker(tmp_path: Path) -> Iterator[LateBroker]:
    broker = LateBroker(tmp_path)
    try:
        yield broker
    finally:
        broker.stop()


def wait_for(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_begin_connect_may_be_tried_again_after_a_refused_tcp_connect() -> None:
    dev = Device("dev-a", PASSWORD, port=free_port())
    for timeout in (2.0, 2.0, 3.0, None, 1.5):  # the same, another, the constructor's
        with pytest.raises(BrokerUnreachable):
            dev.begin_connect(timeout)


def test_a_device_connects_once_its_broker_is_up(late_broker: LateBroker) -> None:
    dev = Device("dev-a", PASSWORD, port=late_broker.port)
    with pytest.raises(BrokerUnreachable):
        dev.connect(2)
    with pytest.raises(BrokerUnreachable):
        dev.connect(3, loop=False)
    late_broker.start()
    dev.connect(5)  # another timeout again, on the client that already tried twice
    try:
        dev.publish_telemetry({"temperature": 21.0})
        dev.wait_published(5)
    finally:
        dev.disconnect()
    other = Device("dev-b", PASSWORD, port=late_broker.port)
    with pytest.raises(BrokerUnreachable):
        Device("dev-b", PASSWORD, port=free_port()).connect(1, loop=False)
    other.connect(4, loop=False)
    other.disconnect()


def run_fleet(fleet: Fleet) -> tuple[threading.Thread, list[FleetStats]]:
    out: list[FleetStats] = []
    runner = threading.Thread(target=lambda: out.append(fleet.run()), daemon=True)
    runner.start()
    return runner, out


def test_a_fleet_started_before_its_broker_reports_once_it_is_up(
        late_broker: LateBroker) -> None:
    product = scenarios.get("rural").products[1].product  # the turbidity one
    devices = [FleetDevice(name, PASSWORD, product, k) for k, name in enumerate(NAMES)]
    # every reading spoiled: the fleet must neither crash on it nor stop reporting
    fleet = Fleet(devices, port=late_broker.port, rate_hz_per_device=10, bad_rate=1.0,
                  threads=2, connect_timeout=2.0)
    runner, out = run_fleet(fleet)
    try:
        wait_for(lambda: fleet.stats().connect_failures >= len(NAMES), 10, "refused connects")
        late_broker.start()
        # the first retry comes after about a second: the same clients connect again
        wait_for(lambda: fleet.stats().connected == len(NAMES), 15, "every device connected")
        sent = fleet.stats().sent
        wait_for(lambda: fleet.stats().sent >= sent + 40, 10, "readings after connecting")
        assert all(t.is_alive() for t in threading.enumerate()
                   if t.name.startswith("wulian-fleet-"))
    finally:
        fleet.stop()
        runner.join(30)
    stats = out[0]
    assert stats.crashes == 0
    assert stats.acked == stats.sent + stats.events_sent


def test_one_failing_device_is_restarted_and_the_others_carry_on(
        late_broker: LateBroker, caplog: pytest.LogCaptureFixture) -> None:
    late_broker.start()
    healthy = scenarios.get("energy").products[1].product
    calls = {"n": 0}

    def flaky(i: int, t_ms: int, rng: random.Random) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] in (3, 4, 5, 9):  # an unplanned bug, now and then
            raise ZeroDivisionError("a simulator bug")
        return healthy.sampler(i, t_ms, rng)

    broken = Product(healthy.doc, flaky, healthy.event_rule, "flaky")
    devices = [FleetDevice("dev-a", PASSWORD, broken, 0),
               FleetDevice("dev-b", PASSWORD, healthy, 1)]
    fleet = Fleet(devices, port=late_broker.port, rate_hz_per_device=20, bad_rate=0.0,
                  threads=1)
    with caplog.at_level("ERROR", logger="wulian.sim.fleet"):
        runner, out = run_fleet(fleet)
        try:
            # dev-a failed four times and came back each time (after its backoff)
            wait_for(lambda: calls["n"] > 12, 30, "the flaky device reporting again")
            assert runner.is_alive()
        finally:
            fleet.stop()
            runner.join(30)
    stats = out[0]
    assert stats.crashes == 4
    assert stats.sent >= 40  # dev-b never stopped
    assert "dev-a failed" in caplog.text and "ZeroDivisionError" in caplog.text
    assert stats.acked == stats.sent + stats.events_sent
