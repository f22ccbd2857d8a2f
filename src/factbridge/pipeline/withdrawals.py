"""Withdrawn fact-checks: kept in the library, marked, and no longer matched as a debunk.

A publisher may withdraw a fact-check (our own: `CaseBook.decide_withdrawal`; a partner's: a
`withdrawal` item of its federation feed). Nothing is deleted: the library entry keeps its text,
vectors and history, and carries `raw["withdrawn"]` = {"at", "reason", ...}; its id is also
listed in the `library_withdrawn` collection, written in the same transaction as the decision,
which the matcher reads (it leaves these out of its library) and whose size is part of the
matcher cache's stamp (a withdrawal changes no vector, yet must reach a cached matcher).
The posts that matched it are then matched again (`pipeline.recheck.recheck_factchecks`), which
drops it from their matches, narratives and queue entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from factbridge.backends.storage.base import DocumentStore, iter_docs
from factbridge.models import FactCheck

WITHDRAWN = "library_withdrawn"


def withdrawal_of(fc: FactCheck | None) -> dict[str, Any] | None:
    """The withdrawal recorded on a library entry ({"at", "reason", ...}), or None."""
    value = (fc.raw or {}).get("withdrawn") if fc is not None else None
    return value if isinstance(value, dict) else None


class WithdrawnList:
    """The one accessor of `library_withdrawn` (id = library entry id; the document is the
    withdrawal itself, {"at", "reason", ...}, the same as the entry's `raw["withdrawn"]`).
    Writers add `rows(...)` to the transaction that records the decision."""

    def __init__(self, storage: DocumentStore) -> None:
        self.storage = storage

    def ids(self, org: str) -> set[str]:
        return {doc_id for doc_id, _ in iter_docs(self.storage, org, WITHDRAWN)}

    def count(self, org: str) -> int:
        return self.storage.count_docs(org, WITHDRAWN)

    @staticmethod
    def rows(factcheck_ids: Sequence[str], withdrawal: Mapping[str, Any]) -> tuple[str, list[tuple[str, dict[str, Any], float | None]]]:
        """The (collection, rows) write for `put_docs_batch`."""
        return WITHDRAWN, [(fc_id, dict(withdrawal), None) for fc_id in factcheck_ids]


def withdrawn_ids(storage: DocumentStore, org: str) -> set[str]:
    return WithdrawnList(storage).ids(org)


def mark(fc: FactCheck, withdrawal: dict[str, Any]) -> FactCheck:
    """The library entry marked withdrawn (a copy)."""
    return fc.model_copy(update={"raw": {**(fc.raw or {}), "withdrawn": dict(withdrawal)}})
