"""Devices: register (secret shown once), list, read with status and connection history,
change, delete, rotate."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from wulian.api.deps import ApiError, CoreDep
from wulian.bootstrap import Core
from wulian.domain.device import Device, DeviceState
from wulian.pipeline.ingest import now_ms
from wulian.ports import Conflict, DeviceStatus, NotFound

router = APIRouter(prefix="/devices", tags=["devices"])
LIST_PAGE = 500  # rows fetched per query when filtering on `online` after the store


class LocationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lat: float
    lon: float


class DeviceIn(BaseModel):
    """A device to register."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(description="Unique id, [A-Za-z0-9_.:-]{1,128}")
    product: str
    name: str | None = Field(default=None, max_length=256)
    tags: dict[str, str] | None = None
    location: LocationIn | None = None


class DevicePatch(BaseModel):
    """The fields of a device that may change; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")
    state: Literal["active", "disabled"] | None = None
    name: str | None = Field(default=None, max_length=256)
    tags: dict[str, str] | None = None
    location: LocationIn | None = None


def not_found(device_id: str) -> ApiError:
    return ApiError(404, "device_not_found", params={"device": device_id[:128]})


def existing_device(core: Core, device_id: str) -> Device:
    """The device, or a 404 answer."""
    device = core.store.get_device(device_id)
    if device is None:
        raise not_found(device_id)
    return device


def is_online(core: Core, status: DeviceStatus | None, now: int) -> bool:
    """Connected now, or seen within `online_window_s` (as `/stats` counts it)."""
    if status is None:
        return False
    window_ms = core.settings.online_window_s * 1000
    return status.connected or (status.last_seen_ms or 0) >= now - window_ms


def _status(core: Core, device_id: str) -> dict[str, Any]:
    status = core.store.device_status(device_id)
    return {
        "connected": bool(status and status.connected),
        "online": is_online(core, status, now_ms()),
        "last_seen_ms": status.last_seen_ms if status else None,
        "protocol": status.protocol if status else None,
        "remote": status.remote if status else None,
        "ip_version": status.ip_version if status else None,
        "changed_ms": status.changed_ms if status else None,
    }


@router.post("", status_code=201)
def register_device(core: CoreDep, body: DeviceIn) -> dict[str, Any]:
    """Register a device; the answer holds its secret, shown this once only."""
    try:
        new = core.registry.add_device(
            body.id, body.product, name=body.name, tags=body.tags,
            location=body.location.model_dump() if body.location else None)
    except Conflict:
        raise ApiError(409, "device_exists", params={"device": body.id},
                       extra={"field": "id"}) from None
    return new.to_dict()


@router.get("")
def list_devices(
    core: CoreDep, product: str | None = None,
    state: DeviceState | None = None,
    tag: Annotated[str | None, Query(pattern=r"^[^:]+:.*$", description="key:value")] = None,
    q: Annotated[str | None, Query(max_length=128, description="search id and name")] = None,
    online: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    status: Annotated[bool, Query(description="add each device's `status`, as GET "
                                              "/devices/{id} shows it")] = False,
) -> dict[str, Any]:
    """Devices matching all the given filters, in id order."""
    tag_pair = tuple(tag.split(":", 1)) if tag else None
    filters: dict[str, Any] = {"product": product, "state": state, "tag": tag_pair, "search": q}
    if online is None:
        devices = core.store.list_devices(**filters, limit=limit, offset=offset)
    else:
        devices = _filter_online(core, filters, online, limit, offset)
    # opt-in: a status is one more lookup per device, which plain listings need not pay
    rows = [{**d.public(), "status": _status(core, d.id)} if status else d.public()
            for d in devices]
    return {"data": rows, "limit": limit, "offset": offset}


def _filter_online(core: Core, filters: dict[str, Any], online: bool, limit: int,
                   offset: int) -> list[Device]:
    # The store cannot filter on connectivity, so page through and check each device.
    found: list[Device] = []
    now, skip, start = now_ms(), offset, 0
    while len(found) < limit:
        page = core.store.list_devices(**filters, limit=LIST_PAGE, offset=start)
        for device in page:
            if is_online(core, core.store.device_status(device.id), now) != online:
                continue
            if skip:
                skip -= 1
            elif len(found) < limit:
                found.append(device)
        if len(page) < LIST_PAGE:
            break
        start += LIST_PAGE
    return found


@router.get("/{device_id}")
def get_device(core: CoreDep, device_id: str) -> dict[str, Any]:
    """A device and its connectivity: connected, last seen, protocol, remote, online."""
    return {**existing_device(core, device_id).public(), "status": _status(core, device_id)}


@router.get("/{device_id}/connections")
def connection_history(
    core: CoreDep, device_id: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The device's recent connects and disconnects, newest first (kept 30 days, 1,000 at most).

    A row is written when the connection changes (connected, disconnected, or a reconnect from
    another address), not per message: HTTP ingest, which has no connection, adds none.
    """
    existing_device(core, device_id)
    rows = core.store.connection_history(device_id, limit)
    return {"device": device_id, "connections": [
        {"ts": r.ts, "connected": r.connected, "protocol": r.protocol, "remote": r.remote,
         "ip_version": r.ip_version} for r in rows]}


@router.patch("/{device_id}")
def update_device(core: CoreDep, device_id: str, body: DevicePatch) -> dict[str, Any]:
    """Enable or disable a device, rename, retag or move it."""
    try:
        device = core.registry.update_device(
            device_id, state=body.state, name=body.name, tags=body.tags,
            location=body.location.model_dump() if body.location else None)
    except NotFound:
        raise not_found(device_id) from None
    return device.public()


@router.delete("/{device_id}", status_code=204)
def delete_device(core: CoreDep, device_id: str) -> Response:
    """Remove a device and everything stored about it."""
    try:
        core.registry.delete_device(device_id)
    except NotFound:
        raise not_found(device_id) from None
    return Response(status_code=204)


@router.post("/{device_id}/secret")
def rotate_secret(core: CoreDep, device_id: str) -> dict[str, Any]:
    """Issue a new secret (the old one stops working at once); shown this once only."""
    try:
        return core.registry.rotate_secret(device_id).to_dict()
    except NotFound:
        raise not_found(device_id) from None
