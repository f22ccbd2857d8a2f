"""Federation in process: two desks (km publishes, vi pulls) on in-memory SQLite with the hashing
embedder, the km desk's app behind a Starlette TestClient. Signatures, key rotation and
revocation, tampering, replays, reordering, an unknown key, scopes, a partner offline, the
ClaimReview view and the documented test vector."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from factbridge.errors import InputError, NotAuthenticated
from factbridge.federation.auth import request_partner, signed_headers
from factbridge.federation.canonical import b64e, canonical_bytes
from factbridge.federation.feed import FEED, Outbox
from factbridge.federation.identity import (
    Identity,
    KeyRing,
    key_id_of,
    public_key_text,
    sign_body,
    signature_valid,
)
from factbridge.federation.partners import Partners
from factbridge.federation.proof import check_proof
from factbridge.federation.push import push_to_partners
from factbridge.federation.schedule import PartnerSyncScheduler
from factbridge.federation.sync import ITEMS, Syncer, trust_label
from factbridge.models import FactCheck, Post
from factbridge.pipeline.ingest import embed_posts
from factbridge.pipeline.matching import index_factchecks
from factbridge.pipeline.prepare import prepare_factcheck, prepare_post
from factbridge.pipeline.stages import run_stages
from factbridge.pipeline.withdrawals import withdrawal_of
from factbridge.services import Services
from factbridge.settings import load_settings
from factbridge.web.app import create_app
from factbridge.workflow.accounts import Actor
from factbridge.workflow.audit import AuditLog
from factbridge.workflow.cases import CaseBook, RatingScale
from factbridge.workflow.ratings import rating_label

DOCS = Path(__file__).resolve().parent.parent / "docs" / "federation.md"
KM_URL = "http://km.test"
CLAIM_KM = "វ៉ាក់សាំងមានបន្ទះឈីបតាមដាន"  # "the vaccine contains a tracking chip"


def _services(tmp_path: Path, name: str) -> Services:
    (tmp_path / name).mkdir()
    settings = load_settings(env={}, overrides={
        "data_dir": str(tmp_path / name), "storage_url": "sqlite:///:memory:", "embedder": "hashing", "embed_cache": "off",
        "match_fusion": "rrf", "org": name, "recheck_floor": 0.0,
        # rank fusion has no tuned thresholds: rank 1 in both retrievers is a match (identical claims)
        "match_threshold": 0.03, "possible_threshold": 0.02, "federation_narrative_min_posts": 1, "password_hash_time_cost": 1, "password_hash_memory_kib": 1024})
    return Services(settings)


class Desk:
    def __init__(self, services: Services, org: str) -> None:
        self.services = services
        self.org = org
        self.identity = Identity(services.settings.data_dir)
        self.cases = CaseBook(services.storage, AuditLog(services.storage), RatingScale.parse(services.settings.rating_scale))
        self.analyst = Actor(f"{org}-analyst", org, "analyst")
        self.editor = Actor(f"{org}-editor", org, "editor")
        self.reviewer = Actor(f"{org}-reviewer", org, "editor")

    def publish(self, claim: str, rating: str = "False", language: str = "km") -> dict[str, Any]:
        case = self.cases.open(self.org, self.analyst, claim, language=language)
        self.cases.draft_verdict(self.org, self.analyst, case.id, rating, "No chip: the ingredient list is public.")
        self.cases.approve(self.org, self.reviewer, case.id)
        return self.cases.publish(self.org, self.editor, case.id, KM_URL, f"{self.org} desk")

    def outbox(self) -> Outbox:
        return Outbox(self.services.storage, self.identity, self.org, "CC-BY-4.0",
                      {self.analyst.username: "analyst", self.editor.username: "editor", self.reviewer.username: "editor"})


def _correct_rating(km: Desk, case_id: str, text: str, rating: str) -> None:
    """A correction that changes the rating: proposed by one editor, approved by a second."""
    km.cases.correct("km", km.editor, case_id, text, rating)
    km.cases.decide_correction("km", km.reviewer, case_id, approve=True)


@pytest.fixture
def desks(tmp_path: Path) -> Iterator[tuple[Desk, Desk, TestClient]]:
    km_services, vi_services = _services(tmp_path, "km"), _services(tmp_path, "vi")
    km, vi = Desk(km_services, "km"), Desk(vi_services, "vi")
    from factbridge.web.app import accounts_for

    accounts_for(km_services).add_org("km", "Khmer Desk")
    accounts_for(vi_services).add_org("vi", "Vietnamese Desk")
    client = TestClient(create_app(km_services), base_url=KM_URL)
    Partners(vi_services.storage, "vi").add("test", "km", KM_URL, km.identity.active().public_text, "km")
    Partners(km_services.storage, "km").add("test", "vi", "http://vi.test", vi.identity.active().public_text, "vi")
    yield km, vi, client
    client.close()
    km_services.close()
    vi_services.close()


def _syncer(vi: Desk, client: httpx.Client) -> Syncer:
    return Syncer(vi.services, "vi", vi.identity, client=client)


def test_published_debunk_reaches_the_partner_verified_with_its_provenance(desks: tuple[Desk, Desk, TestClient]) -> None:
    km, vi, client = desks
    case = km.publish(CLAIM_KM)
    report = _syncer(vi, client).sync("km")
    assert report.ok and report.refused == []
    assert report.accepted == [f"partner/km/{case.id}"]
    fc = vi.services.storage.get_factcheck("vi", report.accepted[0])
    assert fc.claim == CLAIM_KM and fc.rating == "False" and fc.source_format == "federation"
    assert trust_label(fc) == "debunked by km desk (partner km), verified signature"
    fed = fc.raw["federation"]
    roles = {e["did"]: e["role"] for e in fed["provenance"]["editors"]}
    assert roles == {"drafted": "analyst", "approved": "editor", "published": "editor"}
    # pseudonyms only: no user name of the km desk reaches the vi desk
    assert "km-reviewer" not in json.dumps(fed) and "km-analyst" not in json.dumps(fed)
    # the receipt is audited on the vi side, the publication on the km side
    assert any(e["action"] == "federation.accept" for e in AuditLog(vi.services.storage).entries("vi"))
    km_actions = {e["action"] for e in AuditLog(km.services.storage).entries("km")}
    assert {"federation.publish", "federation.send"} <= km_actions  # the signed pull was vi's: the send is audited
    assert AuditLog(vi.services.storage).verify("vi").ok and AuditLog(km.services.storage).verify("km").ok
    # syncing again brings nothing new and changes nothing
    again = _syncer(vi, client).sync("km")
    assert again.ok and again.accepted == [] and again.refused == []


def test_correction_updates_the_partner_copy_and_rematches_posts(desks: tuple[Desk, Desk, TestClient]) -> None:
    km, vi, client = desks
    post = prepare_post(Post(id="p1", text=CLAIM_KM, language="km"), vi.services.languages)
    vi.services.storage.upsert_posts("vi", [post])
    embed_posts(vi.services.storage, vi.services.embedder, "vi", [post])
    run_stages(vi.services, "vi", [post])
    case = km.publish(CLAIM_KM)
    first = _syncer(vi, client).sync("km")
    assert first.rematched == ["p1"]
    matches = vi.services.storage.matches_for_post("vi", "p1")
    assert matches and matches[0].factcheck_id == f"partner/km/{case.id}"
    _correct_rating(km, case.id, "The chip claim was about another product; rating changed.", "Mostly false")
    second = _syncer(vi, client).sync("km")
    assert second.accepted == [f"partner/km/{case.id}"] and second.rematched == ["p1"]
    assert vi.services.storage.get_factcheck("vi", f"partner/km/{case.id}").rating == "Mostly false"
    kinds = [d["kind"] for _, d in vi.services.storage.list_docs("vi", ITEMS)]
    assert kinds == ["correction"]


def _withdraw(km: Desk, case_id: str, reason: str) -> None:
    """A withdrawal: proposed by one editor, approved by a second."""
    km.cases.withdraw("km", km.editor, case_id, reason)
    km.cases.decide_withdrawal("km", km.reviewer, case_id, approve=True)


def test_withdrawal_reaches_the_partner_marks_its_copy_and_rematches_posts(desks: tuple[Desk, Desk, TestClient], tmp_path: Path) -> None:
    km, vi, client = desks
    _ingest(vi, "p1", CLAIM_KM)
    case = km.publish(CLAIM_KM)
    fc_id = f"partner/km/{case.id}"
    first = _syncer(vi, client).sync("km")
    assert first.accepted == [fc_id] and first.rematched == ["p1"]
    assert vi.services.storage.matches_for_post("vi", "p1")[0].factcheck_id == fc_id
    queued = vi.services.storage.get_docs("vi", "queue", ["p1"])["p1"]
    assert queued["components"]["debunked"]["value"] > 0 and queued["components"]["debunked"]["evidence"]["factcheck_id"] == fc_id
    _withdraw(km, case.id, "The photo showed another product.")
    second = _syncer(vi, client).sync("km")
    assert second.ok and second.refused == [] and second.accepted == [fc_id] and second.withdrawn == [fc_id]
    assert second.rematched == ["p1"]
    # our copy stays, marked withdrawn, and says so; it no longer answers the post nor counts as a debunk in the queue
    fc = vi.services.storage.get_factcheck("vi", fc_id)
    assert withdrawal_of(fc) is not None and withdrawal_of(fc)["reason"] == "The photo showed another product."  # type: ignore[index]
    assert str(trust_label(fc)).startswith("withdrawn by km desk (partner km) ") and "The photo showed another product." in str(trust_label(fc))
    assert all(m.factcheck_id != fc_id for m in vi.services.storage.matches_for_post("vi", "p1"))
    queued = vi.services.storage.get_docs("vi", "queue", ["p1"])["p1"]
    assert queued["components"]["debunked"]["value"] == 0
    assert [d["kind"] for _, d in vi.services.storage.list_docs("vi", ITEMS)] == ["withdrawal"]
    assert any(e["action"] == "federation.accept" and e["after"]["kind"] == "withdrawal" for e in AuditLog(vi.services.storage).entries("vi"))
    # the km feed: the withdrawal item carries the proof that a second editor approved it
    items = client.get("/federation/v1/km/feed").json()["items"]
    assert [i["kind"] for i in items] == ["factcheck", "withdrawal"]
    proof = items[1]["proof"]
    assert proof["entry"]["action"] == "case.withdraw" and proof["proposed_by"] != proof["approved_by"] == proof["entry"]["actor"]
    check_proof(proof, "withdrawal", case.id)
    with pytest.raises(InputError, match="proposed the withdrawal"):
        check_proof(proof | {"proposed_by": proof["approved_by"]}, "withdrawal", case.id)
    # the plain ClaimReview view says it too, and an importer marks it withdrawn
    [node] = client.get("/federation/v1/km/claimreview.jsonld").json()["@graph"]
    assert node["creativeWorkStatus"] == "Withdrawn" and "another product" in node["correction"]["text"]
    from factbridge.pipeline.library import read_factchecks

    path = tmp_path / "feed.jsonld"
    path.write_text(client.get("/federation/v1/km/claimreview.jsonld").text, encoding="utf-8")
    [imported] = list(read_factchecks(path))
    assert isinstance(imported, FactCheck) and withdrawal_of(imported) is not None
    assert AuditLog(vi.services.storage).verify("vi").ok and AuditLog(km.services.storage).verify("km").ok
    # nothing more comes
    again = _syncer(vi, client).sync("km")
    assert again.accepted == [] and again.withdrawn == []


def test_a_withdrawal_outside_the_scope_or_unsigned_is_refused(desks: tuple[Desk, Desk, TestClient]) -> None:
    km, vi, client = desks
    case = km.publish(CLAIM_KM)
    _syncer(vi, client).sync("km")
    vi_partners = Partners(vi.services.storage, "vi")
    vdoc = vi_partners.get("km")
    vi_partners.save("test", "scope", vdoc, vdoc | {"accept": ["factcheck", "correction"]})
    _withdraw(km, case.id, "Wrong product.")
    report = _syncer(vi, client).sync("km")
    assert report.withdrawn == [] and any("kind 'withdrawal' is outside what we accept" in r["reason"] for r in report.refused)
    assert withdrawal_of(vi.services.storage.get_factcheck("vi", f"partner/km/{case.id}")) is None


def test_the_worker_schedule_syncs_due_partners(desks: tuple[Desk, Desk, TestClient]) -> None:
    """`factbridge worker` runs this scheduler (federation_sync_every_s > 0): a tick pulls each
    active partner whose last sync is that old, as `partners sync` does."""
    km, vi, client = desks
    case = km.publish(CLAIM_KM)
    vi.publish("Giá gạo sẽ tăng gấp ba vào tuần tới", language="vi")
    clock = [datetime.now(UTC)]
    scheduler = PartnerSyncScheduler(vi.services, None, threading.Event(), every_s=300, now=lambda: clock[0], client=client)
    [report] = scheduler.tick()  # never synced: due (every organisation the installation knows: here vi)
    assert report.partner == "km" and report.ok and report.accepted == [f"partner/km/{case.id}"]
    assert _syncer(vi, client).state("km")["last_sync"] is not None
    # our own feed was brought up to date by the tick too, for partners pulling from us
    assert [d["kind"] for _, d in vi.services.storage.list_docs("vi", FEED)] == ["factcheck"]
    _withdraw(km, case.id, "Wrong product.")
    clock[0] += timedelta(seconds=120)
    assert scheduler.tick() == []  # synced two minutes ago: not due yet
    clock[0] += timedelta(seconds=300)
    [report] = scheduler.tick()
    assert report.withdrawn == [f"partner/km/{case.id}"]
    # the thread, as the worker starts it: a pass at once, stopped by the worker's stop event
    Partners(vi.services.storage, "vi").remove("test", "km")
    Partners(vi.services.storage, "vi").add("test", "km2", KM_URL, km.identity.active().public_text, "km")
    stop = threading.Event()
    looping = PartnerSyncScheduler(vi.services, "vi", stop, every_s=3600, tick_s=1, client=client)
    thread = looping.start_thread()
    deadline = time.monotonic() + 10
    while looping.syncs < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=10)
    assert looping.syncs == 1 and not thread.is_alive()
    assert _syncer(vi, client).state("km2")["last_sync"] is not None


def test_independent_verdicts_on_one_claim_get_a_consensus_mark(desks: tuple[Desk, Desk, TestClient]) -> None:
    km, vi, client = desks
    ours = vi.publish(CLAIM_KM, rating="False")  # the vi desk checked the same claim itself
    index_factchecks(vi.services.storage, vi.services.embedder, "vi")
    case = km.publish(CLAIM_KM, rating="Mostly false")
    report = _syncer(vi, client).sync("km")
    [mark] = report.consensus
    assert mark["agree"] and mark["other_factcheck"] == ours.publication.url and mark["partner_factcheck"] == f"partner/km/{case.id}"
    assert mark["decided_by"].startswith("federation-consensus-1+matcher:")
    fc = vi.services.storage.get_factcheck("vi", f"partner/km/{case.id}")
    assert str(trust_label(fc)).endswith("verified signature; cross-border consensus with vi desk")
    km.outbox().refresh()
    _correct_rating(km, case.id, "New evidence: the claim holds.", "True")
    [mark] = _syncer(vi, client).sync("km").consensus
    assert not mark["agree"]
    assert "verdict differs from vi desk (False)" in str(trust_label(vi.services.storage.get_factcheck("vi", fc.id)))
    # our own verdict is untouched
    assert vi.services.storage.get_factcheck("vi", ours.publication.url).rating == "False"


def _ingest(desk: Desk, post_id: str, text: str) -> None:
    post = prepare_post(Post(id=post_id, text=text, language="km"), desk.services.languages)
    desk.services.storage.upsert_posts(desk.org, [post])
    embed_posts(desk.services.storage, desk.services.embedder, desk.org, [post])
    run_stages(desk.services, desk.org, [post])


def test_a_narrative_crossing_the_border_raises_an_alert_on_both_sides(desks: tuple[Desk, Desk, TestClient]) -> None:
    km, vi, km_client = desks
    case = km.publish(CLAIM_KM)
    index_factchecks(km.services.storage, km.services.embedder, "km")
    _ingest(km, "km-post", CLAIM_KM)  # the story spreads in Cambodia, repeating km's debunked claim
    _ingest(vi, "vi-post", CLAIM_KM)  # and in Viet Nam, before vi has heard of the debunk
    report = _syncer(vi, km_client).sync("km")
    assert len(report.narratives) == 1
    [alert] = report.alerts
    assert alert["kind"] == "cross-border" and alert["decided_by"] == "federation-cross-border-1"
    assert alert["evidence"]["shared_claims"] == [{"org": "km", "item_id": case.id}]
    assert alert["evidence"]["partner_desk"] == "Khmer Desk"
    assert vi.services.storage.get_docs("vi", "alerts", [alert["id"]])
    # the km desk reads vi's feed and raises its own
    with TestClient(create_app(vi.services), base_url="http://vi.test") as vi_client:
        km_report = Syncer(km.services, "km", km.identity, client=vi_client).sync("vi")
    [km_alert] = km_report.alerts
    assert km_alert["evidence"]["shared_claims"] == [{"org": "km", "item_id": case.id}]
    assert km_alert["evidence"]["partner_desk"] == "Vietnamese Desk"
    # what crossed: no post id, no author; and narratives are for partners only, not public readers
    sent = vi.services.storage.get_docs("vi", "federation_narratives", [f"km/{alert['evidence']['partner_narrative']['narrative_id']}"])
    [shared] = sent.values()
    assert "km-post" not in json.dumps(shared) and set(shared) >= {"label", "size", "languages", "claims", "representative_text"}
    assert not [i for i in km_client.get("/federation/v1/km/feed").json()["items"] if i["kind"] == "narrative"]
    # an unchanged narrative is not shared again, and the alert is not raised twice
    again = _syncer(vi, km_client).sync("km")
    assert again.narratives == [] and again.alerts == []


def test_accepted_items_are_rechecked_after_a_crash(desks: tuple[Desk, Desk, TestClient], monkeypatch: pytest.MonkeyPatch) -> None:
    km, vi, client = desks
    _ingest(vi, "p1", CLAIM_KM)
    case = km.publish(CLAIM_KM)
    syncer = _syncer(vi, client)

    def crash(*args: Any) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(Syncer, "_recheck", crash)
    with pytest.raises(RuntimeError):
        syncer.sync("km")
    assert all(m.factcheck_id != f"partner/km/{case.id}" for m in vi.services.storage.matches_for_post("vi", "p1"))
    monkeypatch.undo()
    report = _syncer(vi, client).sync("km")
    assert report.accepted == [] and report.rematched == ["p1"]  # nothing new, but the pending re-check ran
    assert vi.services.storage.matches_for_post("vi", "p1")[0].factcheck_id == f"partner/km/{case.id}"
    assert _syncer(vi, client).state("km")["pending_recheck"] == []


def test_tampered_item_is_refused_and_the_rest_goes_on(desks: tuple[Desk, Desk, TestClient]) -> None:
    km, vi, client = desks
    km.publish(CLAIM_KM)
    km.publish("Tin giả: nước muối chữa khỏi bệnh", language="vi")
    [item1, item2] = km.outbox().refresh()
    tampered = item1 | {"payload": item1["payload"] | {"rating": "True"}}
    km.services.storage.put_docs("km", FEED, [("000000000001", tampered, 1.0)])
    report = _syncer(vi, client).sync("km")
    assert [r["seq"] for r in report.refused] == [1]
    assert "signature does not verify" in report.refused[0]["reason"]
    assert report.accepted == [f"partner/km/{item2['item_id']}"]
    state = _syncer(vi, client).state("km")
    assert state["counts"]["refused"] == 1 and state["refusals"][0]["reason"].startswith("signature does not verify")
    assert any(e["action"] == "federation.refuse" for e in AuditLog(vi.services.storage).entries("vi"))


def test_unknown_key_and_foreign_org_are_refused(desks: tuple[Desk, Desk, TestClient], tmp_path: Path) -> None:
    km, vi, client = desks
    km.publish(CLAIM_KM)
    [item] = km.outbox().refresh()
    stranger = Identity(tmp_path / "stranger").active()
    forged = item | {"key_id": stranger.key_id}
    forged["signature"] = sign_body(stranger.private, forged)
    km.services.storage.put_docs("km", FEED, [("000000000001", forged, 1.0)])
    report = _syncer(vi, client).sync("km")
    assert "signed by unknown key" in report.refused[0]["reason"]
    partner = Partners(vi.services.storage, "vi").get("km")
    from factbridge.federation.sync import check_item

    other_org = item | {"org": "elsewhere"}
    assert "item of organisation 'elsewhere'" in str(check_item(other_org, partner, KeyRing(partner["keys"])))


def test_rotation_is_followed_and_revocation_refuses_and_flags(desks: tuple[Desk, Desk, TestClient]) -> None:
    km, vi, client = desks
    first = km.publish(CLAIM_KM)
    assert _syncer(vi, client).sync("km").accepted
    k1 = km.identity.active().key_id
    k2 = km.identity.rotate().key_id  # endorsed by k1: vi follows it
    second = km.publish("claim two")
    assert km.outbox().refresh()[0]["key_id"] == k2
    km.identity.revoke(k2, "laptop lost")  # before vi saw the item k2 signed
    report = _syncer(vi, client).sync("km")
    assert report.key_changes == [f"key {k2} added (endorsed by {k1})", f"key {k2} revoked (laptop lost)"]
    assert [r["item_id"] for r in report.refused] == [second.id]
    assert report.refused[0]["reason"].startswith(f"signed by revoked key {k2}") and "laptop lost" in report.refused[0]["reason"]
    # revoking the key that signed an item vi holds: the item is flagged, not removed
    km.identity.revoke(k1, "leaked")
    flagged = _syncer(vi, client).sync("km")
    assert flagged.flagged == [f"partner/km/{first.id}"]
    fc = vi.services.storage.get_factcheck("vi", f"partner/km/{first.id}")
    assert fc.raw["federation"]["trust"] == "signed by a key since revoked" and "leaked" in fc.raw["federation"]["flag"]
    assert "signed by a key since revoked" in str(trust_label(fc))
    # the desk signs on with its newest key, which vi trusts
    third = km.publish("claim three")
    assert _syncer(vi, client).sync("km").accepted == [f"partner/km/{third.id}"]


def test_replays_and_reordering_never_bring_back_an_older_version(desks: tuple[Desk, Desk, TestClient]) -> None:
    km, vi, client = desks
    case = km.publish(CLAIM_KM)
    items = km.outbox().refresh()
    _correct_rating(km, case.id, "Rating changed.", "Mostly false")
    items += km.outbox().refresh()
    assert [i["kind"] for i in items] == ["factcheck", "correction"]
    keys = client.get("/federation/v1/keys").json()
    served: list[list[dict[str, Any]]] = [[items[1]], [items[0]], [items[1], items[0]]]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/keys"):
            return httpx.Response(200, json=keys)
        return httpx.Response(200, json={"items": served.pop(0) if served else [], "more": False})

    syncer = _syncer(vi, httpx.Client(transport=httpx.MockTransport(handler)))
    assert syncer.sync("km").accepted  # the correction arrives first
    late = syncer.sync("km")  # then the original, out of order: below the cursor
    replay = syncer.sync("km")  # then both again
    assert late.accepted == [] and late.replayed == 1
    assert replay.accepted == [] and replay.replayed == 2
    assert vi.services.storage.get_factcheck("vi", f"partner/km/{case.id}").rating == "Mostly false"


def test_scopes_limit_what_is_sent_and_what_is_accepted(desks: tuple[Desk, Desk, TestClient]) -> None:
    km, vi, client = desks
    km_partners = Partners(km.services.storage, "km")
    doc = km_partners.get("vi")
    km_partners.save("test", "scope", doc, doc | {"send": ["factcheck"]})
    case = km.publish(CLAIM_KM)
    km.outbox().refresh()
    _correct_rating(km, case.id, "Rating changed.", "Mostly false")
    report = _syncer(vi, client).sync("km")
    assert report.accepted and vi.services.storage.get_factcheck("vi", report.accepted[0]).rating == "False"
    # the correction was never sent to vi, but anonymous readers see public items
    assert [i["kind"] for i in client.get("/federation/v1/km/feed").json()["items"]] == ["factcheck", "correction"]
    # and what vi does not accept is refused with the reason
    vi_partners = Partners(vi.services.storage, "vi")
    vdoc = vi_partners.get("km")
    vi_partners.save("test", "scope", vdoc, vdoc | {"accept": ["correction"]})
    km_partners.save("test", "scope", km_partners.get("vi"), km_partners.get("vi") | {"send": ["factcheck", "correction"]})
    km.publish("claim three")
    report = _syncer(vi, client).sync("km")
    assert any("outside what we accept" in r["reason"] for r in report.refused)


def test_a_partner_cannot_overwrite_our_own_factchecks(desks: tuple[Desk, Desk, TestClient]) -> None:
    km, vi, client = desks
    case = km.publish(CLAIM_KM)
    own = prepare_factcheck(FactCheck(id=case.publication.url, claim="our own", rating="True", publisher="vi desk"))
    vi.services.storage.upsert_factchecks("vi", [own])
    _syncer(vi, client).sync("km")
    assert vi.services.storage.get_factcheck("vi", own.id).claim == "our own"
    assert vi.services.storage.count_factchecks("vi") == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_offline_partner_keeps_the_cursor_and_says_so(desks: tuple[Desk, Desk, TestClient]) -> None:
    km, vi, _ = desks
    port = _free_port()
    partners = Partners(vi.services.storage, "vi")
    doc = partners.get("km")
    partners.save("test", "url", doc, doc | {"url": f"http://127.0.0.1:{port}"})
    syncer = Syncer(vi.services, "vi", vi.identity, client=httpx.Client(timeout=2))
    report = syncer.sync("km")
    assert not report.ok and report.error and report.error.startswith("offline:")
    state = syncer.state("km")
    assert state["cursor"] == 0 and state["last_sync"] is None and state["last_error"].startswith("offline:")


def test_push_makes_the_partner_pull_at_once(desks: tuple[Desk, Desk, TestClient]) -> None:
    import threading

    import uvicorn

    km, vi, _ = desks
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(km.services), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        vi_partners = Partners(vi.services.storage, "vi")
        vi_partners.save("test", "url", vi_partners.get("km"), vi_partners.get("km") | {"url": f"http://127.0.0.1:{port}"})
        km_partners = Partners(km.services.storage, "km")
        km_partners.save("test", "push", km_partners.get("vi"), km_partners.get("vi") | {"push": True})
        case = km.publish(CLAIM_KM)
        outbox = km.outbox()
        outbox.refresh()
        with TestClient(create_app(vi.services), base_url="http://vi.test") as vi_client:
            [pushed] = push_to_partners(km.services.storage, "km", km.identity, outbox.head(), vi_client)
            assert pushed["status"] == 202
            # the push carried no item: vi pulled km's feed (over loopback) and verified it
            assert vi.services.storage.get_factcheck("vi", f"partner/km/{case.id}").raw["federation"]["trust"] == "verified signature"
            unsigned = vi_client.post("/federation/v1/vi/inbox", json={"from": "km", "head": 1})
            assert unsigned.status_code == 401
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_signed_requests(desks: tuple[Desk, Desk, TestClient]) -> None:
    km, vi, client = desks
    partners = Partners(km.services.storage, "km")
    headers = signed_headers(vi.identity, "vi", "GET", "/federation/v1/km/feed", "after=0")
    lower = {k.lower(): v for k, v in headers.items()}
    assert request_partner(partners, lower, "GET", "/federation/v1/km/feed", "after=0")["name"] == "vi"
    assert request_partner(partners, {}, "GET", "/x", "") is None
    with pytest.raises(NotAuthenticated, match="does not verify"):
        request_partner(partners, lower, "GET", "/federation/v1/km/feed", "after=5")
    response = client.get("/federation/v1/km/feed", headers=headers | {"X-FactBridge-Signature": "AAAA"})
    assert response.status_code == 401 and "does not verify" in response.json()["detail"]


def test_claimreview_view_of_the_feed(desks: tuple[Desk, Desk, TestClient], tmp_path: Path) -> None:
    km, _, client = desks
    case = km.publish(CLAIM_KM)
    _correct_rating(km, case.id, "Rating changed.", "Mostly false")
    for response in (client.get("/federation/v1/km/claimreview.jsonld"),
                     client.get("/federation/v1/km/feed", headers={"Accept": "application/ld+json"})):
        assert response.headers["content-type"].startswith("application/ld+json")
        [node] = response.json()["@graph"]
        assert node["@type"] == "ClaimReview" and node["claimReviewed"] == CLAIM_KM
        # the rating is named in the fact-check's own language (issue 12): a Khmer verdict says it in Khmer
        assert node["reviewRating"]["alternateName"] == rating_label("Mostly false", "km") == "ភាគច្រើនមិនពិត"
    assert client.get("/federation/v1/nowhere/feed").status_code == 404
    # and a system that does not verify signatures imports it as plain ClaimReview
    from factbridge.pipeline.library import read_factchecks

    path = tmp_path / "feed.jsonld"
    path.write_text(client.get("/federation/v1/km/claimreview.jsonld").text, encoding="utf-8")
    [fc] = list(read_factchecks(path))
    assert isinstance(fc, FactCheck) and fc.claim == CLAIM_KM and fc.rating == "ភាគច្រើនមិនពិត" and fc.publisher == "km desk"


def test_proof_refuses_a_self_approved_or_broken_excerpt(desks: tuple[Desk, Desk, TestClient]) -> None:
    km, _, _ = desks
    case = km.publish(CLAIM_KM)
    [item] = km.outbox().refresh()
    proof = item["proof"]
    check_proof(proof, "factcheck", case.id)
    with pytest.raises(InputError, match="second editor"):
        check_proof(proof | {"drafted_by": proof["approved_by"]}, "factcheck", case.id)
    broken = proof | {"links": [dict(link) for link in proof["links"]]}
    broken["links"][0]["prev_hash"] = "0" * 64
    with pytest.raises(InputError, match="chain broken"):
        check_proof(broken, "factcheck", case.id)
    with pytest.raises(InputError, match="not case"):
        check_proof(proof, "factcheck", "case-other")


def test_key_ring_takes_only_statements_signed_by_trusted_keys(tmp_path: Path) -> None:
    ours = Identity(tmp_path / "a")
    first = ours.active()
    ring = KeyRing.pinned(first.public_text)
    second = ours.rotate()
    intruder = Ed25519PrivateKey.generate()
    raw = intruder.public_key().public_bytes_raw()
    fake = {"type": "key", "key_id": key_id_of(raw), "public_key": public_key_text(raw), "created_at": "x", "endorsed_by": key_id_of(raw)}
    fake["signature"] = sign_body(intruder, fake)
    changes = ring.apply([fake, *reversed(ours.statements())])
    assert changes == [f"key {second.key_id} added (endorsed by {first.key_id})"]
    assert key_id_of(raw) not in ring.keys


def _doc_vector() -> dict[str, Any]:
    text = DOCS.read_text(encoding="utf-8")
    block = text.split("<!-- test-vector -->", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    return json.loads(block)


def test_documented_test_vector_verifies() -> None:
    vector = _doc_vector()
    seed = bytes.fromhex(vector["private_key_seed_hex"])
    private = Ed25519PrivateKey.from_private_bytes(seed)
    raw = private.public_key().public_bytes_raw()
    item = vector["item"]
    assert public_key_text(raw) == vector["public_key"] and key_id_of(raw) == item["key_id"]
    assert canonical_bytes({k: v for k, v in item.items() if k != "signature"}).decode() == vector["canonical"]
    assert signature_valid(raw, item, item["signature"])
    assert sign_body(private, item) == item["signature"]  # Ed25519 is deterministic
    assert not signature_valid(raw, item | {"seq": 2}, item["signature"])
    check_proof(item["proof"], item["kind"], item["item_id"])
    assert b64e(raw) == vector["public_key"].removeprefix("ed25519:")


def test_post_page_shows_the_partner_and_trust_level(desks: tuple[Desk, Desk, TestClient]) -> None:
    from factbridge.web.app import accounts_for

    km, vi, km_client = desks
    _ingest(vi, "p1", CLAIM_KM)
    km.publish(CLAIM_KM)
    _syncer(vi, km_client).sync("km")
    accounts_for(vi.services).add_user("vi-editor", "pw-vi-editor-0123456789", "vi", "editor")
    with TestClient(create_app(vi.services), base_url="http://vi.test", follow_redirects=False) as c:
        page = c.get("/login")
        csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        assert c.post("/login", data={"username": "vi-editor", "password": "pw-vi-editor-0123456789", "csrf_token": csrf, "next": "/"}).status_code == 303
        assert "Partner km (km desk) · verified signature" in c.get("/posts/p1").text
        assert "Đối tác km (km desk) · verified signature" in c.get("/posts/p1?lang=vi").text


def test_partners_commands(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from factbridge.cli import app

    def run(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "--org", "vi", "--embedder", "hashing", "--embed-cache", "off", *args],
                                    env={"COLUMNS": "250"})
        assert result.exit_code == code, f"{args}: {result.output}"
        # an error of the exception tree reaches main() (which prints it); here it is the exception
        return result.output + (str(result.exception) if code and result.exception else "")

    assert "federation key:" in run("init")
    other = Identity(tmp_path / "km").active()
    ours = json.loads(run("partners", "identity", "--json"))
    assert ours["org"] == "vi" and ours["public_key"].startswith("ed25519:")
    assert "pinned" in run("partners", "add", "km", "http://127.0.0.1:9", "--key", other.public_text, "--accept", "factcheck")
    assert "outside" not in run("partners", "list")
    bad = run("partners", "add", "x", "http://h", "--key", "ed25519:AAAA", code=1)
    assert "key" in bad and "32 bytes" in bad
    assert "unknown kind 'rumour'" in run("partners", "add", "y", "http://h", "--key", other.public_text, "--send", "rumour", code=1)
    failed = run("partners", "sync", code=1)
    assert "offline" in failed
    status = run("partners", "status")
    assert "never" in status and "offline" in status  # attempted, never synced
    assert "deactivated" in run("partners", "remove", "km")
    listed = json.loads(run("partners", "list", "--json"))
    assert listed[0]["active"] is False and listed[0]["removed_at"]
    new_key = run("partners", "rotate-key")
    assert "endorsed by " + ours["key_id"] in new_key
    assert "revoked" in run("partners", "revoke-key", ours["key_id"], "--reason", "test")
    assert json.loads(run("partners", "identity", "--json"))["key_id"] != ours["key_id"]


def test_link_risk_verdicts_become_a_partner_feed_and_rescore_our_posts(desks: tuple[Desk, Desk, TestClient]) -> None:
    from factbridge.federation.feed import FEED as FEED_COLLECTION
    from factbridge.linkrisk.feeds import FeedEntry, ParsedFeed, store_feed, url_key

    km, vi, km_client = desks
    link = "http://aba-secure-login.com/verify?acct=1"
    store_feed(km.services.storage, "km", ParsedFeed("local-phish", "list", "test", [FeedEntry("url", url_key(link), "2026-12-01", "phishing")],
                                                      [], "2026-12-01", "test"))
    _ingest(km, "km-link", f"ចូលគណនីរបស់អ្នកនៅទីនេះ {link}")
    _ingest(vi, "vi-link", f"Nhận tiền hỗ trợ tại đây {link}")
    assert not vi.services.storage.get_docs("vi", "linkrisk", ["vi-link"])["vi-link"]["flagged"]
    report = _syncer(vi, km_client).sync("km")
    assert len(report.links) == 1 and "aba-secure-login.com/verify" in report.links[0]
    assert report.linkrisk["feed"] == "partner-km" and report.linkrisk["entries"] == 1
    scored = vi.services.storage.get_docs("vi", "linkrisk", ["vi-link"])["vi-link"]
    assert scored["flagged"]
    [url] = scored["urls"]
    assert any("partner-km" in r["detail"] and "Khmer Desk" in r["detail"] for r in url["reasons"])
    # the verdict is not echoed back to km, and is not a public item
    vi_items = Outbox(vi.services.storage, vi.identity, "vi", "CC-BY-4.0").refresh()
    assert not [i for i in vi_items if i["kind"] == "linkrisk"]
    km_kinds = {d["kind"] for _, d in km.services.storage.list_docs("km", FEED_COLLECTION)}
    assert "linkrisk" in km_kinds
    assert not [i for i in km_client.get("/federation/v1/km/feed").json()["items"] if i["kind"] == "linkrisk"]


def test_burst_alerts_reach_partners_without_posts_or_accounts(desks: tuple[Desk, Desk, TestClient]) -> None:
    km, vi, km_client = desks
    case = km.publish(CLAIM_KM)
    fc_id = case.publication.url
    alert = {  # as the bursts stage stores one (pipeline/bursts.py)
        "id": "alert-n1-1", "kind": "resurfacing", "narrative_id": "n1", "status": "new", "raised_at": "2026-12-02T10:00:00+00:00",
        "updated_at": "2026-12-02T10:00:00+00:00", "summary": CLAIM_KM, "top_terms": ["chip"], "decided_by": "bursts-kleinberg-1",
        "evidence": {"burst_start": "2026-12-02T08:00:00+00:00", "burst_end": "2026-12-02T10:00:00+00:00", "posts_in_burst": 40,
                     "narrative_size": 55, "quiet_hours_before": 200.0,
                     "posts": [{"post_id": "km-secret-post", "time": "2026-12-02T09:00:00+00:00", "method": "seed", "similarity": 1.0}],
                     "debunks": [{"factcheck_id": fc_id, "posts": 40, "rating": "False"}]},
    }
    km.services.storage.put_docs("km", "alerts", [(alert["id"], alert, 1.0)])
    report = _syncer(vi, km_client).sync("km")
    assert report.partner_alerts == ["partner-km-alert-n1-1"]
    ours = vi.services.storage.get_docs("vi", "alerts", report.partner_alerts)["partner-km-alert-n1-1"]
    assert ours["kind"] == "partner-resurfacing" and ours["summary"].startswith("At Khmer Desk: ")
    assert ours["evidence"]["partner_alert"]["claims"] == [{"org": "km", "item_id": case.id}]
    assert "km-secret-post" not in json.dumps(ours)
    # shared once per kind: a second pull brings nothing
    assert _syncer(vi, km_client).sync("km").partner_alerts == []
