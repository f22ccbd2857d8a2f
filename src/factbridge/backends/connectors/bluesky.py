"""Bluesky posts from search or an account's feed (atproto SDK, public AppView XRPC).

Options: `query` (app.bsky.feed.searchPosts, newest first) or `actor` (a
handle or DID: app.bsky.feed.getAuthorFeed); `base_url` (default the public
AppView https://public.api.bsky.app); `limit` per page (≤ 100); `max_pages`.
Reach: likes, reposts (shares), replies and quotes (comments). The author's DID
becomes a pseudonym. The cursor is the newest `indexedAt` read: the next fetch
pages back only until it reaches that time (search asks the server with
`since`), so every run brings just the posts added since.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from factbridge.errors import DependencyMissing, FactBridgeError
from factbridge.models import Engagement, Post, Quarantined

PUBLIC_APPVIEW = "https://public.api.bsky.app"


class BlueskyConnector:
    name = "bluesky"

    def __init__(self, query: str = "", actor: str = "", base_url: str = PUBLIC_APPVIEW, limit: int = 50, max_pages: int = 10,
                 language: str = "", pseudonymize: Callable[[str, str], str] | None = None) -> None:
        if bool(query) == bool(actor):
            raise ValueError("give one of query or actor")
        if not 1 <= limit <= 100:
            raise ValueError("limit must be 1..100")
        self.query, self.actor, self.base_url, self.limit, self.max_pages, self.language = query, actor, base_url, limit, max_pages, language
        self.pseudonymize = pseudonymize or (lambda p, v: f"{p}:{v}")

    def fetch(self, cursor: str | None = None) -> tuple[list[Post | Quarantined], str | None]:
        try:
            from atproto import Client
            from atproto.exceptions import AtProtocolError
        except ImportError as exc:  # pragma: no cover
            raise DependencyMissing("atproto", "sources") from exc
        client = Client(base_url=self.base_url)
        views: list[Any] = []
        page: str | None = None
        try:
            for _ in range(self.max_pages):
                if self.query:
                    params: dict[str, Any] = {"q": self.query, "limit": self.limit, "sort": "latest", "cursor": page}
                    if cursor:
                        params["since"] = cursor
                    if self.language:
                        params["lang"] = self.language
                    response = client.app.bsky.feed.search_posts(params={k: v for k, v in params.items() if v is not None})
                    batch = list(response.posts)
                else:
                    response = client.app.bsky.feed.get_author_feed(params={k: v for k, v in {"actor": self.actor, "limit": self.limit, "cursor": page}.items() if v is not None})
                    batch = [item.post for item in response.feed]
                fresh = [v for v in batch if not cursor or (v.indexed_at or "") > cursor]
                views.extend(fresh)
                page = response.cursor
                if not page or len(fresh) < len(batch) or not batch:
                    break
        except AtProtocolError as exc:
            raise FactBridgeError(f"Bluesky {self.base_url}: {exc}") from exc
        items: list[Post | Quarantined] = []
        newest = cursor
        seen: set[str] = set()
        for view in views:
            if view.uri in seen:
                continue
            seen.add(view.uri)
            stamp = view.indexed_at or ""
            if newest is None or stamp > newest:
                newest = stamp
            items.append(self._post(view))
        return items, newest

    def _post(self, view: Any) -> Post | Quarantined:
        record = view.record
        text = getattr(record, "text", "") or ""
        if not text.strip():
            return Quarantined(source=self.base_url, field="record.text", reason=f"post {view.uri} has no text")
        urls: list[str] = []
        for facet in getattr(record, "facets", None) or []:
            for feature in facet.features:
                if getattr(feature, "uri", None):
                    urls.append(feature.uri)
        embed = getattr(record, "embed", None)
        external = getattr(embed, "external", None)
        if external is not None and getattr(external, "uri", None):
            urls.append(external.uri)
        langs = getattr(record, "langs", None) or []
        raw: dict[str, Any] = {"uri": view.uri, "cid": view.cid}
        reply = getattr(record, "reply", None)
        if reply is not None:
            raw["reply_to"] = reply.parent.uri
        return Post(
            id=f"bluesky:{view.uri}", platform="bluesky", author=self.pseudonymize("bluesky", view.author.did),
            created_at=getattr(record, "created_at", None) or view.indexed_at, text=text, urls=list(dict.fromkeys(urls)),
            language=langs[0].split("-")[0].lower() if langs else None, source=self.base_url,
            engagement=Engagement(likes=view.like_count or 0, shares=view.repost_count or 0, comments=(view.reply_count or 0) + (view.quote_count or 0)),
            raw=raw,
        )
