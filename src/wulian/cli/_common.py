"""What every command shares: settings from flags, the core, error reporting, time formats."""

from __future__ import annotations

import contextlib
import functools
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from wulian.bootstrap import Core
from wulian.config import Settings
from wulian.domain.device import DeviceError
from wulian.domain.duration import duration_ms
from wulian.domain.thingmodel import ThingModelError
from wulian.errors import WulianError
from wulian.i18n import t
from wulian.pipeline.ingest import now_ms as now_ms  # re-exported for the commands
from wulian.ports import Conflict, NotFound, StorageUnavailable

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

P = ParamSpec("P")
R = TypeVar("R")

DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", help=t("cli.opt.data_dir"), show_default=False)]
DatabaseOpt = Annotated[str | None, typer.Option(
    "--database", help=t("cli.opt.database"), show_default=False)]


class CliError(Exception):
    """A failure to report in one translated line; `code` 2 for bad input, 1 otherwise."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class Globals:
    """Options given before the command (`wulian --data-dir X device list`)."""

    data_dir: Path | None = None
    database: str | None = None
    lang: str | None = None


def settings_for(ctx: typer.Context, data_dir: Path | None = None, database: str | None = None,
                 **overrides: Any) -> Settings:
    """Settings from WULIAN_* variables, then global flags, then the command's own flags."""
    g = ctx.find_root().obj
    g = g if isinstance(g, Globals) else Globals()
    values: dict[str, Any] = {}
    if data_dir or g.data_dir:
        values["data_dir"] = data_dir or g.data_dir
    if database or g.database:
        values["database"] = database or g.database
    if g.lang:
        values["lang"] = g.lang
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)


_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")


def redact(text: str) -> str:
    """Hide passwords in URLs a driver may echo in its error message."""
    return _URL_PASSWORD.sub(r"\1***@", text)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return redact(text[0] if text else type(exc).__name__)[:300]


@contextlib.contextmanager
def open_core(settings: Settings) -> Iterator[Core]:
    """The store and registry for management commands (closed afterwards)."""
    from wulian.bootstrap import build_core

    try:
        core = build_core(settings)
    except ValueError as exc:  # an unsupported or malformed database URL
        raise CliError(t("cli.error.database_url", detail=redact(str(exc))), 2) from None
    except OSError as exc:  # e.g. a data dir or SQLite file that cannot be created
        raise CliError(t("cli.error.database", detail=_first_line(exc)), 1) from None
    try:
        yield core
    finally:
        core.close()


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(t("cli.error.line", message=message), style="red", markup=False,
                      soft_wrap=True)
    raise typer.Exit(code)


def shown(text: str, limit: int | None = None) -> str:
    """Text that came from a device or a user, safe to put in a rich table or panel."""
    clean = "".join(c if c.isprintable() else "\ufffd" for c in text[:limit])
    return escape(clean) + ("…" if limit is not None and len(text) > limit else "")


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn the errors a person can act on into one translated line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CliError as exc:
            fail(exc.message, exc.code)
        except WulianError as exc:
            fail(exc.message(), exc.exit_code)
        except ThingModelError as exc:
            fail(t("cli.error.thing_model", path=exc.path, problem=exc.problem), 2)
        except DeviceError as exc:
            fail(t("cli.error.device_field", field=exc.field, problem=exc.problem), 2)
        except NotFound as exc:
            fail(t("cli.error.not_found", what=exc.args[0] if exc.args else "?"), 1)
        except Conflict as exc:
            fail(t("cli.error.conflict", detail=str(exc)), 1)
        except StorageUnavailable as exc:
            fail(t("cli.error.storage", detail=_first_line(exc)), 1)
        except Exception as exc:
            if _is_database_error(exc):
                fail(t("cli.error.database", detail=_first_line(exc)), 1)
            raise

    return wrapper


def _is_database_error(exc: Exception) -> bool:
    module = type(exc).__module__
    return module.startswith(("sqlalchemy", "psycopg", "sqlite3", "alembic"))


# --- time ------------------------------------------------------------------------------

def parse_duration(spec: str) -> int:
    """`30s`, `5m`, `1h`, `2d` ... in milliseconds; CliError otherwise."""
    ms = duration_ms(spec)
    if not ms:
        raise CliError(t("cli.error.bad_duration", value=spec), 2)
    return ms


def parse_time(spec: str, now: int | None = None) -> int:
    """A point in time: `1h` (ago), an ISO date-time (local unless it says), or epoch ms."""
    spec = spec.strip()
    now = now_ms() if now is None else now
    if spec.isdigit():
        return int(spec)
    if spec.lower() == "now":
        return now
    if duration_ms(spec) is not None:
        return now - parse_duration(spec)
    try:
        moment = datetime.fromisoformat(spec)
    except ValueError:
        raise CliError(t("cli.error.bad_time", value=spec), 2) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a bare date-time means the local clock
    return int(moment.timestamp() * 1000)


def fmt_time(ts_ms: int | None, *, iso: bool = False) -> str:
    if ts_ms is None:
        return "—"
    moment = datetime.fromtimestamp(ts_ms / 1000).astimezone()
    if iso:
        return moment.isoformat(timespec="milliseconds")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def fmt_ago(ts_ms: int | None, now: int | None = None) -> str:
    if ts_ms is None:
        return t("cli.never")
    seconds = max(0, ((now_ms() if now is None else now) - ts_ms) // 1000)
    if seconds < 90:
        return t("cli.ago.seconds", n=seconds)
    if seconds < 90 * 60:
        return t("cli.ago.minutes", n=seconds // 60)
    if seconds < 36 * 3600:
        return t("cli.ago.hours", n=seconds // 3600)
    return t("cli.ago.days", n=seconds // 86400)


def parse_tag(spec: str) -> tuple[str, str]:
    key, sep, value = spec.partition("=")
    if not sep or not key:
        raise CliError(t("cli.error.bad_tag", value=spec), 2)
    return key, value


def is_tty() -> bool:
    return sys.stdout.isatty()
