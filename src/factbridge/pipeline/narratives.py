"""Narratives: one story seen as many posts; topics: the stories that belong together.

A post joins a narrative, or starts one, in a single pass as it arrives:

1. near-duplicate: its MinHash signature (character shingles, `text/minhash.py`)
   meets an earlier post's in the LSH index with estimated Jaccard >=
   `near_duplicate_threshold`; it joins that post's narrative; or (method
   "near-duplicate-image") one of its images is within the image-match rule's
   dHash distance of an earlier post's image or one of its inner crops
   (`images/matching.py`; the text
   read from images is already part of the text compared by MinHash);
2. semantic: otherwise its stored query vector (from the matching stage; never
   re-embedded) is compared with the centroids of the narratives active within
   `narrative_max_gap_hours`; it joins the closest one at cosine >=
   `semantic_threshold` (after a long silence only a copy revives a narrative:
   a similar post months later is a new narrative, which the bursts stage links
   to the old one through the debunk they both match);
3. otherwise it seeds a new narrative.

Each membership keeps its evidence: method, similarity, the post or narrative
it was compared with, and the rule version (`decided_by`).

A narrative lists the fact-checks its members match (stored decision match or
possible), counted as they join. When the library changes and posts are
matched again, `refresh_factchecks` recomputes the lists of their narratives
from all members' stored matches (see `pipeline/recheck.py`).

Narratives roll up into topics. A new narrative joins the topic it is closest
to by average linkage (the mean cosine between their posts' vectors: the dot
product of the two mean vectors), if that reaches `topic_threshold` and the
topic was active
within `topic_max_gap_hours` of it (a story is local in time: the same words a
year later are a new story of the same kind, and two events the same week stay
apart only by meaning). Topics that grow towards each other are merged at the
end of a batch, with the merge recorded.

Narratives are listed "growing now" by a decayed count: the sort key is
`half_life * log2(sum(2 ** (t_i / half_life)))` over the posts' times, which
orders narratives exactly as their current decayed count would, at any
reference time, without rewriting old documents.

Documents (generic document API, per organisation):

* "narratives" (sort key: the decayed count, "growing now"): id, topic_id, size,
  first_seen, last_seen, representative {post_id, text, language}, languages
  {lang: posts}, top_terms, counts_hourly {"YYYY-MM-DDTHH": n}, counts_daily,
  methods {method: posts}, factchecks [{factcheck_id, decision, fused_score,
  posts, decided_by}], recent_posts [[post_id, time, method, similarity]] (last
  500), heat_log2, decided_by; vector_sum / rep_vector (base64 float32, state);
* "narrative_members" (one per post, sort key: post time): post_id,
  narrative_id, method ("near-duplicate", "semantic", "seed"), similarity,
  neighbour, time, language, decided_by, minhash (base64 signature, state),
  dhash (the dHashes of the post's images and their inner crops, state);
* "topics" (sort key: decayed count): id, label, size, narrative_count,
  narratives, first_seen, last_seen, top_terms, languages, merged [{topic_id,
  cosine, narratives, at}], decided_by; a topic merged into another keeps its
  document with `merged_into`;
* "narrative_state": the sequence number that tells a process its in-memory
  engine is current, and a token new with every write;
* "narrative_changes" (id: the number modulo `CHANGE_RING`): what each of the last
  writes changed (its members' post ids, its narratives and topics) and the token
  it was written over: an engine a few writes behind (another worker's batches)
  reads only those instead of everything (`NarrativeEngine.catch_up`).

Thresholds depend on the embedder (e5 cosines sit in a narrow high band,
hashing-embedder ones spread low): empty settings take the value calibrated for
the embedder family in `CALIBRATED`; an unknown embedder must be given them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import math
import sys
import threading
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from factbridge.backends.embedders.base import embedder_family
from factbridge.backends.storage.base import Expect, Storage, iter_docs, iter_docs_by_key
from factbridge.errors import ConfigError, Conflict, PreconditionFailed
from factbridge.models import Post
from factbridge.pipeline import records
from factbridge.pipeline.records import NarrativeMembers, NarrativeMembership, NarrativeRecord
from factbridge.pipeline.stages import FunctionStage, StageContext, StageSummary
from factbridge.settings import NarrativeSettings
from factbridge.text import minhash

log = logging.getLogger(__name__)

NARRATIVES_VERSION = "narratives-1"
NARRATIVES = "narratives"
MEMBERS = records.MEMBERS
TOPICS = "topics"
STATE = "narrative_state"
CHANGES = "narrative_changes"
CHANGE_RING = 256  # the last writes' change entries kept (one document per slot, overwritten in turn)
CATCH_UP_MAX = 128  # an engine further behind than this many writes is loaded again instead
RECENT_POSTS = 500  # post ids kept in a narrative's document; every membership also has its own document
SHORTLIST_MIN_TOPICS = 512  # topic rows from which a batch's topic choices come from one product (`_TopicShortlist`)
SHORTLIST_K = 8  # the most similar topics reaching the threshold a shortlist keeps per query
_SIMILARITY_BLOCK = 1 << 24  # similarities computed at once (64 MB of float32): a batch's posts against the active rows, in blocks of posts


# (semantic_threshold, topic_threshold) per embedder family and vector space, tuned on PHEME
# source tweets (`factbridge eval narratives`): the semantic one for narrative purity, the topic
# one for ARI. "centered": per-language means subtracted (pipeline/centering.py), which spreads
# cosines out (thresholds much lower) and lets a Khmer and a Vietnamese post of one story meet.
CALIBRATED: dict[tuple[str, bool], tuple[float, float]] = {
    ("multilingual-e5-small", True): (0.45, 0.20),
    ("multilingual-e5-small", False): (0.90, 0.83),
    ("hashing", False): (0.55, 0.25),
}

# A post joining a narrative that holds none of its language: the same story told in another
# language sits lower on the centred cosine scale than a rewording in one language. Tuned on the
# blind cross-lingual set's "tune" split (tests/fixtures/crosslingual_blind; `factbridge eval
# narratives-crosslingual`); absent: the same-language threshold applies.
CALIBRATED_CROSSLINGUAL: dict[tuple[str, bool], float] = {
    ("multilingual-e5-small", True): 0.35,
}

_STOP = frozenset(
    "the a an and or of to in on at for is are was were be been it this that with by from as not no but have has had "
    "will would can could just about after over into out up they he she we you i my your our their its his her them "
    "rt via amp http https co new says said all more than who what when where why how now so if do does did "
    "le la les un une des et ou de du en au aux est sont pour par sur dans que qui pas ne ce cette il elle ils on "
    "va la cua va cac nhung mot co khong la duoc cho voi trong nay do thi da se roi day ma nhu vay cung ve len ra vao "
    "den tu nhieu moi luon qua rat lam bi dang con ai gi nao sao oi nhe nha ne "
    "\u1793\u17b7\u1784 \u17a0\u17be\u1799 \u1793\u17c1\u17c7 \u1780\u17d2\u1793\u17bb\u1784 \u1780\u17c6\u1796\u17bb\u1784 \u1787\u17b6 "
    "\u1793\u17c5 \u178a\u17c2\u179b \u1794\u17b6\u1793 \u1798\u17b6\u1793 \u1791\u17c5 \u1796\u17b8 \u1782\u17ba \u1790\u17b6 "
    "\u1798\u17b7\u1793 \u1791\u17c1 \u179a\u1794\u179f\u17cb \u178a\u17be\u1798\u17d2\u1794\u17b8 \u1795\u1784 \u1793\u17c4\u17c7 "
    "\u1798\u17bd\u1799 \u1791\u17b6\u17c6\u1784 \u1780\u17cf \u17ac".split()  # Khmer: and, already, this, in, -ing, is, at, that...
)


def _image_and_crop_hashes(post: Post) -> list[str]:
    return [h for img in post.images if img.dhash for h in (img.dhash, *img.crop_dhash)]


def _image_threshold() -> int:
    from factbridge.images.matching import DHASH_MATCH

    return DHASH_MATCH


def decided_by(p: NarrativeSettings) -> str:
    """The rule and its parameters, stored with every membership and narrative."""
    return (
        f"{NARRATIVES_VERSION} ({minhash.MINHASH_VERSION} jaccard>={p.near_duplicate_threshold:g}; {p.space} vectors: "
        f"centroid cosine>={p.semantic:g}{f' (other language: >={p.crosslingual:g})' if p.crosslingual != p.semantic else ''} "
        f"within {p.semantic_max_gap_hours:g} h; topic average cosine>={p.topic:g} "
        f"within {p.topic_max_gap_hours:g} h; near-duplicate images: dHash-256 <= {_image_threshold()} bits)"
    )


def resolve_thresholds(section: NarrativeSettings, embedder_id: str, centering: Any = None) -> NarrativeSettings:
    """The `narratives` settings section with its thresholds resolved for the embedder (the
    calibrated values where the settings leave them empty) and the vector space recorded."""
    centered = centering is not None
    model = embedder_family(embedder_id)  # the model, whichever engine runs it
    family = next((k for k in CALIBRATED if model.startswith(k[0]) and k[1] == centered), None)
    semantic = section.semantic_threshold
    topic = section.topic_threshold
    if (semantic is None or topic is None) and family is None:
        raise ConfigError(
            f"no calibrated narrative thresholds for embedder '{embedder_id}' ({'centered' if centered else 'raw'} vectors): "
            "set narrative_threshold and topic_threshold"
        )
    defaults = CALIBRATED[family] if family else (0.0, 0.0)
    return replace(
        section,
        space=f"centered:{centering.version}" if centered else "raw",
        semantic_threshold=defaults[0] if semantic is None else semantic,
        crosslingual_threshold=CALIBRATED_CROSSLINGUAL.get(family) if semantic is None and family else None,
        topic_threshold=defaults[1] if topic is None else topic,
    )


@lru_cache(maxsize=65536)
def _hour_label(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, tz=UTC).strftime("%Y-%m-%dT%H")


def daily_counts(hourly: Counter[int]) -> dict[str, int]:
    days: Counter[str] = Counter()
    for hour, count in hourly.items():
        days[_hour_label(hour)[:10]] += count
    return dict(sorted(days.items()))


@lru_cache(maxsize=65536)
def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")


def _parse_iso(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _encode_vec(vec: np.ndarray | None) -> str | None:
    """float32 little-endian, base64: compact and exact (JSON lists of floats cost 10x the time)."""
    return None if vec is None else base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")


def _decode_vec(text: str | None) -> np.ndarray | None:
    return None if not text else np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


def _encode_sig(sig: np.ndarray) -> str:
    return base64.b64encode(np.asarray(sig, dtype="<u4").tobytes()).decode("ascii")


def _decode_sig(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<u4").astype(np.uint32)


def _log2_add(a: float | None, b: float) -> float:
    if a is None:
        return b
    hi, lo = (a, b) if a >= b else (b, a)
    return hi + math.log2(1.0 + 2.0 ** (lo - hi))


def tally_factcheck(factchecks: dict[str, dict[str, Any]], hit: dict[str, Any]) -> None:
    """Count one member post's match on a narrative's fact-check list; the entry keeps the
    evidence of the strongest match."""
    entry = factchecks.setdefault(hit["factcheck_id"], {**hit, "posts": 0})
    entry["posts"] += 1
    if hit["fused_score"] > entry["fused_score"]:
        entry.update({k: v for k, v in hit.items() if k != "posts"})


def _listed_factchecks(factchecks: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(factchecks.values(), key=lambda f: -f["posts"])


@dataclass
class Narrative:
    id: str
    vec_sum: np.ndarray
    size: int = 0
    first_seen: float = math.inf
    last_seen: float = -math.inf
    topic: str = ""
    languages: Counter[str] = field(default_factory=Counter)
    terms: Counter[str] = field(default_factory=Counter)
    hourly: Counter[int] = field(default_factory=Counter)  # hours since the epoch -> posts
    methods: Counter[str] = field(default_factory=Counter)
    factchecks: dict[str, dict[str, Any]] = field(default_factory=dict)
    representative: dict[str, Any] = field(default_factory=dict)
    rep_vec: np.ndarray | None = None
    heat: float | None = None
    created_at: str = ""
    recent: list[tuple[str, float, str, float]] = field(default_factory=list)  # (post id, time, method, similarity)
    # Derived, kept between batches so an unchanged part is not computed again for every save:
    # the terms ranked as `terms.most_common(100)` (None: the terms changed since), and the
    # `recent` entries as stored (None: rebuilt from `recent` when next saved), `rep_vec` encoded.
    ranked: list[tuple[str, int]] | None = field(default=None, repr=False, compare=False)
    recent_doc: list[list[Any]] | None = field(default=None, repr=False, compare=False)
    rep_doc: str | None = field(default=None, repr=False, compare=False)  # `rep_vec` as stored (None: encode again)

    def centroid(self) -> np.ndarray:
        norm = float(np.linalg.norm(self.vec_sum))
        return self.vec_sum / norm if norm else self.vec_sum

    def to_doc(self, decided_by: str, top_terms: int = 12) -> dict[str, Any]:
        # one ranking of the terms for both fields: most_common(n) is sorted(...)[:n] (stable on ties)
        common = self.ranked_terms() if top_terms <= 100 else self.terms.most_common(top_terms)
        if self.rep_doc is None:
            self.rep_doc = _encode_vec(self.rep_vec)
        if self.recent_doc is None:
            self.recent_doc = [[pid, _iso(ts), method, sim] for pid, ts, method, sim in self.recent]
        return {
            "id": self.id, "topic_id": self.topic, "size": self.size,
            "first_seen": _iso(self.first_seen), "last_seen": _iso(self.last_seen),
            "representative": self.representative, "languages": dict(self.languages.most_common()),
            "top_terms": [t for t, _ in common[:top_terms]],
            "terms": dict(common[:100]),
            "counts_hourly": {_hour_label(h): c for h, c in sorted(self.hourly.items())},
            "counts_daily": daily_counts(self.hourly),
            "methods": dict(self.methods), "factchecks": _listed_factchecks(self.factchecks),
            "heat_log2": self.heat, "created_at": self.created_at, "decided_by": decided_by,
            "recent_posts": self.recent_doc[-RECENT_POSTS:],
            "vector_sum": _encode_vec(self.vec_sum), "rep_vector": self.rep_doc,
        }

    def ranked_terms(self) -> list[tuple[str, int]]:
        """`terms.most_common(100)`, computed once per change of the terms (its first n are
        `most_common(n)`: the ranking is a stable sort)."""
        if self.ranked is None:
            self.ranked = top_counts(self.terms, 100)
        return self.ranked

    def add_recent(self, entry: tuple[str, float, str, float]) -> None:
        self.recent.append(entry)
        if len(self.recent) > 2 * RECENT_POSTS:
            del self.recent[:-RECENT_POSTS]
            self.recent_doc = None
        elif self.recent_doc is not None:
            pid, ts, method, sim = entry
            self.recent_doc.append([pid, _iso(ts), method, sim])

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Narrative:
        n = cls(id=doc["id"], vec_sum=_decode_vec(doc["vector_sum"]))  # type: ignore[arg-type]
        n.size = int(doc["size"])
        n.first_seen, n.last_seen = _parse_iso(doc["first_seen"]), _parse_iso(doc["last_seen"])
        n.topic = doc.get("topic_id", "")
        n.languages = Counter(doc.get("languages", {}))
        n.terms = Counter({sys.intern(t): c for t, c in doc.get("terms", {}).items()})  # (one string per word, shared by every narrative)
        n.hourly = Counter({int(_parse_iso(h + ":00:00+00:00") // 3600): c for h, c in doc.get("counts_hourly", {}).items()})
        n.methods = Counter(doc.get("methods", {}))
        n.factchecks = {f["factcheck_id"]: f for f in doc.get("factchecks", [])}
        n.representative = doc.get("representative", {})
        # (a narrative of one post: its representative is its sum; one array for both)
        n.rep_vec = n.vec_sum if doc.get("rep_vector") == doc["vector_sum"] else _decode_vec(doc.get("rep_vector"))
        n.recent = [(x[0], _parse_iso(x[1]), x[2], x[3]) for x in doc.get("recent_posts", [])]
        n.heat = doc.get("heat_log2")
        n.created_at = doc.get("created_at", "")
        return n


def summed_terms(narratives: Sequence[Narrative]) -> Counter[str]:
    """The narratives' term counts summed, in the order `Counter.update` with each in turn gives
    (keys by first appearance). A narrative whose counts are all 1 is added by its keys, one
    whose counts are small by its elements (`Counter.update` over an iterable counts in C: the
    same sums in the same key order), one with large counts by its mapping."""
    terms: Counter[str] = Counter()
    run: list[Iterable[str]] = []  # consecutive narratives with small counts: one update in C
    for n in narratives:
        total = sum(n.terms.values())
        if total == len(n.terms):  # every count 1 (counts are positive): the keys are the elements
            run.append(n.terms.keys())
            continue
        if total <= 8 * len(n.terms):
            run.append(n.terms.elements())
            continue
        if run:
            terms.update(chain.from_iterable(run))
            run = []
        terms.update(n.terms)
    if run:
        terms.update(chain.from_iterable(run))
    return terms


def summed_languages(narratives: Sequence[Narrative]) -> dict[str, int]:
    """The narratives' language counts summed, keys in first-appearance order: what
    `Counter.update` with each in turn gives, without its per-call checks (a topic sums all
    its narratives for every save). Ranked as `most_common()` ranks: a stable sort by count."""
    langs: dict[str, int] = {}
    for n in narratives:
        for lang, count in n.languages.items():
            langs[lang] = langs.get(lang, 0) + count
    return langs


def top_counts(counts: Counter[str], n: int) -> list[tuple[str, int]]:
    """`counts.most_common(n)`: a stable sort by count, which for a few hundred keys (or a
    hundred of a few thousand) is faster than its heap (the same list: `heapq.nlargest` is
    documented as `sorted(...)[:n]`)."""
    if len(counts) > (2000 if n >= 100 else 500):
        return counts.most_common(n)
    return sorted(counts.items(), key=itemgetter(1), reverse=True)[:n]


@dataclass
class Topic:
    id: str
    vec_sum: np.ndarray
    narratives: list[str] = field(default_factory=list)
    size: int = 0
    first_seen: float = math.inf
    last_seen: float = -math.inf
    heat: float | None = None
    merged: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = ""

    def mean(self) -> np.ndarray:
        """Mean of the posts' vectors: its dot product with another mean is the average cosine
        between the two sets (average linkage), which, unlike the cosine of normalised centroids,
        falls as a topic grows diverse, so big topics do not swallow everything."""
        return self.vec_sum / max(self.size, 1)

    def to_doc(self, narratives: dict[str, Narrative], decided_by: str) -> dict[str, Any]:
        members = [narratives[nid] for nid in self.narratives]
        langs = summed_languages(members)
        if len(members) == 1:  # the narrative's own ranking (a copy of one Counter ranks as it does)
            top = [t for t, _ in members[0].ranked_terms()[:12]]
        else:
            top = [t for t, _ in top_counts(summed_terms(members), 12)]
        return {
            "id": self.id, "label": " · ".join(top[:5]), "size": self.size, "narrative_count": len(self.narratives),
            "narratives": self.narratives, "first_seen": _iso(self.first_seen), "last_seen": _iso(self.last_seen),
            "top_terms": top, "languages": dict(sorted(langs.items(), key=itemgetter(1), reverse=True)), "heat_log2": self.heat,
            "merged": self.merged, "created_at": self.created_at, "decided_by": decided_by,
            "vector_sum": _encode_vec(self.vec_sum),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Topic:
        return cls(
            id=doc["id"], vec_sum=_decode_vec(doc["vector_sum"]), narratives=list(doc["narratives"]),  # type: ignore[arg-type]
            size=int(doc["size"]), first_seen=_parse_iso(doc["first_seen"]), last_seen=_parse_iso(doc["last_seen"]),
            heat=doc.get("heat_log2"), merged=list(doc.get("merged", [])), created_at=doc.get("created_at", ""),
        )


class _TopicShortlist:
    """Each of a batch's queries' topics (the means of its new narratives, or of the topics it
    touched) that reach `floor`, the topic threshold: the time-compatible rows at or above it, the
    highest `SHORTLIST_K` where there are more, from one matrix product over the topic rows as they
    stand when it is made. `best` then answers `_best_topic` as the rows stand at the time it is
    asked, wherever that reaches the floor: a row not changed since keeps its similarity, and the
    shortlist holds a query's highest, so the best of its unchanged shortlisted rows is the best of
    every unchanged row. The rows changed since are compared again: those made since as one slice
    (they follow every older row), the older ones joined or merged since (a few) found by
    `NarrativeEngine._topic_row_log`. A query all of whose shortlisted rows changed, where more
    reached the floor, is compared with every row. Below the floor it may name another topic
    than `_best_topic` would, or none: the caller makes a new topic, or merges nothing, either way.

    In a feed where most posts are stories of their own, every post makes a narrative and a topic,
    and each was compared with every active topic twice (its topic's choice, then its merge), one
    pass over all their rows each: the stage's cost, growing with the topics active."""

    def __init__(self, engine: NarrativeEngine, queries: np.ndarray, firsts: np.ndarray, lasts: np.ndarray, excluded: np.ndarray, floor: float) -> None:
        self.engine = engine
        self.n0 = n = len(engine._topic_order)
        m = len(queries)
        self.rows: list[list[tuple[float, int]]] = [[] for _ in range(m)]  # per query: (similarity, row), highest first
        self.more = np.zeros(m, dtype=bool)  # rows reaching the floor beyond the shortlist
        if engine._topic_row_log is None:
            engine._topic_row_log = []
        self._read = len(engine._topic_row_log)  # the changes logged before it was made
        self._changed: set[int] = set()
        window = engine._topic_window[:n]
        any_ok = _time_compatible(window, firsts.min(), lasts.max()) if m and n else np.zeros(0, dtype=bool)
        if not any_ok.any():
            return
        sub = _rows_where(any_ok)
        matrix = engine._topic_centroids[:n] if sub is None else engine._topic_centroids[sub]
        cols = np.arange(n) if sub is None else sub
        step = max(1, _SIMILARITY_BLOCK // len(cols))
        for start in range(0, m, step):
            sims = queries[start : start + step] @ matrix.T
            # the pairs worth a look (a hair below the floor, which the product's rounding may move)
            q, c = np.nonzero(sims >= floor - 1e-5)
            found, rows = sims[q, c], cols[c]
            q += start
            ok = _time_compatible(window[rows], firsts[q], lasts[q]) & (rows != excluded[q])
            q, rows, found = q[ok], rows[ok], found[ok]
            # each query's highest SHORTLIST_K (ties: the lower row), in one sort however many reach the floor
            order = np.lexsort((rows, -found, q))
            q, rows, found = q[order], rows[order], found[order]
            rank = np.arange(q.size) - np.searchsorted(q, q)
            self.more[q[rank == SHORTLIST_K]] = True
            keep = rank < SHORTLIST_K
            for i, row, sim in zip(q[keep].tolist(), rows[keep].tolist(), found[keep].tolist(), strict=True):
                self.rows[i].append((sim, row))

    def changed(self) -> set[int]:
        """The topic rows that were there when this shortlist was made and changed since (the
        rows made since follow them: `best` compares those as one slice)."""
        log = self.engine._topic_row_log or []
        if len(log) > self._read:
            self._changed.update(r for r in log[self._read :] if r < self.n0)
            self._read = len(log)
        return self._changed

    def best(self, i: int, centroid: np.ndarray, first: float, last: float, exclude: str = "") -> tuple[float, str]:
        """`engine._best_topic(centroid, first, last, exclude)` for query `i` (the same query it
        was made with) where that reaches the floor, as the topic rows stand now. Ties go to the
        lower row, as `argmax`'s do."""
        e = self.engine
        changed = self.changed()
        best_sim, best_row, kept = -2.0, -1, False
        for sim, row in self.rows[i]:
            if row in changed:
                continue
            kept = True
            if sim > best_sim or (sim == best_sim and row < best_row):
                best_sim, best_row = sim, row
        if not kept and self.more[i]:
            return e._best_topic(centroid, first, last, exclude)
        skip = e._topic_row[exclude] if exclude else -1
        again = np.fromiter((r for r in changed if r != skip), dtype=np.int64, count=len(changed) - (skip in changed))
        if again.size:
            again = again[_time_compatible(e._topic_window[again], first, last)]
        if again.size:
            for row, sim in zip(again.tolist(), (e._topic_centroids[again] @ centroid).tolist(), strict=True):
                if sim > best_sim or (sim == best_sim and row < best_row):
                    best_sim, best_row = sim, row
        made = len(e._topic_order) - self.n0  # rows made since, after every older one: they win only when higher
        if made > 0:
            ok = _time_compatible(e._topic_window[self.n0 : self.n0 + made], first, last)
            if skip >= self.n0:
                ok[skip - self.n0] = False
            if ok.any():
                sims = np.where(ok, e._topic_centroids[self.n0 : self.n0 + made] @ centroid, -2.0)
                j = int(sims.argmax())
                if ok[j] and sims[j] > best_sim:
                    best_sim, best_row = float(sims[j]), self.n0 + j
        return (best_sim, e._topic_order[best_row]) if best_row >= 0 else (-2.0, "")


@dataclass(frozen=True)
class _Mark:
    """How far an engine's rows went before an assignment: what `NarrativeEngine.take_back` cuts
    back to, with the narratives and topics the assignment changed."""

    narratives: int  # centroid rows
    topics: int  # topic rows
    posts: int  # member rows
    images: int
    touched: frozenset[str] = frozenset()
    touched_topics: frozenset[str] = frozenset()


@dataclass
class Assignment:
    post_id: str
    narrative_id: str
    method: str  # "near-duplicate", "near-duplicate-image", "semantic" or "seed"
    similarity: float
    neighbour: str  # the post (near-duplicate) or narrative (semantic) compared with


def _new_id(prefix: str, seed: str) -> str:
    """A narrative or topic id made from `seed` (`NarrativeEngine._fresh_id`): 20 hex digits, 80
    bits. (Ids of 12 random digits, 48 bits, were likely to repeat somewhere among the tens of
    millions of narratives a national feed starts in a year: half the time past ~17 million.)"""
    return f"{prefix}-{hashlib.blake2b(seed.encode(), digest_size=10).hexdigest()}"


def _time_compatible(window: np.ndarray, first: Any, last: Any) -> np.ndarray:
    """Which topic rows' windows (`first_seen - gap`, `last_seen + gap`: `_set_topic_row`) meet a
    span from `first` to `last` (numbers, or arrays of one per row). A retired row's window is NaN:
    never compatible (comparisons with NaN are False, without a warning)."""
    ok: np.ndarray = (window[:, 0] <= last) & (first <= window[:, 1])
    return ok


def _rows_where(mask: np.ndarray) -> np.ndarray | None:
    """The rows where `mask` holds, when they are few enough (under a quarter) that gathering
    them costs less than computing every row and masking (a product with one vector reads each
    row once either way: the gathered rows are read twice and written once); None: compute
    every row."""
    rows = np.flatnonzero(mask)
    return rows if rows.size * 4 < mask.size else None


def _post_time(post: Post) -> float:
    if post.created_at is None:
        return datetime.now(UTC).timestamp()
    ts = post.created_at if post.created_at.tzinfo else post.created_at.replace(tzinfo=UTC)
    return ts.timestamp()


class NarrativeEngine:
    """The in-memory state of one organisation's narratives; `assign` is the one-pass step."""

    def __init__(self, params: NarrativeSettings, dim: int) -> None:
        self.params = params
        self.dim = dim
        self.narratives: dict[str, Narrative] = {}
        self.topics: dict[str, Topic] = {}
        self._order: list[str] = []  # narrative ids by row of the centroid matrix
        self._row: dict[str, int] = {}
        self._centroids = np.zeros((0, dim), dtype=np.float32)
        self._last_seen = np.zeros(0)
        self._index = minhash.BandIndex()
        self._sigs = np.zeros((0, minhash.NUM_PERM), dtype=np.uint32)
        self._sig_count = 0
        self._has_sig = np.zeros(0, dtype=bool)
        self._image_bits = np.zeros((0, 32), dtype=np.uint8)  # dHash-256 of the members' images
        self._image_owner: list[int] = []  # post row of each image
        self._post_narrative: list[str] = []
        self._post_ids: list[str] = []
        self._post_row: dict[str, int] = {}
        self._post_times = np.zeros(0)  # per post row: its time (kept with `memory_days`)
        # With `memory_days`: the newest post time seen, and the time before which members (and
        # topics quiet since, with their narratives) may be missing from memory (never from the store)
        self.newest = -math.inf
        self.cutoff = -math.inf
        self._topic_order: list[str] = []
        self._topic_row: dict[str, int] = {}
        self._topic_centroids = np.zeros((0, dim), dtype=np.float32)
        self._topic_window = np.zeros((0, 2))  # per topic row: first_seen - gap, last_seen + gap (NaN: retired)
        self._topic_row_log: list[int] | None = None  # topic rows changed, in turn, while a batch's topics are placed (`_TopicShortlist`)
        self.seq = 0
        self.loaded_from: tuple[int, str] | None = None  # the stored state's number and token when `load` began
        self.token = ""  # the token of the state it loaded or last wrote: it is current while the stored one is the same
        self.base: tuple[int, str] = (0, "")  # the number and token `assign` started from: what `save` expects stored
        self.dirty = False  # assigned posts not (yet) stored: only a whole load makes it hold the store again
        self.lock = threading.Lock()
        # The narrative documents its last `save` wrote (what is stored while `seq` is the stored one):
        # the bursts stage reads them here instead of from the store (`written_narratives`).
        self.written: dict[str, dict[str, Any]] = {}
        # Narratives whose stored documents `load` found naming a topic merged away (stores written
        # before merges wrote the narratives they moved): written with the next batch, and those
        # that no live topic lists placed in one as a new narrative is.
        self._repaired: set[str] = set()
        self._unplaced: list[str] = []
        self._mark: _Mark | None = None  # where the last assignment started (None: it cannot be taken back)

    # -- state ----------------------------------------------------------------
    def _set_centroid(self, nid: str, centroid: np.ndarray | None = None) -> None:
        row = self._row.get(nid)
        if row is None:
            row = len(self._order)
            self._order.append(nid)
            self._row[nid] = row
            if row >= self._centroids.shape[0]:
                size = max(64, row + row // 4)  # (a quarter more: the rows are 1.5 KB each, doubling left a third of them empty)
                grown = np.zeros((size, self.dim), dtype=np.float32)
                grown[: self._centroids.shape[0]] = self._centroids
                last = np.full(size, -np.inf)
                last[: self._last_seen.shape[0]] = self._last_seen
                self._centroids, self._last_seen = grown, last
        self._centroids[row] = self.narratives[nid].centroid() if centroid is None else centroid
        self._last_seen[row] = self.narratives[nid].last_seen

    def _remember_post(self, post_id: str, nid: str, sig: np.ndarray | None, ts: float = 0.0) -> int:
        i = len(self._post_ids)
        self._post_ids.append(post_id)
        self._post_narrative.append(nid)
        self._post_row[post_id] = i
        if i >= self._sigs.shape[0]:
            size = max(1024, i + i // 4)
            grown = np.zeros((size, minhash.NUM_PERM), dtype=np.uint32)
            grown[: self._sigs.shape[0]] = self._sigs
            has = np.zeros(size, dtype=bool)
            has[: self._has_sig.shape[0]] = self._has_sig
            times = np.zeros(size)
            times[: self._post_times.shape[0]] = self._post_times
            self._sigs, self._has_sig, self._post_times = grown, has, times
        self._post_times[i] = ts
        if sig is not None:
            self._sigs[i] = sig
            self._has_sig[i] = True
        return i

    def _index_signatures(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Add these post rows' band keys (one row of `minhash.BANDS` keys each) to the LSH index."""
        self._index.add(keys, np.repeat(np.asarray(rows, dtype=np.int64), minhash.BANDS).reshape(-1, minhash.BANDS))

    def _take_narratives(self, docs: Mapping[str, dict[str, Any]]) -> None:
        """These stored narratives, in place of what this engine held of them."""
        for nid, doc in docs.items():
            self.narratives[nid] = Narrative.from_doc(doc)
            self._set_centroid(nid)

    def _take_topics(self, docs: Mapping[str, dict[str, Any]]) -> None:
        """These stored topics, in place of what this engine held of them (one merged away since
        is retired)."""
        for tid, doc in docs.items():
            if doc.get("merged_into") is None:
                self.topics[tid] = Topic.from_doc(doc)
                self._set_topic_row(tid)
            elif tid in self.topics:
                del self.topics[tid]
                self._retire_topic_row(tid)

    def _share_sums(self, tids: Iterable[str]) -> None:
        """A topic of one narrative read from the store has that narrative's vector sum: one array
        for both (a singleton narrative and its topic were two 1.5 KB copies; neither array is
        changed in place)."""
        for tid in tids:
            t = self.topics.get(tid)
            n = self.narratives.get(t.narratives[0]) if t is not None and len(t.narratives) == 1 else None
            if t is not None and n is not None and n.vec_sum is not t.vec_sum and n.vec_sum.tobytes() == t.vec_sum.tobytes():
                t.vec_sum = n.vec_sum

    def _remember_images(self, row: int, dhashes: Sequence[str]) -> None:
        from factbridge.images.hashing import hex_to_bits

        if dhashes:
            self._image_bits = np.concatenate([self._image_bits, hex_to_bits(list(dhashes), 256)])
            self._image_owner.extend([row] * len(dhashes))

    def _image_neighbour(self, dhashes: Sequence[str]) -> tuple[int, int] | None:
        """(post row, dHash bits) of the nearest earlier image within the image-match rule, if any."""
        from factbridge.images.hashing import _POPCOUNT, hex_to_bits
        from factbridge.images.matching import DHASH_MATCH

        if not dhashes or not self._image_owner:
            return None
        dist = _POPCOUNT[self._image_bits[None, :, :] ^ hex_to_bits(list(dhashes), 256)[:, None, :]].sum(axis=2).min(axis=0)
        j = int(dist.argmin())
        return (self._image_owner[j], int(dist[j])) if dist[j] <= DHASH_MATCH else None

    # -- the one pass -----------------------------------------------------------
    def assign(
        self, posts: Sequence[Post], vectors: np.ndarray, factcheck_hits: dict[str, list[dict[str, Any]]] | None = None,
    ) -> tuple[list[Assignment], set[str], set[str]]:
        """Assign posts (any order: taken by time) to narratives. Returns the assignments and the
        narratives and topics that changed."""
        factcheck_hits = factcheck_hits or {}
        self.dirty = True  # (until its write is stored: an exception half-way leaves it so, and it is loaded again)
        if self.params.memory_days > 0 and posts:
            self._forget_before(max(_post_time(p) for p in posts))
        # (a store repaired at load changed topics in memory only: an assignment with those is not taken back)
        mark = None if self._repaired or self._unplaced else _Mark(len(self._order), len(self._topic_order), len(self._post_ids), len(self._image_owner))
        self._mark = None
        # A post seen before keeps its narrative (an edit does not move it; its evidence stays as decided).
        fresh = [i for i in range(len(posts)) if posts[i].id not in self._post_row]
        order = sorted(dict.fromkeys(fresh, None), key=lambda i: (_post_time(posts[i]), posts[i].id))
        assignments: list[Assignment] = []
        touched: set[str] = set(self._repaired)
        new_narratives: list[str] = list(self._unplaced)
        self._repaired, self._unplaced = set(), []
        for start in range(0, len(order), self.params.batch_size):
            chunk = order[start : start + self.params.batch_size]
            self._assign_chunk([posts[i] for i in chunk], vectors[chunk], factcheck_hits, assignments, touched, new_narratives)
        touched_topics = self._assign_topics(new_narratives, touched)
        self.base = (self.seq, self.token)
        self.seq += 1
        if mark is not None:
            self._mark = replace(mark, touched=frozenset(touched), touched_topics=frozenset(touched_topics))
        return assignments, touched, touched_topics

    def take_back(self, storage: Storage, org: str) -> bool:
        """After the write of an assignment was refused (another worker's write came first): take
        the assignment back, so that the engine holds the state it started from, except that the
        narratives and topics the assignment changed are read as they are stored now. `catch_up`
        then brings it to the stored state by the change entries, an O(batch) step where a whole
        load was. False, with nothing changed, when it cannot (an assignment that did not finish,
        or one made over a store repaired at load): then the engine is loaded again."""
        mark = self._mark
        if mark is None or not self.dirty:
            return False
        store = NarrativeStore(storage)
        # the members the assignment remembered, and their signatures and images
        rows = slice(mark.posts, len(self._post_ids))
        for pid in self._post_ids[rows]:
            del self._post_row[pid]
        del self._post_ids[rows], self._post_narrative[rows]
        self._sigs[rows], self._has_sig[rows], self._post_times[rows] = 0, False, 0.0  # (as rows never used: the next are taken again)
        self._index.drop_from(mark.posts)
        self._image_bits, self._image_owner = self._image_bits[: mark.images], self._image_owner[: mark.images]
        # the narratives and topics it made (the rows after the mark)
        made = set(self._order[mark.narratives :])
        for nid in made:
            self.narratives.pop(nid, None)
            del self._row[nid]
        del self._order[mark.narratives :]
        self._last_seen[mark.narratives :] = -np.inf
        made_topics = set(self._topic_order[mark.topics :])
        for tid in made_topics:
            self.topics.pop(tid, None)
            del self._topic_row[tid]
        del self._topic_order[mark.topics :]
        self._topic_window[mark.topics :] = np.nan
        # the ones it changed, as stored now (a topic it merged away comes back; one another
        # worker merged away since is retired)
        self._take_narratives(store.documents(org, sorted(mark.touched - made)))
        self._take_topics(store.topic_documents_of(org, sorted(mark.touched_topics - made_topics)))
        (self.seq, self.token), self.dirty, self._mark = self.base, False, None
        return True

    def _assign_chunk(
        self, posts: list[Post], vecs: np.ndarray, factcheck_hits: dict[str, list[dict[str, Any]]],
        assignments: list[Assignment], touched: set[str], new_narratives: list[str],
    ) -> None:
        p = self.params
        texts = [x.norm_text or x.text for x in posts]
        sigs, has_sig = minhash.signatures(texts)
        keys = minhash.band_keys(sigs)
        known = self._index.lookup(keys)  # earlier posts sharing a band, per post and band
        n_before = len(self._order)
        times = [_post_time(x) for x in posts]
        # Semantic joins only to narratives active lately; a copy (near-duplicate) joins at any age.
        # Only the narratives active for the chunk's oldest post are compared (most of a long-running
        # engine's are not): the same best one, at a cost that does not grow with the engine.
        gap = p.semantic_max_gap_hours * 3600.0
        cols = _rows_where(self._last_seen[:n_before] >= min(times) - gap) if n_before else None
        width = n_before if cols is None else cols.size
        if width:
            centroids = self._centroids[:n_before] if cols is None else self._centroids[cols]
            last_seen = self._last_seen[:n_before] if cols is None else self._last_seen[cols]
            # (in blocks of posts: a chunk against a million active rows would be a 1 GB matrix at once)
            stamps, best, best_sim = np.asarray(times), np.zeros(len(posts), dtype=np.int64), np.zeros(len(posts), dtype=np.result_type(vecs, centroids))
            step = max(1, _SIMILARITY_BLOCK // width)
            for start in range(0, len(posts), step):
                part = slice(start, start + step)
                sims = np.where(last_seen[None, :] < (stamps[part, None] - gap), np.float32(-2.0), vecs[part] @ centroids.T)
                best[part] = sims.argmax(axis=1)
                best_sim[part] = sims[np.arange(sims.shape[0]), best[part]]
            best_row = best if cols is None else cols[best]
        else:
            best_row, best_sim = np.zeros(len(posts), dtype=np.int64), np.full(len(posts), -1.0)
        chunk_keys: dict[int, int] = {}
        post_rows: list[int] = []
        keys_list = keys.tolist()
        known_list = known.tolist()
        has_sig_list = has_sig.tolist()
        best_sim_list = best_sim.tolist()
        best_row_list = best_row.tolist()
        for i, post in enumerate(posts):
            vec = vecs[i]
            choice: Assignment | None = None
            if has_sig_list[i]:
                candidates = {c for c in known_list[i] if c >= 0}
                candidates.update(chunk_keys[k] for k in keys_list[i] if k in chunk_keys)
                if candidates:
                    cand = np.fromiter(candidates, dtype=np.int64, count=len(candidates))
                    jac = np.count_nonzero(self._sigs[cand] == sigs[i], axis=1) / minhash.NUM_PERM
                    j = int(jac.argmax())
                    if jac[j] >= p.near_duplicate_threshold:
                        c = int(cand[j])
                        choice = Assignment(post.id, self._post_narrative[c], "near-duplicate", float(jac[j]), self._post_ids[c])
            dhashes = [img.dhash for img in post.images if img.dhash]
            if choice is None and dhashes:  # the post's whole images against earlier images and their crops
                near = self._image_neighbour(dhashes)
                if near is not None:  # similarity: the share of the 256 bits that agree
                    choice = Assignment(post.id, self._post_narrative[near[0]], "near-duplicate-image", 1.0 - near[1] / 256, self._post_ids[near[0]])
            if choice is None:
                sim, nid = (best_sim_list[i], self._order[best_row_list[i]]) if width else (-1.0, "")
                if len(self._order) > n_before:  # narratives born in this chunk
                    fresh = self._centroids[n_before : len(self._order)] @ vec
                    k = int(fresh.argmax())
                    if fresh[k] > sim:
                        sim, nid = float(fresh[k]), self._order[n_before + k]
                other_language = bool(nid) and post.language is not None and post.language not in self.narratives[nid].languages
                if sim >= (p.crosslingual if other_language else p.semantic):
                    choice = Assignment(post.id, nid, "semantic", sim, nid)
            if choice is None:
                nid = self._fresh_id("nar", post.id)
                self.narratives[nid] = Narrative(id=nid, vec_sum=np.zeros(self.dim, dtype=np.float32), created_at=_iso(times[i]))
                new_narratives.append(nid)
                choice = Assignment(post.id, nid, "seed", 1.0, "")
            centroid = self._add_member(self.narratives[choice.narrative_id], post, times[i], vec, choice, factcheck_hits.get(post.id, ()))
            self._set_centroid(choice.narrative_id, centroid)
            touched.add(choice.narrative_id)
            assignments.append(choice)
            row = self._remember_post(post.id, choice.narrative_id, sigs[i] if has_sig_list[i] else None, times[i])
            self._remember_images(row, _image_and_crop_hashes(post))
            post_rows.append(row)
            if has_sig_list[i]:
                for k in keys_list[i]:
                    chunk_keys.setdefault(k, row)
        valid = np.flatnonzero(has_sig)
        if valid.size:
            rows = np.asarray(post_rows, dtype=np.int64)[valid]
            self._index_signatures(keys[valid], rows)

    def _fresh_id(self, prefix: str, first: str) -> str:
        """The id of a new narrative (`first`: the post it starts from) or topic (its first
        narrative), from that and the number of the write it is made in. The same stream gives
        the same ids in every run, and so the same order of topic merges (taken in id order) and
        the same topics: with random ids two runs on PHEME differed (topic ARI 0.955-0.958). Two
        workers assigning one post in the same write number give it the same id, and only one of
        them stores it (the other's write is refused)."""
        held: Mapping[str, Any] = self.narratives if prefix == "nar" else self.topics
        seed = f"{self.seq}\x1f{first}"
        made = _new_id(prefix, seed)
        attempt = 0
        while made in held:  # (the same post twice in one batch, or a narrative placed again after a repair)
            attempt += 1
            made = _new_id(prefix, f"{seed}\x1f{attempt}")
        return made

    def _add_member(self, n: Narrative, post: Post, ts: float, vec: np.ndarray, a: Assignment, hits: Sequence[dict[str, Any]]) -> np.ndarray:
        """Update the narrative with one post; returns its new unit centroid."""
        n.vec_sum = n.vec_sum + vec
        n.size += 1
        n.first_seen = min(n.first_seen, ts)
        n.last_seen = max(n.last_seen, ts)
        n.languages[post.language or "und"] += 1
        n.terms.update([sys.intern(t) for t in set(post.tokens.split()) - _STOP if len(t) > 2 and not t.isdigit()])
        n.ranked = None
        if len(n.terms) > 2000:  # bounded memory: keep the frequent terms
            n.terms = Counter(dict(n.terms.most_common(500)))
        n.hourly[int(ts // 3600)] += 1
        n.methods[a.method] += 1
        n.add_recent((post.id, ts, a.method, round(a.similarity, 4)))
        post_heat = ts / 3600.0 / self.params.heat_half_life_hours
        n.heat = _log2_add(n.heat, post_heat)
        if n.topic:
            self._grow_topic(self.topics[n.topic], n, vec, 1, post_heat)
        norm = float(np.sqrt(n.vec_sum @ n.vec_sum))
        centroid = n.vec_sum / norm if norm else n.vec_sum
        sim_new = float(vec @ centroid)
        sim_rep = float(n.rep_vec @ centroid) if n.rep_vec is not None else -2.0
        if sim_new > sim_rep:
            n.representative = {"post_id": post.id, "text": (post.norm_text or post.text)[:500], "language": post.language}
            # (the first post's vector is the sum: one array for both; neither is changed in place)
            n.rep_vec = n.vec_sum if n.size == 1 else np.asarray(vec, dtype=np.float32).copy()
            n.rep_doc = None
        for hit in hits:
            tally_factcheck(n.factchecks, hit)
        return centroid

    # -- topics -----------------------------------------------------------------
    def _set_topic_row(self, tid: str) -> None:
        row = self._topic_row.get(tid)
        if row is None:
            row = len(self._topic_order)
            self._topic_order.append(tid)
            self._topic_row[tid] = row
            if row >= self._topic_centroids.shape[0]:
                size = max(64, row + row // 4)
                grown = np.zeros((size, self.dim), dtype=np.float32)
                grown[: self._topic_centroids.shape[0]] = self._topic_centroids
                window = np.full((size, 2), np.nan)
                window[: self._topic_window.shape[0]] = self._topic_window
                self._topic_centroids, self._topic_window = grown, window
        t = self.topics[tid]
        if self._topic_row_log is not None:
            self._topic_row_log.append(row)
        self._topic_centroids[row] = t.mean()
        gap = self.params.topic_max_gap_hours * 3600.0
        self._topic_window[row] = (t.first_seen - gap, t.last_seen + gap)

    def _retire_topic_row(self, tid: str) -> None:
        row = self._topic_row[tid]
        if self._topic_row_log is not None:
            self._topic_row_log.append(row)
        self._topic_centroids[row] = 0.0
        self._topic_window[row] = np.nan  # never time-compatible again

    def _best_topic(self, centroid: np.ndarray, first: float, last: float, exclude: str = "") -> tuple[float, str]:
        n = len(self._topic_order)
        if n == 0:
            return -2.0, ""
        ok = _time_compatible(self._topic_window[:n], first, last)
        if exclude:
            ok[self._topic_row[exclude]] = False
        if not ok.any():
            return -2.0, ""
        rows = _rows_where(ok)  # only the time-compatible topics (few of a long-running engine's)
        if rows is None:
            sims = np.where(ok, self._topic_centroids[:n] @ centroid, -2.0)
            row = int(sims.argmax())
            sim = float(sims[row])
        else:
            sims = self._topic_centroids[rows] @ centroid
            best = int(sims.argmax())
            row, sim = int(rows[best]), float(sims[best])
        return sim, self._topic_order[row]

    def _grow_topic(self, topic: Topic, n: Narrative, vec_sum: np.ndarray, size: int, heat: float | None) -> None:
        # (a topic's first narrative: its sum is the narrative's; one array for both, never changed in place)
        topic.vec_sum = vec_sum if topic.size == 0 and vec_sum is n.vec_sum else topic.vec_sum + vec_sum
        topic.size += size
        topic.first_seen = min(topic.first_seen, n.first_seen)
        topic.last_seen = max(topic.last_seen, n.last_seen)
        if heat is not None:
            topic.heat = _log2_add(topic.heat, heat)

    def _assign_topics(self, new_narratives: list[str], touched: set[str]) -> set[str]:
        p = self.params
        touched_topics: set[str] = set()
        # Narratives already in a topic passed their new posts to it in `_add_member`.
        for nid in touched:
            tid = self.narratives[nid].topic
            if tid:
                self._set_topic_row(tid)
                touched_topics.add(tid)
        self._topic_row_log = []
        placed = [self.narratives[nid] for nid in new_narratives]
        means = [n.vec_sum / max(n.size, 1) for n in placed]
        shortlist = self._shortlist(means, [(n.first_seen, n.last_seen) for n in placed], [-1] * len(placed))
        fresh: dict[str, int] = {}  # topics made for one new narrative: their merge asks what its choice asked
        for i, n in enumerate(placed):
            nid = n.id
            if shortlist is None:
                sim, tid = self._best_topic(means[i], n.first_seen, n.last_seen)
            else:
                sim, tid = shortlist.best(i, means[i], n.first_seen, n.last_seen)
            if not tid or sim < p.topic:
                tid = self._fresh_id("top", nid)
                self.topics[tid] = Topic(id=tid, vec_sum=np.zeros(self.dim, dtype=np.float32), created_at=n.created_at)
                fresh[tid] = i
            topic = self.topics[tid]
            n.topic = tid
            topic.narratives.append(nid)
            self._grow_topic(topic, n, n.vec_sum, n.size, n.heat)
            self._set_topic_row(tid)
            touched_topics.add(tid)
        touched_topics |= self._merge_topics(touched_topics, touched, shortlist, fresh)
        return touched_topics  # merged-away topics included: `save` records where they went

    def _merge_topics(self, touched: set[str], moved: set[str], chosen: _TopicShortlist | None = None, fresh: Mapping[str, int] | None = None) -> set[str]:
        """Merge touched topics into time-compatible topics whose centroids now reach the threshold.
        Returns the topics merged away and those they went into (an untouched topic that takes a
        smaller one in is written too). The narratives of a topic merged away are added to `moved`:
        their documents name the topic they are now in (documents left naming the old one broke
        the next load's assignments). A topic made for one new narrative, and still only that
        narrative's (`fresh`: its query's place in `chosen`, the shortlist its topic was chosen
        from), asks that shortlist again: its mean, span and so its query are the narrative's."""
        changed: set[str] = set()
        queue = sorted(t for t in touched if t in self.topics)
        fresh = fresh if chosen is not None and fresh else {}
        others = [tid for tid in queue if tid not in fresh]
        asked = {tid: i for i, tid in enumerate(others)}
        queries = [self.topics[tid] for tid in others]
        shortlist = self._shortlist([t.mean() for t in queries], [(t.first_seen, t.last_seen) for t in queries], [self._topic_row[tid] for tid in others])
        while queue:
            tid = queue.pop()
            if tid not in self.topics:
                continue
            topic = self.topics[tid]
            if chosen is not None and tid in fresh and self._only_its_narrative(topic):
                sim, other_id = chosen.best(fresh[tid], topic.mean(), topic.first_seen, topic.last_seen, exclude=tid)
            elif shortlist is not None and tid in asked and self._topic_row[tid] not in shortlist.changed():
                sim, other_id = shortlist.best(asked[tid], topic.mean(), topic.first_seen, topic.last_seen, exclude=tid)
            else:  # (a topic that took another in since: compared with every row)
                sim, other_id = self._best_topic(topic.mean(), topic.first_seen, topic.last_seen, exclude=tid)
            if not other_id or sim < self.params.topic:
                continue
            other = self.topics[other_id]
            keep, drop = (other, topic) if other.size >= topic.size else (topic, other)
            for nid in drop.narratives:
                self.narratives[nid].topic = keep.id
            moved.update(drop.narratives)
            keep.narratives.extend(drop.narratives)
            keep.vec_sum = keep.vec_sum + drop.vec_sum
            keep.size += drop.size
            keep.first_seen = min(keep.first_seen, drop.first_seen)
            keep.last_seen = max(keep.last_seen, drop.last_seen)
            if drop.heat is not None:
                keep.heat = _log2_add(keep.heat, drop.heat)
            keep.merged.append({"topic_id": drop.id, "cosine": round(sim, 4), "narratives": len(drop.narratives), "at": datetime.now(UTC).isoformat(timespec="seconds")})
            keep.merged.extend(drop.merged)
            del self.topics[drop.id]
            self._retire_topic_row(drop.id)
            changed.update((drop.id, keep.id))
            self._set_topic_row(keep.id)
            queue.append(keep.id)
        self._topic_row_log = None
        return changed

    def _only_its_narrative(self, topic: Topic) -> bool:
        """A topic of one narrative whose sum is that narrative's (one array, `_grow_topic`), as
        it was made: its mean and span are the narrative's, the same query."""
        if len(topic.narratives) != 1:
            return False
        n = self.narratives[topic.narratives[0]]
        return topic.vec_sum is n.vec_sum and topic.size == n.size and (topic.first_seen, topic.last_seen) == (n.first_seen, n.last_seen)

    def _shortlist(self, means: list[np.ndarray], spans: list[tuple[float, float]], excluded: list[int]) -> _TopicShortlist | None:
        """A shortlist of these queries' topics, where there are enough of both to be worth one
        product (None: each is compared with every row, `_best_topic`)."""
        if len(means) < 2 or len(self._topic_order) < SHORTLIST_MIN_TOPICS:
            return None
        times = np.asarray(spans, dtype=np.float64).reshape(-1, 2)
        return _TopicShortlist(self, np.stack(means).astype(np.float32, copy=False), times[:, 0], times[:, 1], np.asarray(excluded, dtype=np.int64), self.params.topic)

    # -- persistence --------------------------------------------------------------
    def load(self, storage: Storage, org: str) -> None:
        """Everything stored (with `memory_days`, what is within it: `_load_recent`), and the
        sequence number read *before* it: a process that writes while this reads (its narratives,
        then their members, in separate reads) makes this engine's number older than the stored
        one, never a mix that claims to be current (`engine_for` checks and catches up)."""
        store = NarrativeStore(storage)
        state = store.state(org)
        self.seq = state.seq if state is not None else 0
        self.loaded_from = (state.seq, state.token) if state is not None else None
        self.token = state.token if state is not None else ""
        if self.params.memory_days > 0:
            self._load_recent(store, org)
            self._share_sums(self.topics)
            return
        for n in store.narratives(org):
            self.narratives[n.id] = n
            self._set_centroid(n.id)
        for t in store.live_topics(org):
            self.topics[t.id] = t
            self._set_topic_row(t.id)
        self._share_sums(self.topics)
        self._repair_topics(store, org)
        self._remember_members(store.members(org))

    def _load_recent(self, store: NarrativeStore, org: str) -> None:
        """What an engine keeps with `memory_days`: the members within it of the newest (read
        newest first, up to the first older one), the live topics active within it and all their
        narratives. What is older is read only by id when asked (a post seen before).

        The topics are found from those members, not by reading every topic: a topic is active
        within the horizon when one of its narratives has a member there (its `last_seen` is its
        newest member's time), so the members' narratives name them. A narrative naming a topic
        merged away (a store written before merges wrote the narratives they moved) leads through
        the `merged_into` chain to the live one."""
        horizon = self.params.memory_days * 86400.0
        members: list[NarrativeMembership] = []
        cutoff = -math.inf
        for m in store.members_newest_first(org):
            ts = _parse_iso(m.time) if m.time else -math.inf
            if not members:
                self.newest = min(ts, time.time() + 86400.0)
                cutoff = self.newest - horizon
            if ts < cutoff:
                break
            members.append(m)
        self.cutoff = cutoff
        docs = store.documents(org, sorted({m.narrative_id for m in members}))
        wanted = {str(doc.get("topic_id") or "") for doc in docs.values()} - {""}
        into: dict[str, str] = {}  # every topic read that was merged away, and where it went
        while wanted:
            found = store.topic_documents_of(org, sorted(wanted))
            for tid, doc in found.items():
                if doc.get("merged_into") is not None:
                    into[tid] = str(doc["merged_into"])
                elif _parse_iso(doc["last_seen"]) >= cutoff:
                    self.topics[tid] = Topic.from_doc(doc)
                    self._set_topic_row(tid)
            wanted = {into[tid] for tid in found if tid in into} - found.keys() - into.keys() - self.topics.keys() - {""}
        listed = {nid for t in self.topics.values() for nid in t.narratives} | docs.keys()
        docs.update(store.documents(org, sorted(listed - docs.keys())))
        self._take_narratives({nid: docs[nid] for nid in sorted(listed) if nid in docs})
        self._repair_topics(store, org, into)
        members.sort(key=lambda m: (m.time, m.post_id))
        self._remember_members(members)

    def _repair_topics(self, store: NarrativeStore, org: str, into: Mapping[str, str] | None = None) -> None:
        """Narratives whose documents name a topic merged away (written before a merge wrote the
        narratives it moved, and the untouched topic that took a smaller one in) are put in the
        live topic that lists them, else in the one the merged topic's `merged_into` chain ends
        in, else, with the next batch, in the topic a new narrative would join. `into`: the
        merged-away topics' `merged_into`, when the caller has read every chain its narratives
        start (else every topic document is read, if any narrative needs it)."""
        for t in self.topics.values():
            for nid in t.narratives:
                n = self.narratives.get(nid)
                if n is not None and n.topic != t.id:
                    n.topic = t.id
                    self._repaired.add(nid)
        orphans = [n for n in self.narratives.values() if n.topic and n.topic not in self.topics]
        if not orphans:
            return
        if into is None:
            into = {tid: str(doc.get("merged_into") or "") for tid, doc in store.topic_documents(org)}
        for n in orphans:
            tid, seen = n.topic, set()
            while tid and tid not in self.topics and tid not in seen:
                seen.add(tid)
                tid = into.get(tid, "")
            log.warning("narratives: %s names topic %s, merged away; it goes to %s", n.id, n.topic, tid or "the topic a new narrative would join")
            self._repaired.add(n.id)
            if tid in self.topics:
                n.topic = tid
                topic = self.topics[tid]
                topic.narratives.append(n.id)
                self._grow_topic(topic, n, n.vec_sum, n.size, n.heat)
                self._set_topic_row(tid)
            else:
                n.topic = ""
                self._unplaced.append(n.id)

    def catch_up(self, storage: Storage, org: str, state: NarrativeState | None) -> bool:
        """Bring an engine a few writes behind up to the stored state from the change entries of
        those writes: their members, narratives and topics only (another worker's batches). False,
        with nothing changed, when it cannot: assigned posts it never stored, too far behind, or
        an entry overwritten or missing (then `load` a new engine). `state` is the stored state the
        caller has just read; as in `load`, it is read before the rest, and it becomes `loaded_from`:
        a write during the reads leaves the engine behind, never claiming to be current with a mix."""
        store = NarrativeStore(storage)
        if self.dirty or state is None or not self.seq < state.seq <= self.seq + CATCH_UP_MAX:
            return False
        numbers = range(self.seq + 1, state.seq + 1)
        entries = store.change_entries(org, numbers)
        token, members, narratives, topics = self.token, [], set(), set()
        for k in numbers:
            entry = entries.get(_change_slot(k))
            if entry is None or entry.get("seq") != k or entry.get("after") != token:
                return False
            token = str(entry["token"])
            members.extend(entry.get("members", ()))
            narratives.update(entry.get("narratives", ()))
            topics.update(entry.get("topics", ()))
        if token != state.token:
            return False
        self.loaded_from = (state.seq, state.token)
        joined = NarrativeMembers(storage).get(org, [pid for pid in dict.fromkeys(members) if pid not in self._post_row])
        self._take_narratives(store.documents(org, sorted(narratives)))
        self._take_topics(store.topic_documents_of(org, sorted(topics)))
        if self.params.memory_days > 0:
            self._revive(storage, org)
        self._share_sums(topics)
        self._remember_members(m for m in joined.values())
        self.seq, self.token, self.written = state.seq, state.token, {}
        return True

    def _remember_members(self, members: Iterable[NarrativeMembership]) -> None:
        rows, sigs = [], []
        timed = self.params.memory_days > 0
        for m in members:
            if timed and m.narrative_id not in self.narratives:  # (its narrative was not kept: a copy of it starts anew)
                continue
            sig = _decode_sig(m.minhash) if m.minhash else None
            ts = _parse_iso(m.time) if timed and m.time else 0.0
            self.newest = max(self.newest, ts) if timed else self.newest
            row = self._remember_post(m.post_id, m.narrative_id, sig, ts)
            self._remember_images(row, m.dhash or [])
            if sig is not None:
                rows.append(row)
                sigs.append(sig)
        if sigs:
            self._index_signatures(minhash.band_keys(np.stack(sigs)), np.asarray(rows, dtype=np.int64))

    # -- the memory horizon (`memory_days`) ----------------------------------------
    def _forget_before(self, latest: float) -> None:
        """With `memory_days`: once the newest post time (never past the wall clock by more than
        a day: a post dated in the future must not empty the engine) moves the horizon on by a
        sixteenth of it (at least an hour), drop what is older from memory: members' rows and
        signatures, and topics quiet since then with all their narratives (a topic's document sums
        every narrative in it). Nothing is removed from the store."""
        horizon = self.params.memory_days * 86400.0
        self.newest = max(self.newest, min(latest, time.time() + 86400.0))
        cutoff = self.newest - horizon
        if cutoff < self.cutoff + max(horizon / 16, 3600.0):
            return
        self.cutoff = cutoff
        for tid in [tid for tid, t in self.topics.items() if t.last_seen < cutoff]:
            for nid in self.topics.pop(tid).narratives:
                self.narratives.pop(nid, None)
                self.written.pop(nid, None)
        # narrative and topic rows, kept in their order
        order = [nid for nid in self._order if nid in self.narratives]
        rows = np.asarray([self._row[nid] for nid in order], dtype=np.int64)
        self._centroids, self._last_seen = self._centroids[rows].copy(), self._last_seen[rows].copy()
        self._order, self._row = order, {nid: i for i, nid in enumerate(order)}
        topic_order = [tid for tid in self._topic_order if tid in self.topics]
        rows = np.asarray([self._topic_row[tid] for tid in topic_order], dtype=np.int64)
        self._topic_centroids, self._topic_window = self._topic_centroids[rows].copy(), self._topic_window[rows].copy()
        self._topic_order, self._topic_row = topic_order, {tid: i for i, tid in enumerate(topic_order)}
        # members: rows at or after the cutoff whose narrative is kept, in their order
        n = len(self._post_ids)
        kept = np.flatnonzero((self._post_times[:n] >= cutoff) & np.fromiter((nid in self.narratives for nid in self._post_narrative), dtype=bool, count=n))
        new_row = np.full(n, -1, dtype=np.int64)
        new_row[kept] = np.arange(kept.size)
        self._post_ids = [self._post_ids[i] for i in kept.tolist()]
        self._post_narrative = [self._post_narrative[i] for i in kept.tolist()]
        self._post_row = {pid: i for i, pid in enumerate(self._post_ids)}
        self._sigs, self._has_sig, self._post_times = self._sigs[kept].copy(), self._has_sig[kept].copy(), self._post_times[kept].copy()
        owners = new_row[np.asarray(self._image_owner, dtype=np.int64)] if self._image_owner else np.zeros(0, dtype=np.int64)
        self._image_bits, self._image_owner = self._image_bits[owners >= 0], owners[owners >= 0].tolist()
        self._index = minhash.BandIndex()
        with_sig = np.flatnonzero(self._has_sig)
        if with_sig.size:
            self._index_signatures(minhash.band_keys(self._sigs[with_sig]), with_sig)
        log.info("narratives: dropped from memory what is older than %s: %d members, %d narratives, %d topics kept",
                 _iso(cutoff), len(self._post_ids), len(self.narratives), len(self.topics))

    def _revive(self, storage: Storage, org: str) -> None:
        """After a catch-up with `memory_days`: a narrative read again whose topic this engine
        dropped (another worker's batch of old posts joined it) brings its topic back, and a topic
        back brings all its narratives (its document sums them)."""
        store = NarrativeStore(storage)
        missing_topics = sorted({n.topic for n in self.narratives.values() if n.topic and n.topic not in self.topics})
        self._take_topics(store.topic_documents_of(org, missing_topics))  # (none held: a merged-away one is skipped)
        self._take_narratives(store.documents(org, sorted({nid for t in self.topics.values() for nid in t.narratives if nid not in self.narratives})))

    def holds(self, state: NarrativeState | None) -> bool:
        """Whether this engine holds what is stored: the state it loaded or last wrote (its number
        and its token: two processes that loaded the same number write the same next one)."""
        if self.dirty:  # assigned posts it has not stored
            return False
        return (state.seq, state.token) == (self.seq, self.token) if state is not None else self.seq == 0

    def save(self, storage: Storage, org: str, posts: Sequence[Post], assignments: Sequence[Assignment], touched: set[str], touched_topics: set[str]) -> None:
        by_id = {p.id: p for p in posts}
        rule = decided_by(self.params)
        sig_of = self._signature_lookup([a.post_id for a in assignments])
        members: list[tuple[NarrativeMembership, float | None]] = []
        for a in assignments:
            post = by_id[a.post_id]
            ts = _post_time(post)
            members.append((NarrativeMembership(
                post_id=a.post_id, narrative_id=a.narrative_id, method=a.method, similarity=round(a.similarity, 4), neighbour=a.neighbour,
                time=_iso(ts), language=post.language, decided_by=rule,
                dhash=_image_and_crop_hashes(post) if any(img.dhash for img in post.images) else None, minhash=sig_of.get(a.post_id),
            ), ts))
        gone = [t for t in touched_topics if t not in self.topics]
        live = [t for t in touched_topics if t in self.topics]
        topic_rows: list[tuple[str, dict[str, Any], float | None]] = [
            (tid, self.topics[tid].to_doc(self.narratives, rule), self.topics[tid].heat) for tid in live]
        # merged away: documents are never deleted; they point to where their narratives went
        topic_rows += [self._merged_row(tid) for tid in gone]
        state = NarrativeState(seq=self.seq, version=NARRATIVES_VERSION, space=self.params.space, decided_by=rule,
                               updated_at=datetime.now(UTC).isoformat(timespec="seconds"))
        narrative_rows = [(nid, self.narratives[nid].to_doc(rule), self.narratives[nid].heat) for nid in touched]
        self.written = {}  # (a failed write leaves none: the store may not hold them)
        # Written only over the state `assign` started from: another process that wrote since (its
        # batch touching these narratives too) makes this PreconditionFailed, nothing is written,
        # and this engine, no longer current, is loaded again for the batch's next attempt.
        NarrativeStore(storage).save(org, members, narrative_rows, topic_rows, state, after=self.base[1], expect=_state_is(*self.base))
        self.token = state.token
        self.dirty = False
        self.written = {nid: doc for nid, doc, _ in narrative_rows}

    def _merged_row(self, tid: str) -> tuple[str, dict[str, Any], float | None]:
        into = next((t.id for t in self.topics.values() if any(m["topic_id"] == tid for m in t.merged)), "")
        return (tid, {"id": tid, "merged_into": into, "narratives": [], "size": 0, "decided_by": decided_by(self.params)}, None)

    def _signature_lookup(self, post_ids: Sequence[str]) -> dict[str, str]:
        rows = [(pid, self._post_row[pid]) for pid in post_ids if pid in self._post_row]
        return {pid: _encode_sig(self._sigs[row]) for pid, row in rows if self._has_sig[row]}




@dataclass(frozen=True)
class NarrativeState:
    """`narrative_state` (one document, id "state"): the stage's sequence number (bumped with
    every write, so an engine cached by another process reloads), the version and vector
    space its narratives were built in."""

    seq: int
    version: str
    space: str
    decided_by: str
    updated_at: str
    # new with every write: two processes that loaded the same number and wrote one after the
    # other wrote the same `seq`; a reader comparing what it read before and after tells them apart
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_doc(self) -> dict[str, Any]:
        return {"seq": self.seq, "version": self.version, "space": self.space, "decided_by": self.decided_by, "updated_at": self.updated_at,
                "token": self.token}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> NarrativeState:
        # documents from before spaces were recorded are raw
        return cls(seq=int(doc.get("seq", 0)), version=str(doc.get("version") or ""), space=str(doc.get("space") or "raw"),
                   decided_by=str(doc.get("decided_by") or ""), updated_at=str(doc.get("updated_at") or ""), token=str(doc.get("token") or ""))


class NarrativeStore:
    """The narratives stage's accessor of what it writes: `narratives` and `topics` as its
    working records (`Narrative`, `Topic`: the fields readers use, through
    `records.Narratives`, plus term counts and vectors), `narrative_members`
    (`records.NarrativeMembership`) and `narrative_state` (`NarrativeState`)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def _all(self, org: str, collection: str, page: int = 5000) -> list[tuple[str, dict[str, Any]]]:
        return list(iter_docs(self.storage, org, collection, page=page))

    def state(self, org: str) -> NarrativeState | None:
        doc = self.storage.get_docs(org, STATE, ["state"]).get("state")
        return NarrativeState.from_doc(doc) if doc else None

    def narratives(self, org: str) -> list[Narrative]:
        return [Narrative.from_doc(doc) for _, doc in self._all(org, NARRATIVES)]

    def documents(self, org: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored documents, for a change of one field that keeps the rest as it is
        (`refresh_factchecks` rewrites only their fact-check lists)."""
        return self.storage.get_docs(org, NARRATIVES, list(ids)) if ids else {}

    def live_topics(self, org: str) -> list[Topic]:
        return [Topic.from_doc(doc) for _, doc in self._all(org, TOPICS) if doc.get("merged_into") is None]

    def topic_documents(self, org: str) -> list[tuple[str, dict[str, Any]]]:
        """Every topic document, merged-away ones included."""
        return self._all(org, TOPICS)

    def members_newest_first(self, org: str) -> Iterator[NarrativeMembership]:
        """Every membership, the newest post first (read by keyset, page by page: stop when it
        has enough; each member has its post's time as its sort key)."""
        for pid, _, doc in iter_docs_by_key(self.storage, org, MEMBERS, order="sort_desc", page=5000):
            yield NarrativeMembership.from_doc(pid, doc)

    def members(self, org: str) -> list[NarrativeMembership]:
        """Every membership, in time order."""
        found = [NarrativeMembership.from_doc(i, d) for i, d in self._all(org, MEMBERS)]
        return sorted(found, key=lambda m: (m.time, m.post_id))

    def save(self, org: str, members: Sequence[tuple[NarrativeMembership, float | None]], narratives: Sequence[tuple[str, dict[str, Any], float | None]],
             topics: Sequence[tuple[str, dict[str, Any], float | None]], state: NarrativeState, after: str = "", expect: Expect | None = None) -> None:
        """A batch's memberships, narratives, topics, the new state and its change entry (what it
        changed, written over the state whose token is `after`) in one transaction (none of it
        when `expect` does not hold: PreconditionFailed)."""
        Rows = list[tuple[str, dict[str, Any], float | None]]
        change = _change_row(state, after, [m.post_id for m, _ in members], [nid for nid, _, _ in narratives], [tid for tid, _, _ in topics])
        writes: list[tuple[str, Rows]] = [
            NarrativeMembers.rows(members), (NARRATIVES, list(narratives)), (TOPICS, list(topics)), (STATE, [("state", state.to_doc(), None)]),
            (CHANGES, [change]),
        ]
        self.storage.put_docs_batch(org, [(collection, rows) for collection, rows in writes if rows], expect=[expect] if expect else [])

    def put_narratives(self, org: str, narratives: Sequence[tuple[str, dict[str, Any], float | None]], expect: Expect | None = None) -> None:
        self.storage.put_docs_batch(org, [(NARRATIVES, list(narratives))], expect=[expect] if expect else [])

    def topic_documents_of(self, org: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """These topics' documents (merged-away ones included)."""
        return self.storage.get_docs(org, TOPICS, list(ids)) if ids else {}

    def change_entries(self, org: str, numbers: Sequence[int]) -> dict[str, dict[str, Any]]:
        """The change entries stored in the slots of these write numbers, by slot (an entry is
        the number's only while no later write took its slot: check its `seq`)."""
        return self.storage.get_docs(org, CHANGES, [_change_slot(k) for k in numbers])

    def bump(self, org: str, state: NarrativeState, narratives: Sequence[tuple[str, dict[str, Any], float | None]] = ()) -> NarrativeState:
        """The state with the next number and a new token, stored with these narrative documents
        over `state` (PreconditionFailed, and nothing written, when another process wrote since)."""
        bumped = next_state(state)
        change = _change_row(bumped, state.token, [], [nid for nid, _, _ in narratives], [])
        rows: list[tuple[str, dict[str, Any], float | None]] = [("state", bumped.to_doc(), None)]
        writes = [(STATE, rows), (CHANGES, [change])]
        self.storage.put_docs_batch(org, [(NARRATIVES, list(narratives)), *writes] if narratives else writes, expect=[_state_is(state.seq, state.token)])
        return bumped


def _change_slot(seq: int) -> str:
    return str(seq % CHANGE_RING)


def _change_row(state: NarrativeState, after: str, members: Sequence[str], narratives: Sequence[str], topics: Sequence[str]) -> tuple[str, dict[str, Any], float | None]:
    """The change entry of the write that stores `state` over the state whose token is `after`."""
    doc = {"seq": state.seq, "token": state.token, "after": after, "members": list(members), "narratives": list(narratives), "topics": list(topics)}
    return _change_slot(state.seq), doc, None


def next_state(state: NarrativeState) -> NarrativeState:
    return replace(state, seq=state.seq + 1, updated_at=datetime.now(UTC).isoformat(timespec="seconds"), token=uuid.uuid4().hex)


def _state_is(seq: int, token: str) -> Expect:
    """The precondition of a write over the state (`seq`, `token`): no state at all for (0, ""),
    the number for a state stored before tokens were."""
    if token:
        return Expect(STATE, "state", "token", token)
    return Expect(STATE, "state", "seq", seq) if seq else Expect(STATE, "state")




# One engine per (storage, org), reused across batches while no other process wrote in between.
LOAD_ATTEMPTS = 3  # reads of everything stored before an engine that another process keeps writing under is given up
SAVE_ATTEMPTS = 4  # assignments of a batch whose write another process's came before, before the batch is given back
_ENGINES: weakref.WeakKeyDictionary[Any, dict[str, NarrativeEngine]] = weakref.WeakKeyDictionary()


def engine_for(storage: Storage, org: str, params: NarrativeSettings, dim: int) -> NarrativeEngine:
    engines = _ENGINES.setdefault(storage, {})
    engine = engines.get(org)
    state = NarrativeStore(storage).state(org)
    if state is not None and state.space != params.space:
        raise ConfigError(
            f"organisation '{org}' has narratives built from {state.space} vectors, and the settings now give "
            f"{params.space} vectors: centroids of two spaces cannot be compared (set narrative_centering back)"
        )
    if engine is None or engine.params != params or not engine.holds(state) or engine.dim != dim:
        # one behind (its settings the same) catches up from the writes since; else, or when it
        # cannot, everything is loaded
        behind = engine if engine is not None and engine.params == params and engine.dim == dim else None
        for _ in range(LOAD_ATTEMPTS):
            current = behind
            if current is not None:
                with current.lock:  # (another thread's batch may be assigning on it)
                    caught_up = current.catch_up(storage, org, state)
                if not caught_up:
                    current = None
            if current is None:
                current = NarrativeEngine(params, dim)
                t0 = time.perf_counter()
                current.load(storage, org)
                log.info("narratives of '%s': everything stored loaded (%s), %d narratives, %d members, in %.2f s", org,
                         "no engine yet" if behind is None else "it could not catch up", len(current.narratives), len(current._post_ids),
                         time.perf_counter() - t0)
            after = NarrativeStore(storage).state(org)
            if ((after.seq, after.token) if after is not None else None) == current.loaded_from:  # nothing written while it read
                break
            # Another process wrote while it read: its members could name narratives this engine
            # never read (a KeyError in the batch, seen with two workers). It catches up from there
            # (what changed is read again).
            behind, state = current, after
        else:
            raise Conflict(f"narratives of '{org}' changed while they were read, {LOAD_ATTEMPTS} times; the batch is retried")
        engines[org] = engine = current
    return engine


@contextlib.contextmanager
def _current_engine(storage: Storage, org: str) -> Iterator[NarrativeEngine | None]:
    """This process's engine of `org`, held under its lock, when it holds what is stored (its
    sequence number is the stored one); None when there is none or another process wrote since."""
    engine = _ENGINES.get(storage, {}).get(org)
    if engine is None:
        yield None
        return
    with engine.lock:
        state = NarrativeStore(storage).state(org)
        yield engine if state is not None and engine.holds(state) else None


def narrative_sizes(storage: Storage, org: str, ids: Sequence[str]) -> dict[str, int] | None:
    """The sizes of these narratives as stored, from this process's engine when it holds what is
    stored (its sequence number is the stored one, checked under its lock); None when it does
    not (no engine here, or another process wrote since): then read the documents. A narrative
    the engine does not know is left out."""
    with _current_engine(storage, org) as engine:
        if engine is None:
            return None
        return {nid: engine.narratives[nid].size for nid in ids if nid in engine.narratives}


def written_narratives(
    storage: Storage, org: str, post_ids: Sequence[str], min_size: int = 0,
) -> tuple[dict[str, str], dict[str, NarrativeRecord | None]] | None:
    """What the store holds of these posts' narratives, from this process's engine when it holds
    what is stored (as `narrative_sizes`; None when it does not): each post's narrative id (what
    its `narrative_members` document says; posts without one left out), and the narratives whose
    documents the engine's last write stored, read as `Narratives.get` reads them (None for one
    smaller than `min_size`, which the caller skips). A narrative not in the second map was
    written earlier: read it from the store."""
    with _current_engine(storage, org) as engine:
        if engine is None:
            return None
        row_of, narrative_at = engine._post_row, engine._post_narrative
        narrative_of = {pid: narrative_at[row_of[pid]] for pid in post_ids if pid in row_of}
        if engine.cutoff > -math.inf:  # members it dropped from memory (`memory_days`) are read
            dropped = [pid for pid in post_ids if pid not in row_of]
            narrative_of.update((pid, m.narrative_id) for pid, m in (NarrativeMembers(storage).get(org, dropped) if dropped else {}).items())
        records: dict[str, NarrativeRecord | None] = {}
        for nid in set(narrative_of.values()):
            doc = engine.written.get(nid)
            if doc is not None:
                records[nid] = NarrativeRecord.from_doc(nid, doc) if doc["size"] >= min_size else None
        return narrative_of, records


def factcheck_hits(storage: Storage, org: str, post_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """The stored fact-check matches (decision match or possible) of each post."""
    out: dict[str, list[dict[str, Any]]] = {}
    stored = storage.matches_for_posts(org, post_ids)  # one read for the batch
    for pid in post_ids:
        hits = [
            {"factcheck_id": c.factcheck_id, "decision": c.decision, "fused_score": round(c.fused_score, 4), "decided_by": c.decided_by}
            for c in stored.get(pid, [])
            if c.decision in {"match", "possible"}
        ]
        if hits:
            out[pid] = hits
    return out


def narrative_member_ids(storage: Storage, org: str, docs: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """Every member post of these narratives, in time order: a narrative's own `recent_posts`
    when it still lists them all, else the membership documents (read once for all of them)."""
    out: dict[str, list[str]] = {}
    partial: set[str] = set()
    for nid, doc in docs.items():
        recent = [str(r[0]) for r in doc.get("recent_posts", [])]
        if len(recent) >= int(doc.get("size", 0)):
            out[nid] = recent
        else:
            partial.add(nid)
    if partial:
        for m in NarrativeStore(storage).members(org):
            if m.narrative_id in partial:
                out.setdefault(m.narrative_id, []).append(m.post_id)
    return out


def refresh_factchecks(storage: Storage, org: str, post_ids: Sequence[str]) -> dict[str, Any]:
    """Recompute the fact-check lists of the narratives these posts belong to from the stored
    matches of all their members (after the posts were matched again against a changed library).

    Memberships do not move. The lists are written with the next sequence number, over the state
    read before the documents (another process's batch saved meanwhile, its own lists in those
    documents, makes the write fail and the lists are computed again), so an engine cached by
    another process reloads; this process's engine is updated in place."""
    members = NarrativeMembers(storage).get(org, list(post_ids))
    wanted = sorted({m.narrative_id for m in members.values()})
    if not wanted:
        return {"narratives_checked": 0, "narratives_changed": 0}
    store = NarrativeStore(storage)
    for attempt in range(1, SAVE_ATTEMPTS + 1):
        engine = _ENGINES.get(storage, {}).get(org)
        # Under the engine's lock: a batch being assigned meanwhile would save its older lists over these.
        with engine.lock if engine is not None else contextlib.nullcontext():
            state = store.state(org)
            docs = store.documents(org, wanted)
            member_ids = narrative_member_ids(storage, org, docs)
            hits = factcheck_hits(storage, org, [pid for nid in docs for pid in member_ids.get(nid, [])])
            rows: list[tuple[str, dict[str, Any], float | None]] = []
            for nid, doc in docs.items():
                tally: dict[str, dict[str, Any]] = {}
                for pid in member_ids.get(nid, []):
                    for hit in hits.get(pid, ()):
                        tally_factcheck(tally, hit)
                if tally == {f["factcheck_id"]: f for f in doc.get("factchecks", [])}:
                    continue
                doc["factchecks"] = _listed_factchecks(tally)
                rows.append((nid, doc, doc.get("heat_log2")))
            if not rows:
                break
            try:
                if state is None:  # (documents of a store from before the state: no engine to tell)
                    store.put_narratives(org, rows, expect=_state_is(0, ""))
                    break
                bumped = store.bump(org, state, rows)
            except PreconditionFailed:
                if attempt == SAVE_ATTEMPTS:
                    raise Conflict(f"narratives of '{org}' were written by another process during each of {SAVE_ATTEMPTS} refreshes") from None
                continue
            if engine is not None and engine.holds(state):
                # it was current: keep it so, without a reload
                for nid, doc, _ in rows:
                    if nid in engine.narratives:
                        engine.narratives[nid].factchecks = {f["factcheck_id"]: dict(f) for f in doc["factchecks"]}
                    engine.written.pop(nid, None)  # its stored document now has other fact-checks
                engine.seq, engine.token = bumped.seq, bumped.token
            break
    return {"narratives_checked": len(docs), "narratives_changed": len(rows), "changed": [nid for nid, _, _ in rows]}


def post_vectors(storage: Storage, org: str, embedder: Any, posts: Sequence[Post]) -> tuple[list[Post], np.ndarray]:
    """The posts that have a query vector from the matching stage, and those vectors (never
    embedded again here). They are looked up by text hash in the embedding cache the matching
    stage wrote them through, when there is one (cheap), else read from storage by id."""
    from factbridge.backends.embedders.cache import CachedEmbedder, text_sha
    from factbridge.pipeline.prepare import embedding_text

    vectors: dict[str, np.ndarray] = {}
    if isinstance(embedder, CachedEmbedder):
        shas = {p.id: text_sha(embedding_text(p)) for p in posts}
        cached = embedder.cache.get_many(embedder.id, "query", list(set(shas.values())))
        stored_shas = storage.vector_shas(org, "post", embedder.id, ids=[p.id for p in posts]) if cached else {}
        for p in posts:  # only vectors the matching stage stored for this very text
            if shas[p.id] in cached and stored_shas.get(p.id) == shas[p.id]:
                vectors[p.id] = cached[shas[p.id]]
    if len(vectors) < len(posts):
        ids, matrix = storage.load_vectors(org, "post", embedder.id, ids=[p.id for p in posts if p.id not in vectors])
        vectors.update(zip(ids, matrix, strict=True))
    found = [p for p in posts if p.id in vectors]
    if not found:
        return [], np.zeros((0, 0), dtype=np.float32)
    matrix = np.stack([vectors[p.id] for p in found]).astype(np.float32)
    return found, matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def assign_posts(storage: Storage, org: str, posts: Sequence[Post], vectors: np.ndarray, params: NarrativeSettings) -> dict[str, Any]:
    """Assign posts whose vectors are known and store everything; the stage and the eval both use this."""
    dim = int(vectors.shape[1]) if vectors.ndim == 2 and vectors.shape[0] else 0
    for attempt in range(1, SAVE_ATTEMPTS + 1):
        engine = engine_for(storage, org, params, dim)
        with engine.lock:
            posts, vectors = _unplaced(storage, org, engine, posts, vectors)
            hits = factcheck_hits(storage, org, [p.id for p in posts])
            assignments, touched, touched_topics = engine.assign(posts, vectors, hits)
            if not (assignments or touched or touched_topics):  # every post already placed: nothing to write
                (engine.seq, engine.token), engine.dirty = engine.base, False
                break
            try:
                engine.save(storage, org, posts, assignments, touched, touched_topics)
                break
            except PreconditionFailed:
                # another process's batch was saved since this engine was checked: the assignment
                # is taken back (else the engine is loaded again) and the batch assigned again on
                # the engine brought up to that write (its posts may join the narratives it made)
                engine.take_back(storage, org)
                if attempt == SAVE_ATTEMPTS:
                    raise Conflict(f"narratives of '{org}' were written by another process during each of {SAVE_ATTEMPTS} assignments; the batch is retried") from None
                log.info("narratives of '%s' written by another process during the assignment; assigning again (attempt %d)", org, attempt + 1)
            except Exception:
                # the write failed otherwise (the database gone, a lock timeout): taken back too, so
                # that the batch's retry catches up instead of loading everything (a write that
                # landed after all is then read back from its change entry). If the store cannot be
                # read either, the engine stays dirty and is loaded again.
                with contextlib.suppress(Exception):
                    engine.take_back(storage, org)
                raise
    methods = Counter(a.method for a in assignments)
    return {
        "assigned": len(assignments), "new_narratives": methods.get("seed", 0),
        "near_duplicate": methods.get("near-duplicate", 0) + methods.get("near-duplicate-image", 0), "semantic": methods.get("semantic", 0),
        "narratives_touched": len(touched), "topics_touched": len(touched_topics),
    }


def _unplaced(storage: Storage, org: str, engine: NarrativeEngine, posts: Sequence[Post], vectors: np.ndarray) -> tuple[Sequence[Post], np.ndarray]:
    """The posts without a narrative: with `memory_days` an engine may have dropped the member
    of a post seen before (it keeps its narrative: its stored membership is read by id)."""
    if engine.cutoff == -math.inf:
        return posts, vectors
    unknown = [p.id for p in posts if p.id not in engine._post_row]
    placed = NarrativeMembers(storage).get(org, unknown) if unknown else {}
    if not placed:
        return posts, vectors
    keep = [i for i, p in enumerate(posts) if p.id not in placed]
    return [posts[i] for i in keep], vectors[keep]


def narratives_stage(services: StageContext, org: str, posts: Sequence[Post]) -> StageSummary:
    """Stage: every new or changed post joins a narrative or starts one."""
    posts = [p for p in posts if (p.norm_text or p.text).strip()]
    if not posts:
        return {"assigned": 0}
    embedder_id = services.embedder.id
    section = services.settings.narratives
    centering = services.centering(wanted=section.centering)
    params = resolve_thresholds(section, embedder_id, centering)
    with_vectors, vectors = post_vectors(services.storage, org, services.embedder, posts)
    if centering is not None and with_vectors:
        vectors = centering.apply(vectors, [p.language for p in with_vectors], "query")
    missing = len(posts) - len(with_vectors)
    if missing:
        # The matching stage stores the vectors; when it was skipped these posts wait for it.
        log.warning("narratives: %d posts have no stored vector for %s; run ingest with matching to assign them", missing, embedder_id)
    if not with_vectors:
        return {"assigned": 0, "without_vector": missing}
    summary = assign_posts(services.storage, org, with_vectors, vectors, params)
    return {**summary, "without_vector": missing} if missing else summary


STAGE = FunctionStage(
    "narratives", NARRATIVES_VERSION, narratives_stage, needs=("embedding", "matching"), writes=(MEMBERS, NARRATIVES, TOPICS, STATE, CHANGES),
    doc="every new or changed post joins a narrative (near-duplicate or semantic) or starts one",
)
