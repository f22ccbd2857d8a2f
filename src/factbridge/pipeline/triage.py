"""The triage queue: what a desk should look at first, and why.

Priority of a post is a weighted sum of five components, each in [0, 1]:

* checkworthiness — the stored check-worthiness probability;
* reach — log-scaled weighted engagement (likes, shares, comments, views, audience);
* velocity — how fast it is being repeated: near-identical posts (cosine of
  the stored vectors) and posts matched to the same fact-check, per hour over
  a window; 1 - exp(-rate / scale);
* debunked — it repeats an already fact-checked claim (stored match decision
  "match" 1.0, "possible" 0.6; halved again when the fact-check rated the claim true);
* risk — signals of other stages when present: the link-risk stage's document of
  the post ("max_score" in [0, 1]) and a narrative's own "risk" when a stage stores one.

priority = sum(weight * value) / sum(weights); the weights are settings. Each
entry stores the components, their contributions and `decided_by` with the
versions of every model or rule that fed it.

The gate: a post the check-worthiness model calls clearly not a claim
(greeting, opinion, joke, or a confident "no") never outranks any other post,
whatever its reach: its sort key is its priority minus 1.

Narratives (the "narratives" collection, when the narratives stage writes it)
get queue entries too, id "narrative:<id>", built from their members: the best
member's check-worthiness and debunk, summed reach, and the narrative's posts
per hour (its "counts_hourly", else its members' times). A post's narrative is
its `NarrativeMembership` (`factbridge.pipeline.records`); a narrative's members
are its "recent_posts". A post's velocity is the larger of its own repeat rate
and its narrative's rate; the evidence says which. Entries are `QueueEntry`
records, written through `TriageQueue`.

A run recomputes the entries of its posts, of the stored posts they repeat (a new copy
changes their velocity; they are found in the post index, so they are not put into it
again, and exact copies share one search) and of their narratives. A narrative's members
outside the run are not gathered again: their facts are read from the narrative's member
summary (`triage_members`, `MemberFacts` per member as of its last triage, written in the
transaction of the queue entries), else from the member's own queue entry, else gathered
(`_narrative_members` says when each applies); the entries are the full recompute's
(tests/test_triage_members.py).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from factbridge.backends.vectors.base import STAMP_UNIT, search_above, search_batch, time_stamp
from factbridge.backends.vectors.selection import VectorIndexTuning, stored_vector_index
from factbridge.docfields import number as _number
from factbridge.models import MatchCandidate, Post
from factbridge.pipeline import records
from factbridge.pipeline.collector import collector_paused
from factbridge.pipeline.narratives import written_narratives
from factbridge.pipeline.records import (
    TRIAGE_MEMBERS,
    CheckworthinessRecord,
    CheckworthinessScores,
    Component,
    LinkRisks,
    MemberFacts,
    NarrativeMemberFacts,
    NarrativeMembers,
    NarrativeRecord,
    Narratives,
    QueueEntry,
    TriageMembers,
    TriageQueue,
)
from factbridge.pipeline.stages import FunctionStage, StageContext, StageSummary
from factbridge.pipeline.withdrawals import withdrawal_of
from factbridge.settings import TriageSettings

TRIAGE_VERSION = "triage-1"
QUEUE = records.QUEUE
NARRATIVES = "narratives"
NARRATIVE_MEMBERS = records.MEMBERS
LINKRISK = "linkrisk"
MIN_NARRATIVE_POSTS = 2
_ENGAGEMENT = ("likes", "shares", "comments", "views", "followers")  # `_weighted`'s arguments, as `Engagement` names them
COMPONENTS = ("checkworthiness", "reach", "velocity", "debunked", "risk")
_TRUE_RATINGS = ("true", "correct", "accurate", "vrai", "exact", "đúng", "sự thật", "ត្រឹមត្រូវ", "ពិត")


# --------------------------------------------------------------------------- components


def weighted_engagement(post: Post) -> float:
    e = post.engagement
    return _weighted(e.likes, e.shares, e.comments, e.views, e.followers)


def _weighted(likes: int, shares: int, comments: int, views: int, followers: int) -> float:
    return likes + 2.0 * shares + comments + views / 100.0 + followers / 1000.0


def reach_value(engagement: float, scale: float) -> float:
    return min(1.0, math.log1p(max(0.0, engagement)) / math.log1p(max(scale, 1.0)))


def velocity_value(rate_per_hour: float, scale: float) -> float:
    return 1.0 - math.exp(-rate_per_hour / max(scale, 1e-9))


def debunk_evidence(matches: Sequence[MatchCandidate], ratings: dict[str, str]) -> tuple[float, dict[str, Any]]:
    best_value = 0.0
    best: dict[str, Any] = {}
    for cand in matches:
        if cand.decision not in ("match", "possible"):
            continue
        value = 1.0 if cand.decision == "match" else 0.6
        rating = ratings.get(cand.factcheck_id, "")
        if any(word in rating.lower() for word in _TRUE_RATINGS) and "false" not in rating.lower() and "faux" not in rating.lower():
            value *= 0.5  # repeating a claim rated true is less urgent than resurfacing a false one
        if value > best_value:
            best_value = value
            best = {"factcheck_id": cand.factcheck_id, "decision": cand.decision, "fused_score": round(cand.fused_score, 4), "rating": rating, "decided_by": cand.decided_by}
    return best_value, best


def _unit(value: float | None) -> float | None:
    return max(0.0, min(1.0, value)) if value is not None else None


def narrative_rate(narrative: NarrativeRecord, window_hours: float) -> float | None:
    """Repeats per hour over the window ending at the narrative's last hour, from its hourly
    counts (the first post is not a repeat, as in `repeat_rate`)."""
    hourly = narrative.counts_hourly
    if not hourly:
        return None
    try:
        hours = {datetime.fromisoformat(h + ":00:00+00:00"): int(c) for h, c in hourly.items()}
    except (TypeError, ValueError):
        return None
    newest = max(hours)
    start = newest - timedelta(hours=window_hours)
    return max(0, sum(c for h, c in hours.items() if h > start) - 1) / window_hours


@dataclass
class TriageReads:
    """What one triage run has read: each narrative document once (a run reads the narratives
    of its batch, of the batch's repeats and of their members: mostly the same ones), and
    whether the narratives and link-risk collections hold anything, asked once per run."""

    storage: Any
    org: str
    narratives: dict[str, NarrativeRecord] = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)  # narrative ids read and not found
    holds: dict[str, bool] = field(default_factory=dict)
    rates: dict[tuple[str, float], float | None] = field(default_factory=dict)  # (narrative id, window) -> narrative_rate
    posts: dict[str, Post] = field(default_factory=dict)  # stored posts read by this run (repeats, their neighbours)
    stamped: dict[str, int | None] = field(default_factory=dict)  # post id -> `time_stamp` of its time

    def stamps(self, posts: Iterable[Post]) -> dict[str, int | None]:
        """`time_stamp` of each post's time, made once per run."""
        out: dict[str, int | None] = {}
        for post in posts:
            if post.id not in self.stamped:
                self.stamped[post.id] = time_stamp(post.created_at)
            out[post.id] = self.stamped[post.id]
        return out

    def stored_posts(self, ids: Sequence[str]) -> dict[str, Post]:
        """These stored posts (those found), each read once per run: a batch's repeats are the
        refreshed posts, and the refreshed posts' repeats mostly the same posts again."""
        unread = sorted(set(ids) - self.posts.keys())
        if unread:
            self.posts.update(self.storage.get_posts(self.org, unread))
        return {i: self.posts[i] for i in ids if i in self.posts}

    def any(self, collection: str) -> bool:
        if collection not in self.holds:
            self.holds[collection] = bool(self.storage.count_docs(self.org, collection))
        return self.holds[collection]

    def narrative_records(self, ids: Sequence[str]) -> dict[str, NarrativeRecord]:
        """The records of these narratives (those stored), each read once per run."""
        unread = sorted(set(ids) - self.narratives.keys() - self.absent)
        if unread:
            found = Narratives(self.storage).get(self.org, unread)
            self.narratives.update(found)
            self.absent.update(set(unread) - found.keys())
        return {i: self.narratives[i] for i in ids if i in self.narratives}

    def narrative_rate(self, narrative: NarrativeRecord, window_hours: float) -> float | None:
        """`narrative_rate` of a narrative this run read, computed once per run (every member's
        facts ask for it)."""
        if self.narratives.get(narrative.id) is not narrative:  # not one of this run's records
            return narrative_rate(narrative, window_hours)
        key = (narrative.id, window_hours)
        if key not in self.rates:
            self.rates[key] = narrative_rate(narrative, window_hours)
        return self.rates[key]


def narratives_of_posts(storage: Any, org: str, post_ids: Sequence[str], reads: TriageReads | None = None) -> dict[str, list[NarrativeRecord]]:
    """The narratives each post belongs to (empty when no narratives stage ran).

    From this process's narratives engine when it holds what is stored (`written_narratives`,
    as the bursts stage reads them): each post's narrative, and the records of the narratives
    its last write stored, without reading and decoding their documents; the other narratives
    (written by earlier batches) are read from the store, and everything is when another
    process wrote since."""
    reads = reads or TriageReads(storage, org)
    if not reads.any(NARRATIVES):
        return {}
    view = written_narratives(storage, org, post_ids)
    if view is None:
        narrative_of = {pid: m.narrative_id for pid, m in NarrativeMembers(storage).get(org, post_ids).items()}
    else:
        narrative_of, written = view
        for nid, record in written.items():
            if record is not None and nid not in reads.narratives:
                reads.narratives[nid] = record
    found = reads.narrative_records(sorted(set(narrative_of.values())))
    return {pid: [found[nid]] for pid, nid in narrative_of.items() if nid in found}


@dataclass
class PostFacts:
    post: Post
    checkworthiness: CheckworthinessRecord | None  # None: the stage was skipped
    debunked: tuple[float, dict[str, Any]]
    repeats: list[str]  # near-identical or same-claim posts, itself excluded
    rate_per_hour: float
    risk: tuple[float, dict[str, Any]]
    velocity_source: str = "repeats"
    narratives: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=8)
def _weighting(weights: TriageSettings) -> tuple[dict[str, float], float, dict[str, float | None], str]:
    """Per settings, once: each component's weight, their sum (1 when 0), the weight as stored
    and the triage's `decided_by`."""
    w = {c: weights.weight(c) for c in COMPONENTS}
    return w, sum(w.values()) or 1.0, {c: _number(v) for c, v in w.items()}, f"{TRIAGE_VERSION} (weights {', '.join(f'{c}={w[c]}' for c in COMPONENTS)})"


@functools.lru_cache(maxsize=1)
def _second(now: int) -> str:
    """`datetime.now(UTC).isoformat(timespec="seconds")` at `now` (`int(time.time())`): made
    once per second instead of once per entry."""
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")


def _entry(entry_id: str, kind: Literal["post", "narrative"], weights: TriageSettings, values: dict[str, float], evidence: dict[str, Any],
           gated: str | None, decided_by: dict[str, str], **fields: Any) -> QueueEntry:
    """The entry as `QueueEntry.from_doc` reads the document of these fields (built directly:
    the record is what is stored, `to_doc()`, with no document made and read back first)."""
    w, total, stored_w, triage_by = _weighting(weights)
    parts = [w[c] * values[c] for c in COMPONENTS]
    # `float(round(...))` is `_number(round(...))` of a number: a value or a contribution (a
    # quotient: a float already) kept as the float it is, without `_number`'s type checks
    components = {
        c: Component(float(round(values[c], 4)) or 0.0, stored_w[c], round(part / total, 4), dict(evidence.get(c) or {}))
        for c, part in zip(COMPONENTS, parts, strict=True)
    }
    priority = sum(parts) / total
    decided = {"triage": triage_by, **decided_by}
    # Gated posts sort below every ungated one (`QueueEntry.sort_key`): priorities live in [0, 1].
    return QueueEntry(
        id=entry_id, kind=kind, priority=round(priority, 4) or 0.0, components=components,
        decided_by={str(k): str(v) for k, v in decided.items()}, gated=gated is not None, gate_reason=str(gated) if gated else None,
        updated_at=_second(int(time.time())), **fields,
    )


def post_entry(facts: PostFacts, weights: TriageSettings) -> QueueEntry:
    cw = facts.checkworthiness
    debunk_value, debunk = facts.debunked
    risk_value, risk = facts.risk
    engagement = weighted_engagement(facts.post)
    values = {
        "checkworthiness": cw.score if cw else 0.0,
        "reach": reach_value(engagement, weights.reach_scale),
        "velocity": velocity_value(facts.rate_per_hour, weights.velocity_scale),
        "debunked": debunk_value,
        "risk": risk_value,
    }
    evidence = {
        "checkworthiness": {"label": cw.label, "threshold": cw.threshold, "contributions": cw.contributions} if cw else {"label": None, "threshold": None, "contributions": {}},
        "reach": {"weighted_engagement": round(engagement, 1), **facts.post.engagement.model_dump()},
        "velocity": {"repeats": len(facts.repeats), "window_hours": weights.window_hours, "per_hour": round(facts.rate_per_hour, 3), "source": facts.velocity_source, "examples": facts.repeats[:10]},
        "debunked": debunk or {"note": "no stored match to a fact-check"},
        "risk": risk or {"note": "no risk signal stored"},
    }
    gated = None
    if cw and cw.clearly_not_claim:
        markers = cw.not_claim_markers
        gated = f"clearly not a claim ({', '.join(markers)})" if markers else f"clearly not a claim (score {cw.score:.2f})"
    decided_by = {"checkworthiness": cw.decided_by if cw else "missing"}
    if debunk.get("decided_by"):
        decided_by["matching"] = str(debunk["decided_by"])
    if risk.get("decided_by"):
        decided_by["risk"] = str(risk["decided_by"])
    post = facts.post
    return _entry(post.id, "post", weights, values, evidence, gated, decided_by, post_id=str(post.id), text=post.text[:280],
                  language=str(post.language) if post.language else None, platform=str(post.platform or ""),
                  created_at=post.created_at.isoformat() if post.created_at else None, narratives=[str(n) for n in facts.narratives])


# --------------------------------------------------------------------------- gathering facts


REPEAT_NEIGHBOURS = 200  # nearest stored posts looked at per post: enough to saturate velocity


def _repeat_groups(services: Any, org: str, posts: Sequence[Post], similarity: float, window_hours: float, reads: TriageReads,
                   fresh: bool = True) -> dict[str, list[str]]:
    """Near-identical posts by stored vector (never re-embedded), within the velocity window.

    Goes through the organisation's post vector index (backends/vectors/selection.py:
    pgvector HNSW on PostgreSQL, a persisted HNSW index beside SQLite): the stored posts
    whose cosine with each post reaches `similarity` (a threshold search, at most
    `REPEAT_NEIGHBOURS`), kept when they were posted within `window_hours` of it. Nothing loads every post.
    `fresh`: the posts were just stored (a batch) and go into the index first; the posts a
    batch refreshes were found in the index, so they are there already. Posts with the same
    vector (exact copies: their text was embedded once) are searched once: the same query
    gets the same answer. The search asks only for the span the batch's windows cover
    (`within`): the embedded HNSW index leaves out the segments of other times, so a post's
    search costs by the posts of its window, not by the whole history; pgvector walks the graphs
    of the span's periods only, keeping the posts of the span (an old text's hundreds of copies
    never crowd out the window's own: tests/test_pgvector_window.py)."""
    storage, embedder = services.storage, services.embedder
    groups: dict[str, list[str]] = {p.id: [] for p in posts}
    # each vector's text hash read before it (the index then knows what it was made from)
    shas = storage.vector_shas(org, "post", embedder.id, ids=[p.id for p in posts]) if fresh else {}
    ids, matrix = storage.load_vectors(org, "post", embedder.id, ids=[p.id for p in posts])
    if not ids:
        return groups
    s = services.settings
    stamps = reads.stamps(posts)
    index = stored_vector_index(
        storage, org, "post", embedder.id, int(matrix.shape[1]), choice=s.vector_index, tuning=VectorIndexTuning.from_settings(s),
        data_dir=None if ":memory:" in s.resolved_storage_url else s.data_dir, fresh_ids=ids if fresh else (), resync_s=s.matcher_cache_s,
        fresh_vectors=matrix if fresh else None, fresh_stamps=[stamps[i] for i in ids] if fresh else None,  # just read: not read again to be added
        fresh_shas=[shas.get(i, "") for i in ids] if fresh else None,
    )
    window = _window(window_hours)
    batch_times = [stamps[i] for i in ids]
    # only posts within the window of one of the batch's are kept: the index may leave out the rest
    # (the HNSW index's segments of other days, PostgreSQL's periods); a post without a time keeps
    # every hit, so all is searched for it, and for it alone (a search of everything walks every
    # segment or period)
    known = [t for t in batch_times if t is not None]
    within = (min(known) - window, max(known) + window) if known else None
    # the batch's searches in one call, one per distinct vector, the hits under `similarity` dropped
    # inside it: a threshold search for a batch's new posts (most have few near-copies); the posts a
    # batch refreshes are copies it has just found, most with many (93 % of them past the threshold
    # search's first pass: docs/performance.md §5, "Seventh round"), so one wide search each
    row_of: dict[bytes, int] = {}  # a vector -> its distinct query
    first: list[int] = []  # a distinct query -> its first row
    distinct: list[int] = []  # a row -> its distinct query
    for n in range(len(ids)):
        d = row_of.setdefault(matrix[n].tobytes(), len(first))
        if d == len(first):
            first.append(n)
        distinct.append(d)
    queries = matrix if len(first) == len(ids) else matrix[first]
    untimed = {distinct[n] for n, t in enumerate(batch_times) if t is None}  # searched over all times
    parts = [(sorted(untimed), None), ([d for d in range(len(first)) if d not in untimed], within)] if untimed and known else [(list(range(len(first))), within)]
    hits_of: list[list[tuple[str, float]]] = [[] for _ in first]
    for part, span in parts:
        rows = queries if len(part) == len(first) else queries[part]
        if fresh:  # each query is a vector the index has just taken, under its post's id
            answers = search_above(index, rows, REPEAT_NEIGHBOURS, embedder.id, similarity, span, held=[ids[first[d]] for d in part])
        else:
            answers = search_batch(index, rows, REPEAT_NEIGHBOURS, embedder.id, similarity, span)
        for d, hits in zip(part, answers, strict=True):
            hits_of[d] = hits
    near = {pid: [other for other, _ in hits_of[d] if other != pid] for pid, d in zip(ids, distinct, strict=True)}
    stamps.update(reads.stamps(reads.stored_posts(sorted({o for found in near.values() for o in found} - stamps.keys())).values()))
    spans: dict[int, tuple[int, int] | None] = {}  # a distinct query -> the earliest and latest time of its hits, when every hit has one
    for d, hits in enumerate(hits_of):
        times = [stamps.get(o) for o, _ in hits]  # None: a hit without a time (or not read)
        known = cast(list[int], times)  # when None is not in it
        spans[d] = (min(known), max(known)) if times and None not in times else None
    for pid, d in zip(ids, distinct, strict=True):
        found, t, span = near[pid], stamps.get(pid), spans[d]
        if t is None:
            groups[pid] = [o for o in found if o in stamps]
        elif span is not None and t - window <= span[0] and span[1] <= t + window:  # every hit within the window: a campaign's copies
            groups[pid] = found
        else:
            groups[pid] = [o for o in found if o in stamps and ((u := stamps[o]) is None or t - window <= u <= t + window)]
    return groups


def _same_claim(storage: Any, org: str, matches: dict[str, list[MatchCandidate]]) -> dict[str, list[str]]:
    """Posts matched ("match") to the same fact-check as each post."""
    out: dict[str, list[str]] = {}
    cache: dict[str, list[str]] = {}
    for pid, cands in matches.items():
        others: list[str] = []
        for cand in cands:
            if cand.decision != "match":
                continue
            if cand.factcheck_id not in cache:
                cache[cand.factcheck_id] = [p for p, c in storage.matches_for_factcheck(org, cand.factcheck_id) if c.decision == "match"]
            others.extend(p for p in cache[cand.factcheck_id] if p != pid)
        out[pid] = others
    return out


def repeat_rate(post: Post, repeats: Sequence[Post], window_hours: float) -> float:
    """Copies (the post and its repeats) seen within the window ending at the newest copy, per hour."""
    return _stamps_rate([time_stamp(p.created_at) for p in (post, *repeats)], window_hours)


@functools.lru_cache(maxsize=8)
def _window(window_hours: float) -> int:
    """The window in `time_stamp` steps, whole microseconds (made once per window: every rate asks for it)."""
    return timedelta(hours=window_hours) // STAMP_UNIT


def _stamps_rate(stamps: Sequence[int | None], window_hours: float) -> float:
    """`repeat_rate` of copies posted at these `time_stamp`s (the first one is the post; None: a
    copy without a time)."""
    known = [t for t in stamps if t is not None]
    if not known:
        return (len(stamps) - 1) / window_hours
    start = max(known) - _window(window_hours)
    in_window = len(stamps) if min(known) >= start else len([t for t in known if t >= start]) + (len(stamps) - len(known))
    return (in_window - 1) / window_hours if in_window > 1 else 0.0


def _risk_signals(reads: TriageReads, posts: Sequence[Post], narratives_of: dict[str, list[NarrativeRecord]]) -> dict[str, tuple[float, dict[str, Any]]]:
    out: dict[str, tuple[float, dict[str, Any]]] = {}
    by_post = LinkRisks(reads.storage).max_scores(reads.org, [p.id for p in posts]) if reads.any(LINKRISK) else {}
    for post in posts:
        best: tuple[float, dict[str, Any]] = (0.0, {})
        candidates: list[tuple[str, float | None, str]] = []
        if post.id in by_post:
            max_score, rule = by_post[post.id]
            candidates.append((f"linkrisk:{post.id}", max_score, rule))
        candidates += [(f"narrative:{n.id}", _unit(n.risk), n.decided_by) for n in narratives_of.get(post.id, [])]
        for source, value, rule in candidates:
            if value is not None and value > best[0]:
                best = (value, {"source": source, "value": round(value, 4), "decided_by": rule})
        out[post.id] = best
    return out


def _debunk_inputs(storage: Any, org: str, ids: Sequence[str]) -> tuple[dict[str, list[MatchCandidate]], dict[str, str]]:
    """Each post's stored match candidates, and the ratings of the fact-checks they name
    ("match" or "possible"). A match stored before its fact-check was withdrawn (until the
    re-check replaces it) is no debunk: left out."""
    stored_matches = storage.matches_for_posts(org, ids)  # one read for all of them
    matches = {pid: stored_matches.get(pid, []) for pid in ids}
    ratings_wanted = sorted({c.factcheck_id for cands in matches.values() for c in cands if c.decision in ("match", "possible")})
    wanted_fcs = storage.get_factchecks(org, ratings_wanted) if ratings_wanted else {}
    withdrawn = {fid for fid, fc in wanted_fcs.items() if withdrawal_of(fc) is not None}
    if withdrawn:
        matches = {pid: [c for c in cands if c.factcheck_id not in withdrawn] for pid, cands in matches.items()}
    return matches, {fid: fc.rating for fid, fc in wanted_fcs.items()}


def _repeat_ids(services: Any, org: str, posts: Sequence[Post], weights: TriageSettings, reads: TriageReads, fresh: bool,
                matches: dict[str, list[MatchCandidate]]) -> dict[str, list[str]]:
    """Each post's repeats: near-identical posts (`_repeat_groups`), then posts matched to the
    same fact-check, each once."""
    near = _repeat_groups(services, org, posts, weights.duplicate_similarity, weights.window_hours, reads, fresh)
    same = _same_claim(services.storage, org, matches)
    return {p.id: list(dict.fromkeys(near.get(p.id, []) + same.get(p.id, []))) for p in posts}


def gather_facts(services: Any, org: str, posts: Sequence[Post], weights: TriageSettings, repeats: bool = True,
                 reads: TriageReads | None = None, fresh: bool = True, refresh: bool = False) -> dict[str, PostFacts]:
    """What triage knows of each post. `repeats=False` skips the repeat search (no repeats,
    velocity from the post's narrative only): enough for a narrative's entry, which reads
    its members' check-worthiness, reach, debunk and risk, never their repeats. `reads`:
    what this triage run has read already (each gathering of a run shares it). `fresh`:
    the posts were just stored and their vectors go into the post index before the search
    (False: posts already searchable, the repeats a batch refreshes). `refresh`: also the
    facts of the stored posts they repeat (a new copy changes their velocity; they are
    searchable already), after the posts' own, gathered with them: each collection read
    once for both (the same facts as gathering them apart with `fresh=False`)."""
    storage = services.storage
    reads = reads or TriageReads(storage, org)
    matches, ratings = _debunk_inputs(storage, org, [p.id for p in posts])
    repeat_ids = _repeat_ids(services, org, posts, weights, reads, fresh, matches) if repeats else {p.id: [] for p in posts}
    if repeats and refresh:
        extra = list(reads.stored_posts(sorted({r for rs in repeat_ids.values() for r in rs} - {p.id for p in posts})).values())
        if extra:
            more, more_ratings = _debunk_inputs(storage, org, [p.id for p in extra])
            repeat_ids.update(_repeat_ids(services, org, extra, weights, reads, False, more))
            matches.update(more)
            ratings.update(more_ratings)  # a fact-check has one rating: the same in both reads
            posts = [*posts, *extra]
    ids = [p.id for p in posts]
    # The check-worthiness stage runs before this one (declared need); when it was skipped a
    # post has no score: the component is 0 and decided_by says "missing".
    stored = CheckworthinessScores(storage).get(org, ids)
    others = reads.stored_posts(sorted({r for rs in repeat_ids.values() for r in rs}))
    narratives_of = narratives_of_posts(storage, org, ids, reads)
    risks = _risk_signals(reads, posts, narratives_of)
    facts: dict[str, PostFacts] = {}
    stamps = reads.stamps(others.values())
    own = reads.stamps(posts)
    for post in posts:
        reps = [r for r in repeat_ids[post.id] if r in others]
        own_rate = _stamps_rate([own[post.id], *[stamps[r] for r in reps]], weights.window_hours)
        rates = [(n.id, reads.narrative_rate(n, weights.window_hours)) for n in narratives_of.get(post.id, [])]
        best_narrative = max(((nid, r) for nid, r in rates if r is not None), key=lambda x: x[1], default=None)
        rate, via = own_rate, "repeats"
        if best_narrative is not None and best_narrative[1] > own_rate:
            rate, via = best_narrative[1], f"narrative:{best_narrative[0]}"
        facts[post.id] = PostFacts(
            post=post,
            checkworthiness=stored.get(post.id),
            debunked=debunk_evidence(matches[post.id], ratings),
            repeats=reps,
            rate_per_hour=rate,
            risk=risks[post.id],
            velocity_source=via,
            narratives=[n.id for n in narratives_of.get(post.id, [])],
        )
    return facts


def member_facts(facts: PostFacts) -> MemberFacts:
    """What a narrative's entry reads of a member whose facts this run gathered."""
    cw = facts.checkworthiness
    return MemberFacts(
        facts.post.id, time_stamp(facts.post.created_at), cw.score if cw else 0.0, bool(cw and cw.label == "claim"), bool(cw and cw.clearly_not_claim),
        cw.decided_by if cw else "", weighted_engagement(facts.post), facts.debunked[0], facts.debunked[1], facts.risk[0],
    )


def entry_member_facts(entry_id: str, doc: dict[str, Any]) -> MemberFacts | None:
    """A member as its stored post entry (`QueueEntry.to_doc()`) says (the score rounded to 4
    places: `exact` False), or None when the entry cannot say it exactly: no check-worthiness
    score (the stage was skipped: it may have run since), a risk signal (its value and its
    narrative's are stored rounded, the narrative's may have changed since), a field missing
    or of another type."""
    parts = doc.get("components")
    decided = doc.get("decided_by")
    if doc.get("kind") != "post" or not isinstance(parts, dict) or not isinstance(decided, dict):
        return None
    cw, reach, debunked, risk = (parts.get(c) for c in ("checkworthiness", "reach", "debunked", "risk"))
    cw_by = decided.get("checkworthiness")
    if not (isinstance(cw, dict) and isinstance(reach, dict) and isinstance(debunked, dict) and isinstance(risk, dict)) or not isinstance(cw_by, str) \
            or cw_by == "missing":
        return None
    cw_ev, reach_ev, debunk_ev, risk_ev = (c.get("evidence") for c in (cw, reach, debunked, risk))
    score, debunk_value = _number(cw.get("value")), _number(debunked.get("value"))
    if not (isinstance(cw_ev, dict) and isinstance(reach_ev, dict) and isinstance(debunk_ev, dict) and isinstance(risk_ev, dict)) \
            or score is None or debunk_value is None:
        return None
    if risk.get("value") != 0 or "source" in risk_ev:
        return None
    counts = [v for v in (reach_ev.get(name) for name in _ENGAGEMENT) if type(v) is int]
    if len(counts) < len(_ENGAGEMENT):
        return None
    created = doc.get("created_at")
    try:
        stamp = time_stamp(datetime.fromisoformat(created)) if isinstance(created, str) and created else None
    except ValueError:
        return None
    return MemberFacts(
        str(doc.get("post_id") or entry_id), stamp, score, cw_ev.get("label") == "claim", doc.get("gated") is True, cw_by,
        _weighted(*counts), debunk_value, dict(debunk_ev) if debunk_value > 0 else {}, 0.0, exact=False,
    )


def narrative_entry(nid: str, record: NarrativeRecord, members: Sequence[PostFacts | MemberFacts], weights: TriageSettings) -> QueueEntry:
    summaries = [m if isinstance(m, MemberFacts) else member_facts(m) for m in members]
    cws = [m.score for m in summaries]
    best_cw = max(range(len(summaries)), key=lambda i: cws[i])
    engagement = sum(m.engagement for m in summaries)
    debunk = max(((m.debunked, m.debunk) for m in summaries), key=lambda d: d[0])
    hourly_rate = narrative_rate(record, weights.window_hours)
    rate = hourly_rate if hourly_rate is not None else _stamps_rate([m.stamp for m in summaries], weights.window_hours) if summaries else 0.0
    own_risk = _unit(record.risk)
    risk_value = max([own_risk or 0.0, *(m.risk for m in summaries)])
    values = {
        "checkworthiness": cws[best_cw],
        "reach": reach_value(engagement, weights.reach_scale),
        "velocity": velocity_value(rate, weights.velocity_scale),
        "debunked": debunk[0],
        "risk": risk_value,
    }
    evidence = {
        "checkworthiness": {"best_post": summaries[best_cw].post_id, "claims": sum(1 for m in summaries if m.claim)},
        "reach": {"weighted_engagement": round(engagement, 1), "posts": len(summaries), "size": record.size or len(summaries)},
        "velocity": {"posts": len(summaries), "window_hours": weights.window_hours, "per_hour": round(rate, 3), "source": "counts_hourly" if hourly_rate is not None else "member times"},
        "debunked": debunk[1] or {"note": "no member matches a fact-check"},
        "risk": {"narrative": own_risk, "members_max": max((m.risk for m in summaries), default=0.0)},
    }
    all_gated = all(m.gated for m in summaries)
    decided_by = {"checkworthiness": summaries[best_cw].decided_by, "narrative": record.decided_by}
    title = record.representative_text or " · ".join(record.top_terms[:6])
    return _entry(f"narrative:{nid}", "narrative", weights, values, evidence, "no member is a claim" if all_gated else None, decided_by,
                  narrative_id=str(nid or ""), title=str(title)[:200], text=str(title)[:280], post_ids=[str(m.post_id) for m in summaries][:50])


def _gathered(services: Any, org: str, weights: TriageSettings, reads: TriageReads, ids: Sequence[str]) -> dict[str, MemberFacts]:
    """Members gathered from their stored records, without their repeats (as the full recompute)."""
    posts = list(reads.stored_posts(ids).values())
    return {pid: member_facts(f) for pid, f in gather_facts(services, org, posts, weights, repeats=False, reads=reads).items()} if posts else {}


def _debunks_changed(storage: Any, org: str, members: Iterable[MemberFacts]) -> set[str]:
    """The members whose debunk names a fact-check withdrawn, gone or re-rated since their facts
    were written: the full recompute would see another debunk."""
    named = {str(m.debunk.get("factcheck_id")): m for m in members if m.debunked > 0}
    if not named:
        return set()
    found = storage.get_factchecks(org, sorted(named))
    now = {fid: fc.rating for fid, fc in found.items() if withdrawal_of(fc) is None}
    return {m.post_id for m in members if m.debunked > 0 and now.get(str(m.debunk.get("factcheck_id"))) != m.debunk.get("rating")}


def _narrative_members(services: Any, org: str, weights: TriageSettings, reads: TriageReads, members: dict[str, list[str]],
                       records_of: dict[str, NarrativeRecord], fresh: dict[str, MemberFacts],
                       stored: dict[str, NarrativeMemberFacts]) -> dict[str, list[MemberFacts]]:
    """The facts of each narrative's members, in its member order, as the full recompute
    (gathering every member's stored records) has them, without gathering most of them.

    Members this run gathered (the batch, its refreshed repeats) are `fresh`. The others come
    from the narrative's member summary (`triage_members`: each member's facts as of its last
    triage, written with the queue entries), else from the member's own stored queue entry.
    A member's facts change only when it is triaged again: a changed post (its engagement) is
    new content for every stage, a re-check or a desk's rejected debunk re-triages its posts,
    and each triage rewrites the member's entry and the summaries of its narratives. Gathered
    as before: members of a narrative with a risk of its own (a member's risk includes it),
    members whose debunk names a fact-check withdrawn or re-rated since, members whose entry
    cannot say their facts exactly (`entry_member_facts`). An entry stores check-worthiness
    rounded to 4 places: the members whose rounded score could be their narrative's best have
    their exact score read, so the best member, the priority and the contributions are the
    full recompute's.

    Two deliberate differences from gathering every member, both where a member's facts
    change without it being triaged again: after a link-risk re-score (`rescore_posts`, a
    feed update) a member's risk is the one of its last triage, as its own queue entry's is
    until it is triaged again; and a post whose content changed and that joined another
    narrative, while its old narrative's `recent_posts` still lists it, counts in the old
    narrative as it was when it joined (its current facts count in its new narrative)."""
    storage = services.storage
    chosen: dict[str, dict[str, MemberFacts]] = {nid: {} for nid in members}
    risky = {nid for nid in members if _unit(records_of[nid].risk) is not None}
    for nid, ids in members.items():
        summary = stored[nid].members if nid in stored and nid not in risky else {}
        for m in ids:
            found = fresh.get(m) or summary.get(m)
            if found is not None:
                chosen[nid][m] = found
    # members that the summaries lack: their own queue entries, else gathered
    rest = sorted({m for nid, ids in members.items() for m in ids if m not in chosen[nid] and nid not in risky})
    other: dict[str, MemberFacts] = {}
    for pid, doc in TriageQueue(storage).documents(org, rest).items():
        entry = entry_member_facts(pid, doc)
        if entry is not None:
            other[pid] = entry
    changed = _debunks_changed(storage, org, [m for nid in members for m in chosen[nid].values() if m.post_id not in fresh] + list(other.values()))
    for nid in members:
        chosen[nid] = {m: f for m, f in chosen[nid].items() if m not in changed}
    other = {m: f for m, f in other.items() if m not in changed}
    missing = sorted({m for nid, ids in members.items() for m in ids if m not in chosen[nid] and (nid in risky or m not in other)})
    gathered = _gathered(services, org, weights, reads, missing)
    for nid, ids in members.items():
        for m in ids:
            found = gathered.get(m) if nid in risky else other.get(m) or gathered.get(m)
            if m not in chosen[nid] and found is not None:
                chosen[nid][m] = found
    # exact scores of the members that may be their narrative's best
    candidates: set[str] = set()
    for nid in members:
        top = max((f.score for f in chosen[nid].values()), default=None)
        if top is not None:
            candidates.update(m for m, f in chosen[nid].items() if not f.exact and f.score >= top - 1.5e-4)
    if candidates:
        exact = CheckworthinessScores(storage).get(org, sorted(candidates))
        again = _gathered(services, org, weights, reads, sorted(candidates - exact.keys()))  # its score is gone since: as the full recompute sees it
        for nid in members:
            for m in candidates & chosen[nid].keys():
                if m in exact:
                    chosen[nid][m] = dataclasses.replace(chosen[nid][m], score=exact[m].score, exact=True)
                elif m in again:
                    chosen[nid][m] = again[m]
                else:
                    del chosen[nid][m]
    return {nid: [chosen[nid][m] for m in ids if m in chosen[nid]] for nid, ids in members.items()}


def triage_posts(services: Any, org: str, posts: Sequence[Post]) -> dict[str, Any]:
    """Recompute the queue entries of these posts, of their repeats and of their narratives."""
    # its thousands of parsed documents (four per member of every touched narrative) would set
    # off collections walking the whole heap: most of a run's time on 550-character posts
    with collector_paused():
        return _triage_posts(services, org, posts)


def _triage_posts(services: Any, org: str, posts: Sequence[Post]) -> dict[str, Any]:
    started = time.perf_counter()
    storage = services.storage
    weights = services.settings.triage
    reads = TriageReads(storage, org)
    # A new copy changes the velocity of the posts it repeats: refresh those too.
    facts = gather_facts(services, org, posts, weights, reads=reads, refresh=True)
    entries = [post_entry(fact, weights) for fact in facts.values()]
    touched = sorted({nid for f in facts.values() for nid in f.narratives})
    members: dict[str, list[str]] = {}  # a post is in one narrative at most: the lists do not depend on each other
    narrative_records = reads.narrative_records(touched)
    for nid, record in narrative_records.items():
        member_ids = record.member_ids or [pid for pid, f in facts.items() if nid in f.narratives]
        size = record.size or len(member_ids)
        if max(size, len(member_ids)) >= MIN_NARRATIVE_POSTS:  # a one-post narrative would only repeat that post's entry
            members[nid] = member_ids
    fresh = {pid: member_facts(f) for pid, f in facts.items()}
    stored = TriageMembers(storage).get(org, sorted(members))
    of_narrative = _narrative_members(services, org, weights, reads, members, narrative_records, fresh, stored)
    narrative_entries = [narrative_entry(nid, narrative_records[nid], found, weights) for nid, found in of_narrative.items() if found]
    summaries = [NarrativeMemberFacts(nid, uuid.uuid4().hex, now) for nid, found in of_narrative.items()
                 if (now := {m.post_id: m for m in found}) != (stored[nid].members if nid in stored else None)]  # unchanged ones not rewritten
    _put(storage, org, entries + narrative_entries, summaries, {nid: s.version for nid, s in stored.items()}, fresh)
    return {
        "queued_posts": len(entries),
        "queued_narratives": len(narrative_entries),
        "gated": sum(1 for e in entries if e.gated),
        "seconds": round(time.perf_counter() - started, 3),
    }


PUT_ATTEMPTS = 3


def _put(storage: Any, org: str, entries: Sequence[QueueEntry], summaries: list[NarrativeMemberFacts], versions: dict[str, str],
         fresh: dict[str, MemberFacts]) -> None:
    """The queue entries and the narratives' member summaries in one transaction
    (`TriageMembers.put_with_queue`: each summary expected at the version this run read)."""
    TriageMembers(storage).put_with_queue(org, TriageQueue.rows(entries), summaries, versions, fresh, PUT_ATTEMPTS)


def triage_stage(services: StageContext, org: str, posts: Sequence[Post]) -> StageSummary:
    """Stage: queue entries with priority, components and decided_by."""
    if not posts:
        return {"queued_posts": 0, "queued_narratives": 0, "gated": 0}
    return triage_posts(services, org, posts)


STAGE = FunctionStage(
    "triage", TRIAGE_VERSION, triage_stage, needs=("checkworthiness", "embedding", "linkrisk", "matching", "narratives"), writes=(QUEUE, TRIAGE_MEMBERS),
    doc="queue entries of the posts, their repeats and their narratives: priority, components, decided_by",
)


def list_queue(storage: Any, org: str, limit: int = 20, kind: str = "all") -> list[tuple[str, dict[str, Any]]]:
    """Top of the stored queue, highest priority first (gated posts last), as documents
    (`TriageQueue(storage).top` gives the typed entries)."""
    return [(e.id, e.to_doc()) for e in TriageQueue(storage).top(org, limit, kind)]
