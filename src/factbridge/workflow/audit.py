"""Append-only, hash-chained audit log of every state change.

Each organisation has its own chain, stored as documents in the "audit"
collection: id = the zero-padded sequence number, sort key = the sequence.
An entry records who did what to which object, when, and the object's state
before and after. Its `hash` is the SHA-256 of the entry (without the hash)
in canonical JSON, and the entry carries the previous entry's hash, so
editing, removing or re-ordering any entry breaks the chain. A separate
"audit_head" document remembers the last sequence and hash, so cutting entries
off the end is detected too.

`verify()` recomputes the chain and, for the workflow collections, checks that
every stored object still equals the "after" state of its latest entry (an
object edited behind the log's back is reported as well).

An entry, the head, the per-object index and the record the entry describes
are written in one storage transaction (`put_docs_batch`), so a crash never
leaves a change without its entry or an entry without its change. Appends are
serialised per organisation by a process-wide lock: the web app and the CLI
each run as one process per database, which the SQLite default requires
anyway (one writer).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from factbridge.backends.storage.base import Storage, iter_docs

AUDIT = "audit"
AUDIT_HEAD = "audit_head"
# Sequence numbers of the entries about each object, so an object's history is
# read by key instead of by scanning the organisation's whole log.
AUDIT_BY_OBJECT = "audit_by_object"
GENESIS = "0" * 64
# Collections whose current documents must equal their last audited state.
AUDITED_COLLECTIONS = ("cases", "published", "appeals")

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


@dataclass
class VerifyReport:
    org: str
    entries: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditLog:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def append(
        self,
        org: str,
        actor: str,
        action: str,
        collection: str,
        object_id: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        records: Sequence[tuple[str, Sequence[tuple[str, dict[str, Any], float | None]]]] = (),
    ) -> dict[str, Any]:
        """Append an entry. `records` are the writes it describes ((collection, rows) as for
        `put_docs`): they and the entry are stored in one transaction, all or nothing."""
        with named_lock(org):
            head = self.storage.get_docs(org, AUDIT_HEAD, ["head"]).get("head")
            seq = int(head["seq"]) + 1 if head else 1
            prev = str(head["hash"]) if head else GENESIS
            entry: dict[str, Any] = {
                "seq": seq,
                "org": org,
                "at": now_iso(),
                "actor": actor,
                "action": action,
                "object": {"collection": collection, "id": object_id},
                "before": plain(before),
                "after": plain(after),
                "prev_hash": prev,
            }
            entry["hash"] = entry_hash(entry)
            key = f"{collection}/{object_id}"
            index = self.storage.get_docs(org, AUDIT_BY_OBJECT, [key]).get(key, {"seqs": []})
            self.storage.put_docs_batch(org, [
                *records,
                (AUDIT, [(entry_id(seq), entry, float(seq))]),
                (AUDIT_HEAD, [("head", {"seq": seq, "hash": entry["hash"]}, None)]),
                (AUDIT_BY_OBJECT, [(key, {"seqs": [*index["seqs"], seq]}, None)]),
            ])
            return entry

    def entries(self, org: str, limit: int = 100, offset: int = 0, newest_first: bool = True) -> list[dict[str, Any]]:
        order = "sort_desc" if newest_first else "sort_asc"
        return [doc for _, doc in self.storage.list_docs(org, AUDIT, limit=limit, offset=offset, order=order)]

    def history(self, org: str, collection: str, object_id: str) -> list[dict[str, Any]]:
        """Entries about one object, oldest first (looked up by key; `verify` checks them)."""
        key = f"{collection}/{object_id}"
        seqs = self.storage.get_docs(org, AUDIT_BY_OBJECT, [key]).get(key, {"seqs": []})["seqs"]
        found = self.storage.get_docs(org, AUDIT, [entry_id(int(n)) for n in seqs])
        return [found[entry_id(int(n))] for n in seqs if entry_id(int(n)) in found]

    def _iter(self, org: str, page: int = 1000) -> Any:
        yield from (doc | {"_id": doc_id} for doc_id, doc in iter_docs(self.storage, org, AUDIT, order="sort_asc", page=page))

    def verify(self, org: str) -> VerifyReport:
        report = VerifyReport(org=org)
        expected_seq = 1
        prev = GENESIS
        last_after: dict[tuple[str, str], str] = {}
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
            expected_seq += 1
            obj = entry.get("object") or {}
            if isinstance(seq, int):
                seqs_of.setdefault(f"{obj.get('collection')}/{obj.get('id')}", []).append(seq)
            if obj.get("collection") in AUDITED_COLLECTIONS:
                last_after[(obj["collection"], obj["id"])] = canonical_json(entry.get("after"))
        head = self.storage.get_docs(org, AUDIT_HEAD, ["head"]).get("head")
        if head is None and report.entries:
            report.problems.append(f"audit head of org {org} is missing")
        elif head is not None and (head.get("seq") != expected_seq - 1 or head.get("hash") != prev):
            report.problems.append(
                f"audit head of org {org} says entry {entry_id(int(head.get('seq', 0)))} but the chain ends at "
                f"{entry_id(expected_seq - 1)} (entries cut off the end)"
            )
        for key, doc in iter_docs(self.storage, org, AUDIT_BY_OBJECT):
            if doc.get("seqs") != seqs_of.pop(key, None):
                report.problems.append(f"audit index of {key} (org {org}) does not match the chain")
        for key in seqs_of:
            report.problems.append(f"audit index of {key} (org {org}) is missing")
        for collection in AUDITED_COLLECTIONS:
            for doc_id, doc in iter_docs(self.storage, org, collection):
                audited = last_after.get((collection, doc_id))
                if audited is None:
                    report.problems.append(f"{collection}/{doc_id} (org {org}) has no audit entry")
                elif audited != canonical_json(doc):
                    report.problems.append(f"{collection}/{doc_id} (org {org}) differs from its last audited state")
        return report
