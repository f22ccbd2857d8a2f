"""Cases: the fact-checking workflow, one state machine per checked claim.

    open ──draft verdict──► in_review ──approve (a second editor)──► approved ──publish──► published
      ▲                        │                                                         │
      └──── return for changes ┘                                 correct (shown publicly)┘
    open / in_review ──close──► closed                                                   │
                                  published ──withdraw (proposed, a second editor approves)──► withdrawn

* analysts and editors open cases (from a post, a narrative or by hand), assign
  them, collect evidence (links, notes, files) and draft the verdict;
* an editor who did not draft the verdict approves it; redrafting withdraws
  the approval;
* an editor publishes: a public snapshot (only the public fields: never
  internal notes or files) goes to the "published" collection, and the
  fact-check enters the organisation's own library so later posts repeating
  the claim match it;
* a published verdict can be corrected; corrections are shown publicly and
  the ClaimReview's rating and dateModified follow;
* a published verdict can be withdrawn: one editor proposes it with the reason,
  a second approves; the public page and ClaimReview then say "withdrawn" (with
  the reason and date), its library entry is marked withdrawn and stops
  matching posts as a debunk (pipeline/withdrawals.py). Nothing is deleted.

Every change bumps the case's `version` (stale forms get Conflict) and writes
an audit entry with the state before and after.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from factbridge.backends.storage.base import Expect, Rows, Storage
from factbridge.errors import Conflict, InputError, PermissionDenied, PreconditionFailed
from factbridge.models import FactCheck
from factbridge.pipeline.prepare import prepare_factcheck
from factbridge.pipeline.withdrawals import WithdrawnList
from factbridge.text.dates import parse_date_lenient
from factbridge.workflow.accounts import Actor
from factbridge.workflow.audit import AuditLog, plain
from factbridge.workflow.records import CASES as CASES
from factbridge.workflow.records import CASES_BY_SOURCE as CASES_BY_SOURCE
from factbridge.workflow.records import PUBLISHED as PUBLISHED
from factbridge.workflow.records import (
    Approval,
    Case,
    Cases,
    CasesBySource,
    CaseSource,
    Correction,
    EvidenceFile,
    EvidenceItem,
    LanguageVersion,
    PendingCorrection,
    PendingWithdrawal,
    Publication,
    PublicSource,
    PublishedPage,
    PublishedPages,
    ReviewNote,
    SourceCases,
    Verdict,
    Withdrawal,
)

STATES = ("open", "in_review", "approved", "published", "closed", "withdrawn")
EVIDENCE_KINDS = ("link", "note", "file")
DECIDED_BY = "factbridge-workflow-1"

# ClaimReview ratingValue on the 1 (worst) .. 5 (best) scale for the usual text
# verdicts; verdicts outside a truth scale (Satire, Unproven...) carry none.
DEFAULT_RATING_VALUES: dict[str, float] = {
    "true": 5.0,
    "mostly true": 4.0,
    "mixture": 3.0,
    "half true": 3.0,
    "mostly false": 2.0,
    "false": 1.0,
    "misleading": 2.0,
    "scam": 1.0,
}


@dataclass(frozen=True)
class RatingScale:
    names: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> RatingScale:
        names = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
        if not names:
            raise InputError("the rating scale is empty", field="rating_scale")
        return cls(names)

    def check(self, rating: str) -> str:
        for name in self.names:
            if name.lower() == rating.strip().lower():
                return name
        raise InputError(f"'{rating}' is not on the rating scale ({', '.join(self.names)})", field="rating")

    def value(self, rating: str) -> float | None:
        return DEFAULT_RATING_VALUES.get(rating.strip().lower())


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def clean_text(value: str | None, name: str, *, required: bool = True, limit: int = 20_000) -> str:
    """A form field, stripped; required and length limits raise InputError naming the field."""
    text = (value or "").strip()
    if required and not text:
        raise InputError(f"{name} is required", field=name)
    if len(text) > limit:
        raise InputError(f"{name} is longer than {limit} characters", field=name)
    return text


def _url(value: str, name: str = "url") -> str:
    url = clean_text(value, name, limit=2000)
    if not url.lower().startswith(("http://", "https://")):
        raise InputError("links must start with http:// or https://", field=name)
    return url


class CaseBook:
    def __init__(self, storage: Storage, audit: AuditLog, scale: RatingScale) -> None:
        self.storage = storage
        self.audit = audit
        self.scale = scale
        self.records = Cases(storage)
        self.pages = PublishedPages(storage)
        self.by_source = CasesBySource(storage)

    # -- reading (typed records; the JSON API answers with their `to_doc()`) ---
    def get(self, org: str, case_id: str) -> Case:
        return self.records.one(org, case_id)

    def find(self, org: str, status: str | None = None, limit: int = 200) -> list[Case]:
        return [c for c in self.records.iter(org) if not status or c.status == status][:limit]

    def cases_for(self, org: str, kind: str, source_id: str) -> list[Case]:
        entry = self.by_source.get(org, kind, source_id)
        ids = entry.case_ids if entry is not None else []
        found = self.records.get(org, ids)
        return [found[i] for i in ids if i in found]

    def published(self, org: str, case_id: str) -> PublishedPage:
        return self.pages.one(org, case_id)

    def published_pages(self, org: str, case_ids: Sequence[str]) -> dict[str, PublishedPage]:
        return self.pages.get(org, case_ids)

    def list_published(self, org: str, limit: int = 1000, offset: int = 0) -> list[PublishedPage]:
        return list(self.pages.iter(org, limit=limit, offset=offset))

    # -- writing -----------------------------------------------------------
    def _save(self, org: str, actor: Actor, action: str, before: Case | Mapping[str, Any] | None, after: Case | Mapping[str, Any],
              also: Sequence[tuple[str, Rows]] = (), also_expect: Sequence[Expect] = ()) -> Case:
        # (a document is taken too, as read from the collection: the tests' stale writes pass them)
        before = Case.from_doc(str(before.get("id") or ""), before) if isinstance(before, Mapping) else before
        after = Case.from_doc(str(after.get("id") or ""), after) if isinstance(after, Mapping) else after
        # Compare-and-set inside the storage transaction: of two requests (in any processes) that
        # loaded the same version, the second gets Conflict instead of silently overwriting the first.
        version = before.version if before is not None else 0
        saved = Case.from_doc(after.id, plain(after.with_(version=version + 1, updated_at=now_iso()).to_doc()))
        doc = saved.to_doc()
        expect = Expect(CASES, saved.id, "version", version) if before is not None else Expect(CASES, saved.id)
        try:
            self.audit.append(org, actor.username, action, CASES, saved.id, before.to_doc() if before is not None else None, doc,
                              records=[(CASES, self.records.rows([saved])), *also], expect=[expect, *also_expect])
        except PreconditionFailed as exc:
            if exc.key != (org, CASES, saved.id):
                raise
            current = self.records.get(org, [saved.id]).get(saved.id)
            raise self._stale(saved.id, current, version) from exc
        return saved

    @staticmethod
    def _stale(case_id: str, current: Case | None, yours: int | None) -> Conflict:
        """The 409 of a stale write: it names the current version, so an API client can reload
        (GET the case) and retry with it."""
        now = current.version if current is not None else None
        return Conflict(f"case '{case_id}' changed since you read it: someone else saved version {now} (yours {yours}); "
                        "reload and try again",
                        current={"id": case_id, "version": now, "status": current.status if current is not None else None})

    def _load_for_change(self, org: str, case_id: str, version: int | None) -> Case:
        case = self.records.one(org, case_id)
        if version is not None and case.version != int(version):
            raise self._stale(case_id, case, version)
        return case

    @staticmethod
    def _expect(case: Case, states: tuple[str, ...], doing: str) -> None:
        if case.status not in states:
            raise Conflict(f"cannot {doing}: the case is {case.status.replace('_', ' ')}")

    @staticmethod
    def _verdict(case: Case) -> Verdict:
        if case.verdict is None:
            raise Conflict("the case has no verdict yet")
        return case.verdict

    def open(self, org: str, actor: Actor, claim: str, *, title: str = "", source_kind: str = "manual", source_id: str = "",
             language: str | None = None, claimant: str = "", claim_date: str | None = None) -> Case:
        actor.check("case.open")
        if source_kind not in ("post", "narrative", "manual", "report"):
            raise InputError("source must be post, narrative, report or manual", field="source_kind")
        case = Case(
            id=_new_id("case"),
            org=org,
            title=clean_text(title, "title", required=False, limit=300) or clean_text(claim, "claim", limit=2000)[:120],
            claim=clean_text(claim, "claim", limit=2000),
            claimant=clean_text(claimant, "claimant", required=False, limit=300),
            claim_date=claim_date,
            language=(language or "").lower() or None,
            status="open",
            source=CaseSource(kind=source_kind, id=source_id),
            created_at=now_iso(),
            created_by=actor.username,
            assignee=actor.username,
        )
        if not source_id:
            return self._save(org, actor, "case.open", None, case)
        # The source's index is written in the transaction of the case, on condition that it is
        # still what was read: it never misses a case nor names one that is not there.
        key = SourceCases.key_of(source_kind, source_id)
        for _ in range(50):
            found = self.by_source.get(org, source_kind, source_id)
            entry = SourceCases(key, [*(found.case_ids if found is not None else []), case.id])
            try:
                return self._save(org, actor, "case.open", None, case, [(CASES_BY_SOURCE, self.by_source.rows([entry]))],
                                  [self.by_source.expect_unchanged(key, found)])
            except PreconditionFailed as exc:
                if exc.key != (org, CASES_BY_SOURCE, key):
                    raise
        raise Conflict("too many cases are being opened on this source at once; try again")

    def assign(self, org: str, actor: Actor, case_id: str, assignee: str, version: int | None = None) -> Case:
        actor.check("case.assign")
        case = self._load_for_change(org, case_id, version)
        self._expect(case, ("open", "in_review", "approved"), "assign")
        return self._save(org, actor, "case.assign", case, case.with_(assignee=clean_text(assignee, "assignee", limit=40).lower()))

    def add_evidence(self, org: str, actor: Actor, case_id: str, kind: str, *, url: str = "", text: str = "",
                     file: dict[str, Any] | None = None, version: int | None = None) -> Case:
        actor.check("case.evidence")
        case = self._load_for_change(org, case_id, version)
        self._expect(case, ("open", "in_review"), "add evidence")
        if kind not in EVIDENCE_KINDS:
            raise InputError(f"evidence kind must be one of {', '.join(EVIDENCE_KINDS)}", field="kind")
        item = EvidenceItem(id=_new_id("ev"), kind=kind, added_by=actor.username, added_at=now_iso())
        if kind == "link":
            item = replace(item, url=_url(url), text=clean_text(text, "text", required=False, limit=2000))
        elif kind == "note":
            item = replace(item, text=clean_text(text, "text"))
        else:
            if not file:
                raise InputError("no file was uploaded", field="file")
            item = replace(item, file=EvidenceFile.from_doc(file), text=clean_text(text, "text", required=False, limit=2000))
        return self._save(org, actor, "case.evidence", case, case.with_(evidence=[*case.evidence, item]))

    def draft_verdict(self, org: str, actor: Actor, case_id: str, rating: str, explanation: str, *, headline: str = "",
                      language: str | None = None, version: int | None = None) -> Case:
        actor.check("case.verdict")
        case = self._load_for_change(org, case_id, version)
        self._expect(case, ("open", "in_review", "approved"), "draft a verdict")
        name = self.scale.check(rating)
        verdict = Verdict(
            rating=name,
            rating_value=self.scale.value(name),
            explanation=clean_text(explanation, "explanation"),
            headline=clean_text(headline, "headline", required=False, limit=300) or case.title,
            language=(language or case.language or "").lower() or None,
            drafted_by=actor.username,
            drafted_at=now_iso(),
        )
        # A new draft withdraws any earlier approval: the approver approved other words.
        return self._save(org, actor, "case.verdict", case, case.with_(verdict=verdict, approval=None, status="in_review"))

    def add_version(self, org: str, actor: Actor, case_id: str, language: str, claim: str, headline: str, explanation: str,
                    version: int | None = None) -> Case:
        """The verdict in another language (same rating and evidence): published with it as one
        group of ClaimReviews, one per language, each indexed for matching. New words need
        approval again."""
        actor.check("case.version")
        case = self._load_for_change(org, case_id, version)
        self._expect(case, ("open", "in_review", "approved"), "add a language version")
        if case.verdict is None:
            raise InputError("draft the verdict first, then its versions in other languages", field="language")
        lang = clean_text(language, "language", limit=8).lower()
        if lang == (case.verdict.language or ""):
            raise InputError(f"the verdict itself is in '{lang}': choose another language", field="language")
        item = LanguageVersion(language=lang, claim=clean_text(claim, "claim", limit=2000), headline=clean_text(headline, "headline", limit=300),
                               explanation=clean_text(explanation, "explanation"), by=actor.username, at=now_iso())
        changes: dict[str, Any] = {"versions": {**(case.versions or {}), lang: item}}
        if case.status == "approved":
            changes.update(approval=None, status="in_review")
        return self._save(org, actor, "case.version", case, case.with_(**changes))

    def approve(self, org: str, actor: Actor, case_id: str, version: int | None = None) -> Case:
        actor.check("case.approve")
        case = self._load_for_change(org, case_id, version)
        self._expect(case, ("in_review",), "approve")
        if self._verdict(case).drafted_by == actor.username:
            raise PermissionDenied("a second editor must approve: you drafted this verdict")
        approval = Approval(by=actor.username, at=now_iso())
        return self._save(org, actor, "case.approve", case, case.with_(approval=approval, status="approved"))

    def return_for_changes(self, org: str, actor: Actor, case_id: str, note: str, version: int | None = None) -> Case:
        actor.check("case.return")
        case = self._load_for_change(org, case_id, version)
        self._expect(case, ("in_review", "approved"), "return the verdict")
        notes = [*case.review_notes, ReviewNote(by=actor.username, at=now_iso(), text=clean_text(note, "note"))]
        return self._save(org, actor, "case.return", case, case.with_(approval=None, status="open", review_notes=notes))

    def close(self, org: str, actor: Actor, case_id: str, reason: str, version: int | None = None) -> Case:
        actor.check("case.close")
        case = self._load_for_change(org, case_id, version)
        self._expect(case, ("open", "in_review"), "close")
        return self._save(org, actor, "case.close", case, case.with_(status="closed", closed_reason=clean_text(reason, "reason")))

    def publish(self, org: str, actor: Actor, case_id: str, base_url: str, org_name: str, version: int | None = None) -> Case:
        actor.check("case.publish")
        case = self._load_for_change(org, case_id, version)
        self._expect(case, ("approved",), "publish")
        url = f"{base_url.rstrip('/')}/public/{org}/factchecks/{case_id}"
        publication = Publication(url=url, published_at=now_iso(), published_by=actor.username, org_name=org_name)
        after = self._save(org, actor, "case.publish", case, case.with_(publication=publication, status="published"))
        self._write_public(org, actor, "published.create", after, None)
        return after

    def correct(self, org: str, actor: Actor, case_id: str, text: str, new_rating: str = "", version: int | None = None) -> Case:
        """A correction of a published verdict. One that only explains (same rating) is public at
        once; one that changes the rating waits, like the verdict did, for a second editor
        (`decide_correction`): until then the public verdict stays as it was."""
        actor.check("case.correct")
        case = self._load_for_change(org, case_id, version)
        self._expect(case, ("published",), "correct")
        verdict = self._verdict(case)
        correction = Correction(at=now_iso(), by=actor.username, text=clean_text(text, "text", limit=5000), previous_rating=verdict.rating,
                                new_rating=verdict.rating)
        name = self.scale.check(new_rating) if new_rating.strip() else verdict.rating
        if name != verdict.rating:
            if case.pending_correction:
                raise Conflict("a change of the rating is already waiting for a second editor; decide it first")
            pending = PendingCorrection(at=correction.at, by=correction.by, text=correction.text, previous_rating=verdict.rating,
                                        new_rating=name, rating_value=self.scale.value(name))
            return self._save(org, actor, "case.correct.propose", case, case.with_(pending_correction=pending))
        after = self._save(org, actor, "case.correct", case, case.with_(corrections=[*case.corrections, correction]))
        self._write_public(org, actor, "published.correct", after, self.pages.one(org, case_id))
        return after

    def decide_correction(self, org: str, actor: Actor, case_id: str, approve: bool, version: int | None = None) -> Case:
        """A second editor approves the waiting change of rating (it becomes public, with its
        correction note), or anyone with the right rejects it (withdrawn, nothing public changes)."""
        actor.check("case.correction.approve")
        case = self._load_for_change(org, case_id, version)
        self._expect(case, ("published",), "decide a correction")
        pending = case.pending_correction
        if not pending:
            raise Conflict("no change of the rating is waiting")
        if not approve:
            return self._save(org, actor, "case.correct.reject", case, case.with_(pending_correction=None))
        if pending.by == actor.username:
            raise PermissionDenied("a second editor must approve: you proposed this change of the rating")
        verdict = replace(self._verdict(case), rating=pending.new_rating, rating_value=pending.rating_value)
        correction = Correction(at=now_iso(), by=pending.by, text=pending.text, previous_rating=pending.previous_rating,
                                new_rating=pending.new_rating, approved_by=actor.username)
        after = self._save(org, actor, "case.correct", case, case.with_(verdict=verdict, corrections=[*case.corrections, correction],
                                                                        pending_correction=None))
        self._write_public(org, actor, "published.correct", after, self.pages.one(org, case_id))
        return after

    def withdraw(self, org: str, actor: Actor, case_id: str, reason: str, version: int | None = None) -> Case:
        """Propose to withdraw a published fact-check; it waits, like a change of rating, for a
        second editor (`decide_withdrawal`): until then the public verdict stays as it was."""
        actor.check("case.withdraw")
        case = self._load_for_change(org, case_id, version)
        self._expect(case, ("published",), "withdraw")
        if case.pending_withdrawal:
            raise Conflict("a withdrawal is already waiting for a second editor; decide it first")
        pending = PendingWithdrawal(at=now_iso(), by=actor.username, reason=clean_text(reason, "reason", limit=5000))
        return self._save(org, actor, "case.withdraw.propose", case, case.with_(pending_withdrawal=pending))

    def decide_withdrawal(self, org: str, actor: Actor, case_id: str, approve: bool, version: int | None = None) -> Case:
        """A second editor approves the waiting withdrawal (the public page and ClaimReview say
        "withdrawn", the library entry is marked and no longer matched), or anyone with the right
        rejects it (nothing public changes)."""
        actor.check("case.withdrawal.approve")
        case = self._load_for_change(org, case_id, version)
        self._expect(case, ("published",), "decide a withdrawal")
        pending = case.pending_withdrawal
        if not pending:
            raise Conflict("no withdrawal is waiting")
        if not approve:
            return self._save(org, actor, "case.withdraw.reject", case, case.with_(pending_withdrawal=None))
        if pending.by == actor.username:
            raise PermissionDenied("a second editor must approve: you proposed this withdrawal")
        withdrawal = Withdrawal(at=now_iso(), reason=pending.reason, proposed_by=pending.by, proposed_at=pending.at, approved_by=actor.username)
        # a change of rating still waiting is moot: the verdict is withdrawn as it stands
        after = self._save(org, actor, "case.withdraw", case, case.with_(status="withdrawn", withdrawal=withdrawal,
                                                                         pending_withdrawal=None, pending_correction=None))
        self._write_public(org, actor, "published.withdraw", after, self.pages.one(org, case_id))
        return after

    # -- public snapshot -----------------------------------------------------
    def _write_public(self, org: str, actor: Actor, action: str, case: Case, before: PublishedPage | None) -> None:
        pub, verdict = case.publication, self._verdict(case)
        if pub is None:
            raise Conflict("the case is not published")
        withdrawal = case.withdrawal
        snapshot = PublishedPage.from_doc(case.id, plain(PublishedPage(
            page_id=case.id,
            case_id=case.id,
            org=org,
            org_name=pub.org_name,
            url=pub.url,
            claim=case.claim,
            claimant=case.claimant,
            claim_date=case.claim_date,
            headline=verdict.headline,
            rating=verdict.rating,
            rating_value=verdict.rating_value,
            explanation=verdict.explanation,
            language=verdict.language,
            # Only links are public sources; notes and files stay in the workspace.
            sources=[PublicSource(url=e.url or "", text=e.text or "") for e in case.evidence if e.kind == "link"],
            published_at=pub.published_at,
            # public when withdrawn: when and why (who decided stays in the workspace and the audit log)
            modified_at=withdrawal.at if withdrawal else case.corrections[-1].at if case.corrections else None,
            corrections=[c.public() for c in case.corrections],
            withdrawn=withdrawal.public() if withdrawal else None,
        ).to_doc()))
        # The verdict's other languages: one page and one ClaimReview each, the same rating, linked as a group.
        versions = case.versions or {}
        pages = [snapshot, *(replace(snapshot, page_id=f"{case.id}-{lang}", url=f"{pub.url}-{lang}", language=lang, claim=v.claim,
                                     headline=v.headline, explanation=v.explanation) for lang, v in versions.items())]
        group = {(page.language or ""): page.url for page in pages} if versions else {}
        pages = [replace(page, versions=group) for page in pages]
        records: list[tuple[str, Rows]] = [(PUBLISHED, self.pages.rows(pages))]
        if snapshot.withdrawn is not None:  # the matcher's list of withdrawn entries changes with the decision, atomically
            records.append(WithdrawnList.rows([page.url for page in pages], snapshot.withdrawn.to_doc() | {"case_id": case.id}))
        self.audit.append(org, actor.username, action, PUBLISHED, case.id, before.to_doc() if before is not None else None, pages[0].to_doc(),
                          records=records)
        self.storage.upsert_factchecks(org, [prepare_factcheck(published_factcheck(page.to_doc())) for page in pages])
        if action == "published.create":
            from factbridge.workflow.publishing import on_published

            on_published(self.storage, org, case.to_doc(), published_factcheck(pages[0].to_doc()))


def published_factcheck(snapshot: dict[str, Any]) -> FactCheck:
    """The published verdict as a library fact-check, keyed by its public URL as an import would key it."""
    return FactCheck(
        id=snapshot["url"],
        claim=snapshot["claim"],
        title=snapshot["headline"],
        rating=snapshot["rating"],
        rating_value=snapshot["rating_value"],
        publisher=snapshot["org_name"],
        url=snapshot["url"],
        language=snapshot.get("language"),
        claim_date=parse_date_lenient(snapshot.get("claim_date")),
        published_at=parse_date_lenient(snapshot["published_at"]),
        claimant=snapshot.get("claimant") or "",
        source_format="factbridge",
        # the group's other languages, as schema.org links: matching and the desk find each version
        raw=({"workTranslation": [{"@id": url} for url in (snapshot.get("versions") or {}).values() if url != snapshot["url"]]}
             if snapshot.get("versions") else {}) | ({"withdrawn": snapshot["withdrawn"]} if snapshot.get("withdrawn") else {}),
    )
