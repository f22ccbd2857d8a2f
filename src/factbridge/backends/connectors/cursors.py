"""A time cursor for exports read again and again (a newer export of the same account):
the newest time read and the ids read at exactly that time, so that a later export
brings what is newer, and rows of that same second are neither lost nor sent twice."""

from __future__ import annotations

from factbridge.backends.connectors.web import dump_cursor, load_cursor


class TimeCursor:
    def __init__(self, cursor: str | None) -> None:
        state = load_cursor(cursor) if cursor and cursor.startswith("{") else {"latest": cursor}
        self.latest: str | None = state.get("latest") or None
        self.ids: set[str] = set(state.get("ids") or [])
        self._start = (self.latest, frozenset(self.ids))

    def seen(self, stamp: str | None, item_id: str) -> bool:
        """Read by an earlier fetch (rows without a time are always read again: ingest ignores repeats)."""
        start, ids = self._start
        if not stamp or not start:
            return False
        return stamp < start or (stamp == start and item_id in ids)

    def advance(self, stamp: str | None, item_id: str) -> None:
        if not stamp:
            return
        if self.latest is None or stamp > self.latest:
            self.latest, self.ids = stamp, {item_id}
        elif stamp == self.latest:
            self.ids.add(item_id)

    def dump(self) -> str | None:
        return dump_cursor({"latest": self.latest, "ids": sorted(self.ids)}) if self.latest else None
