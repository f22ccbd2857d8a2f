"""Link resolution runs only in the link-risk stage (off the request path: the stages are
queued), with one total time budget per batch: forty slow short links cannot hold a batch for
forty timeouts."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from factbridge.linkrisk import stage as stage_module
from factbridge.linkrisk import urls as urls_module
from factbridge.linkrisk.resolve import ResolutionBudget, Resolver
from factbridge.linkrisk.scoring import LinkRiskScorer
from factbridge.models import Post
from factbridge.services import Services
from factbridge.testing.loopback import serving


class Slow(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence the default stderr log
        pass

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        time.sleep(1.0)  # longer than the per-hop timeout below
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD


@pytest.fixture(scope="module")
def slow_server() -> Iterator[str]:
    with serving(Slow) as url:
        yield url


def test_budget_bounds_the_time_spent_on_a_batch(slow_server: str) -> None:
    budget = ResolutionBudget(Resolver(timeout=0.3, deadline=5.0, allow_loopback=True), seconds=0.8)
    started = time.monotonic()
    results = [budget.resolve(f"{slow_server}/s{i}") for i in range(10)]
    elapsed = time.monotonic() - started
    assert elapsed < 0.8 + 0.3 + 0.5, elapsed  # the budget plus at most one hop's timeout
    assert budget.followed >= 1 and budget.not_followed >= 5
    assert all("budget" in (r.error or "") for r in results[budget.followed:])


def test_stage_follows_links_within_the_batch_budget(slow_server: str, hashing_services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urls_module, "SHORTENERS", urls_module.SHORTENERS | {"127.0.0.1"})
    scorer = LinkRiskScorer(resolver=Resolver(timeout=0.3, deadline=5.0, allow_loopback=True))

    def scorer_for(services: Any, org: str, resolve: bool | None = None) -> LinkRiskScorer:
        return scorer

    monkeypatch.setattr(stage_module, "scorer_for", scorer_for)
    hashing_services.settings = dataclasses.replace(hashing_services.settings, linkrisk_resolve=True, linkrisk_resolve_budget_s=0.8)
    posts = [Post(id=f"r{i}", text=f"look {slow_server}/p{i}", platform="report") for i in range(40)]
    started = time.monotonic()
    summary = stage_module.linkrisk_stage(hashing_services, "o", posts)
    assert time.monotonic() - started < 3.0
    assert summary["posts"] == 40 and summary["links_followed"] + summary["links_not_followed"] == 40
    assert summary["links_not_followed"] >= 30
    assert scorer.resolver is not None and isinstance(scorer.resolver, Resolver)  # the shared scorer is left as it was
    doc = hashing_services.storage.get_docs("o", "linkrisk", ["r39"])["r39"]
    assert "budget" in doc["urls"][0]["resolution"]["error"]
