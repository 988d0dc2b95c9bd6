"""Registry use cases keep the store, the hot-path cache and the broker's logins in step."""

from __future__ import annotations

import pytest

from tests.fixtures.common import ENV_SENSOR
from tests.unit.fakes import FakeStore
from wulian.domain.device import DeviceError, verify_secret
from wulian.pipeline.directory import DeviceDirectory, Known
from wulian.registry import Registry


class RecordingBroker:
    """A broker admin that records calls and can be told to fail."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[str, ...]] = []

    def provision(self, device_id: str, secret: str) -> None:
        if self.fail:
            raise ConnectionError("broker unreachable")
        self.calls.append(("provision", device_id))

    def set_enabled(self, device_id: str, enabled: bool) -> None:
        self.calls.append(("enabled" if enabled else "disabled", device_id))

    def remove(self, device_id: str) -> None:
        self.calls.append(("remove", device_id))


def registry(broker: RecordingBroker) -> tuple[Registry, FakeStore]:
    store = FakeStore()
    reg = Registry(store, DeviceDirectory(store), broker)  # type: ignore[arg-type]
    reg.import_product(ENV_SENSOR)
    return reg, store


def test_lifecycle_reaches_the_broker() -> None:
    broker = RecordingBroker()
    reg, store = registry(broker)
    new = reg.add_device("s1", "env-sensor", tags={"site": "a"})
    assert verify_secret(new.secret, store.get_device("s1").secret_hash)  # type: ignore[union-attr]
    assert "secret" not in new.device.public()
    reg.update_device("s1", state="disabled")
    rotated = reg.rotate_secret("s1")
    assert rotated.secret != new.secret
    reg.delete_device("s1")
    assert broker.calls == [("provision", "s1"), ("disabled", "s1"), ("provision", "s1"),
                            ("disabled", "s1"), ("remove", "s1")]


def test_a_device_the_broker_refused_is_not_left_registered() -> None:
    reg, store = registry(RecordingBroker(fail=True))
    with pytest.raises(ConnectionError):
        reg.add_device("s1", "env-sensor")
    assert store.get_device("s1") is None
    assert not isinstance(reg.directory.lookup("s1"), Known)


def test_unknown_product_and_bad_fields_name_the_field() -> None:
    reg, _ = registry(RecordingBroker())
    with pytest.raises(DeviceError) as err:
        reg.add_device("s1", "nope")
    assert err.value.field == "product"
    with pytest.raises(DeviceError) as err:
        reg.add_device("s1", "env-sensor", location={"lat": 91, "lon": 0})
    assert err.value.field == "location.lat"
    with pytest.raises(DeviceError) as err:
        reg.update_device("s1", state="paused")
    assert err.value.field == "state"
