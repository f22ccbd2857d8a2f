"""Ingest: read -> normalise -> store (idempotent, quarantining bad rows) -> embed -> match.

A file is stored in one transaction: its good posts and its quarantined rows
together, or nothing. Feeding the same file twice changes nothing: posts are
keyed by (org, id) and compared by content hash; vectors are keyed by text hash.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from factbridge.backends.connectors.base import fetch_items, open_connector
from factbridge.backends.connectors.files import connector_for
from factbridge.backends.connectors.reading import DEFAULT_LIMITS, InputLimits
from factbridge.backends.embedders.base import Embedder, EncodesAhead, Progress
from factbridge.backends.embedders.cache import text_sha
from factbridge.backends.storage.base import (
    DocumentStore,
    FactCheckStore,
    MatchStore,
    PostStore,
    QuarantineStore,
    Storage,
    VectorStore,
)
from factbridge.backends.vectors.base import VectorIndex
from factbridge.errors import InputError
from factbridge.models import FactCheck, ImportReport, MatchResult, Post, Quarantined
from factbridge.pipeline.library import read_factchecks_located
from factbridge.pipeline.matching import MATCHER_VERSION, Matcher
from factbridge.pipeline.prepare import (
    embedding_text,
    prepare_factcheck,
    prepare_post,
    signs_like_norm_text,
)
from factbridge.pipeline.stages import FunctionStage, StageContext, StageSummary
from factbridge.text.minhash import SIGNATURE_CACHE, near_duplicate_groups


@dataclass
class IngestOutcome:
    report: ImportReport
    posts: list[Post] = field(default_factory=list)
    matches: list[MatchResult] = field(default_factory=list)


class FactCheckImportStore(FactCheckStore, QuarantineStore, Protocol):
    """What a fact-check import writes to."""


def read_file(
    path: str | Path, languages: tuple[str, ...], platform: str = "",
    limits: InputLimits = DEFAULT_LIMITS, connector: str | None = None, images: Any = None,
) -> tuple[list[Post], list[Quarantined]]:
    """A file's prepared posts and its quarantined rows, read through a connector (by default
    the jsonl or csv file connector, from the file name) with rows bounded by `limits`. A
    repeated id is quarantined (the file connectors do it with the first one's line).
    `images` (an images.processing.ImageProcessor) stores, hashes and reads each post's
    images first, so that the text read from them is part of the prepared post."""
    posts: list[Post] = []
    quarantined: list[Quarantined] = []
    seen: set[str] = set()
    if connector is None and not Path(path).is_file():
        raise InputError("no such file", source=str(path))
    source = open_connector(connector or connector_for(path), path, platform, limits)
    try:
        for item in fetch_items(source):
            if images is not None and isinstance(item, Post) and item.images and item.id not in seen:
                item = images.process_post(item, str(path))  # quarantined when an image cannot be used
            if isinstance(item, Quarantined):
                quarantined.append(item)
            elif item.id in seen:
                quarantined.append(Quarantined(kind="post", source=str(path), field="id", reason=f"duplicate id '{item.id}' in the same file", raw=item.text[:500]))
            else:
                seen.add(item.id)
                posts.append(prepare_post(item, languages))
    finally:
        if images is not None:
            images.close()
    return posts, quarantined


def ingest_file(
    storage: PostStore, org: str, path: str | Path, languages: tuple[str, ...], platform: str = "",
    limits: InputLimits = DEFAULT_LIMITS, connector: str | None = None, images: Any = None,
) -> IngestOutcome:
    """Read and store a file in one transaction, its posts with its quarantined rows (no stages:
    `factbridge.pipeline.process.process` also queues them)."""
    posts, quarantined = read_file(path, languages, platform, limits, connector, images)
    result = storage.upsert_posts(org, posts, quarantined)
    report = ImportReport(source=str(path), inserted=len(result.inserted), updated=len(result.updated), unchanged=len(result.unchanged), quarantined=quarantined)
    changed = set(result.changed)
    return IngestOutcome(report=report, posts=[p for p in posts if p.id in changed])


@dataclass
class _EmbeddingPlan:
    """What `embed_posts` does with a batch: the posts lacking a vector for their text, the
    distinct texts no stored post holds (sha -> text), and for each the text whose vector it
    takes (itself, or a near-identical one of the batch)."""

    todo: list[Post]
    shas: list[str]
    vectors: dict[str, np.ndarray]  # text hash -> a stored post's vector (only when loaded)
    distinct: dict[str, str] = field(default_factory=dict)
    representative: dict[str, str] = field(default_factory=dict)

    @property
    def to_embed(self) -> list[str]:
        return [sha for sha in self.distinct if self.representative[sha] == sha]


def _plan_embedding(storage: VectorStore, embedder_id: str, org: str, posts: Sequence[Post], near_duplicate: float,
                    load: bool = True) -> _EmbeddingPlan | None:
    texts = {p.id: embedding_text(p) for p in posts}
    sha_of = {post_id: text_sha(text) for post_id, text in texts.items()}
    # the batch's own rows and the rows holding one of its texts: never every stored post's
    stored = storage.vector_shas(org, "post", embedder_id, ids=list(texts))
    todo = [p for p in posts if stored.get(p.id) != sha_of[p.id]]
    if not todo:
        return None
    shas = [sha_of[p.id] for p in todo]
    holders = storage.vector_shas(org, "post", embedder_id, shas=sorted(set(shas)))
    vectors = _stored_vectors_by_sha(storage, embedder_id, org, holders, set(shas)) if load else {}
    plan = _EmbeddingPlan(todo, shas, vectors)
    held = set(vectors) if load else set(holders.values())
    for post, sha in zip(todo, shas, strict=True):
        if sha not in held:
            plan.distinct.setdefault(sha, texts[post.id])
    plan.representative = {sha: sha for sha in plan.distinct}
    if near_duplicate > 0 and len(plan.distinct) > 1:
        first: dict[int, str] = {}
        for sha, group in zip(plan.distinct, near_duplicate_groups(list(plan.distinct.values()), near_duplicate).tolist(), strict=True):
            plan.representative[sha] = first.setdefault(group, sha)
        # the narratives and coordination stages sign `norm_text`: where it has these signatures, they find them
        SIGNATURE_CACHE.alias([(texts[p.id], p.norm_text) for p, sha in zip(todo, shas, strict=True)
                               if sha in plan.distinct and texts[p.id] != p.norm_text and signs_like_norm_text(p)])
    return plan


def embed_posts(
    storage: VectorStore, embedder: Embedder, org: str, posts: Sequence[Post], progress: Progress | None = None,
    near_duplicate: float = 0.9,
) -> dict[str, int]:
    """Query vectors for posts, stored so that later stages never compute them twice.

    Never embeds the same text twice: a text already stored for another post reuses
    that vector, and within the batch each distinct text is embedded once. With
    `near_duplicate` > 0, texts whose estimated Jaccard similarity (MinHash over
    character shingles, text/minhash.py) reaches it share one embedding too: copies
    of one message with a changed link, emoji or typo cost one encoder pass."""
    plan = _plan_embedding(storage, embedder.id, org, posts, near_duplicate)
    if plan is None:
        return {"embedded": 0, "reused": 0}
    vectors = plan.vectors
    to_embed = plan.to_embed
    if to_embed:
        vectors.update(zip(to_embed, embedder.encode_queries([plan.distinct[s] for s in to_embed], progress), strict=True))
    for sha in plan.distinct:
        vectors[sha] = vectors[plan.representative[sha]]
    if progress and len(plan.todo) > len(to_embed):
        progress(len(plan.todo) - len(to_embed))
    storage.put_vectors(org, "post", embedder.id, [(p.id, sha, vectors[sha]) for p, sha in zip(plan.todo, plan.shas, strict=True)])
    return {"embedded": len(to_embed), "reused": len(plan.todo) - len(to_embed)}


def prefetch_post_embeddings(storage: VectorStore, embedder: Embedder, org: str, posts: Sequence[Post], near_duplicate: float = 0.9,
                             besides: Sequence[Post] = ()) -> int:
    """Start encoding, in the background, the texts `embed_posts` will encode for these
    (stored) posts, when the embedder can (`EncodesAhead`); returns how many were handed
    over. The runner calls it for the next batch as this batch's stages start, so that the
    next batch is encoded while this one runs. `besides`: the batch running now, whose
    vectors may not be stored yet: a text of it is left out (its vector will be stored by
    then, and `embed_posts` reuses it)."""
    if not isinstance(embedder, EncodesAhead):
        return 0
    plan = _plan_embedding(storage, embedder.id, org, posts, near_duplicate, load=False)
    running = {text_sha(embedding_text(p)) for p in besides}
    texts = [plan.distinct[s] for s in plan.to_embed if s not in running] if plan else []
    if texts:
        embedder.prefetch_queries(texts)
    return len(texts)


def _stored_vectors_by_sha(storage: VectorStore, embedder_id: str, org: str, stored: dict[str, str], wanted: set[str]) -> dict[str, np.ndarray]:
    """Vectors already stored for other posts with one of these exact texts, by text hash."""
    holder: dict[str, str] = {}
    for item_id, sha in stored.items():
        if sha in wanted:
            holder.setdefault(sha, item_id)
    if not holder:
        return {}
    ids, matrix = storage.load_vectors(org, "post", embedder_id, ids=sorted(set(holder.values())))
    by_id = dict(zip(ids, matrix, strict=True))
    return {sha: by_id[item_id] for sha, item_id in holder.items() if item_id in by_id}


class ReviewedMatchStore(MatchStore, DocumentStore, Protocol):
    """Stored matches, and the desk's decisions on them (documents, `workflow.match_reviews`)."""


def match_and_store(storage: ReviewedMatchStore, matcher: Matcher, org: str, posts: Sequence[Post], progress: Progress | None = None) -> list[MatchResult]:
    from factbridge.workflow.match_reviews import apply_reviews
    from factbridge.workflow.records import MatchReviewRecords

    results = matcher.match_posts(posts, progress)
    reviewed = MatchReviewRecords(storage).any(org)
    for post, result in zip(posts, results, strict=True):
        if reviewed:  # a person's "same claim" / "not the same claim" outlives the matcher's next run
            result.candidates = apply_reviews(storage, org, post.id, result.candidates)
        storage.replace_matches(org, post.id, result.candidates)
    return results


def import_factcheck_files(
    storage: FactCheckImportStore,
    org: str,
    paths: Sequence[str | Path],
    languages: tuple[str, ...],
    fmt: str = "auto",
    mapping: dict[str, str] | None = None,
    on_read: Callable[[int], None] | None = None,
    limits: InputLimits = DEFAULT_LIMITS,
    images: Any = None,
) -> tuple[ImportReport, list[str]]:
    """Read and upsert fact-checks. Returns the report and the ids that are new or changed.

    Within one import an id is taken once: a later record with an id already read (in the
    same file or an earlier one of this import) is quarantined with where the first one was,
    never a silent overwrite. Re-importing later is an update, as before."""
    total = ImportReport(source=", ".join(map(str, paths)))
    changed: list[str] = []
    first_seen: dict[str, str] = {}
    for path in paths:
        good: dict[str, FactCheck] = {}
        bad: list[Quarantined] = []
        for item, line in read_factchecks_located(path, fmt, mapping, limits):
            if isinstance(item, Quarantined):
                bad.append(item)
            elif item.id in first_seen:
                reason = f"duplicate id '{item.id}' in this import (first read at {first_seen[item.id]}); the first one is kept"
                bad.append(Quarantined(kind="factcheck", source=str(path), line=line, field="id", reason=reason, raw=item.claim[:500]))
            else:
                first_seen[item.id] = f"{path}:{line}" if line else str(path)
                good[item.id] = prepare_factcheck(item, languages)
            if on_read:
                on_read(1)
        if images is not None:  # the fact-checked images, hashed for image matching
            for described in images.process_factchecks(list(good.values()), str(path)):
                if isinstance(described, Quarantined):
                    bad.append(described)
                    good.pop(described.raw, None)
                else:
                    good[described.id] = described
        result = storage.upsert_factchecks(org, list(good.values()))
        if bad:
            storage.add_quarantine(org, bad)
        total.add(ImportReport(source=str(path), inserted=len(result.inserted), updated=len(result.updated), unchanged=len(result.unchanged), quarantined=bad))
        changed.extend(result.changed)
    return total, changed


def recheck_posts(storage: Storage, matcher: Matcher, org: str, factcheck_ids: Sequence[str], floor: float = 0.80) -> dict[str, list[str]]:
    """After new fact-checks arrive, re-match the stored posts that come near them.

    Returns, per new fact-check, the posts now matched to it ("this debunk
    matches 37 posts seen last week"). Only posts whose stored vector is within
    `floor` cosine of a new fact-check are re-matched, so this stays cheap.
    `pipeline.recheck.recheck_factchecks` also brings what depends on the
    matches (narratives, queue) up to date.
    """
    return rematch_near_posts(storage, matcher, org, factcheck_ids, floor)[0]


RECHECK_NEIGHBOURS = 2000  # stored posts looked at per new fact-check through a post index


def rematch_near_posts(
    storage: Storage, matcher: Matcher, org: str, factcheck_ids: Sequence[str], floor: float = 0.80,
    post_index: VectorIndex | None = None,
) -> tuple[dict[str, list[str]], list[Post]]:
    """`recheck_posts`, also returning the posts that were matched again (their stored matches
    were replaced: a post can gain the new fact-check or lose an older one it now ranks below).

    With `post_index` (backends/vectors/selection.py) the posts near each new fact-check
    come from the index (its nearest `RECHECK_NEIGHBOURS`), never from loading every post."""
    import numpy as np

    new = list(dict.fromkeys(factcheck_ids))
    if not new:
        return {}, []
    fc_ids, fc_vecs = storage.load_vectors(org, "factcheck", matcher.embedder.id, ids=new)
    if post_index is not None:
        found = {pid for vec in fc_vecs for pid, score in post_index.search(vec, RECHECK_NEIGHBOURS, matcher.embedder.id) if score >= floor}
        near = sorted(found)
    else:
        post_ids, post_vecs = storage.load_vectors(org, "post", matcher.embedder.id)
        if not post_ids or not fc_ids:
            return {}, []
        sims = post_vecs @ fc_vecs.T
        near = sorted({post_ids[i] for i in np.nonzero((sims >= floor).any(axis=1))[0]})
    if not near:
        return {}, []
    posts = list(storage.get_posts(org, near).values())
    out: dict[str, list[str]] = {f: [] for f in new}
    for post, result in zip(posts, match_and_store(storage, matcher, org, posts), strict=True):
        for cand in result.candidates:
            if cand.factcheck_id in out and cand.decision in {"match", "possible"}:
                out[cand.factcheck_id].append(post.id)
    return out, posts


def embedding_stage(ctx: StageContext, org: str, posts: Sequence[Post]) -> StageSummary:
    """Stage: the posts' query vectors, stored once and read by every later stage."""
    done = embed_posts(ctx.storage, ctx.embedder, org, posts, near_duplicate=ctx.settings.embed_near_duplicate)
    return {"embedded": done["embedded"], "reused": done["reused"]}


def matching_stage(ctx: StageContext, org: str, posts: Sequence[Post]) -> StageSummary:
    """Stage: match the posts (their stored vectors) against the fact-check library."""
    if not ctx.storage.count_factchecks(org):
        return {"matched": 0, "note": "empty fact-check library"}
    results = match_and_store(ctx.storage, ctx.matcher(org), org, posts)
    return {"matched": sum(1 for r in results if r.best and r.best.decision != "none")}


EMBEDDING_STAGE = FunctionStage("embedding", "embedding-1", embedding_stage, writes=("vectors:post",),
                                doc="query vectors of the posts, stored per embedder and text hash")
MATCHING_STAGE = FunctionStage("matching", MATCHER_VERSION, matching_stage, needs=("embedding",), writes=("matches",),
                               doc="which fact-checks each post repeats: candidates, scores, decision, decided_by")
