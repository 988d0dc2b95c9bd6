"""The console's static files: every message they name exists in both languages, every
module they import exists, and nothing they load at runtime lives on another host."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pytest

from wulian.console.router import STATIC_DIR, console_messages
from wulian.i18n import catalogue

OWN = sorted(p for p in STATIC_DIR.rglob("*") if p.is_file() and "vendor" not in p.parts)
SCRIPTS = [p for p in OWN if p.suffix == ".js"]
VENDOR = STATIC_DIR / "vendor"
# Runtime files: what a browser may load. READMEs and licences are for people.
RUNTIME = sorted(p for p in STATIC_DIR.rglob("*") if p.is_file()
                 and p.suffix in (".js", ".css", ".html", ".json", ".svg"))

# t("key") or t('key') in scripts; data-i18n="key" (and -placeholder/-title/-aria-label)
# in markup, whether in HTML files or in scripts that build it.
T_CALL = re.compile(r"""\bt\(\s*(["'])([^"'`]+)\1""")
T_TEMPLATE = re.compile(r"\bt\(\s*`")
DATA_I18N = re.compile(r"""data-i18n(?:-[a-z-]+)?\s*=\s*["']([^"']+)["']""")
URL = re.compile(r"""https?://[^\s"'`)<>]*""")
# URLs in runtime code that are never fetched: the SVG XML namespace, and Leaflet's
# attribution link (a link text; the console turns the attribution control off anyway).
NOT_FETCHED = {"http://www.w3.org/2000/svg", "https://leafletjs.com"}
BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
LINE_COMMENT = re.compile(r"^\s*//.*$", re.M)  # whole-line only: "http://" in strings stays


def code_only(path: Path) -> str:
    """The file without comments (licence banners, bug links), where comments exist."""
    text = path.read_text("utf-8")
    if path.suffix in (".js", ".css"):
        text = BLOCK_COMMENT.sub("", text)
    if path.suffix == ".js":
        text = LINE_COMMENT.sub("", text)
    return text


def used_keys() -> dict[str, set[str]]:
    """Message key → the files that use it."""
    found: dict[str, set[str]] = {}
    for path in OWN:
        if path.suffix not in (".js", ".html"):
            continue
        source = path.read_text("utf-8")
        keys = [m.group(2) for m in T_CALL.finditer(source)]
        keys += DATA_I18N.findall(source)
        for key in keys:
            found.setdefault(key, set()).add(path.relative_to(STATIC_DIR).as_posix())
    return found


def test_the_scripts_use_messages_at_all() -> None:
    keys = used_keys()
    assert len(keys) > 100 and "login.title" in keys and "nav.overview" in keys


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_message_the_console_uses_exists(lang: str) -> None:
    messages = console_messages(lang)
    missing = {key: sorted(files) for key, files in used_keys().items() if key not in messages}
    assert missing == {}, f"the {lang} catalogue lacks these console. keys"


def test_no_message_key_is_built_at_runtime() -> None:
    # t(`severity.${s}`) could not be checked above; the scripts spell every key out
    offenders = [p.name for p in SCRIPTS if T_TEMPLATE.search(p.read_text("utf-8"))]
    assert offenders == []


def console_keys(lang: str) -> dict[str, str]:
    """Every `console.` message of the merged catalogue, whichever locale file holds it."""
    return {k: v for k, v in catalogue(lang).items() if k.startswith("console.")}


def test_both_languages_have_the_same_console_keys() -> None:
    en, zh = console_keys("en"), console_keys("zh")
    assert sorted(en) == sorted(zh)
    untranslated = [k for k in en if en[k] == zh[k] and re.search(r"[A-Za-z]{4}", en[k])
                    and k not in ("console.language.en", "console.language.zh")]
    assert untranslated == []


def test_the_console_is_served_every_console_key_of_the_catalogue() -> None:
    # console.*.json and the other areas' files (dashboards.*.json) alike
    for lang in ("en", "zh"):
        assert console_messages(lang) == {k.removeprefix("console."): v
                                          for k, v in console_keys(lang).items()}
    assert "nav.scenarios" in console_messages("zh")


@pytest.mark.parametrize("area", ["console", "dashboards"])
def test_console_locale_files_hold_only_console_keys(area: str) -> None:
    files = resources.files("wulian.locales")
    for lang in ("en", "zh"):
        doc = json.loads(files.joinpath(f"{area}.{lang}.json").read_text("utf-8"))
        assert doc and all(key.startswith("console.") for key in doc)


@pytest.mark.parametrize("path", RUNTIME, ids=lambda p: p.relative_to(STATIC_DIR).as_posix())
def test_nothing_loaded_at_runtime_points_off_the_origin(path: Path) -> None:
    text = code_only(path)
    urls = {u.rstrip(".,;") for u in URL.findall(text)} - NOT_FETCHED
    assert urls == set(), f"{path.name} names another host"
    # nor a protocol-relative one ("//tiles.example/{z}/{x}/{y}.png")
    assert not re.search(r"""["'`(]//[a-z0-9-]+\.[a-z]""", text), path.name


def test_the_map_draws_no_tiles() -> None:
    source = (STATIC_DIR / "pages" / "map.js").read_text("utf-8")
    assert "tileLayer" not in source and "countries-50m.json" in (
        STATIC_DIR / "vendor.js").read_text("utf-8")


def test_every_relative_import_and_asset_exists() -> None:
    imports = re.compile(r"""(?:import\s[^"']*?from\s*|import\(\s*)["'](\.{1,2}/[^"']+)["']""")
    vendor = re.compile(r"""(?:loadScript|loadStyle|vendorUrl)\(\s*["']([^"']+)["']""")
    for script in SCRIPTS:
        source = script.read_text("utf-8")
        for target in imports.findall(source):
            assert (script.parent / target).resolve().is_file(), f"{script.name}: {target}"
        for target in vendor.findall(source):
            assert (VENDOR / target).is_file(), f"{script.name}: vendor/{target}"
    shell = (STATIC_DIR / "index.html").read_text("utf-8")
    for target in re.findall(r'(?:href|src)="\{\{STATIC\}\}/([^"]+)"', shell):
        assert (STATIC_DIR / target).is_file(), target


def test_vendored_libraries_say_where_they_came_from() -> None:
    readme = (VENDOR / "README.md").read_text("utf-8")
    for folder in ("uplot", "leaflet", "topojson-client", "world-atlas"):
        assert (VENDOR / folder / "LICENSE").is_file()
        assert f"`{folder}/`" in readme
    assert "1.9.4" in readme  # Leaflet's version, as decided
