"""The one translation layer: every text a person reads goes through `t`.

Catalogues are JSON files in `wulian/locales/` (`en.json`, `zh.json`), one flat key space.
The language comes from an explicit argument, else `WULIAN_LANG`, else the locale
(`LC_ALL`/`LANG` starting with `zh` means Simplified Chinese), else English.
"""

from __future__ import annotations

import json
import os
from functools import cache
from importlib import resources
from typing import Any

LANGUAGES = ("zh", "en")
DEFAULT = "en"
_override: str | None = None


def normalize(lang: str | None) -> str | None:
    """Map `zh-CN`, `zh_Hans`, `en-US`, 'en;q=0.8' ... to a shipped language, or None."""
    if not lang:
        return None
    code = lang.strip().split(";")[0].split(",")[0].replace("_", "-").lower()
    base = code.split("-")[0]
    return base if base in LANGUAGES else None


def set_language(lang: str | None) -> None:
    """Set the process-wide language (the CLI's `--lang`)."""
    global _override
    _override = normalize(lang)


def from_accept_language(header: str | None) -> str | None:
    """The first shipped language in an HTTP Accept-Language header, or None."""
    for part in (header or "").split(","):
        lang = normalize(part)
        if lang:
            return lang
    return None


def current() -> str:
    """The language in force for this process."""
    if _override:
        return _override
    for var in ("WULIAN_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        lang = normalize(os.environ.get(var))
        if lang:
            return lang
    return DEFAULT


@cache
def catalogue(lang: str) -> dict[str, str]:
    """The messages of one language."""
    text = resources.files("wulian.locales").joinpath(f"{lang}.json").read_text("utf-8")
    data: dict[str, str] = json.loads(text)
    return data


class _Params(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def t(key: str, lang: str | None = None, **params: Any) -> str:
    """Translate `key` into `lang` (or the current language), filling `{name}` params."""
    chosen = normalize(lang) or current()
    template = catalogue(chosen).get(key) or catalogue(DEFAULT).get(key) or key
    clean = {k: ("—" if v is None else v) for k, v in params.items()}
    return template.format_map(_Params(clean))
