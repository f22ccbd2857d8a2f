"""Self-service password change (page and API), purging of dead sessions, and rate limits
kept in storage (shared by app instances over one database, surviving restarts)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from markupsafe import escape
from typer.testing import CliRunner
from webenv import ORG_A, WebEnv, csrf_of, password_of, web_settings

from factbridge.cli import app as cli_app
from factbridge.errors import InputError, NotAuthenticated, RateLimited
from factbridge.services import Services
from factbridge.web.app import create_app
from factbridge.web.i18n import LANGUAGES, catalog
from factbridge.web.security import (
    RATE_BUCKETS,
    RATE_LIMITS,
    RateBucket,
    RateBuckets,
    RateLimiter,
    sweep_rate_limits,
)
from factbridge.workflow.accounts import SESSIONS, SYSTEM_ORG, password_problem

NEW_PASSWORD = "a brand new passphrase"


def change_form(client, current: str, new: str, confirm: str | None = None):  # type: ignore[no-untyped-def]
    page = client.get("/account")
    assert page.status_code == 200
    return client.post("/account/password", data={"csrf_token": csrf_of(page.text), "current_password": current,
                                                  "new_password": new, "confirm_password": new if confirm is None else confirm})


def test_password_change_page_ends_other_sessions_and_tokens(env: WebEnv) -> None:
    here, elsewhere = env.login("a-editor"), env.login("a-editor")
    api = env.api("a-editor")
    colleague = env.login("a-reviewer")
    assert 'href="/account"' in here.get("/").text  # every signed-in page links to the account page

    wrong = change_form(here, "not my password", NEW_PASSWORD)
    assert wrong.status_code == 422 and str(escape(catalog("en")["account.wrong_current"])) in wrong.text
    for new, confirm, key in ((NEW_PASSWORD, "typo", "account.mismatch"), ("short", None, "account.rule_too_short"),
                              (password_of("a-editor"), None, "account.rule_unchanged")):
        r = change_form(here, password_of("a-editor"), new, confirm)
        assert r.status_code == 422, (new, r.status_code)
        assert str(escape(catalog("en")[key].format(min=10))) in r.text, key
    assert password_problem("a-editor-x", "a-editor-x") == "is_username"
    assert elsewhere.get("/").status_code == 200  # refusals changed nothing
    no_token = here.post("/account/password", data={"current_password": password_of("a-editor"), "new_password": NEW_PASSWORD,
                                                    "confirm_password": NEW_PASSWORD})
    assert no_token.status_code == 403

    done = change_form(here, password_of("a-editor"), NEW_PASSWORD)
    assert done.status_code == 200
    assert str(escape(catalog("en")["account.changed"])) in done.text
    assert str(escape(catalog("en")["account.revoked"].format(sessions=1, tokens=1))) in done.text  # the page says what ended
    assert here.get("/").status_code == 200  # this browser stays signed in
    assert elsewhere.get("/").status_code == 303  # the other one is signed out
    assert api.get("/api/v1/me").status_code == 401  # the API token is revoked
    assert colleague.get("/").status_code == 200  # nobody else is affected
    with pytest.raises(NotAuthenticated):
        env.web.accounts.authenticate("a-editor", password_of("a-editor"))
    assert env.web.accounts.authenticate("a-editor", NEW_PASSWORD).username == "a-editor"
    entry = next(e for e in env.web.audit.entries(ORG_A, 20) if e["action"] == "user.password")
    assert entry["actor"] == "a-editor" and entry["after"]["by"] == "self"
    assert entry["after"]["sessions_revoked"] == 1 and entry["after"]["tokens_revoked"] == 1
    assert NEW_PASSWORD not in json.dumps(entry) and "password_hash" not in json.dumps(entry)
    assert env.web.audit.verify(ORG_A).ok


def test_guessing_the_current_password_is_rate_limited(env: WebEnv) -> None:
    c = env.login("a-analyst")
    for _ in range(5):
        assert change_form(c, "guess-guess-guess", NEW_PASSWORD).status_code == 422
    limited = change_form(c, password_of("a-analyst"), NEW_PASSWORD)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert env.web.accounts.authenticate("a-analyst", password_of("a-analyst"))  # unchanged


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_account_page_in_every_language(env: WebEnv, lang: str) -> None:
    html = env.login("a-viewer").get(f"/account?lang={lang}").text
    own = catalog(lang)
    for key in ("account.title", "account.current", "account.new", "account.confirm", "account.effect"):
        assert str(escape(own[key])) in html, (lang, key)
    assert str(escape(own["account.rules"].format(min=10))) in html


def test_password_change_api(env: WebEnv) -> None:
    api, other_api = env.api("a-editor"), env.api("a-editor")
    browser = env.login("a-editor")
    url = "/api/v1/me/password"
    wrong = api.post(url, json={"current_password": "nope-nope-nope", "new_password": NEW_PASSWORD})
    assert wrong.status_code == 422 and wrong.json()["error"] == "InputError" and "current_password" in wrong.json()["detail"]
    weak = api.post(url, json={"current_password": password_of("a-editor"), "new_password": "a-editor"})
    assert weak.status_code == 422 and "new_password" in weak.json()["detail"]
    assert api.post(url, json={"current_password": "x", "new_password": "y", "extra": 1}).status_code == 422
    assert env.client().post(url, json={"current_password": "x", "new_password": "y"}).status_code == 401
    r = api.post(url, json={"current_password": password_of("a-editor"), "new_password": NEW_PASSWORD})
    assert r.status_code == 200
    assert r.json() == {"username": "a-editor", "sessions_revoked": 1, "tokens_revoked": 1}
    assert api.get("/api/v1/me").json()["username"] == "a-editor"  # the token that made the change keeps working
    assert other_api.get("/api/v1/me").status_code == 401
    assert browser.get("/").status_code == 303
    schema = env.client().get("/api/v1/openapi.json").json()
    assert "/api/v1/me/password" in schema["paths"]


def test_password_rules_are_the_same_everywhere(env: WebEnv) -> None:
    accounts = env.web.accounts
    for username, password in (("newbie", "short"), ("newbie-long", "newbie-long"), ("newbie-x", "x" * 1001)):
        with pytest.raises(InputError):
            accounts.add_user(username, password, ORG_A, "viewer")
    with pytest.raises(InputError):
        accounts.set_password("a-viewer", "a-viewer")
    admin = env.login("a-admin")
    page = admin.get("/admin/users")
    created = admin.post("/admin/users", data={"csrf_token": csrf_of(page.text), "username": "generated", "role": "viewer"})
    assert created.status_code == 200  # the admin page's one-time password passes the same rules


def _age_session(env: WebEnv, slot: str, hours: float) -> None:
    storage = env.services.storage
    doc = storage.get_docs(SYSTEM_ORG, SESSIONS, [slot])[slot]
    expires = datetime.now(UTC) - timedelta(hours=hours)
    storage.put_docs(SYSTEM_ORG, SESSIONS, [(slot, doc | {"expires_at": expires.isoformat()}, expires.timestamp())])


def test_dead_sessions_are_purged_and_their_slots_reused(env: WebEnv) -> None:
    accounts, storage = env.web.accounts, env.services.storage
    editor, viewer = accounts.get_user("a-editor"), accounts.get_user("a-viewer")
    tokens = [accounts.start_session(editor)[0] for _ in range(3)] + [accounts.start_session(viewer)[0] for _ in range(3)]
    slots = [t.split(".")[0] for t in tokens]
    assert storage.count_docs(SYSTEM_ORG, SESSIONS) == 6
    accounts.end_session(tokens[0])  # signed out: purged at once
    assert storage.get_docs(SYSTEM_ORG, SESSIONS, [slots[0]])[slots[0]] == {"free": True}
    _age_session(env, slots[1], 2)  # expired
    accounts.set_password("a-viewer", "another viewer password")  # an admin reset frees the viewer's three slots at once
    # a record from before slots (keyed by the token's hash) is purged too
    storage.put_docs(SYSTEM_ORG, SESSIONS, [("ab" * 32, {"username": "a-editor", "csrf": "c", "expires_at": "2099-01-01T00:00:00+00:00",
                                                         "epoch": 0, "revoked": False}, None)])
    report = accounts.purge_sessions()
    assert (report.scanned, report.purged, report.live, report.free) == (7, 2, 1, 6)
    kept = storage.get_docs(SYSTEM_ORG, SESSIONS, [*slots, "ab" * 32])
    assert sum(1 for d in kept.values() if d != {"free": True}) == 1
    assert accounts.session(tokens[2]).actor.username == "a-editor"  # the live one still works
    for dead in (tokens[0], tokens[1], tokens[3]):
        with pytest.raises(NotAuthenticated):
            accounts.session(dead)
    # new sign-ins reuse free slots: the collection does not grow until every slot is in use
    new = [accounts.start_session(editor)[0] for _ in range(6)]
    assert storage.count_docs(SYSTEM_ORG, SESSIONS) == 7
    assert accounts.start_session(editor)[0].split(".")[0] not in {t.split(".")[0] for t in new}
    assert storage.count_docs(SYSTEM_ORG, SESSIONS) == 8
    with pytest.raises(NotAuthenticated):  # a reused slot answers only to its new secret
        accounts.session(tokens[1])
    assert accounts.purge_sessions().purged == 0


def test_sign_in_purges_expired_sessions(env: WebEnv) -> None:
    storage = env.services.storage
    old = env.login("a-editor")
    slot = old.cookies.get("fb_session").split(".")[0]
    _age_session(env, slot, 1)
    assert old.get("/").status_code == 303
    assert storage.get_docs(SYSTEM_ORG, SESSIONS, [slot])[slot] != {"free": True}
    env.login("a-viewer")  # any sign-in purges a batch of the oldest slots, then takes a free one
    count = storage.count_docs(SYSTEM_ORG, SESSIONS)
    assert count == 1 and storage.get_docs(SYSTEM_ORG, SESSIONS, [slot])[slot]["username"] == "a-viewer"


def test_cli_purge_sessions(tmp_path: Path) -> None:
    db = tmp_path / "fb.db"
    settings = web_settings(tmp_path, storage_url=f"sqlite:///{db}")
    with Services(settings) as services:
        accounts = create_app(services).state.web.accounts
        accounts.add_org("desk-x", "Desk X")
        user = accounts.add_user("alice", "alice-password-1", "desk-x", "editor")
        tokens = [accounts.start_session(user)[0] for _ in range(3)]
        accounts.end_session(tokens[0])
        slot = tokens[1].split(".")[0]
        doc = services.storage.get_docs(SYSTEM_ORG, SESSIONS, [slot])[slot]
        services.storage.put_docs(SYSTEM_ORG, SESSIONS, [(slot, doc | {"revoked": True}, 1.0)])
    base = ["--storage-url", f"sqlite:///{db}", "--data-dir", str(tmp_path), "--embedder", "hashing"]
    runner = CliRunner(env={"FACTBRIDGE_PASSWORD_HASH_TIME_COST": "1", "FACTBRIDGE_PASSWORD_HASH_MEMORY_KIB": "1024"})
    out = runner.invoke(cli_app, [*base, "users", "purge-sessions", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == {"scanned": 3, "purged": 1, "live": 1, "free_slots": 2, "rate_limit_keys_dropped": 0}
    table = runner.invoke(cli_app, [*base, "users", "purge-sessions"])
    assert table.exit_code == 0 and "free slots" in table.output


def _desk(db: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    return Services(web_settings(tmp_path, storage_url=f"sqlite:///{db}", login_rate_limit="3/300"))


def test_rate_limits_are_shared_by_app_instances_and_survive_restarts(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    db = tmp_path / "shared.db"
    first, second = _desk(db, tmp_path), _desk(db, tmp_path)
    try:
        app_one, app_two = create_app(first), create_app(second)
        app_one.state.web.accounts.add_org("desk-x", "Desk X")
        app_one.state.web.accounts.add_user("alice", "alice-password-1", "desk-x", "editor")
        one, two = TestClient(app_one, follow_redirects=False), TestClient(app_two, follow_redirects=False)

        def attempt(client: TestClient, password: str) -> int:
            token = csrf_of(client.get("/login").text)
            return client.post("/login", data={"username": "alice", "password": password, "csrf_token": token}).status_code

        assert attempt(one, "wrong-password-1") == 401
        assert attempt(two, "wrong-password-2") == 401
        assert attempt(one, "wrong-password-3") == 401
        assert attempt(two, "alice-password-1") == 429  # three failures over two instances reach the limit of 3
        stored = json.dumps(first.storage.list_docs(SYSTEM_ORG, RATE_LIMITS, limit=1000))
        assert "alice" not in stored and "testclient" not in stored  # keys are kept salted and hashed
        one.close()
        two.close()
    finally:
        first.close()
        second.close()
    restarted = _desk(db, tmp_path)
    try:
        client = TestClient(create_app(restarted), follow_redirects=False)
        assert attempt(client, "alice-password-1") == 429  # a restart does not reset the count
        client.close()
    finally:
        restarted.close()


def test_stored_limiter_window_reset_and_sweep(env: WebEnv) -> None:
    storage = env.services.storage
    now = [1000.0]
    limiter = RateLimiter(storage, "test", 2, 60.0, "tries", salt=b"salt", clock=lambda: now[0])
    limiter.take("k1")
    limiter.take("k1")
    with pytest.raises(RateLimited) as refused:
        limiter.take("k1")
    assert refused.value.retry_after_s == 61
    limiter.take("k2")  # other keys count apart, even in the same bucket
    now[0] += 30
    with pytest.raises(RateLimited) as later:
        limiter.check("k1")
    assert later.value.retry_after_s == 31
    limiter.reset("k1")
    limiter.take("k1")
    now[0] += 61  # the window passed: the hits no longer count
    limiter.take("k1")
    limiter.take("k1")
    assert storage.count_docs(SYSTEM_ORG, RATE_LIMITS) <= RATE_BUCKETS
    buckets = storage.list_docs(SYSTEM_ORG, RATE_LIMITS, limit=1000)  # every bucket reads back through its record unchanged
    assert buckets and all(RateBucket.from_doc(b, doc).to_doc() == doc for b, doc in buckets)
    assert sum(len(times) for b, doc in buckets for times in RateBuckets(storage).get([b])[b].hits.values()) >= 2
    # k1, and k2 unless a write of k1's bucket already dropped it
    assert sweep_rate_limits(storage, {"test": 60.0}, now=now[0] + 61) >= 1
    # nothing but each bucket's version ("_v", for conditional writes) is left
    assert all(set(doc) <= {"_v"} for bucket, doc in storage.list_docs(SYSTEM_ORG, RATE_LIMITS, limit=1000) if bucket.startswith("test-"))
    assert sweep_rate_limits(storage, {"test": 60.0}, now=now[0] + 61) == 0


@pytest.mark.postgres
def test_sessions_password_change_and_limits_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    """Slots (sorted by expiry, NULLS LAST for records from before slots), purging, the password
    change and the stored limiter on the PostgreSQL backend."""
    with Services(web_settings(tmp_path, storage_url=postgres_url)) as services:
        web = create_app(services).state.web
        accounts, storage = web.accounts, services.storage
        accounts.add_org("desk-x", "Desk X")
        user = accounts.add_user("alice", "alice-password-1", "desk-x", "editor")
        kept, other = accounts.start_session(user), accounts.start_session(user)
        token = accounts.create_token("alice")
        change = accounts.change_password("alice", "alice-password-1", NEW_PASSWORD, keep_session=kept[1].slot)
        assert (change.sessions_revoked, change.tokens_revoked) == (1, 1)
        assert accounts.session(kept[0]).actor.username == "alice"
        with pytest.raises(NotAuthenticated):
            accounts.session(other[0])
        with pytest.raises(NotAuthenticated):
            accounts.token_actor(token)
        storage.put_docs(SYSTEM_ORG, SESSIONS, [("cd" * 32, {"username": "alice", "csrf": "c", "expires_at": "2099-01-01T00:00:00+00:00",
                                                             "epoch": 1, "revoked": False}, None)])
        assert accounts.purge_sessions().purged == 1  # the record from before slots
        accounts.start_session(user)
        accounts.start_session(user)
        assert storage.count_docs(SYSTEM_ORG, SESSIONS) == 3  # two free slots reused
        web.login_limiter.hit("user:alice")
        assert storage.count_docs(SYSTEM_ORG, RATE_LIMITS) == 1
        assert web.audit.verify("desk-x").ok

