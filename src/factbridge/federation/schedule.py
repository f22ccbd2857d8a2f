"""Partner sync on a schedule, inside `factbridge worker` (setting `federation_sync_every_s`).

Like the sources scheduler (sources/registry.py, `SourceScheduler`) it runs in a thread of the
worker: every `tick_s` seconds, for each organisation, our own feed is brought up to date (and
pushed to partners that asked for pushes) and every active partner whose last sync attempt is
at least `every_s` seconds old is pulled, exactly as `factbridge partners sync` does. The time
of the last attempt is the one the sync records (federation.sync, `last_attempt`), so several
workers, or a worker and a cron job, do not pull one partner more often than that; a pull
already running elsewhere is waited for (the sync's folder lock) and then finds nothing new.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from factbridge.federation.feed import Outbox
from factbridge.federation.identity import Identity
from factbridge.federation.partners import Partners
from factbridge.federation.push import push_to_partners
from factbridge.federation.sync import Syncer, SyncReport

log = logging.getLogger(__name__)


def outbox_for(services: Any, org: str, identity: Identity | None = None) -> Outbox:
    """Our feed for one organisation, with its editors' roles and desk name (for provenance)."""
    from factbridge.web.app import accounts_for

    accounts = accounts_for(services)
    roles = {u.username: u.role for u in accounts.list_users(org)}
    org_name = next((o.name for o in accounts.orgs.iter() if o.id == org), org)
    return Outbox(services.storage, identity or Identity(services.settings.data_dir), org, services.settings.federation_licence, roles,
                  org_name=org_name, narrative_min_posts=services.settings.federation_narrative_min_posts)


def due_partners(syncer: Syncer, every_s: float, now: datetime) -> list[str]:
    """Active partners whose last sync attempt is `every_s` seconds old or more (or never made)."""
    due = []
    for partner in Partners(syncer.storage, syncer.org).all(active_only=True):
        last = syncer.state(partner.name).last_attempt
        if last is None or (now - datetime.fromisoformat(last)).total_seconds() >= every_s:
            due.append(partner.name)
    return sorted(due)


class PartnerSyncScheduler:
    """Pulls due partners every `tick_s` seconds in a thread, for one organisation or (org None)
    every organisation the installation knows. `now` is the clock (a test passes its own)."""

    def __init__(self, services: Any, org: str | None, stop: threading.Event, every_s: float, tick_s: float = 30.0,
                 on_result: Callable[[str, SyncReport], None] | None = None, now: Callable[[], datetime] | None = None,
                 client: Any = None) -> None:
        self.services, self.org, self.stop = services, org, stop
        self.every_s, self.tick_s, self.on_result = every_s, max(1.0, min(tick_s, every_s)), on_result
        self.now = now or (lambda: datetime.now(UTC))
        self.client = client  # an httpx.Client (tests: one bound to an in-process app); default: one per sync
        self.syncs = 0

    def tick(self) -> list[SyncReport]:
        """One pass: refresh (and push) our feed, then pull every due partner of every organisation."""
        from factbridge.pipeline.process import known_orgs

        identity = Identity(self.services.settings.data_dir)
        reports: list[SyncReport] = []
        for org in [self.org] if self.org else known_orgs(self.services):
            syncer = Syncer(self.services, org, identity, client=self.client)
            try:
                due = due_partners(syncer, self.every_s, self.now())
                if not due:
                    continue
                outbox = outbox_for(self.services, org, identity)
                if outbox.refresh():  # partners pulling from us find what is new
                    for pushed in push_to_partners(self.services.storage, org, identity, outbox.head(), syncer.client):
                        if pushed.error:
                            log.warning("federation: push to %s failed: %s", pushed.partner, pushed.error)
                for name in due:
                    report = syncer.sync(name)
                    reports.append(report)
                    self.syncs += 1
                    if self.on_result:
                        self.on_result(org, report)
            finally:
                if self.client is None:
                    syncer.close()
        return reports

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.tick()
            except Exception:  # a bug must not stop the schedule: logged with its traceback, tried again next tick
                log.exception("partner sync scheduler: a pass failed")
            self.stop.wait(self.tick_s)

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="factbridge-federation", daemon=True)
        thread.start()
        return thread
