"""The workflow's typed records (issue 11): every document the workflow stores reads back
through its record and accessor and writes out unchanged (`to_doc(from_doc(d)) == d`), so
existing databases, the audit log's fingerprints and the public pages keep working."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from factbridge.backends.storage.sqlite import SQLiteStorage
from factbridge.errors import Conflict
from factbridge.workflow.accounts import Accounts, Actor
from factbridge.workflow.appeals import Appeals
from factbridge.workflow.audit import AuditLog, entry_hash, record_sha
from factbridge.workflow.cases import CaseBook, RatingScale
from factbridge.workflow.records import (
    API_TOKENS,
    APPEALS,
    AUDIT,
    AUDIT_BY_OBJECT,
    AUDIT_HEAD,
    CASES,
    CASES_BY_SOURCE,
    PUBLISHED,
    SESSIONS,
    SYSTEM_ORG,
    USERS,
    ApiTokens,
    Appeal,
    AppealRecords,
    AuditEntries,
    AuditEntry,
    AuditHead,
    AuditHeads,
    AuditIndex,
    Case,
    Cases,
    CasesBySource,
    ObjectHistory,
    PublishedPage,
    PublishedPages,
    SessionSlot,
    SessionSlots,
    SourceCases,
    TokenRecord,
    UserRecord,
    Users,
)

ORG = "desk-a"


@dataclass
class Desk:
    storage: SQLiteStorage
    audit: AuditLog
    cases: CaseBook
    appeals: Appeals
    rev: Actor
    accounts: Accounts
    ids: dict[str, str]


def stored(storage: SQLiteStorage, collection: str) -> list[tuple[str, dict[str, Any]]]:
    return storage.list_docs(ORG, collection, limit=10_000)


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    storage = SQLiteStorage(f"sqlite:///{tmp_path / 'fb.db'}")
    storage.migrate()
    audit = AuditLog.in_data_dir(storage, tmp_path)
    accounts = Accounts(storage, audit, hash_time_cost=1, hash_memory_kib=1024)
    cases = CaseBook(storage, audit, RatingScale.parse("True,False,Misleading"))
    appeals = Appeals(storage, audit, cases)
    accounts.add_org(ORG, "Desk A")
    ed = accounts.add_user("ed", "password-123456", ORG, "editor")
    rev = accounts.add_user("rev", "password-123456", ORG, "editor")
    # a published case with every part: link, note and file evidence, a language version,
    # a returned draft, a correction, an approved and a rejected change of rating, a withdrawal
    c = cases.open(ORG, ed, "5G spreads the virus", source_kind="post", source_id="p1", language="EN", claimant="a page",
                   claim_date="2024-03-01").id
    cases.add_evidence(ORG, ed, c, "link", url="https://who.example.int/5g", text="WHO")
    cases.add_evidence(ORG, ed, c, "note", text="called the lab")
    cases.add_evidence(ORG, ed, c, "file", file={"name": "a.png", "sha256": "ab" * 32, "size": 3}, text="screenshot")
    cases.draft_verdict(ORG, ed, c, "False", "Radio waves carry no virus.")
    cases.return_for_changes(ORG, rev, c, "cite the WHO page")
    cases.draft_verdict(ORG, ed, c, "False", "Radio waves carry no virus (WHO).", headline="No, 5G does not spread viruses")
    cases.add_version(ORG, ed, c, "fr", "La 5G propage le virus", "Non", "Les ondes ne portent aucun virus.")
    cases.approve(ORG, rev, c)
    cases.publish(ORG, rev, c, "https://desk-a.example", "Desk A")
    appeal = appeals.file(ORG, c, "The source is old", contact="x@example.org").id
    cases.correct(ORG, ed, c, "Added the 2024 WHO page")
    appeals.decide(ORG, rev, appeal, "corrected", "see the correction")
    cases.correct(ORG, ed, c, "Misleading rather than false", new_rating="Misleading")
    cases.decide_correction(ORG, rev, c, approve=True)
    cases.correct(ORG, ed, c, "True after all", new_rating="True")
    cases.decide_correction(ORG, rev, c, approve=False)
    cases.withdraw(ORG, ed, c, "wrong claim")
    cases.decide_withdrawal(ORG, rev, c, approve=False)
    cases.withdraw(ORG, ed, c, "the claim was misquoted")
    cases.decide_withdrawal(ORG, rev, c, approve=True)
    appeals.file(ORG, c, "still wrong")
    # a plain published one, a closed one, an open one and one waiting for approval
    p = cases.open(ORG, ed, "another claim").id
    cases.draft_verdict(ORG, ed, p, "True", "It is.")
    cases.approve(ORG, rev, p)
    cases.publish(ORG, ed, p, "https://desk-a.example", "Desk A")
    closed = cases.open(ORG, ed, "a third claim", source_kind="narrative", source_id="n1").id
    cases.close(ORG, ed, closed, "duplicate")
    cases.open(ORG, ed, "a fourth claim", source_kind="post", source_id="p1")
    waiting = cases.open(ORG, ed, "a fifth claim").id
    cases.assign(ORG, ed, waiting, "rev")
    cases.draft_verdict(ORG, ed, waiting, "False", "No.", language="de")
    # accounts: tokens (one revoked, one never expiring), sessions (one ended, one kept through a
    # change of password, one ended by it), a role change, a user disabled and enabled again
    accounts.add_user("viewer", "password-123456", ORG, "viewer", display_name="V")
    accounts.create_token("viewer", "scripts")
    accounts.create_token("viewer", "forever", expires=None)
    revoked = accounts.create_token("ed", "old")
    accounts.revoke_token(ORG, accounts.list_tokens(ORG, "ed")[0].id)
    assert accounts.list_tokens(ORG, "ed")[0].revoked and accounts.token_actor(accounts.create_token("rev", "ci")).username == "rev"
    kept, _ = accounts.start_session(ed)
    accounts.start_session(ed)
    ended, _ = accounts.start_session(rev)
    accounts.end_session(ended)
    accounts.change_password("ed", "password-123456", "password-654321", keep_session=kept.partition(".")[0])
    assert accounts.session(kept).actor.username == "ed" and revoked
    accounts.set_role("viewer", "analyst")
    accounts.set_disabled("viewer", True)
    accounts.set_disabled("viewer", False)
    accounts.set_password("viewer", "password-999999")
    accounts.start_session(accounts.authenticate("viewer", "password-999999"))
    yield Desk(storage, audit, cases, appeals, rev, accounts, {"withdrawn": c, "published": p, "closed": closed, "waiting": waiting, "appeal": appeal})
    storage.close()


def test_every_stored_case_round_trips(desk: Desk) -> None:
    docs = stored(desk.storage, CASES)
    assert len(docs) == 5
    present = set()
    for case_id, doc in docs:
        case = Case.from_doc(case_id, doc)
        assert case.to_doc() == doc
        present |= case.present
    # every optional part of a case occurred in some stored document
    assert present == set(Case.OPTIONAL + Case.UNSAVED)
    case = Cases(desk.storage).one(ORG, desk.ids["withdrawn"])
    assert case.status == "withdrawn" and case.verdict is not None and case.verdict.rating == "Misleading"
    assert case.publication is not None and case.publication.org_name == "Desk A"
    assert case.pending_correction is None and "pending_correction" in case.present
    assert case.withdrawal is not None and case.withdrawal.proposed_by == "ed"
    assert [e.kind for e in case.evidence] == ["link", "note", "file"] and case.versions is not None and set(case.versions) == {"fr"}
    link, note, file = case.evidence
    assert (link.url, link.text, note.url, note.text, file.text) == ("https://who.example.int/5g", "WHO", None, "called the lab", "screenshot")
    assert file.file is not None and (file.file.name, file.file.size, file.file.content_type) == ("a.png", 3, None)
    assert case.versions["fr"].headline == "Non" and case.source.kind == "post" and case.source.id == "p1"
    assert [(c.previous_rating, c.new_rating, c.approved_by) for c in case.corrections] == [("False", "False", None), ("False", "Misleading", "rev")]
    assert case.review_notes[0].text == "cite the WHO page" and case.approval is not None and case.approval.by == "rev"
    assert case.library_ids() == [case.publication.url, f"{case.publication.url}-fr"]
    waiting = Cases(desk.storage).one(ORG, desk.ids["waiting"])
    assert waiting.pending_correction is None and "pending_correction" not in waiting.present
    assert [c.id for c in Cases(desk.storage).iter(ORG)][0] == desk.ids["waiting"]  # most recently updated first
    assert desk.cases.get(ORG, desk.ids["closed"]).to_doc() == dict(desk.storage.get_docs(ORG, CASES, [desk.ids["closed"]])[desk.ids["closed"]])


def test_every_published_page_round_trips(desk: Desk) -> None:
    docs = stored(desk.storage, PUBLISHED)
    assert {pid for pid, _ in docs} == {desk.ids["withdrawn"], f"{desk.ids['withdrawn']}-fr", desk.ids["published"]}
    for page_id, doc in docs:
        assert PublishedPage.from_doc(page_id, doc).to_doc() == doc
    pages = PublishedPages(desk.storage).get(ORG, [desk.ids["withdrawn"], f"{desk.ids['withdrawn']}-fr"])
    main, fr = pages[desk.ids["withdrawn"]], pages[f"{desk.ids['withdrawn']}-fr"]
    assert main.withdrawn is not None and main.withdrawn.to_doc() == {"at": main.modified_at, "reason": "the claim was misquoted"} and fr.withdrawn == main.withdrawn
    assert main.rating == fr.rating == "Misleading" and fr.language == "fr" and main.versions == {"en": main.url, "fr": fr.url}
    assert [s.url for s in main.sources] == ["https://who.example.int/5g"]  # notes and files stay private
    assert "withdrawn" not in PublishedPages(desk.storage).one(ORG, desk.ids["published"]).to_doc()


def test_every_appeal_round_trips(desk: Desk) -> None:
    docs = stored(desk.storage, APPEALS)
    assert len(docs) == 2
    for appeal_id, doc in docs:
        assert Appeal.from_doc(appeal_id, doc).to_doc() == doc
    decided = AppealRecords(desk.storage).one(ORG, desk.ids["appeal"])
    assert (decided.status, decided.outcome, decided.decided_by, decided.version) == ("decided", "corrected", "rev", 2)
    public = desk.appeals.public_outcomes(ORG, desk.ids["withdrawn"])
    assert sorted(a["status"] for a in public) == ["decided", "received"] and all("reason" not in a and "contact" not in a for a in public)
    with pytest.raises(Conflict, match="already been decided"):
        desk.appeals.decide(ORG, desk.rev, desk.ids["appeal"], "upheld", "x")


def test_every_account_record_round_trips(desk: Desk) -> None:
    kinds = {USERS: UserRecord, API_TOKENS: TokenRecord, SESSIONS: SessionSlot}
    counts = {}
    for collection, record in kinds.items():
        docs = desk.storage.list_docs(SYSTEM_ORG, collection, limit=10_000)
        for doc_id, doc in docs:
            assert record.from_doc(doc_id, doc).to_doc() == doc
        counts[collection] = len(docs)
    assert counts == {USERS: 3, API_TOKENS: 4, SESSIONS: 3}  # a freed slot is reused
    users = {u.username: u for u in Users(desk.storage).iter(ORG)}
    assert (users["viewer"].role, users["viewer"].disabled, users["viewer"].epoch, users["viewer"].display_name) == ("analyst", False, 2, "V")
    assert users["rev"].session_epoch is None and "password_hash" not in users["ed"].public()
    tokens = list(ApiTokens(desk.storage).iter())
    assert sorted((t.username, t.name, t.revoked) for t in tokens) == [
        ("ed", "old", True), ("rev", "ci", False), ("viewer", "forever", True), ("viewer", "scripts", True)]
    assert all(t.revoked_at for t in tokens if t.revoked) and [t.expires_at for t in tokens if t.name == "forever"] == [None]
    slots = list(SessionSlots(desk.storage).iter())
    live = [s for s in slots if not s.free]
    assert sorted((s.username, s.epoch) for s in live) == [("ed", 1), ("viewer", 2)] and len(slots) - len(live) == 1
    report = desk.accounts.purge_sessions()
    assert (report.scanned, report.live, report.free) == (3, 2, 1)


def test_fingerprints_and_audit_chain_unchanged(desk: Desk) -> None:
    """The last audit entry that wrote each record fingerprints exactly the document its typed
    record writes, and `audit verify` finds nothing wrong."""
    assert desk.audit.verify(ORG).problems == []
    last: dict[tuple[str, str, str], str] = {}
    for entry in desk.audit.entries(ORG, limit=10_000, newest_first=False):
        for written in entry.get("records") or []:
            last[(written["scope"], written["collection"], written["id"])] = written["sha"]
    checked = 0
    for collection, record in ((CASES, Case), (PUBLISHED, PublishedPage), (APPEALS, Appeal)):
        for doc_id, doc in stored(desk.storage, collection):
            typed: dict[str, Any] = record.from_doc(doc_id, doc).to_doc()
            assert last[(ORG, collection, doc_id)] == record_sha(typed)
            checked += 1
    for collection, record in ((USERS, UserRecord), (API_TOKENS, TokenRecord), (SESSIONS, SessionSlot)):
        for doc_id, doc in desk.storage.list_docs(SYSTEM_ORG, collection, limit=10_000):
            if doc.get("free") and (SYSTEM_ORG, collection, doc_id) not in last:
                continue  # freed by a purge: not audited (a free slot holds nothing)
            typed = record.from_doc(doc_id, doc).to_doc()
            assert last[(SYSTEM_ORG, collection, doc_id)] == record_sha(typed)
            checked += 1
    assert checked >= 10 + 3 + 4 + 2


def test_every_audit_entry_round_trips_and_keeps_its_hash(desk: Desk) -> None:
    docs = desk.storage.list_docs(ORG, AUDIT, limit=10_000, order="sort_asc")
    assert len(docs) > 40
    for entry_id, doc in docs:
        entry = AuditEntry.from_doc(doc)
        assert entry.to_doc() == doc and AuditEntries.key(entry.seq) == entry_id
        assert entry_hash(entry.to_doc()) == entry.hash  # the chain's hash is over the same document
    entries = list(AuditEntries(desk.storage).iter(ORG, limit=5))
    assert [e.seq for e in entries] == sorted((e.seq for e in entries), reverse=True)
    first = AuditEntries(desk.storage).get(ORG, [1])[1]
    assert (first.action, first.collection, first.records is not None) == ("org.create", "orgs", True)
    history = desk.audit.history(ORG, CASES, desk.ids["withdrawn"])
    assert [h["action"] for h in history][:2] == ["case.open", "case.evidence"] and history[-1]["action"] == "case.withdraw"
    # an entry from before entries listed their records (no "records" key) round-trips too
    old = {k: v for k, v in docs[0][1].items() if k != "records"}
    assert AuditEntry.from_doc(old).to_doc() == old


def test_audit_head_index_and_cases_by_source_round_trip(desk: Desk) -> None:
    (key, head_doc), = stored(desk.storage, AUDIT_HEAD)
    head = AuditHeads(desk.storage).get(ORG)
    assert key == AuditHead.KEY and head is not None and head.to_doc() == head_doc and (head.seq, head.hash) == desk.audit.head(ORG)
    index = stored(desk.storage, AUDIT_BY_OBJECT)
    assert len(index) > 5
    for key, doc in index:
        assert ObjectHistory.from_doc(key, doc).to_doc() == doc
    history = AuditIndex(desk.storage).get(ORG, CASES, desk.ids["withdrawn"])
    assert [e["seq"] for e in desk.audit.history(ORG, CASES, desk.ids["withdrawn"])] == history.seqs and len(history.seqs) > 10
    assert AuditIndex(desk.storage).get(ORG, CASES, "nothing").seqs == []
    by_source = stored(desk.storage, CASES_BY_SOURCE)
    assert {k for k, _ in by_source} == {"post:p1", "narrative:n1"}
    for key, doc in by_source:
        assert SourceCases.from_doc(key, doc).to_doc() == doc
    p1 = CasesBySource(desk.storage).get(ORG, "post", "p1")
    assert p1 is not None and p1.case_ids[0] == desk.ids["withdrawn"] and len(p1.case_ids) == 2
    assert [c.id for c in desk.cases.cases_for(ORG, "post", "p1")] == p1.case_ids
    assert CasesBySource(desk.storage).get(ORG, "post", "p2") is None and desk.audit.verify(ORG).ok
