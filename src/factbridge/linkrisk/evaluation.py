"""`factbridge eval linkrisk`: how well link risk finds bad links and leaves good ones.

Three measurements, each printed by the CLI:

1. **Known-malicious recall** on blocklists (``../shared/data/urls/...``). Two
   figures per list: *held-out* recall, where the list itself (and every list
   given to the eval, since they come from one source) is NOT loaded, so a link
   counts only if the other signals flag it (look-alikes, raw IPs, suspicious
   TLDs, random labels, executable downloads...); and *lookup* recall with the
   list loaded, which only checks that parsing and matching lose nothing.
2. **False-positive rate on benign links** gathered from the shared fact-check
   and tweet data sets (see `gather_benign_urls` for exactly how).
3. **Look-alike precision/recall** on a labelled fixture of look-alike and
   legitimate domains (JSONL: ``{"domain", "label": "lookalike"|"legit",
   "target"?, "note"?}``).
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factbridge.errors import InputError
from factbridge.linkrisk.feeds import FeedEntry, ParsedFeed, index_from_parsed, parse_feed
from factbridge.linkrisk.lookalike import LookalikeDetector
from factbridge.linkrisk.scoring import LinkRiskScorer
from factbridge.linkrisk.urls import normalize_url

Progress = Callable[[int], None]


def entry_url(entry: FeedEntry) -> str:
    """The link a feed entry stands for (a listed host becomes its home page)."""
    return f"http://{entry.key}" if entry.kind == "url" else f"http://{entry.key}/"


def entry_kind(entry: FeedEntry) -> str:
    if entry.kind == "url":
        return "url"
    host = entry.key.split(":", 1)[0]
    return "ip" if host.replace(".", "").isdigit() or host.startswith("[") else "host"


@dataclass
class ListRecall:
    name: str
    entries: int
    held_out_flagged: int
    lookup_flagged: int
    by_kind: dict[str, dict[str, int]]
    reasons: dict[str, int]
    unscorable: int = 0

    @property
    def held_out_recall(self) -> float:
        return self.held_out_flagged / self.entries if self.entries else 0.0

    @property
    def lookup_recall(self) -> float:
        return self.lookup_flagged / self.entries if self.entries else 0.0


def blocklist_recall(feeds: Sequence[ParsedFeed], lookalikes: LookalikeDetector, threshold: float, progress: Progress | None = None) -> list[ListRecall]:
    held_out = LinkRiskScorer(None, lookalikes, threshold)  # no list from this source loaded
    out = []
    for feed in feeds:
        lookup = LinkRiskScorer(index_from_parsed([feed]), lookalikes, threshold)
        by_kind: dict[str, dict[str, int]] = {}
        reasons: Counter[str] = Counter()
        flagged = looked_up = unscorable = 0
        for entry in feed.entries:
            kind = entry_kind(entry)
            row = by_kind.setdefault(kind, {"entries": 0, "held_out_flagged": 0, "lookup_flagged": 0})
            row["entries"] += 1
            url = entry_url(entry)
            try:
                risk = held_out.score(url)
                found = lookup.score(url)
            except InputError:
                unscorable += 1
                continue
            if risk.flagged:
                flagged += 1
                row["held_out_flagged"] += 1
                reasons.update({r.code for r in risk.reasons})
            if found.flagged:
                looked_up += 1
                row["lookup_flagged"] += 1
            if progress:
                progress(1)
        out.append(ListRecall(feed.name, len(feed.entries), flagged, looked_up, by_kind, dict(reasons.most_common()), unscorable))
    return out


# ---------------------------------------------------------------------------
# Benign links

_URL_IN_TEXT = re.compile(r"https?://[^\s\"'<>\\|]+")
_TRUNCATED = ("…", "...", "\u2026")


@dataclass
class BenignSet:
    urls: list[str]
    sources: dict[str, int]
    dropped: dict[str, int]
    per_domain_cap: int
    how: str = ""

    @property
    def hosts(self) -> int:
        return len({normalize_url(u).host for u in self.urls})


def _pheme_urls(path: Path) -> Iterator[str]:
    for tweet in json.loads(path.read_text(encoding="utf-8")):
        entities = tweet.get("entities") or {}
        for item in (entities.get("urls") or []) + (entities.get("media") or []):
            if item.get("expanded_url"):
                yield item["expanded_url"]


def _csv_columns(path: Path, columns: Sequence[str]) -> Iterator[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            for col in columns:
                value = row.get(col) or ""
                if value.startswith("http"):
                    yield value


def _regex_urls(path: Path) -> Iterator[str]:
    text = path.read_text(encoding="utf-8", errors="replace").replace("\\/", "/")
    yield from _URL_IN_TEXT.findall(text)


def benign_sources(shared: Path) -> list[tuple[str, Path, Callable[[Path], Iterable[str]]]]:
    """(label, file, reader) for every shared file that carries links people posted."""
    sources: list[tuple[str, Path, Callable[[Path], Iterable[str]]]] = []
    for path in sorted((shared / "rumours" / "pheme").glob("*.json")):
        sources.append(("rumours/pheme (tweet entities expanded_url)", path, _pheme_urls))
    pyc = shared / "coordination" / "pycoornet"
    if (pyc / "ct_shares.csv").exists():
        sources.append(("coordination/pycoornet ct_shares (expanded, account.url)", pyc / "ct_shares.csv", lambda p: _csv_columns(p, ["expanded", "account.url"])))
    if (pyc / "sample_ct_out.csv").exists():
        sources.append(("coordination/pycoornet sample_ct_out (link, expanded, postUrl, account_url)", pyc / "sample_ct_out.csv", lambda p: _csv_columns(p, ["link", "expanded", "postUrl", "account_url"])))
    if (pyc / "telesurenglish2017-1000.csv").exists():
        sources.append(("coordination/pycoornet telesur stories (url, guid, media_url)", pyc / "telesurenglish2017-1000.csv", lambda p: _csv_columns(p, ["url", "guid", "media_url"])))
    for folder, label in (("claim_retrieval", "claim_retrieval tweets and claims (links in text)"), ("checkworthiness", "checkworthiness tweets (links in text and tweet_url)")):
        for path in sorted((shared / folder).rglob("*")):
            if path.suffix in {".tsv", ".jsonl", ".json", ".csv"} and path.is_file():
                sources.append((label, path, _regex_urls))
    return sources


def gather_benign_urls(shared: Path, per_domain_cap: int = 200) -> BenignSet:
    """Links that appear in the shared fact-check, rumour, check-worthiness and
    coordination data sets: news sites, platforms, fact-checkers. Each is
    normalised; truncated links (ending in '...'), links whose host has no
    public suffix (typos such as ``blogspot.con``, ``news-b``) and raw IP hosts
    are dropped as not real-looking; duplicates are removed after
    normalisation; at most `per_domain_cap` links per registered domain are kept
    (first seen first) so twitter.com and t.co do not drown the rest."""
    seen: set[str] = set()
    per_domain: Counter[str] = Counter()
    urls: list[str] = []
    sources: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    for label, path, reader in benign_sources(shared):
        for raw in reader(path):
            raw = raw.strip()
            if raw.endswith(_TRUNCATED) or "…" in raw:
                dropped["truncated"] += 1
                continue
            raw = raw.rstrip(".,;:!?)]}'\"")
            try:
                n = normalize_url(raw)
            except InputError:
                dropped["unparseable"] += 1
                continue
            if n.is_ip:
                dropped["ip host"] += 1
                continue
            if not n.suffix or not n.domain:
                dropped["no public suffix"] += 1
                continue
            if n.url in seen:
                dropped["duplicate"] += 1
                continue
            seen.add(n.url)
            if 0 < per_domain_cap <= per_domain[n.registered_domain]:
                dropped[f"over {per_domain_cap} per domain"] += 1
                continue
            per_domain[n.registered_domain] += 1
            urls.append(raw)
            sources[label] += 1
    how = (
        f"{len(urls)} links from {len(per_domain)} registered domains: expanded_url of PHEME tweet entities, CrowdTangle/MediaCloud link columns "
        f"of pycoornet, and http(s) links found in the claim_retrieval and checkworthiness files; truncated, suffix-less and IP links dropped, "
        f"deduplicated after normalisation, " + (f"at most {per_domain_cap} per registered domain" if per_domain_cap > 0 else "no cap per domain") + ". (coortweet has anonymised ids only: no links.)"
    )
    return BenignSet(urls, dict(sources), dict(dropped), per_domain_cap, how)


@dataclass
class BenignResult:
    urls: int
    flagged: int
    hosts: int
    flagged_hosts: int
    reasons: dict[str, int]
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fpr(self) -> float:
        return self.flagged / self.urls if self.urls else 0.0

    @property
    def host_fpr(self) -> float:
        return self.flagged_hosts / self.hosts if self.hosts else 0.0


def benign_false_positives(urls: Sequence[str], scorer: LinkRiskScorer, progress: Progress | None = None, examples: int = 15) -> BenignResult:
    flagged = 0
    hosts: set[str] = set()
    bad_hosts: set[str] = set()
    reasons: Counter[str] = Counter()
    shown: list[dict[str, Any]] = []
    for url in urls:
        risk = scorer.score(url)
        hosts.add(risk.host)
        if risk.flagged:
            flagged += 1
            bad_hosts.add(risk.host)
            reasons.update({r.code for r in risk.reasons})
            if len(shown) < examples:
                shown.append({"url": url, "score": round(risk.score, 3), "reasons": [r.code for r in risk.reasons]})
        if progress:
            progress(1)
    return BenignResult(len(urls), flagged, len(hosts), len(bad_hosts), dict(reasons.most_common()), shown)


# ---------------------------------------------------------------------------
# Look-alike fixture


@dataclass
class LookalikeResult:
    lookalikes: int
    legit: int
    true_positive: int
    false_positive: int
    false_negative: int
    target_correct: int
    by_rule: dict[str, int]
    errors: list[dict[str, Any]]

    @property
    def precision(self) -> float:
        found = self.true_positive + self.false_positive
        return self.true_positive / found if found else 0.0

    @property
    def recall(self) -> float:
        return self.true_positive / self.lookalikes if self.lookalikes else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def read_lookalike_fixture(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise InputError("look-alike fixture not found (give --lookalikes FILE)", source=str(path))
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"bad JSON: {exc.msg}", source=str(path), line=number) from exc
        if row.get("label") not in {"lookalike", "legit"} or not isinstance(row.get("domain"), str):
            raise InputError("needs 'domain' and 'label' (lookalike or legit)", source=str(path), line=number, field="label")
        rows.append(row)
    return rows


def lookalike_quality(rows: Sequence[dict[str, str]], detector: LookalikeDetector, threshold: float = 0.5) -> LookalikeResult:
    """A domain counts as detected when a look-alike rule strong enough to flag the
    link on its own (weight >= `threshold`) fires for it."""
    tp = fp = fn = target_ok = 0
    by_rule: Counter[str] = Counter()
    errors: list[dict[str, Any]] = []
    for row in rows:
        n = normalize_url(row["domain"])
        hits = detector.check_host(n.host, n.unicode_host)
        detected = bool(hits) and hits[0].weight >= threshold
        if row["label"] == "lookalike":
            if detected:
                tp += 1
                by_rule[hits[0].rule] += 1
                if not row.get("target") or any(h.target == row["target"] for h in hits):
                    target_ok += 1
            else:
                fn += 1
                errors.append({"domain": row["domain"], "expected": "lookalike", "target": row.get("target", "")})
        elif detected:
            fp += 1
            errors.append({"domain": row["domain"], "expected": "legit", "rule": hits[0].rule, "target": hits[0].target})
    looks = sum(1 for r in rows if r["label"] == "lookalike")
    return LookalikeResult(looks, len(rows) - looks, tp, fp, fn, target_ok, dict(by_rule), errors)


def load_lists(data: Path) -> list[ParsedFeed]:
    """Every blocklist file under `data` (a file, or a folder searched for *.txt/*.csv/*.json)."""
    if data.is_file():
        paths = [data]
    elif data.is_dir():
        paths = sorted(p for p in data.rglob("*") if p.suffix in {".txt", ".csv", ".json"} and p.name != "SOURCE.txt")
    else:
        raise InputError("blocklist data not found", source=str(data))
    if not paths:
        raise InputError("no blocklist files (*.txt, *.csv, *.json) found", source=str(data))
    return [parse_feed(p) for p in paths]
