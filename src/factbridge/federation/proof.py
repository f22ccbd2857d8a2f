"""The proof carried by a shared item that a second editor approved it: an audit-chain excerpt.

This is the one module of the federation that reads the audit log (workflow/audit.py), so that
a change of the audit API touches only this file.

The proof names the audit entry of the decisive action (`case.approve` for a fact-check,
`case.correct` for a correction, `case.withdraw` for a withdrawal) and the chain from that entry to the entry that published the
result (the public snapshot's "published.create" / "published.correct" / "published.withdraw"),
its *anchor*:

    {"entry": {"seq", "at", "action", "object", "actor", "prev_hash", "hash",
               "before_sha256", "after_sha256"},
     "links": [{"seq", "prev_hash", "hash"}, ...],      the entries after it, up to the anchor
     "anchor": {"seq", "hash"},
     "drafted_by": "<pseudonym>", "approved_by": "<pseudonym>",
     "proposed_by": "<pseudonym>"}                       for a withdrawal: who proposed it

(When the audit chain gains signed checkpoints, the anchor is where one would be named.)

The entry's before/after states hold internal notes and evidence, which never leave the desk:
they are replaced by their SHA-256 (of the canonical JSON the chain hashes), and editors'
user names by pseudonyms (HMAC of the name with a secret of the deployment). A partner checks
that the links join the entry to the anchor hash by hash, that the action and object are the
item's, and that approver and drafter differ; the desk's signature over the whole item binds
the entry's content to its hash.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from factbridge.backends.storage.base import Storage
from factbridge.errors import InputError
from factbridge.workflow.audit import AUDIT, AuditLog, canonical_json, entry_id

PROOF_ACTIONS = {"factcheck": "case.approve", "correction": "case.correct", "withdrawal": "case.withdraw"}


def pseudonym(salt: bytes, org: str, username: str) -> str:
    return "ed-" + hmac.new(salt, f"{org}\x1f{username}".encode(), hashlib.sha256).hexdigest()[:12]


def _sha(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def approval_proof(storage: Storage, org: str, case_id: str, kind: str, salt: bytes) -> dict[str, Any]:
    """The audit excerpt proving the item's decisive action (InputError when the log has none)."""
    action = PROOF_ACTIONS[kind]
    audit = AuditLog(storage)
    history = [e for e in audit.history(org, "cases", case_id) if e.get("action") == action]
    if not history:
        raise InputError(f"case {case_id} has no '{action}' entry in the audit log", field="proof")
    entry = history[-1]
    seq = int(entry["seq"])
    # The excerpt ends at the publication of what was decided (the public snapshot's entry), which
    # follows the decision within a few entries; failing that, at the chain head.
    published = [int(e["seq"]) for e in audit.history(org, "published", case_id) if int(e["seq"]) > seq]
    end_seq = published[0] if published else audit.head(org)[0]
    found = storage.get_docs(org, AUDIT, [entry_id(n) for n in range(seq + 1, end_seq + 1)])
    links = [{"seq": int(e["seq"]), "prev_hash": e["prev_hash"], "hash": e["hash"]}
             for e in (found[entry_id(n)] for n in range(seq + 1, end_seq + 1) if entry_id(n) in found)]
    anchor = {"seq": links[-1]["seq"], "hash": links[-1]["hash"]} if links else {"seq": seq, "hash": entry["hash"]}
    after = entry.get("after") or {}
    verdict = after.get("verdict") or {}
    approval = after.get("approval") or {}
    extra: dict[str, Any] = {}
    if kind == "withdrawal":  # proposed by one editor, approved by another (the entry's actor)
        withdrawal = after.get("withdrawal") or {}
        extra = {"proposed_by": pseudonym(salt, org, str(withdrawal.get("proposed_by", ""))),
                 "approved_by": pseudonym(salt, org, str(withdrawal.get("approved_by", "")))}
    return {
        "entry": {
            "seq": seq,
            "at": entry["at"],
            "action": entry["action"],
            "object": entry["object"],
            "actor": pseudonym(salt, org, str(entry["actor"])),
            "prev_hash": entry["prev_hash"],
            "hash": entry["hash"],
            "before_sha256": _sha(entry.get("before")),
            "after_sha256": _sha(entry.get("after")),
        },
        "links": links,
        "anchor": anchor,
        "drafted_by": pseudonym(salt, org, str(verdict.get("drafted_by", ""))),
        "approved_by": pseudonym(salt, org, str(approval.get("by", ""))) if approval.get("by") else None,
    } | extra


def check_proof(proof: Any, kind: str, item_id: str) -> None:
    """Raise InputError (field 'proof...') unless the excerpt joins the entry to the anchor and
    shows the expected action on this item (by a second editor, for an approval)."""
    if not isinstance(proof, dict) or not isinstance(proof.get("entry"), dict) or not isinstance(proof.get("anchor"), dict):
        raise InputError("the item carries no audit proof", field="proof")
    entry = proof["entry"]
    expected = PROOF_ACTIONS.get(kind)
    if expected is None:
        raise InputError(f"no proof rule for items of kind '{kind}'", field="kind")
    if entry.get("action") != expected:
        raise InputError(f"the audit entry is a '{entry.get('action')}', not a '{expected}'", field="proof.entry.action")
    if (entry.get("object") or {}) != {"collection": "cases", "id": item_id}:
        raise InputError(f"the audit entry is about {entry.get('object')}, not case {item_id}", field="proof.entry.object")
    if kind in ("factcheck", "withdrawal"):
        first = "drafted_by" if kind == "factcheck" else "proposed_by"
        if not proof.get("approved_by") or not proof.get(first) or proof.get("approved_by") == proof.get(first):
            what = "drafted the verdict" if kind == "factcheck" else "proposed the withdrawal"
            raise InputError(f"no second editor approved it (the approver {what})", field="proof.approved_by")
        if proof.get("approved_by") != entry.get("actor"):
            raise InputError("the approval entry was written by someone else than the approver", field="proof.entry.actor")
    seq, prev = entry.get("seq"), entry.get("hash")
    if not isinstance(seq, int) or not isinstance(prev, str):
        raise InputError("the audit entry has no sequence number or hash", field="proof.entry")
    for n, link in enumerate(proof.get("links") or []):
        if not isinstance(link, dict) or link.get("seq") != seq + 1 or link.get("prev_hash") != prev:
            raise InputError(f"audit chain broken at link {n} (entry {seq + 1} does not follow entry {seq})", field=f"proof.links[{n}]")
        seq, prev = link["seq"], str(link.get("hash"))
    anchor = proof["anchor"]
    if anchor.get("seq") != seq or anchor.get("hash") != prev:
        raise InputError(f"the chain excerpt ends at entry {seq}, the anchor says {anchor.get('seq')}", field="proof.anchor")
