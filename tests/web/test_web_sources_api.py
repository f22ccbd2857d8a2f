"""API writes: batch posts (idempotent, quarantine report), match without storing, ClaimReview
import, and the signed, replay-protected inbound webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from webenv import ORG_A, ORG_B, WebEnv

from factbridge.sources.registry import add_source


def test_post_batch_is_idempotent_and_reports_quarantine(env: WebEnv) -> None:
    api = env.api("a-analyst")
    body = {"platform": "zalo", "posts": [
        {"id": "api-1", "text": "Uống nước lá đu đủ chữa khỏi sốt xuất huyết", "created_at": "2026-11-20T08:00:00Z", "author": "acct-9", "shares": 12},
        {"id": "api-2", "text": ""},
        {"id": "api-3", "text": "Một bài khác", "likes": "many"},
    ]}
    before = env.services.storage.count_posts(ORG_A)
    first = api.post("/api/v1/posts", json=body)
    assert first.status_code == 200, first.text
    report = first.json()
    assert report["inserted"] == 1 and report["unchanged"] == 0
    assert sorted((q["line"], q["field"]) for q in report["quarantined"]) == [(2, "text"), (3, "likes")]
    assert report["queued"]["posts"] == 1  # the stages run in the server's background processor
    post = env.services.storage.get_post(ORG_A, "api-1")
    assert post.platform == "zalo" and post.engagement.shares == 12
    assert env.app.state.processor.wait_idle(60)
    assert env.services.storage.matches_for_post(ORG_A, "api-1")  # matched off the request
    again = api.post("/api/v1/posts", json=body).json()
    assert again["inserted"] == 0 and again["unchanged"] == 1
    assert env.services.storage.count_posts(ORG_A) == before + 1
    assert env.services.storage.count_posts(ORG_B) == len(list(env.services.storage.iter_posts(ORG_B)))  # untouched scope
    assert env.api("a-viewer").post("/api/v1/posts", json=body).status_code == 403
    too_many = {"posts": [{"id": str(i), "text": "x"} for i in range(1001)]}
    assert api.post("/api/v1/posts", json=too_many).status_code == 422


def test_match_a_text_without_storing_it(env: WebEnv) -> None:
    api = env.api("a-viewer")
    before = env.services.storage.count_posts(ORG_A)
    result = api.post("/api/v1/match", json={"text": "5G mobile networks spread the coronavirus", "top_k": 3}).json()
    assert result["candidates"][0]["factcheck_id"] == "https://factcheck.example.org/5g-virus"
    assert len(result["candidates"]) <= 3 and result["decided_by"].startswith("matcher:")
    assert result["candidates"][0]["factcheck"]["rating"] == "False"
    assert env.services.storage.count_posts(ORG_A) == before
    assert api.post("/api/v1/match", json={"text": ""}).status_code == 422


def test_import_claimreview_through_the_api(env: WebEnv) -> None:
    node = {"@context": "https://schema.org", "@type": "ClaimReview", "url": "https://partner.example/checks/durian",
            "claimReviewed": "Eating durian with beer is always fatal", "author": {"@type": "Organization", "name": "Partner Check"},
            "reviewRating": {"@type": "Rating", "alternateName": "Misleading"}, "datePublished": "2026-11-01", "inLanguage": "en"}
    api = env.api("a-editor")
    report = api.post("/api/v1/factchecks", content=json.dumps({"@graph": [node, {"@type": "ClaimReview"}]})).json()
    assert report["inserted"] == 1 and len(report["quarantined"]) == 1
    fc = env.services.storage.get_factcheck(ORG_A, "https://partner.example/checks/durian")
    assert fc.rating == "Misleading" and fc.publisher == "Partner Check"
    assert api.post("/api/v1/factchecks", content=json.dumps(node)).json()["unchanged"] == 1
    assert api.post("/api/v1/factchecks", content=b"not json").status_code == 422
    assert env.api("a-analyst").post("/api/v1/factchecks", content=json.dumps(node)).status_code == 403


def _signed(secret: str, body: bytes, stamp: int | None = None) -> dict[str, str]:
    t = str(stamp if stamp is not None else int(time.time()))
    mac = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-FactBridge-Signature": f"t={t},v1={mac}", "Content-Type": "application/json"}


def test_webhook_source_checks_signature_time_and_replay(env: WebEnv) -> None:
    secret = add_source(env.services, ORG_A, "partner", "webhook", {}).secret
    client = env.client()  # no token: the signature is the credential
    body = json.dumps({"posts": [{"id": "hook-1", "text": "Tin đồn mới về giá vàng", "author": "acct-1"}]}).encode()
    url = f"/api/v1/hooks/{ORG_A}/partner"
    assert client.post(url, content=body, headers=_signed("wrong", body)).status_code == 401
    assert client.post(url, content=body, headers=_signed(secret, body, int(time.time()) - 3600)).status_code == 401
    headers = _signed(secret, body)
    ok = client.post(url, content=body, headers=headers)
    assert ok.status_code == 200, ok.text
    assert ok.json()["inserted"] == 1 and env.services.storage.get_post(ORG_A, "hook-1").source == "webhook:partner"
    assert client.post(url, content=body, headers=headers).status_code == 409  # replayed
    from factbridge.sources.records import SIGNATURES, WebhookSignature
    ((sig_id, sig_doc),) = env.services.storage.list_docs(ORG_A, SIGNATURES)
    assert WebhookSignature.from_doc(sig_id, sig_doc).to_doc() == sig_doc and sig_doc["source"] == "partner"
    assert client.post(f"/api/v1/hooks/{ORG_B}/partner", content=body, headers=_signed(secret, body)).status_code == 404
    tampered = body.replace(b"hook-1", b"hook-2")
    assert client.post(url, content=tampered, headers=_signed(secret, body)).status_code == 401  # body changed after signing


def test_dashboard_shows_tipline_statistics_per_day_and_language(env: WebEnv) -> None:
    from factbridge.tiplines.desk import bump_stat

    page = env.login("a-viewer").get("/").text
    assert "No questions from citizens yet." in page
    for key in ("questions", "questions", "answered", "helpful"):
        bump_stat(env.services.storage, ORG_A, "km", key, day="2026-12-01")
    bump_stat(env.services.storage, ORG_A, "vi", "questions", day="2026-12-02")
    bump_stat(env.services.storage, ORG_B, "fr", "questions", day="2026-12-02")
    page = env.login("a-viewer").get("/").text
    table = page.split('id="tipline"', 1)[1].split("</section>", 1)[0]
    rows = [r for r in table.split("<tr>")[2:]]
    assert len(rows) == 2 and "2026-12-02" in rows[0] and ">vi<" in rows[0] and "2026-12-01" in rows[1] and ">km<" in rows[1]
    assert "<td>2</td><td>1</td>" in rows[1]  # 2 questions, 1 answered
    assert ">fr<" not in table  # another organisation's statistics
    vi_page = env.login("a-viewer").get("/?lang=vi").text
    assert "Đường dây tin báo" in vi_page
