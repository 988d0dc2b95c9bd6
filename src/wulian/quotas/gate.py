"""The ingest gate: per device msgs/s, per organisation msgs/s and bytes/day, before decode.

Per process. The budgets are scaled by `share` (1 / the number of ingest workers), so N
workers together admit about the organisation's rate: with an external broker the shared
subscription spreads messages evenly over the workers, so each sees ~1/N of every
device's and organisation's traffic. Exact sharing would need a round trip to a common
store (Redis) per message, which the ingest budget (a few µs per message) cannot afford;
being off by a worker's share for a second is the price. Bytes/day are counted per UTC
day in the process too: a restart forgets the day's bytes (a quota, not a bill).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from wulian.domain.quotas import Quotas
from wulian.domain.rejection import RejectCode, Rejection
from wulian.quotas.buckets import TokenBuckets, retry_after, wait_s

DAY_MS = 86_400_000


@dataclass(slots=True)
class OrgUsage:
    """What one organisation sent through this process: for `GET /api/v1/quotas`."""

    day: int = -1  # UTC day number of `bytes_today`
    bytes_today: int = 0
    second: int = -1
    msgs_this_second: int = 0
    msgs_last_second: int = 0
    refused: Counter[str] = field(default_factory=Counter)

    def msgs_per_s(self, now_ms: int) -> int:
        """Messages admitted in the last whole second."""
        second = now_ms // 1000
        if second == self.second:
            return self.msgs_last_second
        return self.msgs_this_second if second == self.second + 1 else 0


# What each admitted message of a batch spent: (device bucket, org bucket, usage, bytes)
Spent = list[tuple[list[float] | None, list[float] | None, OrgUsage, int]]


class IngestGate:
    """Admits a message or says why not; counts refusals per organisation.

    Unlocked: HTTP and MQTT batches may call it from two threads at once; the worst a race
    does is let one message more through or miscount one (a lock would cost more than the
    check).
    """

    def __init__(self, *, share: float = 1.0, max_keys: int = 200_000) -> None:
        if not 0 < share <= 1:
            raise ValueError("share must be in (0, 1]")
        self._share = share
        self._devices = TokenBuckets(max_keys)
        self._orgs = TokenBuckets(max_keys)
        self.usage: dict[str, OrgUsage] = {}

    def check(self, org_id: str, device_id: str, quotas: Quotas, size: int, now_ms: int,
              spent: Spent | None = None) -> Rejection | None:
        """None to admit the message (its budget spent, noted in `spent`), else the refusal."""
        usage = self.usage.get(org_id)
        if usage is None:
            usage = self.usage[org_id] = OrgUsage()
        taken = self._take(usage, device_id, org_id, quotas, size, now_ms)
        if isinstance(taken, Rejection):
            usage.refused[taken.code.value] += 1
            return taken
        second = now_ms // 1000
        if second != usage.second:
            usage.msgs_last_second = usage.msgs_this_second if second == usage.second + 1 else 0
            usage.msgs_this_second = 0
            usage.second = second
        usage.msgs_this_second += 1
        if spent is not None:
            spent.append((*taken, usage, size))
        return None

    @staticmethod
    def refund(spent: Spent) -> None:
        """Give back what admitted messages spent: their batch was not stored after all.

        The batch comes again (redelivered, or halved by BatchRun); charging it twice would
        refuse messages the first pass admitted.
        """
        for device, org, usage, size in spent:
            if device is not None:
                device[0] += 1.0
            if org is not None:
                org[0] += 1.0
            usage.bytes_today = max(0, usage.bytes_today - size)
            usage.msgs_this_second = max(0, usage.msgs_this_second - 1)
        spent.clear()

    def _take(self, usage: OrgUsage, device_id: str, org_id: str, quotas: Quotas, size: int,
              now_ms: int) -> Rejection | tuple[list[float] | None, list[float] | None]:
        day = now_ms // DAY_MS
        if day != usage.day:
            usage.day = day
            usage.bytes_today = 0
        per_day = quotas.bytes_per_day
        if per_day is not None and usage.bytes_today + size > per_day * self._share:
            return Rejection(RejectCode.QUOTA_EXCEEDED, params={
                "quota": "bytes_per_day", "limit": per_day,
                "retry_after_s": retry_after(((day + 1) * DAY_MS - now_ms) / 1000)})
        now_s = now_ms / 1000
        device = org = None
        device_rate = quotas.device_msgs_per_s
        if device_rate is not None:
            device_rate *= self._share
            device = self._devices.refill(device_id, device_rate, now_s)
            if device[0] < 1.0:
                return _rate_limited("device_msgs_per_s", quotas.device_msgs_per_s,
                                     wait_s(device, device_rate))
        org_rate = quotas.msgs_per_s
        if org_rate is not None:
            org_rate *= self._share
            org = self._orgs.refill(org_id, org_rate, now_s)
            if org[0] < 1.0:
                return _rate_limited("msgs_per_s", quotas.msgs_per_s, wait_s(org, org_rate))
        # Spent only once every check passed: a refused message costs no other budget.
        if device is not None:
            device[0] -= 1.0
        if org is not None:
            org[0] -= 1.0
        usage.bytes_today += size
        return device, org


def _rate_limited(quota: str, limit: float | None, wait_s: float) -> Rejection:
    return Rejection(RejectCode.RATE_LIMITED, params={
        "quota": quota, "limit": limit, "retry_after_s": retry_after(wait_s)})
