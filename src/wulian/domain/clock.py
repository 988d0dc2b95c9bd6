"""The platform's one notion of now: UTC epoch milliseconds."""

import time


def now_ms() -> int:
    """Now, in UTC epoch milliseconds."""
    return time.time_ns() // 1_000_000
