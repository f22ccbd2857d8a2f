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
