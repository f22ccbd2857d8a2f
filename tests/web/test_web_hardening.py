"""Regression tests of the outside security test (issue 10): admin control of accounts and
tokens, sign-in limits that cannot lock the owner out, trusted proxies, request limits,
second-editor corrections and the low-severity findings. docs/security.md says what each proves."""

from __future__ import annotations

import time

import pytest
from webenv import ORG_A, ORG_B, WebEnv, csrf_of, password_of, publish_case

from factbridge.errors import Conflict, InputError, NotAuthenticated, PermissionDenied
from factbridge.models import FactCheck, MatchCandidate
from factbridge.pipeline.prepare import prepare_factcheck
from factbridge.web.i18n import LANGUAGES
from factbridge.web.security import client_address, parse_networks
from factbridge.workflow.accounts import parse_expiry
from factbridge.workflow.records import EvidenceItem


# -- item 2: disable, tokens, expiry, admin reset ---------------------------------------------
def test_admin_disables_revokes_and_resets_from_the_users_page(env: WebEnv) -> None:
    accounts = env.web.accounts
    token = accounts.create_token("a-viewer", "scripts")
    viewer_api = env.client()
    viewer_api.headers["Authorization"] = f"Bearer {token}"
    assert viewer_api.get("/api/v1/me").status_code == 200
    viewer = env.login("a-viewer")
    admin = env.login("a-admin")
    page = admin.get("/admin/users")
    assert page.headers["cache-control"] == "no-store"
    token_id = accounts.list_tokens(ORG_A, "a-viewer")[0].id
    assert f'id="token-{token_id}"' in page.text and token not in page.text
    csrf = csrf_of(page.text)

    # revoke one token: it stops at once
    assert admin.post(f"/admin/tokens/{token_id}/revoke", data={"csrf_token": csrf}).status_code == 303
    assert viewer_api.get("/api/v1/me").status_code == 401
    # disable: no session, no sign-in, no token
    token2 = accounts.create_token("a-viewer", "second")
    assert admin.post("/admin/users/a-viewer/disable", data={"csrf_token": csrf, "disabled": "true"}).status_code == 303
    assert viewer.get("/").status_code == 303  # the open session ended
    with pytest.raises(NotAuthenticated):
        accounts.authenticate("a-viewer", password_of("a-viewer"))
    with pytest.raises(NotAuthenticated):
        accounts.token_actor(token2)
    assert "users.disabled" not in admin.get("/admin/users").text  # translated, not a bare key
    assert admin.post("/admin/users/a-viewer/disable", data={"csrf_token": csrf, "disabled": "false"}).status_code == 303
    with pytest.raises(NotAuthenticated):
        accounts.token_actor(token2)  # enabling again does not bring old tokens back
    # an admin reset: new one-time password, every session and token of the user ends
    token3 = accounts.create_token("a-viewer", "third")
    viewer = env.login("a-viewer")
    reset = admin.post("/admin/users/a-viewer/password", data={"csrf_token": csrf})
    assert reset.status_code == 200 and reset.headers["cache-control"] == "no-store"
    assert 'id="created"' in reset.text and 'id="ended"' in reset.text
    assert viewer.get("/").status_code == 303
    with pytest.raises(NotAuthenticated):
        accounts.token_actor(token3)
    actions = [e["action"] for e in env.web.audit.entries(ORG_A, 40)]
    for action in ("token.revoke", "user.disable", "user.enable", "user.password"):
        assert action in actions
    assert env.web.audit.verify(ORG_A).ok
    # another organisation's admin cannot touch desk-a's users or tokens
    b_admin = env.login("b-admin")
    b_csrf = csrf_of(b_admin.get("/admin/users").text)
    assert token_id not in b_admin.get("/admin/users").text
    assert b_admin.post("/admin/users/a-editor/disable", data={"csrf_token": b_csrf}).status_code == 404
    assert b_admin.post(f"/admin/tokens/{accounts.list_tokens(ORG_A, 'a-admin')[0].id if accounts.list_tokens(ORG_A, 'a-admin') else token_id}/revoke",
                        data={"csrf_token": b_csrf}).status_code == 404


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_users_page_actions_in_every_language(env: WebEnv, lang: str) -> None:
    env.web.accounts.create_token("a-viewer", "scripts")
    html = env.login("a-admin").get(f"/admin/users?lang={lang}").text
    assert "users." not in html.replace("/admin/users", "")  # every new label has a translation


def test_tokens_expire(env: WebEnv) -> None:
    accounts = env.web.accounts
    assert accounts.token_days == env.services.settings.api_token_days == 90
    info_default = accounts.list_tokens(ORG_A)  # none yet
    assert info_default == []
    accounts.create_token("a-editor", "default")
    assert accounts.list_tokens(ORG_A)[0].expires_at is not None
    short = accounts.create_token("a-editor", "short", expires=parse_expiry("1h"))
    assert accounts.token_actor(short).username == "a-editor"
    with pytest.raises(InputError):
        parse_expiry("2001-01-01")
    assert parse_expiry("never") is None
    accounts.token_days = 1e-6  # 0.09 s
    brief = accounts.create_token("a-editor", "brief")
    time.sleep(0.2)
    with pytest.raises(NotAuthenticated, match="expired"):
        accounts.token_actor(brief)
    assert any(t.expired and t.name == "brief" for t in accounts.list_tokens(ORG_A))


# -- item 8: trusted proxies, no lockout of the owner --------------------------------------------
def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    proxies = parse_networks("10.0.0.0/8, ::1")
    assert client_address("203.0.113.9", "198.51.100.1", proxies) == "203.0.113.9"  # untrusted peer: header ignored
    assert client_address("10.0.0.2", "198.51.100.1", proxies) == "198.51.100.1"
    # the client may prepend anything; only the hop our proxy appended counts
    assert client_address("10.0.0.2", "1.2.3.4, 198.51.100.1", proxies) == "198.51.100.1"
    assert client_address("10.0.0.2", "198.51.100.1, 10.0.0.7", proxies) == "198.51.100.1"
    assert client_address("10.0.0.2", "not-an-ip", proxies) == "10.0.0.2"
    assert client_address("::1", "2001:db8::5", proxies) == "2001:db8::5"
    assert client_address("10.0.0.2", "198.51.100.1", ()) == "10.0.0.2"


def test_forged_forwarded_for_does_not_dodge_the_sign_in_backoff(env: WebEnv) -> None:
    attacker = env.client("203.0.113.66")
    token = csrf_of(attacker.get("/login").text)
    for i in range(5):
        r = attacker.post("/login", data={"username": "a-editor", "password": "wrong-password", "csrf_token": token},
                          headers={"X-Forwarded-For": f"198.51.100.{i}"})
        assert r.status_code == 401
    r = attacker.post("/login", data={"username": "a-editor", "password": "wrong-password", "csrf_token": token},
                      headers={"X-Forwarded-For": "198.51.100.200"})
    assert r.status_code == 429
    # behind a configured proxy, the forwarded address is the client: two clients count apart
    env.web.trusted_proxies = parse_networks("10.0.0.0/8")
    proxy = env.client("10.1.2.3")
    ptoken = csrf_of(proxy.get("/login").text)
    for _ in range(5):
        assert proxy.post("/login", data={"username": "a-viewer", "password": "nope-nope-nope", "csrf_token": ptoken},
                          headers={"X-Forwarded-For": "198.51.100.50"}).status_code == 401
    assert proxy.post("/login", data={"username": "a-viewer", "password": password_of("a-viewer"), "csrf_token": ptoken},
                      headers={"X-Forwarded-For": "198.51.100.50"}).status_code == 429
    assert proxy.post("/login", data={"username": "a-viewer", "password": password_of("a-viewer"), "csrf_token": ptoken},
                      headers={"X-Forwarded-For": "198.51.100.51"}).status_code == 303


def test_password_spraying_from_one_client_is_limited(env: WebEnv) -> None:
    sprayer = env.client("203.0.113.77")
    token = csrf_of(sprayer.get("/login").text)
    codes = [sprayer.post("/login", data={"username": f"nobody-{i}", "password": "Spring2026!!", "csrf_token": token}).status_code
             for i in range(31)]
    assert codes[:30] == [401] * 30 and codes[30] == 429
    assert env.login("a-editor", env.client("198.51.100.9")).get("/").status_code == 200  # others unaffected


# -- item 4 (in process; the real server and its memory: test_request_limits_server.py) --------
def test_bodies_are_refused_on_the_stream_and_before_authentication(env: WebEnv) -> None:
    limit = env.services.settings.request_max_bytes

    def chunks(total: int):  # a generator body: sent chunked, without Content-Length
        for _ in range(total // 65536 + 1):
            yield b"x" * 65536

    anon = env.client()
    r = anon.post("/api/v1/cases", content=chunks(limit * 3), headers={"content-type": "application/json"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    api = env.api("a-editor")
    r = api.post("/api/v1/cases", content=chunks(limit * 3), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert api.post("/api/v1/cases", json={"claim": "x"}).status_code == 201  # small bodies still work
    # pages: no session, no body read; a session's oversized chunked form is refused on the stream
    assert anon.post("/cases", content=chunks(limit * 3), headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 401
    browser = env.login("a-editor")
    assert browser.post("/cases", content=chunks(limit * 3), headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 413


# -- item 9 and the 409 item -----------------------------------------------------------------------
def test_changing_a_published_rating_needs_a_second_editor(env: WebEnv) -> None:
    web = env.web
    case = publish_case(env)
    editor, reviewer = web.accounts.get_user("a-editor"), web.accounts.get_user("a-reviewer")
    proposed = web.cases.correct(ORG_A, editor, case.id, "Actually true", new_rating="True")
    assert web.cases.published(ORG_A, case.id).rating == "False"  # nothing public changed
    assert proposed.pending_correction.new_rating == "True"
    with pytest.raises(PermissionDenied, match="second editor"):
        web.cases.decide_correction(ORG_A, editor, case.id, approve=True)
    with pytest.raises(Conflict, match="already waiting"):
        web.cases.correct(ORG_A, reviewer, case.id, "Mostly", new_rating="Misleading")
    web.cases.decide_correction(ORG_A, reviewer, case.id, approve=False)
    assert web.cases.published(ORG_A, case.id).rating == "False"
    web.cases.correct(ORG_A, editor, case.id, "Actually true", new_rating="True")
    web.cases.decide_correction(ORG_A, reviewer, case.id, approve=True)
    snapshot = web.cases.published(ORG_A, case.id)
    assert snapshot.rating == "True" and snapshot.corrections[-1].previous_rating == "False"
    # a correction that keeps the rating is public at once (one editor is enough)
    web.cases.correct(ORG_A, editor, case.id, "Fixed a typo")
    assert web.cases.published(ORG_A, case.id).corrections[-1].text == "Fixed a typo"
    assert web.audit.verify(ORG_A).ok


def test_a_stale_api_write_gets_409_with_the_current_version(env: WebEnv) -> None:
    api = env.api("a-analyst")
    case = api.post("/api/v1/cases", json={"claim": "x"}).json()
    api.post(f"/api/v1/cases/{case['id']}/evidence", json={"kind": "note", "text": "first", "version": case["version"]})
    r = api.post(f"/api/v1/cases/{case['id']}/evidence", json={"kind": "note", "text": "second", "version": case["version"]})
    assert r.status_code == 409 and r.json()["current"] == {"id": case["id"], "version": case["version"] + 1, "status": "open"}
    # two writers racing without a version: the write is a compare-and-set inside the transaction
    web, analyst = env.web, env.web.accounts.get_user("a-analyst")
    stale = web.cases.get(ORG_A, case["id"])
    web.cases.add_evidence(ORG_A, analyst, case["id"], "note", text="winner")
    with pytest.raises(Conflict) as lost:
        web.cases._save(ORG_A, analyst, "case.evidence", stale, stale.with_(evidence=[*stale.evidence, EvidenceItem("ev-lost", "note", "x", "")]))
    assert lost.value.current["version"] == stale.version + 1
    spec = env.client().get("/api/v1/openapi.json").json()
    assert "409" in spec["info"]["description"] or "409" in str(spec["components"]["schemas"]["Evidence"])


# -- low -------------------------------------------------------------------------------------------------
def test_published_urls_never_come_from_the_host_header(env: WebEnv) -> None:
    api = env.api("a-editor")
    reviewer = env.api("a-reviewer")
    case = api.post("/api/v1/cases", json={"claim": "Host header claim"}).json()
    api.post(f"/api/v1/cases/{case['id']}/verdict", json={"rating": "False", "explanation": "x"})
    reviewer.post(f"/api/v1/cases/{case['id']}/approve", json={})
    evil = {"Host": "evil.example"}
    published = reviewer.post(f"/api/v1/cases/{case['id']}/publish", json={}, headers=evil).json()
    assert published["publication"]["url"].startswith("http://127.0.0.1:8765/public/") and "evil" not in str(published)
    feed = env.client().get(f"/public/{ORG_A}/claimreview.json", headers=evil).json()
    assert "evil" not in str(feed)
    assert "evil" not in str(api.get("/api/v1/reviews", headers=evil).json())


def test_javascript_urls_from_imported_factchecks_are_never_links(env: WebEnv) -> None:
    storage = env.services.storage
    post_id = env.ids[ORG_A]["post"]
    fc = prepare_factcheck(FactCheck(id="fc-js", claim="bad link", title="Click me", url="javascript:alert(document.cookie)", rating="False"))
    storage.upsert_factchecks(ORG_A, [fc])
    storage.replace_matches(ORG_A, post_id, [MatchCandidate(factcheck_id="fc-js", rank=1, fused_score=0.9, decision="match", decided_by="test-1")])
    html = env.login("a-editor").get(f"/posts/{post_id}").text
    assert "Click me" in html and "javascript:" not in html


def test_letter_case_does_not_bypass_the_self_role_guard(env: WebEnv) -> None:
    admin = env.login("a-admin")
    csrf = csrf_of(admin.get("/admin/users").text)
    for name in ("A-ADMIN", "a-Admin", " a-admin"):
        r = admin.post(f"/admin/users/{name}/role", data={"csrf_token": csrf, "role": "viewer"})
        assert r.status_code == 422, name
    assert env.web.accounts.get_user("a-admin").role == "admin"


def test_one_time_password_page_is_not_cached(env: WebEnv) -> None:
    admin = env.login("a-admin")
    r = admin.post("/admin/users", data={"csrf_token": csrf_of(admin.get("/admin/users").text), "username": "new-user", "role": "viewer"})
    assert r.status_code == 200 and 'id="created"' in r.text and r.headers["cache-control"] == "no-store"


def test_api_docs_work_offline(env: WebEnv) -> None:
    c = env.client()
    page = c.get("/api/docs")
    assert page.status_code == 200 and "<script>" not in page.text  # no inline script (the CSP forbids it)
    assert "cdn" not in page.text and "https://" not in page.text
    for src in ("/api/docs/assets/swagger-ui-bundle.js", "/api/docs/assets/swagger-ui.css", "/static/api-docs.js"):
        assert src in page.text
        asset = c.get(src)
        assert asset.status_code == 200 and len(asset.content) > 100
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert c.get("/api/v1/openapi.json").status_code == 200


def test_audit_offset_out_of_range_is_bad_input_not_a_crash(env: WebEnv) -> None:
    admin = env.login("a-admin")
    for offset in (str(2**63), str(2**64), "-1"):
        r = admin.get(f"/audit?offset={offset}")
        assert 400 <= r.status_code < 500, (offset, r.status_code)
    assert admin.get("/audit?offset=0").status_code == 200


def test_user_names_do_not_leak_across_organisations(env: WebEnv) -> None:
    b_admin = env.login("b-admin")
    csrf = csrf_of(b_admin.get("/admin/users").text)
    taken = b_admin.post("/admin/users", data={"csrf_token": csrf, "username": "a-viewer", "role": "viewer"})
    assert taken.status_code == 409 and "a-viewer" not in taken.text.replace('value="a-viewer"', "")
    assert "a-viewer" not in b_admin.get("/admin/users").text
    api_b = env.api("b-editor")
    case = api_b.post("/api/v1/cases", json={"claim": "x"}).json()
    for who in ("a-viewer", "no-such-user"):  # the same answer for a user of another org and for nobody
        r = api_b.post(f"/api/v1/cases/{case['id']}/assign", json={"assignee": who})
        assert r.status_code == 422 and "organisation" in r.json()["detail"]
    assert env.web.accounts.list_users(ORG_B) and all(u.org == ORG_B for u in env.web.accounts.list_users(ORG_B))
