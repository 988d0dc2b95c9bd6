"""API request rate per caller, on the `limits` package (moving window, in memory).

A few thousand API requests a second at most, so `limits`' ~4 µs per hit is nothing here
(unlike the ingest path, see `wulian.quotas.buckets`). Per process: `wulian serve` answers
the API from one process; behind N API processes each admits the caller's full rate
(pass a shared `limits` storage, e.g. `RedisStorage`, to hold them to one budget).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from limits import RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.storage import MemoryStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from wulian.domain.quotas import DEFAULT_API_PER_S, Quotas
from wulian.errors import InvalidInput, QuotaExceeded
from wulian.ports import MetadataStore
from wulian.quotas.buckets import retry_after

ORG_QUOTAS_TTL_S = 5.0  # a changed api_per_s applies within this; no query per request


class OrgQuotaCache:
    """Organisations' quotas, re-read at most every `ttl_s`."""

    def __init__(self, store: MetadataStore, *, ttl_s: float = ORG_QUOTAS_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._ttl = ttl_s
        self._clock = clock
        self._cached: dict[str, tuple[float, Quotas]] = {}
        self._lock = threading.Lock()

    def get(self, org_id: str) -> Quotas:
        now = self._clock()
        hit = self._cached.get(org_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            quotas = Quotas.parse(self._store.org_quotas(org_id))
        except InvalidInput:
            # a bad document must not lock everyone out of the API that would fix it
            quotas = hit[1] if hit is not None else Quotas()
        with self._lock:
            self._cached[org_id] = (now + self._ttl, quotas)
        return quotas


class ApiRateLimiter:
    """Refuses a caller's request beyond its organisation's `api_per_s`."""

    def __init__(self, quotas: OrgQuotaCache, storage: Storage | None = None) -> None:
        self._quotas = quotas
        self._limiter = MovingWindowRateLimiter(storage or MemoryStorage())

    def hit(self, org_id: str, caller: str) -> None:
        """Count one request; QuotaExceeded (429 + Retry-After) when over the rate."""
        rate = self._quotas.get(org_id).api_per_s
        if rate is None:
            rate = DEFAULT_API_PER_S
        # `limits` counts whole requests per window: below 1/s, count per minute instead.
        item = (RateLimitItemPerSecond(max(1, round(rate))) if rate >= 1
                else RateLimitItemPerMinute(max(1, math.floor(rate * 60))))
        if self._limiter.hit(item, org_id, caller):
            return
        stats = self._limiter.get_window_stats(item, org_id, caller)
        wait = retry_after(stats.reset_time - time.time())
        raise QuotaExceeded("rate_limited", message_key="quotas.api_rate_limited",
                            retry_after_s=wait, limit=rate, caller=caller[:128],
                            extra={"limit": rate, "retry_after_s": wait})
