"""The coordination stage keeps each organisation's share records in memory and reads only
the posts written since its last read: what it stores must equal the full recompute over
every stored post (`shares_from_posts` + `detect_coordination` + `link_to_narratives`),
whatever the batches: edited posts, a repeated batch, posts out of time order, two workers
on one store, a restart, PostgreSQL."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from factbridge.backends.storage import open_storage
from factbridge.models import ImageRecord, Post
from factbridge.pipeline.coordination import (
    _pairs_in,
    _unique_band_keys,
    coordination_stage,
    detect_coordination,
    link_to_narratives,
    share_records,
    shares_from_posts,
)
from factbridge.pipeline.records import (
    NarrativeCoordinations,
    NarrativeMembers,
    NarrativeMembership,
)
from factbridge.settings import Settings, load_settings

ORG = "o"
START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
STORIES = [
    "5G towers spread the virus, doctors confirm! Read before it is deleted",
    "The election was stolen, thousands of ballots found in a river near the city",
    "Drinking hot lemon water cures the flu in two days, say nurses at the hospital",
    "Banks will close all accounts on Monday, take your money out now before it is too late",
]


@dataclasses.dataclass
class Context:
    """What the stage reads of its services: the store and the settings."""

    storage: Any
    settings: Settings


def _settings() -> Settings:
    # min participation 2 and no Louvain threshold to hit often: small random sets still make networks
    return load_settings(env={}, overrides={"coordination_min_participation": 2, "coordination_split_above": 4})


class Feed:
    """Random batches: a campaign of accounts posting the same stories and links within seconds,
    background accounts posting their own, hashtags and images on some posts; edits of earlier
    posts (text, links, time, author changed), repeats of an earlier batch, times out of order."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.posts: dict[str, Post] = {}
        self.batches: list[list[Post]] = []
        self.next_id = 0

    def _post(self, post_id: str | None = None) -> Post:
        rng = self.rng
        if post_id is None:
            post_id = f"p{rng.randint(0, 9999):04d}-{self.next_id}"  # ids in no order: a new post may sort first
            self.next_id += 1
        minute = rng.randint(0, 240)
        story = rng.randrange(len(STORIES))
        if rng.random() < 0.55:  # the campaign: same story and link within seconds
            author = f"camp-{rng.randint(0, 5)}"
            when = START + timedelta(minutes=minute - minute % 20, seconds=rng.randint(0, 50))
            text = f"{STORIES[story]} {rng.choice(['!!', 'share', 'now'])}"
            urls = [f"https://News-{minute // 20}.example/{story}"]
        else:
            author = f"user-{rng.randint(0, 30)}"
            when = START + timedelta(minutes=minute, seconds=rng.randint(0, 59))
            text = f"my own words number {rng.randint(0, 10_000)} about the day {rng.randint(0, 50)}"
            urls = [f"https://blog.example/{rng.randint(0, 8)}"] if rng.random() < 0.3 else []
        if rng.random() < 0.3:
            text += " #" + rng.choice(["truth", "WakeUp", "vote", "Health"])
        images = [ImageRecord(source=f"story-{story}.jpg", dhash=f"{story:016x}" * 4)] if rng.random() < 0.15 else []
        return Post(id=post_id, author=author if rng.random() > 0.03 else "", created_at=when if rng.random() > 0.03 else None,
                    text=text, urls=urls, images=images, language="en", platform="test")

    def batch(self) -> list[Post]:
        rng = self.rng
        roll = rng.random()
        if self.batches and roll < 0.15:
            out = list(rng.choice(self.batches))  # a repeated batch
        else:
            out = [self._post() for _ in range(rng.randint(5, 25))]
            if self.posts and roll < 0.5:  # edits of earlier posts
                out += [self._post(pid) for pid in rng.sample(sorted(self.posts), min(3, len(self.posts)))]
        self.batches.append(out)
        return out


def _memberships(storage: Any, posts: list[Post]) -> None:
    """Narratives by story (what the narratives stage would find), written as its records."""
    members = []
    for p in posts:
        story = next((i for i, s in enumerate(STORIES) if p.text.startswith(s[:30])), None)
        narrative = f"n-{story}" if story is not None else f"n-own-{hash(p.author) % 3}"
        members.append((NarrativeMembership(p.id, narrative, decided_by="test"), None))
    storage.put_docs(ORG, *NarrativeMembers.rows(members))


def _stored_links(storage: Any) -> dict[str, dict[str, Any]]:
    accessor = NarrativeCoordinations(storage)
    linked = accessor.get(ORG, accessor.linked(ORG))
    return {nid: {k: v for k, v in rec.to_doc().items() if k != "updated_at"} for nid, rec in linked.items()}


def _full_recompute(storage: Any, settings: Settings) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    section = settings.coordination
    stored = list(storage.iter_posts(ORG))
    result = detect_coordination(shares_from_posts(stored, section.object_types), section)
    docs = link_to_narratives(storage, ORG, stored, result)
    summary = {k: v for k, v in result.as_dict().items() if k != "timings_s"}
    return summary, {nid: {k: v for k, v in rec.to_doc().items() if k != "updated_at"} for nid, rec in docs.items()}


def _table(table: Any) -> dict[str, Any]:
    return {
        "account": table.account.tolist(), "obj": table.obj.tolist(), "time": table.time.tolist(), "content": table.content.tolist(),
        "accounts": [str(a) for a in table.accounts], "objects": [table.objects[i] for i in range(len(table.objects))],
        "contents": [str(c) for c in table.contents], "rows_read": table.rows_read, "skipped": table.skipped_count,
        "dtypes": [table.account.dtype, table.obj.dtype, table.time.dtype, table.content.dtype],
    }


def _kept_records_summary(storage: Any, settings: Settings) -> dict[str, Any]:
    section = settings.coordination
    records = share_records(storage, ORG, section.object_types)
    result = detect_coordination(records.table(), section)
    return {k: v for k, v in result.as_dict().items() if k != "timings_s"}


def _run(feed: Feed, stores: list[Any], batches: int, reopen: Callable[[int], Any] | None = None) -> int:
    """Ingest `batches` batches, each through one of `stores` (the workers) in turn; after each, the
    detection over the kept records and the stored links must equal the full recompute."""
    settings = _settings()
    networks_seen = 0
    for i in range(batches):
        if reopen is not None and i == batches // 2:  # a worker restarts: its in-memory records are gone
            stores[0] = reopen(0)
        store = stores[i % len(stores)]
        batch = feed.batch()
        store.upsert_posts(ORG, batch)
        _memberships(store, batch)
        summary = coordination_stage(Context(store, settings), ORG, batch)
        expected_summary, expected_docs = _full_recompute(store, settings)
        if "skipped" not in summary:
            section = settings.coordination
            kept = share_records(store, ORG, section.object_types).table()
            assert _table(kept) == _table(shares_from_posts(list(store.iter_posts(ORG)), section.object_types)), f"batch {i}: share table"
            assert _kept_records_summary(store, settings) == expected_summary, f"batch {i}: detection differs from the full recompute"
            assert _stored_links(store) == expected_docs, f"batch {i}: stored links differ from the full recompute"
            networks_seen = max(networks_seen, len(expected_summary["networks"]))
    return networks_seen


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_batches_equal_the_full_recompute(seed: int, tmp_path: Path) -> None:
    store = open_storage(f"sqlite:///{tmp_path / 'one.db'}")
    store.migrate()
    assert _run(Feed(seed), [store], 30) >= 1, "the campaign must form a network, or the comparison says little"
    store.close()


def test_two_workers_and_a_restart_on_one_sqlite_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    stores = [open_storage(url), open_storage(url)]
    stores[0].migrate()

    def reopen(i: int) -> Any:
        stores[i].close()
        return open_storage(url)

    assert _run(Feed(7), stores, 30, reopen) >= 1
    for s in stores:
        s.close()


def test_postgres_two_workers(postgres_factory) -> None:  # type: ignore[no-untyped-def]
    first = postgres_factory()
    stores = [first, postgres_factory.reopen(first)]  # two connections pools, two workers' records
    assert _run(Feed(11), stores, 16) >= 1
    for s in stores:
        s.close()


def test_an_edit_removes_the_old_shares() -> None:
    """Three accounts co-share three links; then one account's posts are edited to other links
    far apart in time: the network loses that account (its old shares do not linger)."""
    store = open_storage("sqlite:///:memory:")
    store.migrate()
    settings = _settings()
    posts = [Post(id=f"c{k}{j}", author=f"acct-{j}", created_at=START + timedelta(hours=k, seconds=5 * j), text=STORIES[0],
                  urls=[f"https://news-{k}.example/x"], language="en") for k in range(3) for j in range(3)]
    store.upsert_posts(ORG, posts)
    _memberships(store, posts)
    coordination_stage(Context(store, settings), ORG, posts)
    assert [net["accounts"] for net in _kept_records_summary(store, settings)["networks"]] == [["acct-0", "acct-1", "acct-2"]]
    edited = [p.model_copy(update={"urls": [f"https://elsewhere.example/{k}"], "text": f"something else entirely, post {k}",
                                   "created_at": START + timedelta(days=1, hours=k)}) for k, p in enumerate(posts) if p.author == "acct-2"]
    store.upsert_posts(ORG, edited)
    coordination_stage(Context(store, settings), ORG, edited)
    assert [net["accounts"] for net in _kept_records_summary(store, settings)["networks"]] == [["acct-0", "acct-1"]]
    assert _stored_links(store) == _full_recompute(store, settings)[1]
    store.close()


def test_real_campaign_finds_the_same_network_batch_by_batch(storage: Any) -> None:
    """The existing campaign fixture (tests/test_coordination.py), ingested post by post in
    shuffled order, ends with the network and narrative links the full recompute finds."""
    from test_coordination import _campaign_posts

    settings = load_settings(env={}, overrides={})
    posts = _campaign_posts()
    random.Random(3).shuffle(posts)
    for p in posts:
        storage.upsert_posts(ORG, [p])
        _memberships(storage, [p])
        coordination_stage(Context(storage, settings), ORG, [p])
    summary, docs = _full_recompute(storage, settings)
    assert [net["accounts"] for net in summary["networks"]] == [["acct-a", "acct-b", "acct-c"]]
    assert _kept_records_summary(storage, settings) == summary
    assert _stored_links(storage) == docs and docs


@pytest.mark.parametrize("bulk_factor", [0, 10**9], ids=["key-by-key", "one-pass"])
def test_near_duplicate_groups_follow_edits_and_new_first_posts(bulk_factor: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many near-identical texts from a few templates, in random id order, with edits that move
    a post to another template and posts losing their account: after each batch the kept
    records' share table (near-duplicate groups and their names included) is the full recompute's.
    The band-key index merges its delta often here (as it does every ~4,000 posts in use)."""
    from factbridge.pipeline.coordination import ShareRecords, TextGroups

    monkeypatch.setattr(TextGroups, "merge_above", 40)
    monkeypatch.setattr(TextGroups, "bulk_factor", bulk_factor)  # both ways of finding a batch's pairs
    rng = random.Random(5)
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike".split()
    templates = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(6)]
    store = open_storage("sqlite:///:memory:")
    store.migrate()
    records = ShareRecords(_settings().coordination.object_types)
    ids: list[str] = []
    for _ in range(25):
        batch = []
        for _ in range(rng.randint(3, 12)):
            edit = ids and rng.random() < 0.3
            post_id = rng.choice(ids) if edit else f"t{rng.randint(0, 99999):05d}"
            ids.append(post_id)
            text = rng.choice(templates) + " " + rng.choice(words) * rng.randint(0, 2)  # near-identical, or not
            batch.append(Post(id=post_id, author="" if rng.random() < 0.05 else f"a{rng.randint(0, 6)}", text=text, language="en",
                              created_at=START + timedelta(seconds=rng.randint(0, 600))))
        store.upsert_posts(ORG, batch)
        records.catch_up(store, ORG)
        expected = shares_from_posts(list(store.iter_posts(ORG)), records.object_types)
        assert _table(records.table()) == _table(expected)
    assert len({expected.objects[int(c)] for c in expected.obj if expected.objects[int(c)].startswith("text:")}) < len(set(ids)), "some texts grouped"
    store.close()


def test_a_batch_reads_only_what_changed(tmp_path: Path) -> None:
    """After the first batch the stage reads the posts written since its last read, never
    every stored post (no `iter_posts`), and counts the store only before its first read."""
    store = open_storage(f"sqlite:///{tmp_path / 'reads.db'}")
    store.migrate()
    reads: list[int] = []
    calls: list[str] = []
    changed, iter_posts, count_posts = store.changed_posts, store.iter_posts, store.count_posts

    def spy_changed(org: str, cursor: str = "") -> tuple[list[Post], str]:
        out = changed(org, cursor)
        reads.append(len(out[0]))
        return out

    store.changed_posts = spy_changed  # type: ignore[method-assign]
    store.iter_posts = lambda *a, **k: calls.append("iter_posts") or iter_posts(*a, **k)  # type: ignore[method-assign]
    store.count_posts = lambda *a, **k: calls.append("count_posts") or count_posts(*a, **k)  # type: ignore[method-assign]
    feed, settings = Feed(4), _settings()
    sizes: list[int] = []
    for _ in range(6):
        batch = [p for p in feed.batch() if p.author and p.created_at is not None] or [feed._post()]
        store.upsert_posts(ORG, batch)
        sizes.append(len({p.id for p in batch}))
        coordination_stage(Context(store, settings), ORG, batch)
    assert calls == ["count_posts"], "one count before the first read; never a read of every post"
    assert reads[0] == sizes[0] and all(n <= size for n, size in zip(reads[1:], sizes[1:], strict=True)), \
        f"each read has at most the batch's posts: read {reads}, batches {sizes}"
    assert store.count_posts(ORG) > max(reads), "the store holds more than any one read"
    store.close()


def test_a_failure_mid_batch_leaves_no_half_applied_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """If reading a batch into the records fails half-way, the stage fails, and the next batch
    starts again from the store: its result is the full recompute's."""
    import factbridge.text.urls as urls

    store = open_storage("sqlite:///:memory:")
    store.migrate()
    feed, settings = Feed(9), _settings()
    for _ in range(4):
        batch = feed.batch()
        store.upsert_posts(ORG, batch)
        _memberships(store, batch)
        coordination_stage(Context(store, settings), ORG, batch)
    real = urls.extract_hashtags
    monkeypatch.setattr(urls, "extract_hashtags", lambda text: (_ for _ in ()).throw(RuntimeError("boom")))
    batch = feed.batch()
    store.upsert_posts(ORG, batch)
    _memberships(store, batch)
    with pytest.raises(RuntimeError, match="boom"):
        coordination_stage(Context(store, settings), ORG, batch)
    monkeypatch.setattr(urls, "extract_hashtags", real)
    batch = feed.batch()
    store.upsert_posts(ORG, batch)
    _memberships(store, batch)
    coordination_stage(Context(store, settings), ORG, batch)
    section = settings.coordination
    assert _table(share_records(store, ORG, section.object_types).table()) == _table(shares_from_posts(list(store.iter_posts(ORG)), section.object_types))
    assert _stored_links(store) == _full_recompute(store, settings)[1]
    store.close()


def test_a_store_growing_past_the_ceiling_steps_aside_and_frees_the_records() -> None:
    store = open_storage("sqlite:///:memory:")
    store.migrate()
    settings = load_settings(env={}, overrides={"coordination_stage_max_posts": 30})
    records = share_records(store, ORG, settings.coordination.object_types)
    feed = Feed(12)
    first = [feed._post() for _ in range(20)]
    store.upsert_posts(ORG, first)
    assert "skipped" not in coordination_stage(Context(store, settings), ORG, first)
    assert len(records) == 20
    more = [feed._post() for _ in range(20)]
    store.upsert_posts(ORG, more)
    assert "40 stored posts > coordination_stage_max_posts (30)" in coordination_stage(Context(store, settings), ORG, more)["skipped"]
    assert len(records) == 0 and records.cursor == "", "the records are dropped, not kept growing"
    store.close()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_band_key_look_ups_give_what_numpy_unique_and_isin_of_the_pairs_give(seed: int) -> None:
    """The (band, key) de-duplication and membership test by numeric sorts equal `np.unique`
    (axis=0) and `np.isin` of the pairs as opaque records, keys in several bands included."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 2**64 - 1, size=40, dtype=np.uint64, endpoint=True)
    pool[:3] = [0, 2**63, 2**64 - 1]  # the sign bit of a uint64 key must not reorder it
    keys, bands = rng.choice(pool, size=300), rng.integers(0, 16, size=300).astype(np.int64)
    expected = np.unique(np.stack([bands.astype(np.uint64), keys], axis=1), axis=0)
    got_bands, got_keys = _unique_band_keys(bands, keys)
    assert got_bands.tolist() == expected[:, 0].astype(np.int64).tolist()
    assert got_keys.tolist() == expected[:, 1].tolist()
    assert got_bands.dtype == np.int64 and got_keys.dtype == np.uint64

    held_k, held_b = rng.choice(pool, size=500), rng.integers(0, 16, size=500).astype(np.int64)
    pair = np.dtype((np.void, 16))
    asked = np.ascontiguousarray(np.stack([got_keys.view(np.int64), got_bands], axis=1)).view(pair).ravel()
    held = np.ascontiguousarray(np.stack([held_k.view(np.int64), held_b], axis=1)).view(pair).ravel()
    inside = _pairs_in(held_k, held_b, got_keys, got_bands)
    assert inside.tolist() == np.isin(held, asked).tolist()
    assert 0 < inside.sum() < inside.shape[0]
    assert not _pairs_in(held_k, held_b, got_keys[:0], got_bands[:0]).any()
    assert _unique_band_keys(bands[:0], keys[:0])[0].shape == (0,)
