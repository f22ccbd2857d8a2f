"""Withdrawing a published fact-check through the API and the case page: one editor proposes,
a second approves; the public page and ClaimReview say "withdrawn" with the reason and date,
the library entry is marked and no longer matched, and the posts that matched it are re-checked."""

from __future__ import annotations

from webenv import ORG_A, WebEnv, csrf_of, publish_case

from factbridge.pipeline.recheck import recheck_factchecks
from factbridge.pipeline.withdrawals import WITHDRAWN, withdrawal_of
from factbridge.workflow.claimreview import iter_claimreview_nodes
from factbridge.workflow.publishing import claimreview_node

CLAIM = "5G mobile networks spread the coronavirus"


def test_withdrawal_through_the_api(env: WebEnv) -> None:
    case = publish_case(env, claim=CLAIM)
    cid, url = case.id, case.publication.url
    storage = env.services.storage
    from factbridge.pipeline.matching import index_factchecks

    index_factchecks(storage, env.services.embedder, ORG_A)
    recheck_factchecks(env.services, ORG_A, [url], floor=0.0)
    matched_before = {pid for pid, _ in storage.matches_for_factcheck(ORG_A, url)}
    assert "en-5g" in matched_before
    editor, reviewer, analyst = env.api("a-editor"), env.api("a-reviewer"), env.api("a-analyst")
    assert analyst.post(f"/api/v1/cases/{cid}/withdraw", json={"reason": "x"}).status_code == 403  # editors only
    assert editor.post(f"/api/v1/cases/{cid}/withdraw", json={"reason": ""}).status_code == 422
    proposed = editor.post(f"/api/v1/cases/{cid}/withdraw", json={"reason": "The source video was itself a satire."})
    assert proposed.status_code == 200, proposed.text
    assert proposed.json()["status"] == "published" and proposed.json()["pending_withdrawal"]["by"] == "a-editor"
    # nothing public changes until a second editor approves
    assert env.web.cases.published(ORG_A, cid).withdrawn is None
    assert editor.post(f"/api/v1/cases/{cid}/withdraw", json={"reason": "again"}).status_code == 409
    r = editor.post(f"/api/v1/cases/{cid}/withdraw/decide", json={"approve": True})
    assert r.status_code == 403 and "second editor" in r.json()["detail"]
    done = reviewer.post(f"/api/v1/cases/{cid}/withdraw/decide", json={"approve": True}).json()
    assert done["status"] == "withdrawn" and done["withdrawal"]["approved_by"] == "a-reviewer" and done["pending_withdrawal"] is None
    assert editor.post(f"/api/v1/cases/{cid}/corrections", json={"text": "late"}).status_code == 409  # a withdrawn verdict is final
    # public: the page and ClaimReview say so, with the reason and date; nothing was deleted
    snapshot = env.web.cases.published(ORG_A, cid)
    assert snapshot.withdrawn.reason == "The source video was itself a satire." and snapshot.modified_at == snapshot.withdrawn.at
    node = claimreview_node(snapshot)
    assert node["creativeWorkStatus"] == "Withdrawn" and node["correction"]["text"].startswith("Withdrawn: The source video")
    anon = env.client()
    page = anon.get(f"/public/{ORG_A}/factchecks/{cid}")
    assert page.status_code == 200 and 'id="withdrawn"' in page.text and "The source video was itself a satire." in page.text
    [feed_node] = list(iter_claimreview_nodes(anon.get(f"/public/{ORG_A}/claimreview.json").json()))
    assert feed_node["creativeWorkStatus"] == "Withdrawn"
    # the library entry stays, marked; the matcher leaves it out; the posts that matched it lost it
    fc = storage.get_factcheck(ORG_A, url)
    assert withdrawal_of(fc) == snapshot.withdrawn.to_doc() and storage.get_docs(ORG_A, WITHDRAWN, [url])
    assert url not in {item.id for item in env.services.matcher(ORG_A).items}
    assert {pid for pid, _ in storage.matches_for_factcheck(ORG_A, url)} == set()
    actions = [e["action"] for e in env.api("a-admin").get("/api/v1/audit").json()[:6]]
    assert {"case.withdraw.propose", "case.withdraw", "published.withdraw"} <= set(actions)


def test_withdrawal_on_the_case_page_and_rejection(env: WebEnv) -> None:
    case = publish_case(env, claim=CLAIM)
    cid = case.id
    editor = env.login("a-editor")
    page = editor.get(f"/cases/{cid}")
    assert 'id="withdraw-form"' in page.text
    r = editor.post(f"/cases/{cid}/withdraw", data={"reason": "Wrong video", "version": case.version, "csrf_token": csrf_of(page.text)})
    assert r.status_code == 303
    page = editor.get(f"/cases/{cid}")
    assert 'id="pending-withdrawal"' in page.text and 'id="approve-withdrawal"' not in page.text  # not one's own
    reviewer = env.login("a-reviewer")
    page = reviewer.get(f"/cases/{cid}?lang=km")
    assert 'id="approve-withdrawal"' in page.text and "អនុម័តការដកវិញ" in page.text
    version = env.web.cases.get(ORG_A, cid).version
    r = reviewer.post(f"/cases/{cid}/withdrawal/decide", data={"decision": "reject", "version": version, "csrf_token": csrf_of(page.text)})
    assert r.status_code == 303 and env.web.cases.get(ORG_A, cid).status == "published"
    assert env.web.cases.get(ORG_A, cid).pending_withdrawal is None
    editor.post(f"/cases/{cid}/withdraw", data={"reason": "Wrong video", "csrf_token": csrf_of(editor.get(f"/cases/{cid}").text)})
    page = reviewer.get(f"/cases/{cid}?lang=fr")
    r = reviewer.post(f"/cases/{cid}/withdrawal/decide", data={"decision": "approve", "csrf_token": csrf_of(page.text)})
    assert r.status_code == 303
    page = reviewer.get(f"/cases/{cid}?lang=fr")
    assert 'id="withdrawn"' in page.text and "Retirée le" in page.text and 'id="withdraw-form"' not in page.text
    assert 'id="correction-form"' not in page.text
    public = env.client().get(f"/public/{ORG_A}/factchecks/{cid}?lang=vi")
    assert "Đã rút lại" in public.text and "Wrong video" in public.text
    listing = env.client().get(f"/public/{ORG_A}?lang=en")
    assert 'class="withdrawn"' in listing.text and "Withdrawn 20" in listing.text
