"""Waiting for another process's SQLite write lock instead of failing.

`factbridge serve` and a CLI command (ingest, factchecks import) write to the same
SQLite files. SQLite's busy timeout makes a connection wait for the lock, but some
waits it cannot cover (a WAL read snapshot that became stale, a lock held longer than
the timeout): those surface as SQLITE_BUSY ("database is locked"). `retry_busy` runs
the operation again with exponential backoff until a total deadline, and only then
raises.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

# per attempt: SQLite's own busy handler waits this long for the lock
CONNECT_TIMEOUT_S = 5.0
# in all: attempts go on with backoff until this many seconds have passed
BUSY_DEADLINE_S = 120.0


def is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED: another connection holds the lock (retrying can help)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    message = str(exc)
    return "database is locked" in message or "database table is locked" in message


def retry_busy(
    fn: Callable[[], T],
    what: str,
    deadline_s: float = BUSY_DEADLINE_S,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """`fn()`, tried again after SQLITE_BUSY with backoff (50 ms doubling to 2 s, jittered)
    until `deadline_s` have passed. `on_retry` runs before each new try (a rollback)."""
    start = time.monotonic()
    delay = 0.05
    attempt = 1
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() - start + delay > deadline_s:
                raise
            log.info("%s: database busy (attempt %d), retrying in %.2f s", what, attempt, delay)
            if on_retry is not None:
                on_retry()
            time.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, 2.0)
            attempt += 1
