"""Durations as people write them: `250ms`, `30s`, `5m`, `1.5h`, `1d`, `2w`."""

from __future__ import annotations

import re

UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
           "w": 7 * 86_400_000}
_DURATION = re.compile(r"^(\d{1,12}(?:\.\d{1,6})?)(ms|s|m|h|d|w)$")


def duration_ms(text: str) -> int | None:
    """The duration in milliseconds, or None when `text` is not one (callers say why)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        return None
    return round(float(match.group(1)) * UNIT_MS[match.group(2)])
