"""Translations of the portal's text (SPEC ADM-5) with gettext catalogs and Jinja2's i18n
extension.

Catalogs are `locale/<language>/LC_MESSAGES/messages.po` beside this file; they are compiled in
memory at start-up with Babel (no build step). Templates mark text with `{{ _("…") }}` or
`{% trans %}…{% endtrans %}`; the language of a page is the `lang` variable of its context
(`page_context` sets it from the user's preferences; the sign-in page from the language cookie or
the browser's Accept-Language). `make i18n` extracts new messages and updates the catalogs."""

from __future__ import annotations

import gettext
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from jinja2 import Environment, pass_context
from jinja2.runtime import Context

from cryovault.preferences import DEFAULT_LANGUAGE, LANGUAGES

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
LANGUAGE_COOKIE = "cryovault_lang"


def _compile(language: str) -> gettext.NullTranslations:
    po = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not po.exists():
        return gettext.NullTranslations()
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    buffer = BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


CATALOGS: dict[str, gettext.NullTranslations] = {code: _compile(code) for code in LANGUAGES}


def translations(language: str | None) -> gettext.NullTranslations:
    return CATALOGS.get(language or DEFAULT_LANGUAGE, CATALOGS[DEFAULT_LANGUAGE])


def translate(language: str | None, message: str) -> str:
    return translations(language).gettext(message)


@pass_context
def _gettext(context: Context, message: str) -> str:
    return translations(context.get("lang")).gettext(message)


@pass_context
def _ngettext(context: Context, singular: str, plural: str, n: int) -> str:
    return translations(context.get("lang")).ngettext(singular, plural, n)


def install(env: Environment) -> None:
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(gettext=_gettext, ngettext=_ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.globals["LANGUAGES"] = LANGUAGES


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The sign-in page's language: the cookie set at the last sign-in or preference change,
    else the best of the browser's languages, else English."""
    if cookie in LANGUAGES:
        return cookie  # type: ignore[return-value]
    ranked: list[tuple[float, str]] = []
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        code = tag.strip().lower().split("-")[0]
        if code in LANGUAGES and quality > 0:
            ranked.append((quality, code))
    ranked.sort(key=lambda item: -item[0])
    return ranked[0][1] if ranked else DEFAULT_LANGUAGE
