"""Devices: identifiers, tags, location, and the secret's slow hash."""

from __future__ import annotations

from typing import Any

import pytest

from wulian.domain.device import (
    MAX_TAG_VALUE,
    MAX_TAGS,
    Device,
    DeviceError,
    DeviceState,
    Location,
    check_device_id,
    check_tags,
    hash_secret,
    new_secret,
    verify_secret,
)

# --- identifiers ---------------------------------------------------------------------------


@pytest.mark.parametrize("device_id", [
    "a", "0", "x" * 128, "meter-0042", "plant_3.line:7", "A.b_c:d-e", "-", "..",
    "12345678901234567890",
])
def test_good_device_ids(device_id: str) -> None:
    assert check_device_id(device_id) == device_id


@pytest.mark.parametrize("device_id", [
    "", "x" * 129, "has space", "a/b", "a#", "a+", "devices/x", "温度计", "é", "a\n", "\n",
    "a\x00", "a$", "a\t", " a", "a,b", "a*", None, 17, b"abc",
])
def test_bad_device_ids(device_id: Any) -> None:
    with pytest.raises(DeviceError) as caught:
        check_device_id(device_id)
    assert caught.value.field == "id"
    assert str(caught.value).startswith("id: ")


# --- tags ----------------------------------------------------------------------------------


def test_tags_none_is_empty() -> None:
    assert check_tags(None) == {}


def test_good_tags_are_copied() -> None:
    tags = {"site": "Shenzhen", "floor": "", "k" * 64: "v" * MAX_TAG_VALUE, "a.b:c-d_e": "中文"}
    got = check_tags(tags)
    assert got == tags and got is not tags


def test_as_many_tags_as_allowed() -> None:
    tags = {f"t{n}": str(n) for n in range(MAX_TAGS)}
    assert check_tags(tags) == tags


@pytest.mark.parametrize(("tags", "field"), [
    ([("a", "b")], "tags"),
    ("site=x", "tags"),
    ({f"t{n}": "x" for n in range(MAX_TAGS + 1)}, "tags"),
    ({"": "x"}, "tags."),
    ({"k" * 65: "x"}, "tags." + "k" * 65),
    ({"has space": "x"}, "tags.has space"),
    ({"a/b": "x"}, "tags.a/b"),
    ({"a\n": "x"}, "tags.a\n"),
    ({1: "x"}, "tags.1"),
    ({"site": 1}, "tags.site"),
    ({"site": None}, "tags.site"),
    ({"site": ["x"]}, "tags.site"),
    ({"site": "v" * (MAX_TAG_VALUE + 1)}, "tags.site"),
])
def test_bad_tags(tags: Any, field: str) -> None:
    with pytest.raises(DeviceError) as caught:
        check_tags(tags)
    assert caught.value.field == field


# --- location ------------------------------------------------------------------------------


@pytest.mark.parametrize(("lat", "lon"), [(0, 0), (90, 180), (-90, -180), (22.54, 114.06)])
def test_good_locations(lat: float, lon: float) -> None:
    location = Location(lat, lon)
    assert (location.lat, location.lon) == (lat, lon)


@pytest.mark.parametrize(("lat", "lon", "field"), [
    (90.000001, 0, "location.lat"), (-90.5, 0, "location.lat"),
    (0, 180.000001, "location.lon"), (0, -181, "location.lon"),
    (float("nan"), 0, "location.lat"), (0, float("nan"), "location.lon"),
    (float("inf"), 0, "location.lat"), (0, float("-inf"), "location.lon"),
])
def test_bad_locations(lat: float, lon: float, field: str) -> None:
    with pytest.raises(DeviceError) as caught:
        Location(lat, lon)
    assert caught.value.field == field


# --- the device ----------------------------------------------------------------------------


def test_public_view_has_no_secret_material() -> None:
    dev = Device(id="d", product="p", name="D", secret_hash="scrypt$...", tags={"a": "b"},
                 location=Location(1.5, 2.5), created_ms=5)
    assert dev.active
    public = dev.public()
    assert public == {"id": "d", "product": "p", "name": "D", "state": "active",
                      "tags": {"a": "b"}, "location": {"lat": 1.5, "lon": 2.5},
                      "created_ms": 5}
    assert "scrypt" not in repr(public)
    public["tags"]["a"] = "changed"
    assert dev.tags == {"a": "b"}  # the view is a copy


def test_disabled_device() -> None:
    dev = Device(id="d", product="p", name="d", secret_hash="", state=DeviceState.DISABLED)
    assert not dev.active
    assert dev.public()["state"] == "disabled" and dev.public()["location"] is None


# --- secrets -------------------------------------------------------------------------------

SECRET = "Zx9-device-secret"


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_secret(SECRET)


def test_new_secrets_are_long_and_distinct() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50
    assert all(len(s) >= 32 for s in secrets)


def test_hash_is_salted_and_self_describing(stored: str) -> None:
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(bytes.fromhex(salt)) == 16 and len(bytes.fromhex(digest)) == 64
    assert SECRET not in stored
    other = hash_secret(SECRET)
    assert other != stored  # a fresh salt every time
    assert verify_secret(SECRET, other)


def test_right_secret_verifies(stored: str) -> None:
    assert verify_secret(SECRET, stored) is True


@pytest.mark.parametrize("secret", ["", "wrong", SECRET + "x", SECRET[:-1], SECRET.lower(),
                                    " " + SECRET])
def test_wrong_secret_does_not(stored: str, secret: str) -> None:
    assert verify_secret(secret, stored) is False


def test_unicode_secret() -> None:
    stored = hash_secret("密钥-🔑")
    assert verify_secret("密钥-🔑", stored) and not verify_secret("密钥", stored)


def test_malformed_stored_hashes_return_false(stored: str) -> None:
    scheme, n, r, p, salt, digest = stored.split("$")
    malformed = [
        "", "scrypt", "plain-text-secret", stored + "$extra", "$".join([scheme, n, r, p, salt]),
        "$".join(["bcrypt", n, r, p, salt, digest]),
        "$".join([scheme, "x", r, p, salt, digest]),  # n not a number
        "$".join([scheme, "3", r, p, salt, digest]),  # n not a power of two
        "$".join([scheme, "-2", r, p, salt, digest]),
        "$".join([scheme, "9" * 30, r, p, salt, digest]),  # n beyond a C long
        "$".join([scheme, str(2**40), r, p, salt, digest]),  # beyond the memory limit
        "$".join([scheme, n, "0", p, salt, digest]),
        "$".join([scheme, n, r, "0", salt, digest]),
        "$".join([scheme, n, r, p, "zz", digest]),  # salt not hex
        "$".join([scheme, n, r, p, salt, "zz"]),  # digest not hex
        "$".join([scheme, n, r, p, salt, digest[:-2] + "é"]),  # non-ASCII digest
        "$".join([scheme, n, r, p, salt, digest[:-2]]),  # digest one byte short
        "$".join([scheme, n, r, p, salt, ""]),
    ]
    for bad in malformed:
        assert verify_secret(SECRET, bad) is False, bad


@pytest.mark.parametrize("secret", [None, 123, b"bytes", "\ud800"])
def test_a_secret_that_is_not_text_is_refused(stored: str, secret: Any) -> None:
    assert verify_secret(secret, stored) is False
