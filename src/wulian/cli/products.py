"""`wulian product …`: import thing models and look at them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from wulian.cli._common import (
    CliError,
    DatabaseOpt,
    DataDirOpt,
    console,
    guarded,
    open_core,
    settings_for,
    shown,
)
from wulian.domain.thingmodel import Field, ThingModel
from wulian.i18n import t

app = typer.Typer(help=t("cli.product.help"), no_args_is_help=True)


def read_json(source: str) -> Any:
    """A JSON document from a file, or from stdin for `-`."""
    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise CliError(t("cli.error.read_file", path=source, detail=exc.strerror or exc), 2) \
            from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CliError(t("cli.error.bad_json", path=source, detail=str(exc)), 2) from None


@app.command("import", help=t("cli.product.import.help"))
@guarded
def import_(ctx: typer.Context,
            file: Annotated[str, typer.Argument(help=t("cli.product.import.file"))],
            data_dir: DataDirOpt = None, database: DatabaseOpt = None) -> None:
    doc = read_json(file)
    with open_core(settings_for(ctx, data_dir, database)) as core:
        model, created = core.registry.import_product(doc)
    key = "cli.product.created" if created else "cli.product.replaced"
    console.print(t(key, id=model.id, properties=len(model.properties),
                    events=len(model.events), commands=len(model.commands)))


@app.command("list", help=t("cli.product.list.help"))
@guarded
def list_(ctx: typer.Context, data_dir: DataDirOpt = None,
          database: DatabaseOpt = None) -> None:
    with open_core(settings_for(ctx, data_dir, database)) as core:
        models = core.store.list_products()
    if not models:
        console.print(t("cli.product.none"))
        return
    table = Table(t("cli.col.id"), t("cli.col.name"), t("cli.col.properties"),
                  t("cli.col.events"), t("cli.col.commands"))
    for m in models:
        table.add_row(m.id, shown(m.name), str(len(m.properties)), str(len(m.events)),
                      str(len(m.commands)))
    console.print(table)


def _range(f: Field) -> str:
    if f.type == "enum":
        return " | ".join(f.values)
    if f.min is None and f.max is None:
        return ""
    lo = "" if f.min is None else f"{f.min:g}"
    hi = "" if f.max is None else f"{f.max:g}"
    return f"{lo} … {hi}"


def fields_table(title: str, fields: tuple[Field, ...]) -> Table:
    table = Table(t("cli.col.id"), t("cli.col.type"), t("cli.col.unit"), t("cli.col.range"),
                  t("cli.col.access"), title=title, title_justify="left")
    for f in fields:
        table.add_row(f.id, f.type, shown(f.unit or ""), shown(_range(f)), f.access)
    return table


def show_model(model: ThingModel) -> None:
    console.print(f"[bold]{model.id}[/]  {shown(model.name)}")
    if model.description:
        console.print(shown(model.description))
    console.print(fields_table(t("cli.product.properties"), model.properties))
    for event in model.events:
        console.print(fields_table(t("cli.product.event", id=event.id, level=event.level),
                                   event.params))
    for command in model.commands:
        console.print(fields_table(t("cli.product.command", id=command.id), command.params))


@app.command("show", help=t("cli.product.show.help"))
@guarded
def show(ctx: typer.Context, product_id: Annotated[str, typer.Argument(metavar="ID")],
         json: Annotated[bool, typer.Option("--json", help=t("cli.opt.json"))] = False,
         data_dir: DataDirOpt = None, database: DatabaseOpt = None) -> None:
    with open_core(settings_for(ctx, data_dir, database)) as core:
        model = core.store.get_product(product_id)
    if model is None:
        raise CliError(t("cli.product.not_found", id=product_id))
    if json:
        typer.echo(orjson.dumps(model.to_doc(), option=orjson.OPT_INDENT_2).decode())
    else:
        show_model(model)
