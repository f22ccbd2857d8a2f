"""Pausing Python's cyclic garbage collector around a stage's bulk work, and settling a
worker's heap once its models and caches are loaded.

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
import time
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


SETTLE_EVERY_S = 600.0
_settled_at: float | None = None


def settle_heap(every_s: float = SETTLE_EVERY_S, now: float | None = None) -> bool:
    """After a run of the stages: once the last settling is `every_s` old (or there was none),
    collect everything, then freeze what is still alive (`gc.freeze`). Returns whether it did.

    A worker's heap after its first run is mostly what lives as long as the process: the
    encoder's and the stages' models, lexicons, vocabularies, caches (~160,000 objects).
    Every full collection walked all of them: one took 140 ms in the middle of a timed
    batch, and frozen they are skipped (GC time of 512 550-character posts in `bench ingest`:
    170 ms before, 22 after; docs/performance.md §5). Objects that die are still freed by
    reference counting, frozen or not; only cyclic garbage among frozen objects waits: each
    settling unfreezes and collects first, so it waits at most `every_s` (an engine
    replaced after another process wrote, say)."""
    global _settled_at
    now = time.monotonic() if now is None else now
    with _LOCK:
        if _settled_at is not None and now - _settled_at < every_s:
            return False
        _settled_at = now
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return True
