"""`wulian audit …`: read the hash-chained audit log and verify that nobody changed it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from wulian.cli._common import (
    CliError,
    DatabaseOpt,
    DataDirOpt,
    console,
    fmt_time,
    guarded,
    open_core,
    settings_for,
    shown,
)
from wulian.domain.audit import GENESIS, entry_hash
from wulian.i18n import t
from wulian.storage.audit import SqlAuditLog

app = typer.Typer(help=t("cli.audit.help"), no_args_is_help=True)


@app.command("list", help=t("cli.audit.list.help"))
@guarded
def list_(ctx: typer.Context,
          limit: Annotated[int, typer.Option(min=1, max=10_000, help=t("cli.audit.limit"))] = 50,
          action: Annotated[str | None, typer.Option(help=t("cli.audit.action"))] = None,
          actor: Annotated[str | None, typer.Option(help=t("cli.audit.actor"))] = None,
          data_dir: DataDirOpt = None, database: DatabaseOpt = None) -> None:
    with open_core(settings_for(ctx, data_dir, database)) as core:
        log = SqlAuditLog.for_store(core.store)
        found = list(log.scan())
        found = [e for e in found if (action is None or e.record.action == action)
                 and (actor is None or e.record.actor == actor)][-limit:]
    table = Table(*(t(f"cli.audit.col.{c}") for c in
                    ("seq", "time", "actor", "action", "target", "outcome", "source")))
    for entry in found:
        r = entry.record
        table.add_row(str(entry.seq), fmt_time(r.ts), shown(r.actor), shown(r.action),
                      shown(r.target or ""), shown(r.outcome), shown(r.source or ""))
    console.print(table)


@app.command("verify", help=t("cli.audit.verify.help"))
@guarded
def verify(ctx: typer.Context, data_dir: DataDirOpt = None, database: DatabaseOpt = None) -> None:
    """Recompute every entry's hash from the first; name the first entry that does not fit."""
    with open_core(settings_for(ctx, data_dir, database)) as core:
        log = SqlAuditLog.for_store(core.store)
        total = log.count()
        prev_seq, prev_hash, checked = 0, GENESIS, 0
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(t("cli.audit.verifying"), total=total or None)
            for entry in log.scan():
                if (entry.seq != prev_seq + 1 or entry.prev_hash != prev_hash
                        or entry.hash != entry_hash(prev_hash, entry.seq, entry.record)):
                    raise CliError(t("cli.audit.broken", seq=entry.seq, checked=checked,
                                     action=entry.record.action, actor=entry.record.actor), 8)
                prev_seq, prev_hash = entry.seq, entry.hash
                checked += 1
                progress.advance(task)
    console.print(t("cli.audit.intact", count=checked, hash=prev_hash[:16]))
