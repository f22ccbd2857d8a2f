"""Typed records of the workflow's collections, each with one accessor, declared once here
(the style of `factbridge.pipeline.records`):

- `cases` (CaseBook): `Case` (and its parts: `CaseSource`, `EvidenceItem`, `Verdict`, `Approval`,
  `ReviewNote`, `Publication`, `Correction`, `LanguageVersion`, `PendingCorrection`,
  `PendingWithdrawal`, `Withdrawal`), through `Cases`;
- `published` (the public snapshots CaseBook writes): `PublishedPage` (its `PublicSource`s,
  `PublicCorrection`s and `PublicWithdrawal`), through `PublishedPages`;
- `appeals` (Appeals): `Appeal`, through `AppealRecords`;
- `audit_head` and `audit_by_object` (written with each audit entry): `AuditHead` through
  `AuditHeads`, `ObjectHistory` through `AuditIndex`;
- `cases_by_source` (the cases opened on a post or narrative): `SourceCases`, through `CasesBySource`;
- `match_reviews` (the desk's decisions on match candidates): `MatchReview`, through `MatchReviewRecords`;
- `orgs` (Accounts, scope "_system"): `OrgRecord`, through `Orgs`.

Writers build the record and store `to_doc()`; readers call the accessor. Writes of these
collections go through the audit log (`AuditLog.append(records=...)`, with its conditional
`Expect`s), so an accessor gives the rows (`rows`) rather than writing them itself.
`to_doc(from_doc(d)) == d` for every stored document: a key the document lacks is not
invented, and a key it has (even null) is kept, so stored documents and the audit log's
fingerprints of them are the same as before records existed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from factbridge.backends.storage.base import DocumentStore, Expect, Rows, Storage, iter_docs
from factbridge.docfields import opt_text as _opt
from factbridge.errors import NotFound

CASES = "cases"
PUBLISHED = "published"
APPEALS = "appeals"


def _timestamp(iso: str) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def _opt_float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Verdict:
    rating: str
    rating_value: float | None
    explanation: str
    headline: str
    language: str | None
    drafted_by: str
    drafted_at: str

    def to_doc(self) -> dict[str, Any]:
        return {"rating": self.rating, "rating_value": self.rating_value, "explanation": self.explanation, "headline": self.headline,
                "language": self.language, "drafted_by": self.drafted_by, "drafted_at": self.drafted_at}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Verdict:
        return cls(rating=str(doc.get("rating") or ""), rating_value=_opt_float(doc.get("rating_value")),
                   explanation=str(doc.get("explanation") or ""), headline=str(doc.get("headline") or ""), language=_opt(doc.get("language")),
                   drafted_by=str(doc.get("drafted_by") or ""), drafted_at=str(doc.get("drafted_at") or ""))


@dataclass(frozen=True)
class Publication:
    url: str
    published_at: str
    published_by: str
    org_name: str

    def to_doc(self) -> dict[str, Any]:
        return {"url": self.url, "published_at": self.published_at, "published_by": self.published_by, "org_name": self.org_name}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Publication:
        return cls(url=str(doc.get("url") or ""), published_at=str(doc.get("published_at") or ""),
                   published_by=str(doc.get("published_by") or ""), org_name=str(doc.get("org_name") or ""))


def _sorted(doc: dict[str, Any]) -> dict[str, Any]:
    """A case's inner document with its keys in sorted order: as `audit.plain` (the save path)
    leaves them, so the stored JSON and the API's bytes stay what they were."""
    return dict(sorted(doc.items()))


def _str(doc: Mapping[str, Any], key: str) -> str:
    return str(doc.get(key) or "")


@dataclass(frozen=True)
class CaseSource:
    """Where a case came from: kind "post", "narrative", "report" or "manual", and its id ("" for manual)."""

    kind: str = "manual"
    id: str = ""

    def to_doc(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> CaseSource:
        return cls(kind=str(doc.get("kind") or "manual"), id=_str(doc, "id"))


@dataclass(frozen=True)
class EvidenceFile:
    """An uploaded file (stored by its SHA-256 under the upload folder); `content_type` is absent
    from files stored before types were sniffed."""

    name: str
    sha256: str
    size: int
    content_type: str | None = None

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "sha256": self.sha256, "size": self.size}
        if self.content_type is not None:
            doc["content_type"] = self.content_type
        return _sorted(doc)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> EvidenceFile:
        return cls(name=_str(doc, "name"), sha256=_str(doc, "sha256"), size=int(doc.get("size") or 0), content_type=_opt(doc.get("content_type")))


@dataclass(frozen=True)
class EvidenceItem:
    """A link (`url`, `text`), a note (`text`) or a file (`file`, `text`); a key the kind does not
    have is absent from the document (None here)."""

    id: str
    kind: str
    added_by: str
    added_at: str
    url: str | None = None
    text: str | None = None
    file: EvidenceFile | None = None

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": self.id, "kind": self.kind, "added_by": self.added_by, "added_at": self.added_at}
        if self.url is not None:
            doc["url"] = self.url
        if self.text is not None:
            doc["text"] = self.text
        if self.file is not None:
            doc["file"] = self.file.to_doc()
        return _sorted(doc)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> EvidenceItem:
        file = doc.get("file")
        return cls(id=_str(doc, "id"), kind=_str(doc, "kind"), added_by=_str(doc, "added_by"), added_at=_str(doc, "added_at"),
                   url=_opt(doc.get("url")), text=_opt(doc.get("text")), file=EvidenceFile.from_doc(file) if isinstance(file, Mapping) else None)


@dataclass(frozen=True)
class Approval:
    """A second editor's approval of the verdict as drafted."""

    by: str
    at: str

    def to_doc(self) -> dict[str, Any]:
        return {"at": self.at, "by": self.by}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Approval:
        return cls(by=_str(doc, "by"), at=_str(doc, "at"))


@dataclass(frozen=True)
class ReviewNote:
    """Why a reviewer returned the verdict for changes."""

    by: str
    at: str
    text: str

    def to_doc(self) -> dict[str, Any]:
        return {"at": self.at, "by": self.by, "text": self.text}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ReviewNote:
        return cls(by=_str(doc, "by"), at=_str(doc, "at"), text=_str(doc, "text"))


@dataclass(frozen=True)
class Correction:
    """A public correction of a published verdict; one that changed the rating names the second
    editor who approved it (`approved_by`, absent otherwise)."""

    at: str
    by: str
    text: str
    previous_rating: str
    new_rating: str
    approved_by: str | None = None

    PUBLIC = ("at", "text", "previous_rating", "new_rating")

    def public(self) -> PublicCorrection:
        """What the public page shows: when, what, and the ratings (never who)."""
        return PublicCorrection(at=self.at, text=self.text, previous_rating=self.previous_rating, new_rating=self.new_rating)

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"at": self.at, "by": self.by, "text": self.text, "previous_rating": self.previous_rating,
                               "new_rating": self.new_rating}
        if self.approved_by is not None:
            doc["approved_by"] = self.approved_by
        return _sorted(doc)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Correction:
        return cls(at=_str(doc, "at"), by=_str(doc, "by"), text=_str(doc, "text"), previous_rating=_str(doc, "previous_rating"),
                   new_rating=_str(doc, "new_rating"), approved_by=_opt(doc.get("approved_by")))


@dataclass(frozen=True)
class PendingCorrection:
    """A change of the rating waiting for a second editor (`CaseBook.decide_correction`)."""

    at: str
    by: str
    text: str
    previous_rating: str
    new_rating: str
    rating_value: float | None

    def to_doc(self) -> dict[str, Any]:
        return _sorted({"at": self.at, "by": self.by, "text": self.text, "previous_rating": self.previous_rating,
                        "new_rating": self.new_rating, "rating_value": self.rating_value})

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> PendingCorrection:
        return cls(at=_str(doc, "at"), by=_str(doc, "by"), text=_str(doc, "text"), previous_rating=_str(doc, "previous_rating"),
                   new_rating=_str(doc, "new_rating"), rating_value=_opt_float(doc.get("rating_value")))


@dataclass(frozen=True)
class PendingWithdrawal:
    """A withdrawal proposed by one editor, waiting for a second (`CaseBook.decide_withdrawal`)."""

    at: str
    by: str
    reason: str

    def to_doc(self) -> dict[str, Any]:
        return {"at": self.at, "by": self.by, "reason": self.reason}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> PendingWithdrawal:
        return cls(at=_str(doc, "at"), by=_str(doc, "by"), reason=_str(doc, "reason"))


@dataclass(frozen=True)
class Withdrawal:
    """An approved withdrawal: public are `at` and `reason` (`public()`), who decided stays in the workspace."""

    at: str
    reason: str
    proposed_by: str
    proposed_at: str
    approved_by: str

    def public(self) -> PublicWithdrawal:
        return PublicWithdrawal(at=self.at, reason=self.reason)

    def to_doc(self) -> dict[str, Any]:
        return {"approved_by": self.approved_by, "at": self.at, "proposed_at": self.proposed_at, "proposed_by": self.proposed_by,
                "reason": self.reason}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Withdrawal:
        return cls(at=_str(doc, "at"), reason=_str(doc, "reason"), proposed_by=_str(doc, "proposed_by"), proposed_at=_str(doc, "proposed_at"),
                   approved_by=_str(doc, "approved_by"))


@dataclass(frozen=True)
class LanguageVersion:
    """The verdict in another language (same rating and evidence), published with it as a group."""

    language: str
    claim: str
    headline: str
    explanation: str
    by: str
    at: str

    def to_doc(self) -> dict[str, Any]:
        return {"at": self.at, "by": self.by, "claim": self.claim, "explanation": self.explanation, "headline": self.headline,
                "language": self.language}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> LanguageVersion:
        return cls(language=_str(doc, "language"), claim=_str(doc, "claim"), headline=_str(doc, "headline"),
                   explanation=_str(doc, "explanation"), by=_str(doc, "by"), at=_str(doc, "at"))


def _records(value: Any, record: Any) -> list[Any]:
    return [record.from_doc(v) for v in value if isinstance(v, Mapping)] if isinstance(value, list | tuple) else []


def _record_or_none(value: Any, record: Any) -> Any:
    return record.from_doc(value) if isinstance(value, Mapping) else None


@dataclass(frozen=True)
class Case:
    """A case, its parts typed (`CaseSource`, `EvidenceItem`, `Verdict`, `Approval`, `ReviewNote`,
    `Publication`, `Correction`, `LanguageVersion` by language, `PendingCorrection`,
    `PendingWithdrawal`, `Withdrawal`). `closed_reason`, `versions`, `pending_correction`,
    `pending_withdrawal` and `withdrawal` appear in a document only once set (`present` names
    those it has, even null)."""

    id: str
    org: str
    title: str
    claim: str
    claimant: str = ""
    claim_date: str | None = None
    language: str | None = None
    status: str = "open"
    source: CaseSource = field(default_factory=CaseSource)
    created_at: str = ""
    created_by: str = ""
    assignee: str = ""
    evidence: list[EvidenceItem] = field(default_factory=list)
    verdict: Verdict | None = None
    approval: Approval | None = None
    review_notes: list[ReviewNote] = field(default_factory=list)
    publication: Publication | None = None
    corrections: list[Correction] = field(default_factory=list)
    version: int = 0
    updated_at: str = ""
    closed_reason: str | None = None
    versions: dict[str, LanguageVersion] | None = None
    pending_correction: PendingCorrection | None = None
    pending_withdrawal: PendingWithdrawal | None = None
    withdrawal: Withdrawal | None = None
    present: frozenset[str] = frozenset()

    OPTIONAL = ("closed_reason", "versions", "pending_correction", "pending_withdrawal", "withdrawal")
    UNSAVED = ("version", "updated_at")  # set by the first save

    def with_(self, **changes: Any) -> Case:
        """The case with `changes`; an optional field set here (even to None) is then stored."""
        return dataclasses.replace(self, **changes, present=self.present | {k for k in changes if k in self.OPTIONAL + self.UNSAVED})

    def library_ids(self) -> list[str]:
        """The library ids of a published case: its public URL and one per language version."""
        url = self.publication.url if self.publication is not None else ""
        return [url, *(f"{url}-{lang}" for lang in (self.versions or {}))] if url else []

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "id": self.id, "org": self.org, "title": self.title, "claim": self.claim, "claimant": self.claimant, "claim_date": self.claim_date,
            "language": self.language, "status": self.status, "source": self.source.to_doc(), "created_at": self.created_at,
            "created_by": self.created_by, "assignee": self.assignee, "evidence": [e.to_doc() for e in self.evidence],
            "verdict": self.verdict.to_doc() if self.verdict else None, "approval": self.approval.to_doc() if self.approval else None,
            "review_notes": [n.to_doc() for n in self.review_notes],
            "publication": self.publication.to_doc() if self.publication else None, "corrections": [c.to_doc() for c in self.corrections],
        }
        inner: dict[str, Any] = {
            "versions": {lang: v.to_doc() for lang, v in sorted(self.versions.items())} if self.versions is not None else None,
            "pending_correction": self.pending_correction.to_doc() if self.pending_correction else None,
            "pending_withdrawal": self.pending_withdrawal.to_doc() if self.pending_withdrawal else None,
            "withdrawal": self.withdrawal.to_doc() if self.withdrawal else None,
        }
        for name in self.UNSAVED + self.OPTIONAL:
            if name in self.present:
                doc[name] = inner[name] if name in inner else getattr(self, name)
        return doc

    @classmethod
    def from_doc(cls, case_id: str, doc: Mapping[str, Any]) -> Case:
        versions, source = doc.get("versions"), doc.get("source")
        return cls(
            id=str(doc.get("id") or case_id), org=_str(doc, "org"), title=_str(doc, "title"), claim=_str(doc, "claim"),
            claimant=_str(doc, "claimant"), claim_date=_opt(doc.get("claim_date")), language=_opt(doc.get("language")),
            status=str(doc.get("status") or "open"), source=CaseSource.from_doc(source) if isinstance(source, Mapping) else CaseSource(),
            created_at=_str(doc, "created_at"), created_by=_str(doc, "created_by"), assignee=_str(doc, "assignee"),
            evidence=_records(doc.get("evidence"), EvidenceItem), verdict=_record_or_none(doc.get("verdict"), Verdict),
            approval=_record_or_none(doc.get("approval"), Approval), review_notes=_records(doc.get("review_notes"), ReviewNote),
            publication=_record_or_none(doc.get("publication"), Publication), corrections=_records(doc.get("corrections"), Correction),
            version=int(doc.get("version") or 0), updated_at=_str(doc, "updated_at"), closed_reason=_opt(doc.get("closed_reason")),
            versions={str(k): LanguageVersion.from_doc(v) for k, v in versions.items() if isinstance(v, Mapping)} if isinstance(versions, Mapping) else None,
            pending_correction=_record_or_none(doc.get("pending_correction"), PendingCorrection),
            pending_withdrawal=_record_or_none(doc.get("pending_withdrawal"), PendingWithdrawal),
            withdrawal=_record_or_none(doc.get("withdrawal"), Withdrawal),
            present=frozenset(k for k in cls.UNSAVED + cls.OPTIONAL if k in doc),
        )


class Cases:
    """The one accessor of the `cases` collection."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, org: str, ids: Sequence[str]) -> dict[str, Case]:
        docs = self.storage.get_docs(org, CASES, list(ids)) if ids else {}
        return {i: Case.from_doc(i, d) for i, d in docs.items()}

    def one(self, org: str, case_id: str) -> Case:
        found = self.get(org, [case_id])
        if case_id not in found:
            raise NotFound(f"case '{case_id}' not found")
        return found[case_id]

    def iter(self, org: str, limit: int = 10_000) -> Iterator[Case]:
        """Most recently updated first."""
        for case_id, doc in self.storage.list_docs(org, CASES, limit=limit, order="updated_desc"):
            yield Case.from_doc(case_id, doc)

    @staticmethod
    def rows(cases: Sequence[Case]) -> Rows:
        """The storage rows of `cases` (sorted by their last update), for `AuditLog.append(records=...)`."""
        return [(c.id, c.to_doc(), _timestamp(c.updated_at)) for c in cases]


# --------------------------------------------------------------------------- published snapshots


@dataclass(frozen=True)
class PublicSource:
    """A link of the case's evidence, as the public page lists it (notes and files stay private)."""

    url: str
    text: str = ""

    def to_doc(self) -> dict[str, Any]:
        return {"text": self.text, "url": self.url}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> PublicSource:
        return cls(url=_str(doc, "url"), text=_str(doc, "text"))


@dataclass(frozen=True)
class PublicCorrection:
    """A correction as the public page shows it: when, what and the ratings (never who)."""

    at: str
    text: str
    previous_rating: str
    new_rating: str

    def to_doc(self) -> dict[str, Any]:
        return {"at": self.at, "new_rating": self.new_rating, "previous_rating": self.previous_rating, "text": self.text}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> PublicCorrection:
        return cls(at=_str(doc, "at"), text=_str(doc, "text"), previous_rating=_str(doc, "previous_rating"), new_rating=_str(doc, "new_rating"))


@dataclass(frozen=True)
class PublicWithdrawal:
    """The public notice of a withdrawal: when and why."""

    at: str
    reason: str

    def to_doc(self) -> dict[str, Any]:
        return {"at": self.at, "reason": self.reason}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> PublicWithdrawal:
        return cls(at=_str(doc, "at"), reason=_str(doc, "reason"))


@dataclass(frozen=True)
class PublishedPage:
    """A public page of a published verdict (id: the case id, or "<case id>-<language>" for a
    language version). Only public fields: never internal notes, files or who decided."""

    page_id: str
    case_id: str
    org: str
    org_name: str
    url: str
    claim: str
    claimant: str
    claim_date: str | None
    headline: str
    rating: str
    rating_value: float | None
    explanation: str
    language: str | None
    sources: list[PublicSource]
    published_at: str
    modified_at: str | None
    corrections: list[PublicCorrection]
    versions: dict[str, str] = field(default_factory=dict)  # language -> url, of the group; {} when alone
    withdrawn: PublicWithdrawal | None = None  # absent from the document until withdrawn

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "case_id": self.case_id, "org": self.org, "org_name": self.org_name, "url": self.url, "claim": self.claim,
            "claimant": self.claimant, "claim_date": self.claim_date, "headline": self.headline, "rating": self.rating,
            "rating_value": self.rating_value, "explanation": self.explanation, "language": self.language,
            "sources": [src.to_doc() for src in self.sources], "published_at": self.published_at, "modified_at": self.modified_at,
            "corrections": [c.to_doc() for c in self.corrections],
        }
        if self.withdrawn is not None:
            doc["withdrawn"] = self.withdrawn.to_doc()
        doc.update(page_id=self.page_id, versions=dict(self.versions))
        return doc

    @classmethod
    def from_doc(cls, page_id: str, doc: Mapping[str, Any]) -> PublishedPage:
        versions = doc.get("versions")
        return cls(
            page_id=str(doc.get("page_id") or page_id), case_id=str(doc.get("case_id") or ""), org=str(doc.get("org") or ""),
            org_name=str(doc.get("org_name") or ""), url=str(doc.get("url") or ""), claim=str(doc.get("claim") or ""),
            claimant=str(doc.get("claimant") or ""), claim_date=_opt(doc.get("claim_date")), headline=str(doc.get("headline") or ""),
            rating=str(doc.get("rating") or ""), rating_value=_opt_float(doc.get("rating_value")), explanation=str(doc.get("explanation") or ""),
            language=_opt(doc.get("language")), sources=_records(doc.get("sources"), PublicSource), published_at=str(doc.get("published_at") or ""),
            modified_at=_opt(doc.get("modified_at")), corrections=_records(doc.get("corrections"), PublicCorrection),
            versions={str(k): str(v) for k, v in versions.items()} if isinstance(versions, Mapping) else {},
            withdrawn=_record_or_none(doc.get("withdrawn"), PublicWithdrawal),
        )


class PublishedPages:
    """The one accessor of the `published` collection."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, org: str, ids: Sequence[str]) -> dict[str, PublishedPage]:
        docs = self.storage.get_docs(org, PUBLISHED, list(ids)) if ids else {}
        return {i: PublishedPage.from_doc(i, d) for i, d in docs.items()}

    def one(self, org: str, page_id: str) -> PublishedPage:
        found = self.get(org, [page_id])
        if page_id not in found:
            raise NotFound(f"published fact-check '{page_id}' not found")
        return found[page_id]

    def iter(self, org: str, limit: int = 1000, offset: int = 0) -> Iterator[PublishedPage]:
        """Most recently published first."""
        for page_id, doc in self.storage.list_docs(org, PUBLISHED, limit=limit, offset=offset, order="sort_desc"):
            yield PublishedPage.from_doc(page_id, doc)

    def all_oldest_first(self, org: str) -> Iterator[PublishedPage]:
        """Every page, in the order they were published (the federation feed's order)."""
        for page_id, doc in iter_docs(self.storage, org, PUBLISHED, order="sort_asc"):
            yield PublishedPage.from_doc(page_id, doc)

    @staticmethod
    def rows(pages: Sequence[PublishedPage]) -> Rows:
        """The storage rows of `pages` (sorted by publication time), for `AuditLog.append(records=...)`."""
        return [(p.page_id, p.to_doc(), _timestamp(p.published_at)) for p in pages]


# --------------------------------------------------------------------------- appeals


@dataclass(frozen=True)
class Appeal:
    """An appeal against a published verdict; `reason` and `contact` never leave the workspace."""

    id: str
    case_id: str
    reason: str
    contact: str = ""
    status: str = "received"
    received_at: str = ""
    outcome: str | None = None
    outcome_note: str = ""
    decided_at: str | None = None
    decided_by: str | None = None
    version: int = 1

    PUBLIC = ("received_at", "status", "outcome", "outcome_note", "decided_at")

    def public(self) -> dict[str, Any]:
        """What the public page shows of the appeal: its outcome, never the reason or contact."""
        doc = self.to_doc()
        return {k: doc[k] for k in self.PUBLIC}

    def to_doc(self) -> dict[str, Any]:
        return {"id": self.id, "case_id": self.case_id, "reason": self.reason, "contact": self.contact, "status": self.status,
                "received_at": self.received_at, "outcome": self.outcome, "outcome_note": self.outcome_note, "decided_at": self.decided_at,
                "decided_by": self.decided_by, "version": self.version}

    @classmethod
    def from_doc(cls, appeal_id: str, doc: Mapping[str, Any]) -> Appeal:
        return cls(
            id=str(doc.get("id") or appeal_id), case_id=str(doc.get("case_id") or ""), reason=str(doc.get("reason") or ""),
            contact=str(doc.get("contact") or ""), status=str(doc.get("status") or "received"), received_at=str(doc.get("received_at") or ""),
            outcome=_opt(doc.get("outcome")), outcome_note=str(doc.get("outcome_note") or ""), decided_at=_opt(doc.get("decided_at")),
            decided_by=_opt(doc.get("decided_by")), version=int(doc.get("version") or 1),
        )


class AppealRecords:
    """The one accessor of the `appeals` collection."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, org: str, ids: Sequence[str]) -> dict[str, Appeal]:
        docs = self.storage.get_docs(org, APPEALS, list(ids)) if ids else {}
        return {i: Appeal.from_doc(i, d) for i, d in docs.items()}

    def one(self, org: str, appeal_id: str) -> Appeal:
        found = self.get(org, [appeal_id])
        if appeal_id not in found:
            raise NotFound(f"appeal '{appeal_id}' not found")
        return found[appeal_id]

    def iter(self, org: str, limit: int = 10_000) -> Iterator[Appeal]:
        """Most recently received first."""
        for appeal_id, doc in self.storage.list_docs(org, APPEALS, limit=limit, order="sort_desc"):
            yield Appeal.from_doc(appeal_id, doc)

    @staticmethod
    def rows(appeals: Sequence[Appeal]) -> Rows:
        """The storage rows of `appeals` (sorted by arrival), for `AuditLog.append(records=...)`."""
        return [(a.id, a.to_doc(), _timestamp(a.received_at)) for a in appeals]


# --------------------------------------------------------------------------- accounts (scope "_system")

SYSTEM_ORG = "_system"
USERS = "users"
API_TOKENS = "api_tokens"
SESSIONS = "sessions"
ORGS = "orgs"


@dataclass(frozen=True)
class OrgRecord:
    """An organisation (a desk) registered for the workspace (key: its id)."""

    id: str
    name: str
    created_at: str = ""

    def to_doc(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "created_at": self.created_at}

    @classmethod
    def from_doc(cls, org_id: str, doc: Mapping[str, Any]) -> OrgRecord:
        return cls(id=str(doc.get("id") or org_id), name=str(doc.get("name") or org_id), created_at=str(doc.get("created_at") or ""))


class Orgs:
    """The one accessor of the `orgs` collection (scope "_system"); its writes go through the
    audit log (`rows`)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, ids: Sequence[str]) -> dict[str, OrgRecord]:
        docs = self.storage.get_docs(SYSTEM_ORG, ORGS, list(ids)) if ids else {}
        return {i: OrgRecord.from_doc(i, d) for i, d in docs.items()}

    def iter(self) -> Iterator[OrgRecord]:
        """By id."""
        for org_id, doc in self.storage.list_docs(SYSTEM_ORG, ORGS, limit=100_000, order="id"):
            yield OrgRecord.from_doc(org_id, doc)

    @staticmethod
    def rows(orgs: Sequence[OrgRecord]) -> Rows:
        return [(o.id, o.to_doc(), None) for o in orgs]


@dataclass(frozen=True)
class UserRecord:
    """A user (key: the lowercase user name). `session_epoch` is stored once a password change
    or a disabling has bumped it (None: not yet, read as 0)."""

    username: str
    org: str
    role: str
    display_name: str = ""
    password_hash: str = ""
    disabled: bool = False
    created_at: str = ""
    session_epoch: int | None = None

    @property
    def epoch(self) -> int:
        return self.session_epoch or 0

    def public(self) -> dict[str, Any]:
        """The record without its password hash (what the audit log and the admin page see)."""
        return {k: v for k, v in self.to_doc().items() if k != "password_hash"}

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"username": self.username, "org": self.org, "role": self.role, "display_name": self.display_name,
                               "password_hash": self.password_hash, "disabled": self.disabled, "created_at": self.created_at}
        if self.session_epoch is not None:
            doc["session_epoch"] = self.session_epoch
        return doc

    @classmethod
    def from_doc(cls, username: str, doc: Mapping[str, Any]) -> UserRecord:
        epoch = doc.get("session_epoch")
        return cls(username=str(doc.get("username") or username), org=str(doc.get("org") or ""), role=str(doc.get("role") or ""),
                   display_name=str(doc.get("display_name") or ""), password_hash=str(doc.get("password_hash") or ""),
                   disabled=bool(doc.get("disabled")), created_at=str(doc.get("created_at") or ""),
                   session_epoch=int(epoch) if epoch is not None else None)


class Users:
    """The one accessor of the `users` collection."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, names: Sequence[str]) -> dict[str, UserRecord]:
        docs = self.storage.get_docs(SYSTEM_ORG, USERS, list(names)) if names else {}
        return {n: UserRecord.from_doc(n, d) for n, d in docs.items()}

    def iter(self, org: str | None = None) -> Iterator[UserRecord]:
        """By name; of one organisation if `org` is given."""
        for name, doc in self.storage.list_docs(SYSTEM_ORG, USERS, limit=100_000, order="id"):
            user = UserRecord.from_doc(name, doc)
            if org is None or user.org == org:
                yield user

    @staticmethod
    def rows(users: Sequence[UserRecord]) -> Rows:
        return [(u.username, u.to_doc(), None) for u in users]


@dataclass(frozen=True)
class TokenRecord:
    """An API token (key: the SHA-256 of the token, never stored itself; `id` its public prefix)."""

    sha: str
    id: str
    username: str
    org: str
    name: str
    created_at: str
    expires_at: str | None = None
    revoked: bool = False
    revoked_at: str | None = None  # stored once revoked

    def expired(self, now: datetime) -> bool:
        return bool(self.expires_at) and datetime.fromisoformat(str(self.expires_at)) <= now

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": self.id, "username": self.username, "org": self.org, "name": self.name, "created_at": self.created_at,
                               "expires_at": self.expires_at, "revoked": self.revoked}
        if self.revoked_at is not None:
            doc["revoked_at"] = self.revoked_at
        return doc

    @classmethod
    def from_doc(cls, sha: str, doc: Mapping[str, Any]) -> TokenRecord:
        return cls(sha=sha, id=str(doc.get("id") or ""), username=str(doc.get("username") or ""), org=str(doc.get("org") or ""),
                   name=str(doc.get("name") or ""), created_at=str(doc.get("created_at") or ""), expires_at=_opt(doc.get("expires_at")),
                   revoked=bool(doc.get("revoked")), revoked_at=_opt(doc.get("revoked_at")))


class ApiTokens:
    """The one accessor of the `api_tokens` collection."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, shas: Sequence[str]) -> dict[str, TokenRecord]:
        docs = self.storage.get_docs(SYSTEM_ORG, API_TOKENS, list(shas)) if shas else {}
        return {s: TokenRecord.from_doc(s, d) for s, d in docs.items()}

    def iter(self) -> Iterator[TokenRecord]:
        for sha, doc in self.storage.list_docs(SYSTEM_ORG, API_TOKENS, limit=1_000_000, order="id"):
            yield TokenRecord.from_doc(sha, doc)

    @staticmethod
    def rows(tokens: Sequence[TokenRecord]) -> Rows:
        return [(t.sha, t.to_doc(), None) for t in tokens]


@dataclass(frozen=True)
class SessionSlot:
    """A web session slot (key: the slot id, the token's first part). A free slot holds nothing
    (`{"free": true}`); a slot from before slots existed has no `sha` (and is dead)."""

    slot: str
    free: bool = False
    username: str = ""
    sha: str = ""
    csrf: str = ""
    created_at: str = ""
    expires_at: str = ""
    epoch: int = 0
    revoked: bool = False

    @property
    def sort_key(self) -> float:
        """Free slots first, then by expiry (sign-in purges and reuses the oldest)."""
        return 0.0 if self.free else (_timestamp(self.expires_at) or 0.0)

    def to_doc(self) -> dict[str, Any]:
        if self.free:
            return {"free": True}
        return {"username": self.username, "sha": self.sha, "csrf": self.csrf, "created_at": self.created_at, "expires_at": self.expires_at,
                "epoch": self.epoch, "revoked": self.revoked}

    @classmethod
    def from_doc(cls, slot: str, doc: Mapping[str, Any]) -> SessionSlot:
        if doc.get("free"):
            return cls(slot=slot, free=True)
        return cls(slot=slot, username=str(doc.get("username") or ""), sha=str(doc.get("sha") or ""), csrf=str(doc.get("csrf") or ""),
                   created_at=str(doc.get("created_at") or ""), expires_at=str(doc.get("expires_at") or ""), epoch=int(doc.get("epoch") or 0),
                   revoked=bool(doc.get("revoked")))


class SessionSlots:
    """The one accessor of the `sessions` collection."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, slots: Sequence[str]) -> dict[str, SessionSlot]:
        docs = self.storage.get_docs(SYSTEM_ORG, SESSIONS, list(slots)) if slots else {}
        return {s: SessionSlot.from_doc(s, d) for s, d in docs.items()}

    def iter(self, limit: int = 10_000_000, order: str = "id") -> Iterator[SessionSlot]:
        for slot, doc in self.storage.list_docs(SYSTEM_ORG, SESSIONS, limit=limit, order=order):
            yield SessionSlot.from_doc(slot, doc)

    @staticmethod
    def rows(slots: Sequence[SessionSlot]) -> Rows:
        return [(s.slot, s.to_doc(), s.sort_key) for s in slots]


# --------------------------------------------------------------------------- audit entries

AUDIT = "audit"


@dataclass(frozen=True)
class WrittenRecord:
    """A record an audit entry wrote, with the SHA-256 of its stored document."""

    scope: str
    collection: str
    id: str
    sha: str

    def to_doc(self) -> dict[str, Any]:
        return {"scope": self.scope, "collection": self.collection, "id": self.id, "sha": self.sha}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> WrittenRecord:
        return cls(scope=str(doc.get("scope")), collection=str(doc.get("collection")), id=str(doc.get("id")), sha=str(doc.get("sha")))


@dataclass(frozen=True)
class AuditEntry:
    """An entry of an organisation's audit chain (key: the zero-padded `seq`). `records` is None
    for entries from before entries listed what they wrote (the key is then absent); `hash` is
    the SHA-256 of the rest in canonical JSON (`audit.entry_hash`). `audit verify` checks the
    documents as stored, not these records: a tampered entry must not be tidied up first."""

    seq: int
    org: str
    at: str
    actor: str
    action: str
    collection: str
    object_id: str
    before: Any = None
    after: Any = None
    records: list[WrittenRecord] | None = None
    prev_hash: str = ""
    hash: str = ""

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"seq": self.seq, "org": self.org, "at": self.at, "actor": self.actor, "action": self.action,
                               "object": {"collection": self.collection, "id": self.object_id}, "before": self.before, "after": self.after}
        if self.records is not None:
            doc["records"] = [r.to_doc() for r in self.records]
        doc["prev_hash"] = self.prev_hash
        if self.hash:
            doc["hash"] = self.hash
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> AuditEntry:
        obj = doc.get("object")
        obj = obj if isinstance(obj, Mapping) else {}
        records = doc.get("records")
        return cls(seq=int(doc.get("seq") or 0), org=str(doc.get("org") or ""), at=str(doc.get("at") or ""), actor=str(doc.get("actor") or ""),
                   action=str(doc.get("action") or ""), collection=str(obj.get("collection") or ""), object_id=str(obj.get("id") or ""),
                   before=doc.get("before"), after=doc.get("after"),
                   records=[WrittenRecord.from_doc(r) for r in records if isinstance(r, Mapping)] if isinstance(records, list) else None,
                   prev_hash=str(doc.get("prev_hash") or ""), hash=str(doc.get("hash") or ""))


class AuditEntries:
    """The one accessor of the `audit` collection (writes go through `AuditLog.append` only)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @staticmethod
    def key(seq: int) -> str:
        return f"{seq:012d}"

    def get(self, org: str, seqs: Sequence[int]) -> dict[int, AuditEntry]:
        docs = self.storage.get_docs(org, AUDIT, [self.key(s) for s in seqs]) if seqs else {}
        return {int(k): AuditEntry.from_doc(d) for k, d in docs.items()}

    def iter(self, org: str, limit: int = 100, offset: int = 0, newest_first: bool = True) -> Iterator[AuditEntry]:
        order = "sort_desc" if newest_first else "sort_asc"
        for _, doc in self.storage.list_docs(org, AUDIT, limit=limit, offset=offset, order=order):
            yield AuditEntry.from_doc(doc)

    def rows(self, entries: Sequence[AuditEntry]) -> Rows:
        return [(self.key(e.seq), e.to_doc(), float(e.seq)) for e in entries]


# --------------------------------------------------------------------------- audit head and per-object index

AUDIT_HEAD = "audit_head"
AUDIT_BY_OBJECT = "audit_by_object"


@dataclass(frozen=True)
class AuditHead:
    """The last entry of an organisation's chain (one document, key "head")."""

    seq: int
    hash: str

    KEY = "head"

    def to_doc(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> AuditHead:
        return cls(seq=int(doc.get("seq") or 0), hash=str(doc.get("hash") or ""))


class AuditHeads:
    """The one accessor of the `audit_head` collection (written with each entry by `AuditLog.append`)."""

    def __init__(self, storage: DocumentStore) -> None:
        self.storage = storage

    def get(self, org: str) -> AuditHead | None:
        doc = self.storage.get_docs(org, AUDIT_HEAD, [AuditHead.KEY]).get(AuditHead.KEY)
        return AuditHead.from_doc(doc) if doc is not None else None

    def stored(self, org: str) -> dict[str, Any] | None:
        """The head document as stored (what `audit verify` compares, untidied)."""
        return self.storage.get_docs(org, AUDIT_HEAD, [AuditHead.KEY]).get(AuditHead.KEY)

    @staticmethod
    def expect(seq: int) -> Expect:
        """The condition of a write chained to entry `seq` (0: the chain is still empty)."""
        return Expect(AUDIT_HEAD, AuditHead.KEY, "seq", seq) if seq else Expect(AUDIT_HEAD, AuditHead.KEY)

    @staticmethod
    def rows(head: AuditHead) -> Rows:
        return [(AuditHead.KEY, head.to_doc(), None)]


@dataclass(frozen=True)
class ObjectHistory:
    """The sequence numbers of the entries about one object (key "<collection>/<id>"), so its
    history is read by key instead of by scanning the whole log."""

    key: str
    seqs: list[int] = field(default_factory=list)

    @staticmethod
    def key_of(collection: str, object_id: str) -> str:
        return f"{collection}/{object_id}"

    def to_doc(self) -> dict[str, Any]:
        return {"seqs": list(self.seqs)}

    @classmethod
    def from_doc(cls, key: str, doc: Mapping[str, Any]) -> ObjectHistory:
        seqs = doc.get("seqs")
        return cls(key=key, seqs=[int(n) for n in seqs] if isinstance(seqs, list) else [])


class AuditIndex:
    """The one accessor of the `audit_by_object` collection (written with each entry by `AuditLog.append`)."""

    def __init__(self, storage: DocumentStore) -> None:
        self.storage = storage

    def get(self, org: str, collection: str, object_id: str) -> ObjectHistory:
        """The object's history (empty when nothing was audited about it yet)."""
        key = ObjectHistory.key_of(collection, object_id)
        doc = self.storage.get_docs(org, AUDIT_BY_OBJECT, [key]).get(key)
        return ObjectHistory.from_doc(key, doc) if doc is not None else ObjectHistory(key)

    def stored(self, org: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every index document as stored (what `audit verify` compares with the chain, untidied)."""
        yield from iter_docs(self.storage, org, AUDIT_BY_OBJECT)

    @staticmethod
    def rows(histories: Sequence[ObjectHistory]) -> Rows:
        return [(h.key, h.to_doc(), None) for h in histories]


# --------------------------------------------------------------------------- cases by source

CASES_BY_SOURCE = "cases_by_source"


@dataclass(frozen=True)
class SourceCases:
    """The cases opened on one source (key "<kind>:<id>": "post:p1", "narrative:n1"), oldest first."""

    key: str
    case_ids: list[str] = field(default_factory=list)

    @staticmethod
    def key_of(kind: str, source_id: str) -> str:
        return f"{kind}:{source_id}"

    def to_doc(self) -> dict[str, Any]:
        return {"case_ids": list(self.case_ids)}

    @classmethod
    def from_doc(cls, key: str, doc: Mapping[str, Any]) -> SourceCases:
        ids = doc.get("case_ids")
        return cls(key=key, case_ids=[str(i) for i in ids] if isinstance(ids, list) else [])


class CasesBySource:
    """The one accessor of the `cases_by_source` collection (written with the case by `CaseBook.open`)."""

    def __init__(self, storage: DocumentStore) -> None:
        self.storage = storage

    def get(self, org: str, kind: str, source_id: str) -> SourceCases | None:
        key = SourceCases.key_of(kind, source_id)
        doc = self.storage.get_docs(org, CASES_BY_SOURCE, [key]).get(key)
        return SourceCases.from_doc(key, doc) if doc is not None else None

    @staticmethod
    def expect_unchanged(key: str, found: SourceCases | None) -> Expect:
        """The condition that the index still is what was read (`found`; None: absent)."""
        return Expect(CASES_BY_SOURCE, key, "case_ids", found.case_ids) if found is not None else Expect(CASES_BY_SOURCE, key)

    @staticmethod
    def rows(entries: Sequence[SourceCases]) -> Rows:
        return [(e.key, e.to_doc(), None) for e in entries]


# --------------------------------------------------------------------------- match reviews

MATCH_REVIEWS = "match_reviews"


@dataclass(frozen=True)
class MatchReview:
    """A reviewer's decision on one match candidate (key: post id and fact-check id, see `key`):
    the same claim or not, who and when, and the matcher's own decision it overrides."""

    post_id: str
    factcheck_id: str
    same: bool
    by: str
    at: str
    note: str = ""
    matcher_decision: str = ""
    matcher_decided_by: str = ""
    fused_score: float = 0.0
    decided_by: str = ""

    @staticmethod
    def key_of(post_id: str, factcheck_id: str) -> str:
        return f"{post_id}\x1f{factcheck_id}"

    @property
    def key(self) -> str:
        return self.key_of(self.post_id, self.factcheck_id)

    def to_doc(self) -> dict[str, Any]:
        return {"post_id": self.post_id, "factcheck_id": self.factcheck_id, "same": self.same, "by": self.by, "at": self.at, "note": self.note,
                "matcher_decision": self.matcher_decision, "matcher_decided_by": self.matcher_decided_by, "fused_score": self.fused_score,
                "decided_by": self.decided_by}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> MatchReview:
        score = doc.get("fused_score")
        return cls(post_id=_str(doc, "post_id"), factcheck_id=_str(doc, "factcheck_id"), same=bool(doc.get("same")), by=_str(doc, "by"),
                   at=_str(doc, "at"), note=_str(doc, "note"), matcher_decision=_str(doc, "matcher_decision"),
                   matcher_decided_by=_str(doc, "matcher_decided_by"), fused_score=float(score) if isinstance(score, int | float) else 0.0,
                   decided_by=_str(doc, "decided_by"))


class MatchReviewRecords:
    """The one accessor of the `match_reviews` collection (written through the audit log by
    `workflow.match_reviews.MatchReviews.decide`)."""

    def __init__(self, storage: DocumentStore) -> None:
        self.storage = storage

    def any(self, org: str) -> bool:
        return self.storage.count_docs(org, MATCH_REVIEWS) > 0

    def get(self, org: str, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], MatchReview]:
        """The reviews of these (post id, fact-check id) pairs that exist (cheap when nobody reviewed anything)."""
        if not pairs or not self.any(org):
            return {}
        found = self.storage.get_docs(org, MATCH_REVIEWS, [MatchReview.key_of(p, f) for p, f in pairs])
        reviews = (MatchReview.from_doc(d) for d in found.values())
        return {(r.post_id, r.factcheck_id): r for r in reviews}

    def iter(self, org: str) -> Iterator[MatchReview]:
        for _, doc in iter_docs(self.storage, org, MATCH_REVIEWS):
            yield MatchReview.from_doc(doc)

    @staticmethod
    def rows(reviews: Sequence[MatchReview]) -> Rows:
        """The storage rows (sorted by decision time), for `AuditLog.append(records=...)`."""
        return [(r.key, r.to_doc(), _timestamp(r.at)) for r in reviews]
