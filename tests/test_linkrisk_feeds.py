"""Blocklist feeds: each real format, dates, quarantine, idempotent storage, lookups."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from factbridge.backends.storage.sqlite import SQLiteStorage
from factbridge.errors import InputError
from factbridge.linkrisk.feeds import (
    FEED_ENTRIES,
    FEEDS,
    index_from_parsed,
    list_feeds,
    load_feed_index,
    parse_feed,
    sniff_format,
    store_feed,
)
from factbridge.linkrisk.urls import normalize_url

FEED_DIR = Path(__file__).parent / "fixtures" / "linkrisk"


def entries(path: str, **kw: str) -> set[tuple[str, str]]:
    return {(e.kind, e.key) for e in parse_feed(FEED_DIR / path, **kw).entries}  # type: ignore[arg-type]


def test_urlhaus_csv() -> None:
    feed = parse_feed(FEED_DIR / "urlhaus.csv")
    assert feed.format == "urlhaus-csv"
    assert (feed.feed_date, feed.date_source) == ("2025-07-19T12:05:03Z", "header")
    by_key = {e.key: e for e in feed.entries}
    mozi = by_key["115.48.154.123:44709/i"]
    assert (mozi.kind, mozi.date) == ("url", "2025-07-19T12:01:07Z")  # the entry's own dateadded
    assert "Mozi" in mozi.threat
    assert by_key["dl.evil-cdn.xyz"].kind == "host"  # a bare http://host/ lists the whole host
    assert [q.line for q in feed.quarantined] == [14]
    assert feed.quarantined[0].source.endswith("urlhaus.csv")


def test_urlhaus_text_and_openphish_lists() -> None:
    assert entries("urlhaus.txt") == {("url", "115.48.154.123:44709/i"), ("url", "182.117.28.11:53155/bin.sh"), ("url", "paste.ee/r/zhcq4/0")}
    open_phish = parse_feed(FEED_DIR / "openphish.txt", fmt="openphish", feed_date="2025-07-10")
    assert open_phish.feed_date == "2025-07-10T00:00:00Z" and open_phish.date_source == "option"
    assert ("url", "gov-kh-relief.com/register.php") in {(e.kind, e.key) for e in open_phish.entries}


def test_urlhaus_filter_adblock_style() -> None:
    feed = parse_feed(FEED_DIR / "urlhaus-filter.txt")
    assert feed.format == "abp"
    assert feed.feed_date == "2025-07-19T12:11:28Z"
    assert {(e.kind, e.key) for e in feed.entries} == {
        ("host", "0022a601.pphost.net"), ("host", "1.10.184.203"),
        ("url", "raw.githubusercontent.com/fortnitebott/obs/master/config.exe"),
        ("url", "img1.wsimg.com/blobby/go/b298ce5b/downloads/letter.pdf"),
    }
    assert feed.skipped_allow_rules == 1  # @@ rules never become hits


def test_phishtank_json_and_csv() -> None:
    js = parse_feed(FEED_DIR / "phishtank.json")
    assert js.format == "phishtank-json"
    keys = {e.key: e for e in js.entries}
    assert set(keys) == {"vietcombank-uudai.com/dang-nhap?id=7", "secure-paypal.account-check.info/webscr"}  # unverified skipped
    assert keys["vietcombank-uudai.com/dang-nhap?id=7"].date == "2025-07-18T09:12:44Z"
    assert keys["vietcombank-uudai.com/dang-nhap?id=7"].threat == "phishing:Vietcombank"
    assert [q.line for q in js.quarantined] == [4]
    csv_feed = parse_feed(FEED_DIR / "phishtank.csv")
    assert csv_feed.format == "phishtank-csv"
    assert {e.key for e in csv_feed.entries} == {"vietcombank-uudai.com/dang-nhap?id=7", "ameli-remboursement.fr/espace/connexion.php"}


def test_hosts_file_and_domain_list() -> None:
    hosts = parse_feed(FEED_DIR / "hosts.txt")
    assert hosts.format == "hosts"
    assert hosts.feed_date == "2025-07-15T00:00:00Z"
    assert {e.key for e in hosts.entries} == {"evil-download.top", "phish.example-bad.xyz", "one.bad.example", "two.bad.example"}
    domains = parse_feed(FEED_DIR / "domains.txt", fmt="domains")
    assert {e.key for e in domains.entries} == {"momo-vn-nhanthuong.com", "gouv-fr-amendes.com"}
    assert [q.line for q in domains.quarantined] == [4]
    assert domains.date_source == "file-mtime"


def test_domain_list_refuses_paths(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_text("ok.example.com\nbad.example.com/path\n", encoding="utf-8")
    feed = parse_feed(path, fmt="domains")
    assert [e.key for e in feed.entries] == ["ok.example.com"]
    assert feed.quarantined[0].line == 2


def test_wrong_format_is_refused_whole() -> None:
    with pytest.raises(InputError, match="unreadable"):
        parse_feed(FEED_DIR / "garbage.txt")
    with pytest.raises(InputError, match="unknown feed format"):
        parse_feed(FEED_DIR / "hosts.txt", fmt="nope")
    with pytest.raises(InputError, match="not found"):
        parse_feed(FEED_DIR / "missing.txt")


def test_sniffing() -> None:
    assert sniff_format('[{"url": "x"}]') == "phishtank-json"
    assert sniff_format("0.0.0.0 a.com\n") == "hosts"
    assert sniff_format("||a.com^\n||b.com/x^$all\n") == "abp"
    assert sniff_format("http://a.com/x\n") == "list"


def test_store_is_idempotent_and_org_scoped(storage: SQLiteStorage, tmp_path: Path) -> None:
    feed = parse_feed(FEED_DIR / "urlhaus.csv", name="urlhaus")
    first = store_feed(storage, "desk-vn", feed)
    assert first.status == "new" and first.entries == 4
    again = store_feed(storage, "desk-vn", parse_feed(FEED_DIR / "urlhaus.csv", name="urlhaus"))
    assert again.status == "unchanged"
    assert storage.count_docs("desk-vn", FEED_ENTRIES) == 1
    assert storage.count_docs("desk-kh", FEEDS) == 0  # another organisation sees nothing
    assert len(load_feed_index(storage, "desk-kh")) == 0
    # New content: a new version replaces the old one in the index.
    changed = tmp_path / "urlhaus.csv"
    text = (FEED_DIR / "urlhaus.csv").read_text(encoding="utf-8")
    changed.write_text(text.replace("update-flash-player.top", "update-java.top"), encoding="utf-8")
    os.utime(changed, (0, 0))
    updated = store_feed(storage, "desk-vn", parse_feed(changed, name="urlhaus"))
    assert updated.status == "updated"
    index = load_feed_index(storage, "desk-vn")
    assert "update-java.top/download/setup.msi" in index.urls
    assert "update-flash-player.top/download/setup.msi" not in index.urls
    assert [f.name for f in list_feeds(storage, "desk-vn")] == ["urlhaus"]
    assert storage.list_quarantine("desk-vn")[0].kind == "feed"


def test_lookup_names_feed_and_date(storage: SQLiteStorage) -> None:
    store_feed(storage, "org", parse_feed(FEED_DIR / "urlhaus.csv", name="urlhaus"))
    store_feed(storage, "org", parse_feed(FEED_DIR / "hosts.txt", name="hosts"))
    index = load_feed_index(storage, "org")
    n = normalize_url("https://115.48.154.123:44709/i")  # other scheme, same payload
    hits = index.lookup(n.feed_keys(), n.host, n.host_port)
    assert [(h.feed, h.kind, h.date) for h in hits] == [("urlhaus", "url", "2025-07-19T12:01:07Z")]
    sub = normalize_url("http://cdn.phish.example-bad.xyz/login")
    assert [(h.feed, h.matched, h.date) for h in index.lookup(sub.feed_keys(), sub.host)] == [("hosts", "phish.example-bad.xyz", "2025-07-15T00:00:00Z")]
    parent = normalize_url("http://example-bad.xyz/")
    assert index.lookup(parent.feed_keys(), parent.host) == []  # a listed host never covers its parent
    assert index.version == "hosts@2025-07-15,urlhaus@2025-07-19" or index.version == "urlhaus@2025-07-19,hosts@2025-07-15"


def test_exclude_and_in_memory_index(storage: SQLiteStorage) -> None:
    store_feed(storage, "org", parse_feed(FEED_DIR / "urlhaus.txt", name="urlhaus-text"))
    assert len(load_feed_index(storage, "org", exclude=["urlhaus-text"])) == 0
    index = index_from_parsed([parse_feed(FEED_DIR / "urlhaus-filter.txt", name="filter")])
    ip = normalize_url("http://1.10.184.203:8080/x")
    assert [h.matched for h in index.lookup(ip.feed_keys(), ip.host, ip.host_port)] == ["1.10.184.203"]
