"""The connector contract: `fetch(cursor) -> (items, next_cursor)`.

Items are `Post` or `Quarantined` (a row that could not be read, with where and
why). A cursor lets a connector resume; file connectors read everything at once
and return `None` as the next cursor.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from factbridge.models import Post, Quarantined


@runtime_checkable
class Connector(Protocol):
    name: str

    def fetch(self, cursor: str | None = None) -> tuple[list[Post | Quarantined], str | None]: ...
