"""Triage queue entries as tests compare them across runs or code paths."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def comparable_entries(entries: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Each `QueueEntry`'s stored document by id, without its `updated_at`, and with its velocity
    examples sorted (exact copies tie in the vector search: their order is not defined) or, when
    there were more repeats than the examples list, their count only (which 10 is not defined)."""
    out: dict[str, dict[str, Any]] = {}
    for entry in entries:
        doc = entry.to_doc()
        doc.pop("updated_at", None)
        velocity = doc["components"]["velocity"]["evidence"]
        if "examples" in velocity:
            examples = velocity["examples"]
            velocity["examples"] = sorted(examples) if velocity["repeats"] <= len(examples) else len(examples)
        out[entry.id] = doc
    return out
