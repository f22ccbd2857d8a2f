"""Near-duplicate text: MinHash signatures over Unicode character shingles, banded LSH.

Character shingles need no word segmenter, so Khmer (no spaces between words)
and Vietnamese (typed with or without tone marks: we fold them) work as well as
English. Links and @mentions are dropped, case and Latin diacritics folded,
punctuation turned into spaces; each 5-character window is a shingle.

Everything is numpy: a batch of texts is hashed in a few array operations
(about 100k texts/s here), a signature is `num_perm` uint32 values (256 bytes
for 64), and the LSH index keeps its band keys in sorted int arrays rather than
Python dicts, so memory grows by ~12 bytes per band per distinct post (the
`datasketch` objects this replaces grew by ~11 kB per post).
"""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from factbridge.text.urls import MENTION, URL_PATTERN, may_hold_url

MINHASH_VERSION = "minhash-char5-64x16-v1"
SHINGLE = 5
NUM_PERM = 64
BANDS = 16  # 16 bands of 4 rows: pairs with Jaccard 0.5 become candidates 64 % of the time, 0.7 99 %

_RETWEET = re.compile(r"^\s*rt\s+@\w+:?\s*", re.IGNORECASE)
# Keep letters, digits and the combining signs of scripts that need them (Indic, Thai, Lao, Myanmar, Khmer).
_NOT_TEXT = re.compile(r"[^\w\u0900-\u0dff\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u19e0-\u19ff]+|_+")
# Combining marks of the Latin/Greek/Cyrillic block only: Khmer and Indic signs are letters of their own.
_LATIN_MARKS = re.compile("[\u0300-\u036f]+")
_FOLD_EXTRA = (("đ", "d"), ("ø", "o"), ("ł", "l"), ("ß", "ss"), ("æ", "ae"), ("œ", "oe"))


def _fold_extra(text: str) -> str:
    """The letters NFD does not split, folded. `str.replace` per letter present: what
    `str.translate` with a table gives (no replacement holds a folded letter), ~15x faster."""
    for letter, folded in _FOLD_EXTRA:
        if letter in text:
            text = text.replace(letter, folded)
    return text


_DROP = re.compile(f"{_RETWEET.pattern}|{URL_PATTERN.pattern}|{MENTION.pattern}", re.IGNORECASE)


class _NotTextSpaces(dict[int, str]):
    """`str.translate` table: a character `_NOT_TEXT` matches -> " ", any other -> itself,
    worked out (by `_NOT_TEXT` itself) the first time the character is seen. Each such
    character a space, then `split()`: what replacing each run of them by one space gives."""

    def __missing__(self, code: int) -> str:
        char = chr(code)
        out = " " if _NOT_TEXT.match(char) else char
        self[code] = out
        return out


_NOT_TEXT_SPACES = _NotTextSpaces()


def canonical(text: str) -> str:
    """The form two near-duplicates share: no links, mentions, RT prefix, case, Latin accents or punctuation."""
    if "@" in text or may_hold_url(text):  # every other match of `_DROP` is a link (RT prefix, mention: "@")
        text = _DROP.sub(" ", text)
    text = unicodedata.normalize("NFD", _fold_extra(text.lower()))
    text = unicodedata.normalize("NFC", _LATIN_MARKS.sub("", text))
    return " ".join(text.translate(_NOT_TEXT_SPACES).split())


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads rolling-hash values over all 64 bits (uint64 arithmetic wraps)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


_PERM_RNG = np.random.default_rng(20260611)
_PERM_A = (_PERM_RNG.integers(1, 2**63 - 1, size=NUM_PERM, dtype=np.int64).astype(np.uint64) | np.uint64(1))
_PERM_B = _PERM_RNG.integers(0, 2**63 - 1, size=NUM_PERM, dtype=np.int64).astype(np.uint64)


class SignatureCache:
    """The signatures of the texts seen last (least recently used out), keyed by a 16-byte
    BLAKE2b digest of the raw text: a signature depends on nothing else, so a hit gives
    what computing it again would. The narratives stage signs each batch's texts, which the
    embedding stage and the coordination stage's first look at a post sign again (the
    coordination stage re-read every stored post per batch until it kept share records:
    O(posts^2) over an ingest without this cache). The embedding stage signs another text
    (links stripped) and keeps its signatures for the posts' `norm_text` too where the two
    have the same `canonical` form (`alias`). ~410 bytes per text."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._rows: OrderedDict[bytes, bytes] = OrderedDict()  # digest -> NUM_PERM uint32 (b"" when no shingle)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    @staticmethod
    def key(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def get(self, keys: Sequence[bytes]) -> list[bytes | None]:
        with self._lock:
            out = [self._rows.get(k) for k in keys]
            for k, row in zip(keys, out, strict=True):
                if row is not None:
                    self._rows.move_to_end(k)
        return out

    def alias(self, pairs: Sequence[tuple[str, str]]) -> int:
        """For each (text, other) pair of texts with the same `canonical` form (so the same
        signature), keep `text`'s cached signature for `other` too (where `text`'s is cached);
        the number kept."""
        if self.size <= 0 or not pairs:
            return 0
        known = self.get([self.key(text) for text, _ in pairs])
        rows = [(self.key(other), row) for (_, other), row in zip(pairs, known, strict=True) if row is not None]
        self._keep(rows)
        return len(rows)

    def put(self, keys: Sequence[bytes], sigs: np.ndarray, valid: np.ndarray) -> None:
        if self.size <= 0:
            return
        self._keep([(k, row.tobytes() if ok else b"") for k, row, ok in zip(keys, sigs, valid, strict=True)])

    def _keep(self, rows: Sequence[tuple[bytes, bytes]]) -> None:
        with self._lock:
            for k, row in rows:
                self._rows[k] = row
                self._rows.move_to_end(k)
            while len(self._rows) > self.size:
                self._rows.popitem(last=False)


# ~25 MB full. (The coordination stage keeps its own posts' signatures: pipeline/coordination.py ShareRecords.)
SIGNATURE_CACHE = SignatureCache(60_000)


def signatures(texts: Sequence[str], chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(signatures (n, NUM_PERM) uint32, has_shingles (n,) bool). Texts shorter than a shingle get no signature.
    Texts whose signature is in `SIGNATURE_CACHE` are not hashed again."""
    n = len(texts)
    if n == 0:
        return np.full((0, NUM_PERM), np.iinfo(np.uint32).max, dtype=np.uint32), np.zeros(0, dtype=bool)
    keys = [SignatureCache.key(t) for t in texts]
    cached = SIGNATURE_CACHE.get(keys)
    todo = [i for i, row in enumerate(cached) if row is None]
    if todo:
        fresh_sigs, fresh_valid = _compute_signatures([texts[i] for i in todo], chunk)
        SIGNATURE_CACHE.put([keys[i] for i in todo], fresh_sigs, fresh_valid)
    else:
        fresh_sigs, fresh_valid = np.zeros((0, NUM_PERM), dtype=np.uint32), np.zeros(0, dtype=bool)
    if len(todo) == n:
        return fresh_sigs, fresh_valid
    sigs = np.full((n, NUM_PERM), np.iinfo(np.uint32).max, dtype=np.uint32)
    valid = np.zeros(n, dtype=bool)
    hit_rows = [(i, row) for i, row in enumerate(cached) if row]  # b"": cached as "no signature"
    if hit_rows:
        hits = [i for i, _ in hit_rows]
        sigs[hits] = np.frombuffer(b"".join(row for _, row in hit_rows), dtype=np.uint32).reshape(len(hits), NUM_PERM)
        valid[hits] = True
    if todo:
        sigs[todo] = fresh_sigs
        valid[todo] = fresh_valid
    return sigs, valid


def _compute_signatures(texts: Sequence[str], chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    n = len(texts)
    sigs = np.full((n, NUM_PERM), np.iinfo(np.uint32).max, dtype=np.uint32)
    valid = np.zeros(n, dtype=bool)
    for start in range(0, n, chunk):
        part = [canonical(t) for t in texts[start : start + chunk]]
        lengths = np.array([len(t) for t in part], dtype=np.int64)
        joined = "\x00".join(part)
        if not joined:
            continue
        cp = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        m = cp.shape[0] - SHINGLE + 1
        if m <= 0:
            continue
        rolling = np.zeros(m, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for j in range(SHINGLE):
                rolling = rolling * np.uint64(1_000_003) + cp[j : j + m]
        owner = np.repeat(np.arange(len(part)), lengths + 1)[:m]
        offsets = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
        inside = (np.arange(m) - offsets[owner]) <= (lengths[owner] - SHINGLE)
        hashes = _mix(rolling[inside])
        owner = owner[inside]
        if owner.size == 0:
            continue
        first = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])  # `owner` never decreases
        present = owner[first]
        sigs[start + present] = _permuted_minima(hashes, first).T.astype(np.uint32)
        valid[start + present] = True
    return sigs, valid


def _permuted_minima(hashes: np.ndarray, first: np.ndarray) -> np.ndarray:
    """(NUM_PERM, texts): per permutation, the least `(a * h + b) mod 2**64 >> 32` over each text's
    shingle hashes (`first`: where each text's hashes start). One permutation at a time, in one
    reused buffer: the same integers as the (NUM_PERM, shingles) matrix at once, without
    writing and reading back three matrices of that size (the cost on long posts). The shift
    comes after the minimum (`x >> 32` never decreases as `x` grows: the least shifted value is
    the least value shifted), on one value per text instead of one per shingle."""
    out = np.empty((NUM_PERM, first.shape[0]), dtype=np.uint64)
    buf = np.empty_like(hashes)
    with np.errstate(over="ignore"):
        for p in range(NUM_PERM):
            np.multiply(hashes, _PERM_A[p], out=buf)
            buf += _PERM_B[p]
            out[p] = np.minimum.reduceat(buf, first)
    out >>= np.uint64(32)
    return out


def band_keys(sigs: np.ndarray) -> np.ndarray:
    """(n, BANDS) uint64: one key per band of rows; equal keys mean the band matched exactly."""
    rows = NUM_PERM // BANDS
    blocks = sigs.reshape(sigs.shape[0], BANDS, rows).astype(np.uint64)
    key = np.zeros((sigs.shape[0], BANDS), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for r in range(rows):
            key = _mix(key * np.uint64(0x9E3779B97F4A7C15) + blocks[:, :, r])
        key = _mix(key + np.arange(BANDS, dtype=np.uint64)[None, :])
    return key


def jaccard_estimate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of equal MinHash values: an unbiased estimate of the Jaccard similarity of the shingle sets."""
    return (np.asarray(a) == np.asarray(b)).mean(axis=-1)


class BandIndex:
    """LSH band keys -> item number, in sorted arrays (a two-level log-structured merge).

    `lookup` is vectorised over many queries; `add` appends to a small sorted delta
    that is merged into the main arrays when it passes a fraction of their size.
    A key already present is not added again: exact copies add no memory.
    """

    def __init__(self) -> None:
        self._keys = np.zeros(0, dtype=np.uint64)
        self._items = np.zeros(0, dtype=np.int64)
        self._delta_keys = np.zeros(0, dtype=np.uint64)
        self._delta_items = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return int(self._keys.shape[0] + self._delta_keys.shape[0])

    @staticmethod
    def _find(keys: np.ndarray, items: np.ndarray, query: np.ndarray) -> np.ndarray:
        if keys.shape[0] == 0:
            return np.full(query.shape, -1, dtype=np.int64)
        pos = np.searchsorted(keys, query)
        pos_c = np.minimum(pos, keys.shape[0] - 1)
        return np.where(keys[pos_c] == query, items[pos_c], -1)

    def lookup(self, query: np.ndarray) -> np.ndarray:
        """Item for each key (same shape as `query`), -1 where the key is unknown."""
        found = self._find(self._keys, self._items, query)
        missing = found < 0
        if missing.any():
            found[missing] = self._find(self._delta_keys, self._delta_items, query[missing])
        return found

    def add(self, keys: np.ndarray, items: np.ndarray) -> None:
        items = np.broadcast_to(np.asarray(items, dtype=np.int64), keys.shape).ravel()
        keys = keys.ravel()
        fresh = self.lookup(keys) < 0
        keys, items = keys[fresh], items[fresh]
        keys, first = np.unique(keys, return_index=True)
        items = items[first]
        dk = np.concatenate([self._delta_keys, keys])
        di = np.concatenate([self._delta_items, items])
        order = np.argsort(dk, kind="stable")
        self._delta_keys, self._delta_items = dk[order], di[order]
        if self._delta_keys.shape[0] > max(50_000, self._keys.shape[0] // 8):
            mk = np.concatenate([self._keys, self._delta_keys])
            mi = np.concatenate([self._items, self._delta_items])
            order = np.argsort(mk, kind="stable")
            self._keys, self._items = mk[order], mi[order]
            self._delta_keys = np.zeros(0, dtype=np.uint64)
            self._delta_items = np.zeros(0, dtype=np.int64)


    def drop_from(self, first: int) -> None:
        """Forget every key added for an item numbered `first` or higher (items added after a
        point, taken back: a key already held was never added again, so what stays is as it was)."""
        keep = self._items < first
        self._keys, self._items = self._keys[keep], self._items[keep]
        keep = self._delta_items < first
        self._delta_keys, self._delta_items = self._delta_keys[keep], self._delta_items[keep]


def near_duplicate_groups(texts: Sequence[str], threshold: float = 0.8) -> np.ndarray:
    """Group ids (int64, one per text) joining texts whose estimated Jaccard >= threshold.

    Candidate pairs come from equal band keys (each text paired with the first text
    holding the same key); pairs are verified on the full signatures; groups are the
    connected components. Texts without a signature are their own group.
    """
    if len(texts) == 0:
        return np.zeros(0, dtype=np.int64)
    sigs, valid = signatures(texts)
    return signature_groups(sigs, valid, threshold)


def signature_groups(sigs: np.ndarray, valid: np.ndarray, threshold: float = 0.8, keys: np.ndarray | None = None) -> np.ndarray:
    """`near_duplicate_groups` from the texts' signatures (`signatures`' output, in the texts' order)
    and, when the caller keeps them, their `band_keys`."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = int(sigs.shape[0])
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if keys is None:
        keys = band_keys(sigs)
    idx = np.flatnonzero(valid)
    left: list[np.ndarray] = []
    right: list[np.ndarray] = []
    for band in range(BANDS):
        k = keys[idx, band]
        order = np.argsort(k, kind="stable")
        ks = k[order]
        run_start = np.ones(ks.shape[0], dtype=bool)
        run_start[1:] = ks[1:] != ks[:-1]
        head = np.maximum.accumulate(np.where(run_start, np.arange(ks.shape[0]), 0))
        pair = ~run_start
        left.append(idx[order[head[pair]]])
        right.append(idx[order[pair]])
    a = np.concatenate(left)
    b = np.concatenate(right)
    if a.size:
        pairs = np.unique(a * np.int64(n) + b)  # the (a, b) rows' lexicographic order: one int64 sort
        a, b = pairs // n, pairs % n
        ok = jaccard_estimate(sigs[a], sigs[b]) >= threshold
        a, b = a[ok], b[ok]
    graph = coo_matrix((np.ones(a.shape[0]), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)
