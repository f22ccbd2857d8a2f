"""The desk's review tools in process: match decisions (audited, fed back into the
queue, re-matching and training pairs), folded public search, the instant answer
to a public report, inboxes, ratings per language and translated error pages."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from markupsafe import escape
from webenv import ORG_A, ORG_B, WebEnv, csrf_of, make_env

from factbridge.errors import PermissionDenied
from factbridge.models import MatchCandidate, Post, SignalScore
from factbridge.pipeline.ingest import match_and_store
from factbridge.pipeline.prepare import prepare_post
from factbridge.pipeline.triage import triage_posts
from factbridge.web.desk import search_terms, text_matches
from factbridge.web.i18n import LANGUAGES, catalog
from factbridge.workflow.match_reviews import COLLECTION, feedback_pairs
from factbridge.workflow.ratings import RATING_LABELS, rating_label
from factbridge.workflow.records import Case, MatchReview

FC_5G = "https://factcheck.example.org/5g-virus"


def _store_match(env: WebEnv, post_id: str = "en-5g", fc: str = FC_5G) -> None:
    cand = MatchCandidate(factcheck_id=fc, rank=1, dense=SignalScore(score=0.91, rank=1), lexical=SignalScore(score=7.5, rank=1),
                          features={"number_overlap": 1.0}, fused_score=0.79, decision="match", decided_by="matcher-test-1")
    env.services.storage.replace_matches(ORG_A, post_id, [cand])
    triage_posts(env.services, ORG_A, [env.services.storage.get_post(ORG_A, post_id)])


def _debunked(env: WebEnv, post_id: str) -> float:
    return float(env.services.storage.get_docs(ORG_A, "queue", [post_id])[post_id]["components"]["debunked"]["value"])


def test_not_the_same_claim_is_audited_and_stops_adding_debunked(env: WebEnv) -> None:
    _store_match(env)
    assert _debunked(env, "en-5g") == 1.0
    analyst = env.login("a-analyst")
    page = analyst.get("/posts/en-5g")
    assert page.status_code == 200
    html = page.text
    assert catalog("en")["decision.match"] in html and catalog("en")["match.same_numbers"] in html  # plain reasons
    assert "No, 5G does not spread COVID-19" in html and 'id="candidate-1"' in html  # post and fact-check side by side
    r = analyst.post("/posts/en-5g/review", data={"csrf_token": csrf_of(html), "factcheck_id": FC_5G, "same": "no"})
    assert r.status_code == 303 and r.headers["location"] == "/posts/en-5g#matches"
    stored = env.services.storage.matches_for_post(ORG_A, "en-5g")[0]
    assert stored.decision == "none" and stored.decided_by == "desk-review-1:a-analyst"
    assert _debunked(env, "en-5g") == 0.0  # the rejected match no longer raises the priority
    entry = env.web.audit.history(ORG_A, COLLECTION, f"en-5g\x1f{FC_5G}")[-1]
    assert entry["actor"] == "a-analyst" and entry["action"] == "match.review" and entry["after"] == {"same": False, "by": "a-analyst"}
    assert env.web.audit.verify(ORG_A).ok
    # the page says who decided, in the reader's language
    vi = analyst.get("/posts/en-5g?lang=vi").text
    assert "a-analyst đã quyết định: không phải cùng một tin" in vi

    # the matcher runs again: the person's decision stays
    post = env.services.storage.get_post(ORG_A, "en-5g")
    match_and_store(env.services.storage, env.services.matcher(ORG_A), ORG_A, [post])
    again = {c.factcheck_id: c for c in env.services.storage.matches_for_post(ORG_A, "en-5g")}
    if FC_5G in again:
        assert again[FC_5G].decision == "none"

    # ... and then "same claim" from an editor: a training pair with the gold fact-check
    editor = env.login("a-editor")
    token = csrf_of(editor.get("/posts/en-5g").text)
    _store_match(env)
    assert editor.post("/posts/en-5g/review", data={"csrf_token": token, "factcheck_id": FC_5G, "same": "yes"}).status_code == 303
    assert env.services.storage.matches_for_post(ORG_A, "en-5g")[0].decision == "match"
    posts, gold = feedback_pairs(env.services.storage, ORG_A)
    assert posts == ["en-5g"] and gold == {"en-5g": {FC_5G}}
    # the stored decision reads back through its typed record unchanged
    (key, raw), = env.services.storage.list_docs(ORG_A, COLLECTION)
    review = MatchReview.from_doc(raw)
    assert review.to_doc() == raw and review.key == key and (review.same, review.by, review.matcher_decision) == (True, "a-editor", "match")


def test_match_review_through_the_api(env: WebEnv) -> None:
    """`POST /api/v1/posts/{id}/review`: the page's decision for API clients, same permission,
    audited, the queue updated at once, the stored decision as the answer."""
    _store_match(env)
    assert env.api("a-viewer").post("/api/v1/posts/en-5g/review", json={"factcheck_id": FC_5G, "same": False}).status_code == 403
    analyst = env.api("a-analyst")
    assert analyst.post("/api/v1/posts/en-5g/review", json={"factcheck_id": FC_5G, "same": "maybe"}).status_code == 422
    assert analyst.post("/api/v1/posts/en-5g/review", json={"factcheck_id": FC_5G, "same": False, "extra": 1}).status_code == 422
    assert analyst.post("/api/v1/posts/en-5g/review", json={"factcheck_id": "https://elsewhere.example/x", "same": False}).status_code == 404
    assert analyst.post(f"/api/v1/posts/{env.ids[ORG_B]['post']}/review", json={"factcheck_id": FC_5G, "same": False}).status_code == 404
    assert env.services.storage.list_docs(ORG_A, COLLECTION) == []  # nothing stored by the refused requests
    r = analyst.post("/api/v1/posts/en-5g/review", json={"factcheck_id": FC_5G, "same": False, "note": "different dam"})
    assert r.status_code == 200, r.text
    body = r.json()
    (key, raw), = env.services.storage.list_docs(ORG_A, COLLECTION)
    assert body == raw and (body["same"], body["by"], body["note"], body["matcher_decision"]) == (False, "a-analyst", "different dam", "match")
    stored = env.services.storage.matches_for_post(ORG_A, "en-5g")[0]
    assert stored.decision == "none" and stored.decided_by == "desk-review-1:a-analyst"
    assert _debunked(env, "en-5g") == 0.0
    entry = env.web.audit.history(ORG_A, COLLECTION, key)[-1]
    assert (entry["actor"], entry["action"], entry["after"]) == ("a-analyst", "match.review", {"same": False, "by": "a-analyst"})
    again = env.api("a-editor").post("/api/v1/posts/en-5g/review", json={"factcheck_id": FC_5G, "same": True}).json()
    assert (again["same"], again["by"], again["matcher_decision"]) == (True, "a-editor", "match")  # the matcher's own decision is kept
    assert env.services.storage.matches_for_post(ORG_A, "en-5g")[0].decision == "match" and env.web.audit.verify(ORG_A).ok
    spec = env.client().get("/api/v1/openapi.json").json()
    op = spec["paths"]["/api/v1/posts/{post_id}/review"]["post"]
    assert "match.review" in op["description"] and set(spec["components"]["schemas"]["MatchDecision"]["properties"]) == {"factcheck_id", "same", "note"}


def test_a_rejected_match_leaves_the_narrative(env: WebEnv) -> None:
    from factbridge.pipeline.narratives import refresh_factchecks

    member, narrative_id = "desk-a-n0", env.ids[ORG_A]["narrative"]
    _store_match(env, member)
    refresh_factchecks(env.services.storage, ORG_A, [member])

    def listed() -> set[str]:
        doc = env.services.storage.get_docs(ORG_A, "narratives", [narrative_id])[narrative_id]
        return {f["factcheck_id"] for f in doc["factchecks"]}

    assert FC_5G in listed()
    analyst = env.login("a-analyst")
    token = csrf_of(analyst.get(f"/posts/{member}").text)
    assert analyst.post(f"/posts/{member}/review", data={"csrf_token": token, "factcheck_id": FC_5G, "same": "no"}).status_code == 303
    assert FC_5G not in listed()
    assert "No, 5G does not spread COVID-19" not in analyst.get(f"/narratives/{narrative_id}").text


def test_review_needs_an_analyst_and_an_existing_candidate(env: WebEnv) -> None:
    _store_match(env)
    viewer = env.login("a-viewer")
    html = viewer.get("/posts/en-5g").text
    assert "not-same-claim" not in html  # no buttons for a viewer
    r = viewer.post("/posts/en-5g/review", data={"csrf_token": csrf_of(html), "factcheck_id": FC_5G, "same": "no"})
    assert r.status_code == 403
    analyst = env.login("a-analyst")
    token = csrf_of(analyst.get("/posts/en-5g").text)
    assert analyst.post("/posts/en-5g/review", data={"csrf_token": token, "factcheck_id": "nope", "same": "no"}).status_code == 404
    assert analyst.post("/posts/en-5g/review", data={"csrf_token": token, "factcheck_id": FC_5G, "same": "maybe"}).status_code == 422
    with pytest.raises(PermissionDenied):
        from factbridge.workflow.match_reviews import MatchReviews
        MatchReviews(env.services.storage, env.web.audit).decide(ORG_A, env.web.accounts.get_user("a-viewer"), "en-5g", FC_5G, False)


def _publish(env: WebEnv, claim: str, language: str, rating: str, headline: str) -> Case:
    web = env.web
    drafter, approver = web.accounts.get_user("a-editor"), web.accounts.get_user("a-reviewer")
    case = web.cases.open(ORG_A, drafter, claim, source_kind="manual", language=language)
    case = web.cases.draft_verdict(ORG_A, drafter, case.id, rating, "Giải thích / explication.", headline=headline, language=language)
    case = web.cases.approve(ORG_A, approver, case.id)
    return web.cases.publish(ORG_A, approver, case.id, "http://testserver", "Desk A")


def test_public_search_folds_vietnamese_and_segments_khmer(env: WebEnv) -> None:
    _publish(env, "Uống nước lá chùm ngây chữa khỏi bệnh tiểu đường", "vi", "False", "Lá chùm ngây không chữa khỏi tiểu đường")
    _publish(env, "ធនាគារ ABA ផ្ញើសារឱ្យអតិថិជនចូលគណនីតាមតំណ", "km", "Scam", "សារក្លែងក្លាយរបស់ធនាគារ ABA")
    client = env.client()
    for query, expected in [("la chum ngay", "chùm ngây"), ("tieu duong", "tiểu đường"), ("lá chùm ngây", "chùm ngây"),
                            ("ធនាគារABA", "ABA"), ("ធនាគារ", "ABA")]:
        page = client.get(f"/public/{ORG_A}", params={"q": query}).text
        assert expected in page.split('class="results"')[1], query
    assert "chùm ngây" not in client.get(f"/public/{ORG_A}", params={"q": "ធនាគារABA"}).text.split('class="results"')[1]
    assert text_matches(search_terms("TIEU DUONG"), "bệnh tiểu đường")
    assert not text_matches(search_terms("tieu duong"), "bệnh tim")


def test_published_claimreview_names_the_rating_in_its_language(env: WebEnv) -> None:
    snapshot = _publish(env, "Uống nước lá chùm ngây chữa khỏi bệnh tiểu đường", "vi", "False", "Lá chùm ngây")
    page = env.client().get(f"/public/{ORG_A}/factchecks/{snapshot.id}").text
    node = json.loads(re.search(r'<script type="application/ld\+json">(.*?)</script>', page, re.S).group(1))  # type: ignore[union-attr]
    assert node["inLanguage"] == "vi" and node["reviewRating"]["alternateName"] == "Sai"
    assert rating_label("False", "km") == "មិនពិត" and rating_label("False", "fr") == "Faux" and rating_label("Scam", "vi") == "Lừa đảo"
    assert "Scam" in env.web.cases.scale.names
    assert all(set(names) == set(LANGUAGES) for names in RATING_LABELS.values())


def test_case_form_has_no_default_rating(env: WebEnv) -> None:
    editor = env.login("a-editor")
    token = csrf_of(editor.get("/cases").text)
    r = editor.post("/cases", data={"csrf_token": token, "source_kind": "manual", "claim": "Rice made of plastic"})
    html = editor.get(r.headers["location"] + "?lang=fr").text
    form = html.split('id="verdict-form"')[1].split("</form>")[0]
    assert '<option value="" disabled selected>' in form and "Arnaque" in form and "Faux" in form
    assert "selected>Vrai" not in form
    case_url = r.headers["location"]
    bad = editor.post(f"{case_url}/verdict?lang=vi", data={"csrf_token": token, "rating": "Maybe", "explanation": "x"})
    assert bad.status_code == 422 and "Hãy kiểm tra mục: Kết luận." in bad.text  # the field named in the reader's language


@pytest.fixture
def dense_env(tmp_path: Path) -> Iterator[WebEnv]:
    """Dense fusion with fixed thresholds: the hashing embedder gives real match decisions."""
    e = make_env(tmp_path, match_fusion="dense", match_threshold=0.5, possible_threshold=0.3)
    yield e
    e.close()
    e.services.close()


def test_public_report_gets_an_instant_answer_and_repeats_are_counted(dense_env: WebEnv) -> None:
    env = dense_env
    client = env.client()
    client.cookies.set("fb_lang", "km")
    text = "ធនាគារ ABA ផ្ញើសារឱ្យអតិថិជនចូលគណនីតាមតំណ ដើម្បីផ្ទៀងផ្ទាត់"
    answers = []
    for _ in range(3):
        form = client.get(f"/public/{ORG_A}/report").text
        r = client.post(f"/public/{ORG_A}/report", data={"csrf_token": csrf_of(form), "text": text, "url": "https://aba-bank-verify.example.xyz/login"})
        assert r.status_code == 200
        answers.append(r.text)
    first, _, third = answers
    km = catalog("km")
    assert km["answer.match"] in first and 'href="https://phtiangphtat.example.net/km/2026/10/aba-phishing-sms"' in first
    assert 'id="answer-rating">បោកប្រាស់<' in first  # the library's own rating, as published
    assert km["answer.links"] in first and "aba-bank-verify.example.xyz" in first.split('id="link-warning"')[1]
    assert km["answer.earlier"].format(n=2) in third  # repeats are counted
    other = env.client()
    form = other.get(f"/public/{ORG_A}/report?lang=fr").text
    r = other.post(f"/public/{ORG_A}/report?lang=fr", data={"csrf_token": csrf_of(form), "text": "Mon voisin a repeint sa porte en bleu hier"})
    assert str(escape(catalog("fr")["answer.none"])) in r.text and 'id="link-warning"' not in r.text
    editor = env.login("a-editor")
    inbox = editor.get("/inbox").text.split('id="new-reports"')[1]
    assert catalog("en")["inbox.reported_n"].format(n=3) in inbox and inbox.count("ធនាគារ ABA") == 1  # one row, counted
    card = editor.get("/").text.split('id="reports"')[1].split("</section>")[0]
    assert catalog("en")["inbox.reported_n"].format(n=3) in card and card.count("ធនាគារ ABA") == 1


def test_inbox_lists_pages_and_translated_not_found(env: WebEnv) -> None:
    editor = env.login("a-reviewer")
    web = env.web
    drafter = web.accounts.get_user("a-editor")
    case = web.cases.open(ORG_A, drafter, "Claim waiting", source_kind="manual")
    web.cases.draft_verdict(ORG_A, drafter, case.id, "False", "Because.", headline="Waiting for approval")
    html = editor.get("/inbox").text
    assert "Claim waiting" in html.split('id="awaiting"')[1].split("</section>")[0]
    assert editor.get("/alerts").status_code == 200 and "Burst: 5G spreads the virus" in editor.get("/alerts").text
    assert "5G" in editor.get("/narratives?language=en").text.split('id="narrative-list"')[1]
    assert "nar-desk-a-5g" not in editor.get("/narratives?language=km").text
    for lang in LANGUAGES:
        r = editor.get(f"/no/such/page?lang={lang}")
        assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
        assert str(escape(catalog(lang)["error.404_text"])) in r.text
    assert env.client().get("/api/v1/no-such").headers["content-type"].startswith("application/json")


def test_desk_catalogs_have_the_same_keys() -> None:
    en = catalog("en")
    for lang in LANGUAGES:
        assert set(catalog(lang)) == set(en), lang
    post = prepare_post(Post(id="x", text="Chính phủ hỗ trợ 2 triệu đồng"), ("vi", "km", "fr", "en"))
    assert post.language == "vi"


def test_queue_groups_copies_and_leads_with_a_sentence(env: WebEnv) -> None:
    storage = env.services.storage
    scam = "Nhận ngay 2 triệu đồng hỗ trợ, đăng nhập tại link để xác minh CCCD"
    posts = [prepare_post(Post(id=f"scam-{i}", platform="zalo", text=scam, urls=["https://bad.example.net/cccd"]), ("vi", "km", "fr", "en"))
             for i in range(12)]
    storage.upsert_posts(ORG_A, posts)
    comps = {"debunked": {"value": 1.0, "weight": 0.2, "contribution": 0.2, "evidence": {"factcheck_id": FC_5G, "decision": "possible"}},
             "risk": {"value": 0.9, "weight": 0.2, "contribution": 0.18, "evidence": {}}}
    storage.put_docs(ORG_A, "queue", [(p.id, {"kind": "post", "post_id": p.id, "priority": 0.99 - i / 1000, "components": comps,
                                              "decided_by": {"triage": "triage-test-1"}}, 0.99 - i / 1000) for i, p in enumerate(posts)])
    editor = env.login("a-editor")
    queue = editor.get("/").text.split('id="queue"')[1].split("</section>")[0]
    assert queue.count("Nhận ngay 2 triệu") == 1 and catalog("en")["dash.copies"].format(n=11) in queue
    assert "Already checked by Example Check: False. Carries a risky link." in queue
    assert 'class="models"' in queue  # model versions behind a toggle
    vi = editor.get("/?lang=vi&language=vi").text.split('id="queue"')[1].split("</section>")[0]
    assert "Đã được Example Check kiểm chứng: Sai." in vi and "5G towers" not in vi  # filtered to Vietnamese posts


def test_decisions_become_reranker_training_pairs(env: WebEnv) -> None:
    from factbridge.pipeline.reranker_training import train_reranker
    from factbridge.workflow.match_reviews import MatchReviews, feedback_training_set

    assert feedback_training_set(env.services, ORG_A) is None  # nothing decided yet
    reviews = MatchReviews(env.services.storage, env.web.audit)
    analyst = env.web.accounts.get_user("a-analyst")
    _store_match(env, "en-5g")
    reviews.decide(ORG_A, analyst, "en-5g", FC_5G, True)
    _store_match(env, "p-0001")
    reviews.decide(ORG_A, analyst, "p-0001", FC_5G, False)
    training = feedback_training_set(env.services, ORG_A)
    assert [q.id for q in training.queries] == ["en-5g", "p-0001"] and training.qrels == {"en-5g": {FC_5G}, "p-0001": set()}
    model = train_reranker([training], None, env.services.embedder, "desk-feedback-test")
    assert model.card["positives"] == 1 and model.card["rows"] > 2  # the rejected candidate is among the negatives


def test_one_verdict_published_in_four_languages(dense_env: WebEnv) -> None:
    env = dense_env
    web = env.web
    drafter, approver = web.accounts.get_user("a-editor"), web.accounts.get_user("a-reviewer")
    case = web.cases.open(ORG_A, drafter, "Plastic rice from China is sold in Phnom Penh markets", source_kind="manual", language="en")
    case = web.cases.draft_verdict(ORG_A, drafter, case.id, "False", "Lab tests found ordinary rice.", headline="No plastic rice", language="en")
    case = web.cases.approve(ORG_A, approver, case.id)
    editor = env.login("a-editor")
    page = editor.get(f"/cases/{case.id}").text
    versions = {
        "vi": ("Gạo nhựa Trung Quốc được bán ở chợ Phnom Penh", "Không có gạo nhựa", "Xét nghiệm cho thấy gạo bình thường."),
        "km": ("អង្ករប្លាស្ទិកពីប្រទេសចិនកំពុងលក់នៅផ្សារក្នុងភ្នំពេញ", "គ្មានអង្ករប្លាស្ទិកទេ", "ការធ្វើតេស្តបង្ហាញថាជាអង្ករធម្មតា។"),
        "fr": ("Du riz en plastique chinois vendu sur les marchés de Phnom Penh", "Pas de riz en plastique", "Les analyses montrent du riz ordinaire."),
    }
    version = case.version
    for lang, (claim, headline, explanation) in versions.items():
        r = editor.post(f"/cases/{case.id}/versions", data={"csrf_token": csrf_of(page), "language": lang, "claim": claim,
                                                             "headline": headline, "explanation": explanation, "version": str(version)})
        assert r.status_code == 303, r.text
        version += 1
    bad = editor.post(f"/cases/{case.id}/versions", data={"csrf_token": csrf_of(page), "language": "en", "claim": "x", "headline": "x",
                                                           "explanation": "x", "version": str(version)})
    assert bad.status_code == 422  # the verdict's own language
    case = web.cases.get(ORG_A, case.id)
    assert case.status == "in_review" and case.approval is None  # new words: approved again
    case = web.cases.approve(ORG_A, approver, case.id)
    case = web.cases.publish(ORG_A, approver, case.id, "http://testserver", "Desk A")
    client = env.client()
    urls = {}
    for lang, expected in {"en": "False", "vi": "Sai", "km": "មិនពិត", "fr": "Faux"}.items():
        page_id = case.id if lang == "en" else f"{case.id}-{lang}"
        html = client.get(f"/public/{ORG_A}/factchecks/{page_id}").text
        node = json.loads(re.search(r'<script type="application/ld\+json">(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
        assert node["inLanguage"] == lang and node["reviewRating"]["alternateName"] == expected
        assert len(node["workTranslation"]) == 3 and node["url"] not in {w["@id"] for w in node["workTranslation"]}
        urls[lang] = node["url"]
    feed = client.get(f"/public/{ORG_A}/claimreview.json").json()
    assert {n["inLanguage"] for n in feed["@graph"] if n["url"] in urls.values()} == {"en", "vi", "km", "fr"}
    # matching uses every version: a Khmer post meets the Khmer text of the verdict
    from factbridge.pipeline.matching import index_factchecks

    index_factchecks(env.services.storage, env.services.embedder, ORG_A)
    post = prepare_post(Post(id="km-rice", text="អង្ករប្លាស្ទិកពីប្រទេសចិនកំពុងលក់នៅផ្សារក្នុងភ្នំពេញ ប្រយ័ត្ន!"), ("vi", "km", "fr", "en"))
    best = env.services.matcher(ORG_A).match_posts([post])[0].candidates[0]
    assert best.factcheck_id == urls["km"] and best.decision == "match"
    # and the desk sees the other languages of the fact-check it matched
    from factbridge.web.desk import factcheck_versions

    fc = env.services.storage.get_factcheck(ORG_A, urls["km"])
    assert {v.language for v in factcheck_versions(env.services.storage, ORG_A, fc)} == {"en", "vi", "fr"}
