"""Typed records of the tipline's collections (org-scoped), each with one accessor, declared
once here (the style of `factbridge.pipeline.records`):

- `tipline_users` (opt-out and language, per pseudonymous sender): `TiplineUser`, through
  `TiplineUsers`;
- `tipline_questions` (what citizens asked): `TiplineQuestion`, through `TiplineQuestions`,
  which also keeps `tipline_pending` (`PendingQuestions`, one key document per sender listing
  their questions still waiting for an answer with a chat id): the follow-up pass and /stop
  read those documents, never the whole collection;
- `tipline_replies` (what was sent, with evidence and feedback): `TiplineReply`, through
  `TiplineReplies`;
- `tipline_stats` (counters per day and language): `TiplineStat`, through `TiplineStats`;
- `tipline_outbox` (verdicts published on a case opened on a question): `OutboxEntry`,
  through `TiplineOutbox`.

Writers build the record and store `to_doc()`; readers call the accessor. `to_doc(from_doc(d))
== d` for every stored document: a key the document lacks is not invented (`answered_at`,
`factcheck_id`, `feedback_at` appear once set), so databases written before these records
read and write the same.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from factbridge.backends.storage.base import DocumentStore, Expect, Rows, iter_docs
from factbridge.docfields import mapping as _dict
from factbridge.docfields import opt_text as _opt
from factbridge.errors import PreconditionFailed

USERS = "tipline_users"
QUESTIONS = "tipline_questions"
PENDING = "tipline_pending"
REPLIES = "tipline_replies"
STATS = "tipline_stats"
OUTBOX = "tipline_outbox"
STAT_KEYS = ("questions", "answered", "warned", "to_desk", "followups", "helpful", "not_helpful", "rate_limited")
# Marker of `tipline_pending`: the index also covers the questions stored before it existed.
BUILT = "_built"
WRITE_ATTEMPTS = 20

_Row = tuple[str, dict[str, Any], float | None]


# --------------------------------------------------------------------------- users


@dataclass(frozen=True)
class TiplineUser:
    who: str
    opted_out: bool = False
    language: str | None = None
    changed_at: str = ""

    def to_doc(self) -> dict[str, Any]:
        return {"opted_out": self.opted_out, "language": self.language, "changed_at": self.changed_at}

    @classmethod
    def from_doc(cls, who: str, doc: Mapping[str, Any]) -> TiplineUser:
        return cls(who=who, opted_out=bool(doc.get("opted_out")), language=_opt(doc.get("language")), changed_at=str(doc.get("changed_at") or ""))


class TiplineUsers:
    """The one accessor of `tipline_users` (one document per pseudonymous sender)."""

    def __init__(self, storage: DocumentStore) -> None:
        self.storage = storage

    def get(self, org: str, who: str) -> TiplineUser | None:
        doc = self.storage.get_docs(org, USERS, [who]).get(who)
        return TiplineUser.from_doc(who, doc) if doc is not None else None

    def put(self, org: str, user: TiplineUser) -> None:
        self.storage.put_docs(org, USERS, [(user.who, user.to_doc(), None)])

    def iter(self, org: str) -> Iterator[TiplineUser]:
        for who, doc in iter_docs(self.storage, org, USERS):
            yield TiplineUser.from_doc(who, doc)


# --------------------------------------------------------------------------- questions


@dataclass(frozen=True)
class TiplineQuestion:
    """A citizen's question; `chat_id` (what lets the desk write back) is kept only while it is
    pending and erased once it is answered or withdrawn (/stop)."""

    id: str
    who: str
    platform: str
    language: str
    post_id: str
    status: str  # pending | answered | withdrawn
    asked_at: str
    forwarded: bool = False
    chat_id: str | None = None
    latency_ms: float | None = None
    answered_at: str | None = None  # in the document once answered by a follow-up

    @property
    def waiting(self) -> bool:
        """Pending with a chat to answer in: what the follow-up pass looks at."""
        return self.status == "pending" and bool(self.chat_id)

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "who": self.who, "platform": self.platform, "language": self.language, "post_id": self.post_id, "status": self.status,
            "asked_at": self.asked_at, "forwarded": self.forwarded, "chat_id": self.chat_id, "latency_ms": self.latency_ms,
        }
        if self.answered_at is not None:
            doc["answered_at"] = self.answered_at
        return doc

    @classmethod
    def from_doc(cls, qid: str, doc: Mapping[str, Any]) -> TiplineQuestion:
        latency = doc.get("latency_ms")
        return cls(
            id=qid, who=str(doc.get("who") or ""), platform=str(doc.get("platform") or ""), language=str(doc.get("language") or "en"),
            post_id=str(doc.get("post_id") or ""), status=str(doc.get("status") or "pending"), asked_at=str(doc.get("asked_at") or ""),
            forwarded=bool(doc.get("forwarded")), chat_id=_opt(doc.get("chat_id")),
            latency_ms=float(latency) if isinstance(latency, int | float) and not isinstance(latency, bool) else None,
            answered_at=_opt(doc.get("answered_at")),
        )

    @property
    def sort_key(self) -> float | None:
        try:
            return datetime.fromisoformat(self.asked_at).timestamp()
        except ValueError:
            return None


@dataclass(frozen=True)
class PendingQuestions:
    """The key document of one sender in `tipline_pending`: their waiting questions, oldest
    first, and a version for conditional writes (sort key: how many; None when none)."""

    who: str
    questions: tuple[str, ...] = ()
    version: int = 0

    def to_doc(self) -> dict[str, Any]:
        return {"who": self.who, "questions": list(self.questions), "v": self.version}

    @classmethod
    def from_doc(cls, who: str, doc: Mapping[str, Any]) -> PendingQuestions:
        questions = doc.get("questions")
        return cls(who=str(doc.get("who") or who), questions=tuple(str(q) for q in questions) if isinstance(questions, list) else (),
                   version=int(doc.get("v") or 0))


class TiplineQuestions:
    """The one accessor of `tipline_questions` and of its index `tipline_pending`.

    Every write of questions also rewrites the pending lists of their senders, in the same
    transaction, each only if it is still the version that was read (another process that
    wrote one meanwhile makes the write start again), so the index never disagrees with the
    questions. A database from before the index gets it built once, from one scan, on first use.
    """

    def __init__(self, storage: DocumentStore) -> None:
        self.storage = storage
        self._built: set[str] = set()

    def get(self, org: str, ids: Sequence[str]) -> dict[str, TiplineQuestion]:
        docs = self.storage.get_docs(org, QUESTIONS, list(ids)) if ids else {}
        return {i: TiplineQuestion.from_doc(i, d) for i, d in docs.items()}

    def iter(self, org: str) -> Iterator[TiplineQuestion]:
        for qid, doc in iter_docs(self.storage, org, QUESTIONS):
            yield TiplineQuestion.from_doc(qid, doc)

    def put(self, org: str, questions: Sequence[TiplineQuestion], also: Sequence[tuple[str, Rows]] = ()) -> None:
        """Store `questions` (and `also`: other collections' rows, in the same transaction) and
        bring their senders' pending lists up to date."""
        rows: Rows = [(q.id, q.to_doc(), q.sort_key) for q in questions]
        for _ in range(WRITE_ATTEMPTS):
            self._build(org)
            read = self._lists(org, sorted({q.who for q in questions}))
            index_rows: list[_Row] = []
            expect: list[Expect] = []
            for who, (before, existed) in read.items():
                waiting = list(before.questions)
                for q in questions:
                    if q.who != who:
                        continue
                    if q.waiting and q.id not in waiting:
                        waiting.append(q.id)
                    elif not q.waiting and q.id in waiting:
                        waiting.remove(q.id)
                if tuple(waiting) == before.questions:
                    continue  # unchanged (a sender who never waited has no list at all)
                expect.append(Expect(PENDING, who, "v", before.version) if existed else Expect(PENDING, who))
                after = PendingQuestions(who, tuple(waiting), before.version + 1)
                index_rows.append((who, after.to_doc(), float(len(waiting)) if waiting else None))
            writes: list[tuple[str, Rows]] = [(QUESTIONS, rows), *([(PENDING, index_rows)] if index_rows else []), *also]
            try:
                self.storage.put_docs_batch(org, writes, expect=expect)
            except PreconditionFailed:
                continue  # a pending list changed meanwhile: read it again
            return
        raise PreconditionFailed(f"{org}/{PENDING}: pending lists kept changing; questions not stored", (org, PENDING, ""))

    def waiting(self, org: str) -> list[TiplineQuestion]:
        """Every question waiting for an answer, oldest sender list first: reads the senders'
        pending lists that are not empty, then those questions, nothing else."""
        self._build(org)
        ids: list[str] = []
        offset, page = 0, 200
        while True:
            rows = self.storage.list_docs(org, PENDING, limit=page, offset=offset, order="sort_desc")
            lists = [PendingQuestions.from_doc(who, doc) for who, doc in rows if who != BUILT]
            ids.extend(q for p in lists for q in p.questions)
            # non-empty lists sort first (sort key: their length; empty ones have none)
            if len(rows) < page or any(not p.questions for p in lists) or any(who == BUILT for who, _ in rows):
                break
            offset += len(rows)
        found = self.get(org, ids)
        return [found[i] for i in ids if i in found and found[i].waiting]

    def waiting_of(self, org: str, who: str) -> list[TiplineQuestion]:
        """One sender's waiting questions: their pending list and those questions."""
        self._build(org)
        doc = self.storage.get_docs(org, PENDING, [who]).get(who)
        ids = list(PendingQuestions.from_doc(who, doc).questions) if doc else []
        found = self.get(org, ids)
        return [found[i] for i in ids if i in found and found[i].waiting]

    def pending_list(self, org: str, who: str) -> PendingQuestions | None:
        doc = self.storage.get_docs(org, PENDING, [who]).get(who)
        return PendingQuestions.from_doc(who, doc) if doc is not None else None

    def _lists(self, org: str, whos: Sequence[str]) -> dict[str, tuple[PendingQuestions, bool]]:
        docs = self.storage.get_docs(org, PENDING, list(whos)) if whos else {}
        return {w: ((PendingQuestions.from_doc(w, docs[w]), True) if w in docs else (PendingQuestions(w), False)) for w in whos}

    def _build(self, org: str) -> None:
        """Index the questions stored before `tipline_pending` existed (once per database)."""
        if org in self._built:
            return
        while not self.storage.get_docs(org, PENDING, [BUILT]):
            by_who: dict[str, list[str]] = {}
            for q in self.iter(org):
                if q.waiting:
                    by_who.setdefault(q.who, []).append(q.id)
            rows: list[_Row] = [(who, PendingQuestions(who, tuple(ids), 1).to_doc(), float(len(ids))) for who, ids in sorted(by_who.items())]
            try:
                self.storage.put_docs_batch(org, [(PENDING, [*rows, (BUILT, {"built": True}, None)])], expect=[Expect(PENDING, BUILT)])
            except PreconditionFailed:
                continue  # another process built it meanwhile
        self._built.add(org)


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class TiplineReply:
    """One reply sent: `kind` link_warning, factcheck or followup, with its evidence and
    `decided_by`; `feedback` helpful / not_helpful once the citizen pressed a button."""

    id: str
    question: str
    kind: str
    language: str
    who: str
    evidence: dict[str, Any]
    decided_by: str
    sent_at: str
    feedback: str | None = None
    factcheck_id: str | None = None  # factcheck and followup replies
    feedback_at: str | None = None  # in the document once feedback came

    def with_feedback(self, feedback: str, at: str) -> TiplineReply:
        return dataclasses.replace(self, feedback=feedback, feedback_at=at)

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"question": self.question, "kind": self.kind, "language": self.language, "who": self.who}
        if self.factcheck_id is not None:
            doc["factcheck_id"] = self.factcheck_id
        doc.update(evidence=dict(self.evidence), decided_by=self.decided_by, sent_at=self.sent_at, feedback=self.feedback)
        if self.feedback_at is not None:
            doc["feedback_at"] = self.feedback_at
        return doc

    @classmethod
    def from_doc(cls, rid: str, doc: Mapping[str, Any]) -> TiplineReply:
        return cls(
            id=rid, question=str(doc.get("question") or ""), kind=str(doc.get("kind") or ""), language=str(doc.get("language") or "en"),
            who=str(doc.get("who") or ""), evidence=_dict(doc.get("evidence")), decided_by=str(doc.get("decided_by") or ""),
            sent_at=str(doc.get("sent_at") or ""), feedback=_opt(doc.get("feedback")), factcheck_id=_opt(doc.get("factcheck_id")),
            feedback_at=_opt(doc.get("feedback_at")),
        )

    @property
    def sort_key(self) -> float | None:
        try:
            return datetime.fromisoformat(self.sent_at).timestamp()
        except ValueError:
            return None


class TiplineReplies:
    """The one accessor of `tipline_replies` (sort key: when it was sent)."""

    def __init__(self, storage: DocumentStore) -> None:
        self.storage = storage

    def get(self, org: str, ids: Sequence[str]) -> dict[str, TiplineReply]:
        docs = self.storage.get_docs(org, REPLIES, list(ids)) if ids else {}
        return {i: TiplineReply.from_doc(i, d) for i, d in docs.items()}

    def put(self, org: str, replies: Sequence[TiplineReply]) -> None:
        if replies:
            self.storage.put_docs(org, REPLIES, self.rows(replies))

    def iter(self, org: str) -> Iterator[TiplineReply]:
        for rid, doc in iter_docs(self.storage, org, REPLIES):
            yield TiplineReply.from_doc(rid, doc)

    @staticmethod
    def rows(replies: Sequence[TiplineReply]) -> Rows:
        """Rows for `TiplineQuestions.put(..., also=[(REPLIES, rows)])`."""
        return [(r.id, r.to_doc(), r.sort_key) for r in replies]


# --------------------------------------------------------------------------- stats


@dataclass(frozen=True)
class TiplineStat:
    """Counters of one day and language (`STAT_KEYS`)."""

    day: str
    language: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAT_KEYS, 0))

    @property
    def id(self) -> str:
        return f"{self.day}|{self.language}"

    def __getitem__(self, key: str) -> int:
        return self.counts.get(key, 0)

    def bumped(self, key: str) -> TiplineStat:
        return dataclasses.replace(self, counts={**self.counts, key: self.counts.get(key, 0) + 1})

    def to_doc(self) -> dict[str, Any]:
        return {"day": self.day, "language": self.language, **self.counts}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> TiplineStat:
        return cls(day=str(doc.get("day") or ""), language=str(doc.get("language") or ""),
                   counts={str(k): int(v) for k, v in doc.items() if k not in ("day", "language") and isinstance(v, int | float)})


class TiplineStats:
    """The one accessor of `tipline_stats` (one document per day and language, sorted by day)."""

    def __init__(self, storage: DocumentStore) -> None:
        self.storage = storage

    def get(self, org: str, day: str, language: str) -> TiplineStat:
        sid = f"{day}|{language}"
        doc = self.storage.get_docs(org, STATS, [sid]).get(sid)
        return TiplineStat.from_doc(doc) if doc is not None else TiplineStat(day, language)

    def put(self, org: str, stat: TiplineStat) -> None:
        self.storage.put_docs(org, STATS, [(stat.id, stat.to_doc(), datetime.fromisoformat(stat.day).timestamp())])

    def latest(self, org: str, days: int = 14) -> list[TiplineStat]:
        """The rows of the latest `days` days with any, newest day first (then language, z-a)."""
        rows = [TiplineStat.from_doc(doc) for _, doc in self.storage.list_docs(org, STATS, limit=days * 8, order="sort_desc")]
        return sorted(rows, key=lambda r: (r.day, r.language), reverse=True)


# --------------------------------------------------------------------------- outbox


@dataclass(frozen=True)
class OutboxEntry:
    """A verdict published on a case opened on a tipline question (id: the question's post id)."""

    post_id: str
    case_id: str
    factcheck: dict[str, Any]

    def to_doc(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "factcheck": dict(self.factcheck)}

    @classmethod
    def from_doc(cls, post_id: str, doc: Mapping[str, Any]) -> OutboxEntry:
        return cls(post_id=post_id, case_id=str(doc.get("case_id") or ""), factcheck=_dict(doc.get("factcheck")))


class TiplineOutbox:
    """The one accessor of `tipline_outbox` (keyed by the question's post id)."""

    def __init__(self, storage: DocumentStore) -> None:
        self.storage = storage

    def get(self, org: str, post_ids: Sequence[str]) -> dict[str, OutboxEntry]:
        docs = self.storage.get_docs(org, OUTBOX, list(post_ids)) if post_ids else {}
        return {i: OutboxEntry.from_doc(i, d) for i, d in docs.items()}

    def put(self, org: str, entry: OutboxEntry) -> None:
        self.storage.put_docs(org, OUTBOX, [(entry.post_id, entry.to_doc(), None)])
