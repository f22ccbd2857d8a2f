"""Canonical JSON for signatures.

The bytes signed are the UTF-8 of the JSON with keys sorted, no insignificant whitespace and
non-ASCII characters kept as they are, as RFC 8785 (JCS) writes them. Numbers are restricted
so that every implementation writes them alike: integers, and floats that are whole numbers
are written as integers (JCS writes 1.0 as 1); other floats are refused (none of our fields
needs one), so no two serialisers can disagree about a signature.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from factbridge.errors import InputError


def _normalise(value: Any, path: str) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        raise InputError(f"{value!r} is not an integer; signed items carry integers only", field=path or "value")
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise InputError(f"object key {key!r} is not a string", field=path or "value")
        return {k: _normalise(v, f"{path}.{k}" if path else k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise InputError(f"{type(value).__name__} cannot be signed", field=path or "value")


def canonical(value: Any) -> Any:
    """The value as it is signed (whole floats as integers); raises InputError on other floats."""
    return _normalise(value, "")


def canonical_bytes(value: Any) -> bytes:
    return json.dumps(canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(text: str, field: str = "value") -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise InputError(f"not base64url: {text[:40]!r}", field=field) from exc
