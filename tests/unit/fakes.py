"""In-memory stand-ins for the ports, for unit tests of the domain and the pipeline only.

Integration tests use the real SQLite and PostgreSQL stores; these fakes exist so a unit
test can count queries, fail a write on purpose, and run in microseconds.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

from wulian.domain.device import Device, DeviceState, Location
from wulian.domain.message import WriteBatch
from wulian.domain.thingmodel import ThingModel
from wulian.ports import Conflict, NotFound, StorageUnavailable


class FakeStore:
    """Products, devices and written batches in dicts; counts what the core asks of it."""

    def __init__(self) -> None:
        self.products: dict[str, ThingModel] = {}
        self.devices: dict[str, Device] = {}
        self.batches: list[WriteBatch] = []
        self.calls: Counter[str] = Counter()
        self.fail_writes = False
        self.device_orgs: dict[str, str] = {}  # device id -> org id; absent: "default"
        self.org_docs: dict[str, dict[str, object]] = {"default": {}}  # org -> quotas doc

    # --- metadata -------------------------------------------------------------------

    def registry_epoch(self) -> int:
        # Derived from the contents, so tests that edit the dicts directly change it too.
        self.calls["registry_epoch"] += 1
        return hash(repr((sorted(self.devices.items()), sorted(self.products.items()),
                          sorted(self.device_orgs.items()), sorted(self.org_docs.items()))))

    def put_product(self, model: ThingModel) -> bool:
        created = model.id not in self.products
        self.products[model.id] = model
        return created

    def get_product(self, product_id: str) -> ThingModel | None:
        self.calls["get_product"] += 1
        return self.products.get(product_id)

    def delete_product(self, product_id: str) -> None:
        if product_id not in self.products:
            raise NotFound(product_id)
        if any(d.product == product_id for d in self.devices.values()):
            raise Conflict(product_id)
        del self.products[product_id]

    def add_device(self, device: Device) -> None:
        if device.id in self.devices:
            raise Conflict(device.id)
        if device.product not in self.products:
            raise NotFound(device.product)
        self.devices[device.id] = device

    def get_device(self, device_id: str) -> Device | None:
        self.calls["get_device"] += 1
        return self.devices.get(device_id)

    def device_quotas(self, device_id: str) -> tuple[str, object] | None:
        self.calls["device_quotas"] += 1
        if device_id not in self.devices:
            return None
        org = self.device_orgs.get(device_id, "default")
        return org, self.org_docs.get(org)

    def org_quotas(self, org_id: str) -> object:
        return self.org_docs.get(org_id)

    def count_org_devices(self, org_id: str) -> int:
        return sum(1 for d in self.devices if self.device_orgs.get(d, "default") == org_id)

    def update_device(self, device_id: str, *, state: DeviceState | None = None,
                      name: str | None = None, tags: dict[str, str] | None = None,
                      location: Location | None = None) -> Device:
        device = self.devices.get(device_id)
        if device is None:
            raise NotFound(device_id)
        changes: dict[str, object] = {}
        for key, value in (("state", state), ("name", name), ("tags", tags),
                           ("location", location)):
            if value is not None:
                changes[key] = value
        device = dataclasses.replace(device, **changes)  # type: ignore[arg-type]
        self.devices[device_id] = device
        return device

    def set_secret_hash(self, device_id: str, secret_hash: str) -> Device:
        device = self.devices.get(device_id)
        if device is None:
            raise NotFound(device_id)
        self.devices[device_id] = dataclasses.replace(device, secret_hash=secret_hash)
        return self.devices[device_id]

    def delete_device(self, device_id: str) -> bool:
        return self.devices.pop(device_id, None) is not None

    # --- telemetry ------------------------------------------------------------------

    def write(self, batch: WriteBatch) -> int:
        self.calls["write"] += 1
        if self.fail_writes:
            raise StorageUnavailable("the fake database is down")
        self.batches.append(batch)
        return len(batch.points)

    @property
    def points(self) -> list[tuple[str, str, int, object]]:
        return [p for b in self.batches for p in b.points]
