"""Security: no organisation sees another's data on ANY route, CSRF on every
state-changing form, sign-in rate limit, sessions, headers, redirects."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Mount
from webenv import ORG_A, ORG_B, WebEnv, csrf_of, password_of, publish_case

MARK = "ORG-A-SECRET"


def all_routes(routes: list[BaseRoute]) -> list[APIRoute]:
    """Every endpoint of the app, whether FastAPI flattens included routers or not."""
    out: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            out.append(route)
        elif hasattr(route, "original_router"):  # FastAPI >= 0.165 keeps included routers as nodes
            out.extend(all_routes(route.original_router.routes))
        elif isinstance(route, Mount):
            continue
    return out


def seed_org_a_private(env: WebEnv) -> dict[str, str]:
    """Objects of desk-a that carry MARK: a case with a note, a file and an appeal, a published case."""
    web = env.web
    editor = web.accounts.get_user("a-editor")
    published = publish_case(env, claim=f"{MARK} published claim")
    appeal = web.appeals.file(ORG_A, published.id, f"{MARK} appeal reason", contact="secret@example.org")
    case = web.cases.open(ORG_A, editor, f"{MARK} private claim", source_kind="post", source_id=env.ids[ORG_A]["post"])
    c = env.login("a-editor")
    page = c.get(f"/cases/{case.id}")
    r = c.post(f"/cases/{case.id}/evidence", data={"kind": "file", "csrf_token": csrf_of(page.text), "text": MARK},
               files={"file": ("evidence.txt", io.BytesIO(f"{MARK} file body".encode()), "text/plain")})
    assert r.status_code == 303, r.text
    case = web.cases.get(ORG_A, case.id)
    web.accounts.create_token("a-viewer", f"{MARK} token")
    env.services.storage.put_docs(ORG_A, "narratives", [(env.ids[ORG_A]["narrative"], {"label": f"{MARK} narrative", "post_ids": [env.ids[ORG_A]["post"]], "size": 1}, 9.0)])
    return {
        "case_id": case.id,
        "published_case_id": published.id,
        "evidence_id": case.evidence[0].id,
        "appeal_id": appeal.id,
        "post_id": env.ids[ORG_A]["post"],
        "narrative_id": env.ids[ORG_A]["narrative"],
        "factcheck_id": published.publication.url,
        "username": "a-viewer",
        "token_id": web.accounts.list_tokens(ORG_A, "a-viewer")[0].id,
    }


def fill(path: str, values: dict[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        if name not in values:
            raise AssertionError(f"route {path} has a parameter '{name}' this test does not know: add it to the cross-organisation test")
        return values[name]

    return re.sub(r"\{([^}]+)\}", sub, path)


FORM_FIELDS = {
    "kind": "note", "text": "x", "url": "https://example.org", "rating": "False", "explanation": "x", "note": "x", "reason": "x",
    "outcome": "upheld", "assignee": "b-editor", "claim": "x", "source_kind": "manual", "new_rating": "", "contact": "",
    "role": "admin", "username": "x-new-user", "display_name": "x", "decision": "approve", "disabled": "true",
}


def test_no_route_shows_one_organisation_to_another(env: WebEnv) -> None:
    private = seed_org_a_private(env)
    audit_before = env.web.audit.entries(ORG_A, limit=1)[0]["seq"]
    browser_b = env.login("b-editor")
    csrf_b = csrf_of(browser_b.get("/").text)
    api_b = env.api("b-admin")
    values = dict(private) | {"n": "0", "i": "0"}  # the first image of a post, its first image match
    # signing out last keeps desk-b's session for the other routes
    routes = sorted(all_routes(env.app.routes), key=lambda r: r.path == "/logout")
    assert len(routes) >= 40
    checked = 0
    for route in routes:
        for method in sorted(route.methods - {"HEAD"}):
            is_api = route.path.startswith("/api/")
            client = api_b if is_api else browser_b
            if route.path.startswith(("/public/", "/federation/")):
                # Public routes (and the federation feed, which anonymous readers see as published
                # ClaimReview) show published work of the named organisation by design; desk-b's
                # public site must show nothing of desk-a, and desk-a's unpublished case stays hidden.
                targets = [fill(route.path, values | {"org": ORG_B})]
                if "{case_id}" in route.path:
                    targets.append(fill(route.path, values | {"org": ORG_A}))
            elif route.path.startswith("/api/v1/hooks/"):
                # a signed webhook names its organisation: desk-b, unsigned, gets nothing into desk-a's
                targets = [fill(route.path, values | {"org": ORG_A, "source": "x-source"})]
            else:
                targets = [fill(route.path, values)]
            for url in targets:
                if method == "GET":
                    r = client.get(url)
                elif is_api:
                    r = client.post(url, json={k: v for k, v in FORM_FIELDS.items() if k in ("text", "note", "rating", "explanation", "outcome", "claim")} | {"kind": "note"})
                else:
                    r = client.post(url, data=FORM_FIELDS | {"csrf_token": csrf_b})
                checked += 1
                body = r.text
                assert MARK not in body, f"{method} {url} as desk-b shows desk-a data (status {r.status_code})"
                assert "secret@example.org" not in body
                if any(f"{{{p}" in route.path for p in ("case_id", "post_id", "narrative_id", "appeal_id", "evidence_id", "factcheck_id", "username", "token_id")):
                    # refused (403: the role is not enough), not found, or rejected input; never done
                    assert r.status_code in (403, 404, 422) or (route.path.startswith("/public/") and r.status_code == 429), \
                        f"{method} {url} as desk-b answered {r.status_code}"
    assert checked >= 45
    # desk-b's attempts changed nothing of desk-a's
    assert env.web.audit.entries(ORG_A, limit=1)[0]["seq"] == audit_before
    assert env.web.audit.verify(ORG_A).ok
    assert env.web.accounts.get_user("a-viewer").role == "viewer"
    # and desk-a itself does see its own data on the same routes
    browser_a = env.login("a-editor")
    assert MARK in browser_a.get(f"/cases/{private['case_id']}").text
    assert MARK in env.api("a-editor").get(f"/api/v1/cases/{private['case_id']}").text


def test_every_state_changing_form_needs_the_csrf_token(env: WebEnv) -> None:
    private = seed_org_a_private(env)
    browser = env.login("a-admin")
    before = env.web.audit.entries(ORG_A, limit=1)[0]["seq"]
    # the API is bearer-only and the federation endpoints are signed by partners' keys: no cookie, no CSRF
    posts = [r for r in all_routes(env.app.routes) if "POST" in r.methods and not r.path.startswith(("/api/", "/federation/"))]
    assert len(posts) >= 14
    for route in posts:
        url = fill(route.path, private | {"org": ORG_A})
        for token in (None, "forged-token"):
            data = FORM_FIELDS | ({"csrf_token": token} if token else {})
            r = browser.post(url, data=data)
            assert r.status_code == 403, f"POST {url} without a valid CSRF token answered {r.status_code}"
    assert env.web.audit.entries(ORG_A, limit=1)[0]["seq"] == before
    # the API is bearer-only: a browser session cookie does not authenticate it
    assert browser.post(f"/api/v1/cases/{private['case_id']}/approve", json={}).status_code == 401


def test_login_is_rate_limited_and_sessions_are_safe(env: WebEnv) -> None:
    """Failures back off per (account, client): the guessing client waits, even with the right
    password; the account's owner, from another client, is never locked out."""
    c = env.client("203.0.113.66")
    token = csrf_of(c.get("/login").text)
    for _ in range(5):
        r = c.post("/login", data={"username": "a-editor", "password": "wrong-password", "csrf_token": token})
        assert r.status_code == 401 and "Unknown user name or wrong password" in r.text
    r = c.post("/login", data={"username": "a-editor", "password": password_of("a-editor"), "csrf_token": token})
    assert r.status_code == 429 and 0 < int(r.headers["Retry-After"]) <= 11  # 300 s / 32, then doubling
    # the same client may still try another account (up to the per-client limit)
    assert c.post("/login", data={"username": "a-viewer", "password": "nope-nope-nope", "csrf_token": token}).status_code == 401
    owner = env.client("198.51.100.7")
    assert env.login("a-editor", owner).get("/").status_code == 200

def test_session_cookie_logout_headers_and_redirects(env: WebEnv) -> None:
    c = env.client()
    page = c.get("/login?next=//evil.example/x")
    assert 'value="/"' in page.text  # open redirect refused
    r = c.post("/login", data={"username": "a-editor", "password": password_of("a-editor"), "csrf_token": csrf_of(page.text), "next": "//evil.example"})
    assert r.headers["location"] == "/"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    home = c.get("/")
    assert home.status_code == 200
    for header in ("content-security-policy", "x-content-type-options", "x-frame-options"):
        assert header in home.headers
    assert "script-src 'self'" in home.headers["content-security-policy"]
    assert home.headers["cache-control"] == "no-store"
    stolen = c.cookies.get("fb_session")
    c.post("/logout", data={"csrf_token": csrf_of(home.text)})
    replay = env.client()
    replay.cookies.set("fb_session", stolen)
    assert replay.get("/").status_code == 303  # the session ended on the server, not only in the browser
    assert env.client().get("/cases").headers["location"].startswith("/login")


ROLE_RULES: list[tuple[str, str, dict[str, Any], int]] = [
    ("a-viewer", "/api/v1/cases", {"claim": "x"}, 403),
    ("a-analyst", "/api/v1/appeals", {}, 403),
]


@pytest.mark.parametrize(("user", "path", "body", "status"), ROLE_RULES)
def test_roles(env: WebEnv, user: str, path: str, body: dict[str, Any], status: int) -> None:
    api = env.api(user)
    r = api.post(path, json=body) if body else api.get(path)
    assert r.status_code == status


def test_oversized_bodies_are_refused_before_parsing(env: WebEnv) -> None:
    c = env.login("a-editor")
    limit = env.services.settings.upload_max_bytes
    r = c.post("/cases", content=b"x" * (limit + 300 * 1024), headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
