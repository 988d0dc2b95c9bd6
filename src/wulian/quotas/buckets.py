"""Token buckets in a dict: the rate limiter of the ingest path.

Why not the `limits` package here (it serves the API, see `wulian.quotas.api`): measured
on this machine, `limits` 5.8 with MemoryStorage costs 2.6 µs per hit (fixed window) and
3.7 µs (moving window); the ingest path makes two or three checks per message, ~8 µs,
which at 30k msg/s is a quarter of a core, far over the 5 % the limits may cost. A bucket
here is a list in a dict and a few float operations: ~0.3 µs per check (see
docs/benchmarks.md, "Quotas"). The clock is the caller's, so tests control time.
"""

from __future__ import annotations

import math


def retry_after(wait_s: float) -> int:
    """Whole seconds to wait, as Retry-After says it: never 0 for a refusal."""
    return max(1, math.ceil(wait_s))


class TokenBuckets:
    """Buckets keyed by name, each holding up to one second's worth of its rate.

    Bounded: past `max_keys` buckets all are dropped (everyone starts full again), which
    costs a burst of at most one second per key, never memory.
    """

    __slots__ = ("_buckets", "_max")

    def __init__(self, max_keys: int = 200_000) -> None:
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, last refill s]
        self._max = max_keys

    def wait(self, key: str, rate: float, now_s: float, cost: float = 1.0) -> float:
        """Seconds until `cost` tokens are there (0.0: now); takes nothing."""
        bucket = self._buckets.get(key)
        tokens = rate if bucket is None else _refilled(bucket, rate, now_s)
        if tokens >= cost:
            return 0.0
        return (cost - tokens) / rate if rate > 0 else math.inf

    def take(self, key: str, rate: float, now_s: float, cost: float = 1.0) -> None:
        """Spend `cost` tokens (after `wait` said 0)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max:
                self._buckets.clear()
            self._buckets[key] = [rate - cost, now_s]
            return
        bucket[0] = _refilled(bucket, rate, now_s) - cost
        bucket[1] = max(bucket[1], now_s)

    def __len__(self) -> int:
        return len(self._buckets)


def _refilled(bucket: list[float], rate: float, now_s: float) -> float:
    # Arrival times from several connections interleave slightly out of order: an earlier
    # one adds nothing rather than taking tokens back.
    return min(rate, bucket[0] + max(0.0, now_s - bucket[1]) * rate)
