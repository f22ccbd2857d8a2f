"""Interface languages: English, Vietnamese, Khmer and French.

Catalogs are JSON files in web/locales (one per language, same keys; a test
checks that every key exists in every language). The language comes from
`?lang=` (remembered in a cookie), else the cookie, else Accept-Language,
else English.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib.resources import files
from typing import Any

LANGUAGES: dict[str, str] = {"en": "English", "vi": "Tiếng Việt", "km": "ខ្មែរ", "fr": "Français"}
DEFAULT = "en"
LANG_COOKIE = "fb_lang"


@cache
def catalog(lang: str) -> dict[str, str]:
    root = files("factbridge.web") / "locales"
    data: dict[str, str] = json.loads((root / f"{lang}.json").read_text(encoding="utf-8"))
    # One sub-catalog per part of the workspace (locales/<part>/<lang>.json): separate files merge cleanly.
    for part in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name):
        extra = part / f"{lang}.json"
        if extra.is_file():
            data.update(json.loads(extra.read_text(encoding="utf-8")))
    return data


def translator(lang: str) -> Callable[..., str]:
    own = catalog(lang if lang in LANGUAGES else DEFAULT)
    fallback = catalog(DEFAULT)

    def t(key: str, **values: Any) -> str:
        text = own.get(key) or fallback.get(key) or key
        return text.format(**values) if values else text

    return t


def pick_language(query: str | None, cookie: str | None, accept: str | None) -> str:
    for candidate in (query, cookie):
        if candidate in LANGUAGES:
            return candidate
    for part in (accept or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT


def page_language(request: Any) -> str:
    """The interface language of a request (as `render` picks it)."""
    return pick_language(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))
