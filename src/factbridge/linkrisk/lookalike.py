"""Look-alike domains: hosts made to pass for an official one.

The protected list (shipped: ``factbridge/data/protected_domains.tsv``; replace
or extend it with the ``linkrisk_protected_domains`` setting) holds *zones*
(every host under ``gov.vn`` is the Vietnamese state) and *brands* (the
registered domain of one bank, wallet or platform, with the other domains its
owner uses). A host that is not official is compared with every entry:

=================  ==========================================================  ======
rule               example                                                     weight
=================  ==========================================================  ======
homoglyph          ``vietcombаnk.com.vn`` (Cyrillic а), ``paypa1.com``           0.90
subdomain_trick    ``gov.vn.example.com``, ``paypal.com.secure-login.top``       0.85
mixed_scripts      one label mixing Latin with Cyrillic/Greek/...                0.60
added_words        ``gov-vn-login.com``, ``vietcombank-uudai.com``, ``paypalsecure.net``  0.75
swapped_suffix     ``chinhphu.com`` for ``chinhphu.vn``                          0.70
typo               ``vietcombamk.com.vn``, ``techcombnak.com``, ``facebok.com``  0.75
brand_subdomain    ``vietcombank.verify-now.top`` (brand as a subdomain label)   0.50
brand_on_hosting   ``paypal.github.io``: the name as an account on a hosting     0.45
                   service (often the brand itself, so not flagged alone)
typo2              one unlikely substitution (``telegraf`` for ``telegram``) or  0.45
                   two edits on a long name: weak alone
=================  ==========================================================  ======

A *typo* is what fingers and eyes produce: a missing, doubled or swapped letter,
or a key next to the right one; any other single substitution is ``typo2``.

Names flagged *generic* (``apple``, ``smart``, ``caf``) are ordinary words, so only
the exact rules (homoglyph, subdomain trick, swapped suffix) apply to them;
names shorter than five letters get no edit-distance rule.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from rapidfuzz import process
from rapidfuzz.distance import OSA

from factbridge.errors import InputError
from factbridge.linkrisk.urls import split_host

RULE_WEIGHTS: dict[str, float] = {
    "homoglyph": 0.90,
    "subdomain_trick": 0.85,
    "added_words": 0.75,
    "typo": 0.75,
    "swapped_suffix": 0.70,
    "mixed_scripts": 0.60,
    "brand_subdomain": 0.50,
    "brand_on_hosting": 0.45,
    "typo2": 0.45,
}


@dataclass(frozen=True)
class ProtectedDomain:
    domain: str
    kind: str  # "zone" or "brand"
    owner: str
    country: str
    category: str
    alternates: tuple[str, ...] = ()
    is_global: bool = False
    is_generic: bool = False

    @property
    def label(self) -> str:
        """The distinctive name: ``vietcombank`` for vietcombank.com.vn, ``bakong`` for bakong.nbc.gov.kh."""
        return self.domain.split(".", 1)[0]

    @property
    def suffix(self) -> str:
        return self.domain.split(".", 1)[1] if "." in self.domain else ""

    @property
    def tokens(self) -> tuple[str, ...]:
        return tuple(self.domain.split("."))


@dataclass(frozen=True)
class LookalikeHit:
    rule: str
    target: str  # the protected domain imitated
    owner: str
    weight: float
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"rule": self.rule, "target": self.target, "owner": self.owner, "weight": self.weight, "detail": self.detail}


def default_protected_path() -> Path:
    return Path(str(files("factbridge") / "data" / "protected_domains.tsv"))


def load_protected(path: str | Path | None = None) -> list[ProtectedDomain]:
    """Read a protected-domains TSV (see the shipped file for the columns)."""
    source = Path(path) if path else default_protected_path()
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise InputError("protected domains file not found", source=str(source)) from exc
    out: list[ProtectedDomain] = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) < 2:
            raise InputError("expected tab-separated columns: domain, kind, owner, country, category, alternates, flags", source=str(source), line=number)
        cols += [""] * (7 - len(cols))
        domain, kind, owner, country, category, alternates, flags = (c.strip() for c in cols[:7])
        if kind not in {"zone", "brand"}:
            raise InputError(f"kind must be 'zone' or 'brand', got '{kind}'", source=str(source), line=number, field="kind")
        if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", domain.lower()):
            raise InputError(f"not a domain name: '{domain}'", source=str(source), line=number, field="domain")
        flag_set = {f.strip() for f in flags.split(",") if f.strip()}
        unknown = flag_set - {"global", "generic"}
        if unknown:
            raise InputError(f"unknown flags {sorted(unknown)}", source=str(source), line=number, field="flags")
        out.append(ProtectedDomain(
            domain=domain.lower(), kind=kind, owner=owner, country=country, category=category,
            alternates=tuple(a.strip().lower() for a in alternates.split(",") if a.strip()),
            is_global="global" in flag_set, is_generic="generic" in flag_set,
        ))
    return out


# ---------------------------------------------------------------------------
# Skeletons: what a label looks like, whatever characters spell it

_CONFUSABLES = str.maketrans({
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i",
    "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l", "к": "k", "м": "m",
    "н": "h", "т": "t", "ь": "b", "ɡ": "g", "п": "n", "г": "r", "л": "n", "д": "d", "з": "3", "ч": "4",
    # Armenian
    "ո": "n", "ս": "u", "օ": "o", "հ": "h", "ց": "g", "զ": "q",
    # Greek
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "τ": "t", "κ": "k", "ι": "i", "υ": "u", "ε": "e", "χ": "x",
    "β": "b", "γ": "y", "η": "n", "ω": "w", "μ": "u", "ϲ": "c", "ϳ": "j",
    # Latin lookalikes outside ASCII that NFKD does not fold
    "ı": "i", "ɩ": "i", "ł": "l", "ø": "o", "đ": "d", "ð": "d", "ß": "ss", "æ": "ae", "œ": "oe", "ɑ": "a",
    "ɢ": "g", "ʟ": "l", "ɴ": "n", "ʀ": "r", "ʏ": "y", "ᴄ": "c", "ᴏ": "o", "ᴘ": "p", "ꜱ": "s", "ᴜ": "u",
    "ᴠ": "v", "ᴡ": "w", "ᴢ": "z", "ƅ": "b", "ɗ": "d", "ɦ": "h", "ƙ": "k", "ɱ": "m", "ɲ": "n", "ƿ": "p",
})
# After folding: the ASCII substitutions phishers use (digits for letters, rn for m).
_ASCII_CONFUSABLES = str.maketrans({"0": "o", "1": "l", "i": "l", "|": "l", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s"})
_MULTI = (("rn", "m"), ("vv", "w"), ("cl", "d"))


@lru_cache(maxsize=131_072)
def skeleton(label: str) -> str:
    """A label reduced to how it looks: ``vіetcombаnk`` (Cyrillic), ``vietc0mbank`` and
    ``vietcornbank`` all give the skeleton of ``vietcombank``."""
    text = label.lower()
    if not text.isascii():
        text = text.translate(_CONFUSABLES)
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = text.translate(_ASCII_CONFUSABLES)
    for pair, single in _MULTI:
        text = text.replace(pair, single)
    return text


_SCRIPT_GROUPS = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "CJK": "CJK", "HANGUL": "CJK", "KATAKANA-HIRAGANA": "CJK"}


@lru_cache(maxsize=65_536)
def scripts_of(label: str) -> frozenset[str]:
    """Writing systems of the letters in a label (digits and hyphens belong to none)."""
    found = set()
    for char in label:
        if char.isascii():
            if char.isalpha():
                found.add("LATIN")
            continue
        if not char.isalpha():
            continue
        name = unicodedata.name(char, "")
        script = name.split(" ", 1)[0] if name else "UNKNOWN"
        found.add(_SCRIPT_GROUPS.get(script, script))
    return frozenset(found)


_TOKEN_SPLIT = re.compile(r"[-_.]+")


# ---------------------------------------------------------------------------
# Detector


@dataclass(eq=False)
class LookalikeDetector:
    protected: list[ProtectedDomain]
    version: str = field(init=False)

    def __post_init__(self) -> None:
        self.zones = {p.domain: p for p in self.protected if p.kind == "zone"}
        self.brands = [p for p in self.protected if p.kind == "brand"]
        self.official: dict[str, ProtectedDomain] = {}
        for p in self.brands:
            self.official[p.domain] = p
            for alt in p.alternates:
                self.official.setdefault(alt, p)
        self.official_labels = {d.split(".", 1)[0] for d in self.official}
        # Names for fuzzy rules: one entry per distinctive label.
        self.by_label: dict[str, ProtectedDomain] = {}
        for p in self.brands:
            self.by_label.setdefault(p.label, p)
        self.fuzzy_labels = [lab for lab, p in self.by_label.items() if len(lab) >= 5 and not p.is_generic]
        self.substring_labels = [(lab, lab.replace("-", "")) for lab in self.fuzzy_labels]
        self.skeletons: dict[str, ProtectedDomain] = {}
        for lab, p in self.by_label.items():
            if len(lab) >= 3:
                self.skeletons.setdefault(skeleton(lab), p)
        # Zone names as they appear glued into a label: govvn, gouvfr, govkh, govuk.
        self.zone_glued = {z.replace(".", ""): p for z, p in self.zones.items()}
        self.protected_domains = {p.domain: p for p in self.protected}
        digest = hashlib.sha256("\n".join(sorted(f"{p.domain}|{p.kind}|{','.join(p.alternates)}" for p in self.protected)).encode()).hexdigest()
        self.version = f"{len(self.protected)}:{digest[:10]}"
        # Per-instance caches: hosts and labels repeat a lot in a stream of posts.
        self.check_host = lru_cache(maxsize=131_072)(self._check_host)  # type: ignore[method-assign]
        self._label_matches = lru_cache(maxsize=131_072)(self._label_matches_uncached)  # type: ignore[method-assign]

    @classmethod
    def from_setting(cls, path: str = "") -> LookalikeDetector:
        """`path` empty: the shipped list; ``+FILE``: the shipped list plus FILE; FILE: FILE only."""
        if not path:
            return cls(load_protected())
        if path.startswith("+"):
            return cls([*load_protected(), *load_protected(path[1:])])
        return cls(load_protected(path))

    # -- official ------------------------------------------------------------
    def official_owner(self, host: str, registered_domain: str) -> ProtectedDomain | None:
        """The protected entry this host officially belongs to, if any."""
        if registered_domain in self.official:
            return self.official[registered_domain]
        if host in self.official:
            return self.official[host]
        for zone, entry in self.zones.items():
            if host == zone or host.endswith("." + zone):
                return entry
        return None

    # -- look-alike ----------------------------------------------------------
    def _check_host(self, host: str, unicode_host: str) -> tuple[LookalikeHit, ...]:
        parts = split_host(host)
        registered = parts.registered_domain or host
        if self.official_owner(host, registered):
            return ()
        hits: list[LookalikeHit] = []
        self._mixed_scripts(unicode_host, hits)
        self._subdomain_trick(host, parts.subdomain, parts.domain, hits)
        if parts.domain:
            unicode_labels = unicode_host.split(".")
            index = len(unicode_labels) - 2 - parts.suffix.count(".")
            label_unicode = unicode_labels[index] if 0 <= index < len(unicode_labels) else parts.domain
            self._label_rules(parts.domain, label_unicode, parts.suffix, parts.is_private_suffix, hits)
        for sub_label in parts.subdomain.split(".") if parts.subdomain else ():
            if sub_label in self.by_label and not self.by_label[sub_label].is_generic and len(sub_label) >= 4:
                p = self.by_label[sub_label]
                hits.append(self._hit("brand_subdomain", p, f"subdomain label '{sub_label}' names {p.owner} on {registered}"))
        best: dict[str, LookalikeHit] = {}
        for hit in hits:
            if hit.rule not in best or hit.weight > best[hit.rule].weight:
                best[hit.rule] = hit
        return tuple(sorted(best.values(), key=lambda h: -h.weight))

    def _hit(self, rule: str, target: ProtectedDomain, detail: str) -> LookalikeHit:
        return LookalikeHit(rule, target.domain, target.owner, RULE_WEIGHTS[rule], detail)

    def _mixed_scripts(self, unicode_host: str, hits: list[LookalikeHit]) -> None:
        if unicode_host.isascii():
            return
        for label in unicode_host.split("."):
            scripts = scripts_of(label)
            if len(scripts) > 1:
                target = self.skeletons.get(skeleton(label))
                entry = target or ProtectedDomain(domain="", kind="brand", owner="", country="", category="")
                hits.append(LookalikeHit("mixed_scripts", entry.domain, entry.owner, RULE_WEIGHTS["mixed_scripts"], f"label '{label}' mixes {', '.join(sorted(scripts))}"))

    def _subdomain_trick(self, host: str, subdomain: str, domain: str, hits: list[LookalikeHit]) -> None:
        if not subdomain:
            return
        labels = [*subdomain.split("."), domain]
        for size in (4, 3, 2):
            for start in range(0, len(labels) - size + 1):
                window = ".".join(labels[start : start + size])
                entry = self.protected_domains.get(window) or self.official.get(window)
                if entry:
                    hits.append(self._hit("subdomain_trick", entry, f"'{window}' sits inside {host}, which is not {entry.domain}"))
                    return

    def _label_rules(self, label: str, label_unicode: str, suffix: str, is_private_suffix: bool, hits: list[LookalikeHit]) -> None:
        for rule, entry, detail in self._label_matches(label, label_unicode, suffix, is_private_suffix):
            hits.append(self._hit(rule, entry, detail))

    def check_host(self, host: str, unicode_host: str) -> tuple[LookalikeHit, ...]:
        """Look-alike rules that fire for this host, strongest first (empty if official)."""
        return self._check_host(host, unicode_host)

    def _label_matches(self, label: str, label_unicode: str, suffix: str, is_private_suffix: bool) -> tuple[tuple[str, ProtectedDomain, str], ...]:
        return self._label_matches_uncached(label, label_unicode, suffix, is_private_suffix)

    def _label_matches_uncached(self, label: str, label_unicode: str, suffix: str, is_private_suffix: bool) -> tuple[tuple[str, ProtectedDomain, str], ...]:
        out: list[tuple[str, ProtectedDomain, str]] = []
        # Exact name, another suffix.
        if label in self.by_label:
            entry = self.by_label[label]
            # Three letters or fewer (x, acb, dhl) are too often someone else's name elsewhere.
            if len(label) >= 4 and suffix != entry.suffix and not (entry.is_global and _is_country_suffix(suffix)):
                if is_private_suffix:
                    out.append(("brand_on_hosting", entry, f"'{label}' is an account named after {entry.owner} on the hosting service {suffix}"))
                else:
                    out.append(("swapped_suffix", entry, f"'{label}.{suffix}' uses {entry.owner}'s name with another suffix than {entry.domain}"))
            return tuple(out)
        if label in self.official_labels:
            return ()
        # Same look, other characters.
        skel = skeleton(label_unicode)
        target = self.skeletons.get(skel)
        if target and label != target.label:
            out.append(("homoglyph", target, f"'{label_unicode}' looks like '{target.label}' ({target.domain})"))
            return tuple(out)
        # Words added to a protected name.
        tokens = [t for t in _TOKEN_SPLIT.split(label) if t]
        for i in range(len(tokens) - 1):
            pair = f"{tokens[i]}.{tokens[i + 1]}"
            if pair in self.zones:
                out.append(("added_words", self.zones[pair], f"'{label}' spells out {pair} with other words"))
                return tuple(out)
        for glued, zone in self.zone_glued.items():
            if glued in label.replace("-", ""):
                out.append(("added_words", zone, f"'{label}' contains '{glued}' ({zone.domain}) with other words"))
                return tuple(out)
        if len(tokens) > 1:
            for token in tokens:
                named = self.by_label.get(token)
                if named is not None and not named.is_generic:
                    out.append(("added_words", named, f"'{label}' adds words to '{token}' ({named.domain})"))
                    return tuple(out)
                if named is None and len(token) >= 5:
                    fuzzy = self.skeletons.get(skeleton(token))
                    if fuzzy and not fuzzy.is_generic:
                        out.append(("added_words", fuzzy, f"'{label}' adds words to a look-alike of '{fuzzy.label}' ({fuzzy.domain})"))
                        return tuple(out)
        squeezed = label.replace("-", "")
        for name, name_squeezed in self.substring_labels:
            if name in label or name_squeezed in squeezed:
                entry = self.by_label[name]
                out.append(("added_words", entry, f"'{label}' contains '{name}' ({entry.domain}) with other letters"))
                return tuple(out)
        # Typos: one edit (two on long names) from a protected name.
        if len(label) >= 4:
            for name, distance, _ in process.extract(label, self.fuzzy_labels, scorer=OSA.distance, score_cutoff=2, limit=3):
                entry = self.by_label[name]
                if distance == 1 or (distance == 2 and len(name) >= 9 and len(label) >= 8):
                    rule = "typo" if distance == 1 and _plausible_typo(label, name) else "typo2"
                    out.append((rule, entry, f"'{label}' is {distance} edit(s) from '{name}' ({entry.domain})"))
                    return tuple(out)
        return tuple(out)


_KEYBOARD_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")
_KEY_POSITION = {key: (row, col) for row, keys in enumerate(_KEYBOARD_ROWS) for col, key in enumerate(keys)}


def _adjacent_keys(a: str, b: str) -> bool:
    if a not in _KEY_POSITION or b not in _KEY_POSITION:
        return False
    (ra, ca), (rb, cb) = _KEY_POSITION[a], _KEY_POSITION[b]
    return abs(ra - rb) <= 1 and abs(ca - cb) <= 1


def _plausible_typo(label: str, name: str) -> bool:
    """One edit that fingers or eyes make: insertion, deletion, transposition, or a
    substitution by a neighbouring key or a look-alike letter."""
    if len(label) != len(name):
        return True  # one letter added or dropped
    diffs = [i for i in range(len(label)) if label[i] != name[i]]
    if len(diffs) != 1:
        return True  # a transposition (OSA distance 1, two positions differ)
    a, b = label[diffs[0]], name[diffs[0]]
    return _adjacent_keys(a, b) or skeleton(a) == skeleton(b) or {a, b} <= set("mn") or {a, b} <= set("uv")


def _is_country_suffix(suffix: str) -> bool:
    last = suffix.rsplit(".", 1)[-1]
    return len(last) == 2
