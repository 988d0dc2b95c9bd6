"""Prometheus `/metrics`: what the benchmarks see, for operators (issue 10).

One collector, read at scrape time, so the hot path carries no extra instrumentation:

- ingest totals (accepted, rejected by code, points and events stored) come from the
  database counters, which every process adds to: exact across all workers and restarts;
- per worker process (label `worker`): what its consumer holds unacknowledged (messages,
  bytes), received/acked/store failures/read pauses, broker drops ($SYS, worker 0), its
  RSS and CPU seconds, and a histogram of storage write latency per batch. Workers are
  separate processes: each writes its figures every second to
  `<data dir>/metrics/ingest-<n>.json`, which this collector reads (prometheus_client's
  multiprocess mode was not used: it needs the directory wiped at every start and keeps
  no gauges of a dead process apart from the live ones). Figures older than 10 s (a
  stopped worker) are left out;
- rules lag: points waiting for the rules thread and its queue length;
- connections: devices online (connected now, or seen within the online window);
- the serve process itself: prometheus_client's process collector (process_*).
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import resource
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from wulian.bootstrap import Core

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STALE_S = 10.0
_WORKER_COUNTERS = ("received", "acked", "store_failures", "reads_paused", "rejected",
                    "duplicates_skipped", "internal_errors")


class LatencyHistogram:
    """Cumulative-bucket latency counts, cheap enough for once per batch."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS_S) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last: +Inf
        self.sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
            self.sum += seconds

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"buckets": list(self.buckets), "counts": list(self.counts), "sum": self.sum}


def metrics_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "metrics"


def _rss_bytes() -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # peak, not current


def write_worker_figures(data_dir: Path, index: int, counters: dict[str, int],
                         latency: LatencyHistogram) -> None:
    """A worker's figures for the serve process's collector (atomic replace)."""
    folder = metrics_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    doc = {"pid": os.getpid(), "written": time.time(), "counters": counters,
           "rss_bytes": _rss_bytes(), "cpu_s": usage.ru_utime + usage.ru_stime,
           "store_latency": latency.snapshot()}
    tmp = folder / f".ingest-{index}.json.tmp"
    tmp.write_text(json.dumps(doc))
    tmp.replace(folder / f"ingest-{index}.json")


class WulianCollector(Collector):
    """Everything above, read when Prometheus scrapes."""

    def __init__(self, core: Core, local: Callable[[], Iterable[tuple[str, dict[str, Any]]]]
                 = lambda: ()) -> None:
        self.core = core
        self.local = local  # in-process consumers (embedded mode): (name, figures)

    def _workers(self) -> Iterator[tuple[str, dict[str, Any]]]:
        yield from self.local()
        now = time.time()
        for path in sorted(metrics_dir(self.core.settings.data_dir).glob("ingest-*.json")):
            with contextlib.suppress(OSError, ValueError):
                doc = json.loads(path.read_text())
                if now - float(doc.get("written", 0)) <= STALE_S:
                    yield path.stem.removeprefix("ingest-"), doc

    def collect(self) -> Iterator[Metric]:
        counters = self.core.store.counters()
        accepted = CounterMetricFamily("wulian_messages_accepted", "Messages stored")
        accepted.add_metric([], counters.get("messages_accepted", 0))
        yield accepted
        rejected = CounterMetricFamily("wulian_messages_rejected",
                                       "Messages refused, by reason code", labels=["code"])
        for name, value in sorted(counters.items()):
            if name.startswith("rejected."):
                rejected.add_metric([name.removeprefix("rejected.")], value)
        yield rejected
        for name, help_text in (("points_stored", "Property values stored"),
                                ("events_stored", "Events stored")):
            family = CounterMetricFamily(f"wulian_{name}", help_text)
            family.add_metric([], counters.get(name, 0))
            yield family
        yield from self._worker_metrics()
        yield from self._rules_metrics()
        yield from self._connections()

    def _worker_metrics(self) -> Iterator[Metric]:
        held = GaugeMetricFamily("wulian_ingest_held_messages",
                                 "Messages a consumer holds unacknowledged", labels=["worker"])
        held_bytes = GaugeMetricFamily("wulian_ingest_held_bytes",
                                       "Bytes a consumer holds unacknowledged", labels=["worker"])
        rss = GaugeMetricFamily("wulian_ingest_worker_resident_bytes",
                                "Resident memory of an ingest worker", labels=["worker"])
        cpu = CounterMetricFamily("wulian_ingest_worker_cpu_seconds",
                                  "CPU time of an ingest worker", labels=["worker"])
        dropped = CounterMetricFamily("wulian_broker_dropped_messages",
                                      "Messages the broker dropped ($SYS)", labels=["worker"])
        totals = {name: CounterMetricFamily(f"wulian_ingest_{name}",
                                            f"Consumer {name.replace('_', ' ')}",
                                            labels=["worker"]) for name in _WORKER_COUNTERS}
        latency = HistogramMetricFamily("wulian_storage_write_seconds",
                                        "Time to store one ingest batch", labels=["worker"])
        for worker, doc in self._workers():
            c = doc.get("counters", {})
            held.add_metric([worker], c.get("held_messages", 0))
            held_bytes.add_metric([worker], c.get("held_bytes", 0))
            for name, family in totals.items():
                family.add_metric([worker], c.get(name, 0))
            if "broker_dropped_total" in c:
                dropped.add_metric([worker], c["broker_dropped_total"])
            if "rss_bytes" in doc:
                rss.add_metric([worker], doc["rss_bytes"])
                cpu.add_metric([worker], doc["cpu_s"])
            snap = doc.get("store_latency")
            if snap:
                running, buckets = 0, []
                for bound, count in zip([*snap["buckets"], float("inf")], snap["counts"],
                                        strict=True):
                    running += count
                    buckets.append(("+Inf" if bound == float("inf") else str(bound), running))
                latency.add_metric([worker], buckets, snap["sum"])
        yield from (held, held_bytes, rss, cpu, dropped, *totals.values(), latency)

    def _rules_metrics(self) -> Iterator[Metric]:
        rules: Any = getattr(self.core, "rules", None)
        waiting = GaugeMetricFamily("wulian_rules_waiting_points",
                                    "Stored points not yet evaluated by the rules")
        depth = GaugeMetricFamily("wulian_rules_queue_depth",
                                  "Batches queued for the rules thread")
        with contextlib.suppress(AttributeError, TypeError):
            waiting.add_metric([], rules._waiting)
            depth.add_metric([], rules._queue.qsize())
        yield waiting
        yield depth

    def _connections(self) -> Iterator[Metric]:
        from wulian.metrics import fleet_counts

        online = GaugeMetricFamily("wulian_devices_online",
                                   "Devices connected now or seen within the online window")
        with contextlib.suppress(Exception):  # a scrape must answer while storage is down
            since = int(time.time() * 1000) - self.core.settings.online_window_s * 1000
            counts: Any = fleet_counts(self.core.store, since)
            online.add_metric([], counts.online)
        yield online


def build_registry(core: Core, local: Callable[[], Iterable[tuple[str, dict[str, Any]]]]
                   = lambda: ()) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(WulianCollector(core, local))
    registry.register(ProcessCollector(registry=None))
    return registry
