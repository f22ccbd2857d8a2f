"""Public reports: one `reports` document per reported post (the post itself is stored
with the others), with when it came in and, once the desk's answer was computed, the
claim it was grouped under (`claim_key`: the matched fact-check, or the report's words),
which the desk uses to count repeated reports of one claim."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from factbridge.backends.storage.base import DocumentStore

REPORTS = "reports"


@dataclass(frozen=True)
class Report:
    post_id: str
    received_at: str  # ISO 8601, seconds
    platform: str
    claim_key: str | None = None

    @property
    def sort_key(self) -> float:
        return datetime.fromisoformat(self.received_at).timestamp()

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"post_id": self.post_id, "received_at": self.received_at, "platform": self.platform}
        if self.claim_key is not None:
            doc["claim_key"] = self.claim_key
        return doc

    @classmethod
    def from_doc(cls, post_id: str, doc: Mapping[str, Any]) -> Report:
        key = doc.get("claim_key")
        return cls(post_id=str(doc.get("post_id") or post_id), received_at=str(doc.get("received_at") or ""),
                   platform=str(doc.get("platform") or ""), claim_key=str(key) if key is not None else None)


class Reports:
    """The one accessor of `reports`, newest first."""

    def __init__(self, storage: DocumentStore) -> None:
        self.storage = storage

    def put(self, org: str, report: Report) -> None:
        self.storage.put_docs(org, REPORTS, [(report.post_id, report.to_doc(), report.sort_key)])

    def get(self, org: str, post_id: str) -> Report | None:
        doc = self.storage.get_docs(org, REPORTS, [post_id]).get(post_id)
        return Report.from_doc(post_id, doc) if doc is not None else None

    def grouped_under(self, org: str, post_id: str, claim_key: str) -> None:
        """Record the claim a report was grouped under (nothing when it is not a report)."""
        found = self.get(org, post_id)
        if found is not None and found.claim_key != claim_key:
            self.put(org, replace(found, claim_key=claim_key))

    def newest(self, org: str, limit: int = 10) -> list[Report]:
        return [Report.from_doc(i, d) for i, d in self.storage.list_docs(org, REPORTS, limit=limit, order="sort_desc")]
