"""Coordinated sharing: accounts that share the same objects within seconds of each other, again and again.

The method is CooRnet's and CooRTweet's (Giglietto et al. 2020; Righetti & Balluff
2023): two accounts are linked when they share the same object (a URL, a
hashtag, an image hash, a near-identical text) within `window_s` seconds; an
account counts only if it takes part in coordinated shares of at least
`min_participation` distinct objects; a link's weight is the number of distinct
objects the pair co-shared, and only links at or above the `edge_percentile`
of all link weights (CooRnet's rule), and at least `min_participation`, are kept. The networks are the connected components of what is
left. Accounts are pseudonymous ids as given; nothing about them is looked up.

Everything is vectorised (numpy): shares are sorted by (object, time), each
share's partners are the following shares of the same object inside the window
(found with one `searchsorted`), pairs are expanded with `repeat`, and links
are counted on int64 keys. A share with more than `max_partners` partners in its
window (a trending hashtag, a viral link) keeps only its `max_partners` nearest
in time: such objects say little about coordination and would otherwise make
the pair count quadratic; how many shares were capped is reported.
"""

from __future__ import annotations

import itertools
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from factbridge.errors import DependencyMissing, InputError
from factbridge.models import Post
from factbridge.pipeline.records import (
    COORDINATION,
    CoordinatedAccount,
    CoordinatedNetwork,
    NarrativeCoordination,
    NarrativeCoordinations,
    NarrativeMembers,
)
from factbridge.pipeline.stages import FunctionStage, StageContext, StageSummary
from factbridge.settings import CoordinationSettings, Settings

METHOD_VERSION = "coordinated-sharing-1"

# Input column aliases: the first present wins.
ACCOUNT_COLUMNS = ("account_id", "account", "author", "author_id", "user_id", "user")
TIME_COLUMNS = ("timestamp", "timestamp_share", "time", "created_at", "date")
CONTENT_COLUMNS = ("post_id", "content_id", "id", "tweet_id")
# Object columns and the object type each one gives. `domain_id` is left out by
# default: sharing the same news site is what audiences do, not a coordination signal.
OBJECT_COLUMNS: dict[str, str] = {
    "object_id": "object",
    "url_id": "url",
    "url": "url",
    "urls": "url",
    "hashtag_id": "hashtag",
    "hashtag": "hashtag",
    "hashtags": "hashtag",
    "phash_id": "image",
    "phash": "image",
    "image_hash": "image",
    "domain_id": "domain",
}
DEFAULT_OBJECT_TYPES = Settings().coordination.object_types  # the coordination_objects setting's default
TEXT_COLUMNS = ("text", "content", "message")


def decided_by(p: CoordinationSettings) -> str:
    return (
        f"{METHOD_VERSION} (window {p.window_s:g} s, min participation {p.min_participation}, "
        f"edge percentile {p.edge_percentile:g}, max partners {p.max_partners}; "
        f"components over {p.split_above} accounts split by Louvain modularity)"
    )


class ObjectNames:
    """Object code -> "type:id", kept as one block of unique ids per input column (no per-share strings)."""

    def __init__(self) -> None:
        self._offsets: list[int] = []
        self._blocks: list[tuple[str, np.ndarray]] = []
        self._size = 0

    def add(self, kind: str, uniques: np.ndarray, prefix: str = "") -> int:
        """A block of ids; with `prefix`, each id is named "kind:prefix<id>" (formatted when asked)."""
        offset = self._size
        self._offsets.append(offset)
        self._blocks.append((f"{kind}:{prefix}", uniques))
        self._size += len(uniques)
        return offset

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, code: int) -> str:
        import bisect

        block = bisect.bisect_right(self._offsets, int(code)) - 1
        head, uniques = self._blocks[block]
        return f"{head}{uniques[int(code) - self._offsets[block]]}"


@dataclass
class ShareTable:
    """Share records as integer codes: row i is `accounts[account[i]]` sharing `objects[obj[i]]` at `time[i]`."""

    account: np.ndarray  # int64 codes
    obj: np.ndarray  # int64 codes
    time: np.ndarray  # int64 epoch seconds
    content: np.ndarray  # int64 codes into `contents`, -1 when unknown
    accounts: np.ndarray  # code -> account id
    objects: ObjectNames  # code -> "type:id"
    contents: np.ndarray  # code -> content id
    rows_read: int = 0
    skipped: list[tuple[int, str, str]] = field(default_factory=list)  # (line, field, reason), first few
    skipped_count: int = 0

    def __len__(self) -> int:
        return int(self.account.shape[0])


@dataclass
class Network:
    id: str
    accounts: list[str]
    edges: list[dict[str, Any]]
    objects: list[dict[str, Any]]
    edge_count: int
    total_weight: int
    first_share: float
    last_share: float
    component_size: int = 0  # accounts in the connected component (larger when it was split into communities)
    links_to_other_communities: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "size": len(self.accounts), "component_size": self.component_size,
            "links_to_other_communities": self.links_to_other_communities, "accounts": self.accounts, "edge_count": self.edge_count,
            "total_weight": self.total_weight, "first_share": self.first_share, "last_share": self.last_share,
            "shared_objects": self.objects, "edges": self.edges,
        }


@dataclass
class CoordinationResult:
    networks: list[Network]
    params: CoordinationSettings
    shares: int
    accounts: int
    objects: int
    pairs: int
    capped_shares: int
    coordinated_accounts: int
    edges_kept: int
    weight_threshold: float
    timings: dict[str, float]

    @property
    def decided_by(self) -> str:
        return decided_by(self.params)

    def as_dict(self, evidence_limit: int | None = None) -> dict[str, Any]:
        return {
            "decided_by": self.decided_by, "shares": self.shares, "accounts": self.accounts,
            "objects": self.objects, "pairs": self.pairs, "capped_shares": self.capped_shares,
            "coordinated_accounts": self.coordinated_accounts, "edges_kept": self.edges_kept,
            "weight_threshold": self.weight_threshold, "timings_s": self.timings,
            "networks": [n.as_dict() for n in self.networks[:evidence_limit]],
        }


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise DependencyMissing("pandas", "coordination") from exc
    return pd


def _pick(columns: Sequence[str], names: Sequence[str]) -> str | None:
    lowered = {c.lower(): c for c in columns}
    for name in names:
        if name in lowered:
            return lowered[name]
    return None


def _epoch_seconds(values: Any, source: str, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(seconds as float with NaN for bad values, mask of bad values). Numbers are epoch seconds
    (milliseconds when they are too large to be seconds); text is parsed as ISO dates."""
    pd = _pandas()
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().mean() > 0.5 or len(values) == 0:
        secs = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
        secs = np.where(secs > 1e11, secs / 1000.0, secs)
    else:
        parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
        secs = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype=np.float64, na_value=np.nan)
    return secs, np.isnan(secs)


def shares_from_frame(
    frame: Any, source: str = "<table>", object_types: Sequence[str] = DEFAULT_OBJECT_TYPES,
    text_signatures: tuple[np.ndarray, np.ndarray] | None = None,
) -> ShareTable:
    """Build the share table from a DataFrame of share records (one row per post; wide object columns).
    `text_signatures`: the MinHash signatures of the text column, row by row, when the caller keeps them."""
    pd = _pandas()
    columns = list(frame.columns)
    account_col = _pick(columns, ACCOUNT_COLUMNS)
    time_col = _pick(columns, TIME_COLUMNS)
    if account_col is None:
        raise InputError(f"no account column (one of {', '.join(ACCOUNT_COLUMNS)})", source=source, line=1, field="account_id")
    if time_col is None:
        raise InputError(f"no time column (one of {', '.join(TIME_COLUMNS)})", source=source, line=1, field="timestamp")
    content_col = _pick(columns, CONTENT_COLUMNS)
    object_cols = [(c, OBJECT_COLUMNS[c.lower()]) for c in columns if c.lower() in OBJECT_COLUMNS and OBJECT_COLUMNS[c.lower()] in object_types]
    text_col = _pick(columns, TEXT_COLUMNS) if "text" in object_types else None
    if not object_cols and text_col is None:
        raise InputError(
            f"no object column for types {', '.join(object_types)} (expected e.g. {', '.join(sorted(OBJECT_COLUMNS))} or text)",
            source=source, line=1,
        )

    n = len(frame)
    secs, bad_time = _epoch_seconds(frame[time_col], source, time_col)
    accounts_raw = frame[account_col]
    bad_account = accounts_raw.isna().to_numpy().copy()
    if accounts_raw.dtype.kind not in "fiu":
        bad_account |= (accounts_raw == "").fillna(False).to_numpy(dtype=bool)
    bad = bad_time | bad_account
    skipped: list[tuple[int, str, str]] = []
    for idx in np.flatnonzero(bad)[:10]:
        fld = account_col if bad_account[idx] else time_col
        reason = "empty account id" if bad_account[idx] else f"not a time: {frame[time_col].iloc[idx]!r}"
        skipped.append((int(idx) + 2, fld, reason))  # +2: the header is line 1

    good = ~bad
    account_codes, account_names = pd.factorize(accounts_raw, sort=False)
    if content_col is not None:
        content_codes, content_names = pd.factorize(frame[content_col], sort=False)
    else:
        content_codes, content_names = np.arange(n, dtype=np.int64), np.arange(n)

    # Long form: one (row, object) per non-empty object cell; object codes are offset per column.
    names = ObjectNames()
    row_parts: list[np.ndarray] = []
    code_parts: list[np.ndarray] = []
    for col, kind in object_cols:
        values = frame[col]
        if values.dtype.kind in "fiu":  # numeric ids (floats when the column has empty cells)
            mask = values.notna().to_numpy() & good
            rows = np.flatnonzero(mask)
            cells = values.to_numpy()[mask]
            cells = cells.astype(np.int64) if values.dtype.kind == "f" and np.all(cells == np.floor(cells)) else cells
        else:
            text = values.astype(str).str.strip()
            mask = (values.notna() & (text != "")).to_numpy() & good
            rows = np.flatnonzero(mask)
            cells = text.to_numpy()[mask]
            if kind in {"url", "hashtag", "image"}:  # cells may hold several values separated by spaces
                exploded = pd.Series(cells, index=rows).str.lower().str.split().explode().dropna()
                rows, cells = exploded.index.to_numpy(), exploded.to_numpy()
        codes, uniques = pd.factorize(cells, sort=False)
        row_parts.append(rows.astype(np.int64))
        code_parts.append(names.add(kind, np.asarray(uniques)) + codes.astype(np.int64))
    if text_col is not None:
        from factbridge.text.minhash import near_duplicate_groups, signature_groups

        lengths = frame[text_col].astype(str).str.len().to_numpy()
        rows = np.flatnonzero(good & frame[text_col].notna().to_numpy() & (lengths >= 20))
        if text_signatures is not None:
            groups = signature_groups(text_signatures[0][rows], text_signatures[1][rows])
        else:
            texts = frame[text_col].to_numpy()
            groups = near_duplicate_groups([str(texts[i]) for i in rows])
        # A near-duplicate group is named after its first text's row: readable evidence.
        codes, first_rows = _text_groups(groups, rows)
        row_parts.append(rows.astype(np.int64))
        code_parts.append(names.add("text", first_rows + 2, prefix="near-duplicates-of-row-") + codes)
    rows_all = np.concatenate(row_parts) if row_parts else np.zeros(0, np.int64)
    codes_all = np.concatenate(code_parts) if code_parts else np.zeros(0, np.int64)
    return ShareTable(
        account=np.asarray(account_codes)[rows_all].astype(np.int64),
        obj=codes_all,
        time=np.floor(secs[rows_all]).astype(np.int64),
        content=np.asarray(content_codes)[rows_all].astype(np.int64),
        accounts=np.asarray(account_names),
        objects=names,
        contents=np.asarray(content_names),
        rows_read=n,
        skipped=skipped,
        skipped_count=int(bad.sum()),
    )


def _text_groups(groups: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(code per text, first row per code): codes numbered by first appearance, as `pd.factorize` does."""
    labels, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    by_appearance = np.argsort(first, kind="stable")
    code_of_label = np.empty(labels.shape[0], dtype=np.int64)
    code_of_label[by_appearance] = np.arange(labels.shape[0])
    return code_of_label[inverse.ravel()], rows[first[by_appearance]].astype(np.int64)


def _unique_band_keys(bands: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (band, key) pairs, sorted by band then key: what `np.unique` of the stacked
    rows (axis=0) gives, by a numeric sort (`np.unique` sorts the rows as opaque records)."""
    order = np.lexsort((keys, bands))
    bands, keys = bands[order], keys[order]
    first = np.ones(bands.shape[0], dtype=bool)
    first[1:] = (bands[1:] != bands[:-1]) | (keys[1:] != keys[:-1])
    return bands[first], keys[first]


def _pairs_in(k: np.ndarray, b: np.ndarray, keys: np.ndarray, bands: np.ndarray) -> np.ndarray:
    """Which (k, b) entries are one of the (keys, bands) pairs (distinct): `np.isin` of the
    pairs, by a numeric look-up of the keys (a key is rarely in two bands) and a check of the band."""
    order = np.lexsort((bands, keys))
    keys, bands = keys[order], bands[order]
    lo = np.searchsorted(keys, k, side="left")
    hit = np.searchsorted(keys, k, side="right") - lo  # pairs with that key
    inside = np.zeros(k.shape[0], dtype=bool)
    one = np.flatnonzero(hit == 1)
    inside[one] = bands[lo[one]] == b[one]
    for i in np.flatnonzero(hit > 1).tolist():  # the key in several bands
        inside[i] = bool((bands[lo[i] : lo[i] + hit[i]] == b[i]).any())
    return inside


def read_shares(path: str | Path, object_types: Sequence[str] = DEFAULT_OBJECT_TYPES) -> ShareTable:
    """Read a CSV of share records (CooRTweet / CooRnet layouts and our own post exports)."""
    pd = _pandas()
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", source=str(path))
    try:
        frame = pd.read_csv(path, low_memory=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"not a readable CSV: {exc}", source=str(path)) from exc
    return shares_from_frame(frame, str(path), object_types)


def _image_group_names(image_of: Sequence[tuple[int, str]]) -> dict[int, list[str]]:
    """Per post (its number in `image_of`'s (post, dHash) pairs), the names of its images'
    near-duplicate groups: "dhash-" and the first 16 digits of the group's first image."""
    from factbridge.images.matching import near_duplicate_groups

    names: dict[int, list[str]] = {}
    if image_of:
        groups = near_duplicate_groups([h for _, h in image_of])
        for (i, _), g in zip(image_of, groups, strict=True):
            names.setdefault(i, []).append("dhash-" + image_of[g][1][:16])
    return names


def shares_from_posts(posts: Sequence[Any], object_types: Sequence[str] = DEFAULT_OBJECT_TYPES) -> ShareTable:
    """Share records from stored posts: their links, hashtags, near-identical texts and images
    (near-duplicate images are one object, named after the first image's dHash)."""
    pd = _pandas()
    from factbridge.text.urls import extract_hashtags

    kept = [p for p in posts if p.author and p.created_at is not None]
    image_of = [(i, img.dhash) for i, p in enumerate(kept) for img in getattr(p, "images", ()) if img.dhash]
    image_ids = _image_group_names(image_of) if "image" in object_types else {}
    rows = []
    for i, p in enumerate(kept):
        rows.append({
            "account_id": p.author, "post_id": p.id, "timestamp": p.created_at.timestamp(),
            "urls": " ".join(p.urls), "hashtags": " ".join(extract_hashtags(p.norm_text or p.text)),
            "image_hash": " ".join(dict.fromkeys(image_ids.get(i, []))), "text": p.norm_text or p.text,
        })
    frame = pd.DataFrame(rows, columns=["account_id", "post_id", "timestamp", "urls", "hashtags", "image_hash", "text"])
    return shares_from_frame(frame, "stored posts", object_types)


# --------------------------------------------------------------------------- incremental share records


class TextGroups:
    """The near-duplicate text groups of a `ShareRecords`, kept up to date batch by batch: the
    groups `minhash.signature_groups` gives over every text row in post-id order, where each
    text is paired, per LSH band, with the first text (lowest post id) holding the same band
    key, and pairs at or above the Jaccard threshold are joined.

    The band keys live in two sorted runs of (key, band, slot) entries: a large one and a
    small one that new entries go into, merged into the large one when it grows. An entry
    whose slot no longer holds that key is stale and skipped. Each (band, key) a batch
    touches (the keys its posts had and have) has its pairs taken away under the state
    before the batch and added under the state after it, so `_support` always counts, per
    pair, the (band, key)s that make it; pairs are verified once, when they first appear
    (a post's signature changes only by an edit, which takes its pairs away first)."""

    merge_above = 65_536  # entries of the small run merged into the large one (or an eighth of it)
    bulk_factor = 16  # keys asked, times this, above the entries held: pairs by one pass over all entries

    def __init__(self, threshold: float = 0.8) -> None:
        self.threshold = threshold
        empty = (np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        self._runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [empty, empty]  # (keys, bands, slots), sorted by key
        self._support: dict[int, int] = {}  # pair (lo << 32 | hi) -> (band, key)s making it
        self._joined: set[int] = set()  # the supported pairs at or above the threshold

    @staticmethod
    def _merge(run: tuple[np.ndarray, np.ndarray, np.ndarray], keys: np.ndarray, bands: np.ndarray, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        order = np.argsort(keys, kind="stable")
        keys, bands, slots = keys[order], bands[order], slots[order]
        at = np.searchsorted(run[0], keys)
        return np.insert(run[0], at, keys), np.insert(run[1], at, bands), np.insert(run[2], at, slots)

    def add_entries(self, slots: np.ndarray, keys: np.ndarray) -> None:
        """Index the band keys (n, BANDS) of these slots."""
        if slots.shape[0] == 0:
            return
        bands = np.broadcast_to(np.arange(keys.shape[1], dtype=np.int64), keys.shape).ravel()
        self._runs[1] = self._merge(self._runs[1], keys.ravel(), bands, np.repeat(slots.astype(np.int64), keys.shape[1]))
        if self._runs[1][0].shape[0] > max(self.merge_above, self._runs[0][0].shape[0] // 8):
            small_keys, small_bands, small_slots = self._runs[1]
            self._runs = [self._merge(self._runs[0], small_keys, small_bands, small_slots), (small_keys[:0], small_bands[:0], small_slots[:0])]

    def _live(self, k: np.ndarray, b: np.ndarray, slot: np.ndarray, records: ShareRecords) -> np.ndarray:
        """Entries whose slot is a text row holding that key now."""
        live: np.ndarray = records._text_ok[slot] & (records._keys[slot, b] == k)
        return live

    def _pairs(self, bands: np.ndarray, keys: np.ndarray, records: ShareRecords) -> list[int]:
        """The pairs (head, other) the queried (band, key)s make now, as pair keys."""
        entries = sum(run[0].shape[0] for run in self._runs)
        if keys.shape[0] * self.bulk_factor > entries:  # many keys asked (a first read): one pass over every entry
            return self._pairs_bulk(bands, keys, records)
        parts = []
        for run_keys, run_bands, run_slots in self._runs:
            lo = np.searchsorted(run_keys, keys, side="left")
            counts = np.searchsorted(run_keys, keys, side="right") - lo
            total = int(counts.sum())
            if total:
                at = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(total)
                parts.append((run_keys[at], run_bands[at], run_slots[at]))
        if not parts:
            return []
        k, b, slot = (np.concatenate(x) for x in zip(*parts, strict=True))
        return self._head_pairs(bands, keys, k, b, slot, records, rank=None)

    def _pairs_bulk(self, bands: np.ndarray, keys: np.ndarray, records: ShareRecords) -> list[int]:
        k = np.concatenate([run[0] for run in self._runs])
        b = np.concatenate([run[1] for run in self._runs])
        slot = np.concatenate([run[2] for run in self._runs])
        rank = np.empty(records._size, dtype=np.int64)  # post-id order of every slot
        rank[np.asarray(records._sorted_slots, dtype=np.int64)] = np.arange(records._size)
        return self._head_pairs(bands, keys, k, b, slot, records, rank=rank)

    def _head_pairs(self, bands: np.ndarray, keys: np.ndarray, k: np.ndarray, b: np.ndarray, slot: np.ndarray,
                    records: ShareRecords, rank: np.ndarray | None) -> list[int]:
        """Of candidate entries (k, b, slot): the live ones of an asked (band, key), grouped; each
        group's head is its lowest post id (by `rank` when given, else compared per group)."""
        live = self._live(k, b, slot, records)
        k, b, slot = k[live], b[live], slot[live]
        inside = _pairs_in(k, b, keys, bands)
        k, b, slot = k[inside], b[inside], slot[inside]
        order = np.lexsort((rank[slot] if rank is not None else slot, b, k))
        k, b, slot = k[order], b[order], slot[order]
        repeat = np.zeros(k.shape[0], dtype=bool)  # the same entry twice (a post read again)
        repeat[1:] = (k[1:] == k[:-1]) & (b[1:] == b[:-1]) & (slot[1:] == slot[:-1])
        k, b, slot = k[~repeat], b[~repeat], slot[~repeat]
        if k.shape[0] == 0:
            return []
        start = np.ones(k.shape[0], dtype=bool)
        start[1:] = (k[1:] != k[:-1]) | (b[1:] != b[:-1])
        first = np.maximum.accumulate(np.where(start, np.arange(k.shape[0]), 0))
        if rank is None:  # few groups of two or more: their heads by post id
            ids = records._id
            grouped = np.flatnonzero(~start)
            for g in np.unique(first[grouped]).tolist():
                stop = g + 1
                while stop < k.shape[0] and not start[stop]:
                    stop += 1
                lowest = min(range(g, stop), key=lambda i: ids[slot[i]])
                first[g:stop] = lowest
        head = slot[first]
        other = head != slot
        lo, hi = np.minimum(head[other], slot[other]), np.maximum(head[other], slot[other])
        joined: list[int] = ((lo << 32) | hi).tolist()
        return joined

    def retract(self, bands: np.ndarray, keys: np.ndarray, records: ShareRecords) -> None:
        for pair in self._pairs(bands, keys, records):
            left = self._support[pair] - 1
            if left:
                self._support[pair] = left
            else:
                del self._support[pair]
                self._joined.discard(pair)

    def assert_(self, bands: np.ndarray, keys: np.ndarray, records: ShareRecords) -> None:
        fresh: list[int] = []
        for pair in self._pairs(bands, keys, records):
            count = self._support.get(pair, 0)
            self._support[pair] = count + 1
            if not count:
                fresh.append(pair)
        if fresh:
            from factbridge.text.minhash import jaccard_estimate

            arr = np.asarray(fresh, dtype=np.int64)
            a, b = arr >> 32, arr & 0xFFFFFFFF
            ok = jaccard_estimate(records._sigs[a], records._sigs[b]) >= self.threshold
            self._joined.update(arr[ok].tolist())

    def labels(self, size: int) -> np.ndarray:
        """A group label per slot (connected components of the joined pairs)."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        arr = np.fromiter(self._joined, dtype=np.int64, count=len(self._joined))
        a, b = arr >> 32, arr & 0xFFFFFFFF
        graph = coo_matrix((np.ones(a.shape[0]), (a, b)), shape=(size, size))
        labels: np.ndarray = connected_components(graph, directed=False)[1].astype(np.int64)
        return labels


class ShareRecords:
    """One worker's copy of an organisation's share records, caught up from the store.

    Each post is parsed once (and again when it changes): its account, time, link and
    hashtag tokens, image dHashes, text length and the text's MinHash signature and band
    keys are kept in columns. `catch_up` reads only the posts written since the last read
    (`Storage.changed_posts`: other workers' posts and edited posts too); `table` gives
    exactly what `shares_from_posts` gives over every stored post (same rows, codes and
    object names, in post-id order, the order `iter_posts` reads), with numpy instead of
    parsing posts and pandas string operations again. The detection itself stays global:
    the edge percentile, the near-duplicate groups and the components are over every share."""

    def __init__(self, object_types: Sequence[str]) -> None:
        self.object_types = tuple(object_types)
        self.lock = threading.Lock()  # one batch at a time per copy
        self.reset()

    def reset(self) -> None:
        """Empty: the next `catch_up` reads every post."""
        self.cursor = ""
        self._slot: dict[str, int] = {}  # post id -> row of the columns below
        self._sorted_ids: list[str] = []
        self._sorted_slots: list[int] = []
        self._size = 0
        self._id = np.empty(0, dtype=object)
        self._account = np.empty(0, dtype=object)
        self._time = np.empty(0, dtype=np.float64)  # NaN: no time
        self._url_tokens = np.empty(0, dtype=object)  # tuple of str, as shares_from_frame splits the cell
        self._hashtag_tokens = np.empty(0, dtype=object)
        self._dhashes = np.empty(0, dtype=object)  # tuple of the post's image dHashes
        self._text_len = np.empty(0, dtype=np.int64)
        self._sigs = np.empty((0, 0), dtype=np.uint32)
        self._keys = np.empty((0, 0), dtype=np.uint64)
        self._valid = np.empty(0, dtype=bool)
        self._text_ok = np.empty(0, dtype=bool)  # a text row of the share table with a signature
        self._n_urls = np.empty(0, dtype=np.int64)  # tokens per post, so blocks skip posts without any
        self._n_hashtags = np.empty(0, dtype=np.int64)
        self._n_images = np.empty(0, dtype=np.int64)
        self._posts_of: dict[str, set[int]] = {}  # account -> its slots
        self._groups = TextGroups()

    def __len__(self) -> int:
        return self._size

    def catch_up(self, storage: Any, org: str) -> int:
        """Read the posts written since the last call; returns how many."""
        posts, cursor = storage.changed_posts(org, self.cursor)
        try:
            self.update(posts)
        except BaseException:
            self.reset()  # a half-applied batch: start again from the store next time
            raise
        self.cursor = cursor
        return len(posts)

    def _grow(self, need: int) -> None:
        from factbridge.text.minhash import BANDS, NUM_PERM

        capacity = self._id.shape[0]
        if need <= capacity:
            return
        new = max(need, 2 * capacity, 1024)
        for name in ("_id", "_account", "_url_tokens", "_hashtag_tokens", "_dhashes"):
            grown = np.empty(new, dtype=object)
            grown[:capacity] = getattr(self, name)
            setattr(self, name, grown)
        self._time = np.concatenate([self._time, np.full(new - capacity, np.nan)])
        self._text_len = np.concatenate([self._text_len, np.zeros(new - capacity, dtype=np.int64)])
        self._valid = np.concatenate([self._valid, np.zeros(new - capacity, dtype=bool)])
        self._text_ok = np.concatenate([self._text_ok, np.zeros(new - capacity, dtype=bool)])
        for name in ("_n_urls", "_n_hashtags", "_n_images"):
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros(new - capacity, dtype=np.int64)]))
        sigs = np.full((new, NUM_PERM), np.iinfo(np.uint32).max, dtype=np.uint32)
        keys = np.zeros((new, BANDS), dtype=np.uint64)
        if capacity:
            sigs[:capacity], keys[:capacity] = self._sigs, self._keys
        self._sigs, self._keys = sigs, keys

    def update(self, posts: Sequence[Post]) -> None:
        """Add or replace posts by id (a post read twice is replaced by itself)."""
        import bisect

        from factbridge.text.minhash import BANDS, band_keys, signatures
        from factbridge.text.urls import extract_hashtags

        latest = list({p.id: p for p in posts}.values())
        if not latest:
            return
        self._grow(self._size + len(latest))
        texts = [p.norm_text or p.text for p in latest]
        with_text = "text" in self.object_types
        if with_text:
            sigs, valid = signatures(texts)
            keys = band_keys(sigs)
            ok = np.asarray([bool(p.author) and p.created_at is not None and len(t) >= 20 for p, t in zip(latest, texts, strict=True)]) & valid
            # The (band, key)s whose holders change: those the batch's posts held and hold.
            held = np.asarray([s for s in (self._slot.get(p.id) for p in latest) if s is not None], dtype=np.int64)
            held = held[self._text_ok[held]]
            touched = np.concatenate([self._keys[held], keys[ok]])
            t_bands, t_keys = _unique_band_keys(np.broadcast_to(np.arange(BANDS, dtype=np.int64), touched.shape).ravel(), touched.ravel())
            self._groups.retract(t_bands, t_keys, self)
        slots: list[int] = []
        for p, text in zip(latest, texts, strict=True):
            slot = self._slot.get(p.id)
            if slot is None:
                slot = self._slot[p.id] = self._size
                self._size += 1
                where = bisect.bisect_left(self._sorted_ids, p.id)
                self._sorted_ids.insert(where, p.id)
                self._sorted_slots.insert(where, slot)
            else:
                self._posts_of[self._account[slot]].discard(slot)
            self._posts_of.setdefault(p.author, set()).add(slot)
            self._id[slot] = p.id
            self._account[slot] = p.author
            self._time[slot] = p.created_at.timestamp() if p.created_at is not None else np.nan
            # shares_from_frame's cell -> objects: strip, lower, split on whitespace
            self._url_tokens[slot] = tuple(" ".join(p.urls).lower().split())
            self._hashtag_tokens[slot] = tuple(" ".join(extract_hashtags(text)).lower().split())
            self._dhashes[slot] = tuple(img.dhash for img in getattr(p, "images", ()) if img.dhash)
            self._n_urls[slot] = len(self._url_tokens[slot])
            self._n_hashtags[slot] = len(self._hashtag_tokens[slot])
            self._n_images[slot] = len(self._dhashes[slot])
            self._text_len[slot] = len(text)
            slots.append(slot)
        if with_text:
            at = np.asarray(slots, dtype=np.int64)
            self._sigs[at], self._keys[at], self._valid[at], self._text_ok[at] = sigs, keys, valid, ok
            self._groups.add_entries(at[ok], keys[ok])
            self._groups.assert_(t_bands, t_keys, self)

    def authored(self, accounts: set[str]) -> list[tuple[str, str]]:
        """(post id, account) of every post of these accounts, in post-id order."""
        mine = sorted((str(self._id[slot]), account) for account in accounts for slot in self._posts_of.get(account, ()))
        return mine

    def table(self) -> ShareTable:
        """The share table of every post held: what `shares_from_posts` gives over them."""
        pd = _pandas()

        if not {"url", "hashtag", "image", "text"} & set(self.object_types):  # as shares_from_frame says it
            raise InputError(f"no object column for types {', '.join(self.object_types)} in stored posts", source="stored posts", line=1)
        order = np.asarray(self._sorted_slots, dtype=np.int64)
        kept = order[(self._account[order] != "") & ~np.isnan(self._time[order])]
        n = int(kept.shape[0])
        account_codes, account_names = pd.factorize(self._account[kept], sort=False)
        secs = self._time[kept]
        secs = np.where(secs > 1e11, secs / 1000.0, secs)  # as _epoch_seconds reads numbers
        names = ObjectNames()
        row_parts: list[np.ndarray] = []
        code_parts: list[np.ndarray] = []

        def block(kind: str, tokens: np.ndarray, counts: np.ndarray) -> None:
            some = np.flatnonzero(counts)  # rows with tokens, in row order; each row's tokens in order
            cells = list(itertools.chain.from_iterable(tokens[some].tolist()))
            codes, uniques = pd.factorize(np.asarray(cells, dtype=object), sort=False)
            row_parts.append(np.repeat(some, counts[some]).astype(np.int64))
            code_parts.append(names.add(kind, np.asarray(uniques)) + codes.astype(np.int64))

        # the columns shares_from_posts writes, in its order: urls, hashtags, image_hash, text
        if "url" in self.object_types:
            block("url", self._url_tokens[kept], self._n_urls[kept])
        if "hashtag" in self.object_types:
            block("hashtag", self._hashtag_tokens[kept], self._n_hashtags[kept])
        if "image" in self.object_types:
            image_tokens = self._image_tokens(kept)
            block("image", image_tokens, np.fromiter((len(t) for t in image_tokens.tolist()), dtype=np.int64, count=n)
                  if self._n_images[kept].any() else np.zeros(n, dtype=np.int64))
        if "text" in self.object_types:
            rows = np.flatnonzero(self._text_len[kept] >= 20)
            groups = self._groups.labels(self._size)[kept[rows]]
            codes, first_rows = _text_groups(groups, rows)
            row_parts.append(rows.astype(np.int64))
            code_parts.append(names.add("text", first_rows + 2, prefix="near-duplicates-of-row-") + codes)
        rows_all = np.concatenate(row_parts) if row_parts else np.zeros(0, np.int64)
        return ShareTable(
            account=np.asarray(account_codes)[rows_all].astype(np.int64),
            obj=np.concatenate(code_parts) if code_parts else np.zeros(0, np.int64),
            time=np.floor(secs[rows_all]).astype(np.int64),
            content=rows_all.astype(np.int64),  # post ids are unique: the code of row r is r
            accounts=np.asarray(account_names),
            objects=names,
            contents=self._id[kept],
            rows_read=n,
        )

    def _image_tokens(self, kept: np.ndarray) -> np.ndarray:
        """Per kept post, its near-duplicate image groups' names (as shares_from_posts names them)."""
        tokens = np.empty(kept.shape[0], dtype=object)
        with_images = np.flatnonzero(self._n_images[kept])
        if with_images.shape[0] == 0:
            return tokens
        tokens[:] = [()] * kept.shape[0]
        dhashes = self._dhashes[kept]
        image_of = [(i, h) for i in with_images.tolist() for h in dhashes[i]]
        for row, found in _image_group_names(image_of).items():
            tokens[row] = tuple(" ".join(dict.fromkeys(found)).lower().split())
        return tokens


def _unique_links(edge: np.ndarray, obj: np.ndarray, when: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row per (link, object) with its earliest co-share time, sorted by link then object."""
    order = np.lexsort((when, obj, edge))
    edge, obj, when = edge[order], obj[order], when[order]
    first = np.ones(edge.shape[0], dtype=bool)
    first[1:] = (edge[1:] != edge[:-1]) | (obj[1:] != obj[:-1])
    return edge[first], obj[first], when[first]


def _co_shares(
    key: np.ndarray, acc: np.ndarray, obj: np.ndarray, when: np.ndarray, n_acc: int, window: int,
    max_partners: int, chunk_pairs: int = 12_000_000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """(link key, object, earliest time) per distinct (link, object), the number of co-shares and of
    capped shares. `key` is sorted by (object, time); each share pairs with the following shares of
    its object inside the window. Pairs are made and reduced chunk by chunk to bound memory."""
    n = key.shape[0]
    partners = np.searchsorted(key, key + window, side="right") - np.arange(n) - 1
    capped = int((partners > max_partners).sum())
    np.minimum(partners, max_partners, out=partners)
    running = np.cumsum(partners)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    pairs = 0
    start = 0
    while start < n:
        before = int(running[start - 1]) if start else 0
        stop = min(n, max(start + 1, int(np.searchsorted(running, before + chunk_pairs, side="right"))))
        counts = partners[start:stop]
        first = np.repeat(np.arange(start, stop, dtype=np.int64), counts)
        second = first + 1 + (np.arange(first.shape[0], dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts))
        a, b = acc[first], acc[second]
        keep = a != b
        first, a, b = first[keep], a[keep], b[keep]
        del second, keep
        pairs += int(first.shape[0])
        parts.append(_unique_links(np.minimum(a, b) * n_acc + np.maximum(a, b), obj[first], when[first]))
        del first, a, b
        start = stop
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, 0, capped
    if len(parts) == 1:
        edge, o, t = parts[0]
    else:
        edge, o, t = _unique_links(*(np.concatenate(x) for x in zip(*parts, strict=True)))
    return edge, o, t, pairs, capped


def detect_coordination(table: ShareTable, params: CoordinationSettings, evidence_objects: int = 20, evidence_edges: int = 50) -> CoordinationResult:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    n_acc = max(1, len(table.accounts))
    n_obj = max(1, len(table.objects))
    window = int(round(params.window_s))
    if len(table) == 0:
        return CoordinationResult([], params, 0, 0, 0, 0, 0, 0, 0, 0.0, timings)

    # Sort by (object, time) with one int64 key: objects are spaced further apart than any window.
    t_min = int(table.time.min())
    rel_time = table.time - t_min
    span = int(rel_time.max()) + window + 1
    if n_obj * span >= 2**62:
        raise InputError(f"time span of {span} s is too long for {n_obj} objects", source="share table", field="timestamp")
    key = table.obj * span + rel_time
    order = np.argsort(key, kind="stable")
    key = key[order]
    acc = table.account[order]
    obj = table.obj[order]
    tim = table.time[order]
    timings["sort"] = time.perf_counter() - t0

    # Co-shares inside the window (same object, different accounts), one row per (link, object):
    # the link's weight counts distinct co-shared objects.
    t1 = time.perf_counter()
    edge_rows, lo_obj, lo_time, pairs, capped = _co_shares(key, acc, obj, tim, n_acc, window, params.max_partners)
    del key, acc, obj, tim
    new_link = np.ones(edge_rows.shape[0], dtype=bool)
    new_link[1:] = edge_rows[1:] != edge_rows[:-1]
    edge_ids = edge_rows[new_link]
    lo_edge = np.cumsum(new_link) - 1
    del edge_rows, new_link
    timings["pairs"] = time.perf_counter() - t1

    # Participation: distinct objects each account co-shared with anyone.
    t3 = time.perf_counter()
    edge_lo = edge_ids // n_acc
    edge_hi = edge_ids % n_acc
    acc_obj = np.concatenate([edge_lo[lo_edge] * n_obj + lo_obj, edge_hi[lo_edge] * n_obj + lo_obj])
    acc_obj = np.unique(acc_obj)
    participation = np.bincount(acc_obj // n_obj, minlength=n_acc)
    del acc_obj
    eligible = participation >= params.min_participation
    weights = np.bincount(lo_edge, minlength=edge_ids.shape[0])
    edge_ok = eligible[edge_lo] & eligible[edge_hi]
    # CooRnet's percentile over every co-share link (chance ones included); repetition applies to
    # links too, so the threshold is never below min_participation (one co-share is no link).
    threshold = float(np.percentile(weights, params.edge_percentile)) if weights.size else 0.0
    threshold = max(threshold, float(params.min_participation))
    edge_ok &= weights >= threshold
    kept = np.flatnonzero(edge_ok)
    timings["filter"] = time.perf_counter() - t3

    # Networks: connected components of the kept links.
    t4 = time.perf_counter()
    networks = _components(table, kept, edge_lo, edge_hi, weights, lo_edge, lo_obj, lo_time, evidence_objects, evidence_edges, params.split_above)
    timings["networks"] = time.perf_counter() - t4
    timings["total"] = time.perf_counter() - t0
    return CoordinationResult(
        networks=networks, params=params, shares=len(table), accounts=len(table.accounts), objects=len(table.objects),
        pairs=pairs, capped_shares=capped, coordinated_accounts=sum(len(n.accounts) for n in networks),
        edges_kept=int(kept.shape[0]), weight_threshold=threshold, timings=timings,
    )


def _components(
    table: ShareTable, kept: np.ndarray, edge_lo: np.ndarray, edge_hi: np.ndarray, weights: np.ndarray,
    lo_edge: np.ndarray, lo_obj: np.ndarray, lo_time: np.ndarray, evidence_objects: int, evidence_edges: int,
    split_above: int = 0,
) -> list[Network]:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if kept.shape[0] == 0:
        return []
    src, dst = edge_lo[kept], edge_hi[kept]
    nodes, inverse = np.unique(np.concatenate([src, dst]), return_inverse=True)
    k = kept.shape[0]
    graph = coo_matrix((np.ones(k), (inverse[:k], inverse[k:])), shape=(len(nodes), len(nodes)))
    n_comp, labels = connected_components(graph, directed=False)
    component_of_node = labels.copy()
    component_sizes = np.bincount(labels, minlength=n_comp)
    if split_above and (component_sizes > split_above).any():
        n_comp, labels = _split_large_components(labels, component_sizes, split_above, inverse[:k], inverse[k:], weights[kept].astype(np.float64))
    comp_of_edge = labels[inverse[:k]]
    # A link between two communities of one component is evidence of neither; it stays counted
    # in the component's size and in `links_to_other_communities`.
    intra = comp_of_edge == labels[inverse[k:]]
    cross_links = np.bincount(np.concatenate([labels[inverse[:k]][~intra], labels[inverse[k:]][~intra]]), minlength=n_comp)
    kept, inverse_src = kept[intra], inverse[:k][intra]
    comp_of_edge = comp_of_edge[intra]
    k = kept.shape[0]
    del inverse_src
    # Evidence rows of kept links only: (component, object, time, link), grouped without Python loops.
    rank_of_edge = np.full(edge_lo.shape[0], -1, dtype=np.int64)
    rank_of_edge[kept] = np.arange(k)
    ev = rank_of_edge[lo_edge] >= 0
    ev_comp = comp_of_edge[rank_of_edge[lo_edge[ev]]]
    ev_obj, ev_time, ev_edge = lo_obj[ev], lo_time[ev], lo_edge[ev]
    n_obj = max(1, len(table.objects))
    comp_obj = ev_comp.astype(np.int64) * n_obj + ev_obj
    order = np.argsort(comp_obj, kind="stable")
    co_sorted = comp_obj[order]
    run = np.ones(co_sorted.shape[0], dtype=bool)
    run[1:] = co_sorted[1:] != co_sorted[:-1]
    starts = np.flatnonzero(run)
    co_keys = co_sorted[starts]
    co_links = np.diff(np.append(starts, co_sorted.shape[0]))
    co_first = np.minimum.reduceat(ev_time[order], starts) if starts.size else np.zeros(0, np.int64)
    co_last = np.maximum.reduceat(ev_time[order], starts) if starts.size else np.zeros(0, np.int64)
    # Distinct accounts per (component, object): both ends of each evidence link.
    ends = np.concatenate([edge_lo[ev_edge], edge_hi[ev_edge]])
    triple = np.unique(np.stack([np.concatenate([comp_obj, comp_obj]), ends], axis=1), axis=0)
    acc_counts = np.bincount(np.searchsorted(co_keys, triple[:, 0]), minlength=co_keys.shape[0])
    co_comp = co_keys // n_obj
    co_rank = np.lexsort((-co_links, co_comp))
    co_bounds = np.searchsorted(co_comp[co_rank], np.arange(n_comp + 1))
    edge_rank = np.lexsort((-weights[kept], comp_of_edge))
    edge_bounds = np.searchsorted(comp_of_edge[edge_rank], np.arange(n_comp + 1))
    node_order = np.argsort(labels, kind="stable")
    node_bounds = np.searchsorted(labels[node_order], np.arange(n_comp + 1))

    networks: list[Network] = []
    for c in range(n_comp):
        members = nodes[node_order[node_bounds[c] : node_bounds[c + 1]]]
        rows = co_rank[co_bounds[c] : co_bounds[c + 1]]
        objects = [
            {"object": table.objects[int(co_keys[r] % n_obj)], "links": int(co_links[r]), "accounts": int(acc_counts[r]),
             "first_share": int(co_first[r]), "last_share": int(co_last[r])}
            for r in rows[:evidence_objects]
        ]
        comp_edges = kept[edge_rank[edge_bounds[c] : edge_bounds[c + 1]]]
        edges = [
            {"a": str(table.accounts[edge_lo[e]]), "b": str(table.accounts[edge_hi[e]]), "weight": int(weights[e])}
            for e in comp_edges[:evidence_edges]
        ]
        component = int(component_of_node[node_order[node_bounds[c]]]) if node_bounds[c + 1] > node_bounds[c] else -1
        networks.append(Network(
            id="", accounts=sorted(str(table.accounts[m]) for m in members), edges=edges, objects=objects,
            component_size=int(component_sizes[component]) if component >= 0 else 0,
            links_to_other_communities=int(cross_links[c]),
            edge_count=int(comp_edges.shape[0]), total_weight=int(weights[comp_edges].sum()),
            first_share=float(co_first[rows].min()) if rows.size else 0.0,
            last_share=float(co_last[rows].max()) if rows.size else 0.0,
        ))
    networks.sort(key=lambda n: (-len(n.accounts), -n.total_weight, n.accounts[0]))
    for i, net in enumerate(networks, start=1):
        net.id = f"net-{i}"
    return networks


def _split_large_components(
    labels: np.ndarray, sizes: np.ndarray, split_above: int, src: np.ndarray, dst: np.ndarray, weight: np.ndarray,
) -> tuple[int, np.ndarray]:
    """Relabel nodes: components larger than `split_above` become their Louvain communities."""
    out = np.full(labels.shape[0], -1, dtype=np.int64)
    next_label = 0
    for comp in range(sizes.shape[0]):
        members = np.flatnonzero(labels == comp)
        if sizes[comp] <= split_above:
            out[members] = next_label
            next_label += 1
            continue
        local = np.full(labels.shape[0], -1, dtype=np.int64)
        local[members] = np.arange(members.shape[0])
        inside = (labels[src] == comp)
        communities = louvain(members.shape[0], local[src[inside]], local[dst[inside]], weight[inside])
        out[members] = next_label + communities
        next_label += int(communities.max()) + 1
    return next_label, out


def louvain(n: int, src: np.ndarray, dst: np.ndarray, weight: np.ndarray, resolution: float = 1.0, seed: int = 0) -> np.ndarray:
    """Community of each node by Louvain modularity optimisation (Blondel et al. 2008): local
    moving of nodes to the neighbouring community with the best modularity gain, then the
    communities become nodes, until nothing moves. Deterministic for a given seed."""
    from scipy.sparse import coo_matrix

    rng = np.random.default_rng(seed)
    membership = np.arange(n)
    graph = coo_matrix((np.concatenate([weight, weight]), (np.concatenate([src, dst]), np.concatenate([dst, src]))), shape=(n, n)).tocsr()
    graph.sum_duplicates()
    while True:
        size = graph.shape[0]
        degree = np.asarray(graph.sum(axis=1)).ravel()
        total = float(degree.sum())
        if total == 0:
            break
        community = np.arange(size)
        community_degree = degree.copy()
        indptr, indices, data = graph.indptr, graph.indices, graph.data
        for _ in range(20):
            moved = False
            for node in rng.permutation(size).tolist():
                current = community[node]
                links: dict[int, float] = {}
                for j, w in zip(indices[indptr[node] : indptr[node + 1]].tolist(), data[indptr[node] : indptr[node + 1]].tolist(), strict=True):
                    if j != node:
                        links[community[j]] = links.get(community[j], 0.0) + w
                k = degree[node]
                community_degree[current] -= k
                best, best_gain = current, links.get(current, 0.0) - resolution * community_degree[current] * k / total
                for c, w in links.items():
                    gain = w - resolution * community_degree[c] * k / total
                    if gain > best_gain + 1e-12:
                        best, best_gain = c, gain
                community_degree[best] += k
                if best != current:
                    community[node] = best
                    moved = True
            if not moved:
                break
        _, community = np.unique(community, return_inverse=True)
        membership = community[membership]
        if community.max() + 1 == size:
            break
        project = coo_matrix((np.ones(size), (np.arange(size), community)), shape=(size, int(community.max()) + 1)).tocsr()
        graph = (project.T @ graph @ project).tocsr()
    _, membership = np.unique(membership, return_inverse=True)
    return membership.astype(np.int64)


# --------------------------------------------------------------------------- narratives

NARRATIVE_COORDINATION = COORDINATION  # typed: NarrativeCoordination, through NarrativeCoordinations
# Post ids listed per account on a narrative (the count is always complete).
LISTED_POSTS = 20


def link_to_narratives(storage: Any, org: str, posts: Sequence[Any], result: CoordinationResult) -> dict[str, NarrativeCoordination]:
    """Per narrative, the coordinated accounts that posted in it: those of a network
    with at least two of its accounts among the narrative's posts (one account of
    a network posting there says nothing about the narrative)."""
    return _link_posts_to_narratives(storage, org, [(p.id, p.author) for p in posts], result)


def _link_posts_to_narratives(storage: Any, org: str, posts: Sequence[tuple[str, str]], result: CoordinationResult) -> dict[str, NarrativeCoordination]:
    """`link_to_narratives` over (post id, account) pairs."""
    network_of = {account: net for net in result.networks for account in net.accounts}
    authored: dict[str, list[str]] = {}
    for post_id, author in posts:
        if author in network_of:
            authored.setdefault(author, []).append(post_id)
    members = NarrativeMembers(storage).get(org, sorted({pid for ids in authored.values() for pid in ids}))
    by_narrative: dict[str, dict[str, list[str]]] = {}
    for account, ids in authored.items():
        for pid in ids:
            membership = members.get(pid)
            if membership is not None:
                by_narrative.setdefault(membership.narrative_id, {}).setdefault(account, []).append(pid)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    docs: dict[str, NarrativeCoordination] = {}
    for narrative_id, accounts in sorted(by_narrative.items()):
        per_network: dict[str, list[str]] = {}
        for account in accounts:
            per_network.setdefault(network_of[account].id, []).append(account)
        kept = {nid: sorted(accs) for nid, accs in per_network.items() if len(accs) >= 2}
        if not kept:
            continue
        nets = {net.id: net for net in result.networks if net.id in kept}
        docs[narrative_id] = NarrativeCoordination(
            narrative_id,
            accounts=[CoordinatedAccount(account, nid, len(accounts[account]), sorted(accounts[account])[:LISTED_POSTS])
                      for nid, accs in sorted(kept.items()) for account in accs],
            networks=[CoordinatedNetwork(nid, len(nets[nid].accounts), len(accs), nets[nid].objects[:5], nets[nid].first_share, nets[nid].last_share)
                      for nid, accs in sorted(kept.items())],
            decided_by=result.decided_by,
            updated_at=now,
        )
    return docs


def store_narrative_links(storage: Any, org: str, docs: dict[str, NarrativeCoordination], decided_by: str) -> int:
    """Write the links; a narrative linked by an earlier run and not by this one gets
    an empty record (documents are never deleted). Returns narratives linked."""
    accessor = NarrativeCoordinations(storage)
    earlier = accessor.linked(org)  # the linked ones only (they sort first), not every record
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    unlinked = [NarrativeCoordination(nid, decided_by=decided_by, updated_at=now) for nid in earlier if nid not in docs]
    accessor.put(org, [*docs.values(), *unlinked])
    return len(docs)


_RECORDS: weakref.WeakKeyDictionary[Any, dict[tuple[str, tuple[str, ...]], ShareRecords]] = weakref.WeakKeyDictionary()
_RECORDS_LOCK = threading.Lock()


def share_records(storage: Any, org: str, object_types: Sequence[str]) -> ShareRecords:
    """This process's share records of `org` in `storage` (one per storage object: a reopened
    store starts from an empty copy and reads every post once)."""
    with _RECORDS_LOCK:
        per_store = _RECORDS.setdefault(storage, {})
        key = (org, tuple(object_types))
        if key not in per_store:
            per_store[key] = ShareRecords(object_types)
        return per_store[key]


def coordination_stage(services: StageContext, org: str, posts: Sequence[Post]) -> StageSummary:
    """Stage: coordinated sharing over the organisation's stored posts, linked to narratives.

    It keeps the organisation's share records in memory (`ShareRecords`) and reads only
    the posts written since its last read; the detection runs over all of them. Above
    `coordination_stage_max_posts` it steps aside (`factbridge coordination --store`
    from a scheduled job)."""
    section = services.settings.coordination
    if not any(p.author and p.created_at is not None for p in posts):
        return {"skipped": "no post of this batch has an account and a time (e.g. a public report): nothing new to coordinate"}
    records = share_records(services.storage, org, section.object_types)
    with records.lock:
        # The first read takes every post: count them first, as a store above the ceiling is never read.
        total = services.storage.count_posts(org) if not records.cursor else 0
        if total <= section.stage_max_posts:
            records.catch_up(services.storage, org)
            total = len(records)
        if total > section.stage_max_posts:
            records.reset()  # its memory back; the next batch counts the store again before reading it
            return {"skipped": f"{total} stored posts > coordination_stage_max_posts ({section.stage_max_posts}); run `factbridge coordination --store`"}
        try:
            result = detect_coordination(records.table(), section)
        except DependencyMissing as exc:
            return {"skipped": str(exc)}
        authored = records.authored({a for net in result.networks for a in net.accounts})
    linked = store_narrative_links(services.storage, org, _link_posts_to_narratives(services.storage, org, authored, result), result.decided_by)
    return {"networks": len(result.networks), "coordinated_accounts": result.coordinated_accounts, "narratives_linked": linked}


STAGE = FunctionStage(
    "coordination", METHOD_VERSION, coordination_stage, needs=("narratives",), writes=(NARRATIVE_COORDINATION,),
    doc="coordinated sharing over the stored posts, linked to narratives",
)
