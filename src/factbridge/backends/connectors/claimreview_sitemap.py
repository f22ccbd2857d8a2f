"""Fact-check sites' ClaimReview pages, found through their sitemap and crawled politely.

Options: `sitemap_url`; `max_pages` per run (default 50); `delay_s` between
requests (default 1.0; a larger robots.txt Crawl-delay wins); `user_agent`;
`timeout`; `url_contains` to keep only article URLs. robots.txt is read first
and honoured for every URL (sitemaps included); a site without robots.txt is
crawled. Each page's ld+json ClaimReview blocks are read with the library's
parser (`pipeline.library`); pages without one are skipped, broken JSON-LD is
quarantined with the page URL. The cursor remembers each crawled page's
lastmod: a later run fetches only new or changed pages, and continues where
`max_pages` stopped the previous one.
"""

from __future__ import annotations

import time
import urllib.error
import xml.etree.ElementTree as ET
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

from factbridge.backends.connectors.web import USER_AGENT, Fetched, dump_cursor, fetch, load_cursor
from factbridge.errors import InputError
from factbridge.models import FactCheck, Post, Quarantined

MAX_REMEMBERED = 50_000
MAX_SITEMAPS = 50


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


class ClaimReviewSitemapConnector:
    name = "claimreview-sitemap"
    pages_per_run = 1  # max_pages is the whole budget of one run

    def __init__(self, sitemap_url: str, max_pages: int = 50, delay_s: float = 1.0, user_agent: str = USER_AGENT,
                 timeout: float = 15.0, url_contains: str = "", sleep: Callable[[float], None] = time.sleep) -> None:
        if not sitemap_url.startswith(("http://", "https://")):
            raise ValueError(f"sitemap_url must be http(s): {sitemap_url!r}")
        if max_pages < 1 or delay_s < 0:
            raise ValueError("max_pages must be at least 1 and delay_s not negative")
        self.sitemap_url, self.max_pages, self.delay_s = sitemap_url, max_pages, delay_s
        self.user_agent, self.timeout, self.url_contains, self.sleep = user_agent, timeout, url_contains, sleep
        self._robots: dict[str, RobotFileParser | None] = {}
        self._last_request = 0.0
        self.requests: list[str] = []  # what this connector fetched (for the run summary and tests)

    # -- politeness ------------------------------------------------------------------
    def _robots_for(self, url: str) -> RobotFileParser | None:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._robots:
            parser: RobotFileParser | None = RobotFileParser(origin + "/robots.txt")
            try:
                got = self._get(origin + "/robots.txt", check_robots=False)
                assert parser is not None
                parser.parse(got.body.decode("utf-8", "replace").splitlines())
            except urllib.error.HTTPError as exc:
                if exc.code in (401, 403):
                    assert parser is not None
                    parser.disallow_all = True  # type: ignore[attr-defined]  # as the robots.txt convention says
                else:
                    parser = None  # no robots.txt: everything allowed
            self._robots[origin] = parser
        return self._robots[origin]

    def allowed(self, url: str) -> bool:
        robots = self._robots_for(url)
        return robots is None or robots.can_fetch(self.user_agent, url)

    def _delay(self, url: str) -> float:
        robots = self._robots.get(f"{urlsplit(url).scheme}://{urlsplit(url).netloc}")
        crawl_delay = robots.crawl_delay(self.user_agent) if robots else None
        return max(self.delay_s, float(crawl_delay or 0))

    def _get(self, url: str, check_robots: bool = True) -> Fetched:
        if check_robots and not self.allowed(url):
            raise PermissionError(f"robots.txt disallows {url}")
        wait = self._last_request + self._delay(url) - time.monotonic() if self._last_request else 0
        if wait > 0:
            self.sleep(wait)
        self._last_request = time.monotonic()
        self.requests.append(url)
        return fetch(url, user_agent=self.user_agent, timeout=self.timeout)

    # -- sitemap -------------------------------------------------------------------
    def _pages(self) -> list[tuple[str, str]]:
        """(url, lastmod) of every page in the sitemap (and the sitemaps it indexes)."""
        pages: list[tuple[str, str]] = []
        todo, seen = [self.sitemap_url], set[str]()
        while todo and len(seen) < MAX_SITEMAPS:
            sitemap = todo.pop(0)
            if sitemap in seen or not self.allowed(sitemap):
                continue
            seen.add(sitemap)
            try:
                root = ET.fromstring(self._get(sitemap).body)
            except ET.ParseError as exc:
                raise InputError(f"not a sitemap (XML): {exc}", source=sitemap) from exc
            for node in root:
                loc = next((c.text or "" for c in node if _local(c.tag) == "loc"), "").strip()
                lastmod = next((c.text or "" for c in node if _local(c.tag) == "lastmod"), "").strip()
                if not loc:
                    continue
                loc = urljoin(sitemap, loc)
                if _local(node.tag) == "sitemap":
                    todo.append(loc)
                elif _local(node.tag) == "url" and (not self.url_contains or self.url_contains in loc):
                    pages.append((loc, lastmod))
        return pages

    def fetch(self, cursor: str | None = None) -> tuple[list[Post | FactCheck | Quarantined], str | None]:
        from factbridge.pipeline.library import read_factcheck_text

        done: dict[str, str] = dict(load_cursor(cursor).get("done") or {})
        todo = sorted(((u, m) for u, m in self._pages() if u not in done or (m and done[u] != m)), key=lambda um: (um[1], um[0]))
        items: list[Post | FactCheck | Quarantined] = []
        for url, lastmod in todo[: self.max_pages]:
            if not self.allowed(url):
                done[url] = lastmod  # never asked again until it changes
                continue
            try:
                page = self._get(url)
            except urllib.error.HTTPError as exc:
                items.append(Quarantined(kind="factcheck", source=url, reason=f"HTTP {exc.code}"))
                done[url] = lastmod
                continue
            text = page.body.decode("utf-8", "replace")
            for item in read_factcheck_text(text, url, "claimreview"):
                if isinstance(item, Quarantined) and item.reason in {"no ld+json block in HTML page", "no ClaimReview found"}:
                    continue  # an ordinary page of the site
                if isinstance(item, FactCheck) and not item.url:
                    item = item.model_copy(update={"url": url})
                items.append(item)
            done[url] = lastmod
        if len(done) > MAX_REMEMBERED:
            done = dict(sorted(done.items(), key=lambda kv: kv[1])[-MAX_REMEMBERED:])
        return items, dump_cursor({"done": done, "remaining": max(0, len(todo) - self.max_pages)})
