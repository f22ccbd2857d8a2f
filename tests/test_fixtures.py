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


def test_demo_sample_reads_with_exactly_the_planted_defects() -> None:
    from factbridge.backends.connectors.files import read_posts
    from factbridge.demo import sample_dir
    from factbridge.models import FactCheck, Post, Quarantined
    from factbridge.pipeline.library import read_factchecks

    sample = sample_dir()
    factchecks = [item for path in sorted(sample.glob("factchecks*")) for item in read_factchecks(path)]
    assert all(isinstance(fc, FactCheck) for fc in factchecks)
    assert Counter(fc.language for fc in factchecks if isinstance(fc, FactCheck)) == {"en": 5, "fr": 4, "vi": 5, "km": 5}
    items = list(read_posts(sample / "posts.jsonl"))
    posts = [p for p in items if isinstance(p, Post)]
    bad = [q for q in items if isinstance(q, Quarantined)]
    assert len(posts) == 50 and len({p.id for p in posts}) == 50
    assert [(q.line, q.field) for q in bad] == [(51, None), (52, "text"), (53, "created_at")]
    assert "invalid JSON" in bad[0].reason
    assert {p.platform for p in posts} == {"facebook", "telegram", "tiktok", "x", "zalo"}
    # the coordination demo: ten accounts paste the same scam within the hour
    scam = [p for p in posts if "http://gov-vn-hotro.com/nhan-tien" in p.urls]
    assert len(scam) == 10 and len({p.author for p in scam}) == 10
    times = sorted(p.created_at for p in scam if p.created_at)
    assert (times[-1] - times[0]).total_seconds() <= 3600


def test_multilingual_checkworthiness_set_is_balanced() -> None:
    rows = read_jsonl(FIXTURES / "checkworthiness_multilingual.jsonl")
    assert len(rows) == 120 and len({r["text"] for r in rows}) == 120
    assert Counter((r["language"], r["label"]) for r in rows) == {(lang, y): 20 for lang in ("vi", "km", "fr") for y in (0, 1)}
    assert all(set(r) == {"text", "language", "label"} and r["text"] == unicodedata.normalize("NFC", r["text"]) for r in rows)
