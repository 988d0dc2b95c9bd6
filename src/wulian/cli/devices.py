"""`wulian device …`: register devices, look at them, switch them off, rotate secrets."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table

from wulian.bootstrap import Core
from wulian.cli._common import (
    CliError,
    DatabaseOpt,
    DataDirOpt,
    console,
    err_console,
    fmt_ago,
    fmt_time,
    guarded,
    now_ms,
    open_core,
    parse_tag,
    settings_for,
    shown,
)
from wulian.domain.device import DeviceState
from wulian.i18n import t
from wulian.ports import Conflict, DeviceStatus, NotFound
from wulian.registry import NewDevice

app = typer.Typer(help=t("cli.device.help"), no_args_is_help=True)

IdArg = Annotated[str, typer.Argument(metavar="ID", help=t("cli.device.id"))]


def _device(core: Core, device_id: str) -> Any:
    try:
        return core.registry.device(device_id)
    except NotFound:
        raise CliError(t("cli.device.not_found", id=device_id)) from None


def _show_secret(new: NewDevice) -> None:
    console.print(Panel(
        f"{t('cli.device.id_label')}: [bold]{new.device.id}[/]\n"
        f"{t('cli.device.secret_label')}: [bold yellow]{new.secret}[/]",
        title=t("cli.device.credentials"), expand=False))
    err_console.print(f"[yellow]{t('cli.device.secret_once')}[/]")


@app.command("add", help=t("cli.device.add.help"))
@guarded
def add(ctx: typer.Context, device_id: IdArg,
        product: Annotated[str, typer.Option("--product", "-p", help=t("cli.device.product"))],
        name: Annotated[str | None, typer.Option(help=t("cli.device.name"))] = None,
        tag: Annotated[list[str] | None, typer.Option(
            "--tag", "-t", help=t("cli.device.tag"))] = None,
        lat: Annotated[float | None, typer.Option(help=t("cli.device.lat"))] = None,
        lon: Annotated[float | None, typer.Option(help=t("cli.device.lon"))] = None,
        data_dir: DataDirOpt = None, database: DatabaseOpt = None) -> None:
    tags = dict(parse_tag(s) for s in tag or [])
    if (lat is None) != (lon is None):
        raise CliError(t("cli.device.lat_lon_both"), 2)
    location = {"lat": lat, "lon": lon} if lat is not None else None
    with open_core(settings_for(ctx, data_dir, database)) as core:
        if core.store.get_product(product) is None:
            raise CliError(t("cli.product.not_found", id=product))
        try:
            new = core.registry.add_device(device_id, product, name=name, tags=tags,
                                           location=location)
        except Conflict:
            raise CliError(t("cli.device.exists", id=device_id)) from None
    console.print(t("cli.device.added", id=device_id, product=product))
    _show_secret(new)


def online(status: DeviceStatus | None, window_s: int, now: int) -> bool:
    if status is None:
        return False
    recent = status.last_seen_ms is not None and now - status.last_seen_ms <= window_s * 1000
    return status.connected or recent


@app.command("list", help=t("cli.device.list.help"))
@guarded
def list_(ctx: typer.Context,
          product: Annotated[str | None, typer.Option(help=t("cli.device.filter_product"))] = None,
          state: Annotated[DeviceState | None, typer.Option(
              help=t("cli.device.filter_state"))] = None,
          tag: Annotated[str | None, typer.Option(help=t("cli.device.filter_tag"))] = None,
          limit: Annotated[int, typer.Option(min=1, help=t("cli.opt.limit"))] = 100,
          data_dir: DataDirOpt = None, database: DatabaseOpt = None) -> None:
    settings = settings_for(ctx, data_dir, database)
    with open_core(settings) as core:
        devices = core.store.list_devices(product=product, state=state,
                                          tag=parse_tag(tag) if tag else None, limit=limit)
        statuses = {d.id: core.store.device_status(d.id) for d in devices}
    if not devices:
        console.print(t("cli.device.none"))
        return
    now = now_ms()
    table = Table(t("cli.col.id"), t("cli.col.product"), t("cli.col.state"),
                  t("cli.col.online"), t("cli.col.last_seen"), t("cli.col.tags"))
    for d in devices:
        status = statuses[d.id]
        is_on = online(status, settings.online_window_s, now)
        table.add_row(
            d.id, d.product,
            t(f"cli.state.{d.state.value}") if d.active else f"[red]{t('cli.state.disabled')}[/]",
            f"[green]{t('cli.yes')}[/]" if is_on else t("cli.no"),
            fmt_ago(status.last_seen_ms if status else None, now),
            shown(" ".join(f"{k}={v}" for k, v in sorted(d.tags.items()))))
    console.print(table)
    if len(devices) == limit:
        console.print(t("cli.more_rows", limit=limit))


@app.command("show", help=t("cli.device.show.help"))
@guarded
def show(ctx: typer.Context, device_id: IdArg, data_dir: DataDirOpt = None,
         database: DatabaseOpt = None) -> None:
    settings = settings_for(ctx, data_dir, database)
    with open_core(settings) as core:
        device = _device(core, device_id)
        status = core.store.device_status(device_id)
        latest = core.store.latest(device_id)
        model = core.store.get_product(device.product)
    now = now_ms()
    lines = [
        f"{t('cli.col.id')}: [bold]{device.id}[/]   {t('cli.col.name')}: {shown(device.name)}",
        f"{t('cli.col.product')}: {device.product}   {t('cli.col.state')}: "
        f"{t('cli.state.' + device.state.value)}",
        f"{t('cli.col.online')}: "
        f"{t('cli.yes') if online(status, settings.online_window_s, now) else t('cli.no')}   "
        f"{t('cli.col.last_seen')}: {fmt_ago(status.last_seen_ms if status else None, now)}"
        + (f" ({status.protocol}, {status.remote})" if status and status.protocol else ""),
        f"{t('cli.col.tags')}: "
        + (shown(" ".join(f"{k}={v}" for k, v in sorted(device.tags.items()))) or "—"),
        f"{t('cli.col.location')}: " + (f"{device.location.lat:.5f}, {device.location.lon:.5f}"
                                        if device.location else "—"),
        f"{t('cli.col.created')}: {fmt_time(device.created_ms)}",
    ]
    console.print(Panel("\n".join(lines), title=t("cli.device.title"), expand=False))
    if not latest:
        console.print(t("cli.device.no_data"))
        return
    table = Table(t("cli.col.property"), t("cli.col.value"), t("cli.col.unit"),
                  t("cli.col.time"), title=t("cli.device.latest"), title_justify="left")
    for prop, (ts, value) in sorted(latest.items()):
        f = model.property(prop) if model else None
        table.add_row(prop, shown(str(value)), shown((f.unit if f else None) or ""),
                      fmt_time(ts))
    console.print(table)


def _set_state(ctx: typer.Context, device_id: str, state: DeviceState,
               data_dir: Any, database: Any) -> None:
    with open_core(settings_for(ctx, data_dir, database)) as core:
        _device(core, device_id)
        core.registry.update_device(device_id, state=state.value)
    console.print(t(f"cli.device.now_{state.value}", id=device_id))


@app.command("disable", help=t("cli.device.disable.help"))
@guarded
def disable(ctx: typer.Context, device_id: IdArg, data_dir: DataDirOpt = None,
            database: DatabaseOpt = None) -> None:
    _set_state(ctx, device_id, DeviceState.DISABLED, data_dir, database)


@app.command("enable", help=t("cli.device.enable.help"))
@guarded
def enable(ctx: typer.Context, device_id: IdArg, data_dir: DataDirOpt = None,
           database: DatabaseOpt = None) -> None:
    _set_state(ctx, device_id, DeviceState.ACTIVE, data_dir, database)


@app.command("delete", help=t("cli.device.delete.help"))
@guarded
def delete(ctx: typer.Context, device_id: IdArg,
           yes: Annotated[bool, typer.Option("--yes", "-y", help=t("cli.opt.yes"))] = False,
           data_dir: DataDirOpt = None, database: DatabaseOpt = None) -> None:
    with open_core(settings_for(ctx, data_dir, database)) as core:
        _device(core, device_id)
        if not yes and not typer.confirm(t("cli.device.confirm_delete", id=device_id)):
            raise typer.Exit(1)
        core.registry.delete_device(device_id)
    console.print(t("cli.device.deleted", id=device_id))


@app.command("rotate-secret", help=t("cli.device.rotate.help"))
@guarded
def rotate_secret(ctx: typer.Context, device_id: IdArg, data_dir: DataDirOpt = None,
                  database: DatabaseOpt = None) -> None:
    with open_core(settings_for(ctx, data_dir, database)) as core:
        _device(core, device_id)
        new = core.registry.rotate_secret(device_id)
    console.print(t("cli.device.rotated", id=device_id))
    _show_secret(new)
