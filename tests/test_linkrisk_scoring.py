"""Look-alike rules, structural signals, feed hits and the combined score."""

from __future__ import annotations

from pathlib import Path

import pytest

from factbridge.errors import InputError
from factbridge.linkrisk.feeds import index_from_parsed, parse_feed
from factbridge.linkrisk.lookalike import LookalikeDetector, load_protected, skeleton
from factbridge.linkrisk.scoring import LinkRiskScorer, combine, level_of
from factbridge.linkrisk.urls import normalize_url

FEED_DIR = Path(__file__).parent / "fixtures" / "linkrisk"


@pytest.fixture(scope="module")
def detector() -> LookalikeDetector:
    return LookalikeDetector.from_setting()


@pytest.fixture(scope="module")
def scorer(detector: LookalikeDetector) -> LinkRiskScorer:
    return LinkRiskScorer(None, detector)


def rules(detector: LookalikeDetector, host: str) -> list[tuple[str, str]]:
    n = normalize_url(host)
    return [(h.rule, h.target) for h in detector.check_host(n.host, n.unicode_host)]


@pytest.mark.parametrize(
    ("host", "rule", "target"),
    [
        ("vietcombаnk.com.vn", "homoglyph", "vietcombank.com.vn"),  # Cyrillic а
        ("vietc0mbank.com", "homoglyph", "vietcombank.com.vn"),
        ("rnomo.vn", "homoglyph", "momo.vn"),
        ("раураl.com", "homoglyph", "paypal.com"),  # whole-script Cyrillic
        ("gov.vn.example.com", "subdomain_trick", "gov.vn"),
        ("paypal.com.secure-login.top", "subdomain_trick", "paypal.com"),
        ("impots.gouv.fr.remboursement-dgfip.com", "subdomain_trick", "impots.gouv.fr"),
        ("gov-vn-login.com", "added_words", "gov.vn"),
        ("nbc-gov-kh.com", "added_words", "gov.kh"),
        ("gouv-fr-amendes.com", "added_words", "gouv.fr"),
        ("vietcombank-uudai.com", "added_words", "vietcombank.com.vn"),
        ("acledabank-kh.com", "added_words", "acledabank.com.kh"),
        ("paypalsecure.net", "added_words", "paypal.com"),
        ("chinhphu.com", "swapped_suffix", "chinhphu.vn"),
        ("ababank.net", "swapped_suffix", "ababank.com"),
        ("vietcombamk.com.vn", "typo", "vietcombank.com.vn"),
        ("facebok.com", "typo", "facebook.com"),
        ("vietcombank.verify-now.top", "brand_subdomain", "vietcombank.com.vn"),
    ],
)
def test_lookalike_rules(detector: LookalikeDetector, host: str, rule: str, target: str) -> None:
    found = rules(detector, host)
    assert found, host
    assert (rule, target) in found


def test_mixed_scripts(detector: LookalikeDetector) -> None:
    found = dict(rules(detector, "vietcombаnk.com.vn"))
    assert "mixed_scripts" in found


@pytest.mark.parametrize(
    "host",
    ["vietcombank.com.vn", "portal.vietcombank.com.vn", "dichvucong.gov.vn", "anything.gov.kh", "impots.gouv.fr", "www.gov.uk",
     "google.com.vn", "login.microsoftonline.com", "googleusercontent.com", "vnexpress.net", "lemonde.fr", "phnompenhpost.com"],
)
def test_official_and_ordinary_hosts_are_not_lookalikes(detector: LookalikeDetector, host: str) -> None:
    assert rules(detector, host) == []


def test_weak_lookalikes_do_not_flag_alone(detector: LookalikeDetector) -> None:
    # A real newspaper one unlikely substitution away from "telegram", and a brand's own account on a hosting service.
    assert rules(detector, "telegraf.rs") == [("typo2", "telegram.org")]
    assert rules(detector, "twitter.github.io") == [("brand_on_hosting", "twitter.com")]
    scorer = LinkRiskScorer(None, detector)
    assert not scorer.score("https://telegraf.rs/vesti").flagged
    assert not scorer.score("http://twitter.github.io/interactive/").flagged


def test_skeleton() -> None:
    assert skeleton("vіetcombаnk") == skeleton("vietcombank") == skeleton("vietc0mbank") == skeleton("vietcornbank")
    assert skeleton("paypa1") == skeleton("paypal")


def test_protected_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "p.tsv"
    bad.write_text("# header\nexample.vn\tcastle\tOwner\tVN\tbank\t\t\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_protected(bad)
    assert info.value.line == 2 and info.value.field == "kind"
    extra = tmp_path / "extra.tsv"
    extra.write_text("mybank.com.kh\tbrand\tMy Bank\tKH\tbank\t\t\n", encoding="utf-8")
    combined = LookalikeDetector.from_setting(f"+{extra}")
    assert rules(combined, "mybank-kh-login.com") == [("added_words", "mybank.com.kh")]
    only = LookalikeDetector.from_setting(str(extra))
    assert rules(only, "vietcombank-uudai.com") == []


def test_structural_signals(scorer: LinkRiskScorer) -> None:
    def codes(url: str) -> set[str]:
        return {r.code for r in scorer.score(url).reasons}

    assert codes("http://115.48.154.123:44709/i") >= {"raw_ip_host", "nonstandard_port", "iot_malware_path"}
    assert "ip_obfuscated" in codes("http://3232235777/")
    assert "userinfo_at" in codes("http://paypal.com@evil.example/")
    assert {"executable_download", "hosted_download"} <= codes("https://github.com/someone/x/releases/download/v1/setup.exe")
    assert "archive_download" in codes("http://files.example.org/a/b.zip")
    assert {"archive_download", "hosted_download"} <= codes("https://codeload.github.com/someone/tool/zip/refs/heads/master")
    assert "script_download" in codes("https://link.storjshare.io/raw/abc/docs/factura%20electronica.js")
    assert "script_download" not in codes("https://www.example.com/static/app.js")  # a site's own script
    assert "iot_malware_path" in codes("http://1.2.3.4/x.arm7")
    assert "raw_paste" in codes("https://pastebin.com/raw/abcd")
    assert {"dynamic_dns", "random_label"} <= codes("http://5a43e6a45be33b4739fba699782e6c7c.duckdns.org/")
    assert "suspicious_tld" in codes("http://cheap-deals.top/")
    assert "many_subdomains" in codes("http://a.b.c.d.e.example.com/")
    assert "credential_words_host" in codes("http://secure-login-update.example.com/")
    assert "credential_words_path" in codes("http://example.com/tai-khoan/xac-minh")
    assert "punycode_host" in codes("http://xn--bcher-kva.de/")
    assert "shortener" in codes("https://bit.ly/3abc")


def test_scores_levels_and_decided_by(scorer: LinkRiskScorer) -> None:
    risk = scorer.score("hxxps://vietcombank-uudai[.]com/dang-nhap")
    assert risk.flagged and risk.level in {"medium", "high"}
    assert risk.reasons[0].code == "lookalike_added_words"
    assert risk.decided_by.startswith("linkrisk-rules v1.0; protected ")
    official = scorer.score("https://www.vietcombank.com.vn/login")
    assert official.official == "Vietcombank"
    assert official.score == 0.0 and official.reasons == []
    assert scorer.score("https://x.org/wiki").reasons == []  # 'x' is X's name on x.com only
    plain = scorer.score("https://vnexpress.net/thoi-su")
    assert plain.score == 0.0 and plain.level == "none" and plain.reasons == []
    shortener = scorer.score("https://bit.ly/3abc")
    assert not shortener.flagged and shortener.level == "none"  # 0.15: noted, not flagged


def test_feed_hits_carry_feed_and_date(detector: LookalikeDetector) -> None:
    index = index_from_parsed([parse_feed(FEED_DIR / "phishtank.json", name="phishtank")])
    scorer = LinkRiskScorer(index, detector)
    risk = scorer.score("https://vietcombank-uudai.com/dang-nhap?id=7&utm_source=zalo")
    assert risk.score >= 0.98
    assert risk.feed_hits == [{"feed": "phishtank", "date": "2025-07-18T09:12:44Z", "kind": "url", "matched": "vietcombank-uudai.com/dang-nhap?id=7", "threat": "phishing:Vietcombank"}]
    assert "feeds phishtank@" in risk.decided_by
    assert risk.as_dict()["reasons"][0]["category"] == "feed"


def test_combination_rules() -> None:
    from factbridge.linkrisk.scoring import Reason

    same = [Reason("suspicious_tld", 0.3, ""), Reason("suspicious_tld", 0.2, "")]
    assert combine(same) == pytest.approx(0.3)  # one category counts once
    two = [Reason("suspicious_tld", 0.3, ""), Reason("random_label", 0.3, "")]
    assert combine(two) == pytest.approx(0.51)
    assert [level_of(x) for x in (0.0, 0.2, 0.5, 0.8)] == ["none", "low", "medium", "high"]


def test_score_many_keeps_errors(scorer: LinkRiskScorer) -> None:
    out = scorer.score_many(["https://example.com/", "javascript:alert(1)"])
    assert not isinstance(out[0], InputError)
    assert isinstance(out[1], InputError)
