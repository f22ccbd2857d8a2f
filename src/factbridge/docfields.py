"""Reading one field of a stored JSON document, as every record's `from_doc` does: the
value may be missing, null or of another type (a document from before the field existed,
a partner's item), and each reader turns it into the field's type the same way. Declared
once here; the records modules import them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def text(value: Any) -> str:
    """A string; missing or null is ""."""
    return "" if value is None else str(value)


def opt_text(value: Any) -> str | None:
    """A string, or None when missing or null ("" stays "")."""
    return None if value is None else str(value)


def nonempty_text(value: Any) -> str | None:
    """A string, or None when missing, null or ""."""
    return str(value) if value not in (None, "") else None


def integer(value: Any) -> int:
    """An integer from a JSON number (booleans are not numbers); anything else is 0."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def number(value: Any) -> float | None:
    """A float from a JSON number or numeric string (booleans are not numbers); else None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def texts(value: Any) -> list[str]:
    """A list of strings; anything but a list is []."""
    return [str(v) for v in value] if isinstance(value, list | tuple) else []


def mapping(value: Any) -> dict[str, Any]:
    """A copy of an object (string keys, order kept); anything else is {}."""
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def counts(value: Any) -> dict[str, int]:
    """An object of counts (non-numeric entries dropped); anything else is {}."""
    return {str(k): int(v) for k, v in value.items() if isinstance(v, int | float)} if isinstance(value, Mapping) else {}
