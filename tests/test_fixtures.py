"""The hand-written multilingual fixtures stay well-formed: other tests and the
eval commands read them, so a broken line or a gold id that is not in the
claim library would silently weaken every figure computed from them."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CROSSLINGUAL = FIXTURES / "crosslingual_2022.jsonl"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def test_crosslingual_queries_are_well_formed() -> None:
    rows = read_jsonl(CROSSLINGUAL)
    assert len(rows) == 60
    assert len({r["id"] for r in rows}) == 60
    assert Counter(r["language"] for r in rows) == {"vi": 20, "km": 20, "fr": 20}
    for row in rows:
        assert set(row) == {"id", "text", "language", "gold"}
        assert row["id"].startswith(f"xl-{row['language']}-")
        assert row["text"] == unicodedata.normalize("NFC", row["text"])
        assert len(row["gold"]) == 1
    # each claim is asked once per language, under the same number
    by_number: dict[str, set[str]] = {}
    for row in rows:
        by_number.setdefault(row["id"][-2:], set()).add(row["gold"][0])
    assert len(by_number) == 20 and all(len(golds) == 1 for golds in by_number.values())


def test_crosslingual_gold_ids_exist_in_the_claim_library(shared_data: Path) -> None:
    library = shared_data / "claim_retrieval" / "clef2022_2a_en" / "vclaims.jsonl"
    known = {row["vclaim_id"] for row in read_jsonl(library)}
    missing = {g for row in read_jsonl(CROSSLINGUAL) for g in row["gold"]} - known
    assert not missing
