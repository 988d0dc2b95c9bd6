"""`wulian serve` and `wulian broker-config`: run the platform, or prepare Mosquitto for it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.panel import Panel

from wulian.cli._common import (
    CliError,
    DatabaseOpt,
    DataDirOpt,
    console,
    guarded,
    settings_for,
)
from wulian.config import Settings
from wulian.i18n import t
from wulian.netutil import pick_port

if TYPE_CHECKING:
    from wulian.service import Ready


def console_lines(ready: Ready, settings: Settings) -> list[str]:
    """The console's address, and its first admin's password when just made."""
    path = settings.secret_file("console-admin.password").resolve()
    lines = [f"{t('cli.ready.console')}: {ready.http_url}/"]
    if ready.console_password:
        lines += [f"{t('cli.ready.console_login')}: admin / "
                  f"[bold yellow]{ready.console_password}[/]",
                  t("cli.ready.console_password_new", path=path)]
    return lines


def token_lines(ready: Ready, settings: Settings) -> list[str]:
    """Where the admin token is: shown when just made, else where it is kept."""
    if ready.admin_token_created:
        return [f"{t('cli.ready.token')}: [bold yellow]{ready.admin_token}[/]",
                t("cli.ready.token_new", path=settings.secret_file("admin.token").resolve())]
    if settings.admin_token:
        return [t("cli.ready.token_env")]
    return [t("cli.ready.token_kept", path=settings.secret_file("admin.token").resolve())]


def stopped(summary: dict[str, int] | None) -> str:
    """The line `serve` and `demo` stop with: what the device transport handled, if known."""
    return t("cli.stopped_summary", None, **summary) if summary else t("cli.stopped")


def run_service(settings: Settings, on_ready: Callable[[Ready], None],
                stop: threading.Event | None = None) -> dict[str, int] | None:
    """`service.serve`, with its start-up failures as one translated line."""
    from wulian.access.worker_life import StaleWorkers
    from wulian.netutil import PortInUse
    from wulian.service import serve

    if not logging.getLogger().handlers:
        # the shutdown summary (and warnings) on stderr, as the ingest workers log theirs
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
        logging.getLogger("wulian.service").setLevel(logging.INFO)
    try:
        return serve(settings, on_ready=on_ready, stop=stop)
    except PortInUse as exc:
        raise CliError(f"{exc} {t('cli.serve.port_hint')}") from None
    except StaleWorkers as exc:
        raise CliError(str(exc)) from None
    except KeyboardInterrupt:
        return None  # Ctrl-C: the service has already shut down cleanly


def serve(ctx: typer.Context, data_dir: DataDirOpt = None, database: DatabaseOpt = None,
          http_host: Annotated[str | None, typer.Option(help=t("cli.serve.http_host"))] = None,
          http_port: Annotated[int | None, typer.Option(help=t("cli.serve.http_port"))] = None,
          mqtt_port: Annotated[int | None, typer.Option(help=t("cli.serve.mqtt_port"))] = None,
          broker: Annotated[str | None, typer.Option(help=t("cli.serve.broker"))] = None,
          workers: Annotated[int | None, typer.Option(min=0, help=t("cli.serve.workers"))] = None,
          ) -> None:
    settings = settings_for(ctx, data_dir, database, http_host=http_host, http_port=http_port,
                            mqtt_port=mqtt_port, broker=broker, ingest_workers=workers)
    # Port 0 asks for any free port, handy next to a system Mosquitto on 1883.
    if settings.http_port == 0:
        settings.http_port = pick_port(0, settings.http_host)
    if settings.mqtt_port == 0 and settings.embedded_broker:
        settings.mqtt_port = pick_port(0, settings.mqtt_host, avoid={settings.http_port})

    def on_ready(ready: Ready) -> None:
        lines = [f"{t('cli.ready.api')}: {ready.http_url}/api/v1",
                 f"{t('cli.ready.docs')}: {ready.http_url}/docs",
                 f"{t('cli.ready.mqtt')}: mqtt://{ready.mqtt_host}:{ready.mqtt_port}",
                 f"{t('cli.ready.data')}: {settings.data_dir.resolve()}",
                 *console_lines(ready, settings), *token_lines(ready, settings), "",
                 t("cli.ready.stop")]
        console.print(Panel("\n".join(lines), title=t("cli.serve.title"), expand=False))

    summary = run_service(settings, on_ready)
    console.print(stopped(summary))


def broker_config(ctx: typer.Context,
                  directory: Annotated[Path, typer.Argument(metavar="DIR",
                                                            help=t("cli.broker.dir"))],
                  port: Annotated[int, typer.Option(help=t("cli.broker.port"))] = 1883,
                  data_dir: DataDirOpt = None) -> None:
    from wulian.access.mosquitto import write_broker_files
    from wulian.access.mqtt_ingest import PLATFORM_SECRET, PLATFORM_USER

    settings = settings_for(ctx, data_dir)
    # The platform logs in to Mosquitto with the secret it keeps in its own data dir.
    password, _ = settings.ensure_secret(PLATFORM_SECRET)
    try:
        conf = write_broker_files(directory, port, PLATFORM_USER, password)
    except OSError as exc:
        raise CliError(t("cli.error.write_file", path=directory,
                         detail=exc.strerror or exc)) from None
    url = f"mqtt://127.0.0.1:{port}"
    lines = [t("cli.broker.written", path=conf.resolve()), "",
             t("cli.broker.start"), f"  mosquitto -c {conf.resolve()}", "",
             t("cli.broker.then"),
             f"  wulian --data-dir {settings.data_dir} serve --broker {url}", "",
             t("cli.broker.login", user=PLATFORM_USER,
               path=settings.secret_file(PLATFORM_SECRET).resolve())]
    console.print(Panel("\n".join(lines), title=t("cli.broker.title"), expand=False))


def register(app: typer.Typer) -> None:
    app.command("serve", help=t("cli.serve.help"))(guarded(serve))
    app.command("broker-config", help=t("cli.broker.help"))(guarded(broker_config))
