"""HTTP for connectors: one user agent, time limits, conditional requests, and HTML to text."""

from __future__ import annotations

import html
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from factbridge import __version__

USER_AGENT = f"FactBridge/{__version__} (fact-checking; +https://github.com/factbridge)"
_TAG = re.compile(r"<[^>]+>")
_BREAK = re.compile(r"<\s*(br|/p|/div|/li)\s*/?>", re.I)


@dataclass
class Fetched:
    status: int
    body: bytes
    headers: dict[str, str]
    url: str


def fetch(url: str, *, user_agent: str = USER_AGENT, timeout: float = 15.0, headers: dict[str, str] | None = None,
          max_bytes: int = 20_000_000) -> Fetched:
    """GET `url`. A 304 comes back as status 304 with an empty body; other HTTP errors raise
    OSError subclasses (urllib.error.HTTPError) that the source run records."""
    request = urllib.request.Request(url, headers={"User-Agent": user_agent, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(max_bytes + 1)
            if len(body) > max_bytes:
                raise OSError(f"{url}: response larger than {max_bytes} bytes")
            return Fetched(response.status, body, {k.lower(): v for k, v in response.headers.items()}, response.geturl())
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return Fetched(304, b"", {k.lower(): v for k, v in exc.headers.items()}, url)
        raise


def html_to_text(value: str) -> str:
    text = _BREAK.sub("\n", value or "")
    text = html.unescape(_TAG.sub(" ", text))
    return re.sub(r"[ \t\r\f\v]+", " ", re.sub(r"\n\s*\n+", "\n", text)).strip()


def load_cursor(cursor: str | None) -> dict[str, Any]:
    if not cursor:
        return {}
    try:
        value = json.loads(cursor)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def dump_cursor(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)
