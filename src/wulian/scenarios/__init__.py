"""Scenario templates: the twelve industries, each a package of the same shape, by name.

A scenario is data: the products an industry deploys (thing model plus simulator, reused
from `wulian.sim`), how many devices of each a demo wants, where they stand, and the rules
an operator starts from. `wulian/scenarios/<id>/__init__.py` defines `SCENARIO`; adding an
industry is copying one of those packages and naming it in `PACKAGES`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from wulian.i18n import t
from wulian.sim import signals as sig
from wulian.sim.products import Product

ScenarioField = Literal["social_governance", "industry", "consumption"]
FIELDS: tuple[ScenarioField, ...] = ("social_governance", "industry", "consumption")


@dataclass(frozen=True, slots=True)
class Area:
    """Where a scenario's devices stand: a district's latitude/longitude box."""

    city: str
    district: str
    lat: tuple[float, float]
    lon: tuple[float, float]

    def locate(self, device_index: int, salt: str = "") -> tuple[float, float]:
        """A stable position inside the box for one device."""
        return (round(sig.spread(device_index, f"{salt}lat", *self.lat), 5),
                round(sig.spread(device_index, f"{salt}lon", *self.lon), 5))


@dataclass(frozen=True, slots=True)
class ScenarioProduct:
    """A product as a scenario deploys it."""

    product: Product
    devices: int  # how many a demo of this scenario provisions by default
    tags: tuple[tuple[str, str], ...] = ()
    # (property, local hour it peaks at) where the signal has a daily cycle.
    cycle: tuple[str, float] | None = None
    counters: tuple[str, ...] = ()  # properties that never decrease

    @property
    def id(self) -> str:
        return self.product.id


@dataclass(frozen=True, slots=True)
class Scenario:
    """One industry's template: products, devices, place and default rules."""

    id: str
    field: ScenarioField
    products: tuple[ScenarioProduct, ...]
    area: Area
    tags: tuple[tuple[str, str], ...] = ()
    # Rule documents as plain data: the rule engine validates them when it lands.
    default_rules: tuple[dict[str, Any], ...] = ()

    def name(self, lang: str | None = None) -> str:
        return t(f"scenario.{self.id}.name", lang)

    def description(self, lang: str | None = None) -> str:
        return t(f"scenario.{self.id}.description", lang)

    def product(self, product_id: str) -> ScenarioProduct:
        """The scenario's product with this id (KeyError when there is none)."""
        for p in self.products:
            if p.id == product_id:
                return p
        raise KeyError(product_id)

    @property
    def device_count(self) -> int:
        return sum(p.devices for p in self.products)

    def dashboard(self) -> list[dict[str, Any]]:
        """The scenario's dashboard: per product, the properties worth a chart first.

        A product's daily-cycle property leads, then its other numeric properties (at most
        four in all), then the rules that watch it; the console draws one panel each.
        """
        panels = []
        for sp in self.products:
            numeric = [f.id for f in sp.product.model.properties
                       if f.type in ("int", "float") and f.id not in sp.counters]
            lead = [sp.cycle[0]] if sp.cycle else []
            charts = list(dict.fromkeys(lead + numeric))[:4]
            rules = [r["id"] for r in self.default_rules
                     if sp.id in (r.get("product"), *r.get("scope", {}).get("products", ()),
                                  r.get("scope", {}).get("product"))]
            panels.append({"product": sp.id, "charts": charts, "counters": list(sp.counters),
                           "rules": rules})
        return panels


# Seed order: social governance, industry, consumption.
PACKAGES: tuple[str, ...] = (
    "municipal", "rural", "transport", "energy", "public_health",
    "agriculture", "manufacturing", "construction", "eco_environment", "culture_tourism",
    "home", "health",
)


def _load() -> dict[str, Scenario]:
    registry: dict[str, Scenario] = {}
    for package in PACKAGES:
        scenario = importlib.import_module(f"{__name__}.{package}").SCENARIO
        if not isinstance(scenario, Scenario) or scenario.id != package:
            raise TypeError(f"{__name__}.{package}.SCENARIO must be a Scenario with id "
                            f"{package!r}")
        registry[package] = scenario
    return registry


REGISTRY: dict[str, Scenario] = _load()


def get(name: str) -> Scenario:
    """The scenario called `name` (KeyError when there is none)."""
    return REGISTRY[name]


def all_scenarios() -> tuple[Scenario, ...]:
    """Every scenario, in the seeds' order."""
    return tuple(REGISTRY.values())


__all__ = ["FIELDS", "PACKAGES", "REGISTRY", "Area", "Scenario", "ScenarioField",
           "ScenarioProduct", "all_scenarios", "get"]
