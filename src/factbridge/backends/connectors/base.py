"""The connector contract: `fetch(cursor) -> (items, next_cursor)`.

Items are `Post` or `Quarantined` (a row that could not be read, with where and
why). A cursor lets a connector resume; file connectors read everything at once
and return `None` as the next cursor.

Connectors are found through the `factbridge.connectors` entry points, the
built-in ones (jsonl, csv) exactly like third-party ones, and built as
`cls(location, platform=..., limits=...)`: `factbridge ingest --connector NAME
LOCATION` (by default jsonl or csv, from the file name) and `fetch_items` below.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from factbridge.backends.connectors.reading import DEFAULT_LIMITS, InputLimits
from factbridge.models import Post, Quarantined


@runtime_checkable
class Connector(Protocol):
    name: str

    def fetch(self, cursor: str | None = None) -> tuple[list[Post | Quarantined], str | None]: ...


def open_connector(name: str, location: str | Path, platform: str = "", limits: InputLimits = DEFAULT_LIMITS) -> Connector:
    """The connector registered under `name` (entry point group `factbridge.connectors`)."""
    from factbridge.errors import ConfigError
    from factbridge.plugins import load_backend

    connector = load_backend("factbridge.connectors", name)(location, platform=platform, limits=limits)
    if not isinstance(connector, Connector):
        raise ConfigError(f"connector '{name}' has no fetch(cursor) method")
    return connector


def fetch_items(connector: Connector) -> Iterator[Post | Quarantined]:
    """Every item a connector has, following its cursor until it returns None."""
    cursor: str | None = None
    while True:
        items, cursor = connector.fetch(cursor)
        yield from items
        if cursor is None:
            return
