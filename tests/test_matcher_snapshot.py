"""A process's first matcher started from the library a process saved (pipeline/snapshot.py)
is the matcher a load of the store gives now, whatever was written since, by whom, or when
the store went back to an older copy; and it reads only what changed."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_matcher_update import ORG, _claim, _copy, _fc, _posts, _same, _withdraw

import factbridge.pipeline.matching as matching
import factbridge.services as services_module
from factbridge.models import FactCheck
from factbridge.pipeline import snapshot
from factbridge.pipeline.centering import LanguageCentering
from factbridge.pipeline.matching import Matcher, index_factchecks
from factbridge.pipeline.prepare import embedding_text, prepare_factcheck
from factbridge.services import Services
from factbridge.settings import load_settings

LANGS = ("vi", "km", "fr", "en")


def _services(tmp_path: Path, url: str, mode: str = "memory", **more: Any) -> Services:
    return Services(load_settings(env={}, overrides={
        "data_dir": str(tmp_path), "storage_url": url, "embedder": "hashing", "embed_cache": "off", "match_fusion": "rrf",
        "match_memory_max": 0 if mode == "stored" else 1_000_000, "match_snapshot_min": 0, **more,
    }))


def _put(services: Services, fcs: list[FactCheck], embed: bool = True) -> None:
    services.storage.upsert_factchecks(ORG, [prepare_factcheck(fc, LANGS) for fc in fcs])
    if embed:
        index_factchecks(services.storage, services.embedder, ORG)


class Reads:
    """Counts full loads (`Matcher.refresh`) and which fact-checks' fields are read."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, storage: Any) -> None:
        self.loads: list[int] = []
        self.fields: list[int] = []  # ids read per call; -1: the whole library
        real_refresh, real_fields = Matcher.refresh, storage.factcheck_fields
        monkeypatch.setattr(Matcher, "refresh", lambda m: self.loads.append(1) or real_refresh(m))
        monkeypatch.setattr(storage, "factcheck_fields",
                            lambda org, fields, ids=None: self.fields.append(-1 if ids is None else len(ids)) or real_fields(org, fields, ids))


def _fresh(services: Services) -> Matcher:
    return services._build_matcher(ORG, None, None)


@pytest.fixture
def library() -> Iterator[tuple[random.Random, list[FactCheck]]]:
    rng = random.Random(17)
    fcs = [_fc(rng, n) for n in range(60)]
    fcs += [_copy(rng, fcs[n], n, days=rng.randint(1, 30)) for n in range(0, 20, 2)]
    yield rng, fcs


def _check_restores(tmp_path: Path, url: str, mode: str, library: tuple[random.Random, list[FactCheck]], monkeypatch: pytest.MonkeyPatch) -> None:
    rng, fcs = library
    with _services(tmp_path, url, mode) as first:
        _put(first, fcs)
        loaded = first.matcher(ORG)
        assert loaded.dense_index == mode
        path = snapshot.snapshot_path(tmp_path, ORG, first.embedder.id)
        assert path.exists(), "a library loaded whole is saved"
    posts = _posts(rng, fcs)

    with _services(tmp_path, url, mode) as second:
        vectors = second.embedder.encode_queries([embedding_text(p) for p in posts])
        with monkeypatch.context() as m:
            reads = Reads(m, second.storage)
            restored = second.matcher(ORG)
            assert not reads.loads and not reads.fields, "nothing changed: the saved library, nothing read but the hashes"
        _same(restored, _fresh(second), posts, vectors)
        # another process writes: fact-checks added (one a copy published before its original),
        # claims edited (one not yet embedded), a group of copies split, an edit keeping the text,
        # an original withdrawn, one listed as withdrawn only, one without a vector yet
        original = fcs[1]
        early = _copy(rng, original, 100, days=0).model_copy(update={"id": "early", "published_at": original.published_at})
        _put(second, [_fc(rng, n) for n in range(200, 212)] + [early, _copy(rng, fcs[3], 101, days=2)])
        _put(second, [fcs[n].model_copy(update={"claim": _claim(rng, fcs[n].language or "en")}) for n in (4, 7, 30)])
        _put(second, [fcs[41].model_copy(update={"claim": _claim(rng, "fr")})], embed=False)
        _put(second, [fcs[60].model_copy(update={"claim": "a claim of its own " + _claim(rng, "en")}),
                      fcs[9].model_copy(update={"rating": "Mostly false"})])
        _withdraw(second.storage, fcs[5])
        _withdraw(second.storage, fcs[12], mark_entry=False)
        _put(second, [_fc(rng, 300)], embed=False)

    with _services(tmp_path, url, mode) as third:
        with monkeypatch.context() as m:
            reads = Reads(m, third.storage)
            restored = third.matcher(ORG)
            assert not reads.loads, "started from the saved library, not loaded"
            assert reads.fields and -1 not in reads.fields, "only what changed is read"
            assert sum(reads.fields) < len(restored) // 2
        _same(restored, _fresh(third), posts, vectors)
        assert third.matcher(ORG) is restored, "then cached as any matcher"


def test_a_restored_matcher_is_the_matcher_a_load_gives_sqlite(tmp_path: Path, library: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _check_restores(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", "memory", library, monkeypatch)


def test_a_restored_stored_index_matcher_is_the_matcher_a_load_gives_sqlite(tmp_path: Path, library: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _check_restores(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", "stored", library, monkeypatch)


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["memory", "stored"])
def test_a_restored_matcher_is_the_matcher_a_load_gives_postgres(mode: str, postgres_url: str, tmp_path: Path, library: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _check_restores(tmp_path, postgres_url, mode, library, monkeypatch)


def test_a_fact_check_written_while_the_library_loads_is_read_again(tmp_path: Path, library: Any) -> None:
    """The library is read after the hashes: a fact-check edited in between and put back as it
    was after the load has its first hash again, though the saved library holds the edit. It
    is saved as unknown, so the next start reads it again."""
    rng, fcs = library
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    target = fcs[6]
    edited = target.model_copy(update={"claim": "an edit read by the load alone " + _claim(rng, "en")})
    with _services(tmp_path, url) as first:
        _put(first, fcs)
        real = matching.library_entries
        calls: list[int] = []

        def edit_then_read(storage: Any, org: str, ids: Any) -> Any:
            if not calls:
                _put(first, [edited])
            calls.append(1)
            return real(storage, org, ids)

        matching.library_entries = edit_then_read  # type: ignore[assignment]
        try:
            loaded = first.matcher(ORG)
        finally:
            matching.library_entries = real  # type: ignore[assignment]
        assert any(item.norm_text.startswith("an edit read by the load alone") for item in loaded.items), "the load read the edit"
        _put(first, [target])  # put back as it was
        assert first.storage.factcheck_shas(ORG)[target.id] != ""
    with _services(tmp_path, url) as second:
        restored = second.matcher(ORG)
        posts = _posts(rng, fcs)
        _same(restored, _fresh(second), posts, second.embedder.encode_queries([embedding_text(p) for p in posts]))
        assert not any(item.norm_text.startswith("an edit read by the load alone") for item in restored.items)


def test_a_store_restored_from_an_older_backup(tmp_path: Path, library: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The saved library is newer than the store (put back from a backup, then written again up
    to the saved stamps' numbers): the hashes tell, the stamps would not."""
    rng, fcs = library
    db, backup = tmp_path / "db.sqlite", tmp_path / "backup.sqlite"
    url = f"sqlite:///{db}"
    with _services(tmp_path, url) as first:
        _put(first, fcs)
        with sqlite3.connect(db) as source, sqlite3.connect(backup) as copy:
            source.backup(copy)
        _put(first, [fcs[n].model_copy(update={"claim": _claim(rng, "vi")}) for n in (2, 8, 14)] + [_fc(rng, 400)])
        first.matcher(ORG)  # loaded and saved: newer than the backup
    db.unlink()
    for extra in (tmp_path / "db.sqlite-wal", tmp_path / "db.sqlite-shm"):
        extra.unlink(missing_ok=True)
    backup.rename(db)
    with _services(tmp_path, url) as second:
        _put(second, [fcs[n].model_copy(update={"rating": "Mostly false"}) for n in (20, 21, 22, 23)])  # the stamps move again
        with monkeypatch.context() as m:
            reads = Reads(m, second.storage)
            restored = second.matcher(ORG)
            assert not reads.loads
        posts = _posts(rng, fcs)
        _same(restored, _fresh(second), posts, second.embedder.encode_queries([embedding_text(p) for p in posts]))
        assert "fc-400" not in restored._position and "400" not in restored._position


def test_a_damaged_snapshot_is_logged_and_the_library_loaded(tmp_path: Path, library: Any, caplog: pytest.LogCaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    rng, fcs = library
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with _services(tmp_path, url) as first:
        _put(first, fcs)
        first.matcher(ORG)
        path = snapshot.snapshot_path(tmp_path, ORG, first.embedder.id)
    whole = path.read_bytes()
    for damaged in (whole[: len(whole) // 2], whole[:100] + b"\0" * 64 + whole[164:], b"not a zip at all"):
        path.write_bytes(damaged)
        caplog.clear()
        with _services(tmp_path, url) as second, monkeypatch.context() as m:
            reads = Reads(m, second.storage)
            got = second.matcher(ORG)
            assert reads.loads == [1] and "loading the library" in caplog.text
            assert len(got) == 60
        with _services(tmp_path, url) as third, monkeypatch.context() as m:
            reads = Reads(m, third.storage)
            assert len(third.matcher(ORG)) == 60 and not reads.loads, "the load saved a whole one again"


@pytest.mark.parametrize("other", ["centering", "stored", "version"])
def test_a_snapshot_made_for_another_matcher_is_not_used(other: str, tmp_path: Path, library: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Made without centering and with the library in memory; read with centering, with the
    stored index, or by a matcher of another version (its tokens' or BM25's rules may differ)."""
    rng, fcs = library
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with _services(tmp_path, url) as first:
        _put(first, fcs)
        assert first.matcher(ORG).centering is None
    with _services(tmp_path, url, mode="stored" if other == "stored" else "memory") as second, monkeypatch.context() as m:
        if other == "centering":
            means = {lang: (np.random.default_rng(n).standard_normal(second.embedder.dim) * 0.02).astype(np.float32)
                     for n, lang in enumerate(("*", *LANGS))}
            centering = LanguageCentering("test-centering-1", second.embedder.id, {"passage": means, "query": means})
            m.setattr(Services, "centering", lambda self, embedder=None, wanted=None: centering)
        if other == "version":
            m.setattr(matching, "MATCHER_VERSION", matching.MATCHER_VERSION + "-next")
        reads = Reads(m, second.storage)
        got = second.matcher(ORG)
        assert reads.loads == [1], "another matcher's library: loaded"
        posts = _posts(rng, fcs)
        _same(got, _fresh(second), posts, second.embedder.encode_queries([embedding_text(p) for p in posts]))


def test_a_save_removes_what_saves_killed_half_way_left(tmp_path: Path, library: Any) -> None:
    """A process killed while it saved leaves its temporary file (~1 KB a fact-check); the next
    save removes those older than an hour, and leaves a younger one (another process's save)."""
    import os
    import time

    _, fcs = library
    with _services(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}") as services:
        path = snapshot.snapshot_path(tmp_path, ORG, services.embedder.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        killed, running = path.with_name(f"{path.name}.123.456.tmp"), path.with_name(f"{path.name}.789.1.tmp")
        other = path.with_name("matcher-0000000000000000.npz.123.456.tmp")  # another organisation's: its own saves see to it
        for left in (killed, running, other):
            left.write_bytes(b"PK half a zip")
        hour_ago = time.time() - snapshot.LEFT_OVER_S - 60
        for left in (killed, other):
            os.utime(left, (hour_ago, hour_ago))
        _put(services, fcs)
        services.matcher(ORG)
        assert path.exists() and not killed.exists() and running.exists() and other.exists()


def test_small_libraries_are_not_saved(tmp_path: Path, library: Any) -> None:
    _, fcs = library
    with _services(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", match_snapshot_min=len(fcs) + 1) as services:
        _put(services, fcs)
        services.matcher(ORG)
        assert not snapshot.snapshot_path(tmp_path, ORG, services.embedder.id).exists()


def test_a_restore_that_read_much_again_saves_again(tmp_path: Path, library: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rng, fcs = library
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    monkeypatch.setattr(services_module, "SNAPSHOT_RESAVE_MIN", 5)
    with _services(tmp_path, url) as first:
        _put(first, fcs)
        first.matcher(ORG)
        _put(first, [_fc(rng, n) for n in range(500, 510)])
    with _services(tmp_path, url) as second, monkeypatch.context() as m:
        reads = Reads(m, second.storage)
        assert len(second.matcher(ORG)) == 70 and not reads.loads and reads.fields
    with _services(tmp_path, url) as third, monkeypatch.context() as m:
        reads = Reads(m, third.storage)
        assert len(third.matcher(ORG)) == 70 and not reads.loads and not reads.fields, "saved again after the restore: nothing to read"
