"""Khmer segmentation from many threads at once (the web server prepares reports in parallel)."""

from __future__ import annotations

import threading


def test_khmer_tokenizer_is_thread_safe() -> None:
    import khmercut

    from factbridge.text.tokenize import _SCORER, _segment_khmer

    errors: list[BaseException] = []
    results: list[list[str]] = []
    for _ in range(5):  # a race: a few rounds make it show on code without the lock
        khmercut.tagger = None  # not opened yet: twelve threads open it at once
        _SCORER.clear()  # nor read by khmer_crf: twelve threads ask for it at once
        _segment_khmer.cache_clear()  # segmented runs are cached: make every round segment
        barrier = threading.Barrier(12)
        _round(barrier, results, errors)
    assert not errors, errors
    assert len(results) == 60 and all(r == results[0] for r in results) and len(results[0]) > 3


def _round(barrier: threading.Barrier, results: list[list[str]], errors: list[BaseException]) -> None:
    from factbridge.text.tokenize import tokenize

    def run() -> None:
        try:
            barrier.wait(timeout=30)
            results.append(tokenize("ក្រសួងសុខាភិបាល ព្រមានអំពីវ៉ាក់សាំងក្លែងក្លាយ ទឹកជំនន់"))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
