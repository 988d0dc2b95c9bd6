"""`wulian user …`: console users — add, list, set a password, change a role, remove."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.table import Table

from wulian.accounts import AccountService
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
from wulian.domain.account import AccountError, Role
from wulian.i18n import t
from wulian.ports import Conflict, NotFound
from wulian.storage.accounts import LastAdmin, SqlAccounts

app = typer.Typer(help=t("cli.user.help"), no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help=t("cli.user.name"))]
StdinOpt = Annotated[bool, typer.Option("--password-stdin", help=t("cli.user.password_stdin"))]


@contextlib.contextmanager
def _service(ctx: typer.Context, data_dir: DataDirOpt, database: DatabaseOpt,
             username: str | None = None) -> Iterator[AccountService]:
    """The account service over the configured database, with its errors as one line."""
    settings = settings_for(ctx, data_dir, database)
    with open_core(settings) as core:
        service = AccountService(SqlAccounts.for_store(core.store),
                                 session_ttl_ms=settings.session_ttl_s * 1000)
        try:
            yield service
        except AccountError as exc:
            raise CliError(t("cli.user.invalid", field=exc.field, problem=exc.message()),
                           2) from None
        except LastAdmin:
            raise CliError(t("cli.user.last_admin")) from None
        except NotFound:
            raise CliError(t("cli.user.not_found", name=username)) from None
        except Conflict:
            raise CliError(t("cli.user.exists", name=username)) from None


def _password(from_stdin: bool) -> str:
    """The new password: from standard input (one line) or asked twice on the terminal."""
    if from_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
        if not password:
            raise CliError(t("cli.user.password_stdin_empty"), 2)
        return password
    asked: str = typer.prompt(t("cli.user.password_prompt"), hide_input=True,
                              confirmation_prompt=t("cli.user.password_repeat"))
    return asked


@app.command("add", help=t("cli.user.add.help"))
@guarded
def add(ctx: typer.Context, username: NameArg,
        role: Annotated[Role, typer.Option("--role", "-r", help=t("cli.user.role"))]
        = Role.VIEWER,
        password_stdin: StdinOpt = False,
        data_dir: DataDirOpt = None, database: DatabaseOpt = None) -> None:
    with _service(ctx, data_dir, database, username) as service:
        if service.store.get_user(username) is not None:
            raise Conflict(username)  # before asking for a password in vain
        service.add_user(username, _password(password_stdin), role)
    console.print(t("cli.user.added", name=username, role=t(f"account.role.{role.value}")))


@app.command("list", help=t("cli.user.list.help"))
@guarded
def list_(ctx: typer.Context, data_dir: DataDirOpt = None, database: DatabaseOpt = None) -> None:
    with _service(ctx, data_dir, database) as service:
        users = service.store.list_users()
        sessions = {u.username: service.store.count_sessions(u.username) for u in users}
    if not users:
        console.print(t("cli.user.none"))
        return
    table = Table(t("cli.user.col.name"), t("cli.user.col.role"), t("cli.col.state"),
                  t("cli.user.col.sessions"), t("cli.col.created"))
    for user in users:
        table.add_row(
            shown(user.username), t(f"account.role.{user.role.value}"),
            f"[red]{t('cli.state.disabled')}[/]" if user.disabled else t("cli.state.active"),
            str(sessions[user.username]), fmt_time(user.created_ms))
    console.print(table)


@app.command("passwd", help=t("cli.user.passwd.help"))
@guarded
def passwd(ctx: typer.Context, username: NameArg, password_stdin: StdinOpt = False,
           data_dir: DataDirOpt = None, database: DatabaseOpt = None) -> None:
    with _service(ctx, data_dir, database, username) as service:
        if service.store.get_user(username) is None:
            raise NotFound(username)
        service.update_user(username, password=_password(password_stdin))
    console.print(t("cli.user.password_set", name=username))


@app.command("set", help=t("cli.user.set.help"))
@guarded
def set_(ctx: typer.Context, username: NameArg,
         role: Annotated[Role | None, typer.Option("--role", "-r", help=t("cli.user.role"))]
         = None,
         disable: Annotated[bool, typer.Option("--disable", help=t("cli.user.disable"))] = False,
         enable: Annotated[bool, typer.Option("--enable", help=t("cli.user.enable"))] = False,
         data_dir: DataDirOpt = None, database: DatabaseOpt = None) -> None:
    if disable and enable:
        raise CliError(t("cli.user.enable_or_disable"), 2)
    if role is None and not (disable or enable):
        raise CliError(t("cli.user.nothing_to_set"), 2)
    with _service(ctx, data_dir, database, username) as service:
        user = service.update_user(username, role=role,
                                   disabled=True if disable else (False if enable else None))
    state = t("cli.state.disabled") if user.disabled else t("cli.state.active")
    console.print(t("cli.user.changed", name=username,
                    role=t(f"account.role.{user.role.value}"), state=state))


@app.command("remove", help=t("cli.user.remove.help"))
@guarded
def remove(ctx: typer.Context, username: NameArg,
           yes: Annotated[bool, typer.Option("--yes", "-y", help=t("cli.opt.yes"))] = False,
           data_dir: DataDirOpt = None, database: DatabaseOpt = None) -> None:
    with _service(ctx, data_dir, database, username) as service:
        if service.store.get_user(username) is None:
            raise NotFound(username)
        if not yes and not typer.confirm(t("cli.user.confirm_remove", name=username)):
            raise typer.Exit(1)
        service.delete_user(username)
    console.print(t("cli.user.removed", name=username))
