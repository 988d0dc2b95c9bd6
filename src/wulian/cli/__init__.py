"""The `wulian` command: run the platform, manage products and devices, look at the data.

The command tree is built on first use (`app`), after `--lang` is known, because typer
takes its help texts when commands are declared (the root options' annotations are
evaluated later, in this module's globals: hence `t` imported here).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from wulian.i18n import LANGUAGES, normalize, set_language, t

if TYPE_CHECKING:
    app: typer.Typer


@cache
def build_app() -> typer.Typer:
    """The typer application, with help texts in the language now in force."""
    from wulian.cli import (
        audit,
        data,
        demo,
        devices,
        products,
        quotas,
        rules,
        scenarios,
        server,
        user,
    )
    from wulian.cli._common import Globals, fail

    def root_callback(
            ctx: typer.Context,
            lang: Annotated[str | None, typer.Option(
                "--lang", metavar="zh|en", help=t("cli.opt.lang"))] = None,
            data_dir: Annotated[Path | None, typer.Option(
                "--data-dir", show_default=False, help=t("cli.opt.data_dir"))] = None,
            database: Annotated[str | None, typer.Option(
                "--database", show_default=False, help=t("cli.opt.database"))] = None,
    ) -> None:
        if lang is not None:
            if normalize(lang) is None:
                fail(t("cli.error.bad_lang", name=lang, allowed=", ".join(LANGUAGES)), 2)
            set_language(lang)
        ctx.obj = Globals(data_dir=data_dir, database=database, lang=lang)


    root = typer.Typer(name="wulian", help=t("cli.help"), no_args_is_help=True,
                       add_completion=False,
                       pretty_exceptions_show_locals=False,  # locals may hold secrets
                       context_settings={"help_option_names": ["-h", "--help"]})
    root.callback()(root_callback)
    server.register(root)
    demo.register(root)
    root.add_typer(products.app, name="product")
    root.add_typer(devices.app, name="device")
    root.add_typer(scenarios.app, name="scenario")
    root.add_typer(rules.rule_app, name="rule")
    root.add_typer(rules.alarm_app, name="alarm")
    root.add_typer(user.app, name="user")
    root.add_typer(audit.app, name="audit")
    root.add_typer(quotas.app, name="quota")
    data.register(root)
    return root


def _lang_from_argv(argv: Sequence[str]) -> str | None:
    for k, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--lang" and k + 1 < len(argv):
            return argv[k + 1]
        if arg.startswith("--lang="):
            return arg.split("=", 1)[1]
    return None


def main(argv: Sequence[str] | None = None) -> Any:
    """Entry point of the `wulian` script."""
    args = list(sys.argv[1:] if argv is None else argv)
    lang = _lang_from_argv(args)
    if lang:
        set_language(lang)  # before the help texts are taken
    return build_app()(args=args, prog_name="wulian")


def __getattr__(name: str) -> Any:
    if name == "app":
        return build_app()
    raise AttributeError(name)


__all__ = ["app", "build_app", "main"]
