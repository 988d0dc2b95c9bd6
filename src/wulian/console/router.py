"""Serve the web console: one HTML shell, versioned static assets, and its messages.

The console is plain files shipped in the package (HTML, ES modules, CSS and vendored
libraries): `pip install wulian` is the whole install, with no Node step. The shell is
answered at `/` with `no-cache`; every other file lives under `/static/<content hash>/`,
so the browser may keep it for a year and a new release (a new hash) is fetched at once.
ES modules import each other by relative path, so they inherit the versioned prefix.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.middleware.gzip import GZipMiddleware
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from wulian.i18n import LANGUAGES, catalogue

STATIC_DIR = Path(__file__).resolve().parent / "static"
PREFIX = "console."
NO_CACHE = {"Cache-Control": "no-cache"}
IMMUTABLE = "public, max-age=31536000, immutable"
# Everything the console loads comes from this origin: no CDN, no tile server, no fonts.
# Inline styles stay allowed because Leaflet and uPlot position their elements with them.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")

router = APIRouter(include_in_schema=False)


@cache
def asset_version() -> str:
    """A short hash of every static file: changes whenever any asset does."""
    digest = hashlib.sha256()
    for path in sorted(p for p in STATIC_DIR.rglob("*") if p.is_file()):
        digest.update(path.relative_to(STATIC_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def static_prefix() -> str:
    return f"/static/{asset_version()}"


@cache
def _shell() -> str:
    html = (STATIC_DIR / "index.html").read_text("utf-8")
    return html.replace("{{STATIC}}", static_prefix())


@cache
def console_messages(lang: str) -> dict[str, str]:
    """The console's messages in `lang`, keys without the `console.` prefix.

    Every `console.` key of the merged catalogue, whichever locale file defines it
    (`console.{lang}.json`, `dashboards.{lang}.json`, ...): a page's texts may live with
    the work that added the page.
    """
    return {k.removeprefix(PREFIX): v for k, v in catalogue(lang).items()
            if k.startswith(PREFIX)}


@router.get("/")
def index() -> HTMLResponse:
    """The single-page console (views are hash routes: #/overview, #/devices/…)."""
    return HTMLResponse(_shell(), headers={
        **NO_CACHE, "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin"})


@router.get("/console")
def console_alias() -> RedirectResponse:
    return RedirectResponse("/", status_code=308)


@router.get("/console/i18n/{lang}.json")
def messages(lang: str) -> Response:
    """The console's messages for `zh` or `en` (anything else gets English)."""
    chosen = lang if lang in LANGUAGES else "en"
    return JSONResponse(console_messages(chosen), headers=NO_CACHE)


class _VersionedStatic(StaticFiles):
    """Static files under a content-hashed prefix: cacheable for a year."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = IMMUTABLE
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def mount_console(app: FastAPI) -> None:
    """Serve the console on `app`: `/`, `/console/i18n/{lang}.json`, `/static/<hash>/…`."""
    app.include_router(router)
    # the world map's outlines are 0.75 MB of JSON that compress to a fifth
    app.mount(static_prefix(), GZipMiddleware(_VersionedStatic(directory=STATIC_DIR),
                                              minimum_size=1024), name="console-static")
