"""Helpers of the workspace tests: two organisations on in-memory SQLite with
the hashing embedder, their users, the bundled sample ingested into desk-a
through the normal ingest path, and the documents the later pipeline stages
store (queue, alerts, narratives, check-worthiness, link risk)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from factbridge.demo import sample_dir
from factbridge.models import FactCheck, Post
from factbridge.pipeline.ingest import embed_posts, import_factcheck_files, ingest_file
from factbridge.pipeline.matching import index_factchecks
from factbridge.pipeline.prepare import prepare_factcheck, prepare_post
from factbridge.pipeline.stages import run_stages
from factbridge.services import Services
from factbridge.settings import load_settings
from factbridge.web.app import WebState, create_app
from factbridge.workflow.records import Case

ORG_A, ORG_B = "desk-a", "desk-b"
USERS = {
    "a-editor": (ORG_A, "editor"),
    "a-reviewer": (ORG_A, "editor"),
    "a-analyst": (ORG_A, "analyst"),
    "a-viewer": (ORG_A, "viewer"),
    "a-admin": (ORG_A, "admin"),
    "b-editor": (ORG_B, "editor"),
    "b-admin": (ORG_B, "admin"),
}
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def password_of(username: str) -> str:
    return f"pw-{username}-0123456789"


def csrf_of(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF field"
    return match.group(1)


def web_settings(tmp_path: Path, **extra: Any) -> Any:
    overrides = {
        "data_dir": str(tmp_path),
        "storage_url": "sqlite:///:memory:",
        "embedder": "hashing",
        "embed_cache": "off",
        "match_fusion": "rrf",
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 1024,
        **extra,
    }
    return load_settings(env={}, overrides=overrides)


def seed_pipeline(services: Services, org: str) -> dict[str, str]:
    """Ingest the sample and a few extra posts as `factbridge ingest` does, then store
    the documents later stages write, in the shapes their modules document."""
    storage = services.storage
    sample = sample_dir()
    import_factcheck_files(storage, org, sorted(sample.glob("factchecks*")), services.languages)
    storage.upsert_factchecks(org, [prepare_factcheck(FactCheck(
        id="https://factcheck.example.org/5g-virus", claim="5G mobile networks spread the coronavirus", title="No, 5G does not spread COVID-19",
        rating="False", publisher="Example Check", url="https://factcheck.example.org/5g-virus", language="en"), services.languages)])
    index_factchecks(storage, services.embedder, org)
    posts = []
    if org == ORG_A:  # the bundled sample once; desk-b gets only the posts below (setup time)
        for path in sorted(sample.glob("posts*")):
            posts.extend(ingest_file(storage, org, path, services.languages).posts)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    extra = [
        prepare_post(Post(id=f"{org}-n{i}", platform="facebook", author=f"acct-{i % 3}", created_at=start + timedelta(days=i // 2),
                          text=f"5G towers spread the virus, share before they delete it #{i}", urls=["https://bad.example.net/5g"]),
                     services.languages)
        for i in range(8)
    ]
    extra.append(prepare_post(Post(id="en-5g", platform="x", text="5G mobile networks spread the coronavirus, share now", created_at=start),
                              services.languages))
    storage.upsert_posts(org, extra)
    posts.extend(extra)
    embed_posts(storage, services.embedder, org, posts)
    run_stages(services, org, posts)
    narrative_id = f"nar-{org}-5g"
    top = extra[0].id
    def components(cw: float, reach: float) -> dict[str, Any]:
        return {name: {"value": v, "weight": 0.25, "contribution": round(v / 4, 4), "evidence": {}}
                for name, v in (("checkworthiness", cw), ("reach", reach), ("velocity", 0.7), ("debunked", 0.0))}

    # the documented shapes of factbridge.pipeline.triage, .narratives and .bursts
    storage.put_docs(org, "queue", [
        (top, {"kind": "post", "post_id": top, "priority": 0.93, "components": components(0.9, 0.8), "gated": False,
               "decided_by": {"triage": "triage-test-1", "checkworthiness": "cw-test-1"}}, 0.93),
        (f"narrative:{narrative_id}", {"kind": "narrative", "narrative_id": narrative_id, "title": "5G spreads the virus", "priority": 0.6,
                                       "components": components(0.8, 0.5), "decided_by": {"triage": "triage-test-1"}}, 0.6),
        ("en-5g", {"kind": "post", "post_id": "en-5g", "priority": 0.41, "components": components(0.5, 0.1), "decided_by": {"triage": "triage-test-1"}}, 0.41),
    ])
    storage.put_docs(org, "narratives", [
        (narrative_id, {"id": narrative_id, "size": 8, "top_terms": ["5G", "spreads", "virus"],
                        "representative": {"post_id": extra[0].id, "text": extra[0].text, "language": "en"},
                        "languages": {"en": 8}, "first_seen": "2024-05-01T00:00:00+00:00", "last_seen": "2024-05-04T00:00:00+00:00",
                        "counts_daily": {"2024-05-01": 2, "2024-05-02": 2, "2024-05-03": 2, "2024-05-04": 2},
                        "recent_posts": [[p.id, p.created_at.isoformat() if p.created_at else "", "near_duplicate", 0.9] for p in extra[:8]],
                        "factchecks": [{"factcheck_id": "https://factcheck.example.org/5g-virus", "posts": 3, "fused_score": 0.7}],
                        "heat_log2": 2.5, "decided_by": "narratives-test-1"}, 2.5),
    ])
    storage.put_docs(org, "narrative_members", [
        (p.id, {"post_id": p.id, "narrative_id": narrative_id, "method": "near_duplicate", "similarity": 0.9, "neighbour": extra[0].id,
                "decided_by": "narratives-test-1"}, None) for p in extra[:8]
    ])
    storage.put_docs(org, "alerts", [
        (f"alert-{org}", {"id": f"alert-{org}", "kind": "burst", "narrative_id": narrative_id, "status": "new", "summary": "Burst: 5G spreads the virus",
                          "top_terms": ["5G"], "raised_at": "2024-05-04T10:00:00+00:00", "updated_at": "2024-05-04T10:00:00+00:00",
                          "evidence": {"posts_in_burst": 3}, "decided_by": "bursts-test-1"}, None),
    ])
    storage.put_docs(org, "checkworthiness", [(top, {"score": 0.9, "label": "claim", "threshold": 0.5,
                                                     "contributions": {"health claim": 0.4, "call to share": 0.2}, "decided_by": "cw-test-1"}, 0.9)])
    # the documented shape of factbridge.linkrisk (written over what the real stage stored)
    storage.put_docs(org, "linkrisk", [(top, {
        "post_id": top, "max_score": 0.8, "level": "high", "flagged": True, "flagged_urls": 1, "decided_by": "linkrisk-test-1",
        "urls": [{"url": "https://bad.example.net/5g", "normalized": "https://bad.example.net/5g", "score": 0.8, "level": "high", "flagged": True,
                  "reasons": [{"code": "young_domain", "category": "registration", "weight": 0.6, "detail": "domain registered 3 days ago"}],
                  "feed_hits": [], "official": None, "decided_by": "linkrisk-test-1"}]}, 0.8)])
    return {"post": top, "narrative": narrative_id, "alert": f"alert-{org}"}


@dataclass
class WebEnv:
    services: Services
    app: FastAPI
    ids: dict[str, dict[str, str]] = field(default_factory=dict)
    _clients: list[TestClient] = field(default_factory=list)

    @property
    def web(self) -> WebState:
        return self.app.state.web  # type: ignore[no-any-return]

    def client(self, address: str = "testclient") -> TestClient:
        c = TestClient(self.app, base_url="http://testserver", follow_redirects=False, client=(address, 50000))
        self._clients.append(c)
        return c

    def login(self, username: str, client: TestClient | None = None) -> TestClient:
        c = client or self.client()
        page = c.get("/login")
        r = c.post("/login", data={"username": username, "password": password_of(username), "csrf_token": csrf_of(page.text), "next": "/"})
        assert r.status_code == 303, r.text
        return c

    def api(self, username: str) -> TestClient:
        token = self.web.accounts.create_token(username, "test")
        c = self.client()
        c.headers["Authorization"] = f"Bearer {token}"
        return c

    def close(self) -> None:
        for c in self._clients:
            c.close()


def make_env(tmp_path: Path, **settings: Any) -> WebEnv:
    services = Services(web_settings(tmp_path, **settings))
    app = create_app(services)
    env = WebEnv(services, app)
    accounts = env.web.accounts
    accounts.add_org(ORG_A, "Desk A <Vietnam>")
    accounts.add_org(ORG_B, "Desk B")
    for username, (org, role) in USERS.items():
        accounts.add_user(username, password_of(username), org, role)
    env.ids[ORG_A] = seed_pipeline(services, ORG_A)
    env.ids[ORG_B] = seed_pipeline(services, ORG_B)
    return env



def publish_case(env: WebEnv, org_user: str = "a-editor", reviewer: str = "a-reviewer", claim: str = "5G towers spread the virus") -> Case:
    """Drive one case to publication through the workflow objects."""
    web = env.web
    drafter = web.accounts.get_user(org_user)
    approver = web.accounts.get_user(reviewer)
    case = web.cases.open(drafter.org, drafter, claim, source_kind="manual")
    case = web.cases.add_evidence(drafter.org, drafter, case.id, "link", url="https://who.example.int/5g", text="WHO explainer")
    case = web.cases.draft_verdict(drafter.org, drafter, case.id, "False", "Radio waves do not carry viruses.", headline="No, 5G does not spread viruses", language="en")
    case = web.cases.approve(drafter.org, approver, case.id)
    org_name = web.accounts.org(drafter.org).name
    return web.cases.publish(drafter.org, approver, case.id, "http://testserver", org_name)
