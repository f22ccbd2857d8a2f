"""People decide whether a post repeats a fact-checked claim.

A reviewer marks a match candidate "same claim" or "not the same claim". The
decision is stored (collection `match_reviews`, one document per post and
fact-check), audited with who decided, and it overrides the matcher's own
decision wherever stored matches are read:

* the stored candidate is rewritten at once (`decision` "match" or "none",
  `decided_by` naming the reviewer), and `match_and_store` re-applies every
  review after the matcher runs again, so a rejected match never comes back;
* the triage queue is recomputed for the post: a rejected match no longer adds
  "debunked" to its priority;
* narrative pages leave out fact-checks that reviewers rejected for every member;
* `factbridge train matcher --feedback` uses the decisions as extra training pairs
  (`feedback_pairs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from factbridge.backends.storage.base import DocumentStore, Storage
from factbridge.errors import NotFound
from factbridge.models import MatchCandidate
from factbridge.workflow.accounts import Actor
from factbridge.workflow.audit import AuditLog
from factbridge.workflow.records import MATCH_REVIEWS as COLLECTION
from factbridge.workflow.records import MatchReview, MatchReviewRecords

REVIEW_VERSION = "desk-review-1"


def review_key(post_id: str, factcheck_id: str) -> str:
    return MatchReview.key_of(post_id, factcheck_id)


def reviewed(candidate: MatchCandidate, review: MatchReview) -> MatchCandidate:
    """The candidate as the reviewer decided it (the matcher's own decision stays in the review)."""
    decision = "match" if review.same else "none"
    return candidate.model_copy(update={"decision": decision, "decided_by": f"{REVIEW_VERSION}:{review.by}"})


def reviews_for_posts(storage: DocumentStore, org: str, post_ids: Sequence[str], factcheck_ids: Sequence[str]) -> dict[tuple[str, str], MatchReview]:
    return MatchReviewRecords(storage).get(org, [(p, f) for p in post_ids for f in factcheck_ids])


def apply_reviews(storage: DocumentStore, org: str, post_id: str, candidates: Sequence[MatchCandidate]) -> list[MatchCandidate]:
    """Candidates with the stored reviews applied (cheap when nobody reviewed anything)."""
    found = reviews_for_posts(storage, org, [post_id], [c.factcheck_id for c in candidates])
    return [reviewed(c, found[(post_id, c.factcheck_id)]) if (post_id, c.factcheck_id) in found else c for c in candidates]


class MatchReviews:
    def __init__(self, storage: Storage, audit: AuditLog) -> None:
        self.storage = storage
        self.audit = audit
        self.records = MatchReviewRecords(storage)

    def get(self, org: str, post_id: str, factcheck_id: str) -> MatchReview | None:
        return self.records.get(org, [(post_id, factcheck_id)]).get((post_id, factcheck_id))

    def for_post(self, org: str, post_id: str, factcheck_ids: Sequence[str]) -> dict[str, MatchReview]:
        return {f: r for (_, f), r in reviews_for_posts(self.storage, org, [post_id], factcheck_ids).items()}

    def decide(self, org: str, actor: Actor, post_id: str, factcheck_id: str, same: bool, note: str = "") -> MatchReview:
        """Record a reviewer's decision on one candidate and rewrite the stored match."""
        actor.check("match.review")
        self.storage.get_post(org, post_id)  # NotFound for a post of another organisation
        candidates = self.storage.matches_for_post(org, post_id)
        current = next((c for c in candidates if c.factcheck_id == factcheck_id), None)
        if current is None:
            raise NotFound(f"post '{post_id}' has no match candidate '{factcheck_id}'")
        before = self.get(org, post_id, factcheck_id)
        review = MatchReview(
            post_id=post_id,
            factcheck_id=factcheck_id,
            same=bool(same),
            by=actor.username,
            at=datetime.now(UTC).isoformat(timespec="seconds"),
            note=note.strip()[:2000],
            matcher_decision=before.matcher_decision if before else current.decision,
            matcher_decided_by=before.matcher_decided_by if before else current.decided_by,
            fused_score=round(current.fused_score, 4),
            decided_by=REVIEW_VERSION,
        )
        self.audit.append(org, actor.username, "match.review", COLLECTION, review.key,
                          {"same": before.same, "by": before.by} if before else {"decision": review.matcher_decision},
                          {"same": review.same, "by": actor.username}, records=[(COLLECTION, self.records.rows([review]))])
        self.storage.replace_matches(org, post_id, [reviewed(c, review) if c.factcheck_id == factcheck_id else c for c in candidates])
        return review

    def all(self, org: str) -> list[MatchReview]:
        return list(self.records.iter(org))


def rejected_factchecks(storage: Storage, org: str, post_ids: Sequence[str], factcheck_ids: Sequence[str]) -> set[str]:
    """Fact-checks that reviewers rejected for some of these posts and confirmed for none."""
    found = reviews_for_posts(storage, org, post_ids, factcheck_ids)
    confirmed = {f for (_, f), r in found.items() if r.same}
    return {f for (_, f), r in found.items() if not r.same} - confirmed


def feedback_pairs(storage: Storage, org: str) -> tuple[list[str], dict[str, set[str]]]:
    """Reviewed posts and, per post, the fact-checks reviewers called the same claim (the gold
    set of a training query; every other candidate, rejected ones included, is a negative)."""
    posts: dict[str, set[str]] = {}
    for review in MatchReviewRecords(storage).iter(org):
        gold = posts.setdefault(review.post_id, set())
        if review.same:
            gold.add(review.factcheck_id)
    return sorted(posts), posts


def feedback_training_set(services: Any, org: str, centering: bool | None = None) -> Any:
    """The desk's decisions as a re-ranker training set (`factbridge train matcher --feedback`):
    each reviewed post is a query against the organisation's library, its gold fact-checks
    are those reviewers called the same claim; None when nobody decided anything yet."""
    from factbridge.pipeline.matching import Matcher
    from factbridge.pipeline.reranker_training import TrainingSet

    ids, gold = feedback_pairs(services.storage, org)
    found = services.storage.get_posts(org, ids)
    posts = [found[i] for i in ids if i in found]
    if not posts:
        return None
    matcher = Matcher(services.storage, services.embedder, org, fusion="dense", candidates=services.settings.match_candidates, top_k=10,
                      centering=services.centering(wanted=centering))
    return TrainingSet(name=f"desk decisions ({org})", matcher=matcher, queries=posts, qrels={p.id: gold[p.id] for p in posts})
