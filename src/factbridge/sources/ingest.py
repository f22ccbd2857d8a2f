"""The one way items from connectors, the API and the tiplines enter: the same steps as
`factbridge ingest` on a file (prepare, store with the quarantined rows in one
transaction, then run the stages in process or queue them for workers).

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
    changed_post_ids: list[str] = field(default_factory=list)
    changed_factcheck_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "posts": self.posts.model_dump(mode="json"),
            "factchecks": self.factchecks.model_dump(mode="json"),
            "stages": self.stages,
            "queued": self.queued,
        }


def ingest_items(services: Any, org: str, items: Sequence[Item], source: str, *, match: bool = True, process: bool = True) -> ItemsOutcome:
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
    result = storage.upsert_posts(org, posts, bad_posts)
    post_report = ImportReport(source=source, inserted=len(result.inserted), updated=len(result.updated), unchanged=len(result.unchanged), quarantined=bad_posts)
    outcome = ItemsOutcome(post_report, ImportReport(source=source), changed_post_ids=list(result.changed))
    if factchecks or bad_factchecks:
        fc_result = storage.upsert_factchecks(org, list(factchecks.values()))
        if bad_factchecks:
            storage.add_quarantine(org, bad_factchecks)
        outcome.factchecks = ImportReport(source=source, inserted=len(fc_result.inserted), updated=len(fc_result.updated),
                                          unchanged=len(fc_result.unchanged), quarantined=bad_factchecks)
        outcome.changed_factcheck_ids = list(fc_result.changed)
    if not process:
        return outcome
    changed = set(result.changed)
    new_posts = [p for p in posts if p.id in changed]
    skip = () if match else ("matching",)
    if outcome.changed_factcheck_ids:
        from factbridge.pipeline.matching import index_factchecks

        index_factchecks(storage, services.embedder, org)
        if storage.count_posts(org):
            from factbridge.pipeline.recheck import recheck_factchecks

            recheck = recheck_factchecks(services, org, outcome.changed_factcheck_ids)
            outcome.stages["recheck"] = {"post_matches": sum(map(len, recheck.hits.values()))}
    if new_posts and not services.queue.in_process:
        from factbridge.pipeline.work import publish_posts

        outcome.queued = publish_posts(services, org, new_posts, skip)
    elif new_posts:
        from factbridge.pipeline.ingest import embed_posts
        from factbridge.pipeline.stages import run_stages

        embed_posts(storage, services.embedder, org, new_posts)
        outcome.stages.update(run_stages(services, org, new_posts, skip=skip))
    return outcome
