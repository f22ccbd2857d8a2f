"""The federation's typed records (issue 11): after a two-partner exchange driven through the real
flow (the km desk's and the vi desk's apps, each pulling the other's signed feed; fact-checks, a
correction, a withdrawal, a narrative, a burst alert, a link verdict, a tampered item, a consensus,
pushes, a key revocation), every document stored in every federation collection reads back through
its record and writes out unchanged (`to_doc(from_doc(d)) == d`), under the key its accessor
gives it; every item of both feeds still verifies, and the feed's payloads are the public pages."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from factbridge.federation.canonical import canonical, canonical_bytes
from factbridge.federation.feed import Outbox
from factbridge.federation.identity import Identity, KeyRing, signature_valid
from factbridge.federation.partners import Partners
from factbridge.federation.push import push_to_partners
from factbridge.federation.records import (
    COLLECTIONS,
    CONSENSUS,
    FEED,
    FEED_HEAD,
    FEED_STATE,
    INBOX,
    ITEMS,
    PARTNER_LINKS,
    PARTNER_NARRATIVES,
    PARTNERS,
    PUSHES,
    SYNC,
    ConsensusMark,
    FeedHead,
    FeedItem,
    HeldItem,
    InboxRecord,
    OutboxMark,
    Partner,
    PartnerLink,
    PartnerNarrative,
    PartnerRecords,
    PushOutcome,
    SyncState,
    feed_key,
)
from factbridge.federation.sync import Syncer
from factbridge.linkrisk.feeds import FeedEntry, ParsedFeed, store_feed, url_key
from factbridge.models import Post
from factbridge.pipeline.ingest import embed_posts
from factbridge.pipeline.matching import index_factchecks
from factbridge.pipeline.prepare import prepare_post
from factbridge.pipeline.stages import run_stages
from factbridge.services import Services
from factbridge.settings import load_settings
from factbridge.web.app import accounts_for, create_app
from factbridge.workflow.accounts import Actor
from factbridge.workflow.audit import AuditLog
from factbridge.workflow.cases import CaseBook, RatingScale
from factbridge.workflow.records import PublishedPages

KM_URL, VI_URL = "http://km.test", "http://vi.test"
CLAIM = "វ៉ាក់សាំងមានបន្ទះឈីបតាមដាន"  # "the vaccine contains a tracking chip"
LINK = "http://aba-secure-login.com/verify?acct=1"

# collection -> (key, stored document) -> (the record, the key its accessor stores it under)
RECORDS: dict[str, Callable[[str, dict[str, Any]], tuple[Any, str]]] = {
    PARTNERS: lambda k, d: ((r := Partner.from_doc(k, d)), PartnerRecords.rows([r])[0][0]),
    FEED: lambda k, d: ((r := FeedItem.from_doc(d)), feed_key(r.seq)),
    FEED_HEAD: lambda k, d: (FeedHead.from_doc(d), "head"),
    FEED_STATE: lambda k, d: ((r := OutboxMark.from_doc(k, d)), r.key),
    INBOX: lambda k, d: ((r := InboxRecord.from_doc(k, d)), r.key),
    ITEMS: lambda k, d: ((r := HeldItem.from_doc(k, d)), r.key),
    SYNC: lambda k, d: ((r := SyncState.from_doc(k, d)), r.partner),
    PUSHES: lambda k, d: ((r := PushOutcome.from_doc(k, d)), r.partner),
    PARTNER_NARRATIVES: lambda k, d: ((r := PartnerNarrative.from_doc(k, d)), r.key),
    PARTNER_LINKS: lambda k, d: ((r := PartnerLink.from_doc(k, d)), r.key),
    CONSENSUS: lambda k, d: ((r := ConsensusMark.from_doc(d)), r.key),
}


RECEIPT = ["partner", "desk", "seq", "key_id", "received_at"]
VERDICT_HELD = ["partner", "item_id", "seq", "key_id", "factcheck_id", "kind", "flag"]


def legacy_keys(collection: str, key: str, doc: dict[str, Any]) -> list[str]:
    """The keys, in order, that the federation wrote before it had records (they must not change:
    stored documents, audit fingerprints and signatures depend on them)."""
    match collection:
        case "federation_partners":
            return ["name", "url", "org", "keys", "send", "accept", "push", "active", "added_at", "removed_at"]
        case "federation_feed":
            return ["format", "org", "seq", "kind", "item_id", "issued_at", "licence", "payload", "provenance", "proof", "key_id", "signature"]
        case "federation_feed_head":
            return ["seq"]
        case "federation_outbox":
            prefix = key.split(":", 1)[0] if ":" in key else "case"
            return {"case": ["sha", "seq"], "narrative": ["size", "claims", "seq"], "alert": ["kind", "seq"], "linkrisk": ["seq"]}[prefix]
        case "federation_inbox":
            return ["partner", "seq", "kind", "item_id", "key_id", "received_at", "status", "reason", "content_sha256"]
        case "federation_items":
            return VERDICT_HELD if doc["kind"] in ("factcheck", "correction", "withdrawal") else [k for k in VERDICT_HELD if k != "factcheck_id"]
        case "federation_sync":
            return ["cursor", "last_sync", "last_attempt", "last_error", "counts", "refusals", "pending_recheck"]
        case "federation_pushes":
            return ["partner", "head", "at", "status"] + (["error"] if doc["status"] != 202 else [])
        case "federation_narratives":
            return ["narrative_id", "label", "top_terms", "size", "languages", "first_seen", "last_seen", "representative_text", "claims",
                    "decided_by", *RECEIPT]
        case "federation_links":
            return ["link_id", "url", "host", "registered_domain", "score", "level", "reasons", "decided_by", *RECEIPT]
        case "federation_consensus":
            return ["partner_factcheck", "other_factcheck", "other_desk", "partner_rating", "other_rating", "agree", "fused_score",
                    "decided_by", "at"]
    raise AssertionError(collection)


class Desk:
    def __init__(self, tmp_path: Path, org: str, name: str) -> None:
        (tmp_path / org).mkdir()
        self.services = Services(load_settings(env={}, overrides={
            "data_dir": str(tmp_path / org), "storage_url": f"sqlite:///{tmp_path / org / 'fb.db'}", "embedder": "hashing",
            "embed_cache": "off", "match_fusion": "rrf", "org": org, "recheck_floor": 0.0, "match_threshold": 0.03,
            "possible_threshold": 0.02, "federation_narrative_min_posts": 1, "password_hash_time_cost": 1, "password_hash_memory_kib": 1024}))
        self.org = org
        self.storage = self.services.storage
        self.identity = Identity(self.services.settings.data_dir)
        accounts_for(self.services).add_org(org, name)
        self.cases = CaseBook(self.storage, AuditLog(self.storage), RatingScale.parse(self.services.settings.rating_scale))
        self.analyst, self.editor, self.reviewer = (Actor(f"{org}-{r}", org, role) for r, role in
                                                    (("analyst", "analyst"), ("editor", "editor"), ("reviewer", "editor")))

    def publish(self, claim: str, rating: str = "False", language: str = "km") -> str:
        case_id = str(self.cases.open(self.org, self.analyst, claim, language=language).id)
        self.cases.draft_verdict(self.org, self.analyst, case_id, rating, "No chip: the ingredient list is public.")
        self.cases.approve(self.org, self.reviewer, case_id)
        self.cases.publish(self.org, self.editor, case_id, f"http://{self.org}.test", f"{self.org} desk")
        return case_id

    def outbox(self) -> Outbox:
        roles = {self.analyst.username: "analyst", self.editor.username: "editor", self.reviewer.username: "editor"}
        return Outbox(self.storage, self.identity, self.org, "CC-BY-4.0", roles, org_name=f"{self.org} desk", narrative_min_posts=1)

    def ingest(self, post_id: str, text: str) -> None:
        post = prepare_post(Post(id=post_id, text=text, language="km"), self.services.languages)
        self.storage.upsert_posts(self.org, [post])
        embed_posts(self.storage, self.services.embedder, self.org, [post])
        run_stages(self.services, self.org, [post])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def exchanged(tmp_path: Path) -> Iterator[tuple[Desk, Desk]]:
    km, vi = Desk(tmp_path, "km", "Khmer Desk"), Desk(tmp_path, "vi", "Vietnamese Desk")
    Partners(vi.storage, "vi").add("test", "km", KM_URL, km.identity.active().public_text, "km")
    Partners(km.storage, "km").add("test", "vi", VI_URL, vi.identity.active().public_text, "vi", push=True)
    # a partner whose deployment refuses our push (the client reaches the vi app, which has no org fr)
    Partners(km.storage, "km").add("test", "fr", "http://fr.test", Identity(tmp_path / "fr").active().public_text, "fr", push=True)
    with TestClient(create_app(km.services), base_url=KM_URL) as km_client, TestClient(create_app(vi.services), base_url=VI_URL) as vi_client:
        vi_sync = Syncer(vi.services, "vi", vi.identity, client=km_client)
        km_sync = Syncer(km.services, "km", km.identity, client=vi_client)
        # vi checked the claim itself (consensus); km publishes, corrects and withdraws verdicts
        vi.publish(CLAIM)
        index_factchecks(vi.storage, vi.services.embedder, "vi")
        first = km.publish(CLAIM, rating="Mostly false")
        corrected = km.publish("Giá gạo sẽ tăng gấp ba vào tuần tới", language="vi")
        withdrawn = km.publish("The dam on the Mekong broke", language="en")
        index_factchecks(km.storage, km.services.embedder, "km")
        # a narrative repeating km's debunk on both sides, a flagged link, a burst alert
        km.ingest("km-post", CLAIM)
        vi.ingest("vi-post", CLAIM)
        store_feed(km.storage, "km", ParsedFeed("local-phish", "list", "test", [FeedEntry("url", url_key(LINK), "2026-12-01", "phishing")],
                                                [], "2026-12-01", "test"))
        km.ingest("km-link", f"ចូលគណនីរបស់អ្នកនៅទីនេះ {LINK}")
        km.storage.put_docs("km", "alerts", [("alert-n1-1", {
            "id": "alert-n1-1", "kind": "resurfacing", "narrative_id": "n1", "status": "new", "raised_at": "2026-12-02T10:00:00+00:00",
            "updated_at": "2026-12-02T10:00:00+00:00", "summary": CLAIM, "top_terms": ["chip"], "decided_by": "bursts-kleinberg-1",
            "evidence": {"burst_start": "2026-12-02T08:00:00+00:00", "burst_end": "2026-12-02T10:00:00+00:00", "posts_in_burst": 40,
                         "narrative_size": 55, "quiet_hours_before": 200, "debunks": [{"factcheck_id": "http://km.test", "posts": 40}]}},
                                               1.0)])
        km.outbox().refresh()
        first_sync = vi_sync.sync("km")
        assert first_sync.ok and first_sync.accepted and first_sync.consensus and first_sync.narratives
        assert first_sync.links and first_sync.partner_alerts
        km.cases.correct("km", km.editor, corrected, "Rating changed.", "Mostly false")
        km.cases.decide_correction("km", km.reviewer, corrected, approve=True)
        km.cases.withdraw("km", km.editor, withdrawn, "Wrong product.")
        km.cases.decide_withdrawal("km", km.reviewer, withdrawn, approve=True)
        # an item altered after it was signed: refused, with the reason kept
        tampered_case = km.publish("claim four")
        [tampered] = [i for i in km.outbox().refresh() if i["item_id"] == tampered_case]
        km.storage.put_docs("km", FEED, [(feed_key(tampered["seq"]), tampered | {"payload": tampered["payload"] | {"rating": "True"}},
                                          float(tampered["seq"]))])
        second = vi_sync.sync("km")
        assert second.withdrawn and second.refused and not second.error
        # vi's own feed, pulled by km; km pushes to its partners (vi takes it, fr's refuses)
        vi.outbox().refresh()
        assert km_sync.sync("vi").ok
        vi_partners = Partners(vi.storage, "vi")  # vi's pull on the push fails fast (nothing listens there)
        vi_partners.save("test", "url", vi_partners.get("km"), vi_partners.get("km").with_(url=f"http://127.0.0.1:{_closed_port()}"))
        pushed = push_to_partners(km.storage, "km", km.identity, km.outbox().head(), vi_client)
        assert {p.partner: p.status for p in pushed} == {"vi": 202, "fr": 404}
        vi_partners.save("test", "url", vi_partners.get("km"), vi_partners.get("km").with_(url=KM_URL))
        # km rotates its key and revokes the first one: what vi accepted from it is flagged
        km.identity.rotate()
        km.identity.revoke(str(first_sync_key(vi)), "leaked")
        assert vi_sync.sync("km").flagged
        assert first in {i.item_id for i in vi_sync.held.iter("vi")}
        vi_sync.close()
        km_sync.close()
    yield km, vi
    km.services.close()
    vi.services.close()


def first_sync_key(vi: Desk) -> str:
    [key_id] = [k for k, v in Partners(vi.storage, "vi").get("km").keys.items() if v.get("via") == "pinned"]
    return key_id


def test_every_federation_document_reads_back_through_its_record_unchanged(exchanged: tuple[Desk, Desk]) -> None:
    km, vi = exchanged
    seen: dict[str, list[Any]] = {c: [] for c in COLLECTIONS}
    assert set(RECORDS) == set(COLLECTIONS)
    for desk in (km, vi):
        for collection in COLLECTIONS:
            for key, doc in desk.storage.list_docs(desk.org, collection, limit=100_000):
                record, stored_as = RECORDS[collection](key, doc)
                assert record.to_doc() == doc, f"{desk.org}/{collection}/{key}"
                assert json.dumps(record.to_doc(), ensure_ascii=False) == json.dumps(doc, ensure_ascii=False)  # key order too
                assert stored_as == key, f"{desk.org}/{collection}/{key}"
                assert list(doc) == legacy_keys(collection, key, doc), f"{desk.org}/{collection}/{key}"
                seen[collection].append(record)
        assert AuditLog(desk.storage).verify(desk.org).ok
    assert all(seen.values()), {c: len(r) for c, r in seen.items()}
    # every shape the records write only where it applies was stored and read back
    held = seen[ITEMS]
    assert {h.kind for h in held} >= {"correction", "withdrawal", "narrative", "alert", "linkrisk"}
    assert any(h.factcheck_id for h in held) and any(h.factcheck_id is None for h in held) and any(h.flag for h in held)
    marks = seen[FEED_STATE]
    assert any(m.sha for m in marks) and any(m.claims is not None for m in marks) and any(m.kind for m in marks)
    assert any(m.key.startswith("linkrisk:") for m in marks)
    assert {p.status for p in seen[PUSHES]} == {202, 404} and any(p.error for p in seen[PUSHES])
    assert any(s.refusals for s in seen[SYNC])
    assert all(s.pending_recheck == [] for s in seen[SYNC])
    assert {r.status for r in seen[INBOX]} == {"accepted", "refused"}
    assert any(len(p.keys) > 1 for p in seen[PARTNERS])  # the key ring after a rotation and a revocation


def test_feed_items_verify_and_carry_the_public_pages(exchanged: tuple[Desk, Desk]) -> None:
    km, vi = exchanged
    ring = KeyRing(Partners(vi.storage, "vi").get("km").keys)
    items = list(km.outbox().items.iter("km"))
    assert {i.kind for i in items} == {"factcheck", "correction", "withdrawal", "narrative", "alert", "linkrisk"}
    tampered = [i for i in items if not signature_valid(ring.raw(i.key_id), i.body(), i.signature)]
    assert [i.kind for i in tampered] == ["factcheck"] and tampered[0].payload["rating"] == "True"
    # the newest item of each published case is its public page as stored, signed as it is
    pages = {p.case_id: p for p in PublishedPages(km.storage).all_oldest_first("km")}
    latest = {i.item_id: i for i in items if i.kind in ("factcheck", "correction", "withdrawal")}
    assert set(latest) == set(pages)
    for case_id, item in latest.items():
        if item in tampered:
            continue
        payload = {k: v for k, v in item.payload.items() if k != "correction"}
        assert canonical_bytes(payload) == canonical_bytes(pages[case_id].to_doc())
        assert canonical(item.body()) == item.body()
