"""The one road of a post: `process()` stores posts and queues their ids; the consumer of the
queue runs the stages (`factbridge.pipeline.work.Worker`, through `run_stages`).

Every entry point uses it: `factbridge ingest`, the demo, public reports (web), API writes
and connectors. Nothing runs the stages inside an HTTP request:

- with a shared queue (queue_url=nats://...) `factbridge worker` processes consume it;
- with the in-process queue (the default) the command that published drains it itself
  (`drain()`, e.g. `factbridge ingest`), and the web server drains it in a background
  thread (`BackgroundProcessor`), one batch at a time.

Crash recovery: the stage ledger (`factbridge.pipeline.ledger`) says which stages ran on
which content version of each post. `process()` queues, besides the new and changed posts,
the unchanged ones that miss a stage ("resumed"); `sweep()` (worker and server start,
`factbridge pipeline resume`) queues every stored post that misses one; the runner runs a
stage only on the posts that miss it, so a batch delivered twice repeats nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from factbridge.errors import FactBridgeError
from factbridge.models import Post, Quarantined
from factbridge.pipeline.ledger import Backlog, Ledger
from factbridge.pipeline.stages import load_stages, stage_versions
from factbridge.pipeline.work import BatchOutcome, Worker, WorkerReport, publish_post_ids

if TYPE_CHECKING:
    from factbridge.services import Services

log = logging.getLogger(__name__)

@dataclass
class ProcessReport:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    resumed: int = 0  # unchanged posts that missed a stage: queued again
    queued: int = 0
    batches: list[str] = field(default_factory=list)

    def add(self, other: ProcessReport) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.resumed += other.resumed
        self.queued += other.queued
        self.batches += other.batches


def _batch_size(services: Services) -> int:
    # The in-process consumer is this very process: bigger batches cost nothing in
    # redelivery and save per-batch work of the stages (coordination reads the whole store).
    s = services.settings
    return s.queue_local_batch_size if services.queue.in_process else s.queue_batch_size


def process(services: Services, org: str, posts: Sequence[Post], quarantined: Sequence[Quarantined] = (),
            skip: Sequence[str] = (), force: bool = False) -> ProcessReport:
    """Store prepared posts (and the quarantined rows, in the same transaction) and queue
    the ids of those that need stages: new, changed, or unchanged but missing a stage."""
    storage = services.storage
    # connect to the queue before storing: posts stored but never queued would wait (for a sweep)
    services.queue  # noqa: B018
    result = storage.upsert_posts(org, posts, quarantined)
    report = ProcessReport(len(result.inserted), len(result.updated), len(result.unchanged))
    unchanged = set(result.unchanged)
    versions = stage_versions()
    resumed = [p.id for p, _ in Ledger(storage).incomplete(org, [p for p in posts if p.id in unchanged], versions)]
    report.resumed = len(resumed)
    todo = result.changed + resumed if not force else [p.id for p in posts]
    if todo:
        published = publish_post_ids(services, org, todo, skip, force=force, batch_size=_batch_size(services))
        report.queued = int(published["posts"])
        report.batches = list(published["batch_ids"])
    return report


def known_orgs(services: Services) -> list[str]:
    """The default organisation and every one registered for the web workspace."""
    from factbridge.workflow.records import Orgs

    orgs = [services.settings.org]
    orgs += [o.id for o in Orgs(services.storage).iter()]
    return list(dict.fromkeys(orgs))


def backlog(services: Services, org: str) -> Backlog:
    return Ledger(services.storage).backlog(org, stage_versions())


def sweep(services: Services, orgs: Sequence[str] | None = None, only_if_idle: bool = False) -> dict[str, int]:
    """Queue every stored post that misses a stage (after a crash); returns posts queued per org.

    `only_if_idle`: only when the queue holds nothing (a worker's start: batches still
    queued will finish their posts, and several workers starting together would each
    queue the same backlog again)."""
    out: dict[str, int] = {}
    if only_if_idle:
        pending = services.queue.pending()
        if pending["waiting"] or pending["in_flight"]:
            log.info("sweep skipped: %d batches queued, %d held by workers", pending["waiting"], pending["in_flight"])
            return out
    for org in orgs if orgs is not None else known_orgs(services):
        ids = backlog(services, org).incomplete_ids
        if ids:
            publish_post_ids(services, org, ids, batch_size=_batch_size(services))
            log.info("sweep: queued %d posts of org %s that miss a stage", len(ids), org)
        out[org] = len(ids)
    return out


def drain(services: Services, on_batch: Callable[[BatchOutcome], None] | None = None) -> WorkerReport:
    """Consume the in-process queue until it is empty (the publisher is its own worker)."""
    load_stages()  # a broken stage registry fails here, before any batch is taken
    return Worker(services, on_batch=on_batch, fetch_timeout_s=0.0, merge=1).run(once=True)  # local batches are big already


class BackgroundProcessor:
    """Drains the in-process queue in a thread of the web server, so that public reports and
    API writes return at once and their stages run one batch at a time, off the request."""

    def __init__(self, services: Services, sweep_on_start: bool = True) -> None:
        self.services = services
        self.sweep_on_start = sweep_on_start
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._run, name="factbridge-processor", daemon=True)
        self.report = WorkerReport("web")

    def start(self) -> BackgroundProcessor:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            if self.sweep_on_start:
                sweep(self.services)
            worker = Worker(self.services, stop=self._stop, name="web", fetch_timeout_s=0.2)
            while not self._stop.is_set():
                report = worker.run(max_batches=1, once=True)
                self.report.outcomes += report.outcomes
                if not report.outcomes:
                    self._idle.set()
                    self._stop.wait(0.2)
                else:
                    self._idle.clear()
        except FactBridgeError as exc:
            if not self._stop.is_set():  # a closed queue while stopping is the way out
                log.error("background processing stopped: %s", exc)

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        """Wait until the queue is empty and no batch is being processed (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pending = self.services.queue.pending()
            if not pending["waiting"] and not pending["in_flight"] and self._idle.is_set():
                return True
            self._idle.clear()
            self._idle.wait(0.5)
        return False

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
