"""One risk score in [0, 1] with its reasons for every link.

Each rule that fires adds a reason ``{code, category, weight, detail, evidence}``.
Within a category only the strongest reason counts (two look-alike rules about
the same host are one piece of evidence, not two); categories combine as
independent evidence: ``score = 1 - prod(1 - strongest weight per category)``.

Categories: ``feed`` (blocklist hits), ``lookalike`` (see lookalike.py),
``address`` (how the host is written: raw or encoded IP, userinfo '@',
non-standard port, punycode), ``host`` (suspicious TLD, dynamic-DNS/tunnel
service, random-looking or numerous subdomain labels, credential words in
the host), ``path`` (executable or archive download, IoT-malware paths, raw
paste, credential words) and ``shortener`` (destination hidden).

A link is *flagged* at ``score >= flag_threshold`` (default 0.5): one strong
signal (a feed hit, a look-alike, a raw IP, an executable) or two weaker ones.
Official hosts of protected domains skip the look-alike and host categories.
``decided_by`` names the rule set and version, the protected-list version
and the feeds loaded (name and date).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from factbridge.errors import InputError
from factbridge.linkrisk.feeds import FeedIndex
from factbridge.linkrisk.lookalike import LookalikeDetector
from factbridge.linkrisk.resolve import ResolutionBudget, Resolver
from factbridge.linkrisk.urls import NormalizedUrl, normalize_url, split_host
from factbridge.settings import Settings

RULESET = "linkrisk-rules"
RULES_VERSION = "1.0"
DEFAULT_FLAG_THRESHOLD = Settings().linkrisk.flag_threshold  # the linkrisk_flag_threshold setting's default

WEIGHTS: dict[str, float] = {
    "feed_url": 0.98,
    "feed_host": 0.95,
    "ip_obfuscated": 0.80,
    "raw_ip_host": 0.60,
    "userinfo_at": 0.60,
    "executable_download": 0.60,
    "iot_malware_path": 0.60,
    "raw_paste": 0.50,
    "hosted_download": 0.35,
    "archive_download": 0.30,
    "script_download": 0.45,
    "dynamic_dns": 0.40,
    "suspicious_tld": 0.30,
    "random_label": 0.30,
    "nonstandard_port": 0.30,
    "punycode_host": 0.30,
    "many_subdomains": 0.25,
    "credential_words_host": 0.30,
    "credential_words_path": 0.20,
    "many_hyphens": 0.20,
    "shortener": 0.15,
    "destination": 0.0,  # weight copied from the destination's own score
}
CATEGORY = {
    "feed_url": "feed", "feed_host": "feed",
    "ip_obfuscated": "address", "raw_ip_host": "address", "userinfo_at": "address", "nonstandard_port": "address", "punycode_host": "address",
    "executable_download": "payload", "iot_malware_path": "payload", "archive_download": "payload", "script_download": "payload",
    "dynamic_dns": "hosting", "raw_paste": "hosting", "hosted_download": "hosting",
    "suspicious_tld": "tld",
    "random_label": "host", "many_subdomains": "host", "credential_words_host": "host", "many_hyphens": "host",
    "credential_words_path": "path",
    "shortener": "shortener",
    "destination": "destination",
}

# TLDs that abuse reports (Spamhaus, Interisle, URLhaus statistics) rank far above
# their share of registrations: cheap or free, little checking.
SUSPICIOUS_TLDS = frozenset({
    "top", "xyz", "tk", "ml", "ga", "cf", "gq", "buzz", "click", "link", "work", "rest", "fit", "cfd", "sbs",
    "icu", "cyou", "zip", "mov", "country", "kim", "loan", "date", "racing", "win", "bid", "stream", "download",
    "review", "party", "trade", "science", "accountant", "cricket", "faith", "men", "webcam", "gdn", "monster",
    "quest", "lol", "bond", "autos", "boats", "hair", "skin", "makeup", "beauty", "mom", "uno", "pw", "su",
    "surf", "support", "help", "online", "site", "live", "vip", "shop", "best", "bar", "casa", "today", "cam",
})
# Free dynamic-DNS, tunnel and throw-away hosting services: anyone gets a name in seconds.
DYNAMIC_DNS = frozenset({
    "duckdns.org", "ddns.net", "no-ip.org", "no-ip.biz", "no-ip.info", "noip.me", "hopto.org", "zapto.org", "sytes.net",
    "serveftp.com", "servehttp.com", "myftp.biz", "myftp.org", "redirectme.net", "ddnsking.com", "dyndns.org",
    "dynu.net", "freeddns.org", "mooo.com", "afraid.org", "chickenkiller.com", "ngrok.io", "ngrok-free.app",
    "ngrok.app", "ngrok-free.dev", "trycloudflare.com", "loophole.site", "serveo.net", "loca.lt", "localhost.run",
    "pagekite.me", "000webhostapp.com", "repl.co", "glitch.me", "portmap.io", "portmap.host", "pphost.net",
    "kozow.com", "ddns.me", "linkpc.net", "webredirect.org", "casacam.net", "gleeze.com", "accesscam.org",
    "camdvr.org", "ooguy.com", "theworkpc.com", "dns.army", "dnsabr.com", "crabdance.com", "strangled.net",
})
EXECUTABLE_EXTENSIONS = frozenset({"exe", "scr", "msi", "bat", "cmd", "vbs", "vbe", "jar", "apk", "xapk", "ps1", "dll", "hta", "lnk", "pif", "cpl", "msix", "appx", "dmg", "pkg", "elf", "bin", "wsf", "iso", "img", "sys"})
ARCHIVE_EXTENSIONS = frozenset({"zip", "rar", "7z", "gz", "tgz", "bz2", "xz", "cab", "ace", "arj", "z"})
SCRIPT_EXTENSIONS = frozenset({"sh", "docm", "xlsm", "pptm", "xlam", "dotm", "one"})
# Scripts that are ordinary on a website (a site's own .js) but not as a file on a
# free hosting service, where they are droppers (e.g. "factura electronica.js").
HOSTED_SCRIPT_EXTENSIONS = frozenset({"js", "jse", "wsh", "py", "pyw"})
# File names of Mirai/Mozi-style IoT bots: one build per CPU architecture.
IOT_NAMES = frozenset({
    "mips", "mipsel", "mpsl", "arm", "arm4", "arm5", "arm6", "arm7", "x86", "x86_64", "x64", "i686", "i586",
    "i486", "sh4", "m68k", "ppc", "spc", "sparc", "arc", "mozi.m", "mozi.a", "i", "bins", "bin.sh", "ohshit.sh",
    "sora.sh", "t.sh", "yakuza", "hiddenbin", "aarch64",
})
# Free file-sharing and code-hosting services: most malware URLs in URLhaus that are
# not on an IP sit on one of these, as an archive or a program.
FILE_HOSTING = frozenset({
    "github.com", "raw.githubusercontent.com", "codeload.github.com", "objects.githubusercontent.com", "gitlab.com",
    "bitbucket.org", "mediafire.com", "dropbox.com", "dl.dropboxusercontent.com", "drive.google.com",
    "docs.google.com", "drive.usercontent.google.com", "storage.googleapis.com", "firebasestorage.googleapis.com",
    "cdn.discordapp.com", "media.discordapp.net", "files.catbox.moe", "litter.catbox.moe", "gofile.io",
    "transfer.sh", "sendspace.com", "mega.nz", "link.storjshare.io", "archive.org", "1drv.ms", "onedrive.live.com",
    "sourceforge.net", "pixeldrain.com", "anonfiles.com", "filebin.net", "file.io", "tmpfiles.org", "uploadnow.io",
})
PASTE_HOSTS = frozenset({"pastebin.com", "paste.ee", "pastefy.app", "rentry.co", "paste.rs", "hastebin.com", "ghostbin.co", "controlc.com", "justpaste.it", "dpaste.com", "paste2.org"})
CREDENTIAL_WORDS = (
    "login", "log-in", "signin", "sign-in", "logon", "verify", "verification", "account", "update", "secure",
    "security", "banking", "wallet", "password", "passwd", "credential", "auth", "otp", "kyc", "unlock",
    "suspend", "confirm", "recover", "webscr", "billing", "invoice", "refund", "reward", "claim", "airdrop",
    # Vietnamese (unaccented, as typed in URLs), French
    "dang-nhap", "dangnhap", "xac-minh", "xacminh", "xac-thuc", "xacthuc", "cap-nhat", "capnhat", "tai-khoan",
    "taikhoan", "mat-khau", "matkhau", "nhan-thuong", "nhanthuong", "hoan-tien", "hoantien", "khuyen-mai",
    "khuyenmai", "uu-dai", "uudai", "connexion", "identifiant", "remboursement", "verifier", "compte", "amende",
)
_CREDENTIAL_RE = re.compile("|".join(re.escape(w) for w in sorted(CREDENTIAL_WORDS, key=len, reverse=True)))
_HEXISH = re.compile(r"^[0-9a-f]{16,}$")


@dataclass
class Reason:
    code: str
    weight: float
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)
    category: str = field(init=False)

    def __post_init__(self) -> None:
        self.category = "lookalike" if self.code.startswith("lookalike_") else CATEGORY[self.code]

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "category": self.category, "weight": round(self.weight, 3), "detail": self.detail, "evidence": self.evidence}


@dataclass
class UrlRisk:
    url: str  # as found
    normalized: str
    host: str
    unicode_host: str
    registered_domain: str
    score: float
    level: str
    flagged: bool
    reasons: list[Reason]
    official: str | None  # owner, when the host belongs to a protected domain
    shortener: bool
    decided_by: str
    resolution: dict[str, Any] | None = None

    @property
    def feed_hits(self) -> list[dict[str, Any]]:
        return [r.evidence for r in self.reasons if r.category == "feed"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url, "normalized": self.normalized, "host": self.host, "unicode_host": self.unicode_host,
            "registered_domain": self.registered_domain, "score": round(self.score, 4), "level": self.level,
            "flagged": self.flagged, "reasons": [r.as_dict() for r in self.reasons], "feed_hits": self.feed_hits,
            "official": self.official, "shortener": self.shortener, "decided_by": self.decided_by,
            "resolution": self.resolution,
        }


def level_of(score: float) -> str:
    if score >= 0.8:
        return "high"
    if score >= 0.5:
        return "medium"
    if score >= 0.2:
        return "low"
    return "none"


def combine(reasons: Iterable[Reason]) -> float:
    strongest: dict[str, float] = {}
    for r in reasons:
        strongest[r.category] = max(strongest.get(r.category, 0.0), r.weight)
    keep = 1.0
    for weight in strongest.values():
        keep *= 1.0 - weight
    return 1.0 - keep


@lru_cache(maxsize=65_536)
def _entropy(text: str) -> float:
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _random_looking(label: str) -> bool:
    """Machine-made labels: long hex/uuid runs or long high-entropy digit-letter mixes."""
    core = label.replace("-", "")
    if len(core) < 16:
        return False
    if _HEXISH.match(core):
        return True
    digits = sum(c.isdigit() for c in core)
    return digits >= 4 and _entropy(core) >= 3.6


class LinkRiskScorer:
    """Scores links; holds the feed index and the look-alike detector in memory."""

    def __init__(self, feeds: FeedIndex | None = None, lookalikes: LookalikeDetector | None = None, flag_threshold: float = DEFAULT_FLAG_THRESHOLD, resolver: Resolver | ResolutionBudget | None = None) -> None:
        self.feeds = feeds or FeedIndex()
        self.lookalikes = lookalikes or LookalikeDetector.from_setting()
        self.flag_threshold = flag_threshold
        self.resolver = resolver  # None: shortened links are not followed (the default)
        self.decided_by = f"{RULESET} v{RULES_VERSION}; protected {self.lookalikes.version}; feeds {self.feeds.version}"
        self._host_reasons = lru_cache(maxsize=131_072)(self._host_reasons_uncached)

    # -- public ----------------------------------------------------------------
    def score(self, url: str | NormalizedUrl) -> UrlRisk:
        """Score one link. Raises InputError when it is not a web link."""
        n = url if isinstance(url, NormalizedUrl) else normalize_url(url)
        official, host_reasons = self._host_reasons(n.host, n.unicode_host, n.is_ip, n.ip_obfuscated)
        reasons = list(host_reasons)
        self._address_reasons(n, reasons)
        self._path_reasons(n, reasons, official is not None)
        if self.feeds.urls or self.feeds.hosts:
            for hit in self.feeds.lookup(n.feed_keys(), n.host, n.host_port):
                code = "feed_url" if hit.kind == "url" else "feed_host"
                reasons.append(Reason(code, WEIGHTS[code], f"listed by feed '{hit.feed}' ({hit.date[:10]}): {hit.matched}" + (f" [{hit.threat}]" if hit.threat else ""), hit.as_dict()))
        resolution = None
        if self.resolver is not None and n.is_shortener:
            resolution = self._follow(n, reasons)
        reasons.sort(key=lambda r: -r.weight)
        score = combine(reasons)
        return UrlRisk(
            url=n.original, normalized=n.url, host=n.host, unicode_host=n.unicode_host, registered_domain=n.registered_domain,
            score=score, level=level_of(score), flagged=score >= self.flag_threshold, reasons=reasons,
            official=official, shortener=n.is_shortener, decided_by=self.decided_by + ("; resolved" if resolution else ""),
            resolution=resolution,
        )

    def _follow(self, n: NormalizedUrl, reasons: list[Reason]) -> dict[str, Any]:
        """Score where a shortened link leads; its strongest evidence joins this link's."""
        assert self.resolver is not None
        resolution = self.resolver.resolve(n.url)
        final = resolution.final_url
        if final and final != n.url:
            try:
                target = normalize_url(final)
            except InputError:
                return resolution.as_dict()
            if not target.is_shortener:  # one level only: a chain of shorteners is followed by the resolver
                dest = self.score(target)
                if dest.reasons:
                    reasons.append(Reason("destination", dest.score, f"leads to {dest.normalized}: " + "; ".join(r.detail for r in dest.reasons[:3]), {"final_url": dest.normalized, "reasons": [r.code for r in dest.reasons]}))
        return resolution.as_dict()

    def score_many(self, urls: Sequence[str]) -> list[UrlRisk | InputError]:
        out: list[UrlRisk | InputError] = []
        for url in urls:
            try:
                out.append(self.score(url))
            except InputError as exc:
                out.append(exc)
        return out

    # -- rules -----------------------------------------------------------------
    def _host_reasons_uncached(self, host: str, unicode_host: str, is_ip: bool, obfuscated: bool) -> tuple[str | None, tuple[Reason, ...]]:
        reasons: list[Reason] = []
        if is_ip:
            if obfuscated:
                reasons.append(Reason("ip_obfuscated", WEIGHTS["ip_obfuscated"], f"IP address written in integer/hex/octal form ({host})", {"ip": host}))
            else:
                reasons.append(Reason("raw_ip_host", WEIGHTS["raw_ip_host"], f"link points to a bare IP address ({host}), not a name", {"ip": host}))
            return None, tuple(reasons)
        parts = split_host(host)
        registered = parts.registered_domain or host
        owner = self.lookalikes.official_owner(host, registered)
        if owner is not None:
            return owner.owner, ()
        for hit in self.lookalikes.check_host(host, unicode_host):
            reasons.append(Reason("lookalike_" + hit.rule, hit.weight, hit.detail, hit.as_dict()))
        if "xn--" in host:
            reasons.append(Reason("punycode_host", WEIGHTS["punycode_host"], f"internationalised name shown as '{unicode_host}'", {"unicode": unicode_host}))
        tld = parts.suffix.rsplit(".", 1)[-1] if parts.suffix else host.rsplit(".", 1)[-1]
        if tld in SUSPICIOUS_TLDS:
            reasons.append(Reason("suspicious_tld", WEIGHTS["suspicious_tld"], f"top-level domain '.{tld}' is heavily abused", {"tld": tld}))
        if parts.is_private_suffix and parts.suffix in DYNAMIC_DNS:
            reasons.append(Reason("dynamic_dns", WEIGHTS["dynamic_dns"], f"free dynamic-DNS/tunnel name under {parts.suffix}", {"service": parts.suffix}))
        sub_labels = [x for x in parts.subdomain.split(".") if x and x != "www"]
        labels = [*sub_labels, parts.domain] if parts.domain else sub_labels
        random_labels = [x for x in labels if _random_looking(x)]
        if random_labels:
            reasons.append(Reason("random_label", WEIGHTS["random_label"], f"machine-generated-looking label '{random_labels[0]}'", {"labels": random_labels}))
        if len(sub_labels) >= 4:
            reasons.append(Reason("many_subdomains", WEIGHTS["many_subdomains"], f"{len(sub_labels)} subdomain levels", {"levels": len(sub_labels)}))
        words = sorted(set(_CREDENTIAL_RE.findall(host)))
        if words:
            reasons.append(Reason("credential_words_host", WEIGHTS["credential_words_host"], f"host name uses {', '.join(words)}", {"words": words}))
        if parts.domain.count("-") >= 3 and not parts.domain.startswith("xn--"):
            reasons.append(Reason("many_hyphens", WEIGHTS["many_hyphens"], f"'{parts.domain}' strings many words together", {"hyphens": parts.domain.count("-")}))
        return None, tuple(reasons)

    def _address_reasons(self, n: NormalizedUrl, reasons: list[Reason]) -> None:
        if n.userinfo:
            reasons.append(Reason("userinfo_at", WEIGHTS["userinfo_at"], f"'{n.userinfo}@' before the real host {n.host} hides where the link goes", {"userinfo": n.userinfo}))
        if n.port is not None:
            reasons.append(Reason("nonstandard_port", WEIGHTS["nonstandard_port"], f"non-standard port {n.port}", {"port": n.port}))
        if n.is_shortener:
            reasons.append(Reason("shortener", WEIGHTS["shortener"], f"{n.host} is a link shortener: the destination is hidden", {"service": n.host}))

    def _path_reasons(self, n: NormalizedUrl, reasons: list[Reason], official: bool = False) -> None:
        path = n.path.lower()
        if len(path) <= 1 and not n.query:
            return
        last = path.rstrip("/").rsplit("/", 1)[-1]
        ext = last.rsplit(".", 1)[-1] if "." in last else ""
        hosting = n.host if n.host in FILE_HOSTING else n.registered_domain
        on_hosting = hosting in FILE_HOSTING
        if n.host == "codeload.github.com" and ("/zip/" in path or "/tar.gz/" in path):
            ext = "zip"  # GitHub's archive download of a whole repository
        if on_hosting and ext in HOSTED_SCRIPT_EXTENSIONS:
            reasons.append(Reason("script_download", WEIGHTS["script_download"], f"script file '{last}' on a file-hosting service", {"file": last}))
        elif ext in EXECUTABLE_EXTENSIONS:
            reasons.append(Reason("executable_download", WEIGHTS["executable_download"], f"downloads a program ('{last}')", {"file": last}))
        elif ext in SCRIPT_EXTENSIONS:
            reasons.append(Reason("script_download", WEIGHTS["script_download"], f"downloads a script or macro document ('{last}')", {"file": last}))
        elif ext in ARCHIVE_EXTENSIONS:
            reasons.append(Reason("archive_download", WEIGHTS["archive_download"], f"downloads an archive ('{last}')", {"file": last}))
        if last in IOT_NAMES or ext in IOT_NAMES or "/bins/" in path:
            reasons.append(Reason("iot_malware_path", WEIGHTS["iot_malware_path"], f"path '{n.path}' has the shape of IoT-botnet downloads", {"file": last}))
        downloadable = ext in EXECUTABLE_EXTENSIONS or ext in ARCHIVE_EXTENSIONS or ext in SCRIPT_EXTENSIONS or ext in HOSTED_SCRIPT_EXTENSIONS
        if on_hosting and (downloadable or "export=download" in n.query):
            reasons.append(Reason("hosted_download", WEIGHTS["hosted_download"], f"file served from the free hosting service {hosting}", {"service": hosting}))
        if n.registered_domain in PASTE_HOSTS and ("/raw" in path or "/r/" in path or "/d/" in path or n.host.startswith("raw.")):
            reasons.append(Reason("raw_paste", WEIGHTS["raw_paste"], f"raw paste on {n.registered_domain} (often a second-stage payload)", {"host": n.host}))
        # A login page on the official domain is where logins belong.
        words = [] if official else sorted(set(_CREDENTIAL_RE.findall(path + "?" + n.query.lower())))
        if words:
            reasons.append(Reason("credential_words_path", WEIGHTS["credential_words_path"], f"path asks for {', '.join(words[:4])}", {"words": words}))
