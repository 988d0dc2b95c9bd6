"""The one place that decides which adapters run: embedded defaults or production ones."""

from __future__ import annotations

from dataclasses import dataclass

from wulian.config import Settings
from wulian.pipeline import DeviceDirectory, IngestLimits, Pipeline
from wulian.ports import BrokerAdmin, Store
from wulian.registry import Registry


@dataclass
class Core:
    """The platform's core objects for one process."""

    settings: Settings
    store: Store
    directory: DeviceDirectory
    pipeline: Pipeline
    registry: Registry

    def close(self) -> None:
        close_broker = getattr(self.registry.broker, "close", None)
        if close_broker is not None:
            close_broker()
        self.store.close()


def broker_admin(settings: Settings) -> BrokerAdmin | None:
    """The broker provisioning adapter for the configured broker (None for embedded)."""
    if settings.embedded_broker:
        return None
    from wulian.access.mosquitto import DynSecAdmin

    return DynSecAdmin.from_settings(settings)


def build_core(settings: Settings, *, provision_broker: bool = True) -> Core:
    """Open the store (migrating it) and wire the pipeline and registry around it."""
    from wulian.storage import open_store

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings.database_url)
    directory = DeviceDirectory(store)
    limits = IngestLimits(max_payload_bytes=settings.max_payload_bytes,
                          max_future_skew_ms=settings.max_future_skew_s * 1000)
    pipeline = Pipeline(store, directory, limits, lang=settings.lang)
    admin = broker_admin(settings) if provision_broker else None
    return Core(settings, store, directory, pipeline, Registry(store, directory, admin))
