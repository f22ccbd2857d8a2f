"""The one way items from connectors, the API and the tiplines enter: the same steps as
`factbridge ingest` on a file: prepare, then `pipeline.process.process` (store with the
quarantined rows in one transaction, queue the posts for the stages), and with the
in-process queue run the queued stages here unless the caller has a background
processor (the web server).

Fact-checks (ClaimReview pages, fact-check sites' feeds) go into the library, are
embedded, and stored posts near them are re-checked, as `factbridge factchecks import`
does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from factbridge.models import FactCheck, ImportReport, Post, Quarantined
from factbridge.pipeline.prepare import prepare_factcheck, prepare_post

Item = Post | FactCheck | Quarantined


@dataclass
class ItemsOutcome:
    posts: ImportReport
    factchecks: ImportReport
    stages: dict[str, Any] = field(default_factory=dict)
    queued: dict[str, Any] | None = None
    changed_factcheck_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "posts": self.posts.model_dump(mode="json"),
            "factchecks": self.factchecks.model_dump(mode="json"),
            "stages": self.stages,
            "queued": self.queued,
        }


def ingest_items(services: Any, org: str, items: Sequence[Item], source: str, *, match: bool = True, drain: bool = True) -> ItemsOutcome:
    """Store the items and queue their posts for the stages (`pipeline.process.process`).

    `drain`: with the in-process queue, run the queued stages now, in this thread (the CLI,
    connectors, the tipline's desk thread). The web server passes False: its background
    processor runs them, never the request."""
    from factbridge.pipeline.process import process

    storage = services.storage
    posts: list[Post] = []
    factchecks: dict[str, FactCheck] = {}
    bad_posts: list[Quarantined] = []
    bad_factchecks: list[Quarantined] = []
    seen: set[str] = set()
    for item in items:
        if isinstance(item, Quarantined):
            (bad_factchecks if item.kind == "factcheck" else bad_posts).append(item)
        elif isinstance(item, FactCheck):
            factchecks[item.id] = prepare_factcheck(item, services.languages)  # a later duplicate wins
        elif item.id in seen:
            bad_posts.append(Quarantined(kind="post", source=item.source or source, field="id", reason=f"duplicate id '{item.id}' in the same batch", raw=item.text[:500]))
        else:
            seen.add(item.id)
            posts.append(prepare_post(item, services.languages))
    outcome = ItemsOutcome(ImportReport(source=source), ImportReport(source=source))
    if factchecks or bad_factchecks:
        # fact-checks first: the posts of this batch are then matched against them too
        fc_result = storage.upsert_factchecks(org, list(factchecks.values()))
        if bad_factchecks:
            storage.add_quarantine(org, bad_factchecks)
        outcome.factchecks = ImportReport(source=source, inserted=len(fc_result.inserted), updated=len(fc_result.updated),
                                          unchanged=len(fc_result.unchanged), quarantined=bad_factchecks)
        outcome.changed_factcheck_ids = list(fc_result.changed)
        if outcome.changed_factcheck_ids:
            from factbridge.pipeline.matching import index_factchecks

            index_factchecks(storage, services.embedder, org)
            if storage.count_posts(org):
                from factbridge.pipeline.recheck import recheck_factchecks

                recheck = recheck_factchecks(services, org, outcome.changed_factcheck_ids)
                outcome.stages["recheck"] = {"post_matches": sum(map(len, recheck.hits.values()))}
    if posts or bad_posts:
        done = process(services, org, posts, bad_posts, skip=() if match else ("matching",))
        outcome.posts = ImportReport(source=source, inserted=done.inserted, updated=done.updated, unchanged=done.unchanged, quarantined=bad_posts)
        outcome.queued = {"posts": done.queued, "resumed": done.resumed, "batches": len(done.batches)}
        if done.queued and drain and services.queue.in_process:
            from factbridge.pipeline.process import drain as run_queued

            for batch in run_queued(services).outcomes:
                for name, info in batch.stages.items():
                    merged = outcome.stages.setdefault(name, {})
                    for key, value in info.items():
                        numeric = isinstance(value, int | float) and not isinstance(value, bool)
                        merged[key] = merged.get(key, 0) + value if numeric else value
                if batch.status != "done":
                    outcome.stages.setdefault("errors", {})[batch.batch_id] = batch.error
    return outcome
