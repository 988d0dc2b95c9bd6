"""The small interfaces the platform's core talks to; adapters implement them.

`Store` is both halves of one database (metadata and telemetry share a transaction scope).
Implementations: `wulian.storage.sqlite.SqliteStore` (embedded default) and
`wulian.storage.postgres.PostgresStore` (production). All methods are synchronous and
thread-safe; async callers run them in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from wulian.domain.device import Device, DeviceState, Location
from wulian.domain.message import EventRecord, Value, WriteBatch
from wulian.domain.thingmodel import ThingModel

Aggregate = Literal["avg", "min", "max", "sum", "count", "first", "last"]
AGGREGATES: tuple[str, ...] = ("avg", "min", "max", "sum", "count", "first", "last")


class StorageUnavailable(RuntimeError):
    """The database cannot be reached or refused the write; nothing of the batch is stored."""


class Conflict(ValueError):
    """The thing already exists (or is still in use)."""


class NotFound(LookupError):
    """No such thing."""


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """Connectivity of one device as the platform last saw it."""

    device_id: str
    connected: bool
    last_seen_ms: int | None
    protocol: str | None
    remote: str | None
    ip_version: int | None
    changed_ms: int | None  # when `connected` last changed


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """One entry of a device's connection history: a connect, disconnect or reconnect."""

    ts: int
    connected: bool
    protocol: str | None
    remote: str | None
    ip_version: int | None


@dataclass(frozen=True, slots=True)
class StoredRejection:
    id: int
    received_ms: int
    device_id: str | None
    protocol: str
    topic: str
    code: str
    message: str
    payload: bytes


class MetadataStore(Protocol):
    """Products (thing models), devices and their connection status."""

    def put_product(self, model: ThingModel) -> bool:
        """Insert or replace a product; True when it was new."""
        ...

    def get_product(self, product_id: str) -> ThingModel | None: ...

    def list_products(self) -> list[ThingModel]: ...

    def delete_product(self, product_id: str) -> None:
        """Remove a product; Conflict while devices use it, NotFound when absent."""
        ...

    def add_device(self, device: Device) -> None:
        """Register a device; Conflict when the id is taken, NotFound for an unknown product."""
        ...

    def get_device(self, device_id: str) -> Device | None: ...

    def list_devices(self, *, product: str | None = None, state: DeviceState | None = None,
                     tag: tuple[str, str] | None = None, search: str | None = None,
                     limit: int = 100, offset: int = 0) -> list[Device]: ...

    def update_device(self, device_id: str, *, state: DeviceState | None = None,
                      name: str | None = None, tags: dict[str, str] | None = None,
                      location: Location | None = None) -> Device:
        """Change a device's mutable fields; NotFound when absent."""
        ...

    def set_secret_hash(self, device_id: str, secret_hash: str) -> Device:
        """Replace a device's secret hash; NotFound when absent."""
        ...

    def delete_device(self, device_id: str) -> bool:
        """Remove a device and its stored data; False when absent."""
        ...

    def count_devices(self) -> int: ...

    def registry_epoch(self) -> int:
        """A number that changes whenever a product or device changes (cheap to read)."""
        ...

    def device_quotas(self, device_id: str) -> tuple[str, Any] | None:
        """(the device's organisation, its quotas document), or None for no such device."""
        ...

    def org_quotas(self, org_id: str) -> Any:
        """An organisation's quotas document (None: no such organisation)."""
        ...

    def count_org_devices(self, org_id: str) -> int: ...

    def set_connected(self, device_id: str, connected: bool, *, ts_ms: int, protocol: str,
                      remote: str | None) -> None:
        """Record a connect or disconnect seen by an access adapter."""
        ...

    def device_status(self, device_id: str) -> DeviceStatus | None: ...

    def connection_history(self, device_id: str, limit: int) -> list[ConnectionEvent]:
        """The device's recent connects and disconnects, newest first (kept 30 days)."""
        ...

    def online_count(self, seen_since_ms: int) -> int:
        """Devices connected now, or seen (any protocol) since `seen_since_ms`."""
        ...


class TelemetryStore(Protocol):
    """Time series, events, dead letters and the platform's counters.

    Conventions every implementation keeps: time ranges are half-open `[since, until)`;
    `events` and `rejections` come newest first; buckets are aligned to the epoch; any
    method may raise `StorageUnavailable` (the API answers 503); a write for a device that
    is no longer registered stores nothing of it but its dead letters.
    """

    def write(self, batch: WriteBatch) -> int:
        """Store a batch in one transaction (duplicates ignored); returns points inserted.

        Raises StorageUnavailable when the database is unreachable or busy (nothing is
        stored; try again later). Any other error means the database refused something in
        the batch (a row it will never take); it propagates, and the pipeline singles the
        message out as an `internal_error` dead letter.
        """
        ...

    def latest(self, device_id: str) -> dict[str, tuple[int, Value]]: ...

    def points(self, device_id: str, prop: str, *, since: int | None, until: int | None,
               limit: int, descending: bool = False) -> list[tuple[int, Value]]: ...

    def buckets(self, device_id: str, prop: str, *, since: int, until: int, bucket_ms: int,
                agg: Aggregate, limit: int) -> list[tuple[int, Value | None]]:
        """Time-bucketed aggregate computed in the database; bucket start ts, value."""
        ...

    def events(self, device_id: str, *, since: int | None, until: int | None,
               limit: int) -> list[EventRecord]: ...

    def rejections(self, *, device_id: str | None, since: int | None,
                   limit: int) -> list[StoredRejection]: ...

    def counters(self) -> dict[str, int]:
        """messages_accepted, messages_rejected, points_stored, events_stored, rejected.<code>."""
        ...


class Store(MetadataStore, TelemetryStore, Protocol):
    """One database holding both halves."""

    url: str

    def close(self) -> None: ...

    def info(self) -> dict[str, Any]:
        """Backend name and version, for `/api/v1/stats` and the logs."""
        ...


class BrokerAdmin(Protocol):
    """Keeps a broker's device credentials and ACLs in step with the registry.

    The embedded broker asks the registry directly and needs none (`NoBrokerAdmin`);
    Mosquitto is driven through its dynamic-security plugin
    (`wulian.access.mosquitto.DynSecAdmin`).
    """

    def provision(self, device_id: str, secret: str) -> None:
        """Create (or reset) the device's broker login, allowed only `devices/{id}/#`."""
        ...

    def set_enabled(self, device_id: str, enabled: bool) -> None: ...

    def remove(self, device_id: str) -> None: ...


class NoBrokerAdmin:
    """For brokers that authenticate against the registry itself (the embedded one)."""

    def provision(self, device_id: str, secret: str) -> None:
        return None

    def set_enabled(self, device_id: str, enabled: bool) -> None:
        return None

    def remove(self, device_id: str) -> None:
        return None


# --- organisations and the audit log ----------------------------------------------------

@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One change as a use case reports it, before the log chains it.

    `action` is a stable code (`device.create`, `rule.delete`, `key.revoke`, `auth.login`),
    `outcome` is `ok` or the refusing error's code; `before`/`after` are short summaries
    (changed fields, never secrets). Words are rendered at read time from these codes.
    """

    ts: int
    actor: str  # Actor.label: `user:alice`, `key:k_3f2a`, `token:admin`, `cli:root`
    org_id: str | None
    action: str
    target: str | None
    outcome: str = "ok"
    source: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A stored audit entry: the record, its sequence number and its place in the chain."""

    seq: int
    record: AuditRecord
    prev_hash: str  # hex SHA-256 of the previous entry ("0" * 64 for the first)
    hash: str  # hex SHA-256 over prev_hash and this entry's canonical form


class AuditLog(Protocol):
    """An append-only, hash-chained log of every change (`wulian.storage.audit`)."""

    def append(self, record: AuditRecord) -> AuditEntry:
        """Chain and store one record; never loses one it returned."""
        ...

    def entries(self, *, org_id: str | None, since: int | None = None,
                until: int | None = None, actor: str | None = None, action: str | None = None,
                after_seq: int | None = None, limit: int = 100) -> list[AuditEntry]:
        """Entries oldest first after `after_seq` (the cursor); `org_id` None means all."""
        ...
