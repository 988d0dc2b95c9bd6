"""Token buckets in a dict: the rate limiter of the ingest path.

Why not the `limits` package here (it serves the API, see `wulian.quotas.api`): measured
on this machine (`bench/quota_gate.py`), `limits` 5.8 with MemoryStorage costs 2.2 µs per
hit (fixed window) and 2.7-3.0 µs (moving window); the ingest path makes three checks per
message, 7-9 µs, which at 30k msg/s is a quarter of a core, far over the 5 % the limits
may cost. These buckets, a list in a dict and a few float operations, cost 0.53-0.58 µs
for all three (docs/benchmarks.md, "Quotas"). The clock is the caller's: tests hold it.
"""

from __future__ import annotations

import math


def retry_after(wait_s: float) -> int:
    """Whole seconds to wait, as Retry-After says it: never 0 for a refusal."""
    return max(1, math.ceil(wait_s))


class TokenBuckets:
    """Buckets keyed by name, each holding up to one second's worth of its rate (at least
    one message, so a rate below 1/s, e.g. a worker's share of 1/s, still admits some).

    `refill` hands back the bucket itself, `[tokens, last refill s]`: the caller checks
    `tokens >= cost` and subtracts what it spends, so checking several buckets before
    spending from any costs one dict lookup each. Bounded: past `max_keys` buckets all are
    dropped (everyone starts full again), which costs a burst of one second, never memory.
    """

    __slots__ = ("_buckets", "_max")

    def __init__(self, max_keys: int = 200_000) -> None:
        self._buckets: dict[str, list[float]] = {}
        self._max = max_keys

    def refill(self, key: str, rate: float, now_s: float) -> list[float]:
        """The key's bucket, topped up for the time since it was last refilled."""
        bucket = self._buckets.get(key)
        burst = rate if rate > 1.0 else 1.0
        if bucket is None:
            if len(self._buckets) >= self._max:
                self._buckets.clear()
            bucket = self._buckets[key] = [burst, now_s]
            return bucket
        # Arrival times from several connections interleave slightly out of order: an
        # earlier one adds nothing (and does not move the clock back).
        elapsed = now_s - bucket[1]
        if elapsed > 0:
            tokens = bucket[0] + elapsed * rate
            bucket[0] = burst if tokens > burst else tokens
            bucket[1] = now_s
        return bucket

    def __len__(self) -> int:
        return len(self._buckets)


def wait_s(bucket: list[float], rate: float, cost: float = 1.0) -> float:
    """Seconds until `bucket` holds `cost` tokens at `rate` (0.0: it does now)."""
    missing = cost - bucket[0]
    if missing <= 0:
        return 0.0
    return missing / rate if rate > 0 else math.inf
