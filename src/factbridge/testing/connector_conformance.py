"""Checks every connector passes (a third-party one too): `check_connector(make)` with a
factory that returns the connector pointed at a fixed, unchanging source.

1. `fetch(None)` returns a list of `Post`, `FactCheck` or `Quarantined` items and a
   string cursor (or None for sources read whole every time);
2. ids are stable: a fresh connector fetching from scratch returns the same ids;
3. resuming: fetching again from the returned cursor brings no post or fact-check
   that the first fetch already brought (nothing is sent twice by design; ingest
   would ignore it, but connectors must not rely on that to resume);
4. a quarantined row says where (source) and why (reason).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from factbridge.models import FactCheck, Post, Quarantined


def check_connector(make: Callable[[], Any], *, expect_items: bool = True) -> list[Post | FactCheck | Quarantined]:
    connector = make()
    assert isinstance(getattr(connector, "name", None), str) and connector.name, "a connector has a name"
    items, cursor = connector.fetch(None)
    assert isinstance(items, list), "fetch returns a list of items"
    assert cursor is None or isinstance(cursor, str), f"the cursor is a string or None, got {type(cursor).__name__}"
    for item in items:
        assert isinstance(item, Post | FactCheck | Quarantined), f"unexpected item {type(item).__name__}"
        if isinstance(item, Quarantined):
            assert item.source and item.reason, "a quarantined row names its source and reason"
    ids = [i.id for i in items if isinstance(i, Post | FactCheck)]
    if expect_items:
        assert ids, "the fixture source should give at least one post or fact-check"
    assert len(ids) == len(set(ids)), "one fetch returns each id once"
    again, _ = make().fetch(None)
    assert [i.id for i in again if isinstance(i, Post | FactCheck)] == ids, "ids are stable between fetches"
    if cursor is not None:
        resumed, _ = make().fetch(cursor)
        repeated = {i.id for i in resumed if isinstance(i, Post | FactCheck)} & set(ids)
        assert not repeated, f"resuming from the cursor brought items again: {sorted(repeated)[:5]}"
    return items
