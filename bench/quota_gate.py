#!/usr/bin/env python3
"""bench/quota_gate.py - CPU cost of the quota gate per message, in process, no I/O.

Times `Pipeline.prepare` (lookup, gate, decode, validate; no storage) over the same batch
of telemetry from 1,000 devices in 10 organisations, without quotas and with every ingest
check on (device msgs/s, org msgs/s, org bytes/day; none refusing), alternating the two
`--rounds` times and keeping each one's best; plus the gate alone and the `limits`
package's fixed and moving windows for comparison.
Usage: uv run python bench/quota_gate.py [--rounds 7] [--messages 50000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from tests.fixtures.common import ENV_SENSOR
from tests.unit.fakes import FakeStore

from wulian.domain.device import Device
from wulian.domain.message import Inbound, Kind, Protocol
from wulian.domain.quotas import Quotas
from wulian.domain.thingmodel import parse_thing_model
from wulian.pipeline.directory import DeviceDirectory
from wulian.pipeline.ingest import Pipeline
from wulian.quotas.gate import IngestGate

LIMITS = {"device_msgs_per_s": 1e6, "msgs_per_s": 1e9, "bytes_per_day": 10**15}


def pipeline(quotas: dict[str, object]) -> Pipeline:
    store = FakeStore()
    store.put_product(parse_thing_model(ENV_SENSOR))
    for n in range(1000):
        store.add_device(Device(f"d{n}", "env-sensor", f"d{n}", "x"))
        store.device_orgs[f"d{n}"] = f"org{n % 10}"
    for k in range(10):
        store.org_docs[f"org{k}"] = quotas
    return Pipeline(store, DeviceDirectory(store), clock=lambda: time.time_ns() // 1_000_000,
                    lang="en")


def best_us(fn, n: int, rounds: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--messages", type=int, default=50_000)
    a = ap.parse_args()
    n = a.messages
    now = time.time_ns() // 1_000_000
    msgs = [Inbound(device_id=f"d{i % 1000}", kind=Kind.TELEMETRY,
                    payload=b'{"temperature": 21.5, "humidity": 40}', protocol=Protocol.MQTT,
                    received_ms=now + i // 100, topic="t") for i in range(n)]
    plain, limited = pipeline({}), pipeline(LIMITS)
    plain.prepare(msgs[:2000])
    limited.prepare(msgs[:2000])  # fill the directory caches
    results = {"plain": float("inf"), "limited": float("inf")}
    for _ in range(a.rounds):  # alternate, so drift in machine load hits both alike
        results["plain"] = min(results["plain"], best_us(lambda: plain.prepare(msgs), n, 1))
        results["limited"] = min(results["limited"],
                                 best_us(lambda: limited.prepare(msgs), n, 1))
    assert not limited.stats, limited.stats  # nothing refused
    gate, quotas = IngestGate(), Quotas.parse(LIMITS)
    gate_us = best_us(lambda: [gate.check("o", m.device_id, quotas, 40, m.received_ms)
                               for m in msgs], n, a.rounds)
    item = RateLimitItemPerSecond(10**6)
    lib = {}
    for cls in (FixedWindowRateLimiter, MovingWindowRateLimiter):
        lim = cls(MemoryStorage())
        lib[cls.__name__] = best_us(lambda lim=lim: [lim.hit(item, "o", m.device_id)
                                                     for m in msgs], n, min(3, a.rounds))
    print(f"Pipeline.prepare, no quotas      : {results['plain']:.2f} µs/msg")
    print(f"Pipeline.prepare, all checks on  : {results['limited']:.2f} µs/msg "
          f"(+{100 * (results['limited'] / results['plain'] - 1):.1f} %)")
    print(f"IngestGate.check alone (3 checks): {gate_us:.2f} µs/msg")
    for name, us in lib.items():
        print(f"limits {name}.hit (1 check)  : {us:.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
