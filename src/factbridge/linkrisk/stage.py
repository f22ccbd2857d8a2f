"""The ``linkrisk`` pipeline stage: every link in every ingested post, scored and stored.

Stored per post in the ``linkrisk`` document collection (org-scoped), id = post
id, sort key = ``max_score`` (so ``list_docs(org, "linkrisk")`` gives the
riskiest posts first and the triage queue reads ``get_docs(org, "linkrisk",
post_ids)``). The shape is documented in the package docstring
(`factbridge.linkrisk`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from factbridge.errors import InputError
from factbridge.linkrisk.feeds import FeedIndex, list_feeds, load_feed_index
from factbridge.linkrisk.lookalike import LookalikeDetector
from factbridge.linkrisk.resolve import ResolutionBudget, Resolver
from factbridge.linkrisk.scoring import RULES_VERSION, LinkRiskScorer, level_of
from factbridge.linkrisk.urls import NormalizedUrl, extract_urls, normalize_url
from factbridge.models import Post
from factbridge.pipeline import records
from factbridge.pipeline.records import LinkRiskRecord, LinkRisks, LinkRiskUrl
from factbridge.pipeline.stages import FunctionStage, StageContext, StageSummary

COLLECTION = records.LINKRISK

# One scorer per (storage, org, feed versions, settings): loading feeds and building
# the detector is the slow part, scoring is not.
_SCORERS: dict[tuple[Any, ...], LinkRiskScorer] = {}


def scorer_for(services: Any, org: str, resolve: bool | None = None) -> LinkRiskScorer:
    s = services.settings.linkrisk
    storage = services.storage
    feeds_key = tuple(sorted((f.name, f.sha256) for f in list_feeds(storage, org)))
    resolve = s.resolve if resolve is None else resolve
    key = (id(storage), org, feeds_key, s.protected_domains, s.flag_threshold, resolve, s.resolve_timeout, s.resolve_max_redirects)
    scorer = _SCORERS.get(key)
    if scorer is None:
        index = load_feed_index(storage, org) if feeds_key else FeedIndex()
        resolver = Resolver(timeout=s.resolve_timeout, max_redirects=s.resolve_max_redirects) if resolve else None
        scorer = LinkRiskScorer(index, LookalikeDetector.from_setting(s.protected_domains), s.flag_threshold, resolver)
        if len(_SCORERS) > 16:
            _SCORERS.clear()
        _SCORERS[key] = scorer
    return scorer


def post_links(post: Post) -> tuple[list[str], list[dict[str, str]]]:
    """Links of a post: those found in the text (defanged ones too) and those the
    connector gave, each once by normalised form; plus the link-like strings set
    aside (not web links, or a host with no public suffix such as the
    ``https://example-site`` a plain extractor cuts out of ``example-site . com``)."""
    links, unparsed = _normalized_links(post)
    return [n.original for n in links], unparsed


def _normalized_links(post: Post) -> tuple[list[NormalizedUrl], list[dict[str, str]]]:
    """`post_links`, each link in its normalised form (`normalize_url` of the link as written:
    what scoring the written link normalises it to again)."""
    seen: dict[str, NormalizedUrl] = {}
    unparsed: list[dict[str, str]] = []
    for raw in [*extract_urls(post.text), *post.urls]:
        try:
            n = normalize_url(raw)
        except InputError as exc:
            unparsed.append({"url": raw, "reason": exc.reason})
            continue
        if not n.is_ip and not n.suffix and n.url not in seen:
            unparsed.append({"url": raw, "reason": f"host '{n.host}' has no public suffix"})
            continue
        seen.setdefault(n.url, n)
    return list(seen.values()), unparsed


def score_post(scorer: LinkRiskScorer, post: Post, scored_at: str | None = None) -> LinkRiskRecord:
    """The post's link-risk record; `scored_at` (UTC, to the second) defaults to now (the stage
    reads the clock once per batch)."""
    urls: list[LinkRiskUrl] = []
    links, unparsed = _normalized_links(post)
    for link in links:
        try:
            urls.append(LinkRiskUrl.from_doc(scorer.score(link).as_dict()))
        except InputError as exc:
            unparsed.append({"url": link.original, "reason": exc.reason})
    urls.sort(key=lambda u: -u.score)  # riskiest first
    return LinkRiskRecord(
        post_id=post.id, urls=urls, level=level_of(urls[0].score if urls else 0.0), unparsed=list(unparsed),
        decided_by=scorer.decided_by, scored_at=scored_at or _now(),
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def linkrisk_stage(services: StageContext, org: str, posts: Sequence[Post]) -> StageSummary:
    """Stage: score every link of every post; store one document per post."""
    if not posts:
        return {"posts": 0, "links": 0, "flagged_posts": 0, "flagged_links": 0}
    scorer = scorer_for(services, org)
    budget = None
    if isinstance(scorer.resolver, Resolver):
        # following short links is slow: one total budget for the batch, on a copy of the shared scorer
        budget = ResolutionBudget(scorer.resolver, services.settings.linkrisk.resolve_budget_s)
        scorer = copy.copy(scorer)
        scorer.resolver = budget
    now = _now()
    scored = [score_post(scorer, post, now) for post in posts]
    LinkRisks(services.storage).put(org, scored)
    summary: StageSummary = {
        "posts": len(scored),
        "links": sum(len(r.urls) for r in scored),
        "flagged_posts": sum(1 for r in scored if r.flagged_urls),
        "flagged_links": sum(r.flagged_urls for r in scored),
    }
    if budget is not None:
        summary.update(links_followed=budget.followed, links_not_followed=budget.not_followed)
    return summary


def rescore_posts(services: Any, org: str, batch_size: int = 1000, progress: Any = None) -> dict[str, Any]:
    """Score every stored post again (after a feed update or a new protected list),
    so links seen before today's feed are judged by it too."""
    total: dict[str, Any] = {"posts": 0, "links": 0, "flagged_posts": 0, "flagged_links": 0}
    batch: list[Post] = []
    for post in services.storage.iter_posts(org, batch_size):
        batch.append(post)
        if len(batch) >= batch_size:
            for key, value in linkrisk_stage(services, org, batch).items():
                total[key] += value
            if progress:
                progress(len(batch))
            batch = []
    if batch:
        for key, value in linkrisk_stage(services, org, batch).items():
            total[key] += value
        if progress:
            progress(len(batch))
    return total


def riskiest_posts(storage: Any, org: str, limit: int = 20, offset: int = 0) -> list[LinkRiskRecord]:
    return LinkRisks(storage).riskiest(org, limit, offset)


STAGE = FunctionStage(
    "linkrisk", f"linkrisk-stage-1 ({RULES_VERSION})", linkrisk_stage, writes=(COLLECTION,),
    doc="every link of every post scored (feeds, look-alike domains, rules)",
)
