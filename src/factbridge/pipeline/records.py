"""Typed records of the collections that several modules read, each with one accessor,
declared once here: readers use the fields the writing stage stores, never guesses.

- `narrative_members` (written by the narratives stage): `NarrativeMembership`, read
  through `NarrativeMembers`;
- `queue` (written by the triage stage): `QueueEntry`, read and written through
  `TriageQueue` (pages, API, CLI and triage itself);
- `alerts` (written by the bursts stage, cross-border detection and partner sync):
  `Alert`, through `Alerts`;
- `alert_deliveries` (the webhook dispatcher of `pipeline.alerts`): `AlertDelivery` of
  `DeliveryAttempt`s, through `AlertDeliveries`;
- `narrative_bursts` (the bursts stage's last burst per narrative): `BurstState`, through `BurstStates`;
- `queue_failures` (the worker of `pipeline.work`): `QueueFailure`, through `QueueFailures`;
- `narrative_coordination` (the coordination stage): `NarrativeCoordination` of
  `CoordinatedAccount`s and `CoordinatedNetwork`s, through `NarrativeCoordinations`;
- `narratives` and `topics` (written by the narratives stage): `NarrativeRecord` and
  `TopicRecord` (the fields readers use; the stage keeps its working state beside them),
  through `Narratives`;
- `triage_members` (the triage stage): `NarrativeMemberFacts` of `MemberFacts`, through
  `TriageMembers`;
- `checkworthiness` (the check-worthiness stage): `CheckworthinessRecord`, through
  `CheckworthinessScores`;
- `linkrisk` (the link-risk stage): `LinkRiskRecord` of `LinkRiskUrl`s, through `LinkRisks`.

Writers build the record and store `to_doc()`; readers call the accessor. `from_doc`
fills a field the document lacks (an older document) with its empty value; it never
looks a field up under another name.

The stage ledger has its own module (`factbridge.pipeline.ledger`).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from factbridge.backends.storage.base import Expect, Storage, iter_docs
from factbridge.docfields import counts as _counts
from factbridge.docfields import mapping as _dict
from factbridge.docfields import nonempty_text as _opt_str
from factbridge.docfields import number as _float
from factbridge.docfields import text as _str
from factbridge.docfields import texts as _strs
from factbridge.errors import PreconditionFailed

MEMBERS = "narrative_members"
QUEUE = "queue"


@dataclass(frozen=True)
class NarrativeMembership:
    """Why a post joined its narrative. `minhash` (the post's text signature) and `dhash`
    (its images' hashes) are the stage's own: it rebuilds its near-duplicate index from them."""

    post_id: str
    narrative_id: str
    method: str = ""
    similarity: float | None = None
    neighbour: str | None = None
    time: str = ""
    language: str | None = None
    decided_by: str = ""
    dhash: list[Any] | None = None
    minhash: str | None = None

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"post_id": self.post_id, "narrative_id": self.narrative_id, "method": self.method, "similarity": self.similarity,
                               "neighbour": self.neighbour, "time": self.time, "language": self.language, "decided_by": self.decided_by}
        if self.dhash is not None:
            doc["dhash"] = list(self.dhash)
        if self.minhash is not None:
            doc["minhash"] = self.minhash
        return doc

    @classmethod
    def from_doc(cls, post_id: str, doc: Mapping[str, Any]) -> NarrativeMembership:
        similarity = doc.get("similarity")
        neighbour, language, dhash, sig = doc.get("neighbour"), doc.get("language"), doc.get("dhash"), doc.get("minhash")
        return cls(
            post_id=str(doc.get("post_id") or post_id), narrative_id=str(doc.get("narrative_id") or ""), method=str(doc.get("method") or ""),
            similarity=float(similarity) if isinstance(similarity, int | float) else None,
            neighbour=str(neighbour) if neighbour is not None else None, time=str(doc.get("time") or ""),
            language=str(language) if language is not None else None, decided_by=str(doc.get("decided_by") or ""),
            dhash=list(dhash) if isinstance(dhash, list) else None, minhash=str(sig) if sig else None,
        )


class NarrativeMembers:
    """The one accessor of `narrative_members` (one document per post)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, org: str, post_ids: Sequence[str]) -> dict[str, NarrativeMembership]:
        docs = self.storage.get_docs(org, MEMBERS, list(post_ids)) if post_ids else {}
        found = {pid: NarrativeMembership.from_doc(pid, doc) for pid, doc in docs.items()}
        return {pid: m for pid, m in found.items() if m.narrative_id}

    def count(self, org: str) -> int:
        return self.storage.count_docs(org, MEMBERS)

    @staticmethod
    def rows(members: Sequence[tuple[NarrativeMembership, float | None]]) -> tuple[str, list[tuple[str, dict[str, Any], float | None]]]:
        """The (collection, rows) write for `put_docs_batch` (the stage writes a batch's
        memberships in the transaction of its narratives)."""
        return MEMBERS, [(m.post_id, m.to_doc(), sort) for m, sort in members]

    def all(self, org: str) -> list[NarrativeMembership]:
        """Every membership, by post id (for evaluations on small stores)."""
        return [m for m in (NarrativeMembership.from_doc(i, d) for i, d in iter_docs(self.storage, org, MEMBERS)) if m.narrative_id]


@dataclass(frozen=True)
class Component:
    value: float
    weight: float | None = None
    contribution: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return {"value": self.value, "weight": self.weight, "contribution": self.contribution, "evidence": self.evidence}

    @classmethod
    def from_doc(cls, doc: Any) -> Component:
        if isinstance(doc, Mapping):
            return cls(_float(doc.get("value")) or 0.0, _float(doc.get("weight")), _float(doc.get("contribution")), dict(doc.get("evidence") or {}))
        return cls(_float(doc) or 0.0)


@dataclass(frozen=True)
class QueueEntry:
    """A triage queue entry: a post (id = post id) or a narrative (id = "narrative:<id>")."""

    id: str
    kind: Literal["post", "narrative"]
    priority: float
    components: dict[str, Component] = field(default_factory=dict)
    decided_by: dict[str, str] = field(default_factory=dict)
    gated: bool = False
    gate_reason: str | None = None
    updated_at: str = ""
    post_id: str | None = None
    narrative_id: str | None = None
    title: str = ""
    text: str = ""
    language: str | None = None
    platform: str = ""
    created_at: str | None = None
    narratives: list[str] = field(default_factory=list)  # a post's narratives
    post_ids: list[str] = field(default_factory=list)  # a narrative's members (first 50)

    @property
    def sort_key(self) -> float:
        """Gated entries sort below every ungated one (priorities live in [0, 1])."""
        return self.priority - 1.0 if self.gated else self.priority

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "kind": self.kind, "priority": self.priority, "gated": self.gated, "gate_reason": self.gate_reason,
            "components": {name: c.to_doc() for name, c in self.components.items()}, "decided_by": dict(self.decided_by),
            "updated_at": self.updated_at, "text": self.text,
        }
        if self.kind == "post":
            doc.update(post_id=self.post_id, language=self.language, platform=self.platform, created_at=self.created_at, narratives=list(self.narratives))
        else:
            doc.update(narrative_id=self.narrative_id, title=self.title, post_ids=list(self.post_ids))
        return doc

    @classmethod
    def from_doc(cls, entry_id: str, doc: Mapping[str, Any]) -> QueueEntry:
        kind: Literal["post", "narrative"] = "narrative" if doc.get("kind") == "narrative" or entry_id.startswith("narrative:") else "post"
        decided = doc.get("decided_by")
        decided_by = {str(k): str(v) for k, v in decided.items()} if isinstance(decided, Mapping) else ({"triage": str(decided)} if decided else {})
        components = doc.get("components")
        return cls(
            id=entry_id, kind=kind, priority=_float(doc.get("priority")) or 0.0,
            components={str(k): Component.from_doc(v) for k, v in components.items()} if isinstance(components, Mapping) else {},
            decided_by=decided_by, gated=bool(doc.get("gated")), gate_reason=str(doc["gate_reason"]) if doc.get("gate_reason") else None,
            updated_at=str(doc.get("updated_at") or ""),
            post_id=str(doc.get("post_id") or entry_id) if kind == "post" else None,
            narrative_id=str(doc.get("narrative_id") or entry_id.removeprefix("narrative:")) if kind == "narrative" else None,
            title=str(doc.get("title") or ""), text=str(doc.get("text") or ""),
            language=str(doc["language"]) if doc.get("language") else None, platform=str(doc.get("platform") or ""),
            created_at=str(doc["created_at"]) if doc.get("created_at") else None,
            narratives=[str(n) for n in doc.get("narratives") or []], post_ids=[str(p) for p in doc.get("post_ids") or []],
        )


class TriageQueue:
    """The one accessor of the `queue` collection."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def put(self, org: str, entries: Sequence[QueueEntry]) -> None:
        if entries:
            self.storage.put_docs(org, *self.rows(entries))

    @staticmethod
    def rows(entries: Sequence[QueueEntry]) -> tuple[str, list[tuple[str, dict[str, Any], float | None]]]:
        """The (collection, rows) write for `put_docs_batch` (triage writes its narratives'
        member summaries in the same transaction)."""
        return QUEUE, [(e.id, e.to_doc(), e.sort_key) for e in entries]

    def get(self, org: str, ids: Sequence[str]) -> dict[str, QueueEntry]:
        docs = self.storage.get_docs(org, QUEUE, list(ids)) if ids else {}
        return {i: QueueEntry.from_doc(i, d) for i, d in docs.items()}

    def documents(self, org: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored documents of these entries as they are, for a reader of a few fields of
        many entries (triage reads its narratives' members: building every `QueueEntry` costs
        more than the read)."""
        return self.storage.get_docs(org, QUEUE, list(ids)) if ids else {}

    def count(self, org: str) -> int:
        return self.storage.count_docs(org, QUEUE)

    def top(self, org: str, limit: int = 20, kind: str = "all") -> list[QueueEntry]:
        """Highest priority first (gated entries last); `kind`: all, post or narrative."""
        out: list[QueueEntry] = []
        offset = 0
        page = max(limit, 100)
        while len(out) < limit:
            rows = self.storage.list_docs(org, QUEUE, limit=page, offset=offset, order="sort_desc")
            out.extend(e for e in (QueueEntry.from_doc(i, d) for i, d in rows) if kind == "all" or e.kind == kind)
            if len(rows) < page:
                break
            offset += len(rows)
        return out[:limit]


# --------------------------------------------------------------------------- triage's narrative members

TRIAGE_MEMBERS = "triage_members"


@dataclass(frozen=True)
class MemberFacts:
    """What a narrative's queue entry reads of one member post (triage): its check-worthiness
    (score, claim label, the gate, decided_by), weighted engagement, best debunk (value and
    evidence), risk, and its time (`stamp`: whole microseconds since the epoch). `exact`:
    the score is the stored probability, not the 4-place value of a queue entry."""

    post_id: str
    stamp: int | None
    score: float
    claim: bool
    gated: bool
    decided_by: str
    engagement: float
    debunked: float
    debunk: dict[str, Any] = field(default_factory=dict)
    risk: float = 0.0
    exact: bool = True

    def to_row(self) -> list[Any]:
        return [self.score, self.exact, self.claim, self.gated, self.decided_by, self.engagement, self.debunked, self.debunk, self.risk, self.stamp]

    @classmethod
    def from_row(cls, post_id: str, row: Any) -> MemberFacts | None:
        """None for a row of another shape (the member is then read from its queue entry)."""
        if not isinstance(row, list) or len(row) != 10:
            return None
        score, exact, claim, gated, decided_by, engagement, debunked, debunk, risk, stamp = row
        numbers = (score, engagement, debunked, risk)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers) or not isinstance(debunk, dict) \
                or not isinstance(decided_by, str) or not (stamp is None or type(stamp) is int):
            return None
        return cls(post_id, stamp, float(score), claim is True, gated is True, decided_by, float(engagement), float(debunked), dict(debunk),
                   float(risk), exact is True)


@dataclass(frozen=True)
class NarrativeMemberFacts:
    """Triage's summary of a narrative's members (`triage_members`, one document per
    narrative): each member's `MemberFacts` as of the member's last triage, written in the
    transaction of the queue entries. `version` changes at every write: a writer expects the
    version it read (two workers on one narrative cannot both win)."""

    narrative_id: str
    version: str
    members: dict[str, MemberFacts] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return {"version": self.version, "members": {pid: m.to_row() for pid, m in self.members.items()}}

    @classmethod
    def from_doc(cls, narrative_id: str, doc: Mapping[str, Any]) -> NarrativeMemberFacts:
        rows = doc.get("members")
        members = {str(pid): m for pid, m in ((pid, MemberFacts.from_row(str(pid), row)) for pid, row in (rows.items() if isinstance(rows, Mapping) else ()))
                   if m is not None}
        return cls(narrative_id, _str(doc.get("version")), members)


class TriageMembers:
    """The one accessor of `triage_members`."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, org: str, narrative_ids: Sequence[str]) -> dict[str, NarrativeMemberFacts]:
        docs = self.storage.get_docs(org, TRIAGE_MEMBERS, list(narrative_ids)) if narrative_ids else {}
        return {i: NarrativeMemberFacts.from_doc(i, d) for i, d in docs.items()}

    @staticmethod
    def rows(summaries: Sequence[NarrativeMemberFacts]) -> tuple[str, list[tuple[str, dict[str, Any], float | None]]]:
        """The (collection, rows) write for `put_docs_batch` (triage writes them in the
        transaction of its queue entries)."""
        return TRIAGE_MEMBERS, [(n.narrative_id, n.to_doc(), None) for n in summaries]

    def put_with_queue(self, org: str, queue: tuple[str, list[tuple[str, dict[str, Any], float | None]]],
                       summaries: list[NarrativeMemberFacts], versions: dict[str, str], fresh: Mapping[str, MemberFacts],
                       attempts: int = 3) -> None:
        """The queue entries' write (`TriageQueue.rows`) and these summaries in one transaction,
        each summary expected at the version its run read (`versions`; absent: expected not
        stored). When another worker wrote one meanwhile, its summary is taken with this run's
        own members (`fresh`) put in, and written again; after `attempts` lost races the
        summaries are written empty (their members are read from their queue entries next
        time): a summary never keeps facts older than a member's last triage."""
        for _ in range(attempts):
            expect = [Expect(TRIAGE_MEMBERS, s.narrative_id, "version", versions[s.narrative_id]) if s.narrative_id in versions
                      else Expect(TRIAGE_MEMBERS, s.narrative_id) for s in summaries]
            try:
                self.storage.put_docs_batch(org, [queue, self.rows(summaries)] if summaries else [queue], expect=expect)
                return
            except PreconditionFailed:
                current = self.get(org, [s.narrative_id for s in summaries])
                versions = {nid: n.version for nid, n in current.items()}
                summaries = [NarrativeMemberFacts(s.narrative_id, uuid.uuid4().hex, {
                    **(current[s.narrative_id].members if s.narrative_id in current else {}),
                    **{m: f for m, f in s.members.items() if m in fresh},
                }) for s in summaries]
        self.storage.put_docs_batch(org, [queue, self.rows([NarrativeMemberFacts(s.narrative_id, uuid.uuid4().hex) for s in summaries])])


# --------------------------------------------------------------------------- alerts

ALERTS = "alerts"


@dataclass(frozen=True)
class Alert:
    """An alert: `kind` burst or resurfacing (bursts stage), cross-border (federation),
    partner (a partner desk's alert); `evidence` is the kind's own evidence."""

    id: str
    kind: str
    summary: str
    status: str = "new"
    raised_at: str = ""
    updated_at: str = ""
    narrative_id: str | None = None
    topic_id: str = ""
    top_terms: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    decided_by: str = ""
    reclassified: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # fields of a kind this record does not name

    FIELDS = ("id", "kind", "summary", "status", "raised_at", "updated_at", "narrative_id", "topic_id", "top_terms", "evidence", "decided_by", "reclassified")

    @property
    def post_ids(self) -> list[str]:
        """The posts of the burst, as its evidence lists them."""
        return [str(p["post_id"]) for p in self.evidence.get("posts", []) if isinstance(p, Mapping) and p.get("post_id")]

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            **self.extra, "id": self.id, "kind": self.kind, "narrative_id": self.narrative_id, "topic_id": self.topic_id,
            "status": self.status, "raised_at": self.raised_at, "updated_at": self.updated_at, "summary": self.summary,
            "top_terms": list(self.top_terms), "evidence": self.evidence, "decided_by": self.decided_by,
        }
        if self.reclassified:
            doc["reclassified"] = list(self.reclassified)
        return doc

    @classmethod
    def from_doc(cls, alert_id: str, doc: Mapping[str, Any]) -> Alert:
        return cls(
            id=_str(doc.get("id") or alert_id), kind=_str(doc.get("kind")) or "alert", summary=_str(doc.get("summary")),
            status=_str(doc.get("status")) or "new", raised_at=_str(doc.get("raised_at")), updated_at=_str(doc.get("updated_at")),
            narrative_id=_opt_str(doc.get("narrative_id")), topic_id=_str(doc.get("topic_id")), top_terms=_strs(doc.get("top_terms")),
            evidence=_dict(doc.get("evidence")), decided_by=_str(doc.get("decided_by")),
            reclassified=[dict(r) for r in doc.get("reclassified") or [] if isinstance(r, Mapping)],
            extra={k: v for k, v in doc.items() if k not in cls.FIELDS},
        )


class Alerts:
    """The one accessor of `alerts`."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def put(self, org: str, alerts: Sequence[tuple[Alert, float | None]]) -> None:
        if alerts:
            self.storage.put_docs(org, ALERTS, [(a.id, a.to_doc(), sort) for a, sort in alerts])

    def get(self, org: str, ids: Sequence[str]) -> dict[str, Alert]:
        docs = self.storage.get_docs(org, ALERTS, list(ids)) if ids else {}
        return {i: Alert.from_doc(i, d) for i, d in docs.items()}

    def count(self, org: str) -> int:
        return self.storage.count_docs(org, ALERTS)

    def recent(self, org: str, limit: int = 20) -> list[Alert]:
        """Most recently updated first."""
        return [Alert.from_doc(i, d) for i, d in self.storage.list_docs(org, ALERTS, limit=limit, order="updated_desc")]

    def newest(self, org: str, limit: int = 20) -> list[Alert]:
        """By their sort key (a burst's start, an event's time), newest first."""
        return [Alert.from_doc(i, d) for i, d in self.storage.list_docs(org, ALERTS, limit=limit, order="sort_desc")]


# --------------------------------------------------------------------------- alert deliveries

DELIVERIES = "alert_deliveries"


def delivery_id(event: str, url: str) -> str:
    return f"{event}|{url}"


@dataclass(frozen=True)
class DeliveryAttempt:
    attempt: int
    at: str
    ok: bool
    status: int | None
    error: str
    duration_ms: float

    def to_doc(self) -> dict[str, Any]:
        return {"attempt": self.attempt, "at": self.at, "ok": self.ok, "status": self.status, "error": self.error, "duration_ms": self.duration_ms}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> DeliveryAttempt:
        status = doc.get("status")
        return cls(attempt=int(_float(doc.get("attempt")) or 0), at=_str(doc.get("at")), ok=bool(doc.get("ok")),
                   status=int(status) if isinstance(status, int) and not isinstance(status, bool) else None,
                   error=_str(doc.get("error")), duration_ms=_float(doc.get("duration_ms")) or 0.0)


@dataclass(frozen=True)
class AlertDelivery:
    """The delivery of one alert event (its raising, or a re-classification) to one webhook URL:
    `state` pending, delivered or failed, with every attempt. `kind` (the alert's) is in the
    documents written when the delivery was submitted."""

    alert_id: str
    event: str
    url: str
    state: str = "pending"
    attempts: list[DeliveryAttempt] = field(default_factory=list)
    kind: str | None = None

    @property
    def id(self) -> str:
        return delivery_id(self.event, self.url)

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"alert_id": self.alert_id, "event": self.event}
        if self.kind is not None:
            doc["kind"] = self.kind
        doc.update(url=self.url, state=self.state, attempts=[a.to_doc() for a in self.attempts])
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> AlertDelivery:
        return cls(alert_id=_str(doc.get("alert_id")), event=_str(doc.get("event") or doc.get("alert_id")), url=_str(doc.get("url")),
                   state=_str(doc.get("state")) or "pending", attempts=[DeliveryAttempt.from_doc(a) for a in doc.get("attempts") or [] if isinstance(a, Mapping)],
                   kind=_opt_str(doc.get("kind")))


class AlertDeliveries:
    """The one accessor of `alert_deliveries` (id: `<event>|<url>`)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def put(self, org: str, deliveries: Sequence[AlertDelivery]) -> None:
        if deliveries:
            self.storage.put_docs(org, DELIVERIES, [(d.id, d.to_doc(), None) for d in deliveries])

    def get(self, org: str, ids: Sequence[str]) -> dict[str, AlertDelivery]:
        docs = self.storage.get_docs(org, DELIVERIES, list(ids)) if ids else {}
        return {i: AlertDelivery.from_doc(d) for i, d in docs.items()}

    def undelivered(self, org: str, limit: int = 10_000) -> list[AlertDelivery]:
        """Pending or failed, most recently updated first."""
        rows = self.storage.list_docs(org, DELIVERIES, limit=limit, order="updated_desc")
        return [d for d in (AlertDelivery.from_doc(doc) for _, doc in rows) if d.state != "delivered"]


# --------------------------------------------------------------------------- burst state

BURST_STATE = "narrative_bursts"


@dataclass(frozen=True)
class BurstState:
    """The last burst alerted per narrative (bins of `bursts_bin` hours), so that the same burst
    seen again in a later batch updates its alert instead of raising a new one."""

    narrative_id: str
    alert_id: str
    start_bin: int
    end_bin: int

    def to_doc(self) -> dict[str, Any]:
        return {"alert_id": self.alert_id, "start_bin": self.start_bin, "end_bin": self.end_bin}

    @classmethod
    def from_doc(cls, narrative_id: str, doc: Mapping[str, Any]) -> BurstState:
        return cls(narrative_id, _str(doc.get("alert_id")), int(_float(doc.get("start_bin")) or 0), int(_float(doc.get("end_bin")) or 0))


class BurstStates:
    """The one accessor of `narrative_bursts` (one document per narrative)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, org: str, narrative_ids: Sequence[str]) -> dict[str, BurstState]:
        docs = self.storage.get_docs(org, BURST_STATE, list(narrative_ids)) if narrative_ids else {}
        return {i: BurstState.from_doc(i, d) for i, d in docs.items()}

    def put(self, org: str, states: Sequence[BurstState]) -> None:
        if states:
            self.storage.put_docs(org, BURST_STATE, [(s.narrative_id, s.to_doc(), None) for s in states])


# --------------------------------------------------------------------------- queue failures

FAILURES = "queue_failures"


@dataclass(frozen=True)
class QueueFailure:
    """What happened to a batch that failed (`status` retrying, failed, recovered or retried),
    with its last error and the history of errors (`errors`, the last 20). A record is updated
    in place (`with_`), so its document holds only the keys some update set (`present`):
    an unreadable message has its `message` and no `skip`; a retried one gains `retried_as`."""

    batch_id: str
    status: str = ""
    org: str = ""
    post_ids: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    force: bool = False
    published_at: str | None = None
    retry_of: str | None = None
    attempts: int = 0
    error: str = ""
    message: dict[str, Any] | None = None
    worker: str = ""
    updated_at: str = ""
    retried_as: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)  # {attempt, error, worker, at}
    present: frozenset[str] = frozenset()

    FIELDS = ("status", "batch_id", "org", "post_ids", "skip", "force", "published_at", "retry_of", "attempts", "error", "message",
              "worker", "updated_at", "retried_as", "errors")

    @property
    def id(self) -> str:
        return self.batch_id

    def with_(self, **changes: Any) -> QueueFailure:
        """The record with `changes` (each then stored); an error is added to the history."""
        updated = dataclasses.replace(self, **changes, present=self.present | set(changes))
        if changes.get("error"):
            entry = {"attempt": updated.attempts, "error": updated.error, "worker": updated.worker, "at": updated.updated_at}
            updated = dataclasses.replace(updated, errors=[*self.errors, entry][-20:], present=updated.present | {"errors"})
        return dataclasses.replace(updated, present=updated.present | {"errors"})

    def to_doc(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS if name in self.present}

    @classmethod
    def from_doc(cls, batch_id: str, doc: Mapping[str, Any]) -> QueueFailure:
        message = doc.get("message")
        return cls(
            batch_id=_str(doc.get("batch_id") or batch_id), status=_str(doc.get("status")), org=_str(doc.get("org")),
            post_ids=_strs(doc.get("post_ids")), skip=_strs(doc.get("skip")), force=doc.get("force") is True,
            published_at=_opt_str(doc.get("published_at")), retry_of=_opt_str(doc.get("retry_of")),
            attempts=int(_float(doc.get("attempts")) or 0), error=_str(doc.get("error")),
            message=dict(message) if isinstance(message, Mapping) else None, worker=_str(doc.get("worker")),
            updated_at=_str(doc.get("updated_at")), retried_as=_opt_str(doc.get("retried_as")),
            errors=[dict(e) for e in doc.get("errors") or [] if isinstance(e, Mapping)],
            present=frozenset(k for k in cls.FIELDS if k in doc),
        )


class QueueFailures:
    """The one accessor of `queue_failures` (id: the batch id; sort key: last update)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, org: str, batch_ids: Sequence[str]) -> dict[str, QueueFailure]:
        docs = self.storage.get_docs(org, FAILURES, list(batch_ids)) if batch_ids else {}
        return {i: QueueFailure.from_doc(i, d) for i, d in docs.items()}

    def record(self, org: str, batch_id: str, /, **changes: Any) -> QueueFailure:
        """Create or update the batch's record with `changes` (its error joins the history)."""
        before = self.get(org, [batch_id]).get(batch_id) or QueueFailure(batch_id)
        after = before.with_(**changes)
        self.storage.put_docs(org, FAILURES, [(batch_id, after.to_doc(), time.time())])
        return after

    def latest(self, org: str, limit: int = 100, include_resolved: bool = False) -> list[QueueFailure]:
        """Newest first: the failed ones (`include_resolved`: retried and recovered ones too)."""
        # retried and recovered records stay as history; they are few next to failures' causes
        rows = self.storage.list_docs(org, FAILURES, limit=max(limit, 1) if include_resolved else 10_000, order="sort_desc")
        found = [QueueFailure.from_doc(i, d) for i, d in rows]
        return [f for f in found if include_resolved or f.status == "failed"][:limit]


# --------------------------------------------------------------------------- coordinated accounts per narrative

COORDINATION = "narrative_coordination"


@dataclass(frozen=True)
class CoordinatedAccount:
    account: str  # a pseudonymous account id
    network: str
    posts: int  # its posts in the narrative (always complete)
    post_ids: list[str] = field(default_factory=list)  # the first ones

    def to_doc(self) -> dict[str, Any]:
        return {"account": self.account, "network": self.network, "posts": self.posts, "post_ids": list(self.post_ids)}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> CoordinatedAccount:
        return cls(_str(doc.get("account")), _str(doc.get("network")), int(_float(doc.get("posts")) or 0), _strs(doc.get("post_ids")))


@dataclass(frozen=True)
class CoordinatedNetwork:
    id: str
    size: int
    accounts_here: int
    shared_objects: list[dict[str, Any]] = field(default_factory=list)  # {object, accounts, ...}: the first five
    first_share: Any = None
    last_share: Any = None

    def to_doc(self) -> dict[str, Any]:
        return {"id": self.id, "size": self.size, "accounts_here": self.accounts_here, "shared_objects": list(self.shared_objects),
                "first_share": self.first_share, "last_share": self.last_share}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> CoordinatedNetwork:
        return cls(_str(doc.get("id")), int(_float(doc.get("size")) or 0), int(_float(doc.get("accounts_here")) or 0),
                   [dict(o) for o in doc.get("shared_objects") or [] if isinstance(o, Mapping)], doc.get("first_share"), doc.get("last_share"))


@dataclass(frozen=True)
class NarrativeCoordination:
    """The coordinated accounts that posted in a narrative (those of a network with at least
    two of its accounts there), written by the coordination stage; a narrative an earlier run
    linked and the latest does not gets an empty record (documents are never deleted)."""

    narrative_id: str
    accounts: list[CoordinatedAccount] = field(default_factory=list)
    networks: list[CoordinatedNetwork] = field(default_factory=list)
    decided_by: str = ""
    updated_at: str | None = None

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"narrative_id": self.narrative_id, "accounts": [a.to_doc() for a in self.accounts],
                               "networks": [n.to_doc() for n in self.networks], "decided_by": self.decided_by}
        if self.updated_at is not None:
            doc["updated_at"] = self.updated_at
        return doc

    @classmethod
    def from_doc(cls, narrative_id: str, doc: Mapping[str, Any]) -> NarrativeCoordination:
        return cls(
            narrative_id=_str(doc.get("narrative_id") or narrative_id),
            accounts=[CoordinatedAccount.from_doc(a) for a in doc.get("accounts") or [] if isinstance(a, Mapping)],
            networks=[CoordinatedNetwork.from_doc(n) for n in doc.get("networks") or [] if isinstance(n, Mapping)],
            decided_by=_str(doc.get("decided_by")), updated_at=_opt_str(doc.get("updated_at")),
        )


class NarrativeCoordinations:
    """The one accessor of `narrative_coordination` (one document per narrative; sort key: how
    many coordinated accounts, so the linked ones list first)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, org: str, narrative_ids: Sequence[str]) -> dict[str, NarrativeCoordination]:
        docs = self.storage.get_docs(org, COORDINATION, list(narrative_ids)) if narrative_ids else {}
        return {i: NarrativeCoordination.from_doc(i, d) for i, d in docs.items()}

    def put(self, org: str, records: Sequence[NarrativeCoordination]) -> None:
        if records:
            self.storage.put_docs(org, COORDINATION, [(r.narrative_id, r.to_doc(), float(len(r.accounts))) for r in records])

    def linked(self, org: str) -> list[str]:
        """The narratives with coordinated accounts now (read in pages, linked ones first)."""
        out: list[str] = []
        offset, page = 0, 500
        while True:
            rows = self.storage.list_docs(org, COORDINATION, limit=page, offset=offset, order="sort_desc")
            found = [NarrativeCoordination.from_doc(i, d) for i, d in rows]
            out.extend(r.narrative_id for r in found if r.accounts)
            if len(rows) < page or any(not r.accounts for r in found):
                return out
            offset += len(rows)


# --------------------------------------------------------------------------- narratives and topics

NARRATIVES = "narratives"
TOPICS = "topics"


@dataclass(frozen=True)
class RecentPost:
    post_id: str
    time: str
    method: str
    similarity: float | None


@dataclass(frozen=True)
class NarrativeRecord:
    """What readers use of a `narratives` document (the narratives stage writes it, with its
    working state: term counts, vectors, which this record leaves out)."""

    id: str
    size: int
    topic_id: str = ""
    first_seen: str = ""
    last_seen: str = ""
    representative_post_id: str | None = None
    representative_text: str = ""
    languages: dict[str, int] = field(default_factory=dict)
    top_terms: list[str] = field(default_factory=list)
    counts_hourly: dict[str, int] = field(default_factory=dict)  # "2026-11-12T08" -> posts
    counts_daily: dict[str, int] = field(default_factory=dict)  # "2026-11-12" -> posts
    factchecks: list[dict[str, Any]] = field(default_factory=list)  # {factcheck_id, decision, posts, ...}
    heat_log2: float | None = None
    recent_posts: list[RecentPost] = field(default_factory=list)
    decided_by: str = ""
    merged_into: str | None = None
    representative_language: str | None = None
    methods: dict[str, int] = field(default_factory=dict)  # how its posts joined: "semantic" -> posts
    created_at: str = ""
    risk: float | None = None  # a 0..1 risk a plugin stage may store on a narrative (triage reads it); the built-in stages do not

    @property
    def member_ids(self) -> list[str]:
        """The members `recent_posts` lists, each once (all of them while the narrative is small)."""
        return list(dict.fromkeys(self.post_ids))

    def to_doc(self) -> dict[str, Any]:
        """The public view (what `narratives --json` prints and partners receive): the
        stored document without the stage's working state (term counts, vectors)."""
        doc: dict[str, Any] = {
            "id": self.id, "topic_id": self.topic_id, "size": self.size, "first_seen": self.first_seen, "last_seen": self.last_seen,
            "representative": {"post_id": self.representative_post_id, "text": self.representative_text, "language": self.representative_language},
            "languages": dict(self.languages), "top_terms": list(self.top_terms), "counts_hourly": dict(self.counts_hourly),
            "counts_daily": dict(self.counts_daily), "methods": dict(self.methods), "factchecks": [dict(f) for f in self.factchecks],
            "heat_log2": self.heat_log2, "created_at": self.created_at, "decided_by": self.decided_by,
            "recent_posts": [[r.post_id, r.time, r.method, r.similarity] for r in self.recent_posts],
        }
        if self.merged_into:
            doc["merged_into"] = self.merged_into
        if self.risk is not None:
            doc["risk"] = self.risk
        return doc

    @property
    def post_ids(self) -> list[str]:
        return [p.post_id for p in self.recent_posts]

    @property
    def factcheck_ids(self) -> list[str]:
        return [str(f["factcheck_id"]) for f in self.factchecks if f.get("factcheck_id")]

    @classmethod
    def from_doc(cls, narrative_id: str, doc: Mapping[str, Any]) -> NarrativeRecord:
        rep = _dict(doc.get("representative"))
        recent = [
            RecentPost(str(r[0]), _str(r[1]) if len(r) > 1 else "", _str(r[2]) if len(r) > 2 else "", _float(r[3]) if len(r) > 3 else None)
            for r in doc.get("recent_posts") or [] if isinstance(r, list | tuple) and r
        ]
        return cls(
            id=_str(doc.get("id") or narrative_id), size=int(_float(doc.get("size")) or 0), topic_id=_str(doc.get("topic_id")),
            first_seen=_str(doc.get("first_seen")), last_seen=_str(doc.get("last_seen")),
            representative_post_id=_opt_str(rep.get("post_id")), representative_text=_str(rep.get("text")),
            languages=_counts(doc.get("languages")), top_terms=_strs(doc.get("top_terms")),
            counts_hourly=_counts(doc.get("counts_hourly")), counts_daily=_counts(doc.get("counts_daily")),
            factchecks=[dict(f) for f in doc.get("factchecks") or [] if isinstance(f, Mapping)], heat_log2=_float(doc.get("heat_log2")),
            recent_posts=recent, decided_by=_str(doc.get("decided_by")), merged_into=_opt_str(doc.get("merged_into")),
            representative_language=_opt_str(rep.get("language")), methods=_counts(doc.get("methods")), created_at=_str(doc.get("created_at")),
            risk=_float(doc.get("risk")) if not isinstance(doc.get("risk"), bool) else None,
        )


@dataclass(frozen=True)
class TopicRecord:
    """What readers use of a `topics` document (narratives of one story, merged by meaning and time)."""

    id: str
    size: int
    label: str = ""
    narratives: list[str] = field(default_factory=list)
    first_seen: str = ""
    last_seen: str = ""
    languages: dict[str, int] = field(default_factory=dict)
    top_terms: list[str] = field(default_factory=list)
    heat_log2: float | None = None
    decided_by: str = ""
    merged_into: str | None = None
    merged: list[str] = field(default_factory=list)  # topics merged into this one
    created_at: str = ""

    def to_doc(self) -> dict[str, Any]:
        """The public view: the stored document without the stage's vector."""
        doc: dict[str, Any] = {
            "id": self.id, "label": self.label, "size": self.size, "narrative_count": len(self.narratives), "narratives": list(self.narratives),
            "first_seen": self.first_seen, "last_seen": self.last_seen, "top_terms": list(self.top_terms), "languages": dict(self.languages),
            "heat_log2": self.heat_log2, "merged": list(self.merged), "created_at": self.created_at, "decided_by": self.decided_by,
        }
        if self.merged_into:
            doc["merged_into"] = self.merged_into
        return doc

    @classmethod
    def from_doc(cls, topic_id: str, doc: Mapping[str, Any]) -> TopicRecord:
        return cls(
            id=_str(doc.get("id") or topic_id), size=int(_float(doc.get("size")) or 0), label=_str(doc.get("label")),
            narratives=_strs(doc.get("narratives")), first_seen=_str(doc.get("first_seen")), last_seen=_str(doc.get("last_seen")),
            languages=_counts(doc.get("languages")), top_terms=_strs(doc.get("top_terms")), heat_log2=_float(doc.get("heat_log2")),
            decided_by=_str(doc.get("decided_by")), merged_into=_opt_str(doc.get("merged_into")), merged=_strs(doc.get("merged")),
            created_at=_str(doc.get("created_at")),
        )


class Narratives:
    """The one reading accessor of `narratives` and `topics`."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, org: str, ids: Sequence[str]) -> dict[str, NarrativeRecord]:
        docs = self.storage.get_docs(org, NARRATIVES, list(ids)) if ids else {}
        return {i: NarrativeRecord.from_doc(i, d) for i, d in docs.items()}

    def hottest(self, org: str, limit: int = 200) -> list[NarrativeRecord]:
        """Growing now first (the stage's sort key: a decayed post count); merged ones left out."""
        rows = self.storage.list_docs(org, NARRATIVES, limit=limit, order="sort_desc")
        return [n for n in (NarrativeRecord.from_doc(i, d) for i, d in rows) if not n.merged_into]

    def recently_updated(self, org: str, limit: int = 2000) -> list[NarrativeRecord]:
        """Most recently updated first (merged ones included)."""
        return [NarrativeRecord.from_doc(i, d) for i, d in self.storage.list_docs(org, NARRATIVES, limit=limit, order="updated_desc")]

    def count(self, org: str) -> int:
        return self.storage.count_docs(org, NARRATIVES)

    def count_topics(self, org: str) -> int:
        return self.storage.count_docs(org, TOPICS)

    def topics(self, org: str, ids: Sequence[str]) -> dict[str, TopicRecord]:
        docs = self.storage.get_docs(org, TOPICS, list(ids)) if ids else {}
        return {i: TopicRecord.from_doc(i, d) for i, d in docs.items()}

    def hottest_topics(self, org: str, limit: int = 200) -> list[TopicRecord]:
        rows = self.storage.list_docs(org, TOPICS, limit=limit, order="sort_desc")
        return [t for t in (TopicRecord.from_doc(i, d) for i, d in rows) if not t.merged_into]


# --------------------------------------------------------------------------- check-worthiness

CHECKWORTHINESS = "checkworthiness"


@dataclass(frozen=True)
class CheckworthinessRecord:
    """One post's check-worthiness: the model's probability, its label at the model's
    threshold and the evidence (per-feature contributions, markers of a non-claim)."""

    post_id: str
    score: float
    label: str  # "claim" | "not_claim"
    threshold: float
    head: str
    decided_by: str
    clearly_not_claim: bool = False
    not_claim_markers: list[str] = field(default_factory=list)
    features: dict[str, float] = field(default_factory=dict)
    contributions: dict[str, float] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return {
            "post_id": self.post_id, "score": round(self.score, 4), "label": self.label, "threshold": round(self.threshold, 4),
            "clearly_not_claim": self.clearly_not_claim, "not_claim_markers": list(self.not_claim_markers),
            "features": {k: round(v, 3) for k, v in self.features.items() if v},
            "contributions": {k: round(v, 3) for k, v in self.contributions.items()},
            "head": self.head, "decided_by": self.decided_by,
        }

    @classmethod
    def from_doc(cls, post_id: str, doc: Mapping[str, Any]) -> CheckworthinessRecord:
        return cls(
            post_id=_str(doc.get("post_id") or post_id), score=_float(doc.get("score")) or 0.0, label=_str(doc.get("label")),
            threshold=_float(doc.get("threshold")) or 0.0, head=_str(doc.get("head")), decided_by=_str(doc.get("decided_by")),
            clearly_not_claim=bool(doc.get("clearly_not_claim")), not_claim_markers=_strs(doc.get("not_claim_markers")),
            features={str(k): float(v) for k, v in _dict(doc.get("features")).items() if isinstance(v, int | float)},
            contributions={str(k): float(v) for k, v in _dict(doc.get("contributions")).items() if isinstance(v, int | float)},
        )


class CheckworthinessScores:
    """The one accessor of `checkworthiness` (one document per post, sorted by score)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def put(self, org: str, records: Sequence[CheckworthinessRecord]) -> None:
        if records:
            self.storage.put_docs(org, CHECKWORTHINESS, [(r.post_id, r.to_doc(), r.score) for r in records])

    def get(self, org: str, post_ids: Sequence[str]) -> dict[str, CheckworthinessRecord]:
        docs = self.storage.get_docs(org, CHECKWORTHINESS, list(post_ids)) if post_ids else {}
        return {i: CheckworthinessRecord.from_doc(i, d) for i, d in docs.items()}


# --------------------------------------------------------------------------- link risk

LINKRISK = "linkrisk"


@dataclass(frozen=True)
class LinkRiskUrl:
    """One scored link (see `factbridge.linkrisk.scoring.UrlRisk`)."""

    url: str
    score: float
    level: str
    flagged: bool
    decided_by: str
    normalized: str = ""
    host: str = ""
    unicode_host: str = ""
    registered_domain: str = ""
    reasons: list[dict[str, Any]] = field(default_factory=list)  # {code, category, weight, detail, evidence}
    feed_hits: list[dict[str, Any]] = field(default_factory=list)
    official: str | None = None
    shortener: bool = False
    resolution: dict[str, Any] | None = None

    def to_doc(self) -> dict[str, Any]:
        return {
            "url": self.url, "normalized": self.normalized, "host": self.host, "unicode_host": self.unicode_host,
            "registered_domain": self.registered_domain, "score": round(self.score, 4), "level": self.level,
            "flagged": self.flagged, "reasons": list(self.reasons), "feed_hits": list(self.feed_hits),
            "official": self.official, "shortener": self.shortener, "decided_by": self.decided_by, "resolution": self.resolution,
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> LinkRiskUrl:
        resolution = doc.get("resolution")
        return cls(
            url=_str(doc.get("url")), score=_float(doc.get("score")) or 0.0, level=_str(doc.get("level")), flagged=bool(doc.get("flagged")),
            decided_by=_str(doc.get("decided_by")), normalized=_str(doc.get("normalized")), host=_str(doc.get("host")),
            unicode_host=_str(doc.get("unicode_host")), registered_domain=_str(doc.get("registered_domain")),
            reasons=[dict(r) for r in doc.get("reasons") or [] if isinstance(r, Mapping)],
            feed_hits=[dict(h) for h in doc.get("feed_hits") or [] if isinstance(h, Mapping)],
            official=_opt_str(doc.get("official")), shortener=bool(doc.get("shortener")),
            resolution=dict(resolution) if isinstance(resolution, Mapping) else None,
        )


@dataclass(frozen=True)
class LinkRiskRecord:
    """One post's links, riskiest first, and what could not be parsed."""

    post_id: str
    urls: list[LinkRiskUrl]
    decided_by: str
    scored_at: str
    level: str = "none"
    unparsed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def max_score(self) -> float:
        return max((u.score for u in self.urls), default=0.0)

    @property
    def flagged_urls(self) -> int:
        return sum(1 for u in self.urls if u.flagged)

    def to_doc(self) -> dict[str, Any]:
        return {
            "post_id": self.post_id, "max_score": self.max_score, "level": self.level, "flagged": self.flagged_urls > 0,
            "flagged_urls": self.flagged_urls, "urls": [u.to_doc() for u in self.urls], "unparsed": list(self.unparsed),
            "decided_by": self.decided_by, "scored_at": self.scored_at,
        }

    @classmethod
    def from_doc(cls, post_id: str, doc: Mapping[str, Any]) -> LinkRiskRecord:
        return cls(
            post_id=_str(doc.get("post_id") or post_id), urls=[LinkRiskUrl.from_doc(u) for u in doc.get("urls") or [] if isinstance(u, Mapping)],
            decided_by=_str(doc.get("decided_by")), scored_at=_str(doc.get("scored_at")), level=_str(doc.get("level")) or "none",
            unparsed=[dict(u) for u in doc.get("unparsed") or [] if isinstance(u, Mapping)],
        )


class LinkRisks:
    """The one accessor of `linkrisk` (one document per post, sorted by its riskiest link)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def put(self, org: str, records: Sequence[LinkRiskRecord]) -> None:
        if records:
            self.storage.put_docs(org, LINKRISK, [(r.post_id, r.to_doc(), r.max_score) for r in records])

    def get(self, org: str, post_ids: Sequence[str]) -> dict[str, LinkRiskRecord]:
        docs = self.storage.get_docs(org, LINKRISK, list(post_ids)) if post_ids else {}
        return {i: LinkRiskRecord.from_doc(i, d) for i, d in docs.items()}

    def riskiest(self, org: str, limit: int = 20, offset: int = 0) -> list[LinkRiskRecord]:
        """Posts by their riskiest link, riskiest first."""
        return [LinkRiskRecord.from_doc(i, d) for i, d in self.storage.list_docs(org, LINKRISK, limit=limit, offset=offset, order="sort_desc")]

    def count(self, org: str) -> int:
        return self.storage.count_docs(org, LINKRISK)

    def max_scores(self, org: str, post_ids: Sequence[str]) -> dict[str, tuple[float, str]]:
        """Per post, what `get` gives as `(record.max_score, record.decided_by)`, without building
        every link's record (triage reads only these, for hundreds of posts per batch)."""
        docs = self.storage.get_docs(org, LINKRISK, list(post_ids)) if post_ids else {}
        out: dict[str, tuple[float, str]] = {}
        for i, d in docs.items():
            scores = [_float(u.get("score")) or 0.0 for u in d.get("urls") or [] if isinstance(u, Mapping)]
            out[i] = (max(scores, default=0.0), _str(d.get("decided_by")))
        return out
