"""Pausing Python's cyclic garbage collector around a stage's bulk work.

A stage that parses thousands of stored documents per batch (triage, before its narratives'
member summaries: four per member of every touched narrative) allocates so many fresh dicts and lists that the collector runs
again and again during it, each run walking the process's whole heap (models, caches,
pandas): on 550-character posts that was most of triage's time. Those objects hold no
reference cycles and are freed by reference counting; pausing collection while the stage
runs and resuming it after changes nothing but when collection happens. (Tried on the
coordination stage too, when its share table re-read every stored post per batch: no gain
measured, so not used there; docs/performance.md §5.)
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.Lock()
_pausers = 0


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection inside; resumed when the last pauser in the process (any thread)
    leaves. A collector someone else turned off stays off."""
    global _pausers
    with _LOCK:
        paused = gc.isenabled() or _pausers > 0
        if paused:
            _pausers += 1
            gc.disable()
    try:
        yield
    finally:
        if paused:
            with _LOCK:
                _pausers -= 1
                if _pausers == 0:
                    gc.enable()
