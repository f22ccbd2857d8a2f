"""The storage contract, split by role (`PostStore`, `FactCheckStore`, `VectorStore`,
`DocumentStore`, ...); `Storage` is all of them, what a backend implements. Every read
and write takes the organisation scope first: one partner's data never shows up in
another's results.

Backends: SQLite (default, embedded) and PostgreSQL (+pgvector). Both pass the
conformance suite in `factbridge.testing.storage_conformance`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from factbridge.errors import InputError, PreconditionFailed, StorageError
from factbridge.models import FactCheck, MatchCandidate, Post, Quarantined

# Both backends number their migrations alike (a version can be a no-op in one of them).
SCHEMA_VERSION = 8
FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")  # `factcheck_fields`' field names


def field_paths(fields: Sequence[str]) -> list[list[str]]:
    """`factcheck_fields`' fields as key paths, each checked (a backend builds its query from them)."""
    if not fields:
        raise ValueError("factcheck_fields: name at least one field")
    bad = [f for f in fields if not FIELD_PATH.fullmatch(f)]
    if bad:
        raise ValueError(f"factcheck_fields: not a field name: {', '.join(map(repr, bad))} (keys, dotted for nested ones)")
    return [f.split(".") for f in fields]


@dataclass
class UpsertResult:
    inserted: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changed(self) -> list[str]:
        return self.inserted + self.updated


Rows = Sequence[tuple[str, dict[str, Any], float | None]]


@dataclass(frozen=True)
class Expect:
    """A precondition of a write, checked inside the write's transaction: the document
    `collection/doc_id` (in `org`, default the write's) has `value` at `field`, or, when `field`
    is None, does not exist. Read-modify-write sequences (the audit head, a case's version, a
    free session slot) use it instead of in-process locks, so separate processes over one
    database (the CLI and the server) cannot both win."""

    collection: str
    doc_id: str
    field: str | None = None
    value: Any = None
    org: str | None = None

    def holds(self, doc: dict[str, Any] | None) -> bool:
        if self.field is None:
            return doc is None
        return doc is not None and doc.get(self.field) == self.value

    def failed(self, org: str) -> PreconditionFailed:
        key = (self.org or org, self.collection, self.doc_id)
        return PreconditionFailed(f"{'/'.join(key)} changed meanwhile (expected {self.field}={self.value!r})", key)


@runtime_checkable
class StorageAdmin(Protocol):
    """Opening, schema and closing: what `factbridge init` and the composition root need."""

    url: str

    def migrate(self) -> None: ...
    def close(self) -> None: ...
    def schema_version(self) -> int: ...


@runtime_checkable
class FactCheckStore(Protocol):
    """The fact-check library."""

    def upsert_factchecks(self, org: str, items: Sequence[FactCheck]) -> UpsertResult: ...
    def get_factcheck(self, org: str, factcheck_id: str) -> FactCheck: ...
    def get_factchecks(self, org: str, ids: Sequence[str]) -> dict[str, FactCheck]: ...
    def iter_factchecks(self, org: str, batch_size: int = 1000) -> Iterator[FactCheck]: ...
    def count_factchecks(self, org: str) -> int: ...
    def factcheck_fields(self, org: str, fields: Sequence[str], ids: Sequence[str] | None = None) -> dict[str, list[Any]]:
        """Per fact-check of `org` (those of `ids`, when given, that are stored), the values of
        these fields of its stored document, in the order asked: JSON values as the document
        holds them (text, numbers, None, objects as dicts; times as ISO text; None where the
        field is absent). A field names a top-level key, or a key inside an object with dots
        ("raw.withdrawn"). What a reader of a few fields of a whole library needs, without a
        model built per fact-check (`get_factchecks`: twice the time at 300,000)."""
        ...
    def factcheck_shas(self, org: str) -> dict[str, str]:
        """Each stored fact-check of `org` -> the hash of its stored document (changes whenever
        the document does, whoever wrote it): what a reader holding a copy of the library made
        earlier, maybe by another process or before a restore, compares to find what to read
        again, without reading the documents."""
        ...
    def factcheck_stamp(self, org: str) -> str:
        """A value that stays the same while no fact-check of `org` is added or changed (a
        different one may still mean the same library), read without bringing the rows into
        the process (`vector_stamp`'s counterpart for the library's documents)."""
        ...
    def factchecks_changed(self, org: str, stamp: str) -> list[str] | None:
        """The ids of `org`'s fact-checks added or changed since `stamp` (a `factcheck_stamp`
        of this store), maybe with some that did not change; None when `stamp` is not a stamp
        this store reads (then a reader loads the whole library again). What a matcher reads
        to bring its library up to date without reading every fact-check."""
        ...


@runtime_checkable
class PostStore(Protocol):
    """Posts. A file's posts and its quarantined rows are written in one transaction; a post
    (or fact-check) given twice in one upsert is stored and reported once, as its last copy."""

    def upsert_posts(self, org: str, posts: Sequence[Post], quarantined: Sequence[Quarantined] = ()) -> UpsertResult: ...
    def get_post(self, org: str, post_id: str) -> Post: ...
    def get_posts(self, org: str, ids: Sequence[str]) -> dict[str, Post]: ...
    def post_times(self, org: str, ids: Sequence[str]) -> dict[str, datetime | None]:
        """Each stored post's `created_at` (aware, UTC; None: it has none), without reading the
        posts: what a post vector index keeps of them. Ids not stored are absent."""
        ...
    def list_posts(self, org: str, limit: int = 100, offset: int = 0) -> list[Post]: ...
    def iter_posts(self, org: str, batch_size: int = 1000) -> Iterator[Post]: ...
    def count_posts(self, org: str) -> int: ...
    def changed_posts(self, org: str, cursor: str = "") -> tuple[list[Post], str]:
        """The posts inserted or changed since `cursor` (a token from an earlier call; "": every
        post) and the token for the next call. None written before this call returns is missed,
        also with several writers; a post may come again on the next call (callers replace by id)."""
        ...


@runtime_checkable
class QuarantineStore(Protocol):
    """Rows of input files that were set aside, with where and why."""

    def add_quarantine(self, org: str, rows: Sequence[Quarantined]) -> None: ...
    def list_quarantine(self, org: str, limit: int = 100) -> list[Quarantined]: ...


@runtime_checkable
class VectorStore(Protocol):
    """Embeddings per item (kind: "factcheck" or "post") and embedder; a vector of another
    dimension than its embedder's first one is refused."""

    def put_vectors(self, org: str, kind: str, embedder_id: str, rows: Sequence[tuple[str, str, np.ndarray]]) -> None: ...
    def load_vectors(self, org: str, kind: str, embedder_id: str, ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
        """Item ids (in id order) and their vectors as rows of one float32 matrix. With `ids`, only
        those items, in the same order as a full load; ids without a stored vector are simply absent."""
        ...
    def vector_shas(self, org: str, kind: str, embedder_id: str, ids: Sequence[str] | None = None,
                    shas: Sequence[str] | None = None) -> dict[str, str]:
        """Item id -> hash of the text its vector was made from. With `ids`, only those items;
        with `shas`, only items whose text hash is one of them (a batch's look-ups, not every row)."""
        ...
    def vector_stamp(self, org: str, kind: str, embedder_id: str) -> str:
        """A value that stays the same while no vector of (org, kind, embedder) is added or
        replaced (a different one may still mean the same pairs), read without bringing the rows
        into the process: what a reader compares to know whether to read the vectors again."""
        ...
    def vectors_changed(self, org: str, kind: str, embedder_id: str, stamp: str) -> list[str] | None:
        """The item ids of (org, kind, embedder) whose vector was added or replaced since
        `stamp` (a `vector_stamp` of this store), maybe with some that did not change; None
        when `stamp` is not a stamp this store reads."""
        ...
    def embedders(self) -> dict[str, int]: ...


@runtime_checkable
class MatchStore(Protocol):
    """The stored match candidates of each post."""

    def replace_matches(self, org: str, post_id: str, candidates: Sequence[MatchCandidate]) -> None: ...
    def matches_for_post(self, org: str, post_id: str) -> list[MatchCandidate]: ...
    def matches_for_posts(self, org: str, post_ids: Sequence[str]) -> dict[str, list[MatchCandidate]]:
        """Per post asked that has matches, what `matches_for_post` gives (ordered by rank), in one read
        (a post without any is left out, as `get_docs` leaves out what it does not find)."""
        ...
    def matches_for_factcheck(self, org: str, factcheck_id: str) -> list[tuple[str, MatchCandidate]]: ...


@runtime_checkable
class DocumentStore(Protocol):
    """Derived records of later stages (link risk, check-worthiness, narratives, alerts, queue
    entries, cases...). One JSON document per (org, collection, id), with an optional numeric
    sort key (e.g. queue priority) for ordered listing."""

    def put_docs(self, org: str, collection: str, rows: Sequence[tuple[str, dict[str, Any], float | None]]) -> None: ...
    def put_docs_batch(self, org: str, writes: Sequence[tuple[str, Rows]], *, expect: Sequence[Expect] = (),
                       other_orgs: Sequence[tuple[str, str, Rows]] = ()) -> None:
        """`put_docs` into several collections in one transaction: all of it is written, or none
        (a record and its audit entry). Every `expect` is checked first inside the same
        transaction; one that does not hold raises PreconditionFailed and nothing is written.
        `other_orgs` are (org, collection, rows) written in the same transaction into other
        scopes (an account record in "_system" and its entry in the organisation's audit chain)."""
        ...
    def get_docs(self, org: str, collection: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...
    def list_docs(self, org: str, collection: str, limit: int = 100, offset: int = 0, order: str = "sort_desc",
                  after: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Documents in `order` ("sort_desc", "sort_asc", "updated_desc", "created_asc", "id").
        `after`, with order "id" only: those whose id sorts after it, byte-wise (keyset paging:
        a page costs its own rows, where an offset costs every row before it too)."""
        ...
    def count_docs(self, org: str, collection: str) -> int: ...
    def list_docs_keyed(self, org: str, collection: str, limit: int = 1000, order: str = "sort_desc",
                        after: tuple[float, str] | None = None) -> list[tuple[str, float, dict[str, Any]]]:
        """Documents with a sort key, in `order` ("sort_desc" or "sort_asc", ties by id), each
        with its key, after the cursor (sort key, id) of the last one read: keyset paging in a
        sort order, each page costing its own rows. Documents without a sort key are left out."""
        ...


@runtime_checkable
class Storage(StorageAdmin, FactCheckStore, PostStore, QuarantineStore, VectorStore, MatchStore, DocumentStore, Protocol):
    """Every role together: what a backend implements. Code that needs one part declares that
    role (`PostStore`, `VectorStore`...) instead, so its needs are visible and a test can hand
    it a small fake. Lexical search is not a storage role: the matcher ranks with its own
    in-memory BM25 (pipeline/lexical.py), the same on every backend."""


ROLES: tuple[type, ...] = (StorageAdmin, FactCheckStore, PostStore, QuarantineStore, VectorStore, MatchStore, DocumentStore)


def docs_cursor_checked(order: str, after: str | None) -> None:
    """`list_docs`'s cursor is for order "id" only (ValueError otherwise); both backends check it here."""
    if after is not None and order != "id":
        raise ValueError(f"list_docs(after=...) pages order 'id' only, not '{order}'")


def keyed_descending(order: str) -> bool:
    """Whether `list_docs_keyed` pages `order` by descending key ("sort_desc") or ascending
    ("sort_asc"); ValueError for another order. Both backends check it here."""
    if order not in ("sort_desc", "sort_asc"):
        raise ValueError(f"list_docs_keyed pages order 'sort_desc' or 'sort_asc', not '{order}'")
    return order == "sort_desc"


def iter_docs_by_key(storage: DocumentStore, org: str, collection: str, order: str = "sort_desc", page: int = 1000) -> Iterator[tuple[str, float, dict[str, Any]]]:
    """Every document with a sort key, in that order (`list_docs_keyed` page by page: stop when
    it has enough; reading N costs N rows)."""
    after: tuple[float, str] | None = None
    while True:
        rows = storage.list_docs_keyed(org, collection, limit=page, order=order, after=after)
        yield from rows
        if len(rows) < page:
            return
        after = (rows[-1][1], rows[-1][0])


def iter_docs(storage: DocumentStore, org: str, collection: str, order: str = "id", page: int = 1000) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every document of a collection, `page` at a time. By id (the default) each page starts
    after the last id read, and in a sort order after the last (sort key, id), then the documents
    without a key (last in both) by offset past those: reading N documents costs N rows, where
    offsets alone cost ~N²/page (for collections nobody writes to while they are read through)."""
    offset = 0
    if order == "id":
        after: str | None = None
        while True:
            rows = storage.list_docs(org, collection, limit=page, order="id", after=after)
            yield from rows
            if len(rows) < page:
                return
            after = rows[-1][0]
    elif order in ("sort_desc", "sort_asc"):
        for doc_id, _, doc in iter_docs_by_key(storage, org, collection, order=order, page=page):
            offset += 1
            yield doc_id, doc
    while True:
        rows = storage.list_docs(org, collection, limit=page, offset=offset, order=order)
        yield from rows
        if len(rows) < page:
            return
        offset += len(rows)


# `json.dumps(record, sort_keys=True, default=str, ensure_ascii=False)` builds an encoder per
# call; one built once gives the same text (an encoder keeps no state between calls).
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, default=str, ensure_ascii=False)


_Upserted = TypeVar("_Upserted", Post, FactCheck)


def last_per_id(items: Sequence[_Upserted]) -> list[_Upserted]:
    """One copy per id, the last one given, at the place its id first came: what an upsert
    stores and reports of a batch that gives an id twice (PostgreSQL's one statement cannot
    upsert a row twice; SQLite does as it does)."""
    return list({item.id: item for item in items}.values())


def content_sha(record: dict[str, Any]) -> str:
    """sha256 of a record's canonical JSON. A record holding text that is not valid Unicode (a
    lone surrogate, which no database can store as UTF-8) is refused as bad input here, before
    anything of its batch is written."""
    text = _CANONICAL_JSON.encode(record)
    try:
        data = text.encode()
    except UnicodeEncodeError as exc:
        raise InputError(
            f"record '{record.get('id', '?')}' holds text that is not valid Unicode (lone surrogate U+{ord(text[exc.start]):04X})"
        ) from exc
    return hashlib.sha256(data).hexdigest()


def to_blob(vec: np.ndarray) -> bytes:
    return np.asarray(vec, dtype=np.float32).tobytes()


def from_blob(blob: bytes, dim: int) -> np.ndarray:
    arr = np.frombuffer(blob, dtype=np.float32)
    if arr.shape[0] != dim:
        raise StorageError(f"stored vector has {arr.shape[0]} values, expected {dim}")
    return arr
