"""Functions the templates call (registered as Jinja globals by `build_state`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from factbridge.web.security import safe_next
from factbridge.workflow.ratings import rating_label


def back_path(request: Any) -> str:
    """Where to come back after signing in again: the page itself for a GET, the page the
    form was on (the Referer, same site only) for a POST."""
    if request.method == "GET":
        return safe_next(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc and referer.netloc != request.url.netloc:
        return "/"
    return safe_next(referer.path + (f"?{referer.query}" if referer.query else ""))


def template_globals() -> dict[str, Any]:
    return {"rating_label": rating_label, "back_path": back_path}


def signed_out_page(headers: Any) -> bytes:
    """The page a form gets when its session ended before it was sent (the request limits
    refuse the body before any route runs): in the reader's language, with a sign-in link
    back to the form's page, where app.js puts back what was typed."""
    from html import escape
    from urllib.parse import quote

    from factbridge.web import i18n

    cookies = {k.strip(): v for k, _, v in (part.partition("=") for part in headers.get("cookie", "").split(";")) if k.strip()}
    lang = i18n.pick_language(None, cookies.get(i18n.LANG_COOKIE), headers.get("accept-language"))
    t = i18n.translator(lang)
    referer = urlsplit(headers.get("referer", ""))
    same_site = referer.netloc and referer.netloc == headers.get("host", "")
    back = safe_next(referer.path + (f"?{referer.query}" if referer.query else "")) if same_site else "/"
    page = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>401 · FactBridge</title><link rel="stylesheet" href="/static/style.css"><script src="/static/app.js" defer></script></head>'
        f'<body><header class="top"><span class="brand">FactBridge</span></header><main><section class="card error">'
        f'<h1>401 · {escape(t("error.401"))}</h1><p class="explain">{escape(t("error.401_text"))}</p>'
        f'<p><a href="/login?next={quote(back, safe="")}" id="sign-in-again">{escape(t("error.sign_in"))}</a></p>'
        f'</section></main></body></html>'
    )
    return page.encode("utf-8")
