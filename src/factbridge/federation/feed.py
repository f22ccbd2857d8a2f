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
from dataclasses import dataclass, replace
from typing import Any

from factbridge.backends.storage.base import Storage, content_sha
from factbridge.errors import InputError
from factbridge.federation.canonical import canonical
from factbridge.federation.identity import Identity, OwnKey, folder_lock, now_iso, sign_body
from factbridge.federation.proof import approval_proof, pseudonym
from factbridge.federation.records import FEED as FEED
from factbridge.federation.records import FEED_HEAD as FEED_HEAD
from factbridge.federation.records import FEED_STATE as FEED_STATE
from factbridge.federation.records import (
    FeedHead,
    FeedHeads,
    FeedItem,
    FeedItems,
    OutboxMark,
    OutboxMarks,
    feed_key,
)
from factbridge.workflow.audit import AuditLog, named_lock
from factbridge.workflow.records import Case, Cases, PublishedPage, PublishedPages

log = logging.getLogger(__name__)

FORMAT = "factbridge-federation/1"
# Kinds of item this version makes and accepts. Published fact-checks and their corrections
# are public already (their pages), so they are also served to callers who are not partners;
# narratives, alerts and link-risk verdicts only to partners whose scope has them.
KINDS = ("factcheck", "correction", "withdrawal", "narrative", "alert", "linkrisk")
PUBLIC_KINDS = ("factcheck", "correction", "withdrawal")
VERDICT_KINDS = ("factcheck", "correction", "withdrawal")  # items about one published verdict (its case id)
STEP_ROLES = {"drafted": "analyst", "approved": "editor", "published": "editor"}


def item_id_of(seq: int) -> str:
    return feed_key(seq)


@dataclass
class FeedPage:
    items: list[dict[str, Any]]
    head: int
    more: bool


def provenance(case: Case | None, snapshot: PublishedPage, org: str, roles: dict[str, str], salt: bytes) -> dict[str, Any]:
    """Who decided, by role and pseudonym only (user names and contacts never leave the desk)."""
    approval = case.approval if case else None
    steps = (("drafted", case.verdict.drafted_by if case and case.verdict else ""), ("approved", approval.by if approval else ""),
             ("published", case.publication.published_by if case and case.publication else ""))
    editors = []
    for did, username in steps:
        if username:
            # the user's role now, or (for a user since removed) the least role the step requires
            editors.append({"did": did, "id": pseudonym(salt, org, username), "role": roles.get(username) or STEP_ROLES[did]})
    return {
        "desk": snapshot.org_name or org,
        "org": org,
        "editors": editors,
        "approved_at": approval.at if approval else None,
        "published_at": snapshot.published_at,
        "language": snapshot.language,
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
        self.items = FeedItems(storage)
        self.heads = FeedHeads(storage)
        self.marks = OutboxMarks(storage)

    def head(self) -> int:
        return self.heads.get(self.org).seq

    def refresh(self) -> list[dict[str, Any]]:
        """Put every published snapshot that is new or changed since, and every narrative due to be
        shared, into the feed; returns the new items (as served: signed documents)."""
        return [item.to_doc() for item in self.refresh_items()]

    def refresh_items(self) -> list[FeedItem]:
        from factbridge.federation.crossborder import (
            alerts_to_share,
            narratives_to_share,
            partner_orgs,
        )
        from factbridge.federation.linkrisk import links_to_share

        new: list[FeedItem] = []
        with named_lock(f"federation-outbox:{self.org}"), folder_lock(self.identity, f"outbox-{self.org}"):
            state = self.marks.all(self.org)
            snapshots = list(PublishedPages(self.storage).all_oldest_first(self.org))
            todo = [(s, state.get(s.case_id)) for s in snapshots if (m := state.get(s.case_id)) is None or m.sha != content_sha(s.to_doc())]
            narratives = (narratives_to_share(self.storage, self.org, self.narrative_min_posts, state, partner_orgs(self.storage, self.org))
                          if self.narrative_min_posts > 0 else [])
            links = links_to_share(self.storage, self.org, state)
            alerts = alerts_to_share(self.storage, self.org, state, partner_orgs(self.storage, self.org))
            if not todo and not narratives and not links and not alerts:
                return new
            key = self.identity.active()
            salt = self.identity.salt()
            seq = self.head()
            cases = Cases(self.storage).get(self.org, list(dict.fromkeys(s.case_id for s, _ in todo)))
            for snapshot, previous in todo:
                case_id = snapshot.case_id
                # a withdrawal is final (nothing is published after it): the snapshot saying so
                kind = "withdrawal" if snapshot.withdrawn else "correction" if previous else "factcheck"
                payload = snapshot.to_doc()
                if kind == "correction" and snapshot.corrections:
                    payload["correction"] = snapshot.corrections[-1].to_doc()
                try:
                    proof = approval_proof(self.storage, self.org, case_id, kind, salt)
                except InputError as exc:  # nothing is shared without its proof; the others go on
                    log.warning("federation: case %s of %s not shared: %s", case_id, self.org, exc)
                    continue
                seq += 1
                new.append(self._append(key, seq, kind, case_id, payload, provenance(cases.get(case_id), snapshot, self.org, self.roles, salt),
                                        proof, OutboxMark(key=case_id, seq=seq, sha=content_sha(snapshot.to_doc()))))
            desk = {"desk": self.org_name or self.org, "org": self.org}
            for payload in narratives:
                seq += 1
                nid = payload["narrative_id"]
                new.append(self._append(key, seq, "narrative", nid, payload, desk | {"decided_by": payload["decided_by"]}, None,
                                        OutboxMark(key=f"narrative:{nid}", seq=seq, size=payload["size"], claims=payload["claims"])))
            for payload in alerts:
                seq += 1
                new.append(self._append(key, seq, "alert", payload["alert_id"], payload, desk | {"decided_by": payload["decided_by"]}, None,
                                        OutboxMark(key=f"alert:{payload['alert_id']}", seq=seq, kind=payload["kind"])))
            for payload in links:
                seq += 1
                new.append(self._append(key, seq, "linkrisk", payload["link_id"], payload, desk | {"decided_by": payload["decided_by"]}, None,
                                        OutboxMark(key=f"linkrisk:{payload['link_id']}", seq=seq)))
        return new

    def _append(self, key: OwnKey, seq: int, kind: str, item_id: str, payload: dict[str, Any], prov: dict[str, Any],
                proof: dict[str, Any] | None, mark: OutboxMark) -> FeedItem:
        unsigned = FeedItem.from_doc(canonical(FeedItem(format=FORMAT, org=self.org, seq=seq, kind=kind, item_id=item_id, issued_at=now_iso(),
                                                        licence=self.licence, payload=payload, provenance=prov, proof=proof,
                                                        key_id=key.key_id).body()))
        item = replace(unsigned, signature=sign_body(key.private, unsigned.body()))
        summary = {"seq": seq, "kind": kind, "item_id": item_id, "key_id": key.key_id, "payload_sha256": content_sha(payload)}
        self.audit.append(self.org, "federation", "federation.publish", FEED, item_id_of(seq), None, summary, records=[
            (FEED, self.items.rows([item])),
            (FEED_HEAD, self.heads.rows(FeedHead(seq=seq))),
            (FEED_STATE, self.marks.rows([mark])),
        ])
        return item

    def read(self, after: int, kinds: Sequence[str], limit: int = 100) -> FeedPage:
        """Items with a sequence number above `after` whose kind is in `kinds`, oldest first."""
        head = self.head()
        items: list[dict[str, Any]] = []
        offset = max(0, after)
        while len(items) < limit and offset < head:
            page = self.items.page(self.org, offset, min(500, head - offset))
            if not page:
                break
            offset += len(page)  # sequence numbers are contiguous from 1: row offset = seq - 1
            for item in page:
                if item.seq > after and item.kind in kinds:
                    items.append(item.to_doc())
                    if len(items) >= limit:
                        break
        return FeedPage(items=items, head=head, more=bool(items) and int(items[-1]["seq"]) < head and len(items) >= limit)

    def latest_snapshots(self, kinds: Sequence[str]) -> list[dict[str, Any]]:
        """The newest payload of every item in the feed (for the plain ClaimReview view)."""
        latest: dict[str, FeedItem] = {}
        for item in self.items.iter(self.org):
            if item.kind in kinds:
                latest[item.item_id] = item
        return [item.payload for item in sorted(latest.values(), key=lambda i: -i.seq)]
