"""Simulated devices: realistic products and a fleet that reports over real MQTT."""

from wulian.sim.fleet import Fleet, FleetDevice, FleetStats
from wulian.sim.products import (
    DEFAULT_BAD_RATE,
    ENV_SENSOR,
    PRODUCTS,
    SMART_METER,
    STREETLIGHT,
    Product,
    product,
)

__all__ = [
    "DEFAULT_BAD_RATE",
    "ENV_SENSOR",
    "PRODUCTS",
    "SMART_METER",
    "STREETLIGHT",
    "Fleet",
    "FleetDevice",
    "FleetStats",
    "Product",
    "product",
]
