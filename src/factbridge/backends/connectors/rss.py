"""RSS and Atom feeds (feedparser) of news sites and fact-check sites.

Options: `url`; `factchecks=true` makes a fact-check site's items fact-checks
(headline as the claim, the item's link as URL and id) instead of posts;
`language` when the feed does not say; `user_agent`, `timeout`.
The cursor keeps the feed's ETag / Last-Modified (a 304 costs nothing) and the
newest item date seen: older items are not sent again.
"""

from __future__ import annotations

import calendar
import hashlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from factbridge.backends.connectors.web import (
    USER_AGENT,
    dump_cursor,
    fetch,
    html_to_text,
    load_cursor,
)
from factbridge.errors import DependencyMissing
from factbridge.models import FactCheck, Post, Quarantined

RATING_TAGS = ("false", "faux", "sai", "fake", "misleading", "trompeur", "true", "vrai", "đúng", "mixture", "satire", "unproven")


def _when(entry: Any) -> datetime | None:
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    return datetime.fromtimestamp(calendar.timegm(parsed), UTC) if parsed else None


class RSSConnector:
    name = "rss"

    def __init__(self, url: str, factchecks: bool = False, language: str = "", platform: str = "web",
                 user_agent: str = USER_AGENT, timeout: float = 15.0) -> None:
        if not url.startswith(("http://", "https://", "file://")):
            raise ValueError(f"feed url must be http(s): {url!r}")
        self.url, self.factchecks, self.language, self.platform = url, factchecks, language, platform
        self.user_agent, self.timeout = user_agent, timeout

    def fetch(self, cursor: str | None = None) -> tuple[list[Post | FactCheck | Quarantined], str | None]:
        try:
            import feedparser
        except ImportError as exc:  # pragma: no cover
            raise DependencyMissing("feedparser", "sources") from exc
        state = load_cursor(cursor)
        headers = {}
        if state.get("etag"):
            headers["If-None-Match"] = state["etag"]
        if state.get("modified"):
            headers["If-Modified-Since"] = state["modified"]
        got = fetch(self.url, user_agent=self.user_agent, timeout=self.timeout, headers=headers)
        if got.status == 304:
            return [], cursor
        feed = feedparser.parse(got.body)
        if feed.bozo and not feed.entries:
            return [Quarantined(kind="post", source=self.url, reason=f"not a readable feed: {feed.get('bozo_exception')}", raw=got.body[:500].decode("utf-8", "replace"))], cursor
        latest = state.get("latest")
        language = (feed.feed.get("language") or self.language or "").split("-")[0].lower() or None
        publisher = feed.feed.get("title") or urlsplit(self.url).hostname or ""
        items: list[Post | FactCheck | Quarantined] = []
        newest = latest
        for n, entry in enumerate(feed.entries, start=1):
            when = _when(entry)
            stamp = when.isoformat() if when else None
            if latest and stamp and stamp <= latest:
                continue  # sent by an earlier run
            if stamp and (newest is None or stamp > newest):
                newest = stamp
            link = entry.get("link") or ""
            key = entry.get("id") or link
            title = html_to_text(entry.get("title") or "")
            summary = html_to_text(entry.get("summary") or "")
            if not key or not (title or summary):
                items.append(Quarantined(kind="factcheck" if self.factchecks else "post", source=self.url, line=n, field="id" if not key else "title",
                                         reason="feed item without id/link" if not key else "feed item without title or summary", raw=str(dict(entry))[:1000]))
                continue
            if self.factchecks:
                tags = [str(t.get("term", "")) for t in entry.get("tags", [])]
                rating = next((t for t in tags if t.strip().lower() in RATING_TAGS), "")
                items.append(FactCheck(id=link or key, claim=title or summary, title=title, rating=rating, publisher=publisher, url=link,
                                       language=language, published_at=when, source_format="rss", raw={"summary": summary[:2000], "tags": tags}))
            else:
                pid = "rss:" + hashlib.sha256(f"{self.url}\x00{key}".encode()).hexdigest()[:24]
                host = urlsplit(link or self.url).hostname or ""
                items.append(Post(id=pid, platform=self.platform, author=host, created_at=when, text=f"{title}\n{summary}".strip(),
                                  urls=[link] if link else [], language=language, source=self.url, raw={"feed": self.url, "entry_id": key}))
        next_state = {"etag": got.headers.get("etag"), "modified": got.headers.get("last-modified"), "latest": newest}
        return items, dump_cursor(next_state)
