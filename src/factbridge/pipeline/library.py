"""The fact-check library: read fact-checks from the formats desks receive.

Formats (`fmt="auto"` picks by content and extension):
  claimreview   schema.org ClaimReview JSON-LD: object, list, @graph, JSON Lines,
                or saved HTML pages with ld+json blocks
  google        Google Fact Check Tools `claims:search` JSON response
  csv           CSV with a column mapping (claim=..., rating=..., ...)
  checkthat     CheckThat! verified claims: 2022 vclaims (.jsonl, or a folder / .tar.gz
                of one JSON per claim) and 2020 verified_claims.docs.tsv
Every record that cannot be read becomes a `Quarantined` row naming file, line
and field; the rest of the file goes in.
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from factbridge.errors import InputError
from factbridge.models import FactCheck, Quarantined
from factbridge.text.dates import parse_date_lenient
from factbridge.workflow.claimreview import (
    factcheck_from_claimreview,
    factchecks_from_google,
    iter_claimreview_nodes,
    jsonld_blocks_from_html,
    looks_like_html,
    stable_id,
)

Item = FactCheck | Quarantined
FORMATS = ("auto", "claimreview", "google", "csv", "checkthat")
CSV_FIELDS = ("id", "claim", "title", "rating", "rating_value", "publisher", "url", "language", "claim_date", "published_at", "claimant")

csv.field_size_limit(10 * 1024 * 1024)


def _quarantine(source: str, exc: Exception, line: int | None = None, raw: str = "") -> Quarantined:
    if isinstance(exc, InputError):
        return Quarantined(kind="factcheck", source=exc.source or source, line=exc.line or line, field=exc.field, reason=exc.reason, raw=raw[:2000])
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return Quarantined(kind="factcheck", source=source, line=line, field=".".join(map(str, err["loc"])), reason=err["msg"], raw=raw[:2000])
    return Quarantined(kind="factcheck", source=source, line=line, reason=str(exc), raw=raw[:2000])


def checkthat_vclaim(data: Mapping[str, Any], source: str, line: int | None = None) -> FactCheck:
    claim = str(data.get("vclaim") or "").strip()
    vid = str(data.get("vclaim_id") or "").strip()
    if not vid:
        raise InputError("missing vclaim_id", source=source, line=line, field="vclaim_id")
    if not claim and not data.get("title"):
        raise InputError("neither vclaim nor title", source=source, line=line, field="vclaim")
    return FactCheck(
        id=vid,
        claim=claim or str(data.get("title")),
        title=str(data.get("title") or ""),
        publisher="Snopes" if "-sno-" in vid else str(data.get("author") or ""),
        url=str(data.get("url") or ""),
        language="en",
        published_at=parse_date_lenient(data.get("date")),
        claimant="",
        source_format="checkthat-2022",
        raw=dict(data),
    )


def _from_json_value(data: Any, source: str, line: int | None) -> Iterator[Item]:
    if isinstance(data, dict) and "claims" in data and isinstance(data["claims"], list):
        try:
            yield from factchecks_from_google(data, source)
        except (InputError, ValidationError) as exc:
            yield _quarantine(source, exc, line)
        return
    if isinstance(data, dict) and "vclaim_id" in data:
        try:
            yield checkthat_vclaim(data, source, line)
        except (InputError, ValidationError) as exc:
            yield _quarantine(source, exc, line, json.dumps(data, ensure_ascii=False))
        return
    nodes = list(iter_claimreview_nodes(data))
    if not nodes:
        yield Quarantined(kind="factcheck", source=source, line=line, field="@type", reason="no ClaimReview found", raw=json.dumps(data, ensure_ascii=False)[:2000])
    for node in nodes:
        try:
            yield factcheck_from_claimreview(node, source, line)
        except (InputError, ValidationError) as exc:
            yield _quarantine(source, exc, line, json.dumps(node, ensure_ascii=False))


def _read_text(text: str, name: str, fmt: str, mapping: Mapping[str, str] | None) -> Iterator[Item]:
    suffix = Path(name).suffix.lower()
    if fmt == "csv" or (fmt == "auto" and suffix == ".csv"):
        yield from _read_csv(text, name, mapping or {}, delimiter=",")
        return
    if suffix == ".tsv" and fmt in {"auto", "checkthat"}:
        yield from _read_checkthat_tsv(text, name)
        return
    if fmt in {"auto", "claimreview"} and (suffix in {".html", ".htm"} or looks_like_html(text)):
        blocks = jsonld_blocks_from_html(text)
        if not blocks:
            yield Quarantined(kind="factcheck", source=name, reason="no ld+json block in HTML page")
        for line, block in blocks:
            try:
                data = json.loads(block)
            except json.JSONDecodeError as exc:
                yield Quarantined(kind="factcheck", source=name, line=line + exc.lineno - 1, reason=f"invalid JSON-LD: {exc.msg}", raw=block[:2000])
                continue
            yield from _from_json_value(data, name, line)
        return
    stripped = text.lstrip()
    if suffix == ".jsonl" or (stripped.startswith("{") and "\n{" in stripped and suffix != ".json"):
        for n, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                yield Quarantined(kind="factcheck", source=name, line=n, reason=f"invalid JSON: {exc.msg}", raw=raw[:2000])
                continue
            yield from _from_json_value(data, name, n)
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        yield Quarantined(kind="factcheck", source=name, line=exc.lineno, reason=f"invalid JSON: {exc.msg}", raw=text[:500])
        return
    yield from _from_json_value(data, name, None)


def _read_checkthat_tsv(text: str, name: str) -> Iterator[Item]:
    reader = csv.reader(io.StringIO(text), delimiter="\t")
    header = next(reader, None)
    if header is None:
        return
    cols = [c.strip().lower() for c in header]
    claim_col = cols.index("vclaim") if "vclaim" in cols else 1
    title_col = cols.index("title") if "title" in cols else 2
    for n, row in enumerate(reader, start=2):
        if not row or not any(c.strip() for c in row):
            continue
        vid = row[0].strip()
        claim = row[claim_col].strip() if len(row) > claim_col else ""
        title = row[title_col].strip() if len(row) > title_col else ""  # 28 rows of the 2020 file have none
        if not vid:
            yield Quarantined(kind="factcheck", source=name, line=n, field="id", reason="empty id", raw="\t".join(row)[:2000])
            continue
        if not claim and not title:
            yield Quarantined(kind="factcheck", source=name, line=n, field="vclaim", reason="neither vclaim nor title", raw="\t".join(row)[:2000])
            continue
        yield FactCheck(id=vid, claim=claim or title, title=title, publisher="Snopes", language="en", source_format="checkthat-2020", raw={"row": row})


def _read_csv(text: str, name: str, mapping: Mapping[str, str], delimiter: str) -> Iterator[Item]:
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    columns = reader.fieldnames or []
    cols = {f: mapping.get(f, f) for f in CSV_FIELDS}
    if cols["claim"] not in columns:
        yield Quarantined(kind="factcheck", source=name, line=1, field=cols["claim"], reason=f"no column '{cols['claim']}' for the claim (columns: {', '.join(columns)}); map one with --map claim=COLUMN")
        return
    for n, row in enumerate(reader, start=2):
        def get(f: str, row: dict[str, str] = row) -> str:
            return (row.get(cols[f]) or "").strip()

        claim = get("claim")
        if not claim:
            yield Quarantined(kind="factcheck", source=name, line=n, field=cols["claim"], reason="empty claim", raw=json.dumps(row, ensure_ascii=False)[:2000])
            continue
        try:
            dates: dict[str, datetime | None] = {}
            for f in ("claim_date", "published_at"):
                dates[f] = parse_date_lenient(get(f)) if get(f) else None
                if get(f) and dates[f] is None:
                    raise InputError(f"not a date: {get(f)!r}", source=name, line=n, field=cols[f])
            try:
                rating_value = float(get("rating_value")) if get("rating_value") else None
            except ValueError as exc:
                raise InputError(f"not a number: {get('rating_value')!r}", source=name, line=n, field=cols["rating_value"]) from exc
            yield FactCheck(
                id=get("id") or get("url") or stable_id(claim, get("publisher")),
                claim=claim,
                title=get("title"),
                rating=get("rating"),
                rating_value=rating_value,
                publisher=get("publisher"),
                url=get("url"),
                language=get("language") or None,
                claimant=get("claimant"),
                source_format="csv",
                raw=dict(row),
                claim_date=dates["claim_date"],
                published_at=dates["published_at"],
            )
        except (InputError, ValidationError) as exc:
            yield _quarantine(name, exc, n, json.dumps(row, ensure_ascii=False))


def read_factchecks(path: str | Path, fmt: str = "auto", mapping: Mapping[str, str] | None = None) -> Iterator[Item]:
    if fmt not in FORMATS:
        raise InputError(f"unknown format '{fmt}' (one of {', '.join(FORMATS)})", source=str(path))
    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", source=str(path))
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            yield from read_factchecks(child, fmt, mapping)
        return
    if path.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(path) as tar:
            for member in tar:
                if member.isfile() and member.name.endswith((".json", ".jsonl", ".html", ".tsv", ".csv")):
                    handle = tar.extractfile(member)
                    if handle is None:
                        continue
                    text = handle.read().decode("utf-8", errors="replace")
                    yield from _read_text(text, f"{path}!{member.name}", fmt, mapping)
        return
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", source=str(path)) from exc
    yield from _read_text(text, str(path), fmt, mapping)
