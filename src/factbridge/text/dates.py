"""Lenient date parsing for the many formats fact-check and post data use."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

_FORMATS = (
    "%d %B %Y", "%d %b %Y", "%B %d, %Y", "%b %d, %Y", "%Y-%m-%d", "%d/%m/%Y", "%Y/%m/%d",
    "%a %b %d %H:%M:%S %z %Y", "%Y-%m-%d %H:%M:%S", "%d.%m.%Y",
)


def parse_date(value: Any) -> datetime | None:
    """A datetime, or None when the value is empty. Raises ValueError on text that is no date."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, int | float):
        ts = float(value) / (1000 if value > 1e11 else 1)
        return datetime.fromtimestamp(ts, tz=UTC)
    text = str(value).strip()
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    for fmt in _FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ValueError(f"not a date: {text!r}")


def parse_date_lenient(value: Any) -> datetime | None:
    try:
        return parse_date(value)
    except ValueError:
        return None
