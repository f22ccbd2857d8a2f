"""Post-processing as queued work: ingest publishes batches of post ids, workers run the
stages on them (the same `run_stages` that ingest runs in-process with the local queue).

A message names the organisation and the post ids, never the posts: workers read them
from storage, so a message stays small and a redelivered batch sees current data.
Stages are idempotent (keyed writes), so processing a redelivered batch again changes
nothing.

Failures: a batch whose processing raises is retried after `queue_retry_delay_s`
(doubling); after `queue_max_deliveries` attempts — or when it comes back once more
after its holders died without a word — it is recorded in the organisation's
`queue_failures` collection with its error and removed from the queue. Nothing is
dropped silently; `factbridge batches failed` lists the records and `factbridge batches
retry` publishes them again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from factbridge.backends.queue.base import Delivery, Queue
from factbridge.errors import FactBridgeError, InputError, NotFound
from factbridge.models import Post
from factbridge.pipeline.collector import settle_heap
from factbridge.pipeline.records import FAILURES as FAILURES  # re-exported: where it was
from factbridge.pipeline.records import QueueFailure, QueueFailures
from factbridge.text.tokenize import load_segmenter

log = logging.getLogger(__name__)

MESSAGE_KIND = "posts"
MESSAGE_VERSION = 1


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class WorkBatch:
    id: str
    org: str
    post_ids: tuple[str, ...]
    skip: tuple[str, ...] = ()
    published_at: str = ""
    retry_of: str = ""  # the failed batch this one publishes again
    force: bool = False  # run every stage again, even those the ledger says ran

    def to_body(self) -> dict[str, Any]:
        return {"v": MESSAGE_VERSION, "kind": MESSAGE_KIND, "id": self.id, "org": self.org,
                "post_ids": list(self.post_ids), "skip": list(self.skip), "published_at": self.published_at,
                "retry_of": self.retry_of, "force": self.force}

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> WorkBatch:
        source = f"queue message {body.get('id', '?')}"
        if body.get("kind") != MESSAGE_KIND or body.get("v") != MESSAGE_VERSION:
            raise InputError(f"not a v{MESSAGE_VERSION} '{MESSAGE_KIND}' message", source=source, field="kind")
        for name in ("id", "org"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise InputError("missing or not a string", source=source, field=name)
        ids, skip = body.get("post_ids"), body.get("skip", [])
        if not isinstance(ids, list) or not ids or not all(isinstance(x, str) for x in ids):
            raise InputError("must be a non-empty list of post ids", source=source, field="post_ids")
        if not isinstance(skip, list) or not all(isinstance(x, str) for x in skip):
            raise InputError("must be a list of stage names", source=source, field="skip")
        return cls(body["id"], body["org"], tuple(ids), tuple(skip), str(body.get("published_at", "")), str(body.get("retry_of") or ""),
                   body.get("force") is True)


def make_batches(org: str, post_ids: Sequence[str], size: int, skip: Sequence[str] = (), force: bool = False) -> list[WorkBatch]:
    if size < 1:
        raise InputError(f"batch size must be at least 1, got {size}", field="queue_batch_size")
    ids = list(dict.fromkeys(post_ids))
    stamp = _now()
    return [WorkBatch(uuid.uuid4().hex, org, tuple(ids[i:i + size]), tuple(skip), stamp, force=force) for i in range(0, len(ids), size)]


def publish_posts(services: Any, org: str, posts: Sequence[Post], skip: Sequence[str] = ()) -> dict[str, Any]:
    """Queue stored posts' ids for the workers; returns what was published."""
    return publish_post_ids(services, org, [p.id for p in posts], skip)


def publish_post_ids(services: Any, org: str, post_ids: Sequence[str], skip: Sequence[str] = (), force: bool = False,
                     batch_size: int | None = None) -> dict[str, Any]:
    """Queue stored posts' ids for the stages; returns what was published. (Storing posts and
    queueing them is `factbridge.pipeline.process.process`.)"""
    batches = make_batches(org, post_ids, batch_size or services.settings.queue_batch_size, skip, force)
    services.queue.publish([b.to_body() for b in batches])
    return {"batches": len(batches), "posts": sum(len(b.post_ids) for b in batches), "batch_ids": [b.id for b in batches]}


def process_posts(services: Any, org: str, posts: Sequence[Post], skip: Sequence[str] = (), force: bool = False,
                  ahead: Sequence[Post] = ()) -> dict[str, dict[str, Any]]:
    """Run the stages that these posts miss (all of them with `force`): the work of one batch.
    `ahead`: the next batch's posts (same organisation), encoded while this batch's later
    stages run (`run_stages`)."""
    from factbridge.pipeline.stages import run_stages

    return run_stages(services, org, posts, skip=skip, force=force, ahead=ahead)


def process_batch(services: Any, batch: WorkBatch, ahead: Sequence[Post] = ()) -> dict[str, dict[str, Any]]:
    found = services.storage.get_posts(batch.org, list(batch.post_ids))
    missing = [i for i in batch.post_ids if i not in found]
    if missing:
        # Posts are never deleted: a missing one means this worker reads another database
        # than the publisher (storage_url) — retrying elsewhere may succeed, so fail loudly.
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise NotFound(f"{len(missing)} of {len(batch.post_ids)} posts of org '{batch.org}' are not in this worker's storage: {shown}")
    return process_posts(services, batch.org, [found[i] for i in batch.post_ids], batch.skip, batch.force, ahead)


# -- failure records -------------------------------------------------------------------------


def _record(services: Any, org: str, batch_id: str, /, **changes: Any) -> None:
    QueueFailures(services.storage).record(org, batch_id, **changes)


def list_failures(services: Any, org: str, limit: int = 100, include_resolved: bool = False) -> list[QueueFailure]:
    return QueueFailures(services.storage).latest(org, limit, include_resolved)


def retry_failures(services: Any, org: str, batch_ids: Sequence[str] | None = None) -> list[str]:
    """Publish recorded failed batches again (all of the org's, or the named ones) under
    new batch ids (returned); each failure record notes `retried_as`."""
    if batch_ids:
        found = QueueFailures(services.storage).get(org, list(batch_ids))
        unknown = sorted(set(batch_ids) - set(found))
        if unknown:
            raise NotFound(f"no failed batch {', '.join(unknown)} in org '{org}'")
        chosen = [f for f in found.values() if f.status == "failed"]
    else:
        chosen = list_failures(services, org, limit=100_000)
    republished = []
    for failure in chosen:
        if not failure.post_ids:
            continue  # an unreadable message: nothing to run again
        # a new id: the queue may still remember the old one and drop it as a duplicate
        batch = WorkBatch(uuid.uuid4().hex, org, tuple(failure.post_ids), tuple(failure.skip), _now(), retry_of=failure.id,
                          force=failure.force)
        services.queue.publish([batch.to_body()])
        _record(services, org, failure.id, status="retried", retried_as=batch.id, updated_at=_now())
        republished.append(batch.id)
    return republished


# -- the worker ------------------------------------------------------------------------------


@dataclass
class BatchOutcome:
    batch_id: str
    org: str
    posts: int
    attempt: int
    status: str  # done | retry | failed | stopped
    seconds: float
    error: str = ""
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class WorkerReport:
    worker: str
    outcomes: list[BatchOutcome] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def as_dict(self) -> dict[str, Any]:
        return {
            "worker": self.worker, "seconds": round(self.seconds, 3),
            "done": self.count("done"), "retried": self.count("retry"), "failed": self.count("failed"),
            "posts": sum(o.posts for o in self.outcomes if o.status == "done"),
            "batches": [{"id": o.batch_id, "org": o.org, "posts": o.posts, "attempt": o.attempt, "status": o.status,
                         "seconds": round(o.seconds, 3), "error": o.error} for o in self.outcomes],
        }


class _Heartbeat:
    """Tells the queue the batch is still being worked on, so a long batch is not handed
    to a second worker while the first is alive; a dead worker stops beating."""

    def __init__(self, delivery: Delivery | Sequence[Delivery], interval_s: float) -> None:
        self._deliveries = [delivery] if isinstance(delivery, Delivery) else list(delivery)
        self._interval = max(interval_s, 0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="factbridge-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for delivery in self._deliveries:
                try:
                    delivery.extend()
                except FactBridgeError as exc:
                    log.warning("could not extend the batch's ack deadline: %s", exc)


class Worker:
    """Consumes batches from the shared queue and runs the stages on them."""

    def __init__(self, services: Any, queue: Queue | None = None, name: str = "",
                 stop: threading.Event | None = None, on_batch: Callable[[BatchOutcome], None] | None = None,
                 fetch_timeout_s: float = 1.0, merge: int | None = None) -> None:
        self.services = services
        # ready batches taken at once and run together (many one-post batches, e.g. public
        # reports, would otherwise each pay the stages' per-batch work)
        self.merge = max(1, merge if merge is not None else int(getattr(services.settings, "queue_worker_merge", 1)))
        self.queue = queue or services.queue
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.stop = stop or threading.Event()
        self.on_batch = on_batch
        self.fetch_timeout_s = fetch_timeout_s
        # Batches taken while the current ones run (when the queue had more ready than a run
        # takes): their posts are encoded while the current run's later stages hold the
        # interpreter, and they run next. Their ack deadlines are extended with the current ones'.
        self.lookahead = bool(services.settings.queue_lookahead)
        self._held: list[Delivery] = []

    def run(self, max_batches: int | None = None, once: bool = False) -> WorkerReport:
        """Process batches until stopped; `once`: until none is ready; `max_batches`: at most that many."""
        report = WorkerReport(self.name)
        t0 = time.perf_counter()
        if not once:  # a long-running worker reads the Khmer segmenter's model now, not in its first Khmer batch
            load_segmenter()
        try:
            while not self.stop.is_set() and (max_batches is None or len(report.outcomes) < max_batches):
                room = self.merge if max_batches is None else min(self.merge, max_batches - len(report.outcomes))
                deliveries, self._held = (self._held or self.queue.fetch(room, self.fetch_timeout_s)), []
                if not deliveries:
                    if once:
                        break
                    continue
                after = len(report.outcomes) + len(deliveries)
                if self.lookahead and len(deliveries) == room and (max_batches is None or after < max_batches):
                    # the queue had at least a full run ready: take the next run's batches now
                    self._held = self.queue.fetch(self.merge if max_batches is None else min(self.merge, max_batches - after), 0.0)
                outcomes = [self.handle(deliveries[0])] if len(deliveries) == 1 else self.handle_many(deliveries)
                if not once:  # a long-running worker: after its first run (models, caches loaded), then every ten minutes
                    settle_heap()
                for outcome in outcomes:
                    report.outcomes.append(outcome)
                    if self.on_batch:
                        self.on_batch(outcome)
        finally:
            report.seconds = time.perf_counter() - t0
            if self._held:  # stopped (or interrupted) before running them: hand them back now
                for delivery in self._held:
                    delivery.nack()
                self._held = []
        return report

    def _ahead(self, org: str) -> list[Post]:
        """The stored posts of the held batches of `org` (those the next run will process);
        none when the embedder cannot encode ahead (nothing would be done with them)."""
        from factbridge.backends.embedders.base import EncodesAhead

        if not self._held or not isinstance(self.services.embedder, EncodesAhead):
            return []
        ids: list[str] = []
        for delivery in self._held:
            try:
                batch = WorkBatch.from_body(delivery.body)
            except InputError:
                continue
            if batch.org == org and delivery.attempt <= self.queue.max_deliveries:
                ids.extend(batch.post_ids)
        if not ids:
            return []
        found = self.services.storage.get_posts(org, list(dict.fromkeys(ids)))
        return [found[i] for i in dict.fromkeys(ids) if i in found]

    def handle_many(self, deliveries: Sequence[Delivery]) -> list[BatchOutcome]:
        """Run the stages once on the posts of several batches of one organisation; any
        batch that cannot join (unreadable, over its delivery limit, another org) and every
        batch of a group whose run failed go through `handle` alone (the ledger makes the
        second run repeat nothing that was done)."""
        outcomes: list[BatchOutcome] = []
        groups: dict[tuple[str, tuple[str, ...], bool], list[tuple[Delivery, WorkBatch]]] = {}
        for delivery in deliveries:
            try:
                batch = WorkBatch.from_body(delivery.body)
            except InputError:
                outcomes.append(self.handle(delivery))
                continue
            if delivery.attempt > self.queue.max_deliveries:
                outcomes.append(self.handle(delivery))
                continue
            groups.setdefault((batch.org, batch.skip, batch.force), []).append((delivery, batch))
        for (org, skip, force), members in groups.items():
            if len(members) == 1:
                outcomes.append(self.handle(members[0][0]))
                continue
            t0 = time.perf_counter()
            ids = list(dict.fromkeys(i for _, b in members for i in b.post_ids))
            try:
                with _Heartbeat([*(d for d, _ in members), *self._held], self.queue.ack_wait_s / 3):
                    merged = WorkBatch(f"merged-{uuid.uuid4().hex}", org, tuple(ids), skip, force=force)
                    stages = process_batch(self.services, merged, self._ahead(org))
            except Exception as exc:  # noqa: BLE001 - each batch is retried (and recorded) on its own
                log.warning("merged run of %d batches (org %s) failed (%s: %s); running them one by one", len(members), org, type(exc).__name__, exc)
                outcomes.extend(self.handle(d) for d, _ in members)
                continue
            except BaseException:
                for d, _ in members:
                    d.nack()
                raise
            seconds = (time.perf_counter() - t0) / len(members)
            for n, (delivery, batch) in enumerate(members):
                delivery.ack()
                if delivery.attempt > 1 and QueueFailures(self.services.storage).get(batch.org, [batch.id]):
                    _record(self.services, batch.org, batch.id, status="recovered", batch_id=batch.id, org=batch.org,
                            post_ids=list(batch.post_ids), attempts=delivery.attempt, error="", worker=self.name, updated_at=_now())
                outcomes.append(BatchOutcome(batch.id, batch.org, len(batch.post_ids), delivery.attempt, "done", seconds,
                                             stages=stages if n == 0 else {}))
        return outcomes

    def handle(self, delivery: Delivery) -> BatchOutcome:
        t0 = time.perf_counter()
        attempt = delivery.attempt
        limit = self.queue.max_deliveries
        try:
            batch = WorkBatch.from_body(delivery.body)
        except InputError as exc:
            bad_id = str(delivery.body.get("id") or f"unreadable-{uuid.uuid4().hex}")
            _record(self.services, self.services.settings.org, bad_id, status="failed", batch_id=bad_id, org=self.services.settings.org,
                    post_ids=[], attempts=attempt, error=str(exc), message=dict(delivery.body), worker=self.name, updated_at=_now())
            delivery.discard()
            return BatchOutcome(bad_id, "", 0, attempt, "failed", time.perf_counter() - t0, str(exc))

        def record(status: str, error: str, attempts: int) -> None:
            _record(self.services, batch.org, batch.id, status=status, batch_id=batch.id, org=batch.org, post_ids=list(batch.post_ids),
                    skip=list(batch.skip), force=batch.force, published_at=batch.published_at, retry_of=batch.retry_of, attempts=attempts,
                    error=error, worker=self.name, updated_at=_now())

        if attempt > limit:
            # Delivered once more than allowed: every earlier holder died or timed out
            # without acking. Record it rather than let the server drop it.
            previous = QueueFailures(self.services.storage).get(batch.org, [batch.id]).get(batch.id)
            error = (previous.error if previous else "") or f"not acknowledged after {limit} deliveries (workers stopped or exceeded queue_ack_wait_s)"
            record("failed", error, attempt - 1)
            delivery.discard()
            return BatchOutcome(batch.id, batch.org, len(batch.post_ids), attempt, "failed", time.perf_counter() - t0, error)

        try:
            with _Heartbeat([delivery, *self._held], self.queue.ack_wait_s / 3):
                stages = process_batch(self.services, batch, self._ahead(batch.org))
        except Exception as exc:  # any stage failure is recorded with the batch, never lost
            error = f"{type(exc).__name__}: {exc}"
            # with its traceback: which stage, and where, is what whoever reads the worker's log needs
            log.warning("batch %s (org %s) attempt %d/%d failed: %s", batch.id, batch.org, attempt, limit, error, exc_info=True)
            if attempt >= limit:
                record("failed", error, attempt)
                delivery.discard()
                status = "failed"
            else:
                record("retrying", error, attempt)
                delivery.nack(self.services.settings.queue_retry_delay_s * 2 ** (attempt - 1))
                status = "retry"
            return BatchOutcome(batch.id, batch.org, len(batch.post_ids), attempt, status, time.perf_counter() - t0, error)
        except BaseException:
            # interrupted (second SIGINT/SIGTERM): hand the batch back at once
            delivery.nack()
            raise
        delivery.ack()
        if attempt > 1 and QueueFailures(self.services.storage).get(batch.org, [batch.id]):
            record("recovered", "", attempt)
        return BatchOutcome(batch.id, batch.org, len(batch.post_ids), attempt, "done", time.perf_counter() - t0, stages=stages)
