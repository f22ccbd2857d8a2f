"""Connectors with cursors, offline: generated fixtures and a loopback HTTP server (never the internet)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from factbridge.backends.connectors.bluesky import BlueskyConnector
from factbridge.backends.connectors.claimreview_sitemap import ClaimReviewSitemapConnector
from factbridge.backends.connectors.mastodon import MastodonConnector
from factbridge.backends.connectors.meta_csv import MetaContentLibraryConnector
from factbridge.backends.connectors.rss import RSSConnector
from factbridge.backends.connectors.telegram_export import TelegramExportConnector
from factbridge.backends.connectors.youtube import YouTubeCommentsConnector
from factbridge.errors import InputError
from factbridge.models import FactCheck, Post, Quarantined
from factbridge.pseudonyms import Pseudonymizer
from factbridge.testing.loopback import LoopbackSite

PSEUDO = Pseudonymizer(b"k" * 32)


@pytest.fixture
def site() -> Iterator[LoopbackSite]:
    s = LoopbackSite()
    yield s
    s.close()


# -- RSS / Atom ----------------------------------------------------------------------

def _rss(items: list[tuple[str, str, str]]) -> str:
    entries = "".join(
        f"<item><title>{title}</title><link>https://news.example.vn/{slug}</link><guid>https://news.example.vn/{slug}</guid>"
        f"<pubDate>{date}</pubDate><description>&lt;p&gt;Chi tiết {slug}&lt;/p&gt;</description><category>False</category></item>"
        for slug, title, date in items)
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Tin Nhanh</title><language>vi</language>{entries}</channel></rss>'


def test_rss_posts_etag_and_cursor(site: LoopbackSite) -> None:
    items = [("a", "Giá xăng tăng mạnh từ ngày mai", "Mon, 02 Nov 2026 08:00:00 GMT"), ("b", "Bão số 9 đổ bộ miền Trung", "Tue, 03 Nov 2026 09:00:00 GMT")]

    def feed(query: dict[str, Any], headers: dict[str, str]) -> tuple[Any, ...]:
        if headers.get("If-None-Match") == f'"v{len(items)}"':
            return (304, "application/rss+xml", "")
        return (200, "application/rss+xml", _rss(items), {"ETag": f'"v{len(items)}"'})

    site.routes["/feed.xml"] = feed
    connector = RSSConnector(f"{site.url}/feed.xml")
    first, cursor = connector.fetch(None)
    assert [p.text.split("\n")[0] for p in first if isinstance(p, Post)] == ["Giá xăng tăng mạnh từ ngày mai", "Bão số 9 đổ bộ miền Trung"]
    post = first[0]
    assert isinstance(post, Post) and post.language == "vi" and post.urls == ["https://news.example.vn/a"] and post.author == "news.example.vn"
    assert post.text.endswith("Chi tiết a") and post.created_at is not None
    assert "FactBridge/" in site.requests[-1][1]["User-Agent"]
    again, same = connector.fetch(cursor)  # 304 Not Modified
    assert again == [] and same == cursor
    items.append(("c", "Tin giả về vắc-xin lan truyền", "Wed, 04 Nov 2026 10:00:00 GMT"))
    new, cursor2 = connector.fetch(cursor)
    assert [p.text.split("\n")[0] for p in new if isinstance(p, Post)] == ["Tin giả về vắc-xin lan truyền"]  # older items not sent again
    assert cursor2 != cursor


def test_rss_of_a_factcheck_site_gives_factchecks(site: LoopbackSite) -> None:
    site.routes["/fc.xml"] = (200, "application/rss+xml", _rss([("fc1", "Không có chuyện phát 2 triệu đồng qua tin nhắn", "Mon, 02 Nov 2026 08:00:00 GMT")]))
    items, _ = RSSConnector(f"{site.url}/fc.xml", factchecks=True).fetch(None)
    (fc,) = items
    assert isinstance(fc, FactCheck) and fc.url == "https://news.example.vn/fc1" and fc.rating == "False" and fc.publisher == "Tin Nhanh" and fc.language == "vi"


def test_rss_garbage_is_quarantined(site: LoopbackSite) -> None:
    site.routes["/bad.xml"] = (200, "application/rss+xml", "this is <not a feed")
    items, cursor = RSSConnector(f"{site.url}/bad.xml").fetch(None)
    assert len(items) == 1 and isinstance(items[0], Quarantined) and items[0].source.endswith("/bad.xml") and cursor is None


# -- ClaimReview sitemap crawl ---------------------------------------------------------

def _claimreview_page(n: int, claim: str, rating: str = "False") -> str:
    node = {"@context": "https://schema.org", "@type": "ClaimReview", "url": f"https://fc.example.org/check/{n}",
            "claimReviewed": claim, "author": {"@type": "Organization", "name": "FC Example"},
            "reviewRating": {"@type": "Rating", "alternateName": rating}, "datePublished": "2026-11-0{n}", "inLanguage": "en"}
    return f'<html><head><script type="application/ld+json">{json.dumps(node)}</script></head><body>check {n}</body></html>'


def test_claimreview_sitemap_crawl_is_polite_and_resumes(site: LoopbackSite) -> None:
    site.routes["/robots.txt"] = (200, "text/plain", "User-agent: *\nDisallow: /private/\nCrawl-delay: 1\n")
    site.routes["/sitemap.xml"] = (200, "application/xml", f"""<?xml version="1.0"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><sitemap><loc>{site.url}/sitemap-checks.xml</loc></sitemap></sitemapindex>""")
    site.routes["/sitemap-checks.xml"] = (200, "application/xml", f"""<?xml version="1.0"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<url><loc>{site.url}/check/1</loc><lastmod>2026-11-01</lastmod></url>
<url><loc>{site.url}/about</loc><lastmod>2026-11-02</lastmod></url>
<url><loc>{site.url}/private/draft</loc><lastmod>2026-11-03</lastmod></url>
<url><loc>{site.url}/check/2</loc><lastmod>2026-11-04</lastmod></url>
<url><loc>{site.url}/check/3</loc><lastmod>2026-11-05</lastmod></url>
</urlset>""")
    site.routes["/check/1"] = (200, "text/html", _claimreview_page(1, "Bananas cure cancer"))
    site.routes["/check/2"] = (200, "text/html", _claimreview_page(2, "The moon landing was filmed in a studio"))
    site.routes["/check/3"] = (200, "text/html", '<html><script type="application/ld+json">{"@type": "ClaimReview", broken</script></html>')
    site.routes["/about"] = (200, "text/html", "<html><body>About us</body></html>")
    site.routes["/private/draft"] = (200, "text/html", _claimreview_page(9, "secret draft"))
    waits: list[float] = []
    connector = ClaimReviewSitemapConnector(f"{site.url}/sitemap.xml", max_pages=2, delay_s=0.0, sleep=waits.append)
    first, cursor = connector.fetch(None)
    assert [fc.claim for fc in first if isinstance(fc, FactCheck)] == ["Bananas cure cancer"]  # /about has no ClaimReview
    assert waits and all(0 < w <= 1.0 for w in waits)  # Crawl-delay honoured between requests
    second, cursor2 = ClaimReviewSitemapConnector(f"{site.url}/sitemap.xml", max_pages=5, delay_s=0.0, sleep=lambda s: None).fetch(cursor)
    assert [fc.claim for fc in second if isinstance(fc, FactCheck)] == ["The moon landing was filmed in a studio"]
    (bad,) = [q for q in second if isinstance(q, Quarantined)]
    assert bad.source.endswith("/check/3") and "JSON" in bad.reason
    fetched = [path for path, _ in site.requests]
    assert "/private/draft" not in fetched and fetched[0] == "/robots.txt"
    assert all("FactBridge/" in headers["User-Agent"] for _, headers in site.requests)
    third, _ = ClaimReviewSitemapConnector(f"{site.url}/sitemap.xml", sleep=lambda s: None).fetch(cursor2)
    assert third == []  # nothing new or changed


# -- Telegram Desktop export -------------------------------------------------------------

def _telegram_export(path: Path, messages: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"name": "Tin Nóng", "type": "public_channel", "id": 1777, "messages": messages}, ensure_ascii=False), encoding="utf-8")
    return path


def test_telegram_export_maps_reach_and_pseudonymizes_and_resumes(tmp_path: Path) -> None:
    messages = [
        {"id": 1, "type": "service", "date": "2026-11-01T08:00:00", "action": "create_channel"},
        {"id": 2, "type": "message", "date": "2026-11-01T09:00:00", "date_unixtime": "1793523600", "from": "Tin Nóng", "from_id": "channel1777",
         "text": ["Xem ngay ", {"type": "link", "text": "https://tin-nong.example/x"}, " và ", {"type": "text_link", "text": "đây", "href": "https://t.me/other/5"}],
         "reactions": [{"type": "emoji", "count": 12, "emoji": "👍"}, {"type": "emoji", "count": 3, "emoji": "😡"}], "views": 4100, "forwards": 37,
         "forwarded_from": "Kênh Gốc"},
        {"id": 3, "type": "message", "date": "2026-11-01T10:00:00", "from_id": "channel1777", "text": ""},
    ]
    path = _telegram_export(tmp_path / "result.json", messages)
    connector = TelegramExportConnector(str(tmp_path), pseudonymize=PSEUDO)
    items, cursor = connector.fetch(None)
    (post,) = items
    assert isinstance(post, Post) and post.id == "telegram:1777:2" and post.text == "Xem ngay https://tin-nong.example/x và đây"
    assert post.urls == ["https://tin-nong.example/x", "https://t.me/other/5"]
    assert (post.engagement.likes, post.engagement.shares, post.engagement.views) == (15, 37, 4100)
    assert post.author == PSEUDO("telegram", "channel1777") and "Kênh" not in post.raw["forwarded_from"]
    assert cursor == "3"
    messages.append({"id": 4, "type": "message", "date": "2026-11-02T10:00:00", "from_id": "channel1777", "text": "Tin mới"})
    _telegram_export(path, messages)
    newer, cursor = connector.fetch(cursor)
    assert [p.id for p in newer] == ["telegram:1777:4"] and cursor == "4"
    (tmp_path / "broken.json").write_text("{nope", encoding="utf-8")
    with pytest.raises(InputError, match="broken.json"):
        TelegramExportConnector(str(tmp_path / "broken.json")).fetch(None)


# -- Mastodon (Mastodon.py against a loopback instance) -----------------------------------

def _status(n: int, text: str, reblog: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": str(n), "uri": f"https://social.example/users/a{n}/statuses/{n}", "url": f"https://social.example/@a{n}/{n}",
            "created_at": f"2026-11-0{n % 9 + 1}T10:00:00.000Z", "content": f'<p>{text} <a href="https://scam.example/win">scam.example/win</a> '
            f'<a href="https://social.example/tags/tin" class="mention hashtag">#tin</a></p>', "language": "vi", "spoiler_text": "",
            "visibility": "public", "sensitive": False, "favourites_count": 5 * n, "reblogs_count": n, "replies_count": 2,
            "account": {"id": str(100 + n), "username": f"a{n}", "acct": f"a{n}@social.example", "followers_count": 1000 + n,
                        "url": f"https://social.example/@a{n}"},
            "tags": [{"name": "tin", "url": "https://social.example/tags/tin"}], "reblog": reblog, "card": None, "media_attachments": [], "mentions": [], "emojis": []}


def test_mastodon_hashtag_timeline_with_min_id_cursor(site: LoopbackSite) -> None:
    statuses = [_status(3, "Tin đồn thứ ba"), _status(2, "Tin đồn thứ hai")]
    boosted = _status(1, "", reblog=_status(9, "Bài gốc bị chia sẻ"))

    def tag(query: dict[str, Any], headers: dict[str, str]) -> tuple[Any, ...]:
        min_id = int(query.get("min_id", ["0"])[0])
        return (200, "application/json", json.dumps([s for s in [*statuses, boosted] if int(s["id"]) > min_id]))

    site.routes["/api/v1/timelines/tag/tin"] = tag
    connector = MastodonConnector(site.url, hashtag="#tin", pseudonymize=PSEUDO)
    items, cursor = connector.fetch(None)
    assert cursor == "3" and len(items) == 3
    first = items[0]
    assert isinstance(first, Post) and first.text.startswith("Tin đồn thứ ba") and first.urls == ["https://scam.example/win"]
    assert (first.engagement.likes, first.engagement.shares, first.engagement.comments, first.engagement.followers) == (15, 3, 2, 1003)
    assert first.author == PSEUDO("mastodon", "a3@social.example") and first.language == "vi"
    boost = items[2]
    assert isinstance(boost, Post) and boost.text.startswith("Bài gốc") and boost.raw["reblog_of"].endswith("/statuses/9")
    assert boost.urls[-1] == "https://social.example/@a9/9"  # the shared object, for coordination
    assert boost.author == PSEUDO("mastodon", "a1@social.example")  # the account that boosted it
    again, cursor2 = connector.fetch(cursor)
    assert again == [] and cursor2 == "3"
    assert "min_id=3" in site.requests[-1][0]
    with pytest.raises(ValueError):
        MastodonConnector(site.url, hashtag="a", query="b")


# -- Bluesky (atproto against a loopback AppView) -------------------------------------------

def _bsky_post(n: int, text: str, indexed: str) -> dict[str, Any]:
    return {"uri": f"at://did:plc:author{n}/app.bsky.feed.post/{n}", "cid": f"bafyrei{n:0>10}",
            "author": {"did": f"did:plc:author{n}", "handle": f"user{n}.bsky.social"},
            "record": {"$type": "app.bsky.feed.post", "text": text, "createdAt": indexed, "langs": ["km"],
                       "facets": [{"index": {"byteStart": 0, "byteEnd": 4}, "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://link.example/k"}]}]},
            "likeCount": 7 * n, "repostCount": n, "replyCount": 1, "quoteCount": 2, "indexedAt": indexed}


def test_bluesky_search_pages_until_the_cursor_time(site: LoopbackSite) -> None:
    posts = [_bsky_post(3, "ព័ត៌មានមិនពិត ៣", "2026-11-03T10:00:00.000Z"), _bsky_post(2, "ព័ត៌មានមិនពិត ២", "2026-11-02T10:00:00.000Z"),
             _bsky_post(1, "ព័ត៌មានមិនពិត ១", "2026-11-01T10:00:00.000Z")]

    def search(query: dict[str, Any], headers: dict[str, str]) -> tuple[Any, ...]:
        since = query.get("since", [""])[0]
        page = int(query.get("cursor", ["0"])[0])
        fresh = [p for p in posts if p["indexedAt"] >= since] if since else posts
        chunk = fresh[page * 2: page * 2 + 2]
        body: dict[str, Any] = {"posts": chunk}
        if page * 2 + 2 < len(fresh):
            body["cursor"] = str(page + 1)
        return (200, "application/json", json.dumps(body))

    site.routes["/xrpc/app.bsky.feed.searchPosts"] = search
    connector = BlueskyConnector(query="tin giả", base_url=site.url, limit=2, pseudonymize=PSEUDO)
    items, cursor = connector.fetch(None)
    assert [p.id for p in items if isinstance(p, Post)] == [f"bluesky:at://did:plc:author{n}/app.bsky.feed.post/{n}" for n in (3, 2, 1)]
    first = items[0]
    assert isinstance(first, Post) and first.language == "km" and first.urls == ["https://link.example/k"]
    assert (first.engagement.likes, first.engagement.shares, first.engagement.comments) == (21, 3, 3)
    assert first.author == PSEUDO("bluesky", "did:plc:author3") and cursor == "2026-11-03T10:00:00.000Z"
    posts.insert(0, _bsky_post(4, "ព័ត៌មានថ្មី", "2026-11-04T10:00:00.000Z"))
    newer, cursor2 = connector.fetch(cursor)
    assert [p.id for p in newer if isinstance(p, Post)] == ["bluesky:at://did:plc:author4/app.bsky.feed.post/4"]
    assert cursor2 == "2026-11-04T10:00:00.000Z"


# -- Meta Content Library CSV and YouTube comments -------------------------------------------

def test_meta_content_library_csv(tmp_path: Path) -> None:
    path = tmp_path / "mcl.csv"
    path.write_text(
        "id,creation_time,text,post_owner.id,post_owner.name,statistics.reaction_count,statistics.share_count,statistics.comment_count,statistics.views,link_attachment.link\n"
        "111,2026-11-01T08:00:00+0000,Chia sẻ ngay để nhận quà,9001,Trang Tin,120,45,10,5000,http://qua-tang.example/vn\n"
        "112,2026-11-02T08:00:00+0000,,9001,Trang Tin,1,1,1,1,\n"
        "113,not a date,Bài khác,9002,Trang Hai,1,1,1,1,\n"
        "114,2026-11-03T08:00:00+0000,Một bài nữa,9002,Trang Hai,-5,0,0,0,\n",
        encoding="utf-8",
    )
    connector = MetaContentLibraryConnector(str(path), pseudonymize=PSEUDO)
    items, cursor = connector.fetch(None)
    posts = [i for i in items if isinstance(i, Post)]
    bad = [i for i in items if isinstance(i, Quarantined)]
    assert [p.id for p in posts] == ["facebook:111"]
    post = posts[0]
    assert (post.engagement.likes, post.engagement.shares, post.engagement.comments, post.engagement.views) == (120, 45, 10, 5000)
    assert post.author == PSEUDO("facebook", "9001") and "Trang" not in post.author and post.urls == ["http://qua-tang.example/vn"]
    assert sorted((q.line, q.field) for q in bad) == [(3, "text"), (4, "creation_time"), (5, "statistics.reaction_count")]
    assert cursor is not None and json.loads(cursor)["latest"].startswith("2026-11-03")
    again, _ = connector.fetch(cursor)
    assert not [i for i in again if isinstance(i, Post)]  # nothing newer than the cursor


def test_youtube_comments_api_json_and_csv(tmp_path: Path) -> None:
    thread = {"kind": "youtube#commentThreadListResponse", "items": [{
        "id": "t1", "snippet": {"videoId": "vid123", "totalReplyCount": 1, "topLevelComment": {"id": "c1", "snippet": {
            "textOriginal": "Video này là giả, đừng tin", "authorChannelId": {"value": "UCabc"}, "likeCount": 33, "publishedAt": "2026-11-01T10:00:00Z"}}},
        "replies": {"comments": [{"id": "c1.r1", "snippet": {"textOriginal": "Nguồn đâu?", "authorChannelId": {"value": "UCdef"}, "likeCount": 2,
                                                           "publishedAt": "2026-11-01T11:00:00Z", "parentId": "c1"}}]}}]}
    path = tmp_path / "comments.json"
    path.write_text(json.dumps(thread, ensure_ascii=False), encoding="utf-8")
    items, cursor = YouTubeCommentsConnector(str(path), pseudonymize=PSEUDO).fetch(None)
    top, reply = items
    assert isinstance(top, Post) and isinstance(reply, Post)
    assert top.id == "youtube:c1" and top.engagement.likes == 33 and top.engagement.comments == 1 and top.urls == ["https://www.youtube.com/watch?v=vid123"]
    assert reply.raw["reply_to"] == "youtube:c1" and reply.author == PSEUDO("youtube", "UCdef")
    assert cursor is not None and json.loads(cursor) == {"latest": "2026-11-01T11:00:00+00:00", "ids": ["c1.r1"]}
    csv_path = tmp_path / "ytdt.csv"
    csv_path.write_text("id,text,authorChannelId,likeCount,replyCount,publishedAt,videoId\nk1,Bình luận một,UCx,4,0,2026-11-05T10:00:00Z,v9\nk2,,UCy,1,0,2026-11-05T11:00:00Z,v9\n", encoding="utf-8")
    items, _ = YouTubeCommentsConnector(str(csv_path), pseudonymize=PSEUDO).fetch(None)
    assert [type(i).__name__ for i in items] == ["Post", "Quarantined"] and items[1].line == 3


def test_mastodon_public_timeline_and_search(site: LoopbackSite) -> None:
    site.routes["/api/v1/timelines/public"] = lambda q, h: (200, "application/json", json.dumps([_status(5, "Dòng thời gian chung")] if q.get("local") else []))
    instance = json.dumps({"domain": "social.example", "title": "Social", "version": "4.3.2", "uri": "social.example",
                           "api_versions": {"mastodon": 2}})
    for path in ("/api/v1/instance/", "/api/v2/instance/"):  # Mastodon.py asks for the server version before a search
        site.routes[path] = (200, "application/json", instance)
    site.routes["/api/v2/search"] = lambda q, h: (200, "application/json", json.dumps({"accounts": [], "hashtags": [], "statuses": [_status(6, "Kết quả tìm kiếm " + q["q"][0])]}))
    items, cursor = MastodonConnector(site.url, timeline="local", pseudonymize=PSEUDO).fetch(None)
    assert [p.text.split(" https")[0] for p in items if isinstance(p, Post)] == ["Dòng thời gian chung scam.example/win #tin"] and cursor == "5"
    items, cursor = MastodonConnector(site.url, query="vàng", access_token="tok", pseudonymize=PSEUDO).fetch("4")
    assert isinstance(items[0], Post) and items[0].text.startswith("Kết quả tìm kiếm vàng") and cursor == "6"
    search = next(h for path, h in site.requests if path.startswith("/api/v2/search"))
    assert search["Authorization"] == "Bearer tok"


def test_bluesky_author_feed(site: LoopbackSite) -> None:
    feed = [{"post": _bsky_post(7, "ព័ត៌មានពីគណនី", "2026-11-07T10:00:00.000Z")}, {"post": _bsky_post(6, "ចាស់", "2026-11-06T10:00:00.000Z")}]
    site.routes["/xrpc/app.bsky.feed.getAuthorFeed"] = lambda q, h: (200, "application/json", json.dumps({"feed": feed}))
    items, cursor = BlueskyConnector(actor="news.example", base_url=site.url, pseudonymize=PSEUDO).fetch("2026-11-06T12:00:00.000Z")
    assert [p.id for p in items] == ["bluesky:at://did:plc:author7/app.bsky.feed.post/7"] and cursor == "2026-11-07T10:00:00.000Z"
    assert "actor=news.example" in site.requests[-1][0]


def test_every_connector_passes_the_conformance_checks(site: LoopbackSite, tmp_path: Path) -> None:
    from factbridge.backends.connectors.files import CSVConnector, JSONLConnector
    from factbridge.testing.connector_conformance import check_connector

    site.routes["/feed.xml"] = (200, "application/rss+xml", _rss([("a", "Tin một", "Mon, 02 Nov 2026 08:00:00 GMT"), ("b", "Tin hai", "Tue, 03 Nov 2026 08:00:00 GMT")]))
    site.routes["/sitemap.xml"] = (200, "application/xml", f"""<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<url><loc>{site.url}/check/1</loc><lastmod>2026-11-01</lastmod></url></urlset>""")
    site.routes["/check/1"] = (200, "text/html", _claimreview_page(1, "Bananas cure cancer"))
    site.routes["/api/v1/timelines/tag/tin"] = lambda q, h: (200, "application/json", json.dumps(
        [s for s in (_status(3, "Ba"), _status(2, "Hai")) if int(s["id"]) > int(q.get("min_id", ["0"])[0])]))
    site.routes["/xrpc/app.bsky.feed.searchPosts"] = lambda q, h: (200, "application/json", json.dumps(
        {"posts": [p for p in (_bsky_post(2, "ពីរ", "2026-11-02T10:00:00.000Z"),) if p["indexedAt"] > q.get("since", [""])[0]]}))
    export = _telegram_export(tmp_path / "result.json", [{"id": 1, "type": "message", "date": "2026-11-01T09:00:00", "from_id": "c", "text": "Một"}])
    mcl = tmp_path / "mcl.csv"
    mcl.write_text("id,creation_time,text,post_owner.id\n1,2026-11-01T08:00:00+0000,Bài một,9\n", encoding="utf-8")
    yt = tmp_path / "yt.csv"
    yt.write_text("id,text,authorChannelId,likeCount,replyCount,publishedAt,videoId\nk1,Một,UCx,4,0,2026-11-05T10:00:00Z,v9\n", encoding="utf-8")
    jsonl = tmp_path / "posts.jsonl"
    jsonl.write_text('{"id": "j1", "text": "Một bài"}\n{"id": "j2"}\n', encoding="utf-8")
    csv_path = tmp_path / "posts.csv"
    csv_path.write_text("id,text\nc1,Một bài\n", encoding="utf-8")
    makers: dict[str, Any] = {
        "rss": lambda: RSSConnector(f"{site.url}/feed.xml"),
        "claimreview-sitemap": lambda: ClaimReviewSitemapConnector(f"{site.url}/sitemap.xml", delay_s=0.0, sleep=lambda s: None),
        "telegram-export": lambda: TelegramExportConnector(str(export), pseudonymize=PSEUDO),
        "mastodon": lambda: MastodonConnector(site.url, hashtag="tin", pseudonymize=PSEUDO),
        "bluesky": lambda: BlueskyConnector(query="x", base_url=site.url, pseudonymize=PSEUDO),
        "meta-content-library": lambda: MetaContentLibraryConnector(str(mcl), pseudonymize=PSEUDO),
        "youtube-comments": lambda: YouTubeCommentsConnector(str(yt), pseudonymize=PSEUDO),
        "jsonl": lambda: JSONLConnector(jsonl),
        "csv": lambda: CSVConnector(csv_path),
    }
    from factbridge.plugins import available

    assert set(makers) == set(available("factbridge.connectors")), "every registered connector is checked"
    for name, make in makers.items():
        items = check_connector(make)
        assert make().name == name
        assert items, name
