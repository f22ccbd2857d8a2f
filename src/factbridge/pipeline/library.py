"""The fact-check library: read fact-checks from the formats desks receive.

Formats (`fmt="auto"` picks by content and extension):
  claimreview   schema.org ClaimReview JSON-LD: object, list, @graph, JSON Lines,
                or saved HTML pages with ld+json blocks
  google        Google Fact Check Tools `claims:search` JSON response
  csv           CSV with a column mapping (claim=..., rating=..., ...)
  checkthat     CheckThat! verified claims: 2022 vclaims (.jsonl, or a folder / .tar.gz
                of one JSON per claim) and 2020 verified_claims.docs.tsv
Every record that cannot be read becomes a `Quarantined` row naming file, line
and field; the rest of the file goes in. Files are read as streams with bounded
rows (`backends.connectors.reading.InputLimits`); a single JSON document or HTML
page is read whole up to `ingest_max_document_bytes`. Ids are strings or
integers, never objects or lists stringified.
"""

from __future__ import annotations

import json
import math
import tarfile
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from factbridge.backends.connectors.files import post_id_text
from factbridge.backends.connectors.reading import (
    DEFAULT_LIMITS,
    InputLimits,
    RowError,
    check_value,
    iter_csv_records,
    iter_json_lines,
    parse_json,
    peek_head,
)
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


Located = tuple[Item, int | None]
HEAD_BYTES = 1 << 16


def _quarantine(source: str, exc: Exception, line: int | None = None, raw: str = "") -> Quarantined:
    if isinstance(exc, InputError):
        return Quarantined(kind="factcheck", source=exc.source or source, line=exc.line or line, field=exc.field, reason=exc.reason, raw=raw[:2000])
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return Quarantined(kind="factcheck", source=source, line=line, field=".".join(map(str, err["loc"])), reason=err["msg"], raw=raw[:2000])
    if isinstance(exc, RowError):
        return Quarantined(kind="factcheck", source=source, line=exc.line, field=exc.field, reason=exc.reason, raw=raw[:2000])
    return Quarantined(kind="factcheck", source=source, line=line, reason=str(exc), raw=raw[:2000])


def _dump(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, default=str)[:2000]


def checkthat_vclaim(data: Mapping[str, Any], source: str, line: int | None = None) -> FactCheck:
    claim = str(data.get("vclaim") or "").strip()
    if data.get("vclaim_id") in (None, ""):
        raise InputError("missing vclaim_id", source=source, line=line, field="vclaim_id")
    vid = post_id_text(data.get("vclaim_id"), source, line, "vclaim_id")
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


def _checked(data: Any, source: str, line: int | None, limits: InputLimits) -> Quarantined | None:
    found = check_value(data, limits)
    if found is None:
        return None
    return Quarantined(kind="factcheck", source=source, line=line, field=found[0], reason=found[1], raw=_dump(data) if found[0] != "" else "")


def _from_json_value(data: Any, source: str, line: int | None, limits: InputLimits = DEFAULT_LIMITS) -> Iterator[Located]:
    if isinstance(data, dict) and "claims" in data and isinstance(data["claims"], list):
        claims = data["claims"]
        for n, claim in enumerate(claims):
            bad = _checked(claim, source, line, limits)
            if bad is not None:
                yield bad.model_copy(update={"field": f"claims[{n}].{bad.field or ''}".rstrip(".")}), line
                claims[n] = {}
        good = {**data, "claims": [c for c in claims if c]}
        try:
            for fc in factchecks_from_google(good, source):
                yield fc, line
        except (InputError, ValidationError) as exc:
            yield _quarantine(source, exc, line), line
        return
    if isinstance(data, dict) and "vclaim_id" in data:
        bad = _checked(data, source, line, limits)
        if bad is not None:
            yield bad, line
            return
        try:
            yield checkthat_vclaim(data, source, line), line
        except (InputError, ValidationError) as exc:
            yield _quarantine(source, exc, line, _dump(data)), line
        return
    nodes = list(iter_claimreview_nodes(data))
    if not nodes:
        yield Quarantined(kind="factcheck", source=source, line=line, field="@type", reason="no ClaimReview found", raw=_dump(data)), line
    for node in nodes:
        bad = _checked(node, source, line, limits)
        if bad is not None:
            yield bad, line
            continue
        try:
            yield factcheck_from_claimreview(node, source, line), line
        except (InputError, ValidationError) as exc:
            yield _quarantine(source, exc, line, _dump(node)), line


def _parse(text: str, line: int, limits: InputLimits) -> Any | RowError:
    return parse_json(text, line, limits)


def _read_stream(handle: IO[bytes], name: str, fmt: str, mapping: Mapping[str, str] | None, limits: InputLimits) -> Iterator[Located]:
    """One file (or archive member) as a stream: CSV, TSV and JSON Lines row by bounded row; a
    single JSON document or HTML page whole, up to `limits.max_document_bytes`."""
    suffix = Path(name).suffix.lower()
    if fmt == "csv" or (fmt == "auto" and suffix == ".csv"):
        yield from _read_csv(handle, name, mapping or {}, ",", limits)
        return
    if suffix == ".tsv" and fmt in {"auto", "checkthat"}:
        yield from _read_checkthat_tsv(handle, name, limits)
        return
    head_bytes, handle = peek_head(handle, HEAD_BYTES)
    head = head_bytes.decode("utf-8-sig", errors="ignore")
    html = suffix in {".html", ".htm"} or looks_like_html(head)
    stripped = head.lstrip()
    if not (fmt in {"auto", "claimreview"} and html) and (
        suffix == ".jsonl" or (stripped.startswith("{") and "\n{" in stripped and suffix != ".json")
    ):
        for n, value, raw in iter_json_lines(handle, limits):
            if isinstance(value, RowError):
                yield _quarantine(name, value, n, raw), n
            else:
                yield from _from_json_value(value, name, n, limits)
        return
    data = handle.read(limits.max_document_bytes + 1)
    if len(data) > limits.max_document_bytes:
        reason = (f"a single document larger than {limits.max_document_bytes:,} bytes (ingest_max_document_bytes):"
                  " split it, e.g. into JSON Lines (one fact-check per line)")
        yield Quarantined(kind="factcheck", source=name, reason=reason), None
        return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        yield Quarantined(kind="factcheck", source=name, reason=f"not UTF-8 text (byte {exc.start})"), None
        return
    del data
    if fmt in {"auto", "claimreview"} and html:
        blocks = jsonld_blocks_from_html(text)
        if not blocks:
            yield Quarantined(kind="factcheck", source=name, reason="no ld+json block in HTML page"), None
        for line, block in blocks:
            value = _parse(block, line, limits)
            if isinstance(value, RowError):
                value.reason = value.reason.replace("invalid JSON", "invalid JSON-LD", 1)
                yield _quarantine(name, value, line, block), value.line
                continue
            yield from _from_json_value(value, name, line, limits)
        return
    value = _parse(text, 1, limits)
    if isinstance(value, RowError):
        yield _quarantine(name, value, value.line, text[:500]), value.line
        return
    yield from _from_json_value(value, name, None, limits)


def _read_checkthat_tsv(handle: IO[bytes], name: str, limits: InputLimits) -> Iterator[Located]:
    header: list[str] | None = None
    claim_col = 1
    title_col = 2
    for record in iter_csv_records(handle, limits, "\t"):
        if isinstance(record, RowError):
            yield _quarantine(name, record), record.line
            continue
        row, n = record.cells, record.line
        if header is None:
            header = [c.strip().lower() for c in row]
            claim_col = header.index("vclaim") if "vclaim" in header else 1
            title_col = header.index("title") if "title" in header else 2
            continue
        vid = row[0].strip()
        claim = row[claim_col].strip() if len(row) > claim_col else ""
        title = row[title_col].strip() if len(row) > title_col else ""  # 28 rows of the 2020 file have none
        if not vid:
            yield Quarantined(kind="factcheck", source=name, line=n, field="id", reason="empty id", raw="\t".join(row)[:2000]), n
            continue
        if not claim and not title:
            yield Quarantined(kind="factcheck", source=name, line=n, field="vclaim", reason="neither vclaim nor title", raw="\t".join(row)[:2000]), n
            continue
        bad = _checked(row, name, n, limits)
        if bad is not None:
            yield bad, n
            continue
        yield FactCheck(id=vid, claim=claim or title, title=title, publisher="Snopes", language="en", source_format="checkthat-2020", raw={"row": row}), n


def _read_csv(handle: IO[bytes], name: str, mapping: Mapping[str, str], delimiter: str, limits: InputLimits) -> Iterator[Located]:
    columns: list[str] | None = None
    cols = {f: mapping.get(f, f) for f in CSV_FIELDS}
    for record in iter_csv_records(handle, limits, delimiter):
        if isinstance(record, RowError):
            yield _quarantine(name, record), record.line
            continue
        n = record.line
        if columns is None:
            columns = [c.strip() for c in record.cells]
            if cols["claim"] not in columns:
                reason = f"no column '{cols['claim']}' for the claim (columns: {', '.join(columns)}); map one with --map claim=COLUMN"
                yield Quarantined(kind="factcheck", source=name, line=n, field=cols["claim"], reason=reason), n
                return
            continue
        if len(record.cells) > len(columns):
            yield Quarantined(kind="factcheck", source=name, line=n, reason=f"{len(record.cells) - len(columns)} more cells than header columns", raw=record.raw[:2000]), n
            continue
        row = dict(zip(columns, record.cells, strict=False))
        bad = _checked(row, name, n, limits)
        if bad is not None:
            yield bad, n
            continue

        def get(f: str, row: dict[str, str] = row) -> str:
            return (row.get(cols[f]) or "").strip()

        claim = get("claim")
        if not claim:
            yield Quarantined(kind="factcheck", source=name, line=n, field=cols["claim"], reason="empty claim", raw=record.raw[:2000]), n
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
            if rating_value is not None and not math.isfinite(rating_value):
                raise InputError(f"number out of range: {get('rating_value')!r}", source=name, line=n, field=cols["rating_value"])
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
            ), n
        except (InputError, ValidationError) as exc:
            yield _quarantine(name, exc, n, record.raw), n


def read_factchecks_located(
    path: str | Path, fmt: str = "auto", mapping: Mapping[str, str] | None = None, limits: InputLimits = DEFAULT_LIMITS,
) -> Iterator[Located]:
    """`read_factchecks`, each item with the line it was read from (None for a whole document)."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format '{fmt}' (one of {', '.join(FORMATS)})", source=str(path))
    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", source=str(path))
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            yield from read_factchecks_located(child, fmt, mapping, limits)
        return
    if path.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(path) as tar:
            for member in tar:
                if member.isfile() and member.name.endswith((".json", ".jsonl", ".html", ".tsv", ".csv")):
                    name = f"{path}!{member.name}"
                    if member.size > limits.max_document_bytes and not member.name.endswith((".jsonl", ".tsv", ".csv")):
                        reason = f"a single document larger than {limits.max_document_bytes:,} bytes (ingest_max_document_bytes)"
                        yield Quarantined(kind="factcheck", source=name, reason=reason), None
                        continue
                    handle = tar.extractfile(member)
                    if handle is None:
                        continue
                    with handle:
                        yield from _read_stream(handle, name, fmt, mapping, limits)
        return
    with open(path, "rb") as handle:
        yield from _read_stream(handle, str(path), fmt, mapping, limits)


def read_factchecks(
    path: str | Path, fmt: str = "auto", mapping: Mapping[str, str] | None = None, limits: InputLimits = DEFAULT_LIMITS,
) -> Iterator[Item]:
    for item, _ in read_factchecks_located(path, fmt, mapping, limits):
        yield item


def read_factcheck_text(
    text: str, name: str, fmt: str = "auto", mapping: Mapping[str, str] | None = None, limits: InputLimits = DEFAULT_LIMITS,
) -> Iterator[Item]:
    """Fact-checks in a text already in memory (a fetched page or a request body: `name` is
    its URL or label), read exactly as a file would be."""
    import io

    for item, _ in _read_stream(io.BytesIO(text.encode("utf-8")), name, fmt, mapping, limits):
        yield item
