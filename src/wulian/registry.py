"""Registry use cases shared by the API and the CLI: products, devices, their secrets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wulian.domain.device import (
    Device,
    DeviceError,
    DeviceState,
    Location,
    check_device_id,
    check_tags,
    hash_secret,
    new_secret,
)
from wulian.domain.thingmodel import ThingModel, parse_thing_model
from wulian.pipeline.directory import DeviceDirectory
from wulian.pipeline.ingest import now_ms
from wulian.ports import BrokerAdmin, Conflict, NoBrokerAdmin, NotFound, Store
from wulian.quotas.resources import check_device_room


@dataclass(frozen=True, slots=True)
class NewDevice:
    """A freshly registered device with its secret: the only time the secret is visible."""

    device: Device
    secret: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.device.public(), "secret": self.secret}


def parse_location(raw: Any) -> Location | None:
    """`{"lat": .., "lon": ..}` or None; DeviceError naming the field otherwise."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise DeviceError("location", "must be an object with lat and lon")
    lat, lon = raw.get("lat"), raw.get("lon")
    for key, value in (("lat", lat), ("lon", lon)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DeviceError(f"location.{key}", "must be a number")
    return Location(float(lat), float(lon))  # type: ignore[arg-type]


class Registry:
    """Products and devices, with the hot-path cache kept coherent on every change."""

    def __init__(self, store: Store, directory: DeviceDirectory,
                 broker: BrokerAdmin | None = None) -> None:
        self.store = store
        self.directory = directory
        self.broker: BrokerAdmin = broker or NoBrokerAdmin()

    def import_product(self, doc: Any) -> tuple[ThingModel, bool]:
        """Validate a thing-model document and store it; (model, created)."""
        model = parse_thing_model(doc)
        created = self.store.put_product(model)
        self.directory.forget()
        return model, created

    def product(self, product_id: str) -> ThingModel:
        model = self.store.get_product(product_id)
        if model is None:
            raise NotFound(product_id)
        return model

    def add_device(self, device_id: str, product: str, *, name: str | None = None,
                   tags: Any = None, location: Any = None) -> NewDevice:
        """Register a device and generate its secret (shown once)."""
        check_device_id(device_id)
        if not isinstance(product, str) or self.store.get_product(product) is None:
            raise DeviceError("product", f"unknown product '{product}'")
        if name is not None and (not isinstance(name, str) or len(name) > 256):
            raise DeviceError("name", "must be a string of at most 256 characters")
        check_device_room(self.store)  # devices join the default organisation until spine
        secret = new_secret()
        device = Device(id=device_id, product=product, name=name or device_id,
                        secret_hash=hash_secret(secret), tags=check_tags(tags),
                        location=parse_location(location), created_ms=now_ms())
        self.store.add_device(device)  # Conflict when the id is taken
        self.directory.forget(device_id)
        try:
            self.broker.provision(device_id, secret)
        except Exception:
            # A device the broker would refuse must not look registered: undo, then report.
            self.store.delete_device(device_id)
            self.directory.forget(device_id)
            raise
        return NewDevice(device, secret)

    def rotate_secret(self, device_id: str) -> NewDevice:
        """Issue a new secret for a device (the old one stops working); shown once."""
        secret = new_secret()
        device = self.store.set_secret_hash(device_id, hash_secret(secret))
        self.directory.forget(device_id)
        self.broker.provision(device_id, secret)
        if not device.active:
            self.broker.set_enabled(device_id, False)
        return NewDevice(device, secret)

    def device(self, device_id: str) -> Device:
        device = self.store.get_device(device_id)
        if device is None:
            raise NotFound(device_id)
        return device

    def update_device(self, device_id: str, *, state: str | None = None,
                      name: str | None = None, tags: Any = None,
                      location: Any = None) -> Device:
        """Enable/disable, rename, retag or move a device."""
        new_state = None
        if state is not None:
            try:
                new_state = DeviceState(state)
            except ValueError:
                raise DeviceError("state", "must be 'active' or 'disabled'") from None
        device = self.store.update_device(
            device_id, state=new_state, name=name,
            tags=check_tags(tags) if tags is not None else None,
            location=parse_location(location))
        self.directory.forget(device_id)
        if new_state is not None:
            self.broker.set_enabled(device_id, new_state is DeviceState.ACTIVE)
        return device

    def delete_device(self, device_id: str) -> None:
        if not self.store.delete_device(device_id):
            raise NotFound(device_id)
        self.directory.forget(device_id)
        self.broker.remove(device_id)


__all__ = ["Conflict", "NewDevice", "NotFound", "Registry"]
