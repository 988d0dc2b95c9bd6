#!/usr/bin/env python3
"""bench/embedded.py - the embedded default: the platform's own MQTT transport against the
amqtt broker + paho consumer it replaced, in one run, on the same load.

Each variant runs `wulian serve` (embedded, SQLite) from its own source tree as a
subprocess: "transport" from this tree, "amqtt" from a git worktree of `--baseline` (the
last commit with amqtt; made under /tmp with its own locked environment). The same
bench/loadgen.py (raw MQTT 3.1.1, QoS 1, `--window` in flight per device) drives N devices
with their own credentials, closed loop, for `--seconds`. Reported per variant:
acknowledged msg/s, stored msg/s (/api/v1/stats), acknowledged but not stored (loss, read
after the drain), CPU µs per stored message of the serve process (all its threads), and its
peak RSS. Bench product: bench/product.json (5 properties, ~90-byte payloads).

    uv run python bench/embedded.py                     # 200 devices, 20 s each
    uv run python bench/embedded.py --devices 1000 --seconds 30

Bounded: each phase `--seconds` plus a 60 s drain; only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TOKEN = "bench-embedded-token"
BASELINE = "29945ca"  # the last commit whose embedded default was amqtt + a paho consumer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def baseline_tree(rev: str) -> Path:
    """A worktree of `rev` with its own environment (uv sync --locked)."""
    path = Path(tempfile.gettempdir()) / f"wulian-baseline-{rev}"
    if not path.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
                       check=True, capture_output=True)
    subprocess.run(["uv", "sync", "--locked", "-q"], cwd=path, check=True)
    return path


def python_of(tree: Path) -> str:
    return str(tree / ".venv" / "bin" / "python")


class Sampler(threading.Thread):
    """Peak RSS of a process, sampled every 100 ms."""

    def __init__(self, proc: psutil.Process) -> None:
        super().__init__(daemon=True)
        self.proc, self.peak, self.stop = proc, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return


def run_variant(name: str, tree: Path, a: argparse.Namespace) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix=f"wulian-bench-{name}-"))
    http_port, mqtt_port = free_port(), free_port()
    env = {**os.environ, "WULIAN_DATA_DIR": str(data), "WULIAN_HTTP_PORT": str(http_port),
           "WULIAN_MQTT_PORT": str(mqtt_port), "WULIAN_ADMIN_TOKEN": TOKEN, "WULIAN_LANG": "en"}
    log = (data / "serve.log").open("wb")
    proc = subprocess.Popen([python_of(tree), "-m", "wulian.cli", "serve"], cwd=tree, env=env,
                            stdout=log, stderr=log)
    api = httpx.Client(base_url=f"http://127.0.0.1:{http_port}/api/v1",
                       headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if api.get("/health").is_success:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{name}: serve did not start")
            time.sleep(0.2)
        product = json.loads((HERE / "product.json").read_text())
        api.post("/products", json=product).raise_for_status()
        creds = data / "creds.jsonl"
        with creds.open("w") as out:
            for n in range(a.devices):
                r = api.post("/devices", json={"id": f"b{n:05d}", "product": product["id"]})
                r.raise_for_status()
                out.write(json.dumps({"id": f"b{n:05d}", "secret": r.json()["secret"]}) + "\n")
        ps = psutil.Process(proc.pid)
        sampler = Sampler(ps)
        sampler.start()
        before = ps.cpu_times()
        stored_before = api.get("/stats").json()["messages_accepted"]
        gen = subprocess.run([sys.executable, str(HERE / "loadgen.py"), "--port", str(mqtt_port),
                              "--creds", str(creds), "--devices", str(a.devices), "--procs", "1",
                              "--seconds", str(a.seconds), "--window", str(a.window),
                              "--drain-timeout", "60"],
                             capture_output=True, text=True, timeout=a.seconds + 180)
        if gen.returncode:
            raise RuntimeError(f"{name}: loadgen failed: {gen.stderr[-2000:]}")
        load = json.loads(gen.stdout.strip().splitlines()[-1])
        # what the consumer still holds is stored within the drain, or lost
        settle = time.monotonic() + 30
        stored = 0
        while time.monotonic() < settle:
            stored = api.get("/stats").json()["messages_accepted"] - stored_before
            if stored >= load["acked"]:
                break
            time.sleep(0.5)
        after = ps.cpu_times()
        sampler.stop.set()
        cpu_s = (after.user - before.user) + (after.system - before.system)
        return {"variant": name, "devices": a.devices, "seconds": a.seconds,
                "acked": load["acked"], "acked_per_s": load["acked_per_s"],
                "stored": stored, "stored_per_s": round(stored / a.seconds),
                "acked_not_stored": max(0, load["acked"] - stored),
                "cpu_us_per_msg": round(cpu_s * 1e6 / max(stored, 1), 1),
                "serve_cpu_pct": round(100 * cpu_s / a.seconds),
                "peak_rss_mb": round(sampler.peak / 2**20), "gen_cpu_s": load["gen_cpu_s"]}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def ceiling() -> dict[str, Any]:
    """The reference MQTT ceiling on this machine now: delivered msg/s, median of 2 runs."""
    script = ROOT.parent / "shared" / "reference-bench" / "mqtt_throughput.py"
    results = Path(tempfile.mkdtemp()) / "ceiling.jsonl"
    subprocess.run([sys.executable, str(script), "--broker", "mosquitto", "--sub", "c",
                    "--pub", "c", "--qos", "1", "--msgs", "200000", "--runs", "2",
                    "--port", str(free_port())], env={**os.environ,
                    "REFBENCH_RESULTS": str(results)}, check=True, capture_output=True,
                   timeout=400)
    summary = json.loads(results.read_text().splitlines()[-1])["summary"]
    return {"variant": "ceiling (C pub -> Mosquitto -> C sub, QoS 1)",
            "delivered_per_s": round(summary["delivered_per_s"]["median"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--baseline", default=BASELINE)
    ap.add_argument("--only", choices=("transport", "amqtt"))
    ap.add_argument("--ceiling", action="store_true",
                    help="also the MQTT ceiling: C pub -> Mosquitto -> C sub, QoS 1 "
                         "(../shared/reference-bench/mqtt_throughput.py)")
    a = ap.parse_args()
    if a.ceiling:
        print(json.dumps(ceiling()), flush=True)
    variants = [("transport", ROOT)]
    if a.only != "transport":
        variants.append(("amqtt", baseline_tree(a.baseline)))
    if a.only == "amqtt":
        variants = variants[1:]
    for name, tree in variants:
        print(json.dumps(run_variant(name, tree, a)), flush=True)


if __name__ == "__main__":
    main()
