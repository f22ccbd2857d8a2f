"""Link extraction and normalisation: every defanged/obfuscated form, IDN, ports,
tracking parameters, shorteners, and the offline public suffix list."""

from __future__ import annotations

import pytest

from factbridge.errors import InputError
from factbridge.linkrisk import urls as urls_module
from factbridge.linkrisk.urls import (
    extract_urls,
    normalize_url,
    refang,
    to_ascii_host,
    to_unicode_host,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Nhận tiền tại hxxps://gov-vn-login[.]com/dang-nhap ngay!", ["https://gov-vn-login.com/dang-nhap"]),
        ("hXXp://evil[.]top/a", ["http://evil.top/a"]),
        ("http[:]//1.2.3.4:8080/bins/mips", ["http://1.2.3.4:8080/bins/mips"]),
        ("hxxp[://]evil.top", ["http://evil.top"]),
        ("vào example (dot) com nhé", ["example.com"]),
        ("vào example [dot] com nhé", ["example.com"]),
        ("link: example{.}net/x", ["example.net/x"]),
        ("go to vietcombank-uudai . com/xac-minh", ["vietcombank-uudai.com/xac-minh"]),
        ("go to vietcombank-uudai. com", ["vietcombank-uudai.com"]),
        ("ｈｔｔｐｓ：／／ｅｘａｍｐｌｅ．ｃｏｍ／ａｂｃ", ["https://example.com/abc"]),
        ("truy cập chinhphu-hotro。com ngay", ["chinhphu-hotro.com"]),
        ("www.bbc.co.uk/news.", ["www.bbc.co.uk/news"]),
        ("(https://en.wikipedia.org/wiki/Foo_(bar)), ok", ["https://en.wikipedia.org/wiki/Foo_(bar)"]),
        ("scheme-less vietcombank-khuyenmai.vn/login here", ["vietcombank-khuyenmai.vn/login"]),
        ("раураl.com/login вход", ["раураl.com/login"]),
        ("short bit.ly/3abc and t.co/xyz", ["bit.ly/3abc", "t.co/xyz"]),
        ("same link twice https://a.example.com/x https://a.example.com/x", ["https://a.example.com/x"]),
    ],
)
def test_extract_forms(text: str, expected: list[str]) -> None:
    assert extract_urls(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "mail me at someone@gmail.com please",
        "see report.pdf and main.py, e.g. this, i.e. that",
        "I went home. It was fine. Then me. me again",
        "version 3.14 and v1.2.3",
        "",
    ],
)
def test_extract_ignores_non_links(text: str) -> None:
    assert extract_urls(text) == []


def test_refang_leaves_clean_text_alone() -> None:
    assert refang("https://example.com/a_b") == "https://example.com/a_b"


def test_normalize_ports_case_tracking_fragment() -> None:
    n = normalize_url("HTTP://WWW.Example.COM:80/a?utm_source=x&id=3&fbclid=zz#frag")
    assert n.url == "http://www.example.com/a?id=3"
    assert n.port is None
    assert set(n.removed_params) == {"utm_source", "fbclid"}
    assert normalize_url("https://example.com:443/").url == "https://example.com/"
    assert normalize_url("https://example.com:8443/").port == 8443
    assert normalize_url("example.com").url == "http://example.com/"
    assert normalize_url("vietcombank.com.vn.").host == "vietcombank.com.vn"


def test_normalize_idn_both_ways() -> None:
    n = normalize_url("http://bücher.de/ä")
    assert n.host == "xn--bcher-kva.de"
    assert n.unicode_host == "bücher.de"
    assert n.path == "/%C3%A4"
    back = normalize_url("https://xn--80ak6aa92e.com/")
    assert back.unicode_host == "аррӏе.com"  # Cyrillic
    assert back.is_idn
    assert to_ascii_host("bücher.de") == "xn--bcher-kva.de"
    assert to_unicode_host("xn--bcher-kva.de") == "bücher.de"


def test_mixed_script_label_still_encodes() -> None:
    n = normalize_url("раураl.com")
    assert n.host.startswith("xn--")
    assert n.unicode_host == "раураl.com"


@pytest.mark.parametrize(
    ("url", "host"),
    [("http://3232235777/", "192.168.1.1"), ("http://0x7f.1/", "127.0.0.1"), ("http://0177.0.0.1/", "127.0.0.1")],
)
def test_obfuscated_ipv4(url: str, host: str) -> None:
    n = normalize_url(url)
    assert (n.host, n.is_ip, n.ip_obfuscated) == (host, True, True)


def test_plain_ip_userinfo_ipv6() -> None:
    n = normalize_url("https://user:pw@paypal.com@evil.com:8443/x")
    assert (n.host, n.userinfo, n.port, n.registered_domain) == ("evil.com", "user:pw@paypal.com", 8443, "evil.com")
    ip = normalize_url("http://1.2.3.4/x")
    assert ip.is_ip and not ip.ip_obfuscated and ip.registered_domain == "1.2.3.4"
    v6 = normalize_url("http://[::1]:80/")
    assert v6.host == "[::1]" and v6.port is None


def test_registered_domain_uses_public_suffix_list() -> None:
    assert normalize_url("a.b.gov.vn").registered_domain == "b.gov.vn"
    assert normalize_url("x.y.duckdns.org").registered_domain == "y.duckdns.org"  # private suffix
    assert normalize_url("www.bbc.co.uk").registered_domain == "bbc.co.uk"


def test_shorteners() -> None:
    assert normalize_url("bit.ly/abc").is_shortener
    assert normalize_url("https://www.tinyurl.com/x").is_shortener
    assert not normalize_url("https://bitly.example.com/x").is_shortener


@pytest.mark.parametrize("bad", ["javascript:alert(1)", "mailto:a@b.c", "", "http://exa mple.com/", "http://example.com:99999/", "ftp2://x.com"])
def test_not_web_links(bad: str) -> None:
    with pytest.raises(InputError):
        normalize_url(bad)


def test_suffix_list_never_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bundled PSL snapshot is the only source: no HTTP, no cache files."""
    import requests

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tldextract tried to fetch the public suffix list")

    monkeypatch.setattr(requests.Session, "get", refuse)
    monkeypatch.setattr(requests.Session, "request", refuse)
    urls_module.suffix_extractor.cache_clear()
    urls_module.split_host.cache_clear()
    try:
        extractor = urls_module.suffix_extractor()
        assert extractor.suffix_list_urls == ()
        assert extractor._cache.enabled is False  # cache_dir=None: nothing written to disk
        assert urls_module.split_host("foo.gov.kh").suffix == "gov.kh"
    finally:
        urls_module.suffix_extractor.cache_clear()
        urls_module.split_host.cache_clear()
