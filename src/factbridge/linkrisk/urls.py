"""Finding links in post text and putting them in one canonical form.

Posts that spread scams rarely carry a clean ``https://`` link: they defang it
(``hxxp://``, ``example[.]com``, ``example (dot) com``), space the dots out
(``gov-vn . com``), write it in full-width characters (``ｅｘａｍｐｌｅ．ｃｏｍ``)
or drop the scheme (``vietcombank-uudai.com/dang-nhap``). `extract_urls` finds
all of these; `normalize_url` turns any of them into a `NormalizedUrl`:

* scheme and host lower-cased, the host in ASCII (IDN -> punycode) with its
  Unicode form kept beside it (punycode -> Unicode), trailing dot removed;
* integer, hex and octal IPv4 forms (``http://3232235777/``) decoded;
* default ports (80 for http, 443 for https) dropped;
* tracking parameters (utm_*, fbclid, gclid, ...) and the fragment removed;
* the registered domain found with the Public Suffix List snapshot bundled in
  `tldextract` (private suffixes included, so ``a.duckdns.org`` is its own
  domain). It is built with ``suffix_list_urls=()`` and ``cache_dir=None``:
  it never fetches the list and never writes a cache.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import parse_qsl, quote, urlencode

import idna
import tldextract

from factbridge.errors import InputError

# ---------------------------------------------------------------------------
# Public suffix list (offline)


@lru_cache(maxsize=1)
def suffix_extractor() -> tldextract.TLDExtract:
    # suffix_list_urls=() disables every HTTP request; cache_dir=None disables the
    # on-disk cache, so the bundled snapshot is the only source (tests check it).
    return tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True, include_psl_private_domains=True)


@lru_cache(maxsize=1)
def known_tlds() -> frozenset[str]:
    """Top-level labels of the bundled suffix list (``com``, ``vn``, ``xn--p1ai``...)."""
    extractor = suffix_extractor()
    return frozenset(s.rsplit(".", 1)[-1].lstrip("*.!") for s in extractor.tlds)


@dataclass(frozen=True)
class HostParts:
    subdomain: str
    domain: str  # the label just left of the public suffix
    suffix: str
    is_private_suffix: bool

    @property
    def registered_domain(self) -> str:
        return f"{self.domain}.{self.suffix}" if self.domain and self.suffix else ""


@lru_cache(maxsize=262_144)
def split_host(host: str) -> HostParts:
    parts = suffix_extractor().extract_str(host)
    return HostParts(parts.subdomain, parts.domain, parts.suffix, bool(parts.is_private))


# ---------------------------------------------------------------------------
# Refanging and extraction

# Full-width and ideographic dots/colons/slashes that NFKC leaves alone or that
# people type on purpose.
_CHAR_MAP = str.maketrans({"\u3002": ".", "\uff61": ".", "\u2024": ".", "\u2027": ".", "\u30fb": ".", "\u2044": "/", "\u2215": "/", "\u29f8": "/", "\uff1a": ":"})
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
# Both tables in one pass (no replacement is a key of the other), taken only when one of their
# characters is there: a dictionary look-up per character is the slow part on long posts.
_REFANG_MAP = {**_CHAR_MAP, **_INVISIBLE}
_REFANG_CHARS = re.compile("[" + "".join(map(chr, _REFANG_MAP)) + "]")

_SCHEME_FANGS = re.compile(r"\b(?:h[x*_]{2}p|hxxp|h\[tt\]p|h\*\*p|meow)(s?)(?=\s*(?:\[?:\]?|\(:\))\s*//)", re.IGNORECASE)
_COLON_FANG = re.compile(r"(?<=[a-zA-Z])\s*(?:\[:\]|\(:\)|\{:\})\s*(?=//)")
_SEPARATOR_FANG = re.compile(r"(?<=[a-zA-Z])\s*(?:\[://\]|\(://\)|\{://\})\s*")
_DOT_FANG = re.compile(r"\s*(?:\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|\{dot\}|\[\s*\.\s*\]|<dot>|\\\.)\s*", re.IGNORECASE)
_SLASH_FANG = re.compile(r"\[/\]|\(/\)")
# "example dot com", "example . com", "example. com": only before a lower-case TLD
# that scams use (so "home. It was" or "to me. me" stay sentences).
_SPACED_DOT = re.compile(r"(?<=[\w-])(?:\s+(?i:dot)\s+|\s*\.\s+|\s+\.\s*)(?=([a-z]{2,8})\b)")
_SPACED_TLDS = frozenset({
    "com", "net", "org", "info", "biz", "vn", "kh", "fr", "uk", "io", "xyz", "top", "site", "online", "shop",
    "club", "link", "click", "live", "cc", "tk", "ml", "ga", "cf", "gq", "ru", "cn", "icu", "cyou", "buzz", "vip",
})


_FANG_HINT = re.compile(r"[\[({<\\\s]")
# "hxxp", "h**p", "h__p", "h[tt]p" or "meow", any case. Written to start with a character set
# (none of these letters has another case form under re.IGNORECASE): the engine then skips at
# C speed to an h or an m, where `h(?:...)p|meow` with the flag tested every position (~2x slower).
_SCHEME_HINT = re.compile(r"[hHmM](?i:(?<=h)(?:xx|\*\*|__|\[tt\])p|(?<=m)eow)")
# Where `_SPACED_DOT` can change a text: the TLD it keeps (a word of `_SPACED_TLDS`, then no word
# character) comes right after its separator, whose last character is white space or a dot that
# follows white space (" dot ", ". ", " ." and " . " all end so). Most texts have no such TLD, and
# this scan, which starts at white space only, is ~3x cheaper than `_SPACED_DOT`'s look-behind
# tried at every position.
_SPACED_TLD_HINT = re.compile(r"\s\.?(?:" + "|".join(sorted(_SPACED_TLDS)) + r")(?!\w)")


def refang(text: str) -> str:
    """Undo the usual defanging and look-alike punctuation so links can be parsed."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
        if _REFANG_CHARS.search(text):
            text = text.translate(_REFANG_MAP)
    elif not _FANG_HINT.search(text) and (text.startswith(("http://", "https://")) or not _SCHEME_HINT.search(text)):
        return text  # the common case: a clean link
    if _SCHEME_HINT.search(text):
        text = _SCHEME_FANGS.sub(lambda m: "http" + m.group(1), text)
    if any(c in text for c in "[({<\\"):
        text = _COLON_FANG.sub(":", text)
        text = _SEPARATOR_FANG.sub("://", text)
        text = _DOT_FANG.sub(".", text)
        text = _SLASH_FANG.sub("/", text)
    if (" " in text or "\t" in text) and _SPACED_TLD_HINT.search(text):
        text = _SPACED_DOT.sub(lambda m: "." if m.group(1) in _SPACED_TLDS else m.group(0), text)
    return text


_HOST_CHARS = r"[\w\-]"
_URL_WITH_SCHEME = r"(?:https?|ftp)://[^\s<>\"'`{}|\\^]+"
_WWW = r"(?<![\w.@-])www\d{0,3}\.[^\s<>\"'`{}|\\^]+"
# A bare domain: labels of letters/digits/hyphens (any script), a final label that
# must be a real TLD (checked in code), an optional port and path.
_BARE = r"(?<![\w.@/:-])(?:" + _HOST_CHARS + r"{1,63}\.){1,8}[a-zA-Z\u00a0-\uffff][\w-]{1,23}(?::\d{1,5})?(?:/[^\s<>\"'`{}|\\^]*)?(?![\w@])"
_URL_PATTERN = re.compile(f"{_URL_WITH_SCHEME}|{_WWW}|{_BARE}", re.IGNORECASE)
# Every link `extract_urls` keeps holds "://" or a dot followed by a character a link may hold
# (a www or bare host's first dot is followed by a letter, digit or hyphen; a match whose dots
# are all followed by a space has no known TLD and is dropped): a sentence's full stop is
# followed by a space. Searching for this is a fast literal scan; the full pattern is not.
_LINK_HINT = re.compile(r"\.[^\s<>\"'`{}|\\^]")
_TRAILING = ".,;:!?'\"*…»›>"
# Bare "name.ext" that is far more often a file name or code than a domain.
_FILE_LIKE_TLDS = frozenset({"py", "sh", "md", "zip", "mov", "rs", "pl", "ps", "so", "ts", "js", "cs", "sql", "txt", "pdf", "exe"})


def _trim(url: str) -> str:
    url = url.rstrip(_TRAILING)
    # Keep balanced brackets (Wikipedia-style paths), drop an unbalanced closer.
    for opener, closer in (("(", ")"), ("[", "]")):
        while url.endswith(closer) and url.count(closer) > url.count(opener):
            url = url[:-1].rstrip(_TRAILING)
    return url


def extract_urls(text: str) -> list[str]:
    """Links in `text` (defanged, spaced, full-width or scheme-less ones too), in
    order of appearance, each once, as written after refanging (not normalised)."""
    if not text:
        return []
    clean = refang(text)
    if "://" not in clean and not _LINK_HINT.search(clean):  # no link: the common case, found cheaply
        return []
    tlds = known_tlds()
    found: dict[str, None] = {}
    for match in _URL_PATTERN.finditer(clean):
        url = _trim(match.group(0))
        lower = url.lower()
        if not lower.startswith(("http://", "https://", "ftp://", "www")):
            host = lower.split("/", 1)[0].split(":", 1)[0]
            tld = host.rsplit(".", 1)[-1]
            if not _is_known_tld(tld, tlds):
                continue
            if tld in _FILE_LIKE_TLDS and "/" not in url:
                continue
        found.setdefault(url, None)
    return list(found)


def _is_known_tld(label: str, tlds: frozenset[str]) -> bool:
    if label.isascii():
        return label in tlds
    try:
        return idna.encode(label, uts46=True).decode() in tlds
    except idna.IDNAError:
        return False


# ---------------------------------------------------------------------------
# Normalisation

TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "ttclid", "li_fat_id",
    "igshid", "igsh", "mc_cid", "mc_eid", "mkt_tok", "_hsenc", "_hsmi", "__hstc", "__hssc", "__hsfp",
    "_ga", "_gl", "ref_src", "ref_url", "spm", "scm", "vero_id", "oly_anon_id", "oly_enc_id", "rb_clickid",
    "wickedid", "epik", "mibextid", "__cft__[0]", "__tn__", "zarsrc", "s_cid", "cmpid", "ocid", "sr_share",
})
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "hmb_", "__cft__")
DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}

SHORTENERS = frozenset({
    "bit.ly", "bitly.com", "j.mp", "t.co", "tinyurl.com", "goo.gl", "ow.ly", "is.gd", "v.gd", "buff.ly",
    "rebrand.ly", "cutt.ly", "cutt.us", "shorturl.at", "rb.gy", "tiny.cc", "bl.ink", "t.ly", "s.id",
    "lnkd.in", "fb.me", "on.fb.me", "amzn.to", "amzn.eu", "bbc.in", "nyti.ms", "wp.me", "dlvr.it", "ift.tt",
    "trib.al", "soo.gd", "shorte.st", "adf.ly", "tr.im", "qr.net", "tgr.ph", "reut.rs", "wapo.st", "cnn.it",
    "aje.io", "bzfd.it", "huff.to", "apne.ws", "ind.pn", "po.st", "su.pr", "x.co", "shorturl.asia",
    "tinyurl.vn", "rutgon.me", "bitly.vn", "gg.gg", "urlz.fr", "lc.cx", "tiny.one", "shorturl.gg",
    "surl.li", "u.to", "clck.ru", "goo.su", "linktr.ee", "lnk.to", "snip.ly", "short.io", "hyperurl.co",
    "qrco.de", "s.net.vn", "link1s.com", "1url.vn", "zalo.to", "tiktok.to", "vt.tiktok.com", "vm.tiktok.com",
    "youtu.be", "redd.it", "t.me", "wa.me", "m.me", "fb.watch", "g.co", "goo.by", "forms.gle", "maps.app.goo.gl",
})


@dataclass(slots=True)  # not frozen: frozen dataclasses are slow to build, and we build one per link
class NormalizedUrl:
    """A link in canonical form. `url` is what feeds are matched against."""

    original: str
    url: str
    scheme: str
    host: str  # ASCII (punycode) form, lower case, no trailing dot
    unicode_host: str
    port: int | None  # None when it is the scheme's default
    path: str
    query: str
    userinfo: str
    is_ip: bool
    ip_obfuscated: bool  # written as an integer, hex or octal instead of dotted decimal
    subdomain: str
    domain: str
    suffix: str
    is_private_suffix: bool
    removed_params: tuple[str, ...] = field(default=())

    @property
    def registered_domain(self) -> str:
        if self.is_ip:
            return self.host
        return f"{self.domain}.{self.suffix}" if self.domain and self.suffix else self.host

    @property
    def is_idn(self) -> bool:
        return "xn--" in self.host

    @property
    def is_shortener(self) -> bool:
        return self.host in SHORTENERS or self.host.removeprefix("www.") in SHORTENERS

    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host

    def feed_keys(self) -> tuple[str, str]:
        """Keys for URL-level feed entries: with and without the query (scheme-less,
        because lists mix http and https for the same payload)."""
        base = self.host_port + self.path
        return (f"{base}?{self.query}" if self.query else base, base)


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4_DOTTED = re.compile(rf"^{_OCTET}(?:\.{_OCTET}){{3}}$")
_IPV4_LOOSE = re.compile(r"^(?:0x[0-9a-f]+|[0-9]+)(?:\.(?:0x[0-9a-f]+|[0-9]+)){0,3}$", re.IGNORECASE)
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"


@lru_cache(maxsize=262_144)
def normalize_host(raw: str) -> tuple[str, str, bool, bool]:
    """(ascii_host, unicode_host, is_ip, ip_obfuscated). Raises ValueError on junk."""
    host = raw.strip().rstrip(".").lower()
    if not host:
        raise ValueError("empty host")
    if host.startswith("[") and host.endswith("]"):
        ip6 = ipaddress.IPv6Address(host[1:-1])
        return f"[{ip6.compressed}]", f"[{ip6.compressed}]", True, False
    if _IPV4_LOOSE.match(host):
        if _IPV4_DOTTED.match(host):
            return host, host, True, False
        try:
            # inet_aton accepts the integer/hex/octal forms browsers also accept.
            dotted = socket.inet_ntoa(socket.inet_aton(host))
        except OSError as exc:
            raise ValueError(f"bad IPv4 address '{host}'") from exc
        return dotted, dotted, True, True
    if host.isascii():
        ascii_host = host
        if "xn--" in host:
            try:
                unicode_host = idna.decode(host)
            except idna.IDNAError:
                unicode_host = ".".join(_decode_label(label) for label in host.split("."))
        else:
            unicode_host = host
    else:
        unicode_host = unicodedata.normalize("NFC", host)
        ascii_host = ".".join(_encode_label(label) for label in unicode_host.split("."))
    if len(ascii_host) > 253 or any(not label or len(label) > 63 for label in ascii_host.split(".")):
        raise ValueError(f"bad host name '{raw}'")
    if any(c in ascii_host for c in " /\\?#@<>\"'`{}|^%"):
        raise ValueError(f"bad character in host '{raw}'")
    return ascii_host, unicode_host, False, False


def _encode_label(label: str) -> str:
    if label.isascii():
        return label
    try:
        return idna.encode(label, uts46=True).decode("ascii")
    except idna.IDNAError:
        # Not valid IDNA 2008 (e.g. mixed scripts a registry would refuse): a browser
        # would still try it, so we keep the raw punycode to be able to score it.
        return "xn--" + label.encode("punycode").decode("ascii")


def _decode_label(label: str) -> str:
    if label.startswith("xn--"):
        try:
            return label[4:].encode("ascii").decode("punycode")
        except UnicodeError:
            return label
    return label


_NETLOC_END = re.compile(r"[/?#\\]")
_NON_WEB = re.compile(r"^(?:javascript|data|mailto|tel|file|about|blob|vbscript|sms|intent):", re.IGNORECASE)
_UNSAFE_PATH = re.compile(r"[^A-Za-z0-9/%:@!$&'()*+,;=\-._~]")
_UNSAFE_QUERY = re.compile(r"[^A-Za-z0-9=&/%:@!$'()*+,;?\-._~]")


def normalize_url(raw: str, *, strip_tracking: bool = True) -> NormalizedUrl:
    """Canonical form of one link (defanged or not). Raises InputError if it is not a web link."""
    text = refang(raw.strip())
    if not text:
        raise InputError("empty URL", field="url")
    if _NON_WEB.match(text):
        raise InputError(f"not a web link: {raw!r}", field="url")
    head = text[:12]
    if "://" not in head:
        text = "http://" + text.lstrip("/")
    scheme, _, rest = text.partition("://")
    scheme = scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InputError(f"not a web link (scheme '{scheme}'): {raw!r}", field="url")
    # Split by hand: urlsplit is the slowest step of scoring and we need less.
    boundary = _NETLOC_END.search(rest)
    end = boundary.start() if boundary else len(rest)
    netloc, tail = rest[:end], rest[end:]
    if "\\" in tail:
        tail = tail.replace("\\", "/")  # browsers read a backslash as a slash
    if "#" in tail:
        tail = tail.split("#", 1)[0]
    path, _, query = tail.partition("?")
    userinfo, _, hostport = netloc.rpartition("@")
    port_raw: int | None = None
    if hostport.startswith("["):
        close = hostport.find("]")
        if close == -1:
            raise InputError(f"bad IPv6 host in URL {raw!r}", field="url")
        host_raw, port_text = hostport[: close + 1], hostport[close + 2 :] if hostport[close + 1 : close + 2] == ":" else ""
    else:
        host_raw, _, port_text = hostport.partition(":")
    if port_text:
        if not port_text.isdigit() or int(port_text) > 65535:
            raise InputError(f"bad port '{port_text}' in URL {raw!r}", field="url")
        port_raw = int(port_text)
    try:
        host, unicode_host, is_ip, obfuscated = normalize_host(host_raw)
    except ValueError as exc:
        raise InputError(f"bad host in URL {raw!r}: {exc}", field="url") from exc
    port = None if port_raw is None or port_raw == DEFAULT_PORTS[scheme] else port_raw
    if not path:
        path = "/"
    elif _UNSAFE_PATH.search(path):
        path = quote(path, safe=_SAFE_PATH)
    if query:
        query, removed = _clean_query(query) if strip_tracking else (query, ())
    else:
        removed = ()
    hp = parts_of(host, is_ip)
    netloc_out = (f"{userinfo}@" if userinfo else "") + host + (f":{port}" if port else "")
    url = f"{scheme}://{netloc_out}{path}" + (f"?{query}" if query else "")
    return NormalizedUrl(
        original=raw, url=url, scheme=scheme, host=host, unicode_host=unicode_host, port=port, path=path,
        query=query, userinfo=userinfo, is_ip=is_ip, ip_obfuscated=obfuscated, subdomain=hp.subdomain,
        domain=hp.domain, suffix=hp.suffix, is_private_suffix=hp.is_private_suffix, removed_params=removed,
    )


def parts_of(host: str, is_ip: bool) -> HostParts:
    return HostParts("", "", "", False) if is_ip else split_host(host)


def _clean_query(query: str) -> tuple[str, tuple[str, ...]]:
    if not query:
        return "", ()
    if "=" not in query:
        return (quote(query, safe="=&/%:@!$'()*+,;?-._~") if _UNSAFE_QUERY.search(query) else query), ()
    low = query.lower()
    if not any(p in low for p in ("utm_", "clid", "id=", "_h", "_g", "ref_", "spm", "pk_", "mtm_", "hmb_", "igsh", "mc_", "tok", "cft", "tn__", "zarsrc", "cid", "sr_share", "epik", "vero", "oly_", "li_fat")):
        return (quote(query, safe="=&/%:@!$'()*+,;?-._~") if _UNSAFE_QUERY.search(query) else query), ()
    pairs = parse_qsl(query, keep_blank_values=True)
    kept = []
    removed = []
    for key, value in pairs:
        low = key.lower()
        if low in TRACKING_PARAMS or low.startswith(TRACKING_PREFIXES):
            removed.append(key)
        else:
            kept.append((key, value))
    if not removed:
        return (quote(query, safe="=&/%:@!$'()*+,;?-._~") if _UNSAFE_QUERY.search(query) else query), ()
    return urlencode(kept), tuple(removed)


def to_unicode_host(host: str) -> str:
    return normalize_host(host)[1]


def to_ascii_host(host: str) -> str:
    return normalize_host(host)[0]
