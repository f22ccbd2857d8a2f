"""Typed records of the collections that several modules read, each with one accessor,
declared once here: readers use the fields the writing stage stores, never guesses.

- `narrative_members` (written by the narratives stage): `NarrativeMembership`, read
  through `NarrativeMembers`;
- `queue` (written by the triage stage): `QueueEntry`, read and written through
  `TriageQueue` (pages, API, CLI and triage itself).

The stage ledger has its own module (`factbridge.pipeline.ledger`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from factbridge.backends.storage.base import Storage

MEMBERS = "narrative_members"
QUEUE = "queue"


@dataclass(frozen=True)
class NarrativeMembership:
    post_id: str
    narrative_id: str
    method: str = ""
    similarity: float | None = None
    neighbour: str | None = None
    time: str = ""
    language: str | None = None
    decided_by: str = ""

    @classmethod
    def from_doc(cls, post_id: str, doc: Mapping[str, Any]) -> NarrativeMembership:
        similarity = doc.get("similarity")
        return cls(
            post_id=str(doc.get("post_id") or post_id), narrative_id=str(doc.get("narrative_id") or ""), method=str(doc.get("method") or ""),
            similarity=float(similarity) if isinstance(similarity, int | float) else None,
            neighbour=str(doc["neighbour"]) if doc.get("neighbour") else None, time=str(doc.get("time") or ""),
            language=str(doc["language"]) if doc.get("language") else None, decided_by=str(doc.get("decided_by") or ""),
        )


class NarrativeMembers:
    """The one accessor of `narrative_members` (one document per post)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def get(self, org: str, post_ids: Sequence[str]) -> dict[str, NarrativeMembership]:
        docs = self.storage.get_docs(org, MEMBERS, list(post_ids)) if post_ids else {}
        found = {pid: NarrativeMembership.from_doc(pid, doc) for pid, doc in docs.items()}
        return {pid: m for pid, m in found.items() if m.narrative_id}

    def count(self, org: str) -> int:
        return self.storage.count_docs(org, MEMBERS)


@dataclass(frozen=True)
class Component:
    value: float
    weight: float | None = None
    contribution: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return {"value": self.value, "weight": self.weight, "contribution": self.contribution, "evidence": self.evidence}

    @classmethod
    def from_doc(cls, doc: Any) -> Component:
        if isinstance(doc, Mapping):
            return cls(_float(doc.get("value")) or 0.0, _float(doc.get("weight")), _float(doc.get("contribution")), dict(doc.get("evidence") or {}))
        return cls(_float(doc) or 0.0)


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class QueueEntry:
    """A triage queue entry: a post (id = post id) or a narrative (id = "narrative:<id>")."""

    id: str
    kind: Literal["post", "narrative"]
    priority: float
    components: dict[str, Component] = field(default_factory=dict)
    decided_by: dict[str, str] = field(default_factory=dict)
    gated: bool = False
    gate_reason: str | None = None
    updated_at: str = ""
    post_id: str | None = None
    narrative_id: str | None = None
    title: str = ""
    text: str = ""
    language: str | None = None
    platform: str = ""
    created_at: str | None = None
    narratives: list[str] = field(default_factory=list)  # a post's narratives
    post_ids: list[str] = field(default_factory=list)  # a narrative's members (first 50)

    @property
    def sort_key(self) -> float:
        """Gated entries sort below every ungated one (priorities live in [0, 1])."""
        return self.priority - 1.0 if self.gated else self.priority

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "kind": self.kind, "priority": self.priority, "gated": self.gated, "gate_reason": self.gate_reason,
            "components": {name: c.to_doc() for name, c in self.components.items()}, "decided_by": dict(self.decided_by),
            "updated_at": self.updated_at, "text": self.text,
        }
        if self.kind == "post":
            doc.update(post_id=self.post_id, language=self.language, platform=self.platform, created_at=self.created_at, narratives=list(self.narratives))
        else:
            doc.update(narrative_id=self.narrative_id, title=self.title, post_ids=list(self.post_ids))
        return doc

    @classmethod
    def from_doc(cls, entry_id: str, doc: Mapping[str, Any]) -> QueueEntry:
        kind: Literal["post", "narrative"] = "narrative" if doc.get("kind") == "narrative" or entry_id.startswith("narrative:") else "post"
        decided = doc.get("decided_by")
        decided_by = {str(k): str(v) for k, v in decided.items()} if isinstance(decided, Mapping) else ({"triage": str(decided)} if decided else {})
        components = doc.get("components")
        return cls(
            id=entry_id, kind=kind, priority=_float(doc.get("priority")) or 0.0,
            components={str(k): Component.from_doc(v) for k, v in components.items()} if isinstance(components, Mapping) else {},
            decided_by=decided_by, gated=bool(doc.get("gated")), gate_reason=str(doc["gate_reason"]) if doc.get("gate_reason") else None,
            updated_at=str(doc.get("updated_at") or ""),
            post_id=str(doc.get("post_id") or entry_id) if kind == "post" else None,
            narrative_id=str(doc.get("narrative_id") or entry_id.removeprefix("narrative:")) if kind == "narrative" else None,
            title=str(doc.get("title") or ""), text=str(doc.get("text") or ""),
            language=str(doc["language"]) if doc.get("language") else None, platform=str(doc.get("platform") or ""),
            created_at=str(doc["created_at"]) if doc.get("created_at") else None,
            narratives=[str(n) for n in doc.get("narratives") or []], post_ids=[str(p) for p in doc.get("post_ids") or []],
        )


class TriageQueue:
    """The one accessor of the `queue` collection."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def put(self, org: str, entries: Sequence[QueueEntry]) -> None:
        if entries:
            self.storage.put_docs(org, QUEUE, [(e.id, e.to_doc(), e.sort_key) for e in entries])

    def get(self, org: str, ids: Sequence[str]) -> dict[str, QueueEntry]:
        docs = self.storage.get_docs(org, QUEUE, list(ids)) if ids else {}
        return {i: QueueEntry.from_doc(i, d) for i, d in docs.items()}

    def top(self, org: str, limit: int = 20, kind: str = "all") -> list[QueueEntry]:
        """Highest priority first (gated entries last); `kind`: all, post or narrative."""
        out: list[QueueEntry] = []
        offset = 0
        page = max(limit, 100)
        while len(out) < limit:
            rows = self.storage.list_docs(org, QUEUE, limit=page, offset=offset, order="sort_desc")
            out.extend(e for e in (QueueEntry.from_doc(i, d) for i, d in rows) if kind == "all" or e.kind == kind)
            if len(rows) < page:
                break
            offset += len(rows)
        return out[:limit]
