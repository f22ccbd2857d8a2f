"""Pins the `factbridge eval linkrisk` figures on the shared data (no embeddings: fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from factbridge.linkrisk.evaluation import (
    benign_false_positives,
    blocklist_recall,
    gather_benign_urls,
    load_lists,
    lookalike_quality,
    read_lookalike_fixture,
)
from factbridge.linkrisk.lookalike import LookalikeDetector
from factbridge.linkrisk.scoring import LinkRiskScorer

pytestmark = pytest.mark.quality
FIXTURE = Path(__file__).parent / "fixtures" / "lookalike_domains.jsonl"
DELTA = 0.01

# Measured with linkrisk-rules v1.0 and the shipped protected list (see the eval output).
HELD_OUT = {"urlhaus-filter": 0.8576, "urlhaus-filter-domains": 0.8993, "urlhaus-filter-online": 0.6880, "urlhaus-filter-domains-online": 0.7844}


@pytest.fixture(scope="module")
def detector() -> LookalikeDetector:
    return LookalikeDetector.from_setting()


def test_known_malicious_recall(shared_data: Path, detector: LookalikeDetector) -> None:
    data = shared_data / "urls" / "urlhaus_filter"
    if not data.is_dir():
        pytest.skip("urlhaus_filter data not present")
    results = {r.name: r for r in blocklist_recall(load_lists(data), detector, 0.5)}
    assert set(results) == set(HELD_OUT)
    for name, expected in HELD_OUT.items():
        assert results[name].held_out_recall == pytest.approx(expected, abs=DELTA), name
        assert results[name].lookup_recall == 1.0, name
        assert results[name].by_kind["ip"]["held_out_flagged"] == results[name].by_kind["ip"]["entries"]


def test_benign_false_positive_rate(shared_data: Path, detector: LookalikeDetector) -> None:
    benign = gather_benign_urls(shared_data)
    assert len(benign.urls) == pytest.approx(3381, abs=60)
    result = benign_false_positives(benign.urls, LinkRiskScorer(None, detector))
    assert result.fpr <= 0.003, result.examples


def test_lookalike_precision_recall(detector: LookalikeDetector) -> None:
    result = lookalike_quality(read_lookalike_fixture(FIXTURE), detector)
    assert result.precision >= 1.0 - DELTA
    assert result.recall == pytest.approx(0.9706, abs=0.02)
