"""The one place that decides which adapters run: embedded defaults or production ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wulian.config import Settings
from wulian.domain.message import WriteBatch
from wulian.pipeline import DeviceDirectory, IngestLimits, Pipeline
from wulian.ports import BrokerAdmin, Store
from wulian.registry import Registry

if TYPE_CHECKING:
    from wulian.alerting.live import LiveHub
    from wulian.alerting.service import RulesService
    from wulian.storage.rules import SqlRules


@dataclass
class Core:
    """The platform's core objects for one process."""

    settings: Settings
    store: Store
    directory: DeviceDirectory
    pipeline: Pipeline
    registry: Registry
    rule_store: SqlRules = field(init=False)
    rules: RulesService = field(init=False)  # started by `serve`, not here
    live: LiveHub = field(init=False)

    def __post_init__(self) -> None:
        from wulian.alerting.live import LiveHub
        from wulian.alerting.service import RulesService
        from wulian.rules.actions import draft_row, plan
        from wulian.storage.rules import SqlRules

        engine = getattr(self.store, "engine", None)
        if engine is None:
            raise TypeError("the store must be a SQL store (it has no engine)")
        self.rule_store = SqlRules(engine)
        self.live = LiveHub()

        def planner(rule: Any, change: Any, now: int) -> list[dict[str, Any]]:
            return [draft_row(d, now) for d in plan(rule, change, now, self.settings.lang)]

        self.rules = RulesService(self.store, self.rule_store, self.directory, planner=planner)

    def start_alerting(self) -> None:
        """Feed this process's stored batches to rules and live push; start the rules thread.

        Batches stored by other processes (external-broker workers) arrive through the
        committed-batch feed instead (`wulian.alerting.feed`), into the same sinks.
        """
        for sink in self.batch_sinks():
            self.pipeline.subscribe(sink)
        self.rules.on_change(self.live.publish_alarm)
        self.rules.start()

    def batch_sinks(self) -> tuple[Callable[[WriteBatch], None], ...]:
        """Who reads stored batches after ingest: the rules, then live pages."""
        return (self.rules.submit, self.live.publish_batch)

    def close(self) -> None:
        self.rules.stop()
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
