"""Khmer segmentation builds khmercut's CRF attributes itself (faster) and must give exactly
khmercut's words: the same attributes in the same order, the same tags, the same words, on
every Khmer text of the fixtures, of generated posts and on random character soups."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import khmercut

from factbridge.bench.feed import generated_posts
from factbridge.text.normalize import normalize_text
from factbridge.text.tokenize import _kcc_attributes, _segment_khmer, tokenize

FIXTURES = Path(__file__).parent / "fixtures"
RUN = re.compile(r"[\u1780-\u17ff\u19e0-\u19ff]+")


def _texts() -> list[str]:
    texts: list[str] = []
    for path in (FIXTURES / "checkworthiness_multilingual.jsonl", FIXTURES / "crosslingual_blind" / "posts.jsonl", FIXTURES / "langid.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            row: Any = json.loads(line) if line.strip() else {}
            if isinstance(row, dict):
                texts.extend(v for v in row.values() if isinstance(v, str) and RUN.search(v))
    texts.extend(p.text for mix in ("tweet", "550") for p in generated_posts(300, mix, 0.0, 11) if RUN.search(p.text))
    rng = random.Random(20261203)
    alphabet = [chr(c) for c in range(0x1780, 0x17FA)] + [chr(c) for c in range(0x19E0, 0x19F0)]
    texts.extend("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(600))
    return texts


def _as_attributes(features: dict[str, Any]) -> list[str]:
    """What pycrfsuite makes of khmercut's feature dict: "name:value", or the name with the flag's weight."""
    out: list[str] = []
    for name, value in features.items():
        if isinstance(value, str):
            out.append(f"{name}:{value}")
        elif value:  # a false flag weighs 0: it adds nothing to any score
            out.append(name)
    return out


def test_khmer_words_are_khmercuts() -> None:
    runs = list(dict.fromkeys(run for text in _texts() for run in RUN.findall(normalize_text(text))))
    assert len(runs) > 1400
    _segment_khmer.cache_clear()
    for run in runs:
        kccs = khmercut.seg_kcc(run)
        assert _kcc_attributes(kccs) == [_as_attributes(f) for f in khmercut.create_kcc_features(kccs)], run
        assert _segment_khmer(run) == tuple(khmercut.tokenize(run)), run


def test_tokens_of_a_khmer_post() -> None:
    words = tokenize("ក្រសួងសុខាភិបាល ព្រមានអំពីវ៉ាក់សាំងក្លែងក្លាយ ១២៣ នាក់")
    assert words[:2] == list(khmercut.tokenize("ក្រសួងសុខាភិបាល")) and len(words) > 4
