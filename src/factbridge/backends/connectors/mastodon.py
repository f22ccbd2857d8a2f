"""Mastodon public timelines and search (Mastodon.py).

Options: `api_base_url` (the instance); one of `hashtag`, `query` (statuses
search; most instances need `access_token` for it) or `timeline` (public or
local); `access_token` when the instance needs one; `limit` per page (40).
Reach: favourites (likes), reblogs (shares), replies (comments), the author's
followers. A boost is stored as a share of the boosted status (raw
`reblog_of`), which coordination reads. The account becomes a pseudonym.
The cursor is the newest status id read; the next fetch asks for what came
after it (min_id), page after page.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

from factbridge.backends.connectors.web import USER_AGENT, html_to_text
from factbridge.errors import DependencyMissing, FactBridgeError
from factbridge.models import Engagement, Post, Quarantined

_HREF = re.compile(r'href="([^"]+)"')


class MastodonConnector:
    name = "mastodon"

    def __init__(self, api_base_url: str, hashtag: str = "", query: str = "", timeline: str = "", access_token: str = "",
                 limit: int = 40, timeout: float = 15.0, mastodon_version: str = "",
                 pseudonymize: Callable[[str, str], str] | None = None) -> None:
        if sum(bool(x) for x in (hashtag, query, timeline)) != 1:
            raise ValueError("give exactly one of hashtag, query or timeline (public, local)")
        if timeline and timeline not in {"public", "local"}:
            raise ValueError("timeline must be public or local")
        self.api_base_url, self.hashtag, self.query, self.timeline = api_base_url.rstrip("/"), hashtag.lstrip("#"), query, timeline
        self.access_token, self.limit, self.timeout, self.mastodon_version = access_token or None, limit, timeout, mastodon_version
        self.pseudonymize = pseudonymize or (lambda p, v: f"{p}:{v}")

    def _client(self) -> Any:
        try:
            from mastodon import Mastodon
        except ImportError as exc:  # pragma: no cover
            raise DependencyMissing("Mastodon.py", "sources") from exc
        # timelines need no server version; a search asks the instance for it (/api/v2/instance)
        return Mastodon(api_base_url=self.api_base_url, access_token=self.access_token, request_timeout=self.timeout,
                        version_check_mode="none", mastodon_version=self.mastodon_version or None, ratelimit_method="throw", user_agent=USER_AGENT)

    def fetch(self, cursor: str | None = None) -> tuple[list[Post | Quarantined], str | None]:
        from mastodon import MastodonError

        client = self._client()
        try:
            if self.hashtag:
                statuses = client.timeline_hashtag(self.hashtag, min_id=cursor, limit=self.limit)
            elif self.timeline:
                statuses = client.timeline_public(min_id=cursor, limit=self.limit, local=self.timeline == "local")
            else:
                statuses = client.search_v2(self.query, result_type="statuses", min_id=cursor, limit=self.limit, resolve=False)["statuses"]
        except MastodonError as exc:
            raise FactBridgeError(f"Mastodon {self.api_base_url}: {exc}") from exc
        except RecursionError as exc:  # Mastodon.py 2.x loops when the instance hides its version
            raise FactBridgeError(f"Mastodon {self.api_base_url}: the instance does not tell its version (/api/v1/instance)") from exc
        items: list[Post | Quarantined] = []
        newest = cursor
        for status in statuses:
            sid = str(status["id"])
            if newest is None or int(sid) > int(newest):
                newest = sid
            items.append(self._post(status))
        return items, newest

    def _post(self, status: Any) -> Post | Quarantined:
        shown = status.get("reblog") or status
        text = html_to_text(shown.get("content") or "") or (shown.get("spoiler_text") or "")
        if not text.strip():
            return Quarantined(source=self.api_base_url, field="content", reason=f"status {status.get('uri')} has no text (media only)")
        account = status.get("account") or {}
        urls = [html.unescape(u) for u in _HREF.findall(shown.get("content") or "") if "/tags/" not in u and "/@" not in u]
        card = shown.get("card") or {}
        if card.get("url"):
            urls.append(card["url"])
        raw: dict[str, Any] = {"uri": status.get("uri"), "url": status.get("url"),
                               "hashtags": [t.get("name") for t in shown.get("tags") or []]}
        if status.get("reblog"):
            raw["reblog_of"] = shown.get("uri")
            # the boosted status is the shared object: coordination compares posts' links
            if shown.get("url"):
                urls.append(shown["url"])
        return Post(
            id=f"mastodon:{status.get('uri') or status['id']}", platform="mastodon",
            author=self.pseudonymize("mastodon", str(account.get("acct") or account.get("id") or "")) if account else "",
            created_at=status.get("created_at"), text=text, urls=urls, language=shown.get("language"), source=self.api_base_url,
            engagement=Engagement(likes=int(shown.get("favourites_count") or 0), shares=int(shown.get("reblogs_count") or 0),
                                  comments=int(shown.get("replies_count") or 0), followers=int(account.get("followers_count") or 0)),
            raw=raw,
        )
