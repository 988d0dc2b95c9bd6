"""The demo's fleet: which devices, where they stand, and their secrets kept between runs."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson

from wulian.bootstrap import Core
from wulian.scenarios import PACKAGES, Scenario
from wulian.sim import PRODUCTS, FleetDevice, Product
from wulian.sim import signals as sig

SECRETS_FILE = "demo-devices.json"
CITY = "hangzhou"
# Districts of Hangzhou and their centres: the demo's devices stand around them.
SITES: tuple[tuple[str, float, float], ...] = (
    ("xihu", 30.2590, 120.1300), ("shangcheng", 30.2420, 120.1690),
    ("gongshu", 30.3190, 120.1420), ("binjiang", 30.2080, 120.2110),
    ("yuhang", 30.4190, 120.3010), ("xiaoshan", 30.1850, 120.2640),
)


@dataclass(frozen=True, slots=True)
class PlannedDevice:
    id: str
    product: Product
    index: int
    site: str
    lat: float
    lon: float
    city: str = CITY
    extra_tags: tuple[tuple[str, str], ...] = ()  # the scenario's and its product's

    @property
    def tags(self) -> dict[str, str]:
        return {"site": self.site, "city": self.city, "source": "wulian-demo",
                **dict(self.extra_tags)}


def plan(count: int) -> list[PlannedDevice]:
    """`count` devices spread evenly over the three products and the sites."""
    devices = []
    for k in range(count):
        product = PRODUCTS[k % len(PRODUCTS)]
        number = k // len(PRODUCTS) + 1
        site, lat, lon = SITES[(k // len(PRODUCTS)) % len(SITES)]
        devices.append(PlannedDevice(
            id=f"{product.id_prefix}-{number:03d}", product=product, index=k, site=site,
            lat=round(lat + sig.spread(k, "lat", -0.02, 0.02), 5),
            lon=round(lon + sig.spread(k, "lon", -0.025, 0.025), 5)))
    return devices


def plan_scenarios(selected: Sequence[Scenario], total: int | None = None) -> \
        list[PlannedDevice]:
    """The scenarios' products, as many of each as its hint (scaled to about `total`)."""
    hinted = sum(sp.devices for s in selected for sp in s.products)
    scale = total / hinted if total else 1.0
    devices: list[PlannedDevice] = []
    for s in selected:
        for p, sp in enumerate(s.products):
            for number in range(1, max(1, round(sp.devices * scale)) + 1):
                # A device behaves and stands the same whichever scenarios run with it.
                k = (PACKAGES.index(s.id) * 10 + p) * 1000 + number
                lat, lon = s.area.locate(number, sp.id)
                devices.append(PlannedDevice(
                    id=f"{sp.product.id_prefix}-{number:03d}", product=sp.product, index=k,
                    site=s.area.district, lat=lat, lon=lon, city=s.area.city,
                    extra_tags=(*s.tags, *sp.tags)))
    return devices


def load_secrets(path: Path) -> dict[str, dict[str, str]]:
    """{device id: {"secret", "hash"}} from an earlier run; empty when unreadable."""
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    devices = doc.get("devices") if isinstance(doc, dict) else None
    if not isinstance(devices, dict):
        return {}
    return {k: v for k, v in devices.items()
            if isinstance(v, dict) and isinstance(v.get("secret"), str)}


def save_secrets(path: Path, secrets: dict[str, dict[str, str]]) -> None:
    """Write the secrets file readable by its owner only (the platform keeps only hashes)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps({"version": 1, "devices": secrets},
                             option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    tmp.replace(path)
    path.chmod(0o600)


def _ensure(core: Core, planned: PlannedDevice,
            saved: dict[str, str] | None) -> tuple[dict[str, str], bool]:
    """The device registered with a secret we know; (entry for the file, created now)."""
    existing = core.store.get_device(planned.id)
    if existing is not None and saved and saved.get("hash") == existing.secret_hash:
        return saved, False
    if existing is None:
        new = core.registry.add_device(
            planned.id, planned.product.id, tags=planned.tags,
            name=f"{planned.product.model.name} {planned.id.rsplit('-', 1)[-1]}",
            location={"lat": planned.lat, "lon": planned.lon})
        created = True
    else:
        # Registered, but we lost (or never had) its secret: issue a new one.
        new = core.registry.rotate_secret(planned.id)
        created = False
    return {"secret": new.secret, "hash": new.device.secret_hash}, created


def provision(core: Core, data_dir: Path, devices: list[PlannedDevice],
              progress: Callable[[int], None] | None = None) -> tuple[list[FleetDevice], int]:
    """Register the products and devices that are missing; (fleet, devices created now)."""
    for product in {p.product.id: p.product for p in devices}.values():
        if core.store.get_product(product.id) != product.model:
            core.registry.import_product(product.doc)
    path = data_dir / SECRETS_FILE
    saved = load_secrets(path)
    created = 0
    # Hashing a new secret takes tens of milliseconds (scrypt, which releases the GIL).
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [(p, pool.submit(_ensure, core, p, saved.get(p.id))) for p in devices]
        try:
            for planned, future in futures:
                entry, new = future.result()
                saved[planned.id] = entry
                created += new
                if progress is not None:
                    progress(1)
        finally:
            for _, future in futures:
                future.cancel()
            save_secrets(path, saved)
    fleet = [FleetDevice(p.id, saved[p.id]["secret"], p.product, p.index) for p in devices]
    return fleet, created
