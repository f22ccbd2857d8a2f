"""Re-check: when fact-checks arrive, bring what was decided from the old library up to date.

1. stored posts whose vector comes near a new or changed fact-check, and the posts
   whose stored matches name it (a withdrawn one: pipeline/withdrawals.py), are
   matched again and their matches replaced (`ingest.rematch_near_posts`);
2. the narratives those posts belong to get their fact-check lists recomputed
   from the stored matches of all their members (`narratives.refresh_factchecks`);
3. the latest burst alerts of the changed narratives are looked at again
   (`bursts.reclassify_alerts`): a burst that now repeats a debunked claim
   becomes "resurfacing", recorded on the alert and delivered as a new event;
4. the queue entries of those posts, of their repeats and of their narratives
   are scored again (`triage.triage_posts`): "repeats a debunked claim" and the
   same-claim velocity come from the matches.

Each step is the stage's own function; nothing here decides anything itself.
The queue is refreshed only for an organisation that has one (the triage stage
ran before): a partial queue of just the re-checked posts would mislead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from factbridge.pipeline.bursts import reclassify_alerts
from factbridge.pipeline.ingest import match_and_store, rematch_near_posts
from factbridge.pipeline.narratives import refresh_factchecks
from factbridge.pipeline.records import TriageQueue
from factbridge.pipeline.triage import triage_posts


@dataclass
class RecheckReport:
    hits: dict[str, list[str]] = field(default_factory=dict)  # fact-check id -> posts now matched to it
    rematched: list[str] = field(default_factory=list)  # posts matched again
    narratives: dict[str, Any] = field(default_factory=dict)  # refresh_factchecks summary
    alerts: dict[str, Any] = field(default_factory=dict)  # reclassify_alerts summary
    queue: dict[str, Any] = field(default_factory=dict)  # triage_posts summary ({} when not refreshed)


def _post_index(services: Any, org: str, embedder: Any) -> Any:
    """The organisation's post vector index (pgvector HNSW, or HNSW persisted in data_dir)."""
    from factbridge.backends.vectors.selection import VectorIndexTuning, stored_vector_index

    s = services.settings
    return stored_vector_index(
        services.storage, org, "post", embedder.id, embedder.dim, choice=s.vector_index, tuning=VectorIndexTuning.from_settings(s),
        data_dir=None if ":memory:" in s.resolved_storage_url else s.data_dir, resync_s=0,
    )


def recheck_factchecks(services: Any, org: str, factcheck_ids: Sequence[str], floor: float | None = None, matcher: Any = None) -> RecheckReport:
    """Re-match the stored posts near these fact-checks and refresh their narratives and queue entries."""
    storage = services.storage
    floor = services.settings.recheck_floor if floor is None else floor
    chosen = matcher or services.matcher(org)
    hits, posts = rematch_near_posts(storage, chosen, org, factcheck_ids, floor, post_index=_post_index(services, org, chosen.embedder))
    # The posts that matched these fact-checks before are matched again too, however far their
    # vectors are now: a fact-check withdrawn (or rewritten) leaves the matches it held.
    done = {p.id for p in posts}
    held = sorted({pid for fc_id in dict.fromkeys(factcheck_ids) for pid, _ in storage.matches_for_factcheck(org, fc_id)} - done)
    if held:
        others = list(storage.get_posts(org, held).values())
        match_and_store(storage, chosen, org, others)
        posts = [*posts, *others]
    report = RecheckReport(hits=hits, rematched=[p.id for p in posts])
    if not posts:
        return report
    report.narratives = refresh_factchecks(storage, org, report.rematched)
    if report.narratives.get("changed"):
        report.alerts = reclassify_alerts(services, org, report.narratives["changed"])
    if TriageQueue(storage).count(org):
        report.queue = triage_posts(services, org, posts)
    return report
