"""`wulian query`, `wulian rejections`, `wulian stats`: what the platform stored."""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from typing import Annotated, cast

import typer
from rich.table import Table

from wulian.cli._common import (
    CliError,
    DatabaseOpt,
    DataDirOpt,
    console,
    fmt_time,
    guarded,
    now_ms,
    open_core,
    parse_duration,
    parse_time,
    settings_for,
    shown,
)
from wulian.domain.message import Value
from wulian.i18n import t
from wulian.ports import AGGREGATES, Aggregate, NotFound

DEFAULT_WINDOW_MS = 3_600_000  # buckets without --since cover the last hour


def query(ctx: typer.Context,
          device: Annotated[str, typer.Argument(help=t("cli.device.id"))],
          prop: Annotated[str, typer.Argument(metavar="PROPERTY", help=t("cli.query.prop"))],
          since: Annotated[str | None, typer.Option(help=t("cli.opt.since"))] = None,
          until: Annotated[str | None, typer.Option(help=t("cli.opt.until"))] = None,
          bucket: Annotated[str | None, typer.Option(help=t("cli.query.bucket"))] = None,
          agg: Annotated[str, typer.Option(help=t("cli.query.agg"))] = "avg",
          limit: Annotated[int, typer.Option(min=1, help=t("cli.opt.limit"))] = 100,
          as_csv: Annotated[bool, typer.Option("--csv", help=t("cli.query.csv"))] = False,
          data_dir: DataDirOpt = None, database: DatabaseOpt = None) -> None:
    now = now_ms()
    start = parse_time(since, now) if since else None
    end = parse_time(until, now) if until else None
    if agg not in AGGREGATES:
        raise CliError(t("cli.query.bad_agg", agg=agg, allowed=", ".join(AGGREGATES)), 2)
    bucket_ms = parse_duration(bucket) if bucket else None
    with open_core(settings_for(ctx, data_dir, database)) as core:
        try:
            dev = core.registry.device(device)
        except NotFound:
            raise CliError(t("cli.device.not_found", id=device)) from None
        model = core.store.get_product(dev.product)
        field = model.property(prop) if model else None
        if model is not None and field is None:
            raise CliError(t("cli.query.unknown_property", prop=prop, device=device,
                             allowed=", ".join(p.id for p in model.properties)), 2)
        rows: Sequence[tuple[int, Value | None]]
        if bucket_ms is not None:
            rows = core.store.buckets(device, prop, since=start or now - DEFAULT_WINDOW_MS,
                                      until=end or now, bucket_ms=bucket_ms,
                                      agg=cast(Aggregate, agg), limit=limit)
        elif start is None:
            # No start: the most recent points, shown oldest first.
            rows = list(reversed(core.store.points(device, prop, since=None, until=end,
                                                   limit=limit, descending=True)))
        else:
            rows = core.store.points(device, prop, since=start, until=end, limit=limit)
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["ts", "time", agg if bucket_ms else prop])
        for ts, value in rows:
            writer.writerow([ts, fmt_time(ts, iso=True), "" if value is None else value])
        return
    if not rows:
        console.print(t("cli.query.none", device=device, prop=prop))
        return
    unit = f" ({field.unit})" if field and field.unit else ""
    heading = f"{agg}({prop}){unit} / {bucket}" if bucket_ms else f"{prop}{unit}"
    table = Table(t("cli.col.time"), heading, title=device, title_justify="left")
    for ts, value in rows:
        table.add_row(fmt_time(ts, iso=True), "—" if value is None else shown(str(value)))
    console.print(table)
    if len(rows) == limit:
        console.print(t("cli.more_rows", limit=limit))


def rejections(ctx: typer.Context,
               device: Annotated[str | None, typer.Option(help=t("cli.rejections.device"))] = None,
               since: Annotated[str | None, typer.Option(help=t("cli.opt.since"))] = None,
               limit: Annotated[int, typer.Option(min=1, help=t("cli.opt.limit"))] = 50,
               data_dir: DataDirOpt = None, database: DatabaseOpt = None) -> None:
    start = parse_time(since) if since else None
    with open_core(settings_for(ctx, data_dir, database)) as core:
        rows = core.store.rejections(device_id=device, since=start, limit=limit)
    if not rows:
        console.print(t("cli.rejections.none"))
        return
    table = Table()
    table.add_column(t("cli.col.time"), no_wrap=True)
    table.add_column(t("cli.col.device"), no_wrap=True)
    table.add_column(t("cli.col.protocol"))
    table.add_column(t("cli.col.code"), no_wrap=True)
    table.add_column(t("cli.col.reason"), ratio=2, overflow="fold")
    table.add_column(t("cli.col.payload"), ratio=1, overflow="fold")
    for r in rows:
        payload = r.payload.decode("utf-8", errors="replace")
        table.add_row(fmt_time(r.received_ms), shown(r.device_id or "—"), r.protocol, r.code,
                      shown(r.message), shown(payload, 80))
    console.print(table)


def stats(ctx: typer.Context, data_dir: DataDirOpt = None,
          database: DatabaseOpt = None) -> None:
    settings = settings_for(ctx, data_dir, database)
    with open_core(settings) as core:
        counters = core.store.counters()
        devices = core.store.count_devices()
        online = core.store.online_count(now_ms() - settings.online_window_s * 1000)
        info = core.store.info()
    table = Table(t("cli.col.metric"), t("cli.col.value"))
    table.add_row(t("cli.stats.devices"), str(devices))
    table.add_row(t("cli.stats.online"), str(online))
    for name in ("messages_accepted", "messages_rejected", "points_stored", "events_stored"):
        table.add_row(t(f"cli.stats.{name}"), str(counters.get(name, 0)))
    for name, value in sorted(counters.items()):
        if name.startswith("rejected."):
            table.add_row(t("cli.stats.rejected_code", code=name.split(".", 1)[1]), str(value))
    table.add_row(t("cli.stats.database"), " ".join(f"{k}={v}" for k, v in info.items()))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("query", help=t("cli.query.help"))(guarded(query))
    app.command("rejections", help=t("cli.rejections.help"))(guarded(rejections))
    app.command("stats", help=t("cli.stats.help"))(guarded(stats))
