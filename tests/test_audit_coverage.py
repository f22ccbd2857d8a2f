"""`audit verify` covers every security-relevant record and anchors the chain outside the
database (issue 10, item 3), and appends from separate processes never fork the chain
(issue 11: conditional writes instead of in-process locks).

Each tampering below is done the way an attacker with write access to the database would:
SQL on the SQLite file, behind the application's back."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from factbridge.backends.storage.sqlite import SQLiteStorage
from factbridge.workflow.accounts import SYSTEM_ORG, Accounts, token_sha
from factbridge.workflow.appeals import Appeals
from factbridge.workflow.audit import AUDIT, AUDIT_HEAD, GENESIS, AuditLog, entry_hash, signed_head
from factbridge.workflow.cases import CaseBook, RatingScale
from factbridge.workflow.checkpoint import KEY_FILE, Checkpoints

ORG = "desk-a"


@dataclass
class Desk:
    db: Path
    data_dir: Path
    storage: SQLiteStorage
    audit: AuditLog
    accounts: Accounts
    cases: CaseBook
    appeals: Appeals
    ids: dict[str, str]

    def sql(self, statement: str, *params: object) -> int:
        """Tamper with the database file directly (another connection, as an attacker would)."""
        with sqlite3.connect(self.db) as conn:
            changed = conn.execute(statement, params).rowcount
        return changed

    def problems(self) -> list[str]:
        return AuditLog.in_data_dir(self.storage, self.data_dir).verify(ORG).problems


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    db = tmp_path / "fb.db"
    storage = SQLiteStorage(f"sqlite:///{db}")
    storage.migrate()
    audit = AuditLog.in_data_dir(storage, tmp_path)
    accounts = Accounts(storage, audit, hash_time_cost=1, hash_memory_kib=1024)
    cases = CaseBook(storage, audit, RatingScale.parse("True,False,Misleading"))
    appeals = Appeals(storage, audit, cases)
    accounts.add_org(ORG, "Desk A")
    editor = accounts.add_user("ed", "password-123456", ORG, "editor")
    reviewer = accounts.add_user("rev", "password-123456", ORG, "editor")
    accounts.add_user("viewer", "password-123456", ORG, "viewer")
    case = cases.open(ORG, editor, "5G spreads the virus")
    cases.add_evidence(ORG, editor, case.id, "link", url="https://who.example.int/5g")
    cases.draft_verdict(ORG, editor, case.id, "False", "Radio waves carry no virus.")
    cases.approve(ORG, reviewer, case.id)
    cases.publish(ORG, reviewer, case.id, "https://desk-a.example", "Desk A")
    appeal = appeals.file(ORG, case.id, "The source is old")
    open_case = cases.open(ORG, editor, "another claim")
    token = accounts.create_token("viewer", "scripts")
    accounts.start_session(editor)
    ids = {"case": open_case.id, "published": case.id, "appeal": appeal.id, "token_sha": token_sha(token)}
    d = Desk(db, tmp_path, storage, audit, accounts, cases, appeals, ids)
    assert d.problems() == []
    yield d
    storage.close()


@pytest.mark.parametrize(("collection", "key"), [("cases", "case"), ("published", "published"), ("appeals", "appeal")])
def test_a_deleted_case_verdict_or_appeal_is_reported(desk: Desk, collection: str, key: str) -> None:
    doc_id = desk.ids[key]
    assert desk.sql("DELETE FROM docs WHERE org=? AND collection=? AND id=?", ORG, collection, doc_id) == 1
    assert any(f"{collection}/{doc_id}" in p and "deleted" in p for p in desk.problems()), desk.problems()


def test_a_role_raised_in_the_database_is_reported(desk: Desk) -> None:
    desk.sql("UPDATE docs SET doc=json_set(doc, '$.role', 'admin') WHERE org=? AND collection='users' AND id='viewer'", SYSTEM_ORG)
    assert desk.accounts.get_user("viewer").role == "admin"  # the application believes it...
    assert any("users/viewer" in p and "differs" in p for p in desk.problems())  # ...verify does not


def test_a_swapped_password_hash_is_reported(desk: Desk) -> None:
    other = desk.storage.get_docs(SYSTEM_ORG, "users", ["ed"])["ed"]["password_hash"]
    desk.sql("UPDATE docs SET doc=json_set(doc, '$.password_hash', ?) WHERE org=? AND collection='users' AND id='viewer'", other, SYSTEM_ORG)
    assert any("users/viewer" in p for p in desk.problems())


def test_an_unrevoked_token_is_reported(desk: Desk) -> None:
    token_id = desk.accounts.list_tokens(ORG, "viewer")[0].id
    desk.accounts.revoke_token(ORG, token_id)
    assert desk.problems() == []
    sha = desk.ids["token_sha"]
    desk.sql("UPDATE docs SET doc=json_set(doc, '$.revoked', json('false')) WHERE org=? AND collection='api_tokens' AND id=?", SYSTEM_ORG, sha)
    assert any(f"api_tokens/{sha}" in p and "differs" in p for p in desk.problems())


def test_a_forged_session_or_token_row_is_reported(desk: Desk) -> None:
    forged = {"username": "viewer", "sha": "f" * 64, "csrf": "x", "created_at": "2026-01-01T00:00:00+00:00",
              "expires_at": "2099-01-01T00:00:00+00:00", "epoch": 0, "revoked": False}
    desk.storage.put_docs(SYSTEM_ORG, "sessions", [("sforged", forged, 1.0)])
    desk.storage.put_docs(SYSTEM_ORG, "api_tokens", [("e" * 64, {"username": "viewer", "name": "x", "revoked": False}, None)])
    problems = desk.problems()
    assert any("sessions/sforged" in p and "no audit entry" in p for p in problems)
    assert any(f"api_tokens/{'e' * 64}" in p and "no audit entry" in p for p in problems)


def _recompute_chain(desk: Desk, edit_seq: int) -> None:
    """Edit one entry, then recompute every hash from it to the end and the head: the chain is
    self-consistent again (what a database-only attacker can do)."""
    rows = desk.storage.list_docs(ORG, AUDIT, limit=100_000, order="sort_asc")
    prev = GENESIS
    rewritten = []
    for doc_id, entry in rows:
        if entry["seq"] == edit_seq:
            entry = entry | {"actor": "mallory"}
        entry = entry | {"prev_hash": prev}
        entry["hash"] = entry_hash(entry)
        prev = entry["hash"]
        rewritten.append((doc_id, entry, float(entry["seq"])))
    desk.storage.put_docs_batch(ORG, [(AUDIT, rewritten), (AUDIT_HEAD, [("head", {"seq": rewritten[-1][1]["seq"], "hash": prev}, None)])])


def test_a_chain_recomputed_end_to_end_is_caught_by_the_signed_checkpoint(desk: Desk) -> None:
    _recompute_chain(desk, edit_seq=3)
    assert AuditLog(desk.storage).verify(ORG).ok  # without the anchor the forgery is invisible
    assert any("differs from the signed checkpoint" in p for p in desk.problems())


def test_entries_removed_below_the_checkpoint_are_caught(desk: Desk) -> None:
    last = desk.audit.head(ORG)[0]
    desk.sql("DELETE FROM docs WHERE org=? AND collection=? AND id=?", ORG, AUDIT, f"{last:012d}")
    _recompute_chain(desk, edit_seq=0)
    assert any("entries removed" in p for p in desk.problems())


def test_checkpoint_key_file_and_signature(desk: Desk) -> None:
    key = desk.data_dir / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and b"PRIVATE KEY" in key.read_bytes()
    path = Checkpoints(desk.data_dir).path(ORG)
    body = json.loads(path.read_text())
    assert body["seq"] == desk.audit.head(ORG)[0] and body["hash"] == desk.audit.head(ORG)[1]
    path.write_text(json.dumps(body | {"seq": 1}))  # an edited checkpoint no longer verifies
    assert any("signature" in p and "invalid" in p for p in desk.problems())
    path.unlink()
    assert any("no signed checkpoint" in p for p in desk.problems())
    desk.audit.checkpoint(ORG)  # `factbridge audit checkpoint`
    assert desk.problems() == []
    head = signed_head(desk.audit, ORG)  # what a partner keeps
    assert Checkpoints(desk.data_dir).problem(head, ORG) is None and head["seq"] == desk.audit.head(ORG)[0]


APPENDER = """
import sys, time
from factbridge.backends.storage.sqlite import SQLiteStorage
from factbridge.workflow.audit import AuditLog
storage = SQLiteStorage(sys.argv[1])
audit = AuditLog.in_data_dir(storage, sys.argv[2])
while time.time() < float(sys.argv[5]):  # both start at once, after their imports
    time.sleep(0.001)
for i in range(int(sys.argv[4])):
    audit.append("desk-a", sys.argv[3], "test.append", "notes", f"{sys.argv[3]}-{i}", None, {"i": i})
storage.close()
"""


def test_two_processes_appending_at_once_never_fork_the_chain(desk: Desk) -> None:
    """The CLI and the server are separate processes: an in-process lock cannot serialise them.
    Each append is conditional on the head it chained to, inside the storage transaction."""
    before = desk.audit.head(ORG)[0]
    url = f"sqlite:///{desk.db}"
    start = str(time.time() + 4)
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, url, str(desk.data_dir), name, "150", start],
                              env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}) for name in ("cli", "server")]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    # (with only an in-process lock, 2 x 150 appends left 186 entries and 114 problems)
    assert desk.audit.head(ORG)[0] == before + 300
    assert desk.problems() == []


LIMITER = """
import sys, time
from factbridge.backends.storage.sqlite import SQLiteStorage
from factbridge.web.security import RateLimiter
storage = SQLiteStorage(sys.argv[1])
limiter = RateLimiter(storage, "race", 10_000, 3600.0, "tries", salt=b"salt")
while time.time() < float(sys.argv[2]):
    time.sleep(0.001)
for _ in range(100):
    limiter.hit("one-key")
storage.close()
"""


def test_rate_limit_counts_from_two_processes_are_never_lost(desk: Desk) -> None:
    """The limiter's read-modify-write of a bucket is a conditional write too: two processes
    counting the same key at the same instant keep every hit."""
    from factbridge.web.security import RateLimiter

    start = str(time.time() + 4)
    procs = [subprocess.Popen([sys.executable, "-c", LIMITER, f"sqlite:///{desk.db}", start],
                              env=os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}) for _ in range(2)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    limiter = RateLimiter(desk.storage, "race", 200, 3600.0, "tries", salt=b"salt")
    with pytest.raises(Exception, match="too many"):
        limiter.check("one-key")  # 200 hits: exactly at the limit
    assert RateLimiter(desk.storage, "race", 201, 3600.0, "tries", salt=b"salt").check("one-key") is None
