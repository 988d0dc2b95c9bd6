"""Devices: identity, lifecycle and the secret they authenticate with."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# Match with `fullmatch`: `$` also matches before a trailing newline.
DEVICE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
TAG_KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_TAGS = 32
MAX_TAG_VALUE = 256


class DeviceState(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class DeviceError(ValueError):
    """A device definition is invalid; `field` names what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Location:
    lat: float
    lon: float

    def __post_init__(self) -> None:
        if not -90 <= self.lat <= 90:
            raise DeviceError("location.lat", "must be between -90 and 90")
        if not -180 <= self.lon <= 180:
            raise DeviceError("location.lon", "must be between -180 and 180")


@dataclass(frozen=True, slots=True)
class Device:
    """A registered terminal. `secret_hash` never leaves the platform."""

    id: str
    product: str
    name: str
    secret_hash: str
    state: DeviceState = DeviceState.ACTIVE
    tags: dict[str, str] = field(default_factory=dict)
    location: Location | None = None
    created_ms: int = 0

    @property
    def active(self) -> bool:
        return self.state is DeviceState.ACTIVE

    def public(self) -> dict[str, Any]:
        """The device as the API shows it (no secret material)."""
        return {
            "id": self.id, "product": self.product, "name": self.name,
            "state": self.state.value, "tags": dict(self.tags),
            "location": {"lat": self.location.lat, "lon": self.location.lon}
            if self.location else None,
            "created_ms": self.created_ms,
        }


def check_device_id(device_id: str) -> str:
    """Return `device_id` if it is valid, else raise DeviceError."""
    if not isinstance(device_id, str) or not DEVICE_ID.fullmatch(device_id):
        raise DeviceError("id", "must match [A-Za-z0-9_.:-]{1,128}")
    return device_id


def check_tags(tags: Any) -> dict[str, str]:
    """Validate a tag mapping (string keys and values, bounded)."""
    if tags is None:
        return {}
    if not isinstance(tags, dict):
        raise DeviceError("tags", "must be an object of string values")
    if len(tags) > MAX_TAGS:
        raise DeviceError("tags", f"at most {MAX_TAGS} tags")
    for key, value in tags.items():
        if not isinstance(key, str) or not TAG_KEY.fullmatch(key):
            raise DeviceError(f"tags.{key}", "tag keys must match [A-Za-z0-9_.:-]{1,64}")
        if not isinstance(value, str) or len(value) > MAX_TAG_VALUE:
            raise DeviceError(f"tags.{key}", f"must be a string of at most {MAX_TAG_VALUE} chars")
    return dict(tags)


# --- secrets -------------------------------------------------------------------------
# scrypt from the standard library: a memory-hard slow hash, no extra dependency
# (argon2-cffi was considered; scrypt is as suitable here and always present).
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def new_secret() -> str:
    """A fresh device secret (shown once, never stored in clear)."""
    return secrets.token_urlsafe(24)


def hash_secret(secret: str) -> str:
    """Slow, salted hash of a secret, self-describing: `scrypt$N$r$p$salt$hash`."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, stored: str) -> bool:
    """True when `secret` matches the stored hash (constant-time comparison)."""
    if not isinstance(secret, str) or not isinstance(stored, str):
        return False  # e.g. an MQTT CONNECT without a password
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = bytes.fromhex(digest)
        got = hashlib.scrypt(secret.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                             p=int(p))
    except (ValueError, TypeError, OverflowError, MemoryError):
        # malformed or absurd parameters (OverflowError: n too large for C) mean "no match"
        return False
    return hmac.compare_digest(got, expected)
