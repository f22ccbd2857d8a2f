"""Typed records of the federation's collections, each with one accessor, declared once here
(the style of `factbridge.workflow.records`):

- `federation_partners` (federation.partners, the registry): `Partner`, through `PartnerRecords`;
- `federation_feed` (our signed feed, federation.feed): `FeedItem`, through `FeedItems`;
- `federation_feed_head` (its last sequence number): `FeedHead`, through `FeedHeads`;
- `federation_outbox` (per published case, narrative, alert or link: what was last put in the
  feed): `OutboxMark`, through `OutboxMarks`;
- `federation_inbox` (every item received, accepted or refused): `InboxRecord`, through `InboxRecords`;
- `federation_items` (per partner item: the version we hold): `HeldItem`, through `HeldItems`;
- `federation_sync` (per partner: cursor, counts, refusals): `SyncState`, through `SyncStates`;
- `federation_pushes` (per partner: the last push): `PushOutcome`, through `PushOutcomes`;
- `federation_narratives` (a partner's narratives): `PartnerNarrative`, through `PartnerNarratives`;
- `federation_links` (a partner's link-risk verdicts): `PartnerLink`, through `PartnerLinks`;
- `federation_consensus` (two desks' verdicts on one claim): `ConsensusMark`, through `ConsensusMarks`.

`federation_keys` (key rotation and revocation) and `federation_sent` (deliveries to a partner)
name audited objects only: the keys live in the data folder (federation.identity) and a
delivery is its audit entry; no document is stored under those names.

Writers build the record and store `to_doc()`; readers call the accessor and use fields. Writes
that are audited go through `AuditLog.append(records=...)`, so those accessors give the rows
(`rows`) rather than writing them. `to_doc(from_doc(d)) == d` for every stored document: a key
the document lacks is not invented, so stored documents, the audit log's record of them and the
signed items (canonical JSON of the same content) are the same as before records existed.
What a partner signed (an item's payload, a narrative's or link verdict's fields) is kept as
the partner sent it (`payload`), with typed properties over it.

`Partner`, `SyncState` and `PushOutcome` can also be read as their documents
(`partner["keys"]`, `partner | {"accept": [...]}`): for scripts and tests written against the
documents; code in the package reads the fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from factbridge.backends.storage.base import Rows, Storage, iter_docs
from factbridge.docfields import integer as _int
from factbridge.docfields import mapping as _dict
from factbridge.docfields import opt_text as _opt
from factbridge.docfields import text as _str
from factbridge.docfields import texts as _strs

PARTNERS = "federation_partners"
FEED = "federation_feed"
FEED_HEAD = "federation_feed_head"
FEED_STATE = "federation_outbox"
INBOX = "federation_inbox"
ITEMS = "federation_items"
SYNC = "federation_sync"
PUSHES = "federation_pushes"
PARTNER_NARRATIVES = "federation_narratives"
PARTNER_LINKS = "federation_links"
CONSENSUS = "federation_consensus"
KEYS = "federation_keys"  # audit object name only
SENT = "federation_sent"  # audit object name only

COLLECTIONS = (PARTNERS, FEED, FEED_HEAD, FEED_STATE, INBOX, ITEMS, SYNC, PUSHES, PARTNER_NARRATIVES, PARTNER_LINKS, CONSENSUS)


class DocView:
    """A record read as its stored document (`record["field"]`); see the module docstring."""

    def to_doc(self) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self.to_doc()[key]


# --------------------------------------------------------------------------- partners


@dataclass(frozen=True)
class Partner(DocView):
    """A partner desk (key: our name for it). `keys` is its key ring as `federation.identity.KeyRing`
    keeps it (key id -> {public_key, status, ...}); `send`/`accept` are kinds of item."""

    name: str
    url: str
    org: str
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    send: list[str] = field(default_factory=list)
    accept: list[str] = field(default_factory=list)
    push: bool = False
    active: bool = True
    added_at: str = ""
    removed_at: str | None = None

    def with_(self, **changes: Any) -> Partner:
        return dataclasses.replace(self, **changes)

    def __or__(self, changes: Mapping[str, Any]) -> Partner:
        return Partner.from_doc(self.name, self.to_doc() | dict(changes))

    def to_doc(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "org": self.org, "keys": {k: dict(v) for k, v in self.keys.items()},
                "send": list(self.send), "accept": list(self.accept), "push": self.push, "active": self.active,
                "added_at": self.added_at, "removed_at": self.removed_at}

    @classmethod
    def from_doc(cls, name: str, doc: Mapping[str, Any]) -> Partner:
        keys = doc.get("keys")
        return cls(name=_str(doc.get("name") or name), url=_str(doc.get("url")), org=_str(doc.get("org")),
                   keys={str(k): dict(v) for k, v in keys.items() if isinstance(v, Mapping)} if isinstance(keys, Mapping) else {},
                   send=_strs(doc.get("send")), accept=_strs(doc.get("accept")), push=bool(doc.get("push")),
                   active=bool(doc.get("active")), added_at=_str(doc.get("added_at")), removed_at=_opt(doc.get("removed_at")))


class PartnerRecords:
    """The one accessor of `federation_partners` (writes: `Partners.save`, with its audit entry)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, org: str, names: Sequence[str]) -> dict[str, Partner]:
        docs = self.storage.get_docs(org, PARTNERS, list(names)) if names else {}
        return {n: Partner.from_doc(n, d) for n, d in docs.items()}

    def iter(self, org: str) -> Iterator[Partner]:
        """By name."""
        for name, doc in iter_docs(self.storage, org, PARTNERS):
            yield Partner.from_doc(name, doc)

    @staticmethod
    def rows(partners: Sequence[Partner]) -> Rows:
        return [(p.name, p.to_doc(), None) for p in partners]


# --------------------------------------------------------------------------- our feed


def feed_key(seq: int) -> str:
    return f"{seq:012d}"


@dataclass(frozen=True)
class FeedItem:
    """A signed item of our feed (key: the zero-padded `seq`), exactly as it is served; every
    field but `signature` is signed (canonical JSON of `body()`). `payload`, `provenance` and
    `proof` keep the shapes the item's kind gives them (see federation.feed)."""

    format: str
    org: str
    seq: int
    kind: str
    item_id: str
    issued_at: str
    licence: str
    payload: dict[str, Any]
    provenance: dict[str, Any]
    proof: dict[str, Any] | None
    key_id: str
    signature: str = ""

    def body(self) -> dict[str, Any]:
        """What is signed."""
        return {"format": self.format, "org": self.org, "seq": self.seq, "kind": self.kind, "item_id": self.item_id,
                "issued_at": self.issued_at, "licence": self.licence, "payload": self.payload, "provenance": self.provenance,
                "proof": self.proof, "key_id": self.key_id}

    def to_doc(self) -> dict[str, Any]:
        return self.body() | {"signature": self.signature}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> FeedItem:
        proof = doc.get("proof")
        return cls(format=_str(doc.get("format")), org=_str(doc.get("org")), seq=_int(doc.get("seq")), kind=_str(doc.get("kind")),
                   item_id=_str(doc.get("item_id")), issued_at=_str(doc.get("issued_at")), licence=_str(doc.get("licence")),
                   payload=_dict(doc.get("payload")), provenance=_dict(doc.get("provenance")),
                   proof=dict(proof) if isinstance(proof, Mapping) else None, key_id=_str(doc.get("key_id")),
                   signature=_str(doc.get("signature")))


class FeedItems:
    """The one accessor of `federation_feed` (writes: `Outbox`, each item with its audit entry)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def page(self, org: str, offset: int, limit: int) -> list[FeedItem]:
        """Oldest first; sequence numbers are contiguous from 1, so offset = seq - 1."""
        return [FeedItem.from_doc(d) for _, d in self.storage.list_docs(org, FEED, limit=limit, offset=offset, order="sort_asc")]

    def iter(self, org: str) -> Iterator[FeedItem]:
        """Oldest first."""
        for _, doc in iter_docs(self.storage, org, FEED, order="sort_asc"):
            yield FeedItem.from_doc(doc)

    @staticmethod
    def rows(items: Sequence[FeedItem]) -> Rows:
        return [(feed_key(i.seq), i.to_doc(), float(i.seq)) for i in items]


@dataclass(frozen=True)
class FeedHead:
    """The last sequence number of our feed (one document, key "head")."""

    seq: int

    def to_doc(self) -> dict[str, Any]:
        return {"seq": self.seq}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> FeedHead:
        return cls(seq=_int(doc.get("seq")))


class FeedHeads:
    """The one accessor of `federation_feed_head`."""

    KEY = "head"

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, org: str) -> FeedHead:
        doc = self.storage.get_docs(org, FEED_HEAD, [self.KEY]).get(self.KEY)
        return FeedHead.from_doc(doc) if doc is not None else FeedHead(seq=0)

    def rows(self, head: FeedHead) -> Rows:
        return [(self.KEY, head.to_doc(), None)]


@dataclass(frozen=True)
class OutboxMark:
    """What we last put in the feed about one thing (key: a published case's id, or
    "narrative:<id>", "alert:<id>", "linkrisk:<id>"): its sequence number, and what tells a
    change: the snapshot's SHA-256 (a case), size and claim references (a narrative), kind (an
    alert). Only the fields of its kind are stored."""

    key: str
    seq: int
    sha: str | None = None
    size: int | None = None
    claims: list[dict[str, Any]] | None = None
    kind: str | None = None

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.sha is not None:
            doc["sha"] = self.sha
        if self.size is not None:
            doc["size"] = self.size
        if self.claims is not None:
            doc["claims"] = [dict(c) for c in self.claims]
        if self.kind is not None:
            doc["kind"] = self.kind
        doc["seq"] = self.seq
        return doc

    @classmethod
    def from_doc(cls, key: str, doc: Mapping[str, Any]) -> OutboxMark:
        claims, size = doc.get("claims"), doc.get("size")
        return cls(key=key, seq=_int(doc.get("seq")), sha=_opt(doc.get("sha")), size=_int(size) if size is not None else None,
                   claims=[dict(c) for c in claims if isinstance(c, Mapping)] if isinstance(claims, list) else None,
                   kind=_opt(doc.get("kind")))


class OutboxMarks:
    """The one accessor of `federation_outbox` (writes: `Outbox`, with each item)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def all(self, org: str) -> dict[str, OutboxMark]:
        return {k: OutboxMark.from_doc(k, d) for k, d in iter_docs(self.storage, org, FEED_STATE)}

    @staticmethod
    def rows(marks: Sequence[OutboxMark]) -> Rows:
        return [(m.key, m.to_doc(), None) for m in marks]


# --------------------------------------------------------------------------- what partners send us


@dataclass(frozen=True)
class InboxRecord:
    """An item received from a partner (key: "<partner>/<seq, zero-padded>", or
    "<partner>/malformed-<sha>"): accepted, or refused with the reason. `seq`, `kind` and
    `key_id` are as the item gave them (anything, for a malformed item)."""

    key: str
    partner: str
    seq: Any
    kind: Any
    item_id: str
    key_id: Any
    received_at: str
    status: str
    reason: str | None
    content_sha256: str | None

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    def to_doc(self) -> dict[str, Any]:
        return {"partner": self.partner, "seq": self.seq, "kind": self.kind, "item_id": self.item_id, "key_id": self.key_id,
                "received_at": self.received_at, "status": self.status, "reason": self.reason, "content_sha256": self.content_sha256}

    @classmethod
    def from_doc(cls, key: str, doc: Mapping[str, Any]) -> InboxRecord:
        return cls(key=key, partner=_str(doc.get("partner")), seq=doc.get("seq"), kind=doc.get("kind"), item_id=_str(doc.get("item_id")),
                   key_id=doc.get("key_id"), received_at=_str(doc.get("received_at")), status=_str(doc.get("status")),
                   reason=_opt(doc.get("reason")), content_sha256=_opt(doc.get("content_sha256")))


class InboxRecords:
    """The one accessor of `federation_inbox` (writes: the sync, each with its audit entry)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def iter(self, org: str) -> Iterator[InboxRecord]:
        for key, doc in iter_docs(self.storage, org, INBOX):
            yield InboxRecord.from_doc(key, doc)

    @staticmethod
    def rows(records: Sequence[InboxRecord]) -> Rows:
        return [(r.key, r.to_doc(), None) for r in records]


@dataclass(frozen=True)
class HeldItem:
    """The version we hold of a partner's item (key: `federation.sync.items_key`): a fact-check
    (`factcheck_id`: our library id, stored for verdict kinds only), narrative, alert or link
    verdict; `flag` says why it is no longer trusted (its key was revoked)."""

    key: str
    partner: str
    item_id: str
    seq: int
    key_id: str
    kind: str
    flag: str | None = None
    factcheck_id: str | None = None

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"partner": self.partner, "item_id": self.item_id, "seq": self.seq, "key_id": self.key_id}
        if self.factcheck_id is not None:
            doc["factcheck_id"] = self.factcheck_id
        doc.update(kind=self.kind, flag=self.flag)
        return doc

    @classmethod
    def from_doc(cls, key: str, doc: Mapping[str, Any]) -> HeldItem:
        return cls(key=key, partner=_str(doc.get("partner")), item_id=_str(doc.get("item_id")), seq=_int(doc.get("seq")),
                   key_id=_str(doc.get("key_id")), kind=_str(doc.get("kind")), flag=_opt(doc.get("flag")),
                   factcheck_id=_opt(doc.get("factcheck_id")))


class HeldItems:
    """The one accessor of `federation_items` (writes: the sync, with its audit entries)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, org: str, keys: Sequence[str]) -> dict[str, HeldItem]:
        docs = self.storage.get_docs(org, ITEMS, list(keys)) if keys else {}
        return {k: HeldItem.from_doc(k, d) for k, d in docs.items()}

    def iter(self, org: str) -> Iterator[HeldItem]:
        for key, doc in iter_docs(self.storage, org, ITEMS):
            yield HeldItem.from_doc(key, doc)

    @staticmethod
    def rows(items: Sequence[HeldItem]) -> Rows:
        return [(i.key, i.to_doc(), None) for i in items]


@dataclass(frozen=True)
class SyncCounts:
    accepted: int = 0
    refused: int = 0
    replayed: int = 0
    stale: int = 0

    def add(self, name: str) -> SyncCounts:
        """One more `name` (accepted, refused, replayed or stale)."""
        return dataclasses.replace(self, **{name: getattr(self, name) + 1})

    def to_doc(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "refused": self.refused, "replayed": self.replayed, "stale": self.stale}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> SyncCounts:
        return cls(accepted=_int(doc.get("accepted")), refused=_int(doc.get("refused")), replayed=_int(doc.get("replayed")),
                   stale=_int(doc.get("stale")))


@dataclass(frozen=True)
class Refusal:
    """An item refused, with the reason (`seq` as the item gave it)."""

    seq: Any
    item_id: str
    reason: str
    at: str

    def to_doc(self) -> dict[str, Any]:
        return {"seq": self.seq, "item_id": self.item_id, "reason": self.reason, "at": self.at}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Refusal:
        return cls(seq=doc.get("seq"), item_id=_str(doc.get("item_id")), reason=_str(doc.get("reason")), at=_str(doc.get("at")))


@dataclass(frozen=True)
class SyncState(DocView):
    """Our pull of one partner's feed (key: the partner's name): the cursor (the last sequence
    number read), when we last tried and succeeded, counts, the latest refusals, and the fact-checks
    accepted but not yet re-checked (`pending_recheck`, stored once a page was taken in)."""

    partner: str
    cursor: int = 0
    last_sync: str | None = None
    last_attempt: str | None = None
    last_error: str | None = None
    counts: SyncCounts = field(default_factory=SyncCounts)
    refusals: list[Refusal] = field(default_factory=list)
    pending_recheck: list[str] | None = None

    def with_(self, **changes: Any) -> SyncState:
        return dataclasses.replace(self, **changes)

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"cursor": self.cursor, "last_sync": self.last_sync, "last_attempt": self.last_attempt,
                               "last_error": self.last_error, "counts": self.counts.to_doc(), "refusals": [r.to_doc() for r in self.refusals]}
        if self.pending_recheck is not None:
            doc["pending_recheck"] = list(self.pending_recheck)
        return doc

    @classmethod
    def from_doc(cls, partner: str, doc: Mapping[str, Any]) -> SyncState:
        pending = doc.get("pending_recheck")
        return cls(partner=partner, cursor=_int(doc.get("cursor")), last_sync=_opt(doc.get("last_sync")),
                   last_attempt=_opt(doc.get("last_attempt")), last_error=_opt(doc.get("last_error")),
                   counts=SyncCounts.from_doc(_dict(doc.get("counts"))),
                   refusals=[Refusal.from_doc(r) for r in doc.get("refusals") or [] if isinstance(r, Mapping)],
                   pending_recheck=_strs(pending) if pending is not None else None)


class SyncStates:
    """The one accessor of `federation_sync` (not audited: the sync's own bookkeeping)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, org: str, partner: str) -> SyncState:
        """The state of our pull of `partner` (a fresh one when never synced)."""
        doc = self.storage.get_docs(org, SYNC, [partner]).get(partner)
        return SyncState.from_doc(partner, doc) if doc is not None else SyncState(partner=partner)

    def put(self, org: str, state: SyncState) -> None:
        self.storage.put_docs(org, SYNC, [(state.partner, state.to_doc(), None)])


@dataclass(frozen=True)
class PushOutcome(DocView):
    """Our last push to a partner (key: its name): the feed head pushed, when, the HTTP status
    (None: unreachable) and, when it failed, the error."""

    partner: str
    head: int
    at: str
    status: int | None = None
    error: str | None = None

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"partner": self.partner, "head": self.head, "at": self.at, "status": self.status}
        if self.error is not None:
            doc["error"] = self.error
        return doc

    @classmethod
    def from_doc(cls, partner: str, doc: Mapping[str, Any]) -> PushOutcome:
        status = doc.get("status")
        return cls(partner=_str(doc.get("partner") or partner), head=_int(doc.get("head")), at=_str(doc.get("at")),
                   status=_int(status) if status is not None else None, error=_opt(doc.get("error")))


class PushOutcomes:
    """The one accessor of `federation_pushes`."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, org: str, partners: Sequence[str]) -> dict[str, PushOutcome]:
        docs = self.storage.get_docs(org, PUSHES, list(partners)) if partners else {}
        return {p: PushOutcome.from_doc(p, d) for p, d in docs.items()}

    def put(self, org: str, outcome: PushOutcome) -> None:
        self.storage.put_docs(org, PUSHES, [(outcome.partner, outcome.to_doc(), None)])


# --------------------------------------------------------------------------- a partner's narratives and link verdicts

RECEIPT = ("partner", "desk", "seq", "key_id", "received_at")


@dataclass(frozen=True)
class _Received:
    """A partner's signed payload as it sent it, with our receipt (who, which item, when)."""

    key: str
    payload: dict[str, Any]
    partner: str
    desk: str
    seq: int
    key_id: str
    received_at: str

    def to_doc(self) -> dict[str, Any]:
        return self.payload | {"partner": self.partner, "desk": self.desk, "seq": self.seq, "key_id": self.key_id,
                               "received_at": self.received_at}

    @classmethod
    def _parts(cls, key: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        return {"key": key, "payload": {k: v for k, v in doc.items() if k not in RECEIPT}, "partner": _str(doc.get("partner")),
                "desk": _str(doc.get("desk")), "seq": _int(doc.get("seq")), "key_id": _str(doc.get("key_id")),
                "received_at": _str(doc.get("received_at"))}

    @property
    def claims(self) -> list[dict[str, Any]]:
        """Claim references (see federation.crossborder)."""
        claims = self.payload.get("claims")
        return [dict(c) for c in claims if isinstance(c, Mapping)] if isinstance(claims, list) else []


@dataclass(frozen=True)
class PartnerNarrative(_Received):
    """A partner's narrative (key: "<partner>/<narrative id>"); its payload as federation.crossborder
    shares ours: narrative_id, label, top_terms, size, languages, first/last seen,
    representative_text, claims, decided_by."""

    @property
    def narrative_id(self) -> str:
        return _str(self.payload.get("narrative_id"))

    @property
    def label(self) -> str:
        return _str(self.payload.get("label"))

    @property
    def representative_text(self) -> str:
        return _str(self.payload.get("representative_text"))

    def summary(self) -> dict[str, Any]:
        """What a cross-border alert quotes of it."""
        return {k: self.payload.get(k) for k in ("narrative_id", "label", "size", "languages", "first_seen", "last_seen")}

    @classmethod
    def from_doc(cls, key: str, doc: Mapping[str, Any]) -> PartnerNarrative:
        return cls(**cls._parts(key, doc))


class PartnerNarratives:
    """The one accessor of `federation_narratives` (writes: the sync, with its audit entries)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, org: str, keys: Sequence[str]) -> dict[str, PartnerNarrative]:
        docs = self.storage.get_docs(org, PARTNER_NARRATIVES, list(keys)) if keys else {}
        return {k: PartnerNarrative.from_doc(k, d) for k, d in docs.items()}

    def iter(self, org: str) -> Iterator[PartnerNarrative]:
        for key, doc in iter_docs(self.storage, org, PARTNER_NARRATIVES):
            yield PartnerNarrative.from_doc(key, doc)

    @staticmethod
    def rows(narratives: Sequence[PartnerNarrative]) -> Rows:
        return [(n.key, n.to_doc(), None) for n in narratives]


@dataclass(frozen=True)
class PartnerLink(_Received):
    """A partner's link-risk verdict (key: "<partner>/<link id>"); its payload as
    federation.linkrisk shares ours: link_id, url, host, registered_domain, score (per mille),
    level, reasons, decided_by."""

    @property
    def url(self) -> str:
        return _str(self.payload.get("url"))

    @property
    def reasons(self) -> list[dict[str, Any]]:
        reasons = self.payload.get("reasons")
        return [dict(r) for r in reasons if isinstance(r, Mapping)] if isinstance(reasons, list) else []

    @classmethod
    def from_doc(cls, key: str, doc: Mapping[str, Any]) -> PartnerLink:
        return cls(**cls._parts(key, doc))


class PartnerLinks:
    """The one accessor of `federation_links` (writes: the sync, with its audit entries)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def iter(self, org: str) -> Iterator[PartnerLink]:
        for key, doc in iter_docs(self.storage, org, PARTNER_LINKS):
            yield PartnerLink.from_doc(key, doc)

    @staticmethod
    def rows(links: Sequence[PartnerLink]) -> Rows:
        return [(link.key, link.to_doc(), None) for link in links]


# --------------------------------------------------------------------------- consensus


@dataclass(frozen=True)
class ConsensusMark:
    """A partner's fact-check and an independent verdict on the same claim (key:
    "<partner fact-check id>|<other fact-check id>"), and whether they agree."""

    partner_factcheck: str
    other_factcheck: str
    other_desk: str
    partner_rating: str
    other_rating: str
    agree: bool
    fused_score: float
    decided_by: str
    at: str

    @property
    def key(self) -> str:
        return f"{self.partner_factcheck}|{self.other_factcheck}"

    def to_doc(self) -> dict[str, Any]:
        return {"partner_factcheck": self.partner_factcheck, "other_factcheck": self.other_factcheck, "other_desk": self.other_desk,
                "partner_rating": self.partner_rating, "other_rating": self.other_rating, "agree": self.agree,
                "fused_score": self.fused_score, "decided_by": self.decided_by, "at": self.at}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ConsensusMark:
        score = doc.get("fused_score")
        return cls(partner_factcheck=_str(doc.get("partner_factcheck")), other_factcheck=_str(doc.get("other_factcheck")),
                   other_desk=_str(doc.get("other_desk")), partner_rating=_str(doc.get("partner_rating")),
                   other_rating=_str(doc.get("other_rating")), agree=bool(doc.get("agree")),
                   fused_score=float(score) if isinstance(score, int | float) else 0.0, decided_by=_str(doc.get("decided_by")),
                   at=_str(doc.get("at")))


class ConsensusMarks:
    """The one accessor of `federation_consensus`."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def put(self, org: str, marks: Sequence[ConsensusMark]) -> None:
        if marks:
            self.storage.put_docs(org, CONSENSUS, [(m.key, m.to_doc(), None) for m in marks])

    def iter(self, org: str) -> Iterator[ConsensusMark]:
        for _, doc in iter_docs(self.storage, org, CONSENSUS):
            yield ConsensusMark.from_doc(doc)
