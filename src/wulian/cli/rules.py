"""`wulian rule …` and `wulian alarm …`: status early warning from the command line.

These work on the database directly, like the other management commands; a running
`wulian serve` notices rule changes and people's acknowledges within a second.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
import yaml
from rich.panel import Panel
from rich.table import Table

from wulian.alerting.backtest import BacktestTooLarge, backtest
from wulian.cli._common import (
    CliError,
    DatabaseOpt,
    DataDirOpt,
    console,
    fmt_time,
    guarded,
    now_ms,
    open_core,
    parse_time,
    settings_for,
    shown,
)
from wulian.i18n import t
from wulian.ports import Conflict
from wulian.quotas.resources import check_rule_room
from wulian.rules.actions import redact
from wulian.rules.alarms import AlarmError
from wulian.rules.model import Rule, RuleError, parse_rule
from wulian.storage.rules import AlarmQuery

rule_app = typer.Typer(help=t("cli.rule.help"), no_args_is_help=True)
alarm_app = typer.Typer(help=t("cli.alarm.help"), no_args_is_help=True)

RuleIdArg = Annotated[str, typer.Argument(metavar="ID", help=t("cli.rule.id"))]
AlarmIdArg = Annotated[str, typer.Argument(metavar="ALARM", help=t("cli.alarm.id"))]
_SEVERITY_STYLE = {"critical": "bold red", "major": "red", "minor": "yellow",
                   "warning": "cyan"}


def read_rule(path: str) -> Rule:
    """A rule document from a JSON or YAML file (`-`: standard input), validated."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text("utf-8")
    except OSError as exc:
        raise CliError(t("cli.rule.cannot_read", path=path, detail=exc.strerror), 2) from None
    try:
        doc: Any = (orjson.loads(text) if path.endswith(".json")
                    else yaml.safe_load(text))  # YAML is a superset of JSON
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        detail = str(exc).splitlines()[0][:200]
        raise CliError(t("cli.rule.bad_syntax", path=path, detail=detail), 2) from None
    try:
        return parse_rule(doc)
    except RuleError as exc:
        raise CliError(t("cli.rule.invalid", field=exc.path, problem=exc.problem), 2) from None


@rule_app.command("add", help=t("cli.rule.add.help"))
@guarded
def add(ctx: typer.Context,
        path: Annotated[str, typer.Argument(metavar="FILE", help=t("cli.rule.file"))],
        replace: Annotated[bool, typer.Option("--replace", help=t("cli.rule.replace"))] = False,
        data_dir: DataDirOpt = None, database: DatabaseOpt = None) -> None:
    rule = read_rule(path)
    with open_core(settings_for(ctx, data_dir, database)) as core:
        if core.rule_store.get_rule(rule.id) is None:  # replacing adds nothing
            check_rule_room(core.store, core.rule_store)
        try:
            stored = core.rule_store.put_rule(rule, create_only=not replace)
        except Conflict:
            raise CliError(t("cli.rule.exists", id=rule.id)) from None
    console.print(t("cli.rule.saved", id=rule.id, version=stored.version))


@rule_app.command("list", help=t("cli.rule.list.help"))
@guarded
def list_(ctx: typer.Context, data_dir: DataDirOpt = None,
          database: DatabaseOpt = None) -> None:
    with open_core(settings_for(ctx, data_dir, database)) as core:
        stored = core.rule_store.list_rules()
        counts = core.rule_store.open_counts_by_rule()
    if not stored:
        console.print(t("cli.rule.none"))
        return
    table = Table(t("cli.col.id"), t("cli.col.name"), t("cli.col.severity"),
                  t("cli.col.enabled"), t("cli.col.condition"), t("cli.col.open_alarms"))
    for s in stored:
        r = s.rule
        sev = r.severity.value
        table.add_row(r.id, shown(r.name),
                      f"[{_SEVERITY_STYLE[sev]}]{t('rules.severity.' + sev)}[/]",
                      t("cli.yes") if r.enabled else t("cli.no"),
                      shown(str(r.doc.get("condition", {}).get("type", "?"))),
                      str(counts.get(r.id, 0)))
    console.print(table)


@rule_app.command("show", help=t("cli.rule.show.help"))
@guarded
def show(ctx: typer.Context, rule_id: RuleIdArg, data_dir: DataDirOpt = None,
         database: DatabaseOpt = None) -> None:
    with open_core(settings_for(ctx, data_dir, database)) as core:
        stored = core.rule_store.get_rule(rule_id)
    if stored is None:
        raise CliError(t("cli.rule.not_found", id=rule_id))
    text = yaml.safe_dump(redact(dict(stored.doc)), allow_unicode=True, sort_keys=False)
    console.print(Panel("\n".join(shown(line) for line in text.rstrip().splitlines()),
                        title=f"{rule_id} (v{stored.version})", expand=False))


def _switch(ctx: typer.Context, rule_id: str, enabled: bool, data_dir: Any,
            database: Any) -> None:
    with open_core(settings_for(ctx, data_dir, database)) as core:
        if core.rule_store.get_rule(rule_id) is None:
            raise CliError(t("cli.rule.not_found", id=rule_id))
        core.rule_store.set_enabled(rule_id, enabled)
    console.print(t("cli.rule.now_enabled" if enabled else "cli.rule.now_disabled",
                    id=rule_id))


@rule_app.command("enable", help=t("cli.rule.enable.help"))
@guarded
def enable(ctx: typer.Context, rule_id: RuleIdArg, data_dir: DataDirOpt = None,
           database: DatabaseOpt = None) -> None:
    _switch(ctx, rule_id, True, data_dir, database)


@rule_app.command("disable", help=t("cli.rule.disable.help"))
@guarded
def disable(ctx: typer.Context, rule_id: RuleIdArg, data_dir: DataDirOpt = None,
            database: DatabaseOpt = None) -> None:
    _switch(ctx, rule_id, False, data_dir, database)


@rule_app.command("remove", help=t("cli.rule.remove.help"))
@guarded
def remove(ctx: typer.Context, rule_id: RuleIdArg,
           yes: Annotated[bool, typer.Option("--yes", "-y", help=t("cli.opt.yes"))] = False,
           data_dir: DataDirOpt = None, database: DatabaseOpt = None) -> None:
    with open_core(settings_for(ctx, data_dir, database)) as core:
        if core.rule_store.get_rule(rule_id) is None:
            raise CliError(t("cli.rule.not_found", id=rule_id))
        if not yes and not typer.confirm(t("cli.rule.confirm_remove", id=rule_id)):
            raise typer.Exit(1)
        core.rule_store.delete_rule(rule_id, by=getpass.getuser())
    console.print(t("cli.rule.removed", id=rule_id))


@rule_app.command("test", help=t("cli.rule.test.help"))
@guarded
def test(ctx: typer.Context,
         target: Annotated[str, typer.Argument(metavar="ID|FILE", help=t("cli.rule.target"))],
         since: Annotated[str, typer.Option(help=t("cli.rule.since"))] = "1d",
         until: Annotated[str, typer.Option(help=t("cli.rule.until"))] = "now",
         data_dir: DataDirOpt = None, database: DatabaseOpt = None) -> None:
    now = now_ms()
    start, end = parse_time(since, now), parse_time(until, now)
    if start >= end:
        raise CliError(t("cli.rule.bad_range"), 2)
    with open_core(settings_for(ctx, data_dir, database)) as core:
        if Path(target).is_file() or target == "-":
            rule = read_rule(target)
        else:
            stored = core.rule_store.get_rule(target)
            if stored is None:
                raise CliError(t("cli.rule.not_found", id=target))
            rule = stored.rule
        with console.status(t("cli.rule.testing", id=rule.id)):
            try:
                result = backtest(rule, core.store, start, end)
            except BacktestTooLarge as exc:
                key = "api.backtest_too_slow" if exc.what == "seconds" else \
                    "api.backtest_too_large"
                raise CliError(t(key, what=exc.what, limit=exc.limit), 2) from None
    summary = result.to_dict()
    console.print(t("cli.rule.tested", id=rule.id, devices=summary["devices"],
                    points=summary["points"], raised=summary["raised"],
                    cleared=summary["cleared"]))
    if result.changes:
        table = Table(t("cli.col.time"), t("cli.col.change"), t("cli.col.device"),
                      t("cli.col.value"))
        for c in result.changes:
            table.add_row(fmt_time(c.ts), t(f"cli.alarm.kind.{c.kind.value}"),
                          shown(c.subject), shown(str(c.value)))
        console.print(table)


# --- alarms ----------------------------------------------------------------------------


@alarm_app.command("list", help=t("cli.alarm.list.help"))
@guarded
def alarm_list(
    ctx: typer.Context,
    state: Annotated[str, typer.Option(help=t("cli.alarm.state"))] = "open",
    severity: Annotated[str | None, typer.Option(help=t("cli.alarm.severity"))] = None,
    device: Annotated[str | None, typer.Option(help=t("cli.alarm.device"))] = None,
    rule: Annotated[str | None, typer.Option(help=t("cli.alarm.rule"))] = None,
    limit: Annotated[int, typer.Option(min=1, help=t("cli.opt.limit"))] = 100,
    data_dir: DataDirOpt = None, database: DatabaseOpt = None,
) -> None:
    states = ("open", "active", "acknowledged", "cleared", "all")
    if state not in states:
        raise CliError(t("cli.alarm.bad_state", value=state, allowed=", ".join(states)), 2)
    query = AlarmQuery(None if state == "all" else state, severity, device, rule, limit=limit)
    with open_core(settings_for(ctx, data_dir, database)) as core:
        records = core.rule_store.list_alarms(query)
    if not records:
        console.print(t("cli.alarm.none"))
        return
    table = Table()
    table.add_column(t("cli.col.id"), no_wrap=True)  # what the user types next: never cut
    for key in ("severity", "state", "device", "rule", "value", "raised", "count"):
        table.add_column(t(f"cli.col.{key}"), overflow="fold")
    for r in records:
        a = r.alarm
        sev = a.severity.value
        table.add_row(shown(a.id), f"[{_SEVERITY_STYLE[sev]}]{t('rules.severity.' + sev)}[/]",
                      t(f"cli.alarm.state.{a.state.value}"),
                      t("rules.group") if a.subject == "*" else shown(a.subject),
                      shown(r.rule_name), shown(str(a.value)), fmt_time(a.raised_ms),
                      str(a.count))
    console.print(table)


def _person(ctx: typer.Context, alarm_id: str, by: str | None, comment: str | None,
            data_dir: Any, database: Any, *, ack: bool) -> None:
    who = by or getpass.getuser()
    with open_core(settings_for(ctx, data_dir, database)) as core:
        try:
            if ack:
                core.rule_store.acknowledge(alarm_id, who, comment)
            else:
                core.rule_store.clear(alarm_id, who, comment)
        except AlarmError as exc:
            raise CliError(t("cli.alarm.refused", id=alarm_id, problem=exc.problem)) from None
    console.print(t("cli.alarm.acknowledged" if ack else "cli.alarm.cleared", id=alarm_id,
                    by=who))


ByOpt = Annotated[str | None, typer.Option("--by", help=t("cli.alarm.by"))]
CommentOpt = Annotated[str | None, typer.Option("--comment", "-m", help=t("cli.alarm.comment"))]


@alarm_app.command("ack", help=t("cli.alarm.ack.help"))
@guarded
def alarm_ack(ctx: typer.Context, alarm_id: AlarmIdArg, by: ByOpt = None,
              comment: CommentOpt = None, data_dir: DataDirOpt = None,
              database: DatabaseOpt = None) -> None:
    _person(ctx, alarm_id, by, comment, data_dir, database, ack=True)


@alarm_app.command("clear", help=t("cli.alarm.clear.help"))
@guarded
def alarm_clear(ctx: typer.Context, alarm_id: AlarmIdArg, by: ByOpt = None,
                comment: CommentOpt = None, data_dir: DataDirOpt = None,
                database: DatabaseOpt = None) -> None:
    _person(ctx, alarm_id, by, comment, data_dir, database, ack=False)
