"""A cached matcher brought up to date from what changed (`Matcher.updated`, through
`Services.matcher`) is the matcher a fresh load of the same library gives: the same items in
the same order, the same copies, bit for bit the same BM25 scores and in-memory vectors, and
the same match results; and it reads only what changed."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from factbridge.models import FactCheck, Post
from factbridge.pipeline.lexical import BM25Index
from factbridge.pipeline.matching import Matcher, index_factchecks
from factbridge.pipeline.prepare import embedding_text, prepare_factcheck, prepare_post
from factbridge.pipeline.withdrawals import WithdrawnList, mark
from factbridge.services import Services
from factbridge.settings import load_settings

ORG = "default"
LANGS = ("vi", "km", "fr", "en")
WORDS = {
    "en": "vaccine water dam flood bank election virus cure salt power army border rice price tax school".split(),
    "fr": "vaccin eau barrage inondation banque élection virus remède sel armée frontière riz prix impôt école".split(),
    "vi": "vắc-xin nước đập lũ ngân hàng bầu cử vi-rút chữa muối quân đội biên giới gạo giá thuế trường".split(),
    "km": "វ៉ាក់សាំង ទឹក ទំនប់ ទឹកជំនន់ ធនាគារ ការបោះឆ្នោត មេរោគ ព្យាបាល អំបិល កងទ័ព ព្រំដែន អង្ករ តម្លៃ ពន្ធ សាលា".split(),
}
START = datetime(2024, 1, 1, tzinfo=UTC)


def _claim(rng: random.Random, lang: str) -> str:
    return " ".join(rng.choice(WORDS[lang]) for _ in range(rng.randint(4, 9))) + f" {rng.randint(10, 2030)}"


def _fc(rng: random.Random, n: int, **update: Any) -> FactCheck:
    lang = rng.choice(LANGS)
    fc = FactCheck(id=str(n) if n % 3 else f"fc-{n}", claim=_claim(rng, lang), title=_claim(rng, lang) if n % 2 else "", language=lang,
                   publisher=rng.choice(["AFP", "Cofact", "AFP Factuel"]), rating="False",
                   published_at=START + timedelta(days=rng.randint(0, 300)) if n % 5 else None)
    return fc.model_copy(update=update)


def _copy(rng: random.Random, of: FactCheck, n: int, days: int) -> FactCheck:
    """A near-identical copy (same publisher, the claim up to case and punctuation)."""
    claim = of.claim.upper() + " !" if rng.random() < 0.5 else of.claim.replace(" ", ", ", 1)
    return of.model_copy(update={"id": f"copy-{n}", "claim": claim, "published_at": (of.published_at or START) + timedelta(days=days)})


def _services(tmp_path: Path, url: str, mode: str) -> Services:
    return Services(load_settings(env={}, overrides={
        "data_dir": str(tmp_path), "storage_url": url, "embedder": "hashing", "embed_cache": "off", "match_fusion": "rrf",
        "match_memory_max": 0 if mode == "stored" else 1_000_000,
    }))


def _posts(rng: random.Random, fcs: list[FactCheck]) -> list[Post]:
    out = []
    for n, fc in enumerate(rng.sample(fcs, 25)):
        words = fc.claim.split()
        rng.shuffle(words)
        out.append(prepare_post(Post(id=f"p{n}", text=" ".join(words[:-1]) + " " + rng.choice(WORDS[fc.language or "en"]), language=fc.language,
                                     created_at=START + timedelta(days=rng.randint(0, 320))), LANGS))
    return out


def _same(updated: Matcher, fresh: Matcher, posts: list[Post], vectors: np.ndarray) -> None:
    assert updated.dense_index == fresh.dense_index
    assert [(i.id, i.language, i.title, i.norm_text, i.date) for i in updated.items] == [(i.id, i.language, i.title, i.norm_text, i.date) for i in fresh.items]
    assert updated._position == fresh._position
    assert {k: sorted(v) for k, v in updated.duplicates.items()} == {k: sorted(v) for k, v in fresh.duplicates.items()}
    assert updated._copies == fresh._copies and updated._withdrawn == fresh._withdrawn
    assert sorted(tuple(sorted(g)) for g in updated._groups.values()) == sorted(tuple(sorted(g)) for g in fresh._groups.values())
    assert updated._key_of == fresh._key_of
    assert updated.lexical.ids == fresh.lexical.ids == [i.id for i in fresh.items]
    for post in posts:  # every weight that a post's terms add up, bit for bit
        assert np.array_equal(updated.lexical.scores(post.tokens.split()), fresh.lexical.scores(post.tokens.split()))
    assert updated.index.ids == fresh.index.ids and np.array_equal(updated.index.matrix, fresh.index.matrix)
    got = [r.model_dump() for r in updated.match_vectors(posts, vectors)]
    want = [r.model_dump() for r in fresh.match_vectors(posts, vectors)]
    assert got == want


def _withdraw(storage: Any, fc: FactCheck, mark_entry: bool = True) -> None:
    withdrawal = {"at": "2024-06-01T00:00:00+00:00", "reason": "the publisher corrected it"}
    if mark_entry:
        stored = storage.get_factcheck(ORG, fc.id)
        storage.upsert_factchecks(ORG, [mark(stored, withdrawal)])
    storage.put_docs_batch(ORG, [WithdrawnList.rows([fc.id], withdrawal)])


def _check_updates(services: Services, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(11)
    storage, embedder = services.storage, services.embedder
    langs = services.languages

    def put(fcs: list[FactCheck], embed: bool = True) -> None:
        storage.upsert_factchecks(ORG, [prepare_factcheck(fc, langs) for fc in fcs])
        if embed:
            index_factchecks(storage, embedder, ORG)

    library = [_fc(rng, n) for n in range(60)]
    library += [_copy(rng, library[n], n, days=rng.randint(1, 30)) for n in range(0, 20, 2)]
    put(library)
    posts = _posts(rng, library)
    vectors = embedder.encode_queries([embedding_text(p) for p in posts])
    first = services.matcher(ORG)
    assert first.dense_index == mode and len(first) == 60

    loads: list[int] = []
    real_refresh = Matcher.refresh
    monkeypatch.setattr(Matcher, "refresh", lambda self: loads.append(1) or real_refresh(self))
    changed_reads: list[int] = []
    real_entries = storage.factcheck_fields
    monkeypatch.setattr(storage, "factcheck_fields", lambda org, fields, ids=None: changed_reads.append(-1 if ids is None else len(ids))
                        or real_entries(org, fields, ids))

    handed = [first]  # the matcher the last step was given

    def step(why: str) -> Matcher:
        loads.clear()
        changed_reads.clear()
        got = services.matcher(ORG)  # the library changed since the last step: brought up to date here
        assert got is not handed[-1], f"{why}: a new matcher"
        assert not loads, f"{why}: brought up to date, not loaded again"
        assert changed_reads and -1 not in changed_reads, f"{why}: only what changed is read, not the whole library"
        assert services.matcher(ORG) is got, f"{why}: cached again"
        with monkeypatch.context() as m:
            m.setattr(Matcher, "refresh", real_refresh)
            fresh = services._build_matcher(ORG, None, None)
        _same(got, fresh, posts, vectors)
        handed.append(got)
        return got

    # new fact-checks, one a copy published before its original (which becomes the copy)
    original = library[1]
    earlier = _copy(rng, original, 100, days=0).model_copy(update={"id": "early", "published_at": START - timedelta(days=400)})
    added = [_fc(rng, n) for n in range(200, 215)] + [_copy(rng, library[3], 101, days=2), earlier]
    put(added)
    after_add = step("fact-checks added")
    assert after_add.duplicates["early"] and original.id in after_add.duplicates["early"] and len(after_add) == 60 + 15
    assert first.items and len(first) == 60, "the matcher handed out before is left as it was"
    # a claim's new text is stored before its vector is: both states are what a load reads
    edited = [library[n].model_copy(update={"claim": _claim(rng, library[n].language or "en")}) for n in (4, 7, 30, 41)]
    put(edited, embed=False)
    step("claims edited, not yet embedded")
    index_factchecks(storage, embedder, ORG)
    step("claims edited and embedded")
    # a copy no longer a copy; a fact-check that becomes a copy of another
    put([library[60].model_copy(update={"claim": "a claim of its own " + _claim(rng, "en")}),
         library[50].model_copy(update={"claim": library[51].claim + "?", "publisher": library[51].publisher})])
    step("groups of copies changed")
    put([library[9].model_copy(update={"rating": "Mostly false", "language": "fr"})])
    step("an edit that keeps the text")
    # withdrawals: an original (its copy answers now), and one listed without its entry marked
    _withdraw(storage, earlier)
    step("an original withdrawn")
    _withdraw(storage, library[12], mark_entry=False)
    step("a fact-check listed as withdrawn")
    put([_fc(rng, 300)], embed=False)
    step("a fact-check without a vector yet")
    index_factchecks(storage, embedder, ORG)
    last = step("its vector written")
    assert len(last) == len(services._build_matcher(ORG, None, None))


@pytest.mark.parametrize("mode", ["memory", "stored"])
def test_an_updated_matcher_is_the_matcher_a_load_gives_sqlite(mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _services(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", mode) as services:
        _check_updates(services, mode, monkeypatch)


@pytest.mark.postgres
@pytest.mark.parametrize("mode", ["memory", "stored"])
def test_an_updated_matcher_is_the_matcher_a_load_gives_postgres(mode: str, postgres_url: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    with _services(tmp_path, postgres_url, mode) as services:
        _check_updates(services, mode, monkeypatch)


def test_a_store_that_cannot_say_what_changed_loads_the_library_again(hashing_services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    services, storage = hashing_services, hashing_services.storage
    rng = random.Random(3)
    storage.upsert_factchecks(ORG, [prepare_factcheck(_fc(rng, n), LANGS) for n in range(8)])
    index_factchecks(storage, services.embedder, ORG)
    first = services.matcher(ORG)
    monkeypatch.setattr(storage, "factchecks_changed", lambda org, stamp: None)
    storage.upsert_factchecks(ORG, [prepare_factcheck(_fc(rng, 9), LANGS)])
    index_factchecks(storage, services.embedder, ORG)
    loads: list[int] = []
    real_refresh = Matcher.refresh
    monkeypatch.setattr(Matcher, "refresh", lambda self: loads.append(1) or real_refresh(self))
    again = services.matcher(ORG)
    assert loads == [1] and len(again) == len(first) + 1


@pytest.mark.parametrize("part", [1, 7, 16_384])
def test_bm25_updated_weighs_as_a_build_in_that_order(part: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows dropped, documents added and the rows rearranged: the weights and scores of a build
    of the resulting documents in that order, bit for bit (dead terms keep an empty column)."""
    from factbridge.pipeline import lexical

    monkeypatch.setattr(lexical, "BUILD_PART", part)
    rng = random.Random(5)
    words = [f"w{n}" for n in range(120)] + ["ស្លាប់", "bộ", "tế"]
    docs = {str(n): [rng.choice(words) for _ in range(rng.randint(0, 25))] for n in range(300)}
    ids = sorted(docs)
    index = BM25Index().build(ids, (docs[i] for i in ids))
    dropped = set(rng.sample(ids, 40)) | {ids[0], ids[-1]}
    fresh = {f"n{n}": [rng.choice(words + ["brand-new", "nouveau"]) for _ in range(rng.randint(0, 25))] for n in range(30)}
    kept = [n for n, i in enumerate(ids) if i not in dropped]
    final = sorted([ids[n] for n in kept] + list(fresh))
    stacked = [ids[n] for n in kept] + list(fresh)
    order = np.asarray([stacked.index(i) for i in final])
    updated = index.updated(np.asarray(kept), list(fresh), (fresh[i] for i in fresh), order)
    every = {**docs, **fresh}
    built = BM25Index().build(final, (every[i] for i in final))
    assert updated.ids == built.ids == final
    for query in [[w] for w in words[:40]] + [rng.sample(words, 5) for _ in range(40)] + [["brand-new"], ["unknown"], []]:
        assert np.array_equal(updated.scores(query), built.scores(query)), query
    assert index.ids == ids and index.scores(["w1"]).shape == (300,), "the index it came from is left as it was"
    gone = set(w for i in dropped for w in docs[i]) - set(w for i in final for w in every[i])
    for word in gone:
        assert not updated.scores([word]).any()


def test_an_update_that_fails_loads_the_library_again(hashing_services: Services, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    services, storage = hashing_services, hashing_services.storage
    rng = random.Random(4)
    storage.upsert_factchecks(ORG, [prepare_factcheck(_fc(rng, n), LANGS) for n in range(8)])
    index_factchecks(storage, services.embedder, ORG)
    first = services.matcher(ORG)

    def broken(self: Matcher, changed: Any) -> Matcher:
        raise RuntimeError("a bug in the update")

    monkeypatch.setattr(Matcher, "updated", broken)
    storage.upsert_factchecks(ORG, [prepare_factcheck(_fc(rng, 9), LANGS)])
    index_factchecks(storage, services.embedder, ORG)
    again = services.matcher(ORG)
    assert len(again) == len(first) + 1 and "loading the library again" in caplog.text and "a bug in the update" in caplog.text


@pytest.mark.parametrize("mode", ["memory", "stored"])
def test_an_updated_matcher_with_centering_is_the_matcher_a_load_gives(mode: str, tmp_path: Path) -> None:
    """With per-language centering the library vectors are centred in memory, or stored
    centred as their own kind and searched there: an update centres what it adds the same way."""
    from factbridge.pipeline.centering import LanguageCentering

    with _services(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", mode) as services:
        storage, embedder = services.storage, services.embedder
        rng = random.Random(21)
        means = {lang: (np.random.default_rng(n).standard_normal(embedder.dim) * 0.02).astype(np.float32) for n, lang in enumerate(("*", *LANGS))}
        centering = LanguageCentering("test-centering-2", embedder.id, {"passage": means, "query": means})

        def matcher() -> Matcher:
            return Matcher(storage, embedder, ORG, fusion="rrf", centering=centering, dense_index=mode, index_dir=tmp_path)

        library = [_fc(rng, n) for n in range(40)]
        storage.upsert_factchecks(ORG, [prepare_factcheck(fc, LANGS) for fc in library])
        index_factchecks(storage, embedder, ORG)
        posts = _posts(rng, library)
        vectors = embedder.encode_queries([embedding_text(p) for p in posts])
        first = matcher()
        stamps = (storage.factcheck_stamp(ORG), storage.vector_stamp(ORG, "factcheck", embedder.id))
        edited = [library[n].model_copy(update={"claim": _claim(rng, library[n].language or "en")}) for n in (2, 9)]
        storage.upsert_factchecks(ORG, [prepare_factcheck(fc, LANGS) for fc in [*edited, _fc(rng, 90), _fc(rng, 91)]])
        index_factchecks(storage, embedder, ORG)
        changed = {*(storage.factchecks_changed(ORG, stamps[0]) or ()), *(storage.vectors_changed(ORG, "factcheck", embedder.id, stamps[1]) or ())}
        assert changed == {library[2].id, library[9].id, "fc-90", "91"}, "the edited and the added, nothing else"
        _same(first.updated(changed), matcher(), posts, vectors)


def test_a_full_load_hands_freed_memory_back(hashing_services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a full load (not after an update) the C heap's freed pages go back to the system
    where the C library can (glibc: `malloc_trim`)."""
    import platform

    import factbridge.services as services_module

    calls: list[bool] = []
    real = services_module.release_freed_memory
    monkeypatch.setattr(services_module, "release_freed_memory", lambda: calls.append(real()) or True)
    services, storage = hashing_services, hashing_services.storage
    rng = random.Random(5)
    storage.upsert_factchecks(ORG, [prepare_factcheck(_fc(rng, n), LANGS) for n in range(4)])
    index_factchecks(storage, services.embedder, ORG)
    services.matcher(ORG)
    storage.upsert_factchecks(ORG, [prepare_factcheck(_fc(rng, 9), LANGS)])
    index_factchecks(storage, services.embedder, ORG)
    services.matcher(ORG)  # brought up to date: nothing to hand back
    assert len(calls) == 1
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert calls == [True], "glibc has malloc_trim"
