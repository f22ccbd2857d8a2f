"""Blocklist feeds: the formats desks actually receive, stored per organisation,
loaded into plain dicts for scoring.

Formats (``--format``; ``auto`` sniffs the content):

================  ===========================================================
``urlhaus-csv``   abuse.ch URLhaus CSV (``# id,dateadded,url,url_status,...``)
``list``          one URL or host per line: URLhaus text exports, OpenPhish
                  ``feed.txt``, plain domain lists; ``#``/``!`` comments
``openphish``     alias of ``list``
``domains``       one domain per line (a line with a path is refused)
``abp``           Adblock-style lines (``||host^``, ``||host/path^$all``,
                  ``|http://...|``) as published by urlhaus-filter, plus bare hosts
``hosts``         hosts file (``0.0.0.0 evil.example``)
``phishtank-json``  PhishTank ``online-valid.json``
``phishtank-csv``   PhishTank ``online-valid.csv``
================  ===========================================================

Every entry keeps its feed name and a date: the entry's own date where the
format has one (URLhaus ``dateadded``, PhishTank ``submission_time``), else the
feed date (``--date``, else an ``Updated:`` header line, else the file's
modification time; which one is recorded as ``date_source``).

Entries are either URL keys (scheme-less ``host[:port]/path[?query]``, lower
case, so http/https copies of one payload match) or hosts (a listed host also
covers its subdomains, never its parent). Lines that cannot be read are
quarantined with file and line; a file where most lines are unreadable is
refused as a whole (probably the wrong ``--format``).

Storage (document API, org-scoped):

* ``linkrisk_feeds``: one doc per feed name ``{name, format, source, sha256,
  feed_date, date_source, imported_at, entries, counts, chunks, quarantined}``;
* ``linkrisk_feed_entries``: the entries in chunks of `CHUNK` rows, ids
  ``{name}@{sha256[:12]}#{n}``, each ``{feed, sha256, rows: [[kind, key,
  date, threat], ...]}``. The feed doc is written last and names the chunks of
  its current version, so an interrupted update never mixes two versions and
  importing the same content twice writes nothing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from factbridge.backends.storage.base import Storage
from factbridge.errors import InputError
from factbridge.linkrisk.urls import normalize_host, normalize_url, split_host
from factbridge.models import Quarantined

FEEDS = "linkrisk_feeds"
FEED_ENTRIES = "linkrisk_feed_entries"
CHUNK = 5000
FORMATS = ("auto", "urlhaus-csv", "list", "openphish", "domains", "abp", "hosts", "phishtank-json", "phishtank-csv")

_DATE_HEADER = re.compile(r"(?:updated|last[ -]updated|last[ -]modified|generated|date)\s*[:=]\s*(\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?(?:Z|[+-]\d{2}:?\d{2}| UTC)?)", re.IGNORECASE)
_HOSTS_LINE = re.compile(r"^\s*(0\.0\.0\.0|127\.0\.0\.1|::1?|0)\s+\S", re.MULTILINE)
_SINK_HOSTS = frozenset({"localhost", "localhost.localdomain", "local", "broadcasthost", "ip6-localhost", "ip6-loopback", "0.0.0.0", "127.0.0.1"})


@dataclass(frozen=True)
class FeedEntry:
    kind: str  # "url" or "host"
    key: str
    date: str  # ISO date of the entry (or of the feed)
    threat: str = ""


@dataclass
class ParsedFeed:
    name: str
    format: str
    source: str
    entries: list[FeedEntry]
    quarantined: list[Quarantined]
    feed_date: str
    date_source: str
    skipped_allow_rules: int = 0

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for e in sorted(set(self.entries), key=lambda x: (x.kind, x.key, x.date, x.threat)):
            digest.update(f"{e.kind}\t{e.key}\t{e.date}\t{e.threat}\n".encode())
        return digest.hexdigest()

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for e in self.entries:
            out[e.kind] = out.get(e.kind, 0) + 1
        return out


# ---------------------------------------------------------------------------
# Keys


def url_key(raw: str) -> str:
    """The key a URL-level entry is stored and looked up under."""
    return normalize_url(raw).feed_keys()[0].lower()


def host_key(raw: str) -> str:
    host = raw.strip().lower()
    if host.startswith("*."):
        host = host[2:]
    ascii_host, _, is_ip, _ = normalize_host(host)
    if not is_ip and "." not in ascii_host:
        raise ValueError(f"not a domain name: '{raw}'")
    return ascii_host


# ---------------------------------------------------------------------------
# Parsing


def sniff_format(text: str) -> str:
    head = text.lstrip()[:4096]
    if head.startswith(("[", "{")):
        return "phishtank-json"
    first_rows = [line for line in head.splitlines() if line.strip() and not line.lstrip().startswith(("#", "!"))][:5]
    if first_rows and "phish_id" in first_rows[0]:
        return "phishtank-csv"
    if "urlhaus" in head.lower() and any(line.startswith('"') and '","' in line for line in first_rows):
        return "urlhaus-csv"
    if first_rows and sum(1 for line in first_rows if line.startswith("||") or line.startswith("|http")) >= max(1, len(first_rows) // 2):
        return "abp"
    if _HOSTS_LINE.search(head):
        return "hosts"
    return "list"


def parse_feed(path: str | Path, name: str | None = None, fmt: str = "auto", feed_date: str | None = None) -> ParsedFeed:
    """Read a feed file completely (nothing is stored here)."""
    source = Path(path)
    if fmt not in FORMATS:
        raise InputError(f"unknown feed format '{fmt}' (have: {', '.join(FORMATS)})", source=str(source), field="format")
    try:
        text = source.read_text(encoding="utf-8-sig", errors="strict")
    except FileNotFoundError as exc:
        raise InputError("feed file not found", source=str(source)) from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text: {exc.reason} at byte {exc.start}", source=str(source)) from exc
    fmt = sniff_format(text) if fmt == "auto" else fmt
    date_source = "option"
    if feed_date:
        feed_date = _iso_date(feed_date, str(source))
    else:
        match = _DATE_HEADER.search(text[:8192])
        if match:
            feed_date, date_source = _iso_date(match.group(1), str(source)), "header"
        else:
            feed_date = datetime.fromtimestamp(source.stat().st_mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            date_source = "file-mtime"
    feed = ParsedFeed(name=name or source.stem, format=fmt, source=str(source), entries=[], quarantined=[], feed_date=feed_date, date_source=date_source)
    parser = {
        "urlhaus-csv": _parse_urlhaus_csv, "phishtank-json": _parse_phishtank_json, "phishtank-csv": _parse_phishtank_csv,
    }.get(fmt)
    rows = parser(text, feed) if parser else _parse_lines(text, feed, fmt)
    seen: set[tuple[str, str]] = set()
    readable = 0
    for item in rows:
        if isinstance(item, Quarantined):
            feed.quarantined.append(item)
            continue
        readable += 1
        if (item.kind, item.key) not in seen:
            seen.add((item.kind, item.key))
            feed.entries.append(item)
    bad = len(feed.quarantined)
    if bad > 10 and bad > readable:
        first = feed.quarantined[0]
        raise InputError(f"{bad} of {bad + readable} lines unreadable as '{fmt}' (first, line {first.line}: {first.reason}); wrong --format?", source=str(source))
    return feed


def _iso_date(value: str, source: str) -> str:
    raw = value.strip().replace(" UTC", "Z")
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(f"not an ISO date: '{value}'", source=source, field="date") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bad(feed: ParsedFeed, line: int, reason: str, raw: str, field_name: str = "url") -> Quarantined:
    return Quarantined(kind="feed", source=feed.source, line=line, field=field_name, reason=reason, raw=raw[:500])


def _entry_for(value: str, feed: ParsedFeed, line: int, date: str, threat: str = "", want: str = "any") -> FeedEntry | Quarantined:
    value = value.strip()
    looks_like_url = "://" in value or "/" in value
    try:
        if looks_like_url:
            if want == "host":
                return _bad(feed, line, "a domain list line must not have a path", value)
            key = url_key(value)
            parsed = normalize_url(value)
            # A bare "http://host/" line lists the whole host.
            if parsed.path == "/" and not parsed.query and "://" in value and value.rstrip("/").count("/") <= 2:
                return FeedEntry("host", parsed.host_port if parsed.port else parsed.host, date, threat)
            return FeedEntry("url", key, date, threat)
        return FeedEntry("host", host_key(value), date, threat)
    except (InputError, ValueError) as exc:
        return _bad(feed, line, str(exc.reason if isinstance(exc, InputError) else exc), value)


def _parse_lines(text: str, feed: ParsedFeed, fmt: str) -> Iterator[FeedEntry | Quarantined]:
    want = "host" if fmt == "domains" else "any"
    for number, raw_line in enumerate(text.splitlines(), 1):
        line = raw_line.strip()
        if not line or line.startswith(("#", "!", "[Adblock")):
            continue
        if fmt == "hosts" or (fmt in {"list", "domains", "openphish"} and _HOSTS_LINE.match(line)):
            fields = line.split("#", 1)[0].split()
            if len(fields) < 2:
                yield _bad(feed, number, "hosts line needs an address and a name", line, "host")
                continue
            for name in fields[1:]:
                if name.lower() in _SINK_HOSTS:
                    continue
                yield _entry_for(name, feed, number, feed.feed_date, want="host")
            continue
        if line.startswith("@@"):
            feed.skipped_allow_rules += 1  # allow rules of adblock lists: never a hit
            continue
        if line.startswith("||"):
            body = line[2:].split("$", 1)[0].rstrip("^|")
            yield _entry_for(body, feed, number, feed.feed_date, want="any")
            continue
        if line.startswith("|"):
            yield _entry_for(line.strip("|").split("$", 1)[0].rstrip("^"), feed, number, feed.feed_date)
            continue
        line = re.split(r"\s+#", line, maxsplit=1)[0].strip()
        if " " in line or "\t" in line:
            if want == "host":
                yield _bad(feed, number, "a domain list line holds one domain", line, "host")
                continue
            line = line.split()[0]  # "url<TAB>date" style lists: the link comes first
        yield _entry_for(line, feed, number, feed.feed_date, want=want)


_URLHAUS_COLUMNS = ["id", "dateadded", "url", "url_status", "last_online", "threat", "tags", "urlhaus_link", "reporter"]


def _parse_urlhaus_csv(text: str, feed: ParsedFeed) -> Iterator[FeedEntry | Quarantined]:
    columns = _URLHAUS_COLUMNS
    body_lines: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            header = stripped.lstrip("#").strip()
            if header.startswith("id,") and "url" in header:
                columns = [c.strip() for c in header.split(",")]
            continue
        body_lines.append((number, line))
    if "url" not in columns:
        raise InputError("URLhaus CSV header has no 'url' column", source=feed.source)
    for number, line in body_lines:
        try:
            row = next(csv.reader([line]))
        except csv.Error as exc:
            yield _bad(feed, number, f"bad CSV: {exc}", line)
            continue
        if len(row) < len(columns) - 2 or len(row) <= columns.index("url"):
            yield _bad(feed, number, f"expected {len(columns)} columns, got {len(row)}", line)
            continue
        record = dict(zip(columns, row, strict=False))
        date = _row_date(record.get("dateadded", ""), feed)
        threat = ",".join(x for x in (record.get("threat", ""), record.get("tags", "")) if x)
        yield _entry_for(record["url"], feed, number, date, threat)


def _row_date(value: str, feed: ParsedFeed) -> str:
    if not value.strip():
        return feed.feed_date
    try:
        return _iso_date(value, feed.source)
    except InputError:
        return feed.feed_date


def _parse_phishtank_json(text: str, feed: ParsedFeed) -> Iterator[FeedEntry | Quarantined]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"bad JSON: {exc.msg}", source=feed.source, line=exc.lineno) from exc
    if isinstance(data, dict):
        data = data.get("data") or data.get("results") or []
    if not isinstance(data, list):
        raise InputError("PhishTank JSON must be a list of objects", source=feed.source)
    for index, item in enumerate(data, 1):
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            yield _bad(feed, index, "record has no 'url' string (line = record number)", json.dumps(item)[:500])
            continue
        if str(item.get("verified", "yes")).lower() in {"no", "false"}:
            continue
        date = _row_date(str(item.get("submission_time") or item.get("verification_time") or ""), feed)
        threat = f"phishing:{item.get('target')}" if item.get("target") else "phishing"
        yield _entry_for(item["url"], feed, index, date, threat)


def _parse_phishtank_csv(text: str, feed: ParsedFeed) -> Iterator[FeedEntry | Quarantined]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "url" not in reader.fieldnames:
        raise InputError("PhishTank CSV needs a 'url' column", source=feed.source, line=1, field="url")
    for row in reader:
        number = reader.line_num
        url = row.get("url") or ""
        if not url:
            yield _bad(feed, number, "empty url", json.dumps(row)[:500])
            continue
        if str(row.get("verified", "yes")).lower() in {"no", "false"}:
            continue
        date = _row_date(row.get("submission_time") or "", feed)
        threat = f"phishing:{row['target']}" if row.get("target") else "phishing"
        yield _entry_for(url, feed, number, date, threat)


# ---------------------------------------------------------------------------
# Storage


@dataclass
class FeedUpdate:
    name: str
    format: str
    status: str  # "new", "updated" or "unchanged"
    entries: int
    counts: dict[str, int]
    quarantined: list[Quarantined]
    feed_date: str
    date_source: str
    sha256: str


@dataclass(frozen=True)
class FeedRecord:
    """One stored feed (`linkrisk_feeds`, id = feed name): what was imported, when, and
    how many chunks of entries (`linkrisk_feed_entries`) hold its rows."""

    name: str
    format: str
    source: str
    sha256: str
    feed_date: str
    date_source: str
    imported_at: str
    entries: int
    counts: dict[str, int]
    chunks: int
    quarantined: int

    def chunk_ids(self) -> list[str]:
        return [f"{self.name}@{self.sha256[:12]}#{n}" for n in range(self.chunks)]

    def to_doc(self) -> dict[str, Any]:
        return {
            "name": self.name, "format": self.format, "source": self.source, "sha256": self.sha256, "feed_date": self.feed_date,
            "date_source": self.date_source, "imported_at": self.imported_at, "entries": self.entries, "counts": dict(self.counts),
            "chunks": self.chunks, "quarantined": self.quarantined,
        }

    @classmethod
    def from_doc(cls, name: str, doc: Mapping[str, Any]) -> FeedRecord:
        return cls(
            name=str(doc.get("name") or name), format=str(doc.get("format") or ""), source=str(doc.get("source") or ""),
            sha256=str(doc.get("sha256") or ""), feed_date=str(doc.get("feed_date") or ""), date_source=str(doc.get("date_source") or ""),
            imported_at=str(doc.get("imported_at") or ""), entries=int(doc.get("entries") or 0),
            counts={str(k): int(v) for k, v in dict(doc.get("counts") or {}).items()}, chunks=int(doc.get("chunks") or 0),
            quarantined=int(doc.get("quarantined") or 0),
        )


@dataclass(frozen=True)
class FeedChunk:
    """Up to `CHUNK` entries of one feed version (`linkrisk_feed_entries`)."""

    feed: str
    sha256: str
    rows: list[FeedEntry]

    def to_doc(self) -> dict[str, Any]:
        return {"feed": self.feed, "sha256": self.sha256, "rows": [[e.kind, e.key, e.date, e.threat] for e in self.rows]}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> FeedChunk:
        rows = [FeedEntry(str(r[0]), str(r[1]), str(r[2]), str(r[3]) if len(r) > 3 else "") for r in doc.get("rows") or ()]
        return cls(feed=str(doc.get("feed") or ""), sha256=str(doc.get("sha256") or ""), rows=rows)


class LinkRiskFeeds:
    """The one accessor of `linkrisk_feeds` and `linkrisk_feed_entries`."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, org: str, name: str) -> FeedRecord | None:
        doc = self.storage.get_docs(org, FEEDS, [name]).get(name)
        return FeedRecord.from_doc(name, doc) if doc is not None else None

    def all(self, org: str) -> list[FeedRecord]:
        """Every stored feed, the most recently imported first."""
        total = self.storage.count_docs(org, FEEDS)
        return [FeedRecord.from_doc(i, d) for i, d in self.storage.list_docs(org, FEEDS, limit=max(total, 1), order="sort_desc")]

    def put(self, org: str, record: FeedRecord, chunks: Sequence[FeedChunk]) -> None:
        """The chunks first, then the record that names them: a crash in between leaves
        the previous version's record (and its chunks) in force."""
        if chunks:
            self.storage.put_docs(org, FEED_ENTRIES, [(f"{record.name}@{record.sha256[:12]}#{n}", c.to_doc(), None) for n, c in enumerate(chunks)])
        self.storage.put_docs(org, FEEDS, [(record.name, record.to_doc(), time.time())])

    def chunks(self, org: str, record: FeedRecord) -> list[FeedChunk] | None:
        """The record's chunks in order, or None when one is missing."""
        ids = record.chunk_ids()
        docs = self.storage.get_docs(org, FEED_ENTRIES, ids)
        if any(i not in docs for i in ids):
            return None
        return [FeedChunk.from_doc(docs[i]) for i in ids]


def store_feed(storage: Storage, org: str, feed: ParsedFeed) -> FeedUpdate:
    """Store a parsed feed (idempotent: the same content writes nothing)."""
    feeds = LinkRiskFeeds(storage)
    sha = feed.sha256
    previous = feeds.get(org, feed.name)
    status = "new" if previous is None else ("unchanged" if previous.sha256 == sha else "updated")
    update = FeedUpdate(feed.name, feed.format, status, len(feed.entries), feed.counts(), feed.quarantined, feed.feed_date, feed.date_source, sha)
    if status == "unchanged":
        return update
    rows = sorted(feed.entries, key=lambda e: (e.kind, e.key))
    chunks = [FeedChunk(feed.name, sha, rows[start : start + CHUNK]) for start in range(0, len(rows), CHUNK)]
    if feed.quarantined:
        storage.add_quarantine(org, feed.quarantined)
    record = FeedRecord(
        name=feed.name, format=feed.format, source=feed.source, sha256=sha, feed_date=feed.feed_date, date_source=feed.date_source,
        imported_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), entries=len(rows), counts=feed.counts(), chunks=len(chunks),
        quarantined=len(feed.quarantined),
    )
    feeds.put(org, record, chunks)
    return update


def list_feeds(storage: Storage, org: str) -> list[FeedRecord]:
    return LinkRiskFeeds(storage).all(org)


# ---------------------------------------------------------------------------
# In-memory index


@dataclass(frozen=True)
class FeedHit:
    feed: str
    date: str
    kind: str  # "url" or "host"
    matched: str
    threat: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"feed": self.feed, "date": self.date, "kind": self.kind, "matched": self.matched, "threat": self.threat}


@dataclass
class FeedIndex:
    """URL keys and hosts -> (feed, date, threat). Lookups are dict hits only."""

    urls: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    hosts: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    feeds: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(map(len, self.urls.values())) + sum(map(len, self.hosts.values()))

    def add(self, feed: str, entries: Iterable[FeedEntry | list[str] | tuple[str, ...]]) -> None:
        for entry in entries:
            kind, key, date, threat = (entry.kind, entry.key, entry.date, entry.threat) if isinstance(entry, FeedEntry) else entry
            target = self.urls if kind == "url" else self.hosts
            target.setdefault(key, []).append((feed, date, threat))

    @property
    def version(self) -> str:
        return ",".join(f"{f['name']}@{f['feed_date'][:10]}" for f in self.feeds) or "none"

    def lookup(self, url_keys: Iterable[str], host: str, host_port: str = "") -> list[FeedHit]:
        hits: list[FeedHit] = []
        if self.urls:
            for key in dict.fromkeys(k.lower() for k in url_keys):
                for feed, date, threat in self.urls.get(key, ()):
                    hits.append(FeedHit(feed, date, "url", key, threat))
        if self.hosts:
            candidates = [host_port] if host_port and host_port != host else []
            candidates.append(host)
            if not host[:1].isdigit() and not host.startswith("["):
                registered = split_host(host).registered_domain
                labels = host.split(".")
                for i in range(1, len(labels) - 1):
                    parent = ".".join(labels[i:])
                    if len(parent) < len(registered):
                        break
                    candidates.append(parent)
            for candidate in candidates:
                for feed, date, threat in self.hosts.get(candidate, ()):
                    hits.append(FeedHit(feed, date, "host", candidate, threat))
        return hits


def load_feed_index(storage: Storage, org: str, exclude: Iterable[str] = ()) -> FeedIndex:
    """Every stored feed of this organisation (minus `exclude`) in memory."""
    skip = set(exclude)
    index = FeedIndex()
    feeds = LinkRiskFeeds(storage)
    for record in feeds.all(org):
        if record.name in skip:
            continue
        chunks = feeds.chunks(org, record)
        if chunks is None:
            raise InputError(f"feed '{record.name}' is incomplete in storage (missing chunks); run 'factbridge linkrisk update' again", field="feed")
        for chunk in chunks:
            index.add(record.name, chunk.rows)
        index.feeds.append({"name": record.name, "format": record.format, "feed_date": record.feed_date, "sha256": record.sha256, "entries": record.entries})
    return index


def index_from_parsed(feeds: Iterable[ParsedFeed]) -> FeedIndex:
    index = FeedIndex()
    for feed in feeds:
        index.add(feed.name, feed.entries)
        index.feeds.append({"name": feed.name, "format": feed.format, "feed_date": feed.feed_date, "sha256": feed.sha256, "entries": len(feed.entries)})
    return index
