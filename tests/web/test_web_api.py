"""The JSON API in process: token auth, the case flow, errors mapped in one
place, the ClaimReview feed and its round trip through `factchecks import`,
and the OpenAPI document fuzzed with schemathesis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from webenv import ORG_A, WebEnv, make_env

from factbridge.cli import app as cli_app
from factbridge.pipeline.library import read_factchecks
from factbridge.workflow.claimreview import iter_claimreview_nodes


def test_api_needs_a_valid_token(env: WebEnv) -> None:
    anon = env.client()
    r = anon.get("/api/v1/me")
    assert r.status_code == 401 and r.json()["error"] == "NotAuthenticated" and r.headers["WWW-Authenticate"] == "Bearer"
    anon.headers["Authorization"] = "Bearer fb_not-a-token"
    assert anon.get("/api/v1/posts").status_code == 401
    me = env.api("a-analyst").get("/api/v1/me").json()
    assert me == {"username": "a-analyst", "org": ORG_A, "role": "analyst"}
    # only the hash of a token is stored
    stored = env.services.storage.list_docs("_system", "api_tokens")
    assert stored and all("fb_" not in json.dumps(doc) for _, doc in stored)


def test_api_reads_pipeline_records(env: WebEnv) -> None:
    api = env.api("a-viewer")
    ids = env.ids[ORG_A]
    posts = api.get("/api/v1/posts", params={"limit": 5}).json()
    assert posts["total"] >= 10 and len(posts["items"]) == 5
    detail = api.get(f"/api/v1/posts/{ids['post']}").json()
    assert detail["checkworthiness"]["decided_by"] == "cw-test-1"
    assert detail["triage"]["priority"] == 0.93 and detail["triage"]["components"]["reach"]["contribution"] == 0.2
    assert detail["links"][0]["risk"] == "high" and detail["links"][0]["reasons"] == ["young_domain (0.60): domain registered 3 days ago"]
    assert detail["narrative"]["id"] == ids["narrative"]
    p2 = api.get("/api/v1/posts/en-5g").json()
    assert p2["matches"][0]["factcheck"]["id"] == "https://factcheck.example.org/5g-virus"  # (hashing embedder: the decision itself depends on thresholds tuned for e5)
    assert p2["matches"][0]["decided_by"]
    queue = api.get("/api/v1/queue").json()
    assert [e["post_id"] for e in queue][:1] == [ids["post"]] and queue[0]["components"]["reach"]["value"] == 0.8
    assert queue[1]["kind"] == "narrative" and queue[1]["narrative_id"] == ids["narrative"]
    assert api.get("/api/v1/alerts").json()[0]["narrative_id"] == ids["narrative"]
    nar = api.get(f"/api/v1/narratives/{ids['narrative']}").json()
    assert sum(c for _, c in nar["posts_per_day"]) == 8
    fcs = api.get("/api/v1/factchecks").json()
    assert fcs["total"] >= 2
    one = api.get(f"/api/v1/factchecks/{fcs['items'][0]['id']}").json()
    assert one["id"] == fcs["items"][0]["id"]
    assert api.get("/api/v1/ratings").json()[0] == {"rating": "True", "rating_value": 5.0}


def test_api_case_flow_and_error_mapping(env: WebEnv) -> None:
    analyst, editor, reviewer, viewer = (env.api(u) for u in ("a-analyst", "a-editor", "a-reviewer", "a-viewer"))
    ids = env.ids[ORG_A]
    assert viewer.post("/api/v1/cases", json={"claim": "x"}).status_code == 403
    r = analyst.post("/api/v1/cases", json={"source_kind": "post", "source_id": ids["post"], "claim": ""})
    assert r.status_code == 201, r.text
    case = r.json()
    assert case["claim"].startswith("5G towers") and case["language"] == "en"
    cid = case["id"]
    assert analyst.post(f"/api/v1/cases/{cid}/evidence", json={"kind": "link", "url": "ftp://x"}).status_code == 422
    assert analyst.post(f"/api/v1/cases/{cid}/evidence", json={"kind": "link", "url": "https://who.example.int", "version": 99}).status_code == 409
    assert analyst.post(f"/api/v1/cases/{cid}/evidence", json={"kind": "link", "url": "https://who.example.int", "text": "WHO"}).status_code == 200
    assert analyst.post(f"/api/v1/cases/{cid}/assign", json={"assignee": "b-editor"}).status_code == 422  # not in this org
    assert analyst.post(f"/api/v1/cases/{cid}/assign", json={"assignee": "a-reviewer"}).json()["assignee"] == "a-reviewer"
    assert editor.post(f"/api/v1/cases/{cid}/verdict", json={"rating": "Nope", "explanation": "x"}).status_code == 422
    assert editor.post(f"/api/v1/cases/{cid}/verdict", json={"rating": "False", "explanation": "Radio waves carry no virus."}).status_code == 200
    r = editor.post(f"/api/v1/cases/{cid}/approve", json={})
    assert r.status_code == 403 and "second editor" in r.json()["detail"]
    assert reviewer.post(f"/api/v1/cases/{cid}/publish", json={}).status_code == 409  # not approved yet
    assert reviewer.post(f"/api/v1/cases/{cid}/approve", json={}).json()["status"] == "approved"
    published = reviewer.post(f"/api/v1/cases/{cid}/publish", json={}).json()
    # the configured public base (here http://HOST:PORT of serve), never the request's Host header
    assert published["publication"]["url"] == f"http://127.0.0.1:8765/public/{ORG_A}/factchecks/{cid}"
    node = viewer.get(f"/api/v1/reviews/{cid}").json()
    assert node["@type"] == "ClaimReview" and node["reviewRating"]["alternateName"] == "False"
    assert node["author"]["name"] == "Desk A <Vietnam>"
    proposed = editor.post(f"/api/v1/cases/{cid}/corrections", json={"text": "Clarified", "new_rating": "Misleading"}).json()
    assert proposed["verdict"]["rating"] == "False" and proposed["pending_correction"]["new_rating"] == "Misleading"
    assert editor.post(f"/api/v1/cases/{cid}/corrections/decide", json={"approve": True}).status_code == 403  # not alone
    fixed = reviewer.post(f"/api/v1/cases/{cid}/corrections/decide", json={"approve": True}).json()
    assert fixed["verdict"]["rating"] == "Misleading" and fixed["corrections"][-1]["approved_by"] == "a-reviewer"
    assert viewer.get("/api/v1/cases/case-doesnotexist").status_code == 404
    assert viewer.get("/api/v1/cases", params={"status": "published"}).json()[0]["id"] == cid
    assert viewer.get("/api/v1/audit").status_code == 403
    audit = env.api("a-admin").get("/api/v1/audit").json()
    assert [e["action"] for e in audit[:3]] == ["token.create", "published.correct", "case.correct"]
    assert audit[2]["before"]["verdict"]["rating"] == "False" and audit[2]["after"]["verdict"]["rating"] == "Misleading"
    # the published verdict was embedded for matching (background task)
    emb = env.services.embedder.id
    assert published["publication"]["url"] in env.services.storage.vector_shas(ORG_A, "factcheck", emb)


def test_feed_round_trips_through_factchecks_import(env: WebEnv, tmp_path: Path) -> None:
    from webenv import publish_case

    case = publish_case(env)
    env.web.cases.correct(ORG_A, env.web.accounts.get_user("a-editor"), case.id, "Clarified the headline.", new_rating="Misleading")
    env.web.cases.decide_correction(ORG_A, env.web.accounts.get_user("a-reviewer"), case.id, approve=True)
    anon = env.client()
    feed = anon.get(f"/public/{ORG_A}/claimreview.json")
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("application/ld+json")
    nodes = list(iter_claimreview_nodes(feed.json()))
    assert len(nodes) == 1 and nodes[0]["dateModified"]
    page = anon.get(f"/public/{ORG_A}/factchecks/{case.id}")
    feed_file = tmp_path / "feed.json"
    feed_file.write_text(feed.text, encoding="utf-8")
    page_file = tmp_path / "page.html"
    page_file.write_text(page.text, encoding="utf-8")
    # read back by the library reader, from the feed and from the saved public page
    for path in (feed_file, page_file):
        (fc,) = [x for x in read_factchecks(path) if not hasattr(x, "reason")]
        assert fc.id == case.publication.url and fc.claim == case.claim
        assert fc.rating == "Misleading" and fc.publisher == "Desk A <Vietnam>" and fc.language == "en"
    # and through the real command into a fresh database
    db = tmp_path / "other.db"
    result = CliRunner().invoke(cli_app, ["--storage-url", f"sqlite:///{db}", "--data-dir", str(tmp_path), "--embedder", "hashing",
                                          "--embed-cache", "off", "--org", "partner", "factchecks", "import", str(feed_file)])
    assert result.exit_code == 0, result.output
    assert "1 new" in result.output
    from factbridge.backends.storage.sqlite import SQLiteStorage

    store = SQLiteStorage(f"sqlite:///{db}")
    try:
        imported = store.get_factcheck("partner", case.publication.url)
        assert imported.rating == "Misleading" and imported.title == "No, 5G does not spread viruses"
    finally:
        store.close()


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    e = make_env(tmp_path_factory.mktemp("fuzz"))
    yield e
    e.close()
    e.services.close()


def test_openapi_fuzzed_without_server_error(fuzz_env: WebEnv) -> None:
    """Schemathesis generates requests from the OpenAPI document, bounded, in process."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    token = fuzz_env.web.accounts.create_token("a-editor", "fuzz")
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", fuzz_env.app)
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) >= 20
    failures: list[str] = []
    statuses: list[int] = []
    for operation in operations:
        strategy = operation.as_strategy()

        @given(case=strategy, data=st.data())
        @settings(max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case, data) -> None:  # type: ignore[no-untyped-def]
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
            response = case.call()
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}")

        check()
    assert not failures, "\n".join(failures[:10])
    assert len(statuses) >= 3 * len(operations) and any(s == 200 for s in statuses)
    assert fuzz_env.web.audit.verify(ORG_A).ok


def test_case_json_is_the_stored_document_byte_for_byte(env: WebEnv) -> None:
    """The public contract: the API answers with each case, appeal and published page exactly as
    stored (keys and their order), though the workspace reads them as typed records."""
    from starlette.responses import JSONResponse

    from factbridge.workflow.records import APPEALS, CASES

    storage = env.services.storage
    analyst, editor, reviewer = (env.api(u) for u in ("a-analyst", "a-editor", "a-reviewer"))

    def same_as_stored(r: Any, collection: str = CASES) -> dict[str, Any]:
        assert r.status_code in (200, 201), r.text
        body = r.json()
        stored = storage.get_docs(ORG_A, collection, [body["id"]])[body["id"]]
        assert r.content == JSONResponse(stored).body
        return body

    cid = same_as_stored(analyst.post("/api/v1/cases", json={"source_kind": "post", "source_id": env.ids[ORG_A]["post"], "claim": ""}))["id"]
    same_as_stored(analyst.post(f"/api/v1/cases/{cid}/evidence", json={"kind": "link", "url": "https://who.example.int", "text": "WHO"}))
    same_as_stored(analyst.post(f"/api/v1/cases/{cid}/evidence", json={"kind": "note", "text": "called them"}))
    same_as_stored(editor.post(f"/api/v1/cases/{cid}/verdict", json={"rating": "False", "explanation": "No.", "language": "en"}))
    same_as_stored(reviewer.post(f"/api/v1/cases/{cid}/return", json={"note": "cite more"}))
    same_as_stored(editor.post(f"/api/v1/cases/{cid}/verdict", json={"rating": "False", "explanation": "Radio waves carry no virus."}))
    same_as_stored(reviewer.post(f"/api/v1/cases/{cid}/approve", json={}))
    same_as_stored(reviewer.post(f"/api/v1/cases/{cid}/publish", json={}))
    same_as_stored(editor.post(f"/api/v1/cases/{cid}/corrections", json={"text": "typo"}))
    same_as_stored(editor.post(f"/api/v1/cases/{cid}/corrections", json={"text": "new study", "new_rating": "Misleading"}))
    same_as_stored(reviewer.post(f"/api/v1/cases/{cid}/corrections/decide", json={"approve": True}))
    pending = same_as_stored(editor.post(f"/api/v1/cases/{cid}/withdraw", json={"reason": "wrong"}))
    assert pending["pending_withdrawal"]["by"] == "a-editor"
    same_as_stored(reviewer.get(f"/api/v1/cases/{cid}"))
    done = same_as_stored(reviewer.post(f"/api/v1/cases/{cid}/withdraw/decide", json={"approve": True}))
    assert done["status"] == "withdrawn" and [c.get("approved_by") for c in done["corrections"]] == [None, "a-reviewer"]
    listed = reviewer.get("/api/v1/cases")
    assert listed.content == JSONResponse([doc for _, doc in storage.list_docs(ORG_A, CASES, order="updated_desc")]).body
    appeal = env.web.appeals.file(ORG_A, cid, "The source is old")
    same_as_stored(editor.post(f"/api/v1/appeals/{appeal.id}/decide", json={"outcome": "upheld", "note": "checked"}), APPEALS)
    assert editor.get("/api/v1/appeals").content == JSONResponse([doc for _, doc in storage.list_docs(ORG_A, APPEALS)]).body
