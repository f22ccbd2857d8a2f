"""Workspace and public pages in process: what they show, the case workflow
through forms, uploads, public ClaimReview pages, reports, appeals, escaping,
languages and charts."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner
from webenv import ORG_A, WebEnv, csrf_of, make_env, publish_case

from factbridge.cli import app as cli_app
from factbridge.web.charts import line_chart
from factbridge.web.i18n import LANGUAGES, catalog
from factbridge.workflow.claimreview import jsonld_blocks_from_html

XSS = '<script>alert("x")</script></script><img src=x onerror=alert(1)>'


def jsonld_of(html: str) -> dict:  # type: ignore[type-arg]
    blocks = jsonld_blocks_from_html(html)
    assert len(blocks) == 1
    return json.loads(blocks[0][1])  # type: ignore[no-any-return]


def svg_of(html: str) -> ET.Element:
    match = re.search(r"<svg.*?</svg>", html, re.S)
    assert match, "no chart"
    return ET.fromstring(match.group(0))


def test_dashboard_shows_queue_alerts_narratives_and_chart(env: WebEnv) -> None:
    c = env.login("a-viewer")
    html = c.get("/").text
    ids = env.ids[ORG_A]
    queue = html[html.index('id="queue"'):html.index('id="alerts"')]
    first_item = re.search(r'class="queue-item" href="([^"]+)"', queue)
    assert first_item and first_item.group(1) == f"/posts/{ids['post']}"
    assert "0.93" in queue and "triage: triage-test-1; checkworthiness: cw-test-1" in queue and "reach 0.80 → 0.20" in queue
    assert f'href="/narratives/{ids["narrative"]}"' in queue  # narratives are queued too
    assert "Burst: 5G spreads the virus" in html and f'/narratives/{ids["narrative"]}' in html
    svg = svg_of(html)
    assert svg.find("{http://www.w3.org/2000/svg}polyline") is not None
    # the live-alerts card refreshes itself from a fragment of the same page
    assert 'data-refresh="/dashboard/alerts"' in html
    env.services.storage.put_docs(ORG_A, "alerts", [("new-alert", {"kind": "resurfacing", "summary": "Resurfacing: old hoax", "updated_at": "2030-01-01T00:00:00+00:00"}, None)])
    fragment = c.get("/dashboard/alerts").text
    assert "Resurfacing: old hoax" in fragment and "<html" not in fragment


def test_dashboard_without_pipeline_documents_falls_back(tmp_path: Path) -> None:
    env = make_env(tmp_path)
    try:
        storage = env.services.storage
        # a fresh organisation whose later stages have stored nothing yet
        env.web.accounts.add_org("desk-c", "Desk C")
        env.web.accounts.add_user("c-editor", "pw-c-editor-0123456789", "desk-c", "editor")
        from factbridge.models import Post

        storage.upsert_posts("desk-c", [Post(id="c1", text="only post of desk c")])
        c = env.client()
        page = c.get("/login")
        c.post("/login", data={"username": "c-editor", "password": "pw-c-editor-0123456789", "csrf_token": csrf_of(page.text)})
        html = c.get("/").text
        assert "No triage scores yet" in html and 'href="/posts/c1"' in html
        assert "No alerts." in html and "No narratives yet." in html
        assert c.get("/posts/c1").status_code == 200
    finally:
        env.close()
        env.services.close()


def test_post_and_narrative_pages(env: WebEnv) -> None:
    c = env.login("a-analyst")
    ids = env.ids[ORG_A]
    post = c.get(f"/posts/{ids['post']}").text
    for expected in ("health claim", "cw-test-1", "https://bad.example.net/5g", "domain registered 3 days ago", "5G towers spread the virus, share before they delete it",
                     "near_duplicate 0.90", "0.93", "triage: triage-test-1"):
        assert expected in post
    p2 = c.get("/posts/en-5g").text  # matched to the fact-check: score, signals and decided_by shown
    assert re.search(r'class="tag d-(match|possible|none)"', p2) and "decided_by" in p2 and "No, 5G does not spread COVID-19" in p2
    nar = c.get(f"/narratives/{ids['narrative']}").text
    assert "5G towers spread the virus, share before they delete it" in nar and "narratives-test-1" in nar and "No, 5G does not spread COVID-19" in nar
    assert all(f'href="?lang={code}"' in nar for code in LANGUAGES)  # page context never hides the language switcher
    points = svg_of(nar).findall("{http://www.w3.org/2000/svg}circle")
    assert len(points) == 4  # 8 posts over 4 days
    assert c.get("/narratives/nope").status_code == 404
    assert c.get("/posts/nope").status_code == 404
    assert 'id="coordinated-accounts"' not in nar  # nothing linked yet


def test_narrative_page_shows_coordinated_accounts(env: WebEnv) -> None:
    from factbridge.pipeline.coordination import NARRATIVE_COORDINATION

    nid = env.ids[ORG_A]["narrative"]
    doc = {
        "narrative_id": nid,
        "accounts": [{"account": "acct-7f3a", "network": "net-1", "posts": 3, "post_ids": ["p1"]}, {"account": "acct-91bc", "network": "net-1", "posts": 2, "post_ids": ["p2"]}],
        "networks": [{"id": "net-1", "size": 2, "accounts_here": 2, "shared_objects": [{"object": "url:https://bad.example.net/5g", "accounts": 2}], "first_share": 0, "last_share": 9}],
        "decided_by": "coordinated-sharing-1 (window 60 s)",
    }
    env.services.storage.put_docs(ORG_A, NARRATIVE_COORDINATION, [(nid, doc, 2.0)])
    page = env.login("a-analyst").get(f"/narratives/{nid}").text
    section = page[page.index('id="coordinated-accounts"'):]
    for expected in ("Accounts acting in concert", "acct-7f3a", "acct-91bc", "net-1", "url:https://bad.example.net/5g", "coordinated-sharing-1 (window 60 s)"):
        assert expected in page
    assert section.index("acct-7f3a") < section.index("acct-91bc")
    other = env.login("b-editor").get(f"/narratives/{nid}")
    assert other.status_code == 404  # another organisation sees neither the narrative nor its accounts


def test_case_workflow_through_forms(env: WebEnv) -> None:
    editor = env.login("a-editor")
    post_id = env.ids[ORG_A]["post"]
    page = editor.get(f"/posts/{post_id}")
    r = editor.post("/cases", data={"source_kind": "post", "source_id": post_id, "csrf_token": csrf_of(page.text)})
    assert r.status_code == 303
    case_url = r.headers["location"]
    case_id = case_url.rsplit("/", 1)[1]
    token = csrf_of(editor.get(case_url).text)
    ok = {"csrf_token": token}
    assert editor.post(f"{case_url}/evidence", data=ok | {"kind": "link", "url": "https://who.example.int/5g", "text": "WHO"}).status_code == 303
    assert editor.post(f"{case_url}/evidence", data=ok | {"kind": "note", "text": "asked the operator"}).status_code == 303
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    r = editor.post(f"{case_url}/evidence", data=ok | {"kind": "file", "text": "screenshot"}, files={"file": ("shot.png", io.BytesIO(png), "image/png")})
    assert r.status_code == 303
    bad = editor.post(f"{case_url}/evidence", data=ok | {"kind": "file"}, files={"file": ("x.exe", io.BytesIO(b"MZ\x90\x00\x03\x00\xff\xfe"), "image/png")})
    assert bad.status_code == 422 and "accepted" in bad.text
    big = editor.post(f"{case_url}/evidence", data=ok | {"kind": "file"}, files={"file": ("big.txt", io.BytesIO(b"a" * (env.services.settings.upload_max_bytes + 1)), "text/plain")})
    assert big.status_code == 422
    case = env.web.cases.get(ORG_A, case_id)
    assert [e.kind for e in case.evidence] == ["link", "note", "file"]
    file_ev = case.evidence[2]
    download = editor.get(f"{case_url}/files/{file_ev.id}")
    assert download.status_code == 200 and download.content == png
    assert download.headers["content-disposition"].startswith("attachment") and download.headers["content-type"] == "image/png"
    assert (Path(env.services.settings.data_dir) / "uploads" / ORG_A / file_ev.file.sha256).is_file()
    # stale form (old version) is refused with 409
    assert editor.post(f"{case_url}/verdict", data=ok | {"rating": "False", "explanation": "x", "version": "1"}).status_code == 409
    r = editor.post(f"{case_url}/verdict", data=ok | {"rating": "False", "headline": "No, 5G does not spread viruses", "explanation": "Radio waves carry no virus."})
    assert r.status_code == 303
    html = editor.get(case_url).text
    assert "another editor must approve" in html and 'id="approve"' not in html
    assert editor.post(f"{case_url}/approve", data=ok).status_code == 403
    reviewer = env.login("a-reviewer")
    rtoken = csrf_of(reviewer.get(case_url).text)
    assert 'id="approve"' in reviewer.get(case_url).text
    assert reviewer.post(f"{case_url}/approve", data={"csrf_token": rtoken}).status_code == 303
    assert reviewer.post(f"{case_url}/publish", data={"csrf_token": rtoken}).status_code == 303
    html = reviewer.get(case_url).text
    public_url = re.search(r'id="public-link">([^<]+)<', html).group(1)  # type: ignore[union-attr]
    assert public_url.endswith(f"/public/{ORG_A}/factchecks/{case_id}")
    # history shows who moved the case, from which state to which
    assert "(approved → published)" in html and "a-reviewer" in html

    visitor = env.client()
    public = visitor.get(f"/public/{ORG_A}/factchecks/{case_id}")
    assert public.status_code == 200
    node = jsonld_of(public.text)
    assert node["@type"] == "ClaimReview" and node["url"] == public_url
    assert node["reviewRating"]["alternateName"] == "False" and node["reviewRating"]["ratingValue"] == 1.0
    assert node["claimReviewed"].startswith("5G towers") and node["author"]["name"] == "Desk A <Vietnam>"
    assert node["datePublished"] == date.today().isoformat()
    assert "asked the operator" not in public.text and "shot.png" not in public.text  # internal evidence stays internal
    assert "https://who.example.int/5g" in public.text

    # a visitor appeals; the editor decides after correcting; the outcome and correction are public
    r = visitor.post(f"/public/{ORG_A}/factchecks/{case_id}/appeal", data={"csrf_token": csrf_of(public.text), "reason": "The WHO link is old", "contact": "me@example.org"})
    assert r.status_code == 200 and 'id="thanks"' in r.text
    appeals_page = editor.get("/appeals").text
    assert "The WHO link is old" in appeals_page and "me@example.org" in appeals_page
    appeal_id = env.web.appeals.find(ORG_A)[0].id
    assert editor.post(f"{case_url}/correct", data={"csrf_token": token, "text": "Replaced the WHO link.", "new_rating": "Misleading"}).status_code == 303
    # a change of rating waits for a second editor: the public page still says False
    assert jsonld_of(visitor.get(f"/public/{ORG_A}/factchecks/{case_id}").text)["reviewRating"]["alternateName"] == "False"
    waiting = reviewer.get(case_url).text
    assert 'id="pending-correction"' in waiting and 'id="approve-correction"' in waiting
    assert 'id="approve-correction"' not in editor.get(case_url).text  # not by the one who proposed it
    assert reviewer.post(f"{case_url}/correction/decide", data={"csrf_token": rtoken, "decision": "approve"}).status_code == 303
    assert editor.post(f"/appeals/{appeal_id}/decide", data={"csrf_token": token, "outcome": "corrected", "note": "We replaced the link."}).status_code == 303
    public = visitor.get(f"/public/{ORG_A}/factchecks/{case_id}").text
    assert "Replaced the WHO link." in public and "We replaced the link." in public and "verdict corrected" in public
    assert "me@example.org" not in public and "The WHO link is old" not in public
    node = jsonld_of(public)
    assert node["reviewRating"]["alternateName"] == "Misleading" and node["dateModified"]
    search = visitor.get(f"/public/{ORG_A}", params={"q": "5g towers"}).text
    assert f"/public/{ORG_A}/factchecks/{case_id}" in search
    assert f"/factchecks/{case_id}" not in visitor.get(f"/public/{ORG_A}", params={"q": "bananas"}).text
    assert env.web.audit.verify(ORG_A).ok


def test_user_text_is_escaped_everywhere(env: WebEnv) -> None:
    web = env.web
    from factbridge.models import Post
    from factbridge.pipeline.prepare import prepare_post

    env.services.storage.upsert_posts(ORG_A, [prepare_post(Post(id="xss", text=XSS, platform=XSS, author=XSS))])
    env.services.storage.put_docs(ORG_A, "narratives", [("nx", {"label": XSS, "post_ids": ["xss"]}, 99.0)])
    case = publish_case(env, claim=XSS)
    web.cases.correct(ORG_A, web.accounts.get_user("a-editor"), case.id, XSS)
    appeal = web.appeals.file(ORG_A, case.id, XSS, contact=XSS)
    web.appeals.decide(ORG_A, web.accounts.get_user("a-editor"), appeal.id, "upheld", XSS)
    c = env.login("a-admin")
    pages = [c.get(u).text for u in ("/", "/posts/xss", "/narratives/nx", f"/cases/{case.id}", "/cases", "/appeals", "/audit")]
    visitor = env.client()
    public = visitor.get(f"/public/{ORG_A}/factchecks/{case.id}").text
    pages += [public, visitor.get(f"/public/{ORG_A}", params={"q": XSS}).text]
    for html in pages:
        assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in public
    node = jsonld_of(public)  # the JSON-LD block is not broken by "</script>" in the claim
    assert node["claimReviewed"] == XSS


def test_public_report_enters_the_pipeline_and_is_rate_limited(env: WebEnv) -> None:
    visitor = env.client()
    form = visitor.get(f"/public/{ORG_A}/report")
    token = csrf_of(form.text)
    before = env.services.storage.count_posts(ORG_A)
    r = visitor.post(f"/public/{ORG_A}/report", data={"csrf_token": token, "text": "Les antennes 5G propagent le coronavirus", "url": "https://t.example/p/1", "platform": "Telegram"})
    assert r.status_code == 200 and 'id="thanks"' in r.text
    assert env.services.storage.count_posts(ORG_A) == before + 1
    (post,) = [p for p in env.services.storage.list_posts(ORG_A, limit=500) if p.source == "public-report"]
    assert post.platform == "telegram" and post.urls == ["https://t.example/p/1"] and post.author == "" and post.language == "fr"
    assert env.app.state.processor.wait_idle(60)  # the stages run in the server's background thread, off the request
    assert post.id in env.services.storage.vector_shas(ORG_A, "post", env.services.embedder.id)  # embedded by the stages
    assert env.services.storage.matches_for_post(ORG_A, post.id)  # and matched like any ingested post
    dashboard = env.login("a-analyst").get("/").text
    assert f'href="/posts/{post.id}"' in dashboard[dashboard.index('id="reports"'):]
    assert visitor.post(f"/public/{ORG_A}/report", data={"csrf_token": token, "text": "", "url": ""}).status_code == 422
    for _ in range(4):  # the limit is 5 accepted submissions per client per window
        assert visitor.post(f"/public/{ORG_A}/report", data={"csrf_token": token, "text": "more"}).status_code == 200
    limited = visitor.post(f"/public/{ORG_A}/report", data={"csrf_token": token, "text": "one too many"})
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    assert visitor.get("/public/no-such-org/report").status_code == 404


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_interface_languages(env: WebEnv, lang: str) -> None:
    en, own = catalog("en"), catalog(lang)
    assert set(own) == set(en), f"{lang} catalog keys differ from English"
    for key, text in en.items():
        assert set(re.findall(r"\{(\w+)\}", own[key])) == set(re.findall(r"\{(\w+)\}", text)), f"{lang}:{key} placeholders"
        assert own[key].strip()
    c = env.login("a-editor")
    html = c.get(f"/?lang={lang}").text
    assert f'<html lang="{lang}">' in html and own["dash.queue"] in html
    assert c.get("/cases").text.count(own["nav.cases"]) >= 1  # remembered in a cookie
    public = env.client().get(f"/public/{ORG_A}/report", headers={"Accept-Language": f"{lang},en;q=0.5"}).text
    assert own["public.report"] in public


def test_chart_is_valid_svg_with_escaped_labels() -> None:
    svg = line_chart({"<b>a&b</b>": [(date(2024, 1, 1), 2), (date(2024, 1, 3), 5)], "two": [(date(2024, 1, 2), 1)]}, title="t<>")
    root = ET.fromstring(str(svg))
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 2
    assert "<b>" not in str(svg)
    assert "no data" in str(line_chart({}, title="empty"))


def test_demo_runs_without_serving(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli_app, ["--data-dir", str(tmp_path / "demo"), "--embedder", "hashing", "--embed-cache", "off", "demo", "--no-serve"],
                             env={"FACTBRIDGE_MATCH_FUSION": "rrf"})  # the hashing embedder has no trained re-ranker
    assert result.exit_code == 0, result.output
    match = re.search(r"sign in as editor .* with password (\S+);", " ".join(result.output.split()))
    assert match, result.output
    assert "http://127.0.0.1:8765/" in result.output
    from factbridge.services import Services
    from factbridge.settings import load_settings
    from factbridge.web.app import accounts_for

    with Services(load_settings(env={}, overrides={"data_dir": str(tmp_path / "demo"), "embedder": "hashing", "embed_cache": "off"})) as services:
        accounts = accounts_for(services)
        assert accounts.authenticate("editor", match.group(1)).role == "editor"
        assert accounts.authenticate("reviewer", match.group(1)).role == "editor"
        assert services.storage.count_posts("default") > 0


def test_admin_manages_users_of_its_own_organisation(env: WebEnv) -> None:
    admin = env.login("a-admin")
    page = admin.get("/admin/users")
    assert page.status_code == 200 and "a-viewer" in page.text and "b-editor" not in page.text
    token = csrf_of(page.text)
    r = admin.post("/admin/users", data={"csrf_token": token, "username": "a-new", "role": "analyst", "display_name": "New <b>one</b>"})
    assert r.status_code == 200
    password = re.search(r'id="created">.*?<code>([^<]+)</code>', r.text, re.S).group(1)  # type: ignore[union-attr]
    assert "New &lt;b&gt;one&lt;/b&gt;" in r.text
    assert env.web.accounts.authenticate("a-new", password).role == "analyst"
    assert admin.post("/admin/users/a-new/role", data={"csrf_token": token, "role": "editor"}).status_code == 303
    assert env.web.accounts.get_user("a-new").role == "editor"
    assert admin.post("/admin/users/a-admin/role", data={"csrf_token": token, "role": "viewer"}).status_code == 422
    assert admin.post("/admin/users/b-editor/role", data={"csrf_token": token, "role": "viewer"}).status_code == 404
    assert admin.post("/admin/users/a-new/role", data={"csrf_token": token, "role": "owner"}).status_code == 422
    editor = env.login("a-editor")
    assert editor.get("/admin/users").status_code == 403
    actions = [e["action"] for e in env.web.audit.entries(ORG_A, limit=10) if e["object"]["collection"] == "users"]
    assert actions[:2] == ["user.role", "user.create"]
    assert env.web.audit.entries(ORG_A, limit=1)[0]["action"] == "session.start"  # signing in is on the record too


def test_serve_command_starts_a_real_server(tmp_path: Path) -> None:
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "FACTBRIDGE_EMBEDDER": "hashing", "FACTBRIDGE_EMBED_CACHE": "off"}
    proc = subprocess.Popen([sys.executable, "-m", "factbridge", "--data-dir", str(tmp_path), "serve", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as response:
                    assert response.status == 200 and b"csrf_token" in response.read()
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(f"server did not start: {proc.stdout.read() if proc.poll() is not None else ''}") from None
                time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/public/default/claimreview.json", timeout=2) as response:
            assert json.loads(response.read())["@graph"] == []
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert f"http://127.0.0.1:{port}/" in out


def test_every_interface_text_used_is_translated() -> None:
    """Every t('key') in the templates and pages exists in the catalogs, including the keys built
    from a prefix (roles, states, outcomes, errors, evidence kinds)."""
    from importlib.resources import files

    from factbridge.web.app import STATUS_FOR
    from factbridge.workflow.accounts import PASSWORD_RULES, ROLES
    from factbridge.workflow.appeals import OUTCOMES
    from factbridge.workflow.cases import EVIDENCE_KINDS, STATES

    root = Path(str(files("factbridge.web")))
    text = "".join(p.read_text(encoding="utf-8") for p in [*root.glob("templates/**/*.html"), *root.glob("*.py")])
    used = {k for k in re.findall(r"""\bt\(['"]([a-z_]+\.[a-z_0-9.]+)['"]""", text) if not k.endswith(("_", "."))} | {"login.failed"}
    used |= {f"role.{r}" for r in ROLES} | {f"status.{s}" for s in STATES} | {f"outcome.{o}" for o in OUTCOMES}
    used |= {f"ev.{k}" for k in EVIDENCE_KINDS} | {f"error.{code}" for _, code in STATUS_FOR} | {"error.500"}
    used |= {f"appeal.{s}" for s in ("received", "decided")} | {f"public.thanks_{k}" for k in ("report", "appeal")}
    used |= {f"account.rule_{code}" for code in PASSWORD_RULES}
    assert len(used) > 150
    missing = sorted(k for k in used if k not in catalog("en"))
    assert not missing, missing


def test_charts_switch_to_hours_for_a_story_of_one_day(env: WebEnv) -> None:
    from datetime import datetime, timedelta

    from factbridge.web import pipeline_views as pv

    storage = env.services.storage
    storage.put_docs(ORG_A, "narratives", [("today", {"size": 5, "top_terms": ["flood"], "counts_daily": {"2026-11-12": 5},
                                                      "counts_hourly": {"2026-11-12T08:00:00+00:00": 2, "2026-11-12T11:00:00+00:00": 3}}, 99.0)])
    item = pv.narrative(storage, ORG_A, "today")
    series, step = pv.chart_series(storage, ORG_A, [item])
    assert step == timedelta(hours=1) and series["flood"] == [(datetime(2026, 11, 12, 8), 2), (datetime(2026, 11, 12, 11), 3)]
    svg = ET.fromstring(str(line_chart(series, title="t", step=step)))
    assert len(svg.findall("{http://www.w3.org/2000/svg}circle")) == 2  # 08:00 and 11:00; 09:00 and 10:00 are zero
    html = env.login("a-viewer").get("/narratives/today").text
    assert "2026-11-12 08:00" in html and "2026-11-12 11:00" in html
