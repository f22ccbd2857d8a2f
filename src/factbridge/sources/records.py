"""Typed records of the sources' collections (org-scoped), each with one accessor, declared once
here (the style of `factbridge.pipeline.records`):

- `sources` (`sources.registry`, the `sources` commands and the webhook route): `SourceRecord`,
  through `Sources`;
- `webhook_signatures` (each signed webhook request is accepted once): `WebhookSignature`,
  through `WebhookSignatures`.

`to_doc(from_doc(d)) == d` for every stored document: `secret` (webhook sources, erased on
removal), `removed`, `removed_at` and `last_summary` (after the first run) appear in a
document only once set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from factbridge.backends.storage.base import DocumentStore, iter_docs
from factbridge.docfields import opt_text as _opt

SOURCES = "sources"
SIGNATURES = "webhook_signatures"


@dataclass(frozen=True)
class SourceRecord:
    """A configured source: its connector and options, schedule, cursor and last run."""

    name: str
    connector: str
    options: dict[str, Any] = field(default_factory=dict)
    interval_s: float = 3600.0
    cursor: Any = None  # the connector's own (a string, a number or a mapping)
    created_at: str = ""
    last_run_at: str | None = None
    last_status: str = "never run"
    last_error: str | None = None
    totals: dict[str, int] = field(default_factory=lambda: {"posts": 0, "factchecks": 0, "quarantined": 0, "runs": 0})
    secret: str | None = None
    removed: bool = False
    removed_at: str | None = None
    last_summary: dict[str, Any] | None = None
    present: frozenset[str] = frozenset()

    OPTIONAL = ("secret", "removed", "removed_at", "last_summary")

    def with_(self, **changes: Any) -> SourceRecord:
        """The record with `changes`; an optional field set here (even to None) is then stored."""
        return dataclasses.replace(self, **changes, present=self.present | {k for k in changes if k in self.OPTIONAL})

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name, "connector": self.connector, "options": dict(self.options), "interval_s": self.interval_s, "cursor": self.cursor,
            "created_at": self.created_at, "last_run_at": self.last_run_at, "last_status": self.last_status, "last_error": self.last_error,
            "totals": dict(self.totals),
        }
        for name in self.OPTIONAL:
            if name in self.present:
                doc[name] = getattr(self, name)
        return doc

    @classmethod
    def from_doc(cls, name: str, doc: Mapping[str, Any]) -> SourceRecord:
        totals, summary, options = doc.get("totals"), doc.get("last_summary"), doc.get("options")
        interval = doc.get("interval_s")
        return cls(
            name=str(doc.get("name") or name), connector=str(doc.get("connector") or ""),
            options={str(k): v for k, v in options.items()} if isinstance(options, Mapping) else {},
            interval_s=float(interval) if isinstance(interval, int | float) and not isinstance(interval, bool) else 3600.0,
            cursor=doc.get("cursor"), created_at=str(doc.get("created_at") or ""), last_run_at=_opt(doc.get("last_run_at")),
            last_status=str(doc.get("last_status") or ""), last_error=_opt(doc.get("last_error")),
            totals={str(k): int(v) for k, v in totals.items() if isinstance(v, int | float)} if isinstance(totals, Mapping) else {},
            secret=_opt(doc.get("secret")), removed=bool(doc.get("removed")), removed_at=_opt(doc.get("removed_at")),
            last_summary=dict(summary) if isinstance(summary, Mapping) else None,
            present=frozenset(k for k in cls.OPTIONAL if k in doc),
        )

    def public(self) -> dict[str, Any]:
        """The document without its secret (what lists and JSON output show)."""
        return {k: v for k, v in self.to_doc().items() if k != "secret"}


class Sources:
    """The one accessor of `sources` (one document per source name; removed ones stay, marked)."""

    def __init__(self, storage: DocumentStore) -> None:
        self.storage = storage

    def get(self, org: str, name: str) -> SourceRecord | None:
        """The source, removed or not; None when there never was one of that name."""
        doc = self.storage.get_docs(org, SOURCES, [name]).get(name)
        return SourceRecord.from_doc(name, doc) if doc is not None else None

    def put(self, org: str, source: SourceRecord) -> None:
        self.storage.put_docs(org, SOURCES, [(source.name, source.to_doc(), None)])

    def iter(self, org: str) -> Iterator[SourceRecord]:
        """Every source ever added (removed ones too), by name."""
        for name, doc in iter_docs(self.storage, org, SOURCES):
            yield SourceRecord.from_doc(name, doc)


@dataclass(frozen=True)
class WebhookSignature:
    """A signature of a webhook request already accepted (id: `<source>:<signature>`)."""

    id: str
    source: str
    at: float

    def to_doc(self) -> dict[str, Any]:
        return {"source": self.source, "at": self.at}

    @classmethod
    def from_doc(cls, signature_id: str, doc: Mapping[str, Any]) -> WebhookSignature:
        at = doc.get("at")
        return cls(id=signature_id, source=str(doc.get("source") or ""), at=float(at) if isinstance(at, int | float) else 0.0)


class WebhookSignatures:
    """The one accessor of `webhook_signatures` (sort key: when it was received)."""

    def __init__(self, storage: DocumentStore) -> None:
        self.storage = storage

    def seen(self, org: str, ids: Sequence[str]) -> dict[str, WebhookSignature]:
        docs = self.storage.get_docs(org, SIGNATURES, list(ids)) if ids else {}
        return {i: WebhookSignature.from_doc(i, d) for i, d in docs.items()}

    def put(self, org: str, signature: WebhookSignature) -> None:
        self.storage.put_docs(org, SIGNATURES, [(signature.id, signature.to_doc(), signature.at)])
