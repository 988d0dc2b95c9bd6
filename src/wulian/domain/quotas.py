"""An organisation's quotas: parsed from its `organisations.quotas` document, checked. No I/O.

Absent key = unlimited. Resource quotas (devices, rules) are checked when something is
added; rates (messages, bytes, API requests) by the limiters in `wulian.quotas`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from wulian.errors import InvalidInput, QuotaExceeded

# every key a quotas document may hold -> whether its value must be a whole number
_KEYS: dict[str, bool] = {
    "max_devices": True, "max_rules": True, "msgs_per_s": False, "bytes_per_day": True,
    "device_msgs_per_s": False, "api_per_s": False,
}
DEFAULT_API_PER_S = 1000.0  # generous: scripts and busy consoles never meet it; abuse does
MAX_QUOTA = 1e15  # far above any real budget; catches a typo'd exponent


@dataclass(frozen=True, slots=True)
class Quotas:
    """One organisation's limits; None = unlimited."""

    max_devices: int | None = None
    max_rules: int | None = None
    msgs_per_s: float | None = None
    bytes_per_day: int | None = None
    device_msgs_per_s: float | None = None
    api_per_s: float | None = None

    @classmethod
    def parse(cls, doc: Any) -> Quotas:
        """Validate a quotas document; an unknown key or bad value names the field."""
        if doc is None:
            return UNLIMITED
        if not isinstance(doc, dict):
            raise _invalid("quotas", "object")
        values: dict[str, int | float] = {}
        for key, value in doc.items():
            if key not in _KEYS:
                name = str(key)[:64]
                raise InvalidInput("invalid_quota", message_key="quotas.unknown_key",
                                   extra={"field": name}, field=name, known=", ".join(_KEYS))
            if value is None:
                continue
            whole = _KEYS[key]
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not math.isfinite(value) or value < 0 or value > MAX_QUOTA
                    or (whole and value != int(value))):
                raise _invalid(key, "integer" if whole else "number")
            values[key] = int(value) if whole else float(value)
        return cls(**values)  # type: ignore[arg-type]

    def to_doc(self) -> dict[str, int | float]:
        """The document form, unlimited keys left out."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}


UNLIMITED = Quotas()


def _invalid(key: str, kind: str) -> InvalidInput:
    return InvalidInput("invalid_quota", message_key=f"quotas.bad_{kind}", extra={"field": key},
                        field=key)


def check_can_add_device(quotas: Quotas, current: int) -> None:
    """Raise QuotaExceeded when an organisation holding `current` devices is at its limit."""
    _check_room("max_devices", quotas.max_devices, current)


def check_can_add_rule(quotas: Quotas, current: int) -> None:
    """Raise QuotaExceeded when an organisation holding `current` rules is at its limit."""
    _check_room("max_rules", quotas.max_rules, current)


def _check_room(quota: str, limit: int | None, current: int) -> None:
    if limit is not None and current >= limit:
        # No Retry-After: waiting does not help; removing something or a higher quota does.
        raise QuotaExceeded(message_key="quotas.resource_exceeded", quota=quota, limit=limit,
                            current=current, extra={"quota": quota, "limit": limit})
