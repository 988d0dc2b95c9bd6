"""`wulian scenario …`: the twelve industry templates, their products and default rules."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from wulian import scenarios
from wulian.cli._common import CliError, console, guarded, shown
from wulian.cli.products import fields_table
from wulian.i18n import t

app = typer.Typer(help=t("cli.scenario.help"), no_args_is_help=True)


@app.command("list", help=t("cli.scenario.list.help"))
@guarded
def list_() -> None:
    table = Table()
    # Ids are what the user types next: never cropped, even on a narrow terminal.
    table.add_column(t("cli.col.id"), no_wrap=True)
    table.add_column(t("cli.col.field"), min_width=8)
    table.add_column(t("cli.col.name"), min_width=8, overflow="fold")
    table.add_column(t("cli.col.products"), overflow="fold")
    table.add_column(t("cli.col.rules"), justify="right")
    for s in scenarios.all_scenarios():
        table.add_row(s.id, t(f"scenario.field.{s.field}"), shown(s.name()),
                      "\n".join(p.id for p in s.products), str(len(s.default_rules)))
    console.print(table)


def _condition(rule: dict[str, Any]) -> str:
    cond = rule.get("condition", {})
    if cond.get("type") == "event":
        return f"event {cond.get('event')}"
    return f"{cond.get('property')} {cond.get('op')} {cond.get('value')}"


@app.command("show", help=t("cli.scenario.show.help"))
@guarded
def show(name: Annotated[str, typer.Argument(metavar="NAME",
                                             help=t("cli.scenario.show.name"))]) -> None:
    try:
        s = scenarios.get(name)
    except KeyError:
        raise CliError(t("cli.scenario.not_found", name=name,
                         names=", ".join(scenarios.REGISTRY)), 2) from None
    console.print(f"[bold]{s.id}[/]  {shown(s.name())}  ({t(f'scenario.field.{s.field}')})")
    console.print(shown(s.description()))
    console.print(t("cli.scenario.area", city=s.area.city, district=s.area.district,
                    lat=f"{s.area.lat[0]:g}…{s.area.lat[1]:g}",
                    lon=f"{s.area.lon[0]:g}…{s.area.lon[1]:g}"))
    for sp in s.products:
        model = sp.product.model
        console.print()
        console.print(t("cli.scenario.product", id=f"[bold]{model.id}[/]",
                        name=shown(model.name), devices=sp.devices))
        console.print(fields_table(t("cli.product.properties"), model.properties))
    rules = Table(t("cli.col.id"), t("cli.col.product"), t("cli.col.condition"),
                  t("cli.col.for"), t("cli.col.severity"), title=t("cli.scenario.rules"),
                  title_justify="left")
    for rule in s.default_rules:
        rules.add_row(str(rule["id"]), str(rule["product"]), shown(_condition(rule)),
                      str(rule.get("for", "")), str(rule["severity"]))
    console.print(rules)
