"""In-process queue: the default, and the fake that the conformance suite checks
alongside NATS (same redelivery and delivery-count rules, kept in memory).

With it `factbridge ingest` runs the stages itself, as it always has; the queue
object exists so that code written against the contract runs unchanged on one
machine and on many."""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from factbridge.errors import InputError, QueueError


@dataclass
class _Entry:
    seq: int
    body: dict[str, Any]
    deliveries: int = 0
    ready_at: float = 0.0  # monotonic time from which it may be delivered
    in_flight: bool = False
    token: int = 0  # bumps on every delivery: an old Delivery cannot ack a newer one
    done: bool = field(default=False)


class LocalDelivery:
    def __init__(self, queue: LocalQueue, entry: _Entry) -> None:
        self._queue = queue
        self._entry = entry
        self._token = entry.token
        self._body = copy.deepcopy(entry.body)
        self._attempt = entry.deliveries

    @property
    def body(self) -> dict[str, Any]:
        return self._body

    @property
    def attempt(self) -> int:
        return self._attempt

    def ack(self) -> None:
        self._queue._settle(self._entry, self._token, done=True)

    def discard(self) -> None:
        self._queue._settle(self._entry, self._token, done=True)

    def nack(self, delay_s: float = 0.0) -> None:
        self._queue._settle(self._entry, self._token, done=False, delay_s=delay_s)

    def extend(self) -> None:
        self._queue._extend(self._entry, self._token)


class LocalQueue:
    name = "local"
    in_process = True

    def __init__(self, url: str = "local://", *, ack_wait_s: float = 300.0, max_deliveries: int = 5) -> None:
        self.url = url
        self.ack_wait_s = ack_wait_s
        self.max_deliveries = max_deliveries
        self._entries: dict[int, _Entry] = {}
        self._seq = itertools.count(1)
        self._cond = threading.Condition()
        self._closed = False

    def publish(self, bodies: Sequence[dict[str, Any]]) -> int:
        for body in bodies:
            if not isinstance(body, dict) or not body.get("id"):
                raise InputError("a queue message must be a dict with an 'id'", field="id")
        with self._cond:
            self._check_open()
            for body in bodies:
                seq = next(self._seq)
                self._entries[seq] = _Entry(seq, copy.deepcopy(body))
            self._cond.notify_all()
        return len(bodies)

    def fetch(self, max_count: int = 1, timeout_s: float = 1.0) -> list[LocalDelivery]:
        deadline = time.monotonic() + max(timeout_s, 0.0)
        with self._cond:
            while True:
                self._check_open()
                now = time.monotonic()
                ready = self._ready(now)[:max_count]
                if ready:
                    out = []
                    for entry in ready:
                        entry.deliveries += 1
                        entry.token += 1
                        entry.in_flight = True
                        entry.ready_at = now + self.ack_wait_s  # redelivered unless settled by then
                        out.append(LocalDelivery(self, entry))
                    return out
                if now >= deadline:
                    return []
                upcoming = [e.ready_at for e in self._live(now) if e.ready_at > now]
                wake = min([deadline, *upcoming])
                self._cond.wait(max(wake - now, 0.001))

    def pending(self) -> dict[str, int]:
        with self._cond:
            now = time.monotonic()
            live = self._live(now)
            in_flight = sum(1 for e in live if e.in_flight and e.ready_at > now)
            return {"waiting": len(live) - in_flight, "in_flight": in_flight}

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- internals --------------------------------------------------------------------

    def _live(self, now: float) -> list[_Entry]:
        # JetStream's max_deliver: after max_deliveries + 1 deliveries a message is no
        # longer handed out (the worker records it as failed on that last delivery).
        limit = self.max_deliveries + 1
        return [e for e in self._entries.values() if not e.done and (e.deliveries < limit or (e.in_flight and e.ready_at > now))]

    def _ready(self, now: float) -> list[_Entry]:
        limit = self.max_deliveries + 1
        return sorted(
            (e for e in self._entries.values() if not e.done and e.ready_at <= now and e.deliveries < limit),
            key=lambda e: e.seq,
        )

    def _settle(self, entry: _Entry, token: int, *, done: bool, delay_s: float = 0.0) -> None:
        with self._cond:
            if entry.token != token or entry.done:
                return  # this delivery timed out and was handed to someone else
            entry.in_flight = False
            if done:
                entry.done = True
                del self._entries[entry.seq]
            else:
                entry.ready_at = time.monotonic() + max(delay_s, 0.0)
            self._cond.notify_all()

    def _extend(self, entry: _Entry, token: int) -> None:
        with self._cond:
            if entry.token == token and entry.in_flight:
                entry.ready_at = time.monotonic() + self.ack_wait_s

    def _check_open(self) -> None:
        if self._closed:
            raise QueueError("the local queue is closed")
