"""The case state machine, appeals and the hash-chained audit log (no HTTP)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner
from webenv import ORG_A, ORG_B, WebEnv, publish_case, web_settings

from factbridge.cli import app as cli_app
from factbridge.errors import Conflict, InputError, NotAuthenticated, NotFound, PermissionDenied
from factbridge.services import Services
from factbridge.workflow.accounts import Accounts
from factbridge.workflow.audit import AUDIT, AuditLog
from factbridge.workflow.cases import RatingScale


def test_full_case_lifecycle_is_audited(env: WebEnv) -> None:
    web = env.web
    editor, reviewer, analyst = (web.accounts.get_user(u) for u in ("a-editor", "a-reviewer", "a-analyst"))
    case = web.cases.open(ORG_A, analyst, "Le vaccin rend stérile", source_kind="post", source_id="p1", language="fr")
    assert case.status == "open" and case.version == 1
    assert [c.id for c in web.cases.cases_for(ORG_A, "post", "p1")] == [case.id]
    case = web.cases.add_evidence(ORG_A, analyst, case.id, "note", text="internal: called the ministry")
    case = web.cases.draft_verdict(ORG_A, analyst, case.id, "false", "Aucune étude ne le montre.")
    assert case.status == "in_review" and case.verdict.rating == "False" and case.verdict.rating_value == 1.0
    with pytest.raises(PermissionDenied):
        web.cases.approve(ORG_A, analyst, case.id)  # analysts cannot approve
    case = web.cases.approve(ORG_A, editor, case.id)
    with pytest.raises(Conflict):
        web.cases.add_evidence(ORG_A, analyst, case.id, "note", text="too late")
    case = web.cases.publish(ORG_A, reviewer, case.id, "https://desk-a.example", "Desk A")
    assert case.status == "published"
    snapshot = web.cases.published(ORG_A, case.id)
    assert "internal" not in json.dumps(snapshot.to_doc())  # notes never reach the public snapshot
    case = web.cases.correct(ORG_A, editor, case.id, "Added the 2023 study.", new_rating="Mostly false")
    assert web.cases.published(ORG_A, case.id).rating == "False"  # waits for a second editor
    case = web.cases.decide_correction(ORG_A, reviewer, case.id, approve=True)
    snapshot = web.cases.published(ORG_A, case.id)
    assert snapshot.rating == "Mostly false" and snapshot.corrections[0].previous_rating == "False"
    # the published fact-check joined the organisation's own library, keyed by its public URL
    fc = env.services.storage.get_factcheck(ORG_A, snapshot.url)
    assert fc.rating == "Mostly false" and fc.publisher == "Desk A"
    actions = [e["action"] for e in web.audit.history(ORG_A, "cases", case.id)]
    assert actions == ["case.open", "case.evidence", "case.verdict", "case.approve", "case.publish", "case.correct.propose", "case.correct"]
    entry = web.audit.history(ORG_A, "cases", case.id)[3]
    assert entry["actor"] == "a-editor" and entry["before"]["status"] == "in_review" and entry["after"]["status"] == "approved"
    assert web.audit.verify(ORG_A).ok


def test_second_editor_must_differ_and_redraft_withdraws_approval(env: WebEnv) -> None:
    web = env.web
    editor, reviewer = web.accounts.get_user("a-editor"), web.accounts.get_user("a-reviewer")
    case = web.cases.open(ORG_A, editor, "claim")
    case = web.cases.draft_verdict(ORG_A, editor, case.id, "Mixture", "It depends.")
    with pytest.raises(PermissionDenied, match="second editor"):
        web.cases.approve(ORG_A, editor, case.id)
    with pytest.raises(Conflict):
        web.cases.publish(ORG_A, editor, case.id, "http://x", "A")  # not approved yet
    case = web.cases.return_for_changes(ORG_A, reviewer, case.id, "cite the source")
    assert case.status == "open" and case.review_notes[0].text == "cite the source"
    case = web.cases.draft_verdict(ORG_A, editor, case.id, "Mostly false", "Better now.")
    case = web.cases.approve(ORG_A, reviewer, case.id)
    # the reviewer redrafts: the approval is withdrawn and now the first editor may approve
    case = web.cases.draft_verdict(ORG_A, reviewer, case.id, "False", "Changed my mind.")
    assert case.approval is None and case.status == "in_review"
    case = web.cases.approve(ORG_A, editor, case.id)
    assert case.approval.by == "a-editor"


def test_stale_version_bad_rating_and_foreign_org(env: WebEnv) -> None:
    web = env.web
    editor = web.accounts.get_user("a-editor")
    case = web.cases.open(ORG_A, editor, "claim")
    web.cases.add_evidence(ORG_A, editor, case.id, "note", text="x", version=1)
    with pytest.raises(Conflict, match="changed since"):
        web.cases.add_evidence(ORG_A, editor, case.id, "note", text="y", version=1)
    # two requests that loaded the same version: the slower one gets Conflict, nothing is lost
    stale = web.cases.get(ORG_A, case.id)
    web.cases.assign(ORG_A, editor, case.id, "a-reviewer")
    with pytest.raises(Conflict, match="someone else"):
        web.cases._save(ORG_A, editor, "case.assign", stale, stale.with_(assignee="a-analyst"))
    with pytest.raises(InputError, match="rating scale"):
        web.cases.draft_verdict(ORG_A, editor, case.id, "Pants on fire", "x")
    with pytest.raises(InputError, match="http"):
        web.cases.add_evidence(ORG_A, editor, case.id, "link", url="javascript:alert(1)")
    with pytest.raises(NotFound):
        web.cases.get(ORG_B, case.id)
    assert RatingScale.parse("Vrai, Faux ,Faux").names == ("Vrai", "Faux")


def test_appeal_outcomes(env: WebEnv) -> None:
    web = env.web
    case = publish_case(env)
    editor = web.accounts.get_user("a-editor")
    appeal = web.appeals.file(ORG_A, case.id, "The WHO page is outdated", contact="me@example.org")
    with pytest.raises(Conflict, match="correction"):
        web.appeals.decide(ORG_A, editor, appeal.id, "corrected", "fixed")
    web.cases.correct(ORG_A, editor, case.id, "Updated the WHO link.")
    decided = web.appeals.decide(ORG_A, editor, appeal.id, "corrected", "We updated the source.")
    assert decided.status == "decided"
    public = web.appeals.public_outcomes(ORG_A, case.id)
    assert public == [{"received_at": appeal.received_at, "status": "decided", "outcome": "corrected",
                       "outcome_note": "We updated the source.", "decided_at": decided.decided_at}]
    with pytest.raises(Conflict):
        web.appeals.decide(ORG_A, editor, appeal.id, "upheld", "again")
    with pytest.raises(NotFound):
        web.appeals.file(ORG_B, case.id, "wrong org")
    assert web.audit.verify(ORG_A).ok


def test_a_change_and_its_audit_entry_are_one_write(tmp_path: Path) -> None:
    """A record and the entry describing it commit together: when the write fails,
    neither the record, the entry nor the chain head moves, and the chain stays intact."""
    settings = web_settings(tmp_path, storage_url=f"sqlite:///{tmp_path / 'fb.db'}")
    with Services(settings) as services:
        audit = AuditLog(services.storage)
        audit.append("desk-a", "ed", "thing.create", "things", "t1", None, {"n": 1}, records=[("things", [("t1", {"n": 1}, None)])])

        class FullDisk(list):  # type: ignore[type-arg]
            def __iter__(self):  # type: ignore[no-untyped-def]
                raise OSError("no space left on device")

        with pytest.raises(OSError):
            audit.append("desk-a", "ed", "thing.change", "things", "t1", {"n": 1}, {"n": 2}, records=[("things", FullDisk())])
        assert services.storage.get_docs("desk-a", "things", ["t1"]) == {"t1": {"n": 1}}
        assert services.storage.count_docs("desk-a", AUDIT) == 1
        report = audit.verify("desk-a")
        assert report.ok and report.entries == 1, report.problems
        audit.append("desk-a", "ed", "thing.change", "things", "t1", {"n": 1}, {"n": 2}, records=[("things", [("t1", {"n": 2}, None)])])
        assert audit.verify("desk-a").entries == 2 and services.storage.get_docs("desk-a", "things", ["t1"])["t1"] == {"n": 2}


def test_audit_chain_detects_edit_cut_and_unaudited_change(tmp_path: Path) -> None:
    db = tmp_path / "fb.db"
    settings = web_settings(tmp_path, storage_url=f"sqlite:///{db}")
    with Services(settings) as services:
        # signed checkpoints in the data folder, as the server and the CLI keep them
        audit = AuditLog.in_data_dir(services.storage, tmp_path)
        accounts = Accounts(services.storage, audit, hash_time_cost=1, hash_memory_kib=1024)
        accounts.add_org("desk-a", "Desk A")
        accounts.add_user("ed", "password-123456", "desk-a", "editor")
        for i in range(3):
            audit.append("desk-a", "ed", "thing.change", "things", f"t{i}", {"n": i}, {"n": i + 1})
        report = audit.verify("desk-a")
        assert report.ok and report.entries == 5
    runner = CliRunner()
    args = ["--storage-url", f"sqlite:///{db}", "--data-dir", str(tmp_path), "--embedder", "hashing", "audit", "verify"]
    ok = runner.invoke(cli_app, args)
    assert ok.exit_code == 0, ok.output
    assert "intact" in ok.output

    # Someone edits entry 3 directly in the database: verify fails naming it.
    conn = sqlite3.connect(db)
    doc = json.loads(conn.execute("SELECT doc FROM docs WHERE org='desk-a' AND collection=? AND id='000000000003'", (AUDIT,)).fetchone()[0])
    doc["actor"] = "someone-else"
    conn.execute("UPDATE docs SET doc=? WHERE org='desk-a' AND collection=? AND id='000000000003'", (json.dumps(doc), AUDIT))
    conn.commit()
    bad = runner.invoke(cli_app, args)
    assert bad.exit_code == 1
    assert "000000000003" in bad.output and "edited" in bad.output
    # ... and the other entries are not blamed
    assert "000000000004" not in bad.output

    # Restore it, then cut the last entry off: the head notices.
    doc["actor"] = "ed"
    conn.execute("UPDATE docs SET doc=? WHERE org='desk-a' AND collection=? AND id='000000000003'", (json.dumps(doc), AUDIT))
    conn.execute("DELETE FROM docs WHERE org='desk-a' AND collection=? AND id='000000000005'", (AUDIT,))
    conn.commit()
    cut = runner.invoke(cli_app, [*args, "--json"])
    assert cut.exit_code == 1 and "cut off" in cut.output
    conn.close()


def test_case_edited_behind_the_logs_back_is_reported(env: WebEnv) -> None:
    case = publish_case(env)
    storage = env.services.storage
    stored = storage.get_docs(ORG_A, "published", [case.id])[case.id]
    storage.put_docs(ORG_A, "published", [(case.id, stored | {"rating": "True"}, None)])
    report = env.web.audit.verify(ORG_A)
    assert not report.ok
    assert any(f"published/{case.id}" in p and "differs" in p for p in report.problems)
    # hiding an entry from a case's history (the per-object index) is reported too
    storage.put_docs(ORG_A, "audit_by_object", [(f"cases/{case.id}", {"seqs": [1]}, None)])
    assert any(f"cases/{case.id}" in p and "index" in p for p in env.web.audit.verify(ORG_A).problems)


@pytest.mark.postgres
def test_workflow_and_audit_chain_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    """The same documents and hash chain on the PostgreSQL backend (JSON read back must hash the same)."""
    settings = web_settings(tmp_path, storage_url=postgres_url)
    with Services(settings) as services:
        storage = services.storage
        audit = AuditLog(storage)
        accounts = Accounts(storage, audit, hash_time_cost=1, hash_memory_kib=1024)
        accounts.add_org("desk-a", "Bàn A")
        editor = accounts.add_user("ed", "password-123456", "desk-a", "editor")
        reviewer = accounts.add_user("rev", "password-123456", "desk-a", "editor")
        from factbridge.workflow.cases import CaseBook

        book = CaseBook(storage, audit, RatingScale.parse("True,False,Misleading"))
        case = book.open("desk-a", editor, "Vắc xin gây vô sinh ១២៣ — «vrai» ? 1.0")
        case = book.add_evidence("desk-a", editor, case.id, "link", url="https://example.org/a?x=1&y=2", text="ន")
        case = book.draft_verdict("desk-a", editor, case.id, "False", "Không đúng.\nFaux.")
        case = book.approve("desk-a", reviewer, case.id)
        case = book.publish("desk-a", reviewer, case.id, "https://desk-a.example", "Bàn A")
        book.correct("desk-a", editor, case.id, "Sửa nguồn", new_rating="Misleading")
        book.decide_correction("desk-a", reviewer, case.id, approve=True)
        report = audit.verify("desk-a")
        assert report.ok, report.problems
        assert [e["action"] for e in audit.history("desk-a", "cases", case.id)][-1] == "case.correct"
        assert storage.get_factcheck("desk-a", case.publication.url).rating == "Misleading"
        entry = storage.get_docs("desk-a", AUDIT, ["000000000004"])["000000000004"]
        storage.put_docs("desk-a", AUDIT, [("000000000004", entry | {"actor": "mallory"}, 4.0)])
        assert any("000000000004" in p and "edited" in p for p in audit.verify("desk-a").problems)


def test_cli_orgs_users_and_tokens(tmp_path: Path) -> None:
    db = tmp_path / "fb.db"
    base = ["--storage-url", f"sqlite:///{db}", "--data-dir", str(tmp_path), "--embedder", "hashing", "--org", "desk-x"]
    runner = CliRunner(env={"FACTBRIDGE_PASSWORD_HASH_TIME_COST": "1", "FACTBRIDGE_PASSWORD_HASH_MEMORY_KIB": "1024"})
    out = runner.invoke(cli_app, [*base, "orgs", "add", "desk-x", "--name", "Desk X"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli_app, [*base, "users", "add", "alice", "--role", "editor"])
    assert out.exit_code == 0 and "password:" in out.output
    password = out.output.split("password:")[1].split()[0]
    out = runner.invoke(cli_app, [*base, "users", "add", "bob", "--role", "viewer", "--password-stdin"], input="bob-password-123\n")
    assert out.exit_code == 0 and "password:" not in out.output
    assert isinstance(runner.invoke(cli_app, [*base, "users", "add", "carol", "--role", "owner"]).exception, InputError)
    assert isinstance(runner.invoke(cli_app, [*base, "users", "add", "alice"]).exception, Conflict)
    assert runner.invoke(cli_app, [*base, "users", "role", "bob", "analyst"]).exit_code == 0
    settings = web_settings(tmp_path, storage_url=f"sqlite:///{db}")
    with Services(settings) as services:
        before = Accounts(services.storage, AuditLog(services.storage))
        session_token, _ = before.start_session(before.get_user("bob"))
    assert runner.invoke(cli_app, [*base, "users", "password", "bob", "--password-stdin"], input="bob-password-456\n").exit_code == 0
    listed = runner.invoke(cli_app, [*base, "users", "list"]).output
    assert "alice" in listed and "analyst" in listed
    token = runner.invoke(cli_app, [*base, "users", "token", "alice"]).output.strip()
    assert token.startswith("fb_")
    settings = web_settings(tmp_path, storage_url=f"sqlite:///{db}")
    with Services(settings) as services:
        accounts = Accounts(services.storage, AuditLog(services.storage))
        assert accounts.authenticate("alice", password).org == "desk-x"
        assert accounts.authenticate("bob", "bob-password-456").role == "analyst"
        assert accounts.token_actor(token).username == "alice"
        with pytest.raises(NotAuthenticated):
            accounts.session(session_token)  # the password change ended bob's session
        assert AuditLog(services.storage).verify("desk-x").ok
    assert runner.invoke(cli_app, [*base, "audit", "verify", "--org-only"]).exit_code == 0
