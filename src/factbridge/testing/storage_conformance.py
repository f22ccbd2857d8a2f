"""The conformance suite every Storage backend passes (the idea of scikit-learn's
`parametrize_with_checks`): plain check functions that take a storage factory.

A factory is a callable returning a fresh, empty, migrated store of its own (the
caller closes it). Two optional methods unlock the checks that need them:

* ``factory.reopen(store) -> Storage``: a second, un-migrated handle on the same
  database (persistence and schema checks);
* ``factory.set_schema_version(store, version)``: write the stored schema version,
  to play a database written by a newer FactBridge.

A third-party backend runs the whole suite with::

    from factbridge.testing.storage_conformance import parametrize_storage_checks

    @parametrize_storage_checks()
    def test_my_backend(check):
        check(lambda: MyStorage("my://..."))

Checks that need an optional method the factory lacks are skipped with the reason.
"""

from __future__ import annotations

import functools
import inspect
import threading
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

import numpy as np

from factbridge.backends.storage.base import (
    ROLES,
    SCHEMA_VERSION,
    Storage,
    UpsertResult,
    iter_docs,
    iter_docs_by_key,
)
from factbridge.errors import EmbedderMismatch, FactBridgeError, NotFound, StorageError
from factbridge.models import FactCheck, MatchCandidate, Post, Quarantined, SignalScore
from factbridge.text.normalize import normalize_text
from factbridge.text.tokenize import tokenize


class StorageFactory(Protocol):
    def __call__(self) -> Storage: ...


class CheckSkipped(Exception):
    """Raised when a check needs an optional factory method; pytest turns it into a skip."""


def _skip(reason: str) -> None:
    try:
        import pytest
    except ImportError:  # running the checks outside pytest
        raise CheckSkipped(reason) from None
    pytest.skip(reason)


def _require(factory: Any, *methods: str) -> None:
    missing = [m for m in methods if not callable(getattr(factory, m, None))]
    if missing:
        _skip(f"the storage factory has no {', '.join(missing)}()")


@contextmanager
def _fresh(factory: StorageFactory) -> Iterator[Storage]:
    store = factory()
    try:
        yield store
    finally:
        store.close()


def _raises(exc_type: type[BaseException] | tuple[type[BaseException], ...], fn: Callable[[], Any], what: str) -> BaseException:
    try:
        fn()
    except exc_type as exc:
        return exc
    raise AssertionError(f"{what}: expected {exc_type}, nothing was raised")


def _tokens(text: str) -> str:
    return " ".join(tokenize(normalize_text(text)))


def _fc(fc_id: str, claim: str = "The moon is made of cheese", **extra: Any) -> FactCheck:
    fields: dict[str, Any] = {"id": fc_id, "claim": claim, "rating": "False", "publisher": "Desk", "language": "en"}
    fields.update(extra)
    fields.setdefault("tokens", _tokens(fields["claim"]))
    return FactCheck(**fields)


def _post(post_id: str, text: str = "the moon is cheese", **extra: Any) -> Post:
    fields: dict[str, Any] = {"id": post_id, "text": text, "platform": "test", "author": "acct-1"}
    fields.update(extra)
    fields.setdefault("tokens", _tokens(text))
    return Post(**fields)


def _cand(fc_id: str, rank: int, fused: float, decision: str = "match") -> MatchCandidate:
    return MatchCandidate(
        factcheck_id=fc_id, rank=rank, fused_score=fused, decision=decision,  # type: ignore[arg-type]
        decided_by="matcher:test-1", dense=SignalScore(score=fused, rank=rank),
        lexical=SignalScore(score=None, rank=None), features={"dense_rrf": round(1 / (60 + rank), 4)},
    )


def _ids(result: UpsertResult) -> tuple[list[str], list[str], list[str]]:
    return sorted(result.inserted), sorted(result.updated), sorted(result.unchanged)


# -- schema ------------------------------------------------------------------


def check_schema_is_current_and_migrate_is_idempotent(factory: StorageFactory) -> None:
    with _fresh(factory) as store:
        assert store.schema_version() == SCHEMA_VERSION
        store.upsert_factchecks("org", [_fc("fc-1")])
        store.migrate()
        store.migrate()
        assert store.schema_version() == SCHEMA_VERSION
        assert store.count_factchecks("org") == 1, "migrate() again must keep the data"


def check_newer_schema_is_refused(factory: StorageFactory) -> None:
    _require(factory, "set_schema_version")
    with _fresh(factory) as store:
        factory.set_schema_version(store, SCHEMA_VERSION + 1)  # type: ignore[attr-defined]
        exc = _raises(StorageError, store.migrate, "migrate() on a newer schema")
        assert "newer" in str(exc), f"the error should say the schema is newer: {exc}"
        if callable(getattr(factory, "reopen", None)):
            other = factory.reopen(store)  # type: ignore[attr-defined]
            try:
                _raises(StorageError, other.migrate, "migrate() of a second handle on a newer schema")
            finally:
                other.close()


def check_reopen_keeps_everything(factory: StorageFactory) -> None:
    _require(factory, "reopen")
    with _fresh(factory) as store:
        _populate(store, "org", "ALPHA", 1.0)
        before = _view(store, "org")
        other = factory.reopen(store)  # type: ignore[attr-defined]
        try:
            other.migrate()
            assert other.schema_version() == SCHEMA_VERSION
            after = _view(other, "org")
            assert after == before, _diff(before, after)
            assert other.embedders() == store.embedders()
        finally:
            other.close()


def check_closed_storage_raises_storage_error(factory: StorageFactory) -> None:
    store = factory()
    store.close()
    store.close()  # closing twice is harmless
    _raises(StorageError, lambda: store.upsert_factchecks("org", [_fc("fc-1")]), "write after close()")
    _raises(StorageError, lambda: store.count_factchecks("org"), "read after close()")


# -- fact-checks ---------------------------------------------------------------


def check_factcheck_upsert_is_idempotent(factory: StorageFactory) -> None:
    with _fresh(factory) as store:
        first = [_fc("fc-1"), _fc("fc-2", "Vaccines contain microchips")]
        assert _ids(store.upsert_factchecks("org", first)) == (["fc-1", "fc-2"], [], [])
        assert _ids(store.upsert_factchecks("org", first)) == ([], [], ["fc-1", "fc-2"])
        changed = [_fc("fc-1", rating="Mostly false"), _fc("fc-2", "Vaccines contain microchips"), _fc("fc-3")]
        assert _ids(store.upsert_factchecks("org", changed)) == (["fc-3"], ["fc-1"], ["fc-2"])
        assert store.get_factcheck("org", "fc-1").rating == "Mostly false"
        assert store.count_factchecks("org") == 3
        assert _ids(store.upsert_factchecks("org", [])) == ([], [], [])
        # the same id twice in one batch: the last copy is what is stored
        assert _ids(store.upsert_factchecks("org", [_fc("fc-4", rating="one"), _fc("fc-4", rating="two")])) == (["fc-4"], [], []), \
            "reported once"
        assert store.get_factcheck("org", "fc-4").rating == "two"


def check_factcheck_roundtrip_keeps_raw_record(factory: StorageFactory) -> None:
    raw = {
        "@type": "ClaimReview", "reviewRating": {"alternateName": "Sai", "ratingValue": 1},
        "itemReviewed": {"author": [{"name": "ក្រសួង"}, {"name": "Bộ Y tế"}]}, "n": 3.25, "flag": True, "none": None,
    }
    fc = FactCheck(
        id="https://example.org/fc/1", claim="Uống nước chanh chữa khỏi COVID-19", title="Tin giả về nước chanh",
        rating="Sai", rating_value=1.0, publisher="Báo Ví Dụ", url="https://example.org/fc/1", language="vi",
        claim_date=datetime(2024, 3, 1, tzinfo=UTC), published_at=datetime(2024, 3, 2, 8, 30, tzinfo=timezone(timedelta(hours=7))),
        claimant="Facebook post", source_format="claimreview", norm_text="uống nước chanh chữa khỏi covid-19",
        tokens=_tokens("Uống nước chanh chữa khỏi COVID-19"), raw=raw,
    )
    with _fresh(factory) as store:
        store.upsert_factchecks("org", [fc])
        back = store.get_factcheck("org", fc.id)
        assert back == fc, f"round trip changed the fact-check:\n{fc!r}\n{back!r}"
        assert back.raw == raw, "the raw record must be kept as it came"
        assert _ids(store.upsert_factchecks("org", [back])) == ([], [], [fc.id]), "a read-back record is unchanged"


def check_factcheck_reads(factory: StorageFactory) -> None:
    with _fresh(factory) as store:
        items = [_fc(f"fc-{i:04d}", f"claim number {i}", tokens=f"claim number n{i}") for i in range(1200)]
        store.upsert_factchecks("org", items)
        assert store.count_factchecks("org") == 1200
        wanted = [f"fc-{i:04d}" for i in range(0, 1200, 2)] + ["fc-0000", "missing"]
        got = store.get_factchecks("org", wanted)
        assert set(got) == {f"fc-{i:04d}" for i in range(0, 1200, 2)}, "get_factchecks: more than one chunk, duplicates, missing ids"
        assert got["fc-0010"].claim == "claim number 10"
        assert store.get_factchecks("org", []) == {}
        for batch in (7, 1000, 5000):
            seen = [fc.id for fc in store.iter_factchecks("org", batch_size=batch)]
            assert sorted(seen) == sorted(fc.id for fc in items), f"iter_factchecks(batch_size={batch}) must yield each once"
            assert len(seen) == len(set(seen))


def check_missing_items_raise_not_found(factory: StorageFactory) -> None:
    with _fresh(factory) as store:
        store.upsert_factchecks("org", [_fc("fc-1")])
        store.upsert_posts("org", [_post("p-1")])
        for fn, what in (
            (lambda: store.get_factcheck("org", "nope"), "get_factcheck of a missing id"),
            (lambda: store.get_post("org", "nope"), "get_post of a missing id"),
            (lambda: store.get_factcheck("elsewhere", "fc-1"), "get_factcheck in another org"),
            (lambda: store.get_post("elsewhere", "p-1"), "get_post in another org"),
        ):
            exc = _raises(NotFound, fn, what)
            assert isinstance(exc, FactBridgeError)


# -- posts ---------------------------------------------------------------------


def check_post_upsert_is_idempotent(factory: StorageFactory) -> None:
    with _fresh(factory) as store:
        posts = [_post("p-1", "alpha bravo"), _post("p-2", "charlie delta", raw={"line": 2, "x": ["y"]})]
        assert _ids(store.upsert_posts("org", posts)) == (["p-1", "p-2"], [], [])
        assert _ids(store.upsert_posts("org", posts)) == ([], [], ["p-1", "p-2"])
        assert store.get_post("org", "p-2").raw == {"line": 2, "x": ["y"]}
        assert _ids(store.upsert_posts("org", [_post("p-1", "echo foxtrot")])) == ([], ["p-1"], [])
        assert store.get_post("org", "p-1").text == "echo foxtrot"
        assert store.count_posts("org") == 2
        assert store.get_post("org", "p-1").tokens == _post("p-1", "echo foxtrot").tokens, "an update replaces the tokens"
        # the same id twice in one batch, beside a new and an unchanged post: the last copy is stored
        result = store.upsert_posts("org", [_post("p-3", "golf one"), _post("p-2", "charlie delta", raw={"line": 2, "x": ["y"]}),
                                            _post("p-3", "golf two"), _post("p-4", "hotel")])
        assert _ids(result) == (["p-3", "p-4"], [], ["p-2"]), "a post given twice is reported once"
        assert sorted(result.changed) == ["p-3", "p-4"], "and queued once"
        assert store.get_post("org", "p-3").text == "golf two" and store.get_post("org", "p-4").text == "hotel"
        assert store.count_posts("org") == 4
        # an update given twice, its last copy the stored text: unchanged, as on every backend
        assert _ids(store.upsert_posts("org", [_post("p-4", "india"), _post("p-4", "hotel")])) == ([], [], ["p-4"])
        assert store.get_post("org", "p-4").text == "hotel"


def check_changed_posts(factory: StorageFactory) -> None:
    with _fresh(factory) as store:
        none, token = store.changed_posts("org")
        assert none == [], "an empty store has no changed post"
        store.upsert_posts("org", [_post("p-1"), _post("p-2", "other words")])
        store.upsert_posts("other", [_post("p-9")])
        first, token = store.changed_posts("org", token)
        assert sorted(p.id for p in first) == ["p-1", "p-2"], "changed_posts reads the posts written since the token, of its org only"
        assert store.changed_posts("org", token)[0] == [], "nothing written since the last read: nothing changed"
        store.upsert_posts("org", [_post("p-1"), _post("p-2", "edited words"), _post("p-3")])
        again, token = store.changed_posts("org", token)
        assert sorted(p.id for p in again) == ["p-2", "p-3"], "an unchanged re-upsert is no change; an edit and an insert are"
        assert next(p for p in again if p.id == "p-2").text == "edited words"
        assert sorted(p.id for p in store.changed_posts("org")[0]) == ["p-1", "p-2", "p-3"], 'the token "" reads every post'


def check_posts_and_quarantine_commit_together(factory: StorageFactory) -> None:
    with _fresh(factory) as store:
        bad = [
            Quarantined(source="posts.jsonl", line=3, field="text", reason="empty text", raw='{"id": "x"}'),
            Quarantined(source="posts.jsonl", line=7, field=None, reason="not JSON", raw="{oops"),
        ]
        result = store.upsert_posts("org", [_post("p-1"), _post("p-2", "other words")], bad)
        assert _ids(result) == (["p-1", "p-2"], [], [])
        listed = store.list_quarantine("org")
        assert [q.line for q in listed] == [7, 3], "quarantine is listed newest first"
        assert listed[1] == bad[0] and listed[0] == bad[1], "quarantined rows keep source, line, field, reason and raw"
        assert [q.line for q in store.list_quarantine("org", limit=1)] == [7]


def check_failed_batch_writes_nothing(factory: StorageFactory) -> None:
    with _fresh(factory) as store:
        kept = Quarantined(source="old.jsonl", line=1, reason="kept")
        store.upsert_posts("org", [_post("p-1", "original words")], [kept])
        before = (store.count_posts("org"), store.get_post("org", "p-1"), store.list_quarantine("org"))

        # A quarantined row the database rejects (no source), after good posts in the same batch.
        broken_row = Quarantined.model_construct(source=None, line=2, field=None, reason="x", raw="", kind="post")
        batch = [_post("p-1", "rewritten zulu"), _post("p-2", "brand new yankee")]
        exc = _raises(Exception, lambda: store.upsert_posts("org", batch, [Quarantined(source="new.jsonl", reason="fine"), broken_row]),
                      "a batch with a row the database rejects")
        assert isinstance(exc, FactBridgeError), f"database failures surface as FactBridgeError, got {type(exc).__name__}"
        # A post that cannot even be serialised, in the middle of a batch.
        broken_post = Post.model_construct(id="p-broken", text=object(), tokens="broken")
        _raises(Exception, lambda: store.upsert_posts("org", [_post("p-3", "xray words"), broken_post, _post("p-4")]),
                "a batch with a post that cannot be serialised")

        after = (store.count_posts("org"), store.get_post("org", "p-1"), store.list_quarantine("org"))
        assert after == before, "a failed batch must write nothing and leave what was stored intact"
        assert store.get_posts("org", ["p-3", "p-4"]) == {}, "the failed batch left some of its posts behind"


def check_list_and_iter_posts(factory: StorageFactory) -> None:
    tz7 = timezone(timedelta(hours=7))
    posts = [
        _post("p-a", created_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
        # 10:00 at UTC+7 is 03:00 UTC: older than p-a although its local clock reads later than 03:00
        _post("p-b", created_at=datetime(2024, 5, 1, 10, 0, tzinfo=tz7)),
        _post("p-c", created_at=datetime(2024, 5, 1, 6, 0)),  # naive: taken as UTC
        _post("p-d", created_at=None),
        _post("p-e", created_at=datetime(2024, 5, 2, 1, 0, tzinfo=tz7)),  # 2024-05-01 18:00 UTC
    ]
    with _fresh(factory) as store:
        store.upsert_posts("org", posts)
        order = [p.id for p in store.list_posts("org")]
        assert order == ["p-e", "p-a", "p-c", "p-b", "p-d"], f"list_posts: newest instant first, undated last; got {order}"
        pages = [p.id for off in range(0, 5, 2) for p in store.list_posts("org", limit=2, offset=off)]
        assert pages == order, "limit/offset pages must add up to the full list"
        assert [p.id for p in store.list_posts("org", limit=0)] == []
        seen = sorted(p.id for p in store.iter_posts("org", batch_size=2))
        assert seen == sorted(p.id for p in posts)
        assert store.count_posts("org") == 5
        assert set(store.get_posts("org", ["p-a", "p-z"])) == {"p-a"}
        assert store.get_post("org", "p-b").created_at == posts[1].created_at


def check_post_times(factory: StorageFactory) -> None:
    """`post_times`: each stored post's time (aware, UTC; a naive one taken as UTC), None when
    it has none, absent when not stored; ids as asked."""
    with _fresh(factory) as store:
        store.upsert_posts("org", [
            _post("p-1", created_at=datetime(2026, 3, 1, 12, 30, 15, 250, tzinfo=timezone(timedelta(hours=7)))),
            _post("p-2", created_at=datetime(2026, 3, 2, 8, 0)),
            _post("p-3", created_at=None),
        ])
        store.upsert_posts("other", [_post("p-4", created_at=datetime(2026, 3, 3, tzinfo=UTC))])
        got = store.post_times("org", ["p-3", "p-1", "nope", "p-2", "p-4", "p-1"])
        assert got == {"p-1": datetime(2026, 3, 1, 5, 30, 15, 250, tzinfo=UTC), "p-2": datetime(2026, 3, 2, 8, 0, tzinfo=UTC), "p-3": None}
        assert all(t is None or t.utcoffset() == timedelta(0) for t in got.values())
        assert store.post_times("org", []) == {}


def check_quarantine_add_and_list(factory: StorageFactory) -> None:
    with _fresh(factory) as store:
        assert store.list_quarantine("org") == []
        rows = [Quarantined(source=f"f{i}.csv", line=i, field="rating", reason=f"reason {i}", kind="factcheck") for i in range(5)]
        store.add_quarantine("org", rows[:3])
        store.add_quarantine("org", rows[3:])
        store.add_quarantine("org", [])
        assert store.list_quarantine("org") == rows[::-1]
        assert store.list_quarantine("org", limit=2) == rows[::-1][:2]


# -- vectors ---------------------------------------------------------------------


def check_vectors_roundtrip(factory: StorageFactory) -> None:
    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((3, 8)).astype(np.float32)
    with _fresh(factory) as store:
        store.put_vectors("org", "factcheck", "emb-a", [(f"fc-{i}", f"sha-{i}", vecs[i]) for i in range(3)])
        store.put_vectors("org", "factcheck", "emb-a", [])
        ids, matrix = store.load_vectors("org", "factcheck", "emb-a")
        assert sorted(ids) == ["fc-0", "fc-1", "fc-2"] and matrix.shape == (3, 8) and matrix.dtype == np.float32
        for row, item_id in enumerate(ids):
            assert np.array_equal(matrix[row], vecs[int(item_id[-1])]), "ids and matrix rows must stay aligned, values exact"
        assert store.vector_shas("org", "factcheck", "emb-a") == {"fc-0": "sha-0", "fc-1": "sha-1", "fc-2": "sha-2"}
        assert store.vector_shas("org", "factcheck", "emb-a", ids=["fc-2", "fc-0", "nope", "fc-2"]) == {"fc-0": "sha-0", "fc-2": "sha-2"}
        assert store.vector_shas("org", "factcheck", "emb-a", shas=["sha-1", "sha-9"]) == {"fc-1": "sha-1"}
        assert store.vector_shas("org", "factcheck", "emb-a", ids=["fc-0", "fc-1"], shas=["sha-1"]) == {"fc-1": "sha-1"}
        assert store.vector_shas("org", "factcheck", "emb-a", ids=[]) == {} and store.vector_shas("org", "factcheck", "emb-b", ids=["fc-0"]) == {}
        assert store.embedders().get("emb-a") == 8
        # re-embedding one item replaces its vector and sha
        store.put_vectors("org", "factcheck", "emb-a", [("fc-1", "sha-1b", vecs[0] * 2)])
        ids, matrix = store.load_vectors("org", "factcheck", "emb-a")
        assert len(ids) == 3 and np.array_equal(matrix[ids.index("fc-1")], vecs[0] * 2)
        assert store.vector_shas("org", "factcheck", "emb-a")["fc-1"] == "sha-1b"
        # kinds are separate
        assert store.load_vectors("org", "post", "emb-a")[0] == []
        store.put_vectors("org", "post", "emb-a", [("fc-1", "post-sha", vecs[2])])
        assert store.vector_shas("org", "post", "emb-a") == {"fc-1": "post-sha"}
        assert store.vector_shas("org", "factcheck", "emb-a")["fc-1"] == "sha-1b"
        unknown_ids, unknown = store.load_vectors("org", "factcheck", "never-used")
        assert unknown_ids == [] and unknown.shape[0] == 0
        assert store.vector_shas("org", "factcheck", "never-used") == {}


def check_vector_stamp(factory: StorageFactory) -> None:
    """`vector_stamp` stays the same while nothing is written to those vectors (whatever is
    written to another kind, embedder or organisation) and moves with each vector added or
    re-embedded under another text hash."""
    vecs = np.random.default_rng(5).standard_normal((4, 6)).astype(np.float32)
    with _fresh(factory) as store:
        empty = store.vector_stamp("org", "factcheck", "emb-a")
        assert empty == store.vector_stamp("org", "post", "emb-b") == store.vector_stamp("elsewhere", "factcheck", "emb-a"), "nothing stored: one stamp"
        store.put_vectors("org", "factcheck", "emb-a", [(f"fc-{i}", f"sha-{i}", vecs[i]) for i in range(3)])
        first = store.vector_stamp("org", "factcheck", "emb-a")
        assert first != empty and store.vector_stamp("org", "factcheck", "emb-a") == first, "stable while nothing is written"
        store.put_vectors("org", "post", "emb-a", [("fc-0", "other", vecs[3])])
        store.put_vectors("org", "factcheck", "emb-b", [("fc-0", "other", vecs[3])])
        store.put_vectors("elsewhere", "factcheck", "emb-a", [("fc-0", "other", vecs[3])])
        store.put_vectors("org", "factcheck", "emb-a", [])
        assert store.vector_stamp("org", "factcheck", "emb-a") == first, "another kind, embedder or organisation, or nothing written"
        store.put_vectors("org", "factcheck", "emb-a", [("fc-1", "sha-1b", vecs[3])])
        again = store.vector_stamp("org", "factcheck", "emb-a")
        assert again not in (first, empty), "a vector re-embedded from another text"
        store.put_vectors("org", "factcheck", "emb-a", [("fc-9", "sha-9", vecs[0])])
        assert store.vector_stamp("org", "factcheck", "emb-a") not in (first, again, empty), "a vector added"
        # what changed since each stamp: the items written after it, in this kind, embedder and organisation only
        since = functools.partial(store.vectors_changed, "org", "factcheck", "emb-a")
        assert sorted(since(empty) or ()) == ["fc-0", "fc-1", "fc-2", "fc-9"], "since nothing was written: every item"
        assert sorted(since(first) or ()) == ["fc-1", "fc-9"] and since(again) == ["fc-9"]
        assert since(store.vector_stamp("org", "factcheck", "emb-a")) == [], "nothing since the last write"
        assert store.vectors_changed("org", "post", "emb-a", empty) == ["fc-0"] and store.vectors_changed("elsewhere", "factcheck", "emb-b", empty) == []
        for foreign in ("", "nonsense", "changed:x", "xid:1:2", "changed:²"):
            assert since(foreign) is None, f"{foreign!r} is no stamp of this store: None (read everything again)"


def check_factcheck_fields(factory: StorageFactory) -> None:
    """`factcheck_fields` reads the named fields of each stored document as JSON values (nested
    keys by dots, None where absent), for the whole library or the ids asked; a name that is
    not a key path is refused before any query."""
    when = datetime(2021, 3, 6, 12, 30, tzinfo=UTC)
    plain = _fc("fc-1", "Cà phê chữa ung thư", title="Coffee", language="vi", published_at=when)
    pulled = _fc("fc-2", "ស្លាប់ ១២៣ នាក់", raw={"withdrawn": {"at": "2024-01-01", "reason": "wrong"}, "n": 3})
    with _fresh(factory) as store:
        store.upsert_factchecks("org", [plain, pulled])
        store.upsert_factchecks("other", [_fc("fc-3", "elsewhere")])
        got = store.factcheck_fields("org", ["claim", "title", "language", "published_at", "raw.withdrawn", "raw.n", "nope"])
        assert sorted(got) == ["fc-1", "fc-2"]
        claim, title, language, published, withdrawn, n, nope = got["fc-1"]
        assert (claim, title, language, withdrawn, n, nope) == (plain.claim, "Coffee", "vi", None, None, None)
        assert datetime.fromisoformat(published) == when, published
        assert got["fc-2"][:3] == [pulled.claim, "", "en"] and got["fc-2"][4:6] == [{"at": "2024-01-01", "reason": "wrong"}, 3]
        assert store.factcheck_fields("org", ["claim"]) == {"fc-1": [plain.claim], "fc-2": [pulled.claim]}, "one field"
        assert store.factcheck_fields("org", ["claim"], ids=["fc-2", "missing", "fc-3"]) == {"fc-2": [pulled.claim]}
        assert store.factcheck_fields("org", ["claim"], ids=[]) == {} and store.factcheck_fields("nobody", ["claim"]) == {}
        many = [_fc(f"m-{i:04d}", f"claim {i}") for i in range(1200)]  # more ids than one query binds
        store.upsert_factchecks("org", many)
        asked = store.factcheck_fields("org", ["claim"], ids=[fc.id for fc in many[::-1]])
        assert asked == {fc.id: [fc.claim] for fc in many}
        assert len(store.factcheck_fields("org", ["claim", "language"])) == 1202
        bad_names: list[list[str]] = [["claim'); DROP TABLE factchecks; --"], ["raw..withdrawn"], ['a"b'], []]
        for bad in bad_names:
            _raises(ValueError, functools.partial(store.factcheck_fields, "org", bad), f"field names {bad!r}")
        assert store.count_factchecks("org") == 1202


def check_factcheck_stamp(factory: StorageFactory) -> None:
    """`factcheck_stamp` stays the same while no fact-check of the organisation is added or
    changed (an upsert of the same content, another organisation's writes) and moves with an
    added fact-check and with an edit that keeps the text (a corrected rating)."""
    with _fresh(factory) as store:
        empty = store.factcheck_stamp("org")
        assert empty == store.factcheck_stamp("elsewhere")
        store.upsert_factchecks("org", [_fc("fc-1", "the claim"), _fc("fc-2", "another claim")])
        first = store.factcheck_stamp("org")
        assert first != empty and store.factcheck_stamp("org") == first
        store.upsert_factchecks("org", [_fc("fc-1", "the claim")])  # the same content: unchanged
        store.upsert_factchecks("elsewhere", [_fc("fc-1", "the claim"), _fc("fc-9", "a third")])
        assert store.factcheck_stamp("org") == first
        store.upsert_factchecks("org", [_fc("fc-1", "the claim").model_copy(update={"rating": "Mostly false"})])
        edited = store.factcheck_stamp("org")
        assert edited not in (first, empty), "an edit that keeps the text"
        store.upsert_factchecks("org", [_fc("fc-3", "a new claim")])
        assert store.factcheck_stamp("org") not in (first, edited, empty), "a fact-check added"
        # what changed since each stamp: the fact-checks written after it, of this organisation only
        since = functools.partial(store.factchecks_changed, "org")
        assert sorted(since(empty) or ()) == ["fc-1", "fc-2", "fc-3"], "since nothing was written: every fact-check"
        assert sorted(since(first) or ()) == ["fc-1", "fc-3"] and since(edited) == ["fc-3"]
        assert since(store.factcheck_stamp("org")) == [], "nothing since the last write"
        assert sorted(store.factchecks_changed("elsewhere", empty) or ()) == ["fc-1", "fc-9"]
        for foreign in ("", "nonsense", "changed:x", "xid:1:2", "changed:²"):
            assert since(foreign) is None, f"{foreign!r} is no stamp of this store: None (read everything again)"


def check_factcheck_shas(factory: StorageFactory) -> None:
    """`factcheck_shas` names every stored fact-check of the organisation with a hash of its
    document: the same while the document is, another after any edit (one that keeps the
    text too), and the same for the same document in another organisation."""
    with _fresh(factory) as store:
        assert store.factcheck_shas("org") == {}
        store.upsert_factchecks("org", [_fc("fc-1", "the claim"), _fc("fc-2", "another claim")])
        first = store.factcheck_shas("org")
        assert sorted(first) == ["fc-1", "fc-2"] and len(set(first.values())) == 2 and all(first.values())
        store.upsert_factchecks("org", [_fc("fc-1", "the claim")])
        store.upsert_factchecks("elsewhere", [_fc("fc-1", "the claim"), _fc("fc-9", "a third")])
        assert store.factcheck_shas("org") == first, "the same content, another organisation's writes: the same hashes"
        assert store.factcheck_shas("elsewhere")["fc-1"] == first["fc-1"]
        store.upsert_factchecks("org", [_fc("fc-1", "the claim").model_copy(update={"rating": "Mostly false"}), _fc("fc-3", "new")])
        edited = store.factcheck_shas("org")
        assert edited["fc-1"] != first["fc-1"] and edited["fc-2"] == first["fc-2"] and sorted(edited) == ["fc-1", "fc-2", "fc-3"]
        store.upsert_factchecks("org", [_fc("fc-1", "the claim")])
        assert store.factcheck_shas("org")["fc-1"] == first["fc-1"], "put back as it was: its first hash again"


def check_vectors_by_ids(factory: StorageFactory) -> None:
    """`load_vectors(..., ids=...)` returns just those items, in the order of a full load; ids
    without a vector are absent; the org, kind and embedder still scope it."""
    rng = np.random.default_rng(11)
    vecs = rng.standard_normal((5, 6)).astype(np.float32)
    with _fresh(factory) as store:
        store.put_vectors("org", "post", "emb-a", [(f"p-{i}", f"sha-{i}", vecs[i]) for i in range(5)])
        store.put_vectors("org", "factcheck", "emb-a", [("p-1", "fc-sha", vecs[0])])
        store.put_vectors("other", "post", "emb-a", [("p-3", "sha", vecs[0] * 3), ("p-9", "sha", vecs[0])])
        all_ids, all_rows = store.load_vectors("org", "post", "emb-a")
        ids, matrix = store.load_vectors("org", "post", "emb-a", ids=["p-3", "p-0", "missing", "p-3", "p-9"])
        assert ids == [i for i in all_ids if i in {"p-0", "p-3"}], f"stable order (as a full load), duplicates once, missing absent: {ids}"
        assert matrix.shape == (2, 6) and matrix.dtype == np.float32
        for row, item_id in enumerate(ids):
            assert np.array_equal(matrix[row], vecs[int(item_id[-1])]), "ids and rows aligned, values exact"
            assert np.array_equal(matrix[row], all_rows[all_ids.index(item_id)])
        assert store.load_vectors("org", "post", "emb-a", ids=["p-4", "p-2"])[0] == store.load_vectors("org", "post", "emb-a", ids=["p-2", "p-4"])[0]
        none_ids, none = store.load_vectors("org", "post", "emb-a", ids=[])
        assert none_ids == [] and none.shape[0] == 0, "an empty id list loads nothing (not everything)"
        assert store.load_vectors("org", "post", "emb-a", ids=["missing"])[0] == []
        fc_ids, fc_rows = store.load_vectors("org", "factcheck", "emb-a", ids=["p-1", "p-2"])
        assert fc_ids == ["p-1"] and np.array_equal(fc_rows[0], vecs[0]), "kinds stay separate"
        other_ids, other_rows = store.load_vectors("other", "post", "emb-a", ids=["p-0", "p-3"])
        assert other_ids == ["p-3"] and np.array_equal(other_rows[0], vecs[0] * 3), "orgs stay separate"
        assert store.load_vectors("org", "post", "never-used", ids=["p-0"])[0] == []
        # more ids than one query may bind (SQLite: 999 or 32766 variables)
        many = [(f"m-{i:05d}", "s", np.full(6, float(i), dtype=np.float32)) for i in range(1500)]
        store.put_vectors("org", "post", "emb-a", many)
        wanted = [f"m-{i:05d}" for i in range(0, 3000, 2)]  # half of them stored
        got_ids, got = store.load_vectors("org", "post", "emb-a", ids=wanted[::-1])
        assert got_ids == [f"m-{i:05d}" for i in range(0, 1500, 2)]
        assert np.array_equal(got[:, 0], np.arange(0, 1500, 2, dtype=np.float32))


def check_embedder_dimension_mismatch_raises(factory: StorageFactory) -> None:
    with _fresh(factory) as store:
        store.put_vectors("org", "factcheck", "emb-a", [("fc-1", "s", np.ones(4, dtype=np.float32))])
        _raises(EmbedderMismatch, lambda: store.put_vectors("org", "factcheck", "emb-a", [("fc-2", "s", np.ones(5))]),
                "a different dimension for the same embedder id")
        _raises(EmbedderMismatch, lambda: store.put_vectors("other-org", "post", "emb-a", [("p-1", "s", np.ones(6))]),
                "the dimension belongs to the embedder, whatever the org or kind")
        _raises(EmbedderMismatch, lambda: store.put_vectors("org", "factcheck", "emb-new", [("a", "s", np.ones(3)), ("b", "s", np.ones(2))]),
                "mixed dimensions in one batch")
        assert store.embedders() == {"emb-a": 4}, "a refused batch registers nothing"
        ids, matrix = store.load_vectors("org", "factcheck", "emb-a")
        assert ids == ["fc-1"] and matrix.shape == (1, 4)


def check_vectors_of_two_embedders_never_mix(factory: StorageFactory) -> None:
    with _fresh(factory) as store:
        store.put_vectors("org", "factcheck", "emb-a", [(i, f"a-{i}", np.full(4, 1.0)) for i in ("x", "y")])
        store.put_vectors("org", "factcheck", "emb-b", [(i, f"b-{i}", np.full(8, 2.0)) for i in ("y", "z")])
        ids_a, mat_a = store.load_vectors("org", "factcheck", "emb-a")
        ids_b, mat_b = store.load_vectors("org", "factcheck", "emb-b")
        assert sorted(ids_a) == ["x", "y"] and mat_a.shape == (2, 4) and np.all(mat_a == 1.0)
        assert sorted(ids_b) == ["y", "z"] and mat_b.shape == (2, 8) and np.all(mat_b == 2.0)
        assert store.vector_shas("org", "factcheck", "emb-a") == {"x": "a-x", "y": "a-y"}
        assert store.vector_shas("org", "factcheck", "emb-b") == {"y": "b-y", "z": "b-z"}
        assert store.embedders() == {"emb-a": 4, "emb-b": 8}


# -- matches ---------------------------------------------------------------------


def check_matches_replace_and_read(factory: StorageFactory) -> None:
    with _fresh(factory) as store:
        attached = _cand("fc-2", 2, 0.5, "possible")
        attached.factcheck = _fc("fc-2")
        store.replace_matches("org", "p-1", [_cand("fc-1", 1, 0.9), attached])
        got = store.matches_for_post("org", "p-1")
        assert [c.factcheck_id for c in got] == ["fc-1", "fc-2"], "matches_for_post is ordered by rank"
        assert got[0] == _cand("fc-1", 1, 0.9), "a candidate keeps every signal, feature, decision and decided_by"
        assert got[1].factcheck is None, "the attached fact-check is not stored with the match"
        store.replace_matches("org", "p-2", [_cand("fc-2", 1, 0.8)])
        by_fc = store.matches_for_factcheck("org", "fc-2")
        assert [(post_id, c.fused_score) for post_id, c in by_fc] == [("p-2", 0.8), ("p-1", 0.5)], "best fused score first"
        store.replace_matches("org", "p-1", [_cand("fc-3", 1, 0.7)])
        assert [c.factcheck_id for c in store.matches_for_post("org", "p-1")] == ["fc-3"], "replace drops the old matches"
        assert [p for p, _ in store.matches_for_factcheck("org", "fc-2")] == ["p-2"]
        store.replace_matches("org", "p-1", [])
        assert store.matches_for_post("org", "p-1") == []
        assert store.matches_for_post("org", "never") == [] and store.matches_for_factcheck("org", "never") == []
        store.replace_matches("org", "p-3", [_cand("fc-1", 2, 0.4, "possible"), _cand("fc-3", 1, 0.6)])
        asked = ["p-3", "never", "p-2", "p-1", "p-3"]
        got_many = store.matches_for_posts("org", asked)
        assert got_many == {p: store.matches_for_post("org", p) for p in ("p-3", "p-2")}, "one read: each post's, by rank; none: left out"
        assert [c.factcheck_id for c in got_many["p-3"]] == ["fc-3", "fc-1"]
        assert store.matches_for_posts("org", []) == {} and store.matches_for_posts("other-org", ["p-3"]) == {}


# -- documents -----------------------------------------------------------------------


def check_docs_put_get_list_count(factory: StorageFactory) -> None:
    with _fresh(factory) as store:
        rows: list[tuple[str, dict[str, Any], float | None]] = [
            ("b", {"score": 2, "nested": {"list": [1, "two", None, 3.5]}}, 2.0),
            ("a", {"score": 5}, 5.0),
            ("c", {"score": None}, None),
            ("d", {"score": -1}, -1.0),
        ]
        store.put_docs("org", "queue", rows)
        store.put_docs("org", "queue", [])
        assert store.count_docs("org", "queue") == 4
        assert store.get_docs("org", "queue", ["b", "zz", "b"]) == {"b": rows[0][1]}
        assert store.get_docs("org", "queue", []) == {}
        orders = {
            "sort_desc": ["a", "b", "d", "c"],
            "sort_asc": ["d", "b", "a", "c"],
            "id": ["a", "b", "c", "d"],
        }
        for order, expected in orders.items():
            got = [doc_id for doc_id, _ in store.list_docs("org", "queue", order=order)]
            assert got == expected, f"list_docs(order={order!r}): {got}, expected {expected} (no sort key: last)"
        assert [d for d, _ in store.list_docs("org", "queue")] == orders["sort_desc"], "sort_desc is the default"
        assert [d for d, _ in store.list_docs("org", "queue", limit=2, offset=1)] == ["b", "d"]
        assert dict(store.list_docs("org", "queue"))["b"] == rows[0][1]
        assert store.count_docs("org", "other") == 0 and store.list_docs("org", "other") == []
        _raises(ValueError, lambda: store.list_docs("org", "queue", order="random"), "an unknown order")
        # keyset pages by id: after an id (byte-wise order: "B" < "a" < "b" < "é"), whatever the pages' sizes
        store.put_docs("org", "keyed", [(k, {"k": k}, None) for k in ["b", "a", "é", "B", "ab", "a\u00a0", "Z"]])
        by_id = [d for d, _ in store.list_docs("org", "keyed", limit=100, order="id")]
        assert by_id == sorted(by_id, key=lambda k: k.encode()) == ["B", "Z", "a", "ab", "a\u00a0", "b", "é"], by_id
        assert [d for d, _ in store.list_docs("org", "keyed", limit=2, order="id", after="a")] == ["ab", "a\u00a0"]
        assert [d for d, _ in store.list_docs("org", "keyed", order="id", after="é")] == []
        assert [d for d, _ in store.list_docs("org", "keyed", order="id", after="")] == by_id
        for page in (1, 2, 3, 7, 8):
            assert [d for d, _ in iter_docs(store, "org", "keyed", page=page)] == by_id, page
        _raises(ValueError, lambda: store.list_docs("org", "keyed", order="sort_desc", after="a"), "after with another order")
        # keyset pages in a sort order, ties by id, documents without a key left out
        keys = {"k1": 3.0, "k2": 1.5, "k3": 3.0, "k4": None, "k0": 3.0, "k5": -2.0, "k6": 1.5, "k7": 10.0}
        store.put_docs("org", "sorted", [(k, {"k": k}, v) for k, v in keys.items()])
        keyed = [(k, v) for k, v in keys.items() if v is not None]
        expect = {"sort_desc": sorted(keyed, key=lambda kv: (-kv[1], kv[0])), "sort_asc": sorted(keyed, key=lambda kv: (kv[1], kv[0]))}
        for order, want in expect.items():
            assert [(d, k) for d, k, _ in store.list_docs_keyed("org", "sorted", order=order)] == want, order
            assert [d for d, _ in store.list_docs("org", "sorted", order=order)][: len(want)] == [d for d, _ in want], "the order list_docs gives"
            for page in (1, 2, 3, 7, 8):
                paged = [(d, k, doc["k"]) for d, k, doc in iter_docs_by_key(store, "org", "sorted", order=order, page=page)]
                assert paged == [(d, k, d) for d, k in want], (order, page)
            everything = [d for d, _ in store.list_docs("org", "sorted", limit=100, order=order)]
            for page in (1, 2, 3, 8, 9):  # the keyed ones by key, then the one without a key
                assert [d for d, _ in iter_docs(store, "org", "sorted", order=order, page=page)] == everything == [*(d for d, _ in want), "k4"]
            assert [d for d, _, _ in store.list_docs_keyed("org", "sorted", limit=2, order=order, after=(3.0, "k1"))] == (
                ["k3", "k2"] if order == "sort_desc" else ["k3", "k7"])
        _raises(ValueError, lambda: store.list_docs_keyed("org", "sorted", order="id"), "list_docs_keyed by id")


def check_docs_upsert_semantics(factory: StorageFactory) -> None:
    import time

    with _fresh(factory) as store:
        for doc_id in ("first", "second", "third"):
            store.put_docs("org", "alerts", [(doc_id, {"v": 1}, 1.0)])
            time.sleep(0.002)  # distinct timestamps even on coarse clocks
        store.put_docs("org", "alerts", [("first", {"v": 2, "note": "updated"}, 9.0)])
        assert store.count_docs("org", "alerts") == 3, "put_docs on an existing id updates it"
        assert store.get_docs("org", "alerts", ["first"])["first"] == {"v": 2, "note": "updated"}, "the whole document is replaced"
        assert [d for d, _ in store.list_docs("org", "alerts", order="created_asc")] == ["first", "second", "third"], \
            "an update keeps the creation time"
        assert [d for d, _ in store.list_docs("org", "alerts", order="updated_desc")][0] == "first"
        assert [d for d, _ in store.list_docs("org", "alerts", order="sort_desc")][0] == "first", "the sort key is updated"
        store.put_docs("org", "alerts", [("second", {"v": 3}, None)])
        assert [d for d, _ in store.list_docs("org", "alerts")][-1] == "second", "a sort key can be cleared"
        # the same id twice in one batch: the last copy wins
        store.put_docs("org", "alerts", [("dup", {"v": "one"}, 1.0), ("dup", {"v": "two"}, 2.0)])
        assert store.get_docs("org", "alerts", ["dup"])["dup"] == {"v": "two"}


# -- lexical search ------------------------------------------------------------------


def check_docs_batch_is_all_or_nothing(factory: StorageFactory) -> None:
    """Several collections in one transaction: a record and its audit entry are written together or not at all."""

    class FailingRows:
        """Rows that fail while being read, after the first collection of the batch was written."""

        def __iter__(self) -> Any:
            yield ("entry-2", {"n": 2}, 2.0)
            raise RuntimeError("the disk is full")

    with _fresh(factory) as store:
        store.put_docs_batch("org", [("cases", [("c-1", {"v": 1}, 1.0)]), ("audit", [("entry-1", {"n": 1}, 1.0)])])
        assert store.get_docs("org", "cases", ["c-1"]) == {"c-1": {"v": 1}} and store.count_docs("org", "audit") == 1
        store.put_docs_batch("org", [])
        store.put_docs_batch("org", [("cases", [])])
        _raises(Exception, lambda: store.put_docs_batch("org", [("cases", [("c-1", {"v": 2}, 2.0)]), ("audit", FailingRows())]),  # type: ignore[list-item]
                "a batch whose second collection fails")
        assert store.get_docs("org", "cases", ["c-1"]) == {"c-1": {"v": 1}}, "a failed batch must leave the first collection as it was"
        assert store.count_docs("org", "audit") == 1, "a failed batch must write nothing"


def check_conditional_writes(factory: StorageFactory) -> None:
    """`expect` preconditions are checked inside the write's transaction: of many writers that
    read the same counter and write it back conditionally, exactly one wins each round; a failed
    precondition writes nothing; `other_orgs` rows commit in the same transaction."""
    from factbridge.backends.storage.base import Expect
    from factbridge.errors import PreconditionFailed

    with _fresh(factory) as store:
        store.put_docs_batch("org", [("c", [("n", {"v": 0}, None)])], expect=[Expect("c", "n")])
        _raises(PreconditionFailed, lambda: store.put_docs_batch("org", [("c", [("n", {"v": 9}, None)])], expect=[Expect("c", "n")]),
                "expecting an existing document to be absent")
        _raises(PreconditionFailed, lambda: store.put_docs_batch("org", [("c", [("x", {"v": 9}, None)])], other_orgs=[("_system", "c", [("y", {}, None)])],
                                                                 expect=[Expect("c", "n", "v", 5)]), "a stale value")
        assert store.get_docs("org", "c", ["x"]) == {} and store.get_docs("_system", "c", ["y"]) == {}, "a failed precondition must write nothing"
        store.put_docs_batch("org", [("c", [("x", {"v": 1}, None)])], other_orgs=[("_system", "c", [("y", {"w": 1}, None)])],
                             expect=[Expect("c", "n", "v", 0), Expect("c", "absent-elsewhere", org="_system")])
        assert store.get_docs("_system", "c", ["y"]) == {"y": {"w": 1}} and store.get_docs("org", "c", ["y"]) == {}
        wins: list[int] = []
        errors: list[BaseException] = []

        def bump(worker: int) -> None:
            for _ in range(20):
                while True:
                    current = int(store.get_docs("org", "c", ["n"])["n"]["v"])
                    try:
                        store.put_docs_batch("org", [("c", [("n", {"v": current + 1}, None)])], expect=[Expect("c", "n", "v", current)])
                    except PreconditionFailed:
                        continue
                    except BaseException as exc:  # reported below, not swallowed
                        errors.append(exc)
                        return
                    wins.append(worker)
                    break

        threads = [threading.Thread(target=bump, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        assert store.get_docs("org", "c", ["n"])["n"]["v"] == len(wins) == 80, "every conditional increment must count exactly once"


# -- unicode ---------------------------------------------------------------------------


def check_unicode_roundtrip(factory: StorageFactory) -> None:
    org = "tổ chức ខ្មែរ 🇻🇳"
    nfc = unicodedata.normalize("NFC", "Tiếng Việt có dấu")
    nfd = unicodedata.normalize("NFD", "Tiếng Việt có dấu")
    text = f"{nfc} | {nfd} | ព័ត៌មានក្លែងក្លាយ | emoji 😷💉🧪👩🏽‍⚕️ | عربى | \"quotes\" 'single' \\backslash"
    ids = ["ខ្មែរ-១", "việt-1", "😷-🧪", "quote'\"id", "x" * 300]
    with _fresh(factory) as store:
        store.upsert_posts(org, [_post(i, text, raw={"text": text, "author": {"name": "Nguyễn"}}) for i in ids])
        store.upsert_factchecks(org, [_fc(i, text) for i in ids])
        for item_id in ids:
            post = store.get_post(org, item_id)
            assert post.text == text, f"text changed for {item_id!r}: NFC and NFD must both be kept as given"
            assert post.raw["text"] == text and store.get_factcheck(org, item_id).claim == text
        assert sorted(p.id for p in store.iter_posts(org)) == sorted(ids)
        store.put_docs(org, "notes 📝", [(i, {"texte": text, "ខ្មែរ": ["😷", nfd]}, 1.0) for i in ids])
        assert store.get_docs(org, "notes 📝", ids) == {i: {"texte": text, "ខ្មែរ": ["😷", nfd]} for i in ids}
        store.put_vectors(org, "post", "emb-ü", [(i, "sha", np.ones(3)) for i in ids])
        assert sorted(store.load_vectors(org, "post", "emb-ü")[0]) == sorted(ids)
        assert store.load_vectors(org, "post", "emb-ü", ids=ids[::-1])[0] == store.load_vectors(org, "post", "emb-ü")[0]
        store.replace_matches(org, ids[0], [_cand(ids[1], 1, 0.5)])
        assert store.matches_for_factcheck(org, ids[1])[0][0] == ids[0]


def check_nul_character_does_not_fail_a_batch(factory: StorageFactory) -> None:
    """U+0000 turns up in scraped data; a backend that cannot store it may replace it, never fail the batch."""
    with _fresh(factory) as store:
        store.upsert_posts("org", [_post("p-nul", "before\x00after", raw={"x": "a\x00b"}), _post("p-ok")])
        assert store.count_posts("org") == 2
        assert store.get_post("org", "p-nul").text in {"before\x00after", "before\ufffdafter"}
        assert _ids(store.upsert_posts("org", [_post("p-nul", "before\x00after", raw={"x": "a\x00b"})])) == ([], [], ["p-nul"])


def check_non_finite_numbers_in_documents(factory: StorageFactory) -> None:
    """NaN and infinities turn up in computed scores; a backend whose JSON cannot hold them stores null."""
    import math

    with _fresh(factory) as store:
        store.put_docs("org", "scores", [("d", {"nan": math.nan, "inf": [math.inf], "ok": 1.5}, 1.0)])
        doc = store.get_docs("org", "scores", ["d"])["d"]
        assert doc["ok"] == 1.5
        assert doc["nan"] is None or math.isnan(doc["nan"])
        assert doc["inf"][0] is None or doc["inf"][0] == math.inf


# -- organisation scope ---------------------------------------------------------------

SHARED = "shared-id"


def _populate(store: Storage, org: str, marker: str, value: float) -> None:
    """Writes one of everything for `org`, with ids shared between orgs and a marker in every text."""
    own = f"only-{marker.lower()}"
    token = f"{marker.lower()}only"
    store.upsert_factchecks(org, [_fc(SHARED, f"{marker} claim", tokens=f"shared {token}"), _fc(own, f"{marker} own claim", tokens=f"shared {token}")])
    store.upsert_posts(
        org,
        [_post(SHARED, f"{marker} post", tokens=f"shared {token}", created_at=datetime(2024, 1, 1, tzinfo=UTC)), _post(own, f"{marker} own post", tokens=f"shared {token}")],
        [Quarantined(source=f"{marker}.jsonl", line=1, reason=f"{marker} reason")],
    )
    store.add_quarantine(org, [Quarantined(source=f"{marker}.csv", line=2, reason=f"{marker} again", kind="factcheck")])
    for kind in ("factcheck", "post"):
        store.put_vectors(org, kind, "emb-scope", [(SHARED, f"{marker}-sha", np.full(4, value)), (own, f"{marker}-sha", np.full(4, value))])
    store.replace_matches(org, SHARED, [_cand(SHARED, 1, value / 10), _cand(own, 2, value / 20)])
    store.replace_matches(org, own, [_cand(SHARED, 1, value / 30)])
    store.put_docs(org, "scope", [(SHARED, {"marker": marker}, value), (own, {"marker": marker}, None)])
    store.put_docs_batch(org, [("scope", [(SHARED, {"marker": marker}, value)]), ("scope", [(own, {"marker": marker}, None)])])


def _vector_rows(loaded: tuple[list[str], np.ndarray]) -> list[tuple[str, list[float]]]:
    ids, matrix = loaded
    return sorted(zip(ids, matrix.tolist(), strict=True))


def _safe(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except NotFound:
        return "NotFound"


def _dump(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_dump(v) for v in value]
    return value


# Every read of the protocol that takes an org, and what it returns for one org.
SCOPED_READS: dict[str, Callable[[Storage, str], Any]] = {
    "get_factcheck": lambda s, o: _safe(lambda: s.get_factcheck(o, SHARED)),
    "get_factchecks": lambda s, o: s.get_factchecks(o, [SHARED, "only-alpha", "only-bravo"]),
    "iter_factchecks": lambda s, o: sorted((fc.model_dump(mode="json") for fc in s.iter_factchecks(o)), key=lambda d: d["id"]),
    "count_factchecks": lambda s, o: s.count_factchecks(o),
    "factcheck_fields": lambda s, o: [s.factcheck_fields(o, ["claim", "raw.n"]), s.factcheck_fields(o, ["claim"], ids=[SHARED, "only-alpha", "only-bravo"])],
    "factcheck_stamp": lambda s, o: "empty" if s.factcheck_stamp(o) == s.factcheck_stamp("org-never-written") else s.factcheck_stamp(o),
    "factchecks_changed": lambda s, o: sorted(s.factchecks_changed(o, s.factcheck_stamp("org-never-written")) or ()),
    "factcheck_shas": lambda s, o: s.factcheck_shas(o),
    "get_post": lambda s, o: _safe(lambda: s.get_post(o, SHARED)),
    "get_posts": lambda s, o: s.get_posts(o, [SHARED, "only-alpha", "only-bravo"]),
    "post_times": lambda s, o: s.post_times(o, [SHARED, "only-alpha", "only-bravo"]),
    "list_posts": lambda s, o: s.list_posts(o),
    "iter_posts": lambda s, o: sorted((p.model_dump(mode="json") for p in s.iter_posts(o)), key=lambda d: d["id"]),
    "count_posts": lambda s, o: s.count_posts(o),
    "changed_posts": lambda s, o: sorted((p.model_dump(mode="json") for p in s.changed_posts(o)[0]), key=lambda d: d["id"]),
    "list_quarantine": lambda s, o: s.list_quarantine(o),
    "load_vectors": lambda s, o: [_vector_rows(s.load_vectors(o, k, "emb-scope")) for k in ("factcheck", "post")]
    + [_vector_rows(s.load_vectors(o, k, "emb-scope", ids=[SHARED, "only-alpha", "only-bravo"])) for k in ("factcheck", "post")],
    "vector_shas": lambda s, o: [s.vector_shas(o, k, "emb-scope") for k in ("factcheck", "post")],
    "vector_stamp": lambda s, o: [_stamp_or_empty(s, o, k) for k in ("factcheck", "post")],
    "vectors_changed": lambda s, o: [sorted(s.vectors_changed(o, k, "emb-scope", s.vector_stamp("org-never-written", k, "emb-never-written")) or ())
                                     for k in ("factcheck", "post")],
    "matches_for_post": lambda s, o: [s.matches_for_post(o, i) for i in (SHARED, "only-alpha", "only-bravo")],
    "matches_for_posts": lambda s, o: s.matches_for_posts(o, [SHARED, "only-alpha", "only-bravo"]),
    "matches_for_factcheck": lambda s, o: [s.matches_for_factcheck(o, i) for i in (SHARED, "only-alpha", "only-bravo")],
    "get_docs": lambda s, o: s.get_docs(o, "scope", [SHARED, "only-alpha", "only-bravo"]),
    "list_docs": lambda s, o: [s.list_docs(o, "scope", order=order) for order in ("sort_desc", "sort_asc", "updated_desc", "created_asc", "id")],
    "list_docs_keyed": lambda s, o: [s.list_docs_keyed(o, "scope", order=order) for order in ("sort_desc", "sort_asc")],
    "count_docs": lambda s, o: s.count_docs(o, "scope"),
}
SCOPED_WRITES = {"upsert_factchecks", "upsert_posts", "add_quarantine", "put_vectors", "replace_matches", "put_docs", "put_docs_batch"}
EMPTY_VIEW: dict[str, Any] = {
    "get_factcheck": "NotFound", "get_factchecks": {}, "iter_factchecks": [], "count_factchecks": 0, "factcheck_fields": [{}, {}], "factcheck_stamp": "empty",
    "factchecks_changed": [], "factcheck_shas": {}, "vectors_changed": [[], []],
    "get_post": "NotFound", "get_posts": {}, "post_times": {}, "list_posts": [], "iter_posts": [], "count_posts": 0, "changed_posts": [],
    "list_quarantine": [], "load_vectors": [[], [], [], []], "vector_shas": [{}, {}], "vector_stamp": ["empty", "empty"],
    "matches_for_post": [[], [], []], "matches_for_posts": {},
    "matches_for_factcheck": [[], [], []], "get_docs": {},
    "list_docs": [[], [], [], [], []], "list_docs_keyed": [[], []], "count_docs": 0,
}


def _stamp_or_empty(store: Storage, org: str, kind: str) -> str:
    """The vectors' stamp, or "empty" where it is the stamp of vectors never written (each
    backend has its own)."""
    stamp = store.vector_stamp(org, kind, "emb-scope")
    return "empty" if stamp == store.vector_stamp(org, kind, "emb-never-written") else stamp


def _view(store: Storage, org: str) -> dict[str, Any]:
    return {name: _dump(read(store, org)) for name, read in SCOPED_READS.items()}


def _diff(expected: dict[str, Any], got: dict[str, Any]) -> str:
    changed = [k for k in expected if expected[k] != got.get(k)]
    return "differs in: " + ", ".join(f"{k} (expected {expected[k]!r}, got {got.get(k)!r})" for k in changed)


def scoped_protocol_methods() -> set[str]:
    """Methods of the Storage protocol whose first argument is the organisation."""
    return {
        name
        for name, fn in inspect.getmembers(Storage, inspect.isfunction)
        if list(inspect.signature(fn).parameters)[1:2] == ["org"]
    }


def check_org_scope_everywhere(factory: StorageFactory) -> None:
    covered = set(SCOPED_READS) | SCOPED_WRITES
    assert scoped_protocol_methods() == covered, (
        f"the scope check must cover every org-scoped method; uncovered: {sorted(scoped_protocol_methods() - covered)}"
    )
    with _fresh(factory) as store:
        _populate(store, "alpha", "ALPHA", 1.0)
        alpha_alone = _view(store, "alpha")
        assert alpha_alone["count_factchecks"] == 2 and alpha_alone["count_docs"] == 2
        _populate(store, "bravo", "BRAVO", 2.0)
        alpha, bravo = _view(store, "alpha"), _view(store, "bravo")
        assert alpha == alpha_alone, "another org's writes changed this org's data: " + _diff(alpha_alone, alpha)
        for name in SCOPED_READS:
            assert "bravo" not in repr(alpha[name]).lower(), f"{name} leaks org bravo's data into alpha: {alpha[name]!r}"
            assert "alpha" not in repr(bravo[name]).lower(), f"{name} leaks org alpha's data into bravo: {bravo[name]!r}"
        assert alpha["load_vectors"] != bravo["load_vectors"]
        for empty_org in ("alpha%", "ALPHA", "", "alpha "):
            view = _view(store, empty_org)
            assert view == EMPTY_VIEW, f"org {empty_org!r} holds nothing but sees: " + _diff(EMPTY_VIEW, view)
        # clearing one org's matches leaves the other's
        store.replace_matches("bravo", SHARED, [])
        assert _view(store, "alpha") == alpha_alone


# -- roles -------------------------------------------------------------------------------


def check_implements_every_role(factory: StorageFactory) -> None:
    """A backend is every role of the contract (callers may ask for one role only)."""
    with _fresh(factory) as store:
        missing = [role.__name__ for role in ROLES if not isinstance(store, role)]
        assert not missing, f"{type(store).__name__} does not implement: {', '.join(missing)}"
        assert not hasattr(store, "search_text"), "lexical search is the matcher's (in-memory BM25), not a storage role"


# -- concurrency ---------------------------------------------------------------------------


def check_concurrent_writers_and_readers(factory: StorageFactory) -> None:
    errors: list[BaseException] = []
    with _fresh(factory) as store:
        def work(worker: int) -> None:
            try:
                for i in range(12):
                    store.upsert_posts("org", [_post(f"w{worker}-{i}-{j}", tokens=f"word w{worker}") for j in range(3)])
                    store.put_docs("org", "c", [(f"w{worker}-{i}", {"i": i}, float(i))])
                    store.count_posts("org")
                    store.list_docs("org", "c", limit=5)
                    store.get_posts("org", [f"w{worker}-{i}-0"])
            except BaseException as exc:  # collected and re-raised in the main thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, f"concurrent use failed: {errors[:3]}"
        assert store.count_posts("org") == 6 * 12 * 3 and store.count_docs("org", "c") == 6 * 12


STORAGE_CHECKS: list[Callable[[StorageFactory], None]] = [
    check_schema_is_current_and_migrate_is_idempotent,
    check_newer_schema_is_refused,
    check_reopen_keeps_everything,
    check_closed_storage_raises_storage_error,
    check_factcheck_upsert_is_idempotent,
    check_factcheck_roundtrip_keeps_raw_record,
    check_factcheck_reads,
    check_missing_items_raise_not_found,
    check_post_upsert_is_idempotent,
    check_changed_posts,
    check_posts_and_quarantine_commit_together,
    check_failed_batch_writes_nothing,
    check_list_and_iter_posts,
    check_post_times,
    check_quarantine_add_and_list,
    check_vectors_roundtrip,
    check_vector_stamp,
    check_factcheck_fields,
    check_factcheck_stamp,
    check_factcheck_shas,
    check_vectors_by_ids,
    check_embedder_dimension_mismatch_raises,
    check_vectors_of_two_embedders_never_mix,
    check_matches_replace_and_read,
    check_docs_put_get_list_count,
    check_docs_upsert_semantics,
    check_docs_batch_is_all_or_nothing,
    check_implements_every_role,
    check_conditional_writes,
    check_unicode_roundtrip,
    check_nul_character_does_not_fail_a_batch,
    check_non_finite_numbers_in_documents,
    check_org_scope_everywhere,
    check_concurrent_writers_and_readers,
]


def parametrize_storage_checks(checks: list[Callable[[StorageFactory], None]] | None = None) -> Any:
    """`pytest.mark.parametrize("check", ...)` over the suite, one test id per check."""
    import pytest

    chosen = STORAGE_CHECKS if checks is None else checks
    return pytest.mark.parametrize("check", chosen, ids=[c.__name__.removeprefix("check_") for c in chosen])


__all__ = [
    "STORAGE_CHECKS",
    "CheckSkipped",
    "StorageFactory",
    "parametrize_storage_checks",
    "scoped_protocol_methods",
]
