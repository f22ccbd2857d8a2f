"""Append-only, hash-chained audit log of every state change.

Each organisation has its own chain, stored as documents in the "audit"
collection: id = the zero-padded sequence number, sort key = the sequence.
An entry records who did what to which object, when, and the object's state
before and after. Its `hash` is the SHA-256 of the entry (without the hash)
in canonical JSON, and the entry carries the previous entry's hash, so
editing, removing or re-ordering any entry breaks the chain. A separate
"audit_head" document remembers the last sequence and hash, so cutting entries
off the end is detected too.

Every security-relevant record is covered by the chain: an entry lists each
record it wrote (`records`: scope, collection, id and the SHA-256 of the stored
document) for the COVERED collections: cases, published verdicts and appeals
in the organisation's scope, and the organisation, its users (with their role
and password hash), API tokens and web sessions in the "_system" scope.
`verify()` cross-checks both directions: every stored record must equal what
the latest entry that wrote it recorded (a role changed to admin in the
database, an un-revoked token, an edited verdict), and every record an entry
wrote must still exist (a deleted case, verdict or appeal row). Finally the
chain head is anchored outside the database by signed checkpoints
(workflow/checkpoint.py): a chain recomputed end to end is caught there.

An entry, the head, the per-object index and the records the entry describes
are written in one storage transaction (`put_docs_batch`), and that write is
conditional on the head still being the one the entry was chained to (an
`Expect` checked inside the transaction), so two processes appending at once
(the CLI and the server) never fork the chain: the later one re-reads the head
and tries again. Callers add their own preconditions (a case's version, a free
session slot) to the same write.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from factbridge.backends.storage.base import Expect, Rows, Storage, iter_docs
from factbridge.errors import PreconditionFailed
from factbridge.workflow.checkpoint import Checkpoints
from factbridge.workflow.records import (
    API_TOKENS,
    ORGS,
    SESSIONS,
    USERS,
    AuditEntries,
    AuditEntry,
    AuditHead,
    AuditHeads,
    AuditIndex,
    ObjectHistory,
    WrittenRecord,
)
from factbridge.workflow.records import AUDIT as AUDIT
from factbridge.workflow.records import AUDIT_BY_OBJECT as AUDIT_BY_OBJECT
from factbridge.workflow.records import AUDIT_HEAD as AUDIT_HEAD

GENESIS = "0" * 64
SYSTEM_SCOPE = "_system"
# Collections whose current documents must equal their last audited state: in the organisation's
# own scope, and in the "_system" scope (accounts), where a record belongs to the organisation
# named by its "org" field (or its user's).
AUDITED_COLLECTIONS = ("cases", "published", "appeals")
SYSTEM_COLLECTIONS = (ORGS, USERS, API_TOKENS, SESSIONS)
COVERED = frozenset(AUDITED_COLLECTIONS) | frozenset(SYSTEM_COLLECTIONS)
# How often an append re-reads the head when another writer got there first.
APPEND_ATTEMPTS = 200

_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
_locks_guard = threading.Lock()


def named_lock(name: str) -> threading.Lock:
    """One process-wide lock per name (an organisation's audit chain, its cases...)."""
    with _locks_guard:
        return _locks[name]


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def plain(value: Any) -> Any:
    """The value exactly as it will read back from storage (dates become strings)."""
    return json.loads(canonical_json(value))


def entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def entry_id(seq: int) -> str:
    return f"{seq:012d}"


def record_sha(doc: dict[str, Any]) -> str:
    """The fingerprint an entry keeps of a record it wrote (the document as it reads back)."""
    return hashlib.sha256(canonical_json(plain(doc)).encode("utf-8")).hexdigest()


@dataclass
class VerifyReport:
    org: str
    entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditLog:
    def __init__(self, storage: Storage, checkpoints: Checkpoints | None = None) -> None:
        self.storage = storage
        self.checkpoints = checkpoints
        self.log = AuditEntries(storage)
        self.heads = AuditHeads(storage)
        self.index = AuditIndex(storage)

    @classmethod
    def in_data_dir(cls, storage: Storage, data_dir: str | Path) -> AuditLog:
        """The log with its signed checkpoints in the data folder (what the server and CLI use)."""
        return cls(storage, Checkpoints(Path(data_dir)))

    def head(self, org: str) -> tuple[int, str]:
        """The current chain head: (sequence, hash); (0, GENESIS) for an empty chain."""
        head = self.heads.get(org)
        return (head.seq, head.hash) if head is not None else (0, GENESIS)

    def append(
        self,
        org: str,
        actor: str,
        action: str,
        collection: str,
        object_id: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        records: Sequence[tuple[str, Rows]] = (),
        *,
        system_records: Sequence[tuple[str, Rows]] = (),
        expect: Sequence[Expect] = (),
    ) -> dict[str, Any]:
        """Append an entry. `records` (in `org`) and `system_records` (in "_system") are the writes
        it describes ((collection, rows) as for `put_docs`): they and the entry are stored in one
        transaction, all or nothing, and only if every `expect` still holds (else
        PreconditionFailed). The entry fingerprints every covered record it writes."""
        written = [WrittenRecord(scope=scope, collection=coll, id=doc_id, sha=record_sha(doc))
                   for scope, group in ((org, records), (SYSTEM_SCOPE, system_records))
                   for coll, rows in group if coll in COVERED for doc_id, doc, _ in rows]
        for _ in range(APPEND_ATTEMPTS):
            # The in-process lock only saves this process's threads from retrying; the
            # conditional write below is what keeps separate processes from forking the chain.
            with named_lock(f"audit:{org}"):
                seq, prev = self.head(org)
                unsigned = AuditEntry(seq=seq + 1, org=org, at=now_iso(), actor=actor, action=action, collection=collection,
                                      object_id=object_id, before=plain(before), after=plain(after), records=written, prev_hash=prev)
                entry = replace(unsigned, hash=entry_hash(unsigned.to_doc()))
                history = self.index.get(org, collection, object_id)
                try:
                    self.storage.put_docs_batch(org, [
                        *records,
                        (AUDIT, self.log.rows([entry])),
                        (AUDIT_HEAD, self.heads.rows(AuditHead(seq=entry.seq, hash=entry.hash))),
                        (AUDIT_BY_OBJECT, self.index.rows([replace(history, seqs=[*history.seqs, entry.seq])])),
                    ], expect=[self.heads.expect(seq), *expect], other_orgs=[(SYSTEM_SCOPE, c, rows) for c, rows in system_records])
                except PreconditionFailed as exc:
                    if exc.key == (org, AUDIT_HEAD, AuditHead.KEY):
                        continue  # another writer appended first: chain onto its entry
                    raise
            if self.checkpoints is not None:
                self.checkpoints.write(org, entry.seq, entry.hash)
            return entry.to_doc()
        raise PreconditionFailed(f"the audit log of org {org} is too busy; try again", (org, AUDIT_HEAD, AuditHead.KEY))

    def checkpoint(self, org: str) -> dict[str, Any]:
        """Sign and store the current head (`factbridge audit checkpoint`), even over a checkpoint
        of a later entry (a backup restored on purpose): the operator vouches for this head."""
        if self.checkpoints is None:
            raise ValueError("this audit log has no checkpoint folder")
        seq, head_hash = self.head(org)
        return self.checkpoints.write(org, seq, head_hash, force=True)

    def entries(self, org: str, limit: int = 100, offset: int = 0, newest_first: bool = True) -> list[dict[str, Any]]:
        return [entry.to_doc() for entry in self.log.iter(org, limit=limit, offset=offset, newest_first=newest_first)]

    def history(self, org: str, collection: str, object_id: str) -> list[dict[str, Any]]:
        """Entries about one object, oldest first (looked up by key; `verify` checks them)."""
        seqs = self.index.get(org, collection, object_id).seqs
        found = self.log.get(org, seqs)
        return [found[n].to_doc() for n in seqs if n in found]

    def _iter(self, org: str, page: int = 1000) -> Iterator[dict[str, Any]]:
        # The documents as stored, not `AuditEntry` records: verifying hashes what is there.
        yield from (doc | {"_id": doc_id} for doc_id, doc in iter_docs(self.storage, org, AUDIT, order="sort_asc", page=page))

    def verify(self, org: str) -> VerifyReport:
        report = VerifyReport(org=org)
        expected_seq = 1
        prev = GENESIS
        hash_at: dict[int, str] = {}
        # (scope, collection, id) -> (seq, sha) of the latest entry that wrote the record
        latest: dict[tuple[str, str, str], tuple[int, str]] = {}
        seqs_of: dict[str, list[int]] = {}
        for entry in self._iter(org):
            doc_id = entry.pop("_id")
            report.entries += 1
            name = f"audit entry {doc_id} (org {org})"
            seq = entry.get("seq")
            if seq != expected_seq or doc_id != entry_id(expected_seq):
                report.problems.append(f"{name}: sequence {seq} where {expected_seq} was expected (entry missing or inserted)")
                expected_seq = int(seq) if isinstance(seq, int) else expected_seq
            if entry.get("prev_hash") != prev:
                report.problems.append(f"{name}: prev_hash does not match the hash of the entry before it")
            if entry_hash(entry) != entry.get("hash"):
                report.problems.append(f"{name}: content does not match its hash (entry was edited)")
            prev = str(entry.get("hash"))
            hash_at[expected_seq] = prev
            expected_seq += 1
            obj = entry.get("object") or {}
            if isinstance(seq, int):
                seqs_of.setdefault(ObjectHistory.key_of(str(obj.get("collection")), str(obj.get("id"))), []).append(seq)
                for written in _written_records(entry, org):
                    latest[written[0]] = (seq, written[1])
        head = self.heads.stored(org)
        if head is None and report.entries:
            report.problems.append(f"audit head of org {org} is missing")
        elif head is not None and (head.get("seq") != expected_seq - 1 or head.get("hash") != prev):
            report.problems.append(
                f"audit head of org {org} says entry {entry_id(int(head.get('seq', 0)))} but the chain ends at "
                f"{entry_id(expected_seq - 1)} (entries cut off the end)"
            )
        for key, doc in self.index.stored(org):
            if doc.get("seqs") != seqs_of.pop(key, None):
                report.problems.append(f"audit index of {key} (org {org}) does not match the chain")
        for key in seqs_of:
            report.problems.append(f"audit index of {key} (org {org}) is missing")
        self._verify_records(org, latest, report)
        self._verify_checkpoint(org, expected_seq - 1, hash_at, report)
        return report

    def _stored_records(self, org: str) -> dict[tuple[str, str, str], dict[str, Any]]:
        """Every covered record that belongs to the organisation, keyed like `latest`."""
        found: dict[tuple[str, str, str], dict[str, Any]] = {}
        for collection in AUDITED_COLLECTIONS:
            for doc_id, doc in iter_docs(self.storage, org, collection):
                found[(org, collection, doc_id)] = doc
        users = dict(iter_docs(self.storage, SYSTEM_SCOPE, USERS))
        members = {name for name, doc in users.items() if doc.get("org") == org}
        for doc_id, doc in iter_docs(self.storage, SYSTEM_SCOPE, ORGS):
            if doc_id == org:
                found[(SYSTEM_SCOPE, ORGS, doc_id)] = doc
        for name in members:
            found[(SYSTEM_SCOPE, USERS, name)] = users[name]
        for collection in (API_TOKENS, SESSIONS):
            for doc_id, doc in iter_docs(self.storage, SYSTEM_SCOPE, collection):
                # A free session slot holds nothing (no user, no secret): it grants nothing.
                if doc.get("username") in members and not doc.get("free"):
                    found[(SYSTEM_SCOPE, collection, doc_id)] = doc
        return found

    def _verify_records(self, org: str, latest: dict[tuple[str, str, str], tuple[int, str]], report: VerifyReport) -> None:
        stored = self._stored_records(org)
        for key, doc in stored.items():
            scope, collection, doc_id = key
            where = f"{collection}/{doc_id}" + (f" (org {org})" if scope == org else f" (of org {org}, in {scope})")
            audited = latest.get(key)
            if audited is None:
                report.problems.append(f"{where} has no audit entry (written behind the log's back)")
            elif audited[1] != record_sha(doc):
                report.problems.append(f"{where} differs from its last audited state (entry {entry_id(audited[0])})")
        for key, (seq, _) in latest.items():
            scope, collection, doc_id = key
            if key in stored or collection == "sessions":
                continue  # slots are freed and reused by design; a forged live one is caught above
            if scope == SYSTEM_SCOPE:
                # another organisation's record (a user moved, a token of a user of theirs) is theirs to check
                current = self.storage.get_docs(SYSTEM_SCOPE, collection, [doc_id]).get(doc_id)
                if current is not None:
                    continue
            report.problems.append(f"{collection}/{doc_id} (org {org}) was deleted: audit entry {entry_id(seq)} wrote it")

    def _verify_checkpoint(self, org: str, last_seq: int, hash_at: dict[int, str], report: VerifyReport) -> None:
        if self.checkpoints is None:
            return
        body = self.checkpoints.latest(org)
        if body is None:
            if last_seq:
                report.problems.append(f"no signed checkpoint of org {org} (run `factbridge audit checkpoint` once after upgrading)")
            return
        problem = self.checkpoints.problem(body, org)
        if problem:
            report.problems.append(problem)
            return
        seq = int(body["seq"])
        if seq > last_seq:
            report.problems.append(f"the signed checkpoint of org {org} names entry {entry_id(seq)} but the chain ends at "
                                   f"{entry_id(last_seq)} (entries removed)")
        elif seq and hash_at.get(seq) != body["hash"]:
            report.problems.append(f"audit entry {entry_id(seq)} (org {org}) differs from the signed checkpoint of "
                                   f"{body['at']} (the chain was rewritten and recomputed)")


def _written_records(entry: dict[str, Any], org: str) -> list[tuple[tuple[str, str, str], str]]:
    """The records an entry wrote and their fingerprints. Entries from before records were
    listed wrote exactly their object, whose stored document equalled their "after"."""
    listed = entry.get("records")
    if isinstance(listed, list):
        return [((str(r.get("scope")), str(r.get("collection")), str(r.get("id"))), str(r.get("sha")))
                for r in listed if isinstance(r, dict)]
    obj = entry.get("object") or {}
    if obj.get("collection") in AUDITED_COLLECTIONS and isinstance(entry.get("after"), dict):
        return [((org, str(obj["collection"]), str(obj.get("id"))), record_sha(entry["after"]))]
    return []


def signed_head(audit: AuditLog, org: str) -> dict[str, Any]:
    """The organisation's current chain head, signed with the workspace's checkpoint key
    (what a partner keeps to anchor this chain outside the workspace)."""
    if audit.checkpoints is None:
        raise ValueError("this audit log has no checkpoint folder")
    seq, head_hash = audit.head(org)
    return audit.checkpoints.sign(org, seq, head_hash)
