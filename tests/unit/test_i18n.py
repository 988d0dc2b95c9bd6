"""The catalogues and the translation layer.

The catalogue checks guard every key anyone adds: both languages, the same placeholders.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator
from importlib import resources

import pytest

from wulian import i18n
from wulian.domain.rejection import RejectCode, Rejection
from wulian.i18n import (
    LANGUAGES,
    catalogue,
    catalogue_files,
    current,
    from_accept_language,
    normalize,
    set_language,
    t,
)

LOCALE_VARS = ("WULIAN_LANG", "LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE")


def raw_catalogue(lang: str) -> dict[str, str]:
    """The files as written, refusing a key written twice (json.loads would keep the last)."""
    keys: list[str] = []
    data: dict[str, str] = {}
    for name in catalogue_files(lang):
        text = resources.files("wulian.locales").joinpath(name).read_text("utf-8")
        pairs: list[tuple[str, str]] = json.loads(text, object_pairs_hook=lambda p: p)
        keys.extend(k for k, _ in pairs)
        data.update(pairs)
    repeated = {k for k in keys if keys.count(k) > 1}
    assert not repeated, f"{lang} catalogue repeats {sorted(repeated)}"
    return data


def test_each_area_file_exists_in_both_languages() -> None:
    areas = {lang: {n.removesuffix(f".{lang}.json") for n in catalogue_files(lang)[1:]}
             for lang in LANGUAGES}
    assert areas["en"] == areas["zh"]


def placeholders(template: str) -> list[str]:
    """The `{fields}` of a template, in order (with repeats)."""
    return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]


# --- the catalogues ------------------------------------------------------------------------


def test_every_shipped_language_has_a_catalogue() -> None:
    assert set(LANGUAGES) == {"en", "zh"}
    for lang in LANGUAGES:
        assert raw_catalogue(lang) == catalogue(lang)


def test_both_catalogues_have_exactly_the_same_keys() -> None:
    en, zh = raw_catalogue("en"), raw_catalogue("zh")
    assert sorted(set(en) - set(zh)) == [], "keys missing from zh.json"
    assert sorted(set(zh) - set(en)) == [], "keys missing from en.json"


@pytest.mark.parametrize("key", sorted(raw_catalogue("en")))
def test_each_key_has_the_same_placeholders_in_both_languages(key: str) -> None:
    en, zh = raw_catalogue("en").get(key, ""), raw_catalogue("zh").get(key, "")
    assert sorted(set(placeholders(en))) == sorted(set(placeholders(zh))), key


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_message_is_a_well_formed_template(lang: str) -> None:
    for key, template in raw_catalogue(lang).items():
        assert isinstance(template, str) and template.strip(), f"{lang}:{key} is empty"
        for _, name, spec, conversion in string.Formatter().parse(template):
            if name is None:
                continue
            # plain `{name}` only: no positional `{}`/`{0}`, no attribute, index, spec or !r
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name), f"{lang}:{key} {{{name}}}"
            assert not spec and conversion is None, f"{lang}:{key} {{{name}}}"
        # and it renders (an unbalanced brace would raise here, and in production)
        template.format_map({name: "X" for name in placeholders(template)})


@pytest.mark.parametrize("code", list(RejectCode))
def test_every_reject_code_has_a_message_in_every_language(code: RejectCode) -> None:
    for lang in LANGUAGES:
        assert f"reject.{code.value}" in raw_catalogue(lang)


@pytest.mark.parametrize("key", sorted(k for k in raw_catalogue("en") if k.startswith("reject.")))
def test_chinese_reject_messages_are_translated(key: str) -> None:
    zh = raw_catalogue("zh")[key]
    assert re.search(r"[\u4e00-\u9fff]", zh), f"zh.json {key} is not Chinese: {zh!r}"
    assert zh != raw_catalogue("en")[key]


# --- choosing the language -----------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [
    ("zh", "zh"), ("zh-CN", "zh"), ("zh_CN", "zh"), ("zh-Hans-CN", "zh"), ("zh_CN.UTF-8", "zh"),
    ("ZH-cn", "zh"), ("en", "en"), ("en-US", "en"), ("en_GB.UTF-8", "en"), (" en ", "en"),
    ("en;q=0.8", "en"), ("fr", None), ("fr-FR", None), ("C", None), ("C.UTF-8", None),
    ("POSIX", None), ("*", None), ("", None), (None, None), ("english", None), ("z", None),
])
def test_normalize(given: str | None, expected: str | None) -> None:
    assert normalize(given) == expected


@pytest.mark.parametrize(("header", "expected"), [
    ("zh-CN,zh;q=0.9,en;q=0.8", "zh"),
    ("en-US", "en"),
    ("en-US,en;q=0.9", "en"),
    ("fr", None),
    ("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5", "en"),
    ("de, zh-TW;q=0.3", "zh"),
    ("en;q=0.5, zh;q=0.9", "zh"),  # the weight decides, not the order
    ("zh;q=0, en", "en"),  # q=0 means "not this one"
    ("zh;q=0", None),
    ("en;q=0.5, zh;q=0.5", "en"),  # equal weights: the first one listed
    ("zh ; q=0.4 , en ; q=0.2", "zh"),
    ("zh;q=bogus, en;q=0.1", "en"),
    ("*", None),
    ("", None),
    (None, None),
])
def test_from_accept_language(header: str | None, expected: str | None) -> None:
    assert from_accept_language(header) == expected


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for var in LOCALE_VARS:
        monkeypatch.delenv(var, raising=False)
    set_language(None)
    yield monkeypatch
    set_language(None)


def test_english_by_default(clean_env: pytest.MonkeyPatch) -> None:
    assert current() == "en"


def test_wulian_lang_is_respected(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("WULIAN_LANG", "zh")
    assert current() == "zh"
    assert t("reject.bad_credentials") == "设备 ID 或密钥错误"
    clean_env.setenv("LANG", "zh_CN.UTF-8")
    clean_env.setenv("WULIAN_LANG", "en")
    assert current() == "en"  # over the locale
    clean_env.setenv("WULIAN_LANG", "fr")
    assert current() == "zh"  # not shipped: the locale decides


def test_the_locale_is_used_without_wulian_lang(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LANG", "zh_CN.UTF-8")
    assert current() == "zh"
    clean_env.setenv("LC_ALL", "C.UTF-8")  # LC_ALL wins over LANG, as in POSIX
    assert current() == "en"
    clean_env.setenv("LC_ALL", "")  # set but empty counts as unset
    assert current() == "zh"


def test_set_language_overrides_everything(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("WULIAN_LANG", "en")
    set_language("zh-CN")
    assert current() == "zh"
    set_language(None)
    assert current() == "en"


# --- translating ---------------------------------------------------------------------------


def test_params_are_filled(clean_env: pytest.MonkeyPatch) -> None:
    assert t("reject.unknown_device", "en", device="d1") == "device 'd1' is not registered"
    assert t("reject.unknown_device", "zh", device="d1") == "设备“d1”未注册"
    assert t("reject.unknown_device", "zh-CN", device="d1") == "设备“d1”未注册"


def test_a_missing_param_renders_as_its_name(clean_env: pytest.MonkeyPatch) -> None:
    assert t("reject.out_of_range", "en", value=5) == (
        "value 5 is outside the allowed range [{min}, {max}]")
    assert t("reject.unknown_device", "zh") == "设备“{device}”未注册"


def test_none_renders_as_a_dash(clean_env: pytest.MonkeyPatch) -> None:
    assert t("reject.out_of_range", "en", value=5, min=None, max=10) == (
        "value 5 is outside the allowed range [—, 10]")


def test_braces_in_values_are_not_reinterpreted(clean_env: pytest.MonkeyPatch) -> None:
    assert t("reject.unknown_property", "en", name="{max}") == (
        "property '{max}' is not in the product's thing model")


def test_unknown_language_falls_back_to_the_current_one(clean_env: pytest.MonkeyPatch) -> None:
    assert t("reject.bad_credentials", "fr") == "device id or secret is wrong"
    clean_env.setenv("WULIAN_LANG", "zh")
    assert t("reject.bad_credentials", "fr") == "设备 ID 或密钥错误"


def test_an_unknown_key_is_shown_as_is(clean_env: pytest.MonkeyPatch) -> None:
    assert t("no.such.key", "zh") == "no.such.key"


def test_a_key_missing_in_one_language_falls_back_to_english(
        clean_env: pytest.MonkeyPatch) -> None:
    fake = {"en": {"only.english": "hello {who}"}, "zh": {}}
    clean_env.setattr(i18n, "catalogue", lambda lang: fake[lang])
    assert t("only.english", "zh", who="you") == "hello you"


def test_rejection_message_and_body() -> None:
    rej = Rejection(RejectCode.WRONG_TYPE, "$[1].temperature", {"expected": "float",
                                                                "got": "string"})
    assert rej.message("en") == "expected float, got string ($[1].temperature)"
    assert rej.message("zh") == "类型错误：应为 float，实际为 string ($[1].temperature)"
    assert rej.to_dict("en") == {"code": "wrong_type", "path": "$[1].temperature",
                                 "message": "expected float, got string ($[1].temperature)"}
    assert Rejection(RejectCode.OVERLOADED).to_dict("en") == {
        "code": "overloaded", "message": "the platform is overloaded; retry later"}
