"""Claim matching: which fact-checks does this post repeat?

Two retrievers see every post: dense (multilingual e5, query/passage encodings,
exact search over the library) and lexical (BM25 over script-aware tokens).
Their candidates are fused by rank-derived features and a small learned
re-ranker (never by adding a BM25 score to a cosine). Lexical evidence only
counts when the post and the fact-check share a language.

Each candidate keeps every signal's score and rank, the feature values, the
fused score, the decision and `decided_by`.
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import logging
import math
import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from factbridge.backends.embedders.base import Embedder, Progress
from factbridge.backends.embedders.cache import text_sha
from factbridge.backends.storage.base import Storage
from factbridge.backends.vectors.base import VectorIndex
from factbridge.backends.vectors.numpy_index import NumpyIndex
from factbridge.backends.vectors.selection import VectorIndexTuning
from factbridge.errors import ConfigError, EmbedderMismatch
from factbridge.models import (
    FactCheck,
    MatchCandidate,
    MatchResult,
    Post,
    SignalScore,
    passage_text,
)
from factbridge.pipeline.centering import LanguageCentering
from factbridge.pipeline.lexical import LEXICAL_VERSION, BM25Index, rearranged
from factbridge.pipeline.prepare import embedding_text
from factbridge.pipeline.reranker import CROSS_LANGUAGE_FEATURES, SAME_LANGUAGE_FEATURES, Reranker
from factbridge.pipeline.withdrawals import withdrawn_ids
from factbridge.text.crosslingual import CROSSLINGUAL_VERSION, ascii_digits
from factbridge.text.tokenize import TOKENIZER_VERSION, tokenize
from factbridge.text.vietnamese import TONES_VERSION

log = logging.getLogger(__name__)

MATCHER_VERSION = "hybrid-3"
# Nearest library items a stored (ANN) index is asked for per post: they fix the dense
# ranks the re-ranker reads; items below them only get "lower than these".
DENSE_SEARCH_DEPTH = 200
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")



def default_reranker_path() -> Path:
    return Path(str(files("factbridge") / "data" / "reranker-e5.json"))


def _numbers(text: str) -> set[str]:
    # digits of any script compare as ASCII: '២០១៩' in a Khmer post is 2019 in an English fact-check
    return {n.replace(",", "").rstrip(".") for n in _NUMBER.findall(ascii_digits(text)) if len(n) >= 2 or n != "0"}


_NOT_ALNUM = re.compile(r"[\W_]+")  # `\w` is `str.isalnum` and "_": what is left is the alphanumerics


@dataclass(frozen=True, slots=True)
class LibraryEntry:
    """What loading the library reads of each fact-check (`factcheck_fields`: no model built)."""

    id: str
    publisher: str
    claim: str
    title: str
    language: str | None
    tokens: str
    norm_text: str
    published_at: datetime | None
    claim_date: datetime | None
    withdrawn: bool  # its document carries a withdrawal (`withdrawals.withdrawal_of`)


ENTRY_FIELDS = ("publisher", "claim", "title", "language", "tokens", "norm_text", "published_at", "claim_date", "raw.withdrawn")


def library_entries(storage: Storage, org: str, ids: Sequence[str]) -> dict[str, LibraryEntry]:
    """The stored fact-checks of `ids` as the library's load reads them."""
    out: dict[str, LibraryEntry] = {}
    for fc_id, (publisher, claim, title, language, tokens, norm_text, published, claimed, withdrawn) in storage.factcheck_fields(org, ENTRY_FIELDS, ids).items():
        out[fc_id] = LibraryEntry(fc_id, publisher or "", claim or "", title or "", language, tokens or "", norm_text or "",
                                  _time(published), _time(claimed), isinstance(withdrawn, dict))
    return out


def _time(value: Any) -> datetime | None:
    """A stored time (the ISO text `FactCheck`'s JSON holds) as the model reads it."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return FactCheck.model_validate({"id": "", "claim": "", "published_at": value}).published_at


def _duplicate_key(fc: FactCheck | LibraryEntry) -> tuple[str, str]:
    # what a saved library's groups were keyed by: a change here changes SNAPSHOT_FORMAT (pipeline/snapshot.py)
    return (fc.publisher.casefold(), _NOT_ALNUM.sub("", fc.claim.casefold()))


def _group_key(fc: FactCheck | LibraryEntry) -> bytes:
    """`_duplicate_key` as 16 bytes: what a matcher keeps of every fact-check to find its
    group again when the library changes (the claim's text itself would be kept twice)."""
    publisher, claim = _duplicate_key(fc)
    return hashlib.blake2b(f"{publisher}\0{claim}".encode(), digest_size=16).digest()  # the claim has no NUL: one text per key


def _ranks(values: np.ndarray, picked: np.ndarray) -> np.ndarray:
    """1 + how many of `values` are strictly above each of `picked`: from the values above the
    lowest picked one alone, sorted (not the whole library's, sorted for every post: 1.5 ms a
    post at 300,000 fact-checks, where the candidates sit among the few hundred best)."""
    if not len(picked):
        return np.zeros(0, dtype=np.int64)
    above = np.sort(values[values > picked.min()])
    return len(above) - np.searchsorted(above, picked, side="right") + 1


def _natural(fc_id: str) -> tuple[int, int | str]:
    return (0, int(fc_id)) if fc_id.isdigit() else (1, fc_id)


def _code_points(fc_id: str) -> str:
    return fc_id


def canonical_factchecks(fcs: Sequence[FactCheck | LibraryEntry]) -> dict[str, str]:
    """Map each fact-check id to the original of its group of near-identical copies
    (same publisher, same claim up to case, punctuation and quotes): the earliest
    published one, then the first in natural id order."""
    groups: dict[tuple[str, str], list[FactCheck | LibraryEntry]] = {}
    for fc in fcs:
        groups.setdefault(_duplicate_key(fc), []).append(fc)
    return _originals(groups.values())


def _originals(groups: Iterable[Sequence[FactCheck | LibraryEntry]]) -> dict[str, str]:
    """`canonical_factchecks` of groups already made."""
    out: dict[str, str] = {}
    for members in groups:
        if len(members) == 1:  # most fact-checks: no copy to choose among
            out[members[0].id] = members[0].id
            continue
        original = min(members, key=lambda fc: ((fc.published_at or datetime.max).replace(tzinfo=None), _natural(fc.id)))
        for fc in members:
            out[fc.id] = original.id
    return out


@dataclass(slots=True)
class LibraryItem:
    """What the re-ranker's features read of a library fact-check. Its title's tokens and its
    numbers are worked out when a post first has it as a candidate, not for the whole library
    at each load (23 s of a 44 s load at 300,000 generated vi/km/fr/en fact-checks), and kept
    in slots of its own (no `__dict__`: 300,000 items are built at each start)."""

    id: str
    language: str
    title: str
    norm_text: str
    date: datetime | None
    _title_tokens: frozenset[str] | None = field(default=None, repr=False, compare=False)
    _numbers: frozenset[str] | None = field(default=None, repr=False, compare=False)

    @property
    def title_tokens(self) -> frozenset[str]:
        if self._title_tokens is None:
            self._title_tokens = frozenset(tokenize(self.title))
        return self._title_tokens

    @property
    def numbers(self) -> frozenset[str]:
        if self._numbers is None:
            self._numbers = frozenset(_numbers(self.norm_text))
        return self._numbers


def index_factchecks(
    storage: Storage, embedder: Embedder, org: str, progress: Progress | None = None, on_total: Callable[[int], None] | None = None
) -> int:
    """Embed the fact-checks whose text changed since they were last embedded. Returns how many.
    Reads each fact-check's title and claim (`factcheck_fields`), not its whole model: an import,
    a fact-check added from the web form or a federation sync run this over the whole library."""
    stored = storage.vector_shas(org, "factcheck", embedder.id)
    todo: list[tuple[str, str]] = []  # (id, passage) in id order
    for fc_id, (title, claim) in storage.factcheck_fields(org, ("title", "claim")).items():
        passage = passage_text(title or "", claim or "")
        if stored.get(fc_id) != text_sha(passage):
            todo.append((fc_id, passage))
    if on_total:
        on_total(len(todo))
    for i in range(0, len(todo), 256):
        part = todo[i : i + 256]
        vecs = embedder.encode_documents([passage for _, passage in part], progress)
        storage.put_vectors(org, "factcheck", embedder.id, [(fc_id, text_sha(passage), v) for (fc_id, passage), v in zip(part, vecs, strict=True)])
    return len(todo)


def library_version() -> str:
    """The versions of what a loaded library is made of (its tokens' and numbers' rules, BM25,
    the matcher's own): a saved library (pipeline/snapshot.py) of other versions is not used."""
    return f"{MATCHER_VERSION}+{LEXICAL_VERSION}+{TOKENIZER_VERSION}+{TONES_VERSION}+{CROSSLINGUAL_VERSION}"


class Matcher:
    """Matches posts against one organisation's fact-check library."""

    def __init__(
        self,
        storage: Storage,
        embedder: Embedder,
        org: str,
        *,
        fusion: str = "learned",
        reranker: Reranker | None = None,
        candidates: int = 50,
        top_k: int = 5,
        rrf_k: int = 60,
        match_threshold: float | None = None,
        possible_threshold: float | None = None,
        centering: LanguageCentering | None = None,
        dense_index: str = "memory",
        index_tuning: VectorIndexTuning | None = None,
        index_dir: str | Path | None = None,
        load: bool = True,
    ) -> None:
        """`load` False: an empty library, for a caller that fills it (`pipeline/snapshot.py`
        restores a saved one); otherwise the library is loaded from `storage` (`refresh`)."""
        if dense_index not in {"memory", "stored"}:
            raise ConfigError(f"unknown dense index '{dense_index}' (memory or stored)")
        self.dense_index = dense_index
        self.index_tuning = index_tuning
        self.index_dir = index_dir  # SQLite: where the stored library's usearch index is saved (None: memory only)
        self.search_index: VectorIndex | None = None
        if fusion not in {"learned", "rrf", "dense"}:
            raise ConfigError(f"match_fusion: unknown fusion '{fusion}' (learned, rrf or dense)")
        self.storage = storage
        self.embedder = embedder
        self.org = org
        self.fusion = fusion
        self.reranker = reranker
        if fusion == "learned":
            if reranker is None:
                raise ConfigError("learned fusion needs a re-ranker file")
            reranker.check_embedder(embedder.id)
        if centering is not None:
            centering.check_embedder(embedder.id)
        self.centering = centering
        self.n_candidates = candidates
        self.top_k = top_k
        self.rrf_k = rrf_k
        tuned = reranker.thresholds if (reranker and fusion == "learned") else {}
        self.match_threshold = match_threshold if match_threshold is not None else tuned.get("match", math.inf)
        self.possible_threshold = possible_threshold if possible_threshold is not None else tuned.get("possible", math.inf)
        self.index = NumpyIndex(embedder.id, embedder.dim)
        self.lexical = BM25Index()
        self.items: list[LibraryItem] = []
        self._order: Callable[[str], Any] = _natural if dense_index == "stored" else _code_points  # the library's order (its load's)
        self._position: dict[str, int] = {}
        self._withdrawn: set[str] = set()
        self._key_of: dict[str, bytes] = {}
        self._groups: dict[bytes, tuple[str, ...]] = {}
        self.duplicates: dict[str, list[str]] = {}
        self._copies: dict[str, str] = {}
        if load:
            self.refresh()
        else:
            self.lexical = BM25Index().build([], [])

    @property
    def decided_by(self) -> str:
        base = f"matcher:{MATCHER_VERSION}+{self.embedder.id}+{LEXICAL_VERSION}+{TOKENIZER_VERSION}+{TONES_VERSION}+{CROSSLINGUAL_VERSION}"
        if self.centering is not None:
            base += f"+centering:{self.centering.version}"
        if self.fusion == "learned" and self.reranker:
            return f"{base}+{self.reranker.decided_by}"
        return f"{base}+{self.fusion}"

    def refresh(self) -> None:
        """(Re)load the library: vectors from storage, BM25 from the stored tokens."""
        if self.dense_index == "stored":
            self._refresh_stored()
            return
        ids, matrix = self.storage.load_vectors(self.org, "factcheck", self.embedder.id)
        if len(ids) and matrix.shape[1] != self.embedder.dim:
            raise EmbedderMismatch(f"stored vectors have dim {matrix.shape[1]}, embedder has {self.embedder.dim}")
        fcs, canonical = self._load_entries(ids)
        # Near-identical copies of a fact-check are answered by the original, which
        # lists them as duplicates: a desk sees one claim, not the same claim twice.
        keep = [i for i, fc_id in enumerate(ids) if fc_id in fcs and canonical[fc_id] == fc_id]
        ids = [ids[i] for i in keep]
        self._order = _code_points  # load_vectors' order
        self.index = NumpyIndex(self.embedder.id, self.embedder.dim)
        if ids:
            self.index.add(ids, self._centred(matrix[keep], [fcs[i] for i in ids]), self.embedder.id)
        self.lexical = BM25Index().build(ids, (fcs[i].tokens.split() for i in ids))
        self.items = [self._item(fcs[fc_id]) for fc_id in ids]
        self._position = {fc_id: n for n, fc_id in enumerate(ids)}

    def _centred(self, vectors: np.ndarray, entries: Sequence[LibraryEntry]) -> np.ndarray:
        """Library vectors as the in-memory index holds them (centred when centering is on)."""
        if self.centering is None or not len(entries):
            return vectors
        return self.centering.apply(vectors, [fc.language for fc in entries], "passage")

    def _refresh_stored(self) -> None:
        """The library without its vectors in this process: dense retrieval asks the storage's
        vector index (pgvector HNSW on PostgreSQL). With centering, the centred library vectors
        are stored as their own kind (`factcheck~<centering version>`), brought up to date
        here for the fact-checks whose text changed. The hashes read here (after the vectors'
        stamp) are the stored index's first resync's too: read once, not twice."""
        stamp = self.storage.vector_stamp(self.org, "factcheck", self.embedder.id)
        shas = self.storage.vector_shas(self.org, "factcheck", self.embedder.id)
        fcs, canonical = self._load_entries(sorted(shas))
        ids = sorted((i for i in shas if i in fcs and canonical[i] == i), key=_natural)
        self._order = _natural
        self._open_stored(ids, shas, fcs, whole=True, known_shas=(stamp, shas) if self.centering is None else None)
        self.index = NumpyIndex(self.embedder.id, self.embedder.dim)  # stays empty: nothing loaded
        self._position = {fc_id: n for n, fc_id in enumerate(ids)}
        self.lexical = BM25Index().build(ids, (fcs[i].tokens.split() for i in ids))
        self.items = [self._item(fcs[fc_id]) for fc_id in ids]

    def _open_stored(self, ids: Sequence[str], shas: dict[str, str] | None, fcs: dict[str, LibraryEntry], whole: bool = False,
                     known_shas: tuple[str, dict[str, str]] | None = None) -> None:
        """The stored index brought up to date: the centred vectors of `ids` (stored as their own
        kind; `whole`: the whole library, whose centred hashes are read in one go) where their
        text changed (`shas`: their texts' hashes; None: read here, only when centering needs
        them), then the index synced with the store at once (`known_shas`: the store's stamp and
        hashes of the kind searched, read by the caller; see `stored_vector_index`)."""
        from factbridge.backends.vectors.selection import stored_vector_index

        kind = "factcheck"
        if self.centering is not None:
            kind = f"factcheck~{self.centering.version}"
            done = self.storage.vector_shas(self.org, kind, self.embedder.id, ids=None if whole else ids)
            if shas is None:  # an update's few ids: their hashes read only where centering needs them
                shas = self.storage.vector_shas(self.org, "factcheck", self.embedder.id, ids=ids)
            stale = [i for i in ids if done.get(i) != shas[i]]
            for start in range(0, len(stale), 10_000):
                got, raw = self.storage.load_vectors(self.org, "factcheck", self.embedder.id, ids=stale[start : start + 10_000])
                if got:
                    centred = self.centering.apply(raw, [fcs[i].language for i in got], "passage")
                    self.storage.put_vectors(self.org, kind, self.embedder.id, [(i, shas[i], v) for i, v in zip(got, centred, strict=True)])
        # (re)loaded because the library changed: the index looks for new vectors now (with its
        # store's `vector_stamp` unchanged that reads nothing)
        self.search_index = stored_vector_index(
            self.storage, self.org, kind, self.embedder.id, self.embedder.dim, data_dir=self.index_dir, tuning=self.index_tuning,
            resync_s=0.0, known_shas=known_shas,
        )

    def _load_entries(self, ids: Sequence[str]) -> tuple[dict[str, LibraryEntry], dict[str, str]]:
        """The usable library entries of `ids` and each one's original (`canonical_factchecks`);
        `duplicates` set to each original's copies, and the groups kept for `updated`."""
        self._withdrawn = withdrawn_ids(self.storage, self.org)
        fcs = self._usable(library_entries(self.storage, self.org, ids), self._withdrawn)
        groups: dict[bytes, list[LibraryEntry]] = {}
        self._key_of = {}  # each usable fact-check with a vector -> its group
        for fc in fcs.values():
            key = self._key_of[fc.id] = _group_key(fc)
            groups.setdefault(key, []).append(fc)
        self._groups = {key: tuple(fc.id for fc in members) for key, members in groups.items()}
        canonical = _originals(groups.values())
        self.duplicates = {}
        self._copies = {}  # a copy -> its original
        for fc_id, original in canonical.items():
            if original != fc_id:
                self.duplicates.setdefault(original, []).append(fc_id)
                self._copies[fc_id] = original
        return fcs, canonical

    @staticmethod
    def _usable(fcs: dict[str, LibraryEntry], withdrawn: Collection[str]) -> dict[str, LibraryEntry]:
        """The library without the fact-checks their publisher withdrew (kept in storage, marked:
        pipeline/withdrawals.py): a withdrawn verdict no longer answers a post."""
        return {i: fc for i, fc in fcs.items() if i not in withdrawn and not fc.withdrawn}

    def updated(self, changed: Iterable[str]) -> Matcher:
        """This matcher with the fact-checks of `changed` (ids whose document or vector was
        written since it was loaded: `Storage.factchecks_changed` / `vectors_changed`) read
        again, and the withdrawals made since: the same library a new `Matcher` would load,
        read from the store only for what changed and the groups of copies it touches. The
        in-memory parts (items, positions, BM25 counts, the vectors when held here) are
        spliced in NumPy; BM25 is weighed again over the whole library (its size and average
        length move every weight). A new matcher: this one is left as it was for whoever
        still uses it."""
        new = copy.copy(self)
        storage, org = self.storage, self.org
        new._withdrawn = withdrawn_ids(storage, org)
        todo = set(changed) | (new._withdrawn ^ self._withdrawn)
        if not todo:
            return new
        # the changed fact-checks as a load reads them: those with a vector, usable
        with_vector = storage.vector_shas(org, "factcheck", self.embedder.id, ids=sorted(todo))
        fresh = self._usable(library_entries(storage, org, sorted(with_vector)), new._withdrawn)
        # their groups of copies, before and after
        key_of, groups = dict(self._key_of), dict(self._groups)
        touched: set[bytes] = set()
        for fc_id in todo:
            if (key := key_of.pop(fc_id, None)) is not None:
                touched.add(key)
                groups[key] = tuple(m for m in groups[key] if m != fc_id)
        for fc_id, fc in fresh.items():
            key = key_of[fc_id] = _group_key(fc)
            touched.add(key)
            groups[key] = (*groups.get(key, ()), fc_id)
        before = todo | {m for key in touched for m in self._groups.get(key, ())}
        # a touched group's other members chose its original with the changed ones: read again
        others = sorted({m for key in touched for m in groups[key]} - fresh.keys())
        entries = {**self._usable(library_entries(storage, org, others), new._withdrawn), **fresh}
        for fc_id in others:
            if fc_id not in entries:  # withdrawn or changed since the changes were read: left out until the next update reads it
                key = key_of.pop(fc_id)
                groups[key] = tuple(m for m in groups[key] if m != fc_id)
        for key in touched:
            if not groups[key]:
                del groups[key]
        originals = _originals([[entries[m] for m in groups[key]] for key in touched if key in groups])
        new._key_of, new._groups = key_of, groups
        new._copies, new.duplicates = dict(self._copies), dict(self.duplicates)
        for fc_id in before:
            new.duplicates.pop(self._copies.get(fc_id, fc_id), None)
            new._copies.pop(fc_id, None)
        copies: dict[str, list[str]] = {}
        for fc_id, original in originals.items():
            if original != fc_id:
                new._copies[fc_id] = original
                copies.setdefault(original, []).append(fc_id)
        new.duplicates.update(copies)
        # the library's rows: out go the touched groups' rows, in come their originals, in load order
        gone = np.asarray(sorted(self._position[m] for m in before if m in self._position), dtype=np.int64)
        added = sorted((m for m, original in originals.items() if m == original), key=self._order)
        vectors = None
        if self.dense_index == "memory":
            got, raw = storage.load_vectors(org, "factcheck", self.embedder.id, ids=added)
            added = got  # a vector is never deleted: all of them (sorted the same way)
            vectors = self._centred(raw, [entries[i] for i in got]) if got else np.zeros((0, self.embedder.dim), dtype=np.float32)
        keep = np.delete(np.arange(len(self.items), dtype=np.int64), gone)
        order_of = self._order
        at = [bisect.bisect_left(self.items, order_of(fc_id), key=lambda item: order_of(item.id)) for fc_id in added]
        at_kept = np.asarray(at, dtype=np.int64) - np.searchsorted(gone, np.asarray(at, dtype=np.int64))
        order = np.insert(np.arange(len(keep), dtype=np.int64), at_kept, np.arange(len(keep), len(keep) + len(added), dtype=np.int64))
        new.items = rearranged(self.items, keep, [self._item(entries[i]) for i in added], order)
        new._position = {item.id: n for n, item in enumerate(new.items)}
        new.lexical = self.lexical.updated(keep, added, (entries[i].tokens.split() for i in added), order)
        if vectors is not None:
            new.index = NumpyIndex.of(self.embedder.id, self.embedder.dim, [item.id for item in new.items],
                                      np.concatenate([self.index.matrix[keep], vectors])[order])
        else:
            new._open_stored(added, None, entries)
        return new

    @staticmethod
    def _item(fc: LibraryEntry) -> LibraryItem:
        return LibraryItem(id=fc.id, language=fc.language or "und", title=fc.title, norm_text=fc.norm_text, date=fc.published_at or fc.claim_date)

    def _lexical_top(self, lexical: np.ndarray) -> np.ndarray | None:
        """Positions of the `n_candidates` best lexical scores (those above 0 are candidates),
        found once per post; None when no item shares a term with it."""
        if lexical.max(initial=0) <= 0:
            return None
        n = self.n_candidates
        return np.argpartition(-lexical, min(n, len(lexical)) - 1)[:n]

    def _dense_scores(self, vector: np.ndarray, lexical: np.ndarray, lexical_top: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Dense score of every library item for a (centred) query vector, and the positions
        that got a score of their own (None: every one did).

        In memory: exact. From a stored index: the nearest `DENSE_SEARCH_DEPTH` come from the
        index; the lexical candidates it did not return are scored from their stored vectors;
        every other item gets a floor below them all (its rank is only known to be lower)."""
        if self.search_index is None:
            return self.index.scores(vector, self.embedder.id), None
        dense = np.full(len(self.items), -2.0, dtype=np.float32)
        scored: list[int] = []
        for fc_id, score in self.search_index.search(vector, max(DENSE_SEARCH_DEPTH, self.n_candidates), self.embedder.id):
            pos = self._position.get(fc_id)
            if pos is not None:  # copies of a fact-check are answered by their original
                dense[pos] = score
                scored.append(pos)
        if lexical_top is not None:
            missing = [self.items[int(i)].id for i in lexical_top if lexical[i] > 0 and dense[i] == -2.0]
            if missing:
                kind = f"factcheck~{self.centering.version}" if self.centering is not None else "factcheck"
                got, vecs = self.storage.load_vectors(self.org, kind, self.embedder.id, ids=missing)
                if got:
                    positions = [self._position[i] for i in got]
                    dense[positions] = vecs @ np.asarray(vector, dtype=np.float32)
                    scored.extend(positions)
        return dense, np.unique(np.asarray(scored, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.items)

    # -- matching ------------------------------------------------------------
    def match_posts(self, posts: Sequence[Post], progress: Progress | None = None, with_factchecks: bool = False) -> list[MatchResult]:
        if not posts:
            return []
        vectors = self.embedder.encode_queries([embedding_text(p) for p in posts], progress)
        results = self.match_vectors(posts, vectors)
        if with_factchecks:
            wanted = {c.factcheck_id for r in results for c in r.candidates}
            fcs = self.storage.get_factchecks(self.org, list(wanted))
            for r in results:
                for c in r.candidates:
                    c.factcheck = fcs.get(c.factcheck_id)
        return results

    def match_vectors(self, posts: Sequence[Post], vectors: np.ndarray) -> list[MatchResult]:
        """Match posts whose raw query vectors are already computed (shared with other stages)."""
        return [self._match_one(p, v) for p, v in zip(posts, self._centre(posts, vectors), strict=True)]

    def _centre(self, posts: Sequence[Post], vectors: np.ndarray) -> np.ndarray:
        if self.centering is None or not len(posts):
            return vectors
        return self.centering.apply(vectors, [p.language for p in posts], "query")

    def _match_one(self, post: Post, vector: np.ndarray) -> MatchResult:
        if not self.items:
            return MatchResult(post_id=post.id, language=post.language, candidates=[], decided_by=self.decided_by)
        lexical = self.lexical.scores(post.tokens.split())
        lexical_top = self._lexical_top(lexical)
        dense, scored = self._dense_scores(vector, lexical, lexical_top)
        order = np.fromiter(self._pool(dense, lexical, lexical_top, scored), dtype=np.int64)
        features = self._features(post, order, dense, lexical, scored)
        fused, cross = self._fuse(post, order, features, dense, lexical)
        ranking = np.argsort(-fused, kind="stable")[: self.top_k]
        candidates: list[MatchCandidate] = []
        for rank, j in enumerate(ranking, start=1):
            i = int(order[j])
            score = float(fused[j])
            if score >= self.match_threshold:
                decision = "match"
            elif score >= self.possible_threshold:
                decision = "possible"
            else:
                decision = "none"
            feats = {k: round(float(v[j]), 4) for k, v in features.items()}
            feats["cross_language"] = float(cross[j])
            candidates.append(
                MatchCandidate(
                    factcheck_id=self.items[i].id,
                    rank=rank,
                    dense=SignalScore(score=round(float(dense[i]), 4), rank=int(features["_dense_rank"][j])),
                    lexical=SignalScore(
                        score=round(float(lexical[i]), 4) if lexical[i] > 0 else None,
                        rank=int(features["_lexical_rank"][j]) if lexical[i] > 0 else None,
                    ),
                    features={k: v for k, v in feats.items() if not k.startswith("_")},
                    fused_score=round(score, 4),
                    decision=decision,  # type: ignore[arg-type]
                    decided_by=self.decided_by,
                    duplicates=sorted(self.duplicates.get(self.items[i].id, [])),
                )
            )
        return MatchResult(post_id=post.id, language=post.language, candidates=candidates, decided_by=self.decided_by)

    def _pool(self, dense: np.ndarray, lexical: np.ndarray, lexical_top: np.ndarray | None = None, scored: np.ndarray | None = None) -> set[int]:
        """Library positions each retriever puts in its top `n_candidates` (lexical: hits only).
        `lexical_top`: `_lexical_top(lexical)`, when found already. `scored`: the only positions
        with a dense score above the floor (a stored index's answer): its top is found among
        them, not over the whole library (the floor is below every score)."""
        n = self.n_candidates
        if scored is not None and len(scored) >= n:
            pool = set(scored[np.argpartition(-dense[scored], n - 1)[:n]].tolist())
        else:
            pool = set(np.argpartition(-dense, min(n, len(dense)) - 1)[:n].tolist())
        top = lexical_top if lexical_top is not None else self._lexical_top(lexical)
        if top is not None:
            pool.update(i for i in top.tolist() if lexical[i] > 0)
        return pool

    def _features(self, post: Post, order: np.ndarray, dense: np.ndarray, lexical: np.ndarray, scored: np.ndarray | None = None) -> dict[str, np.ndarray]:
        d = dense[order]
        lx = lexical[order]
        # rank = 1 + how many library items score strictly higher (`scored`: the only ones above
        # the floor, which every candidate's score is at or above)
        dense_rank = _ranks(dense if scored is None else dense[scored], d).astype(np.float64)
        hits = lx > 0
        lexical_rank = np.full(len(lx), len(lexical) + 1, dtype=np.float64)
        if hits.any():
            lexical_rank[hits] = _ranks(lexical, lx[hits])
        lex_max = float(lexical.max(initial=0)) or 1.0
        tokens = set(post.tokens.split())
        numbers = _numbers(post.norm_text)
        post_date = post.created_at
        title_overlap = np.zeros(len(order))
        number_overlap = np.zeros(len(order))
        date_known = np.zeros(len(order))
        date_close = np.zeros(len(order))
        date_log = np.zeros(len(order))
        for j, i in enumerate(order):
            item = self.items[int(i)]
            title = item.title_tokens
            if title:
                title_overlap[j] = len(title & tokens) / len(title)
            if item.numbers and numbers:
                number_overlap[j] = len(item.numbers & numbers) / len(item.numbers | numbers)
            if post_date and item.date:
                a = post_date.replace(tzinfo=None)
                b = item.date.replace(tzinfo=None)
                days = (b - a).total_seconds() / 86400
                date_known[j] = 1
                date_close[j] = 1.0 if -7 <= days <= 60 else 0.0
                date_log[j] = math.log1p(abs(days))
        return {
            "dense": d.astype(np.float64),
            "dense_gap": (d - dense.max()).astype(np.float64),
            "dense_rrf": 1.0 / (self.rrf_k + dense_rank),
            "lexical": (lx / lex_max).astype(np.float64),
            "lexical_gap": (lx / lex_max - 1.0).astype(np.float64),
            "lexical_rrf": np.where(lx > 0, 1.0 / (self.rrf_k + lexical_rank), 0.0),
            "title_overlap": title_overlap,
            "number_overlap": number_overlap,
            "date_known": date_known,
            "date_close": date_close,
            "date_log_days": date_log,
            "_dense_rank": dense_rank,
            "_lexical_rank": lexical_rank,
        }

    def _cross(self, post: Post, order: np.ndarray) -> np.ndarray:
        lang = post.language or "und"
        confident = lang != "und" and (post.language_confidence or 0) >= 0.5
        return np.array(
            [confident and self.items[int(i)].language not in {lang, "und"} for i in order], dtype=bool
        )

    def _fuse(
        self, post: Post, order: np.ndarray, f: dict[str, np.ndarray], dense: np.ndarray, lexical: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        cross = self._cross(post, order)
        if self.fusion == "dense":
            return f["dense"].copy(), cross
        if self.fusion == "rrf":
            return np.where(cross, f["dense_rrf"], f["dense_rrf"] + f["lexical_rrf"]), cross
        assert self.reranker is not None
        same_rows = np.column_stack([f[k] for k in SAME_LANGUAGE_FEATURES])
        cross_rows = np.column_stack([f[k] for k in CROSS_LANGUAGE_FEATURES])
        scores = np.where(
            cross, self.reranker.cross_language.score(cross_rows), self.reranker.same_language.score(same_rows)
        )
        return scores, cross

    def feature_rows(
        self, post: Post, vector: np.ndarray, absent: set[str] | None = None
    ) -> tuple[list[str], dict[str, np.ndarray], np.ndarray]:
        """Candidate ids and their features for training the re-ranker (raw query vector in).

        `absent` hides fact-checks from the library, as if they had never been written:
        how the best remaining candidate looks when the claim was never checked."""
        dense = self.index.scores(self._centre([post], vector[None, :])[0], self.embedder.id)
        lexical = self.lexical.scores(post.tokens.split())
        if absent:
            hidden = [i for i, item in enumerate(self.items) if item.id in absent]
            dense = dense.copy()
            lexical = lexical.copy()
            dense[hidden] = -1.0
            lexical[hidden] = 0.0
        order = np.fromiter(sorted(self._pool(dense, lexical)), dtype=np.int64)
        return [self.items[int(i)].id for i in order], self._features(post, order, dense, lexical), self._cross(post, order)
