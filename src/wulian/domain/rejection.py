"""Why a message was refused: a stable code for machines, parameters for the human text."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class RejectCode(StrEnum):
    """Stable, English reason codes; sent to devices and kept with every dead letter."""

    MALFORMED_JSON = "malformed_json"
    BAD_SHAPE = "bad_shape"
    EMPTY_PAYLOAD = "empty_payload"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNKNOWN_PROPERTY = "unknown_property"
    UNKNOWN_PARAM = "unknown_param"
    WRONG_TYPE = "wrong_type"
    OUT_OF_RANGE = "out_of_range"
    TOO_LONG = "too_long"
    INVALID_ENUM = "invalid_enum"
    BAD_TIMESTAMP = "bad_timestamp"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"
    UNKNOWN_EVENT = "unknown_event"
    UNKNOWN_DEVICE = "unknown_device"
    UNKNOWN_PRODUCT = "unknown_product"
    DEVICE_DISABLED = "device_disabled"
    BAD_CREDENTIALS = "bad_credentials"
    FORBIDDEN_TOPIC = "forbidden_topic"
    UNKNOWN_TOPIC = "unknown_topic"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    OVERLOADED = "overloaded"
    # Over a rate (device or organisation msgs/s) or a quota (organisation bytes/day):
    # params carry `limit` and `retry_after_s`.
    RATE_LIMITED = "rate_limited"
    QUOTA_EXCEEDED = "quota_exceeded"
    # The platform failed on this message (a bug, or data its database refuses): kept as a
    # dead letter for the operator instead of blocking or silently dropping it.
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refusal: code, where in the payload (`path`, e.g. `$[2].temperature`), and details."""

    code: RejectCode
    path: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def message(self, lang: str | None = None) -> str:
        """The human-readable reason, in `lang` (see wulian.i18n)."""
        from wulian.i18n import t  # the domain stays free of the catalogue at import time

        text = t(f"reject.{self.code.value}", lang, **self.params)
        return f"{text} ({self.path})" if self.path else text

    def to_dict(self, lang: str | None = None) -> dict[str, Any]:
        """The JSON error body: `{"code", "message", "path"?}`."""
        body: dict[str, Any] = {"code": self.code.value, "message": self.message(lang)}
        if self.path:
            body["path"] = self.path
        return body
