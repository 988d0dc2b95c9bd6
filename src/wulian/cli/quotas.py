"""`wulian quota show`: an organisation's quotas beside what it uses."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from wulian.cli._common import (
    DatabaseOpt,
    DataDirOpt,
    console,
    guarded,
    now_ms,
    open_core,
    settings_for,
    shown,
)
from wulian.domain.actor import DEFAULT_ORG
from wulian.domain.rejection import RejectCode
from wulian.i18n import t
from wulian.ports import NotFound
from wulian.quotas.usage import org_report

app = typer.Typer(help=t("cli.quota.help"), no_args_is_help=True)
OrgOpt = Annotated[str, typer.Option("--org", help=t("cli.quota.org_help"))]
_USAGE = {"max_devices": "devices", "max_rules": "rules"}
_REFUSALS = (RejectCode.RATE_LIMITED.value, RejectCode.QUOTA_EXCEEDED.value)


@app.command("show", help=t("cli.quota.show.help"))
@guarded
def show(ctx: typer.Context, org: OrgOpt = DEFAULT_ORG, data_dir: DataDirOpt = None,
         database: DatabaseOpt = None) -> None:
    with open_core(settings_for(ctx, data_dir, database)) as core:
        if core.store.org_quotas(org) is None:
            raise NotFound(org)
        # This process ingests nothing: rates are the API's (`GET /api/v1/quotas`).
        report = org_report(core.store, core.rule_store, None, org, now_ms())
    limits = report["quotas"]
    usage = report["usage"]
    table = Table(t("cli.quota.quota"), t("cli.quota.limit"), t("cli.quota.usage"),
                  title=t("cli.quota.title", org=shown(org)), title_justify="left")
    for name in ("max_devices", "max_rules", "msgs_per_s", "bytes_per_day",
                 "device_msgs_per_s", "api_per_s"):
        limit = limits.get(name)
        used = _USAGE.get(name)
        # the code stays beside the words: it is what `quotas` documents are written with
        label = f"{t(f'cli.quota.name.{name}')} ({name})"
        table.add_row(label, t("cli.quota.unlimited") if limit is None else f"{limit:g}",
                      "" if used is None else str(usage[used]))
    for code in _REFUSALS:
        table.add_row(t("cli.quota.refused", code=code), "",
                      str(usage["refused"].get(code, 0)))
    console.print(table)
