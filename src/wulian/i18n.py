"""The one translation layer: every text a person reads goes through `t`.

Catalogues are JSON files in `wulian/locales/`: `en.json`/`zh.json` and, per area,
`{area}.en.json`/`{area}.zh.json` (e.g. `console.zh.json`); all of one language form one
flat key space, and no key may be defined in two files.
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
    """The shipped language the client prefers most in an Accept-Language header, or None.

    Preference is the `q` weight (RFC 9110 §12.5.4), then order; `q=0` means "not this".
    """
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "").split(",")):
        tag, _, params = part.partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0  # a malformed weight is no preference
        lang = normalize(tag)
        if lang and 0.0 < weight <= 1.0:
            ranked.append((-weight, index, lang))
    return min(ranked)[2] if ranked else None


def current() -> str:
    """The language in force for this process."""
    if _override:
        return _override
    lang = normalize(os.environ.get("WULIAN_LANG"))
    if lang:
        return lang
    # POSIX precedence: the first locale variable that is set decides (LC_ALL=C over LANG=zh).
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var)
        if value:
            return normalize(value) or DEFAULT
    return DEFAULT


def catalogue_files(lang: str) -> list[str]:
    """The names of the files that make up one language's catalogue, main file first."""
    names = sorted(entry.name for entry in resources.files("wulian.locales").iterdir()
                   if entry.name.endswith(f".{lang}.json"))
    return [f"{lang}.json", *names]


@cache
def catalogue(lang: str) -> dict[str, str]:
    """The messages of one language."""
    data: dict[str, str] = {}
    for name in catalogue_files(lang):
        text = resources.files("wulian.locales").joinpath(name).read_text("utf-8")
        part: dict[str, str] = json.loads(text)
        clash = sorted(data.keys() & part.keys())
        if clash:
            raise ValueError(f"locale file {name} repeats keys defined elsewhere: {clash[:5]}")
        data.update(part)
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
