"""`MetadataStore` on SQLAlchemy Core: products, devices and their status, for both backends."""

from __future__ import annotations

import functools
import ipaddress
import random
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Row,
    and_,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy import exc as sa_exc

from wulian.domain.clock import now_ms
from wulian.domain.device import Device, DeviceState, Location
from wulian.domain.thingmodel import ThingModel, parse_thing_model
from wulian.ports import (
    Conflict,
    ConnectionEvent,
    DeviceStatus,
    NotFound,
    StorageUnavailable,
)
from wulian.storage.schema import (
    connection_log,
    counters,
    device_status,
    devices,
    events,
    latest,
    organisations,
    points,
    products,
    series,
)
from wulian.storage.sqlbase import SqlBase

# Bumped by every delete_device; writers compare it with the value their series-id cache
# was filled under, so no process keeps writing to the ids of a deleted series.
SERIES_EPOCH = "_series_epoch"
# Bumped with every product or device change: caches in other processes compare it
# instead of re-reading every device they hold.
REGISTRY_EPOCH = "_registry_epoch"
# Connection history is kept for 30 days and at most 1,000 rows per device. Pruning one
# device is two index range scans, done after about one of its inserts in 32 rather than
# every time (so a device may briefly hold a few rows more); the rows of devices that no
# longer connect are swept by age once a day.
HISTORY_KEEP_MS = 30 * 86_400_000
HISTORY_KEEP_ROWS = 1_000
PRUNE_CHANCE = 1 / 32
SWEEP_EVERY_MS = 86_400_000


@functools.lru_cache(maxsize=65_536)  # on the ingest path; a device keeps its address
def ip_version(remote: str | None) -> int | None:
    """4 or 6 for an adapter's remote ("1.2.3.4:5", "[::1]:5", bare address), else None."""
    if not remote:
        return None
    host = remote
    if remote.startswith("["):
        host = remote[1:remote.find("]")]
    elif remote.count(":") == 1:
        host = remote.partition(":")[0]
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    # A dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d; they still came over IPv4.
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return 4
    return addr.version


def _device(row: Row[Any]) -> Device:
    m = row._mapping
    location = Location(m["lat"], m["lon"]) if m["lat"] is not None else None
    return Device(id=m["id"], product=m["product"], name=m["name"],
                  secret_hash=m["secret_hash"], state=DeviceState(m["state"]),
                  tags=dict(m["tags"] or {}), location=location, created_ms=m["created_ms"])


class SqlMetadata(SqlBase):
    """Products, devices and device status over one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self._next_sweep_ms = 0  # the first connection noted sweeps old history

    def registry_epoch(self) -> int:
        """A number that changes whenever a product or device changes."""
        with self._reading() as conn:
            value = conn.scalar(select(counters.c.value).where(counters.c.name == REGISTRY_EPOCH))
        return int(value or 0)

    # --- products ----------------------------------------------------------------------

    def put_product(self, model: ThingModel) -> bool:
        """Insert or replace a product; True when it was new."""
        values = {"name": model.name, "doc": model.to_doc(), "updated_ms": now_ms()}
        for attempt in (1, 2):
            try:
                with self._writing() as conn:
                    self._bump(conn, REGISTRY_EPOCH)
                    done = conn.execute(update(products).where(products.c.id == model.id)
                                        .values(**values))
                    if done.rowcount:
                        return False
                    conn.execute(insert(products).values(id=model.id, **values))
                    return True
            except sa_exc.IntegrityError:
                if attempt == 2:  # pragma: no cover - needs a racing writer twice over
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def get_product(self, product_id: str) -> ThingModel | None:
        """The product's thing model, or None."""
        with self._reading() as conn:
            doc = conn.scalar(select(products.c.doc).where(products.c.id == product_id))
        return parse_thing_model(doc) if doc is not None else None

    def list_products(self) -> list[ThingModel]:
        """All products, ordered by id."""
        with self._reading() as conn:
            docs = conn.scalars(select(products.c.doc).order_by(products.c.id)).all()
        return [parse_thing_model(doc) for doc in docs]

    def delete_product(self, product_id: str) -> None:
        """Remove a product; Conflict while devices use it, NotFound when absent."""
        with self._writing() as conn:
            if conn.scalar(select(products.c.id).where(products.c.id == product_id)) is None:
                raise NotFound(product_id)
            used = conn.scalar(select(func.count()).select_from(devices)
                               .where(devices.c.product == product_id))
            if used:
                raise Conflict(f"product '{product_id}' is still used by {used} device(s)")
            conn.execute(delete(products).where(products.c.id == product_id))
            self._bump(conn, REGISTRY_EPOCH)

    # --- devices -----------------------------------------------------------------------

    def add_device(self, device: Device) -> None:
        """Register a device; Conflict when the id is taken, NotFound for an unknown product."""
        loc = device.location
        try:
            with self._writing() as conn:
                if conn.scalar(select(products.c.id)
                               .where(products.c.id == device.product)) is None:
                    raise NotFound(f"unknown product '{device.product}'")
                if conn.scalar(select(devices.c.id).where(devices.c.id == device.id)):
                    raise Conflict(f"device '{device.id}' already exists")
                conn.execute(insert(devices).values(
                    id=device.id, product=device.product, name=device.name,
                    secret_hash=device.secret_hash, state=device.state.value,
                    tags=dict(device.tags), lat=loc.lat if loc else None,
                    lon=loc.lon if loc else None, created_ms=device.created_ms))
                self._bump(conn, REGISTRY_EPOCH)
        except sa_exc.IntegrityError as exc:  # another process won the race for the id
            raise Conflict(f"device '{device.id}' already exists") from exc

    def get_device(self, device_id: str) -> Device | None:
        """The device, or None."""
        with self._reading() as conn:
            row = conn.execute(select(devices).where(devices.c.id == device_id)).first()
        return _device(row) if row is not None else None

    def list_devices(self, *, product: str | None = None, state: DeviceState | None = None,
                     tag: tuple[str, str] | None = None, search: str | None = None,
                     limit: int = 100, offset: int = 0) -> list[Device]:
        """Devices matching every filter given, ordered by id."""
        where: list[ColumnElement[bool]] = []
        if product is not None:
            where.append(devices.c.product == product)
        if state is not None:
            where.append(devices.c.state == DeviceState(state).value)
        if tag is not None:
            # SQLAlchemy renders json_extract(tags, '$."k"') on SQLite, tags ->> 'k' on PG.
            where.append(devices.c.tags[tag[0]].as_string() == tag[1])
        if search:
            needle = search.lower()
            where.append(or_(func.lower(devices.c.id).contains(needle, autoescape=True),
                             func.lower(devices.c.name).contains(needle, autoescape=True)))
        stmt = (select(devices).where(*where).order_by(devices.c.id)
                .limit(max(0, limit)).offset(max(0, offset)))
        with self._reading() as conn:
            return [_device(row) for row in conn.execute(stmt)]

    def _change_device(self, device_id: str, values: dict[str, Any]) -> Device:
        with self._writing() as conn:
            if values:
                conn.execute(update(devices).where(devices.c.id == device_id).values(**values))
                self._bump(conn, REGISTRY_EPOCH)
            row = conn.execute(select(devices).where(devices.c.id == device_id)).first()
            if row is None:
                raise NotFound(device_id)
        return _device(row)

    def update_device(self, device_id: str, *, state: DeviceState | None = None,
                      name: str | None = None, tags: dict[str, str] | None = None,
                      location: Location | None = None) -> Device:
        """Change a device's mutable fields; NotFound when absent."""
        values: dict[str, Any] = {}
        if state is not None:
            values["state"] = DeviceState(state).value
        if name is not None:
            values["name"] = name
        if tags is not None:
            values["tags"] = dict(tags)
        if location is not None:
            values.update(lat=location.lat, lon=location.lon)
        return self._change_device(device_id, values)

    def set_secret_hash(self, device_id: str, secret_hash: str) -> Device:
        """Replace a device's secret hash; NotFound when absent."""
        return self._change_device(device_id, {"secret_hash": secret_hash})

    def _lock_out_writers(self, conn: Connection) -> None:
        """First in delete_device's transaction: hold batch writes off until it ends.

        Nothing to do on SQLite, where BEGIN IMMEDIATE already admits one writer at a time.
        """

    def delete_device(self, device_id: str) -> bool:
        """Remove a device, its series, points, latest values, events, status and history.

        Dead letters stay: they are an audit trail of what was refused.
        """
        with self._writing() as conn:
            self._lock_out_writers(conn)
            if conn.scalar(select(devices.c.id).where(devices.c.id == device_id)) is None:
                return False
            sids = select(series.c.id).where(series.c.device_id == device_id)
            conn.execute(delete(points).where(points.c.series_id.in_(sids)))
            conn.execute(delete(latest).where(latest.c.series_id.in_(sids)))
            conn.execute(delete(series).where(series.c.device_id == device_id))
            conn.execute(delete(events).where(events.c.device_id == device_id))
            conn.execute(delete(devices).where(devices.c.id == device_id))
            # Status and history after the device row: set_connected locks that row first,
            # so a notice racing this delete either commits before (and its rows go here)
            # or finds the device gone and logs nothing; taking the locks in the same
            # order, the two cannot deadlock.
            conn.execute(delete(device_status).where(device_status.c.device_id == device_id))
            conn.execute(delete(connection_log).where(connection_log.c.device_id == device_id))
            self._bump(conn, SERIES_EPOCH)
            self._bump(conn, REGISTRY_EPOCH)
        return True

    def count_devices(self) -> int:
        """How many devices are registered."""
        with self._reading() as conn:
            return int(conn.scalar(select(func.count()).select_from(devices)) or 0)

    # --- quotas --------------------------------------------------------------------------

    def device_quotas(self, device_id: str) -> tuple[str, Any] | None:
        """(the device's organisation, its quotas document) or None for no such device."""
        stmt = (select(devices.c.org_id, organisations.c.quotas)
                .outerjoin(organisations, organisations.c.id == devices.c.org_id)
                .where(devices.c.id == device_id))
        with self._reading() as conn:
            row = conn.execute(stmt).first()
        return (row[0], row[1]) if row is not None else None

    def org_quotas(self, org_id: str) -> Any:
        """An organisation's quotas document (None: no such organisation)."""
        with self._reading() as conn:
            return conn.scalar(select(organisations.c.quotas)
                               .where(organisations.c.id == org_id))

    def set_org_quotas(self, org_id: str, doc: dict[str, Any]) -> None:
        """Replace an organisation's quotas (validated by the caller); ingest sees it at once."""
        with self._writing() as conn:
            done = conn.execute(update(organisations).where(organisations.c.id == org_id)
                                .values(quotas=doc, updated_ms=now_ms()))
            if not done.rowcount:
                raise NotFound(f"organisation '{org_id}'")
            # The device directory renews cached quotas while this epoch stands still.
            self._bump(conn, REGISTRY_EPOCH)

    def count_org_devices(self, org_id: str) -> int:
        """How many devices an organisation holds."""
        with self._reading() as conn:
            return int(conn.scalar(select(func.count()).select_from(devices)
                                   .where(devices.c.org_id == org_id)) or 0)

    # --- connectivity ------------------------------------------------------------------

    def set_connected(self, device_id: str, connected: bool, *, ts_ms: int, protocol: str,
                      remote: str | None) -> None:
        """Record a connect or disconnect; an event older than the last one is ignored.

        The connection history gains a row in the same transaction when the event changes
        the status: the other state, or a connect while connected from another address or
        protocol (a reconnect whose disconnect went unseen). Repeated notices of the same
        connection (several workers watching one broker, say) add nothing.
        """
        cur = device_status.c
        ins = self._upsert(device_status).values(
            device_id=device_id, connected=connected, last_seen_ms=ts_ms, protocol=protocol,
            remote=remote, ip_version=ip_version(remote), changed_ms=ts_ms)
        new = ins.excluded
        # One atomic upsert: a late disconnect of an old session must not undo a reconnect.
        newer = or_(cur.changed_ms.is_(None), new.changed_ms >= cur.changed_ms)
        seen_later = or_(cur.last_seen_ms.is_(None), new.last_seen_ms > cur.last_seen_ms)
        stmt = ins.on_conflict_do_update(index_elements=[cur.device_id], set_={
            "connected": case((newer, new.connected), else_=cur.connected),
            "changed_ms": case((newer, new.changed_ms), else_=cur.changed_ms),
            "last_seen_ms": case((seen_later, new.last_seen_ms), else_=cur.last_seen_ms),
            "protocol": case((newer, new.protocol), else_=cur.protocol),
            "remote": case((newer, new.remote), else_=cur.remote),
            "ip_version": case((newer, new.ip_version), else_=cur.ip_version),
        })
        with self._writing() as conn:
            # PostgreSQL: the device row's lock orders this against another notice for the
            # same device (else both could log one transition) and against delete_device
            # (else a row could outlive the device). SQLite: BEGIN IMMEDIATE already does.
            known = conn.scalar(select(devices.c.id).where(devices.c.id == device_id)
                                .with_for_update(key_share=True)) is not None
            log = known and self._is_transition(conn, device_id, connected, ts_ms, protocol,
                                                remote)
            conn.execute(stmt)
            if log:
                conn.execute(insert(connection_log).values(
                    device_id=device_id, ts=ts_ms, connected=connected, protocol=protocol,
                    remote=remote, ip_version=ip_version(remote)))
                if random.random() < PRUNE_CHANCE:
                    self._prune_history(conn, device_id)
        if log and now_ms() >= self._next_sweep_ms:
            self._sweep_history()

    @staticmethod
    def _is_transition(conn: Connection, device_id: str, connected: bool, ts_ms: int,
                       protocol: str, remote: str | None) -> bool:
        """Whether this notice changes the device's connection (read before the upsert)."""
        st = device_status.c
        status = conn.execute(select(st.connected, st.changed_ms, st.protocol, st.remote)
                              .where(st.device_id == device_id)).first()
        if status is not None and status.changed_ms is not None and ts_ms < status.changed_ms:
            return False  # stale: the status ignores it, so must the history
        log = connection_log.c
        last = conn.execute(select(log.connected, log.protocol, log.remote)
                            .where(log.device_id == device_id)
                            .order_by(log.ts.desc(), log.id.desc()).limit(1)).first()
        # Compared with the last row logged, not with the status: HTTP traffic rewrites the
        # status's protocol and address without being a connection. With no row (history
        # pruned, or kept from before it existed) the status is the best guess.
        before = last if last is not None else status
        if before is None:
            return connected  # a first notice: a connect is news, a disconnect is not
        if bool(before.connected) != connected:
            return True
        return connected and (before.protocol, before.remote) != (protocol, remote)

    @staticmethod
    def _prune_history(conn: Connection, device_id: str) -> None:
        """Drop the device's history past 30 days or 1,000 rows (two index range scans)."""
        log = connection_log.c
        conn.execute(delete(connection_log).where(log.device_id == device_id,
                                                  log.ts < now_ms() - HISTORY_KEEP_MS))
        # The newest row past the limit: it and everything older go.
        edge = conn.execute(select(log.ts, log.id).where(log.device_id == device_id)
                            .order_by(log.ts.desc(), log.id.desc())
                            .offset(HISTORY_KEEP_ROWS).limit(1)).first()
        if edge is not None:
            conn.execute(delete(connection_log).where(
                log.device_id == device_id,
                or_(log.ts < edge.ts, and_(log.ts == edge.ts, log.id <= edge.id))))

    def _sweep_history(self) -> None:
        """Drop every device's history past 30 days: the devices no longer connecting too.

        A scan of the whole table, so once a day per process, and in a transaction of its
        own: it holds no device's lock while it runs.
        """
        now = now_ms()
        try:
            with self._writing() as conn:
                conn.execute(delete(connection_log)
                             .where(connection_log.c.ts < now - HISTORY_KEEP_MS))
        except StorageUnavailable:
            return  # the notice itself is stored; the next one tries the sweep again
        self._next_sweep_ms = now + SWEEP_EVERY_MS

    def connection_history(self, device_id: str, limit: int) -> list[ConnectionEvent]:
        """The device's recent connects and disconnects, newest first."""
        log = connection_log.c
        stmt = (select(log.ts, log.connected, log.protocol, log.remote, log.ip_version)
                .where(log.device_id == device_id)
                .order_by(log.ts.desc(), log.id.desc()).limit(max(0, limit)))
        with self._reading() as conn:
            return [ConnectionEvent(ts=row.ts, connected=bool(row.connected),
                                    protocol=row.protocol, remote=row.remote,
                                    ip_version=row.ip_version) for row in conn.execute(stmt)]

    def device_status(self, device_id: str) -> DeviceStatus | None:
        """The device's connectivity (never seen: all None), or None for an unknown device."""
        st = device_status.c
        stmt = (select(devices.c.id, st.connected, st.last_seen_ms, st.protocol, st.remote,
                       st.ip_version, st.changed_ms)
                .select_from(devices.outerjoin(device_status, st.device_id == devices.c.id))
                .where(devices.c.id == device_id))
        with self._reading() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return None
        return DeviceStatus(device_id=row[0], connected=bool(row[1]), last_seen_ms=row[2],
                            protocol=row[3], remote=row[4], ip_version=row[5],
                            changed_ms=row[6])

    def online_count(self, seen_since_ms: int) -> int:
        """Devices connected now, or seen (any protocol) since `seen_since_ms`."""
        st = device_status.c
        stmt = (select(func.count()).select_from(device_status)
                .where(or_(st.connected.is_(True), and_(st.last_seen_ms.is_not(None),
                                                        st.last_seen_ms >= seen_since_ms))))
        with self._reading() as conn:
            return int(conn.scalar(stmt) or 0)
