import pytest

from factbridge.eval.datasets import split_tweet_signature
from factbridge.eval.metrics import average_precision_at_k, retrieval_metrics


def test_average_precision_matches_checkthat_definition() -> None:
    assert average_precision_at_k(["a", "b", "c"], {"b"}, 5) == pytest.approx(0.5)
    assert average_precision_at_k(["a", "b", "c"], {"a", "c"}, 5) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision_at_k(["a", "b", "c"], {"c"}, 2) == 0.0


def test_retrieval_metrics() -> None:
    m = retrieval_metrics({"q1": ["x", "y"], "q2": ["z"], "q3": []}, {"q1": {"y"}, "q2": {"z"}, "q3": {"w"}})
    assert m["MAP@1"] == pytest.approx(1 / 3)
    assert m["MAP@5"] == pytest.approx((0.5 + 1) / 3)
    assert m["MRR"] == pytest.approx((0.5 + 1) / 3)
    assert m["S@10"] == pytest.approx(2 / 3) and m["queries"] == 3


def test_tweet_signature_becomes_metadata() -> None:
    text, handle, date = split_tweet_signature("OREO x LADY GAGA packs drop today! pic.twitter.com/x — OREO Cookie (@Oreo) January 28, 2021")
    assert text.endswith("pic.twitter.com/x — OREO Cookie") and handle == "Oreo" and date == "January 28, 2021"
    assert split_tweet_signature("no signature here") == ("no signature here", "", None)
