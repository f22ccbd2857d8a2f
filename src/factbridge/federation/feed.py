"""Our organisation's append-only, signed feed (the outbox), and its plain ClaimReview view.

Items are made from the public snapshots of published verdicts (the "published" collection):
a snapshot not yet in the feed becomes a `factcheck` item, a snapshot that changed since
(a correction) a `correction` item, a snapshot that says it was withdrawn a `withdrawal` item
(its payload is the full snapshot, with `withdrawn` = {"at", "reason"}); from our narratives (`narrative` items, partners only,
see federation.crossborder), our burst alerts (`alert`, ibid.) and the links we flagged
(`linkrisk`, see federation.linkrisk). Each item gets the next sequence number, is signed with
the deployment's active key and is stored together with its audit entry ("federation.publish")
in one transaction. Items are never changed or removed; a new version is a new item.

An item (every field but `signature` is signed, see docs/federation.md):

    {"format": "factbridge-federation/1", "org", "seq", "kind", "item_id", "issued_at",
     "licence", "payload": <the public snapshot>, "provenance": {...}, "proof": {...},
     "key_id", "signature"}
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from factbridge.backends.storage.base import Storage, content_sha, iter_docs
from factbridge.errors import InputError
from factbridge.federation.canonical import canonical
from factbridge.federation.identity import Identity, folder_lock, now_iso, sign_body
from factbridge.federation.proof import approval_proof, pseudonym
from factbridge.workflow.audit import AuditLog, entry_id, named_lock
from factbridge.workflow.cases import PUBLISHED

log = logging.getLogger(__name__)

FORMAT = "factbridge-federation/1"
FEED = "federation_feed"
FEED_HEAD = "federation_feed_head"
# per published case: the snapshot hash and correction count last put in the feed
FEED_STATE = "federation_outbox"
# Kinds of item this version makes and accepts. Published fact-checks and their corrections
# are public already (their pages), so they are also served to callers who are not partners;
# narratives, alerts and link-risk verdicts only to partners whose scope has them.
KINDS = ("factcheck", "correction", "withdrawal", "narrative", "alert", "linkrisk")
PUBLIC_KINDS = ("factcheck", "correction", "withdrawal")
VERDICT_KINDS = ("factcheck", "correction", "withdrawal")  # items about one published verdict (its case id)
STEP_ROLES = {"drafted": "analyst", "approved": "editor", "published": "editor"}


def item_id_of(seq: int) -> str:
    return entry_id(seq)


@dataclass
class FeedPage:
    items: list[dict[str, Any]]
    head: int
    more: bool


def provenance(case: dict[str, Any], snapshot: dict[str, Any], org: str, roles: dict[str, str], salt: bytes) -> dict[str, Any]:
    """Who decided, by role and pseudonym only (user names and contacts never leave the desk)."""
    verdict = case.get("verdict") or {}
    approval = case.get("approval") or {}
    publication = case.get("publication") or {}
    editors = []
    for did, username in (("drafted", verdict.get("drafted_by")), ("approved", approval.get("by")), ("published", publication.get("published_by"))):
        if username:
            # the user's role now, or (for a user since removed) the least role the step requires
            editors.append({"did": did, "id": pseudonym(salt, org, username), "role": roles.get(username) or STEP_ROLES[did]})
    return {
        "desk": snapshot.get("org_name") or org,
        "org": org,
        "editors": editors,
        "approved_at": approval.get("at"),
        "published_at": snapshot.get("published_at"),
        "language": snapshot.get("language"),
    }


class Outbox:
    def __init__(self, storage: Storage, identity: Identity, org: str, licence: str, roles: dict[str, str] | None = None,
                 org_name: str = "", narrative_min_posts: int = 0) -> None:
        self.storage = storage
        self.org_name = org_name
        self.narrative_min_posts = narrative_min_posts
        self.identity = identity
        self.org = org
        self.licence = licence
        self.roles = roles or {}
        self.audit = AuditLog(storage)

    def head(self) -> int:
        doc = self.storage.get_docs(self.org, FEED_HEAD, ["head"]).get("head")
        return int(doc["seq"]) if doc else 0

    def refresh(self) -> list[dict[str, Any]]:
        """Put every published snapshot that is new or changed since, and every narrative due to be
        shared, into the feed; returns the new items."""
        from factbridge.federation.crossborder import (
            alerts_to_share,
            narratives_to_share,
            partner_orgs,
        )
        from factbridge.federation.linkrisk import links_to_share

        new: list[dict[str, Any]] = []
        with named_lock(f"federation-outbox:{self.org}"), folder_lock(self.identity, f"outbox-{self.org}"):
            state = dict(iter_docs(self.storage, self.org, FEED_STATE))
            snapshots = [doc for _, doc in iter_docs(self.storage, self.org, PUBLISHED, order="sort_asc")]
            todo = [(s, state.get(s["case_id"])) for s in snapshots if (state.get(s["case_id"]) or {}).get("sha") != content_sha(s)]
            narratives = (narratives_to_share(self.storage, self.org, self.narrative_min_posts, state, partner_orgs(self.storage, self.org))
                          if self.narrative_min_posts > 0 else [])
            links = links_to_share(self.storage, self.org, state)
            alerts = alerts_to_share(self.storage, self.org, state, partner_orgs(self.storage, self.org))
            if not todo and not narratives and not links and not alerts:
                return new
            key = self.identity.active()
            salt = self.identity.salt()
            seq = self.head()
            for snapshot, previous in todo:
                case_id = snapshot["case_id"]
                # a withdrawal is final (nothing is published after it): the snapshot saying so
                kind = "withdrawal" if snapshot.get("withdrawn") else "correction" if previous else "factcheck"
                case = self.storage.get_docs(self.org, "cases", [case_id]).get(case_id, {})
                payload = dict(snapshot)
                if kind == "correction" and snapshot.get("corrections"):
                    payload["correction"] = snapshot["corrections"][-1]
                try:
                    proof = approval_proof(self.storage, self.org, case_id, kind, salt)
                except InputError as exc:  # nothing is shared without its proof; the others go on
                    log.warning("federation: case %s of %s not shared: %s", case_id, self.org, exc)
                    continue
                seq += 1
                new.append(self._append(key, seq, kind, case_id, payload, provenance(case, snapshot, self.org, self.roles, salt),
                                        proof, (case_id, {"sha": content_sha(snapshot), "seq": seq})))
            for payload in narratives:
                seq += 1
                nid = payload["narrative_id"]
                new.append(self._append(key, seq, "narrative", nid, payload,
                                        {"desk": self.org_name or self.org, "org": self.org, "decided_by": payload["decided_by"]}, None,
                                        (f"narrative:{nid}", {"size": payload["size"], "claims": payload["claims"], "seq": seq})))
            for payload in alerts:
                seq += 1
                new.append(self._append(key, seq, "alert", payload["alert_id"], payload,
                                        {"desk": self.org_name or self.org, "org": self.org, "decided_by": payload["decided_by"]}, None,
                                        (f"alert:{payload['alert_id']}", {"kind": payload["kind"], "seq": seq})))
            for payload in links:
                seq += 1
                new.append(self._append(key, seq, "linkrisk", payload["link_id"], payload,
                                        {"desk": self.org_name or self.org, "org": self.org, "decided_by": payload["decided_by"]}, None,
                                        (f"linkrisk:{payload['link_id']}", {"seq": seq})))
        return new

    def _append(self, key: Any, seq: int, kind: str, item_id: str, payload: dict[str, Any], prov: dict[str, Any],
                proof: dict[str, Any] | None, state_row: tuple[str, dict[str, Any]]) -> dict[str, Any]:
        item: dict[str, Any] = canonical({
            "format": FORMAT,
            "org": self.org,
            "seq": seq,
            "kind": kind,
            "item_id": item_id,
            "issued_at": now_iso(),
            "licence": self.licence,
            "payload": payload,
            "provenance": prov,
            "proof": proof,
            "key_id": key.key_id,
        })
        item["signature"] = sign_body(key.private, item)
        summary = {"seq": seq, "kind": kind, "item_id": item_id, "key_id": key.key_id, "payload_sha256": content_sha(payload)}
        self.audit.append(self.org, "federation", "federation.publish", FEED, item_id_of(seq), None, summary, records=[
            (FEED, [(item_id_of(seq), item, float(seq))]),
            (FEED_HEAD, [("head", {"seq": seq}, None)]),
            (FEED_STATE, [(state_row[0], state_row[1], None)]),
        ])
        return item

    def read(self, after: int, kinds: Sequence[str], limit: int = 100) -> FeedPage:
        """Items with a sequence number above `after` whose kind is in `kinds`, oldest first."""
        head = self.head()
        items: list[dict[str, Any]] = []
        offset = max(0, after)
        while len(items) < limit and offset < head:
            rows = self.storage.list_docs(self.org, FEED, limit=min(500, head - offset), offset=offset, order="sort_asc")
            if not rows:
                break
            offset += len(rows)  # sequence numbers are contiguous from 1: row offset = seq - 1
            for _, item in rows:
                if isinstance(item.get("seq"), int) and item["seq"] > after and item.get("kind") in kinds:
                    items.append(item)
                    if len(items) >= limit:
                        break
        return FeedPage(items=items, head=head, more=bool(items) and int(items[-1]["seq"]) < head and len(items) >= limit)

    def latest_snapshots(self, kinds: Sequence[str]) -> list[dict[str, Any]]:
        """The newest payload of every item in the feed (for the plain ClaimReview view)."""
        latest: dict[str, dict[str, Any]] = {}
        for _, item in iter_docs(self.storage, self.org, FEED, order="sort_asc"):
            if item.get("kind") in kinds:
                latest[str(item.get("item_id"))] = item
        return [item["payload"] for item in sorted(latest.values(), key=lambda i: -int(i["seq"]))]
