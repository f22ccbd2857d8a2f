import numpy as np
import pytest

from factbridge.backends.embedders.hashing import HashingEmbedder
from factbridge.backends.vectors.numpy_index import NumpyIndex
from factbridge.errors import ConfigError, EmbedderMismatch
from factbridge.models import FactCheck, Post
from factbridge.pipeline.ingest import embed_posts, recheck_posts
from factbridge.pipeline.matching import Matcher, index_factchecks
from factbridge.pipeline.prepare import prepare_factcheck, prepare_post
from factbridge.pipeline.reranker import (
    CROSS_LANGUAGE_FEATURES,
    SAME_LANGUAGE_FEATURES,
    Reranker,
    fit_logistic,
)
from factbridge.pipeline.withdrawals import withdrawal_of

LANGS = ("vi", "km", "fr", "en")
LIBRARY = [
    FactCheck(id="fc-5g", claim="5G mobile networks spread the coronavirus", title="No, 5G does not spread COVID-19", language="en", rating="False"),
    FactCheck(id="fc-vax", claim="The COVID-19 vaccine makes women infertile", language="en", rating="False"),
    FactCheck(id="fc-dam", claim="The Mekong dam in Laos collapsed and floods will reach Phnom Penh tonight", language="en", rating="False"),
    FactCheck(id="fc-vi", claim="Uống nước nóng chữa khỏi Covid-19", language="vi", rating="Sai"),
]


class CountingEmbedder(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def encode_documents(self, texts, progress=None):
        self.calls += len(texts)
        return super().encode_documents(texts, progress)


@pytest.fixture
def library(storage):
    storage.upsert_factchecks("org", [prepare_factcheck(fc, LANGS) for fc in LIBRARY])
    embedder = CountingEmbedder()
    assert index_factchecks(storage, embedder, "org") == 4
    return storage, embedder


def _post(text: str, pid: str = "p", lang: str | None = None) -> Post:
    return prepare_post(Post(id=pid, text=text, language=lang), LANGS)


def test_vectors_persist_and_are_never_embedded_twice(library) -> None:
    storage, embedder = library
    assert embedder.calls == 4
    assert index_factchecks(storage, embedder, "org") == 0 and embedder.calls == 4
    storage.upsert_factchecks("org", [prepare_factcheck(LIBRARY[0].model_copy(update={"claim": "5G towers spread the virus"}), LANGS)])
    assert index_factchecks(storage, embedder, "org") == 1  # only the changed text


def test_rrf_matching_ranks_the_repeated_claim_first_with_evidence(library) -> None:
    storage, embedder = library
    matcher = Matcher(storage, embedder, "org", fusion="rrf", top_k=3, match_threshold=0.03, possible_threshold=0.02)
    result = matcher.match_posts([_post("Share! 5G mobile networks spread the coronavirus, they hide it")])[0]
    best = result.best
    assert best is not None and best.factcheck_id == "fc-5g" and best.rank == 1
    assert best.dense.rank == 1 and best.lexical.rank == 1 and best.lexical.score and best.lexical.score > 0
    assert best.decision == "match" and "rrf" in best.decided_by and "hashing-v1-256" in best.decided_by
    assert set(best.features) >= {"dense", "lexical", "dense_rrf", "cross_language"}
    assert [c.rank for c in result.candidates] == [1, 2, 3]


def test_lexical_evidence_only_counts_within_a_language(library) -> None:
    storage, embedder = library
    matcher = Matcher(storage, embedder, "org", fusion="rrf", top_k=4)
    # A French post sharing words with an English claim: the English candidates are cross-language.
    result = matcher.match_posts([_post("Le vaccin COVID-19 rend les femmes stériles", lang="fr")])[0]
    for cand in result.candidates:
        assert cand.features["cross_language"] == 1.0
        assert cand.fused_score == pytest.approx(cand.features["dense_rrf"], abs=1e-4)


def test_unaccented_vietnamese_meets_its_factcheck_lexically(library) -> None:
    storage, embedder = library
    matcher = Matcher(storage, embedder, "org", fusion="rrf", top_k=1)
    result = matcher.match_posts([_post("uong nuoc nong chua khoi covid-19 day", lang="vi")])[0]
    assert result.best and result.best.factcheck_id == "fc-vi" and result.best.lexical.rank == 1


def test_index_refuses_another_embedders_vectors(library) -> None:
    index = NumpyIndex("hashing-v1-256", 256)
    index.add(["a"], np.ones((1, 256), np.float32), "hashing-v1-256")
    with pytest.raises(EmbedderMismatch):
        index.add(["b"], np.ones((1, 256), np.float32), "other-model")
    with pytest.raises(EmbedderMismatch):
        index.search(np.ones(256, np.float32), 1, "other-model")
    with pytest.raises(EmbedderMismatch):
        index.search(np.ones(384, np.float32), 1, "hashing-v1-256")
    storage, _ = library
    with pytest.raises(EmbedderMismatch):
        storage.put_vectors("org", "factcheck", "hashing-v1-256", [("x", "sha", np.ones(128, np.float32))])


def test_learned_fusion_refuses_a_reranker_of_another_embedder(library, tmp_path) -> None:
    storage, embedder = library
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(40, len(SAME_LANGUAGE_FEATURES)))
    labels = (rows[:, 0] > 0).astype(float)
    same = fit_logistic(rows, labels, SAME_LANGUAGE_FEATURES)
    cross = fit_logistic(rows[:, : len(CROSS_LANGUAGE_FEATURES)], labels, CROSS_LANGUAGE_FEATURES)
    reranker = Reranker("t-1", "some-other-embedder", same, cross, {"match": 0.9, "possible": 0.5})
    reranker.save(tmp_path / "r.json")
    loaded = Reranker.load(tmp_path / "r.json")
    assert loaded.thresholds == {"match": 0.9, "possible": 0.5}
    with pytest.raises(EmbedderMismatch):
        Matcher(storage, embedder, "org", fusion="learned", reranker=loaded)
    with pytest.raises(ConfigError):
        Matcher(storage, embedder, "org", fusion="magic")
    ok = Reranker("t-1", embedder.id, same, cross, {"match": 0.9, "possible": 0.5})
    result = Matcher(storage, embedder, "org", fusion="learned", reranker=ok).match_posts([_post("5G spreads coronavirus")])[0]
    assert result.candidates and "reranker:t-1" in result.decided_by
    assert 0.0 <= result.candidates[0].fused_score <= 1.0


def test_new_factchecks_recheck_stored_posts(storage) -> None:
    embedder = HashingEmbedder()
    posts = [_post("The Mekong dam in Laos collapsed, floods reach Phnom Penh tonight", "p1"), _post("Lovely weather today", "p2")]
    storage.upsert_posts("org", posts)
    embed_posts(storage, embedder, "org", posts)
    storage.upsert_factchecks("org", [prepare_factcheck(LIBRARY[2], LANGS)])
    index_factchecks(storage, embedder, "org")
    matcher = Matcher(storage, embedder, "org", fusion="dense", match_threshold=0.6, possible_threshold=0.4)
    hits = recheck_posts(storage, matcher, "org", ["fc-dam"], floor=0.3)
    assert hits == {"fc-dam": ["p1"]}
    assert storage.matches_for_post("org", "p1")[0].factcheck_id == "fc-dam"
    assert [pid for pid, _ in storage.matches_for_factcheck("org", "fc-dam")] == ["p1"]
    assert storage.matches_for_post("other-org", "p1") == []


def test_org_scope_keeps_libraries_apart(library) -> None:
    storage, embedder = library
    matcher = Matcher(storage, embedder, "someone-else", fusion="rrf")
    assert len(matcher) == 0
    assert matcher.match_posts([_post("5G spreads coronavirus")])[0].candidates == []


def test_embedding_cache_never_embeds_a_text_twice_and_promotes_seed_hits(tmp_path) -> None:
    from factbridge.backends.embedders.cache import CachedEmbedder, EmbeddingCache

    seed_cache = EmbeddingCache(tmp_path / "seed.sqlite")
    seeded = CachedEmbedder(CountingEmbedder(), seed_cache)
    seeded.encode_documents(["alpha claim", "beta claim"])
    seed_cache.close()
    inner = CountingEmbedder()
    cache = EmbeddingCache(tmp_path / "main.sqlite", readonly_paths=[tmp_path / "seed.sqlite"])
    embedder = CachedEmbedder(inner, cache)
    vecs = embedder.encode_documents(["alpha claim", "gamma claim", "alpha claim"])
    assert inner.calls == 1  # only "gamma claim" was new
    assert np.allclose(vecs[0], vecs[2], atol=1e-3)
    embedder.encode_documents(["gamma claim"])
    assert inner.calls == 1
    queries = embedder.encode_queries(["alpha claim"])  # the query role is cached separately
    assert queries.shape == (1, 256)
    cache.close()
    assert not (tmp_path / "main.sqlite-wal").exists()
    reopened = EmbeddingCache(tmp_path / "main.sqlite")
    from factbridge.backends.embedders.cache import text_sha

    assert set(reopened.get_many(inner.id, "passage", [text_sha("alpha claim"), text_sha("beta claim")])) == {text_sha("alpha claim")}
    reopened.close()


def test_language_centering_removes_the_shared_language_direction(tmp_path) -> None:
    from factbridge.pipeline.centering import LanguageCentering

    rng = np.random.default_rng(1)
    km_bias, en_bias = rng.normal(size=8) * 3, rng.normal(size=8) * 3
    meaning = rng.normal(size=(5, 8))
    km = meaning + km_bias
    en = meaning + en_bias
    means = {role: {"km": km_bias, "en": en_bias, "*": (km_bias + en_bias) / 2} for role in ("query", "passage")}
    centering = LanguageCentering("t-1", "emb", means)
    q = centering.apply(km, ["km"] * 5, "query")
    d = centering.apply(en, ["en"] * 5, "passage")
    assert np.allclose(np.diag(q @ d.T), 1.0, atol=1e-5)  # each text meets its translation
    centering.save(tmp_path / "c.npz")
    loaded = LanguageCentering.load(tmp_path / "c.npz")
    assert loaded.version == "t-1" and np.allclose(loaded.means["query"]["km"], km_bias)
    assert loaded.apply(en[0], ["xx"], "passage").shape == (8,)  # unknown language: the pooled mean
    with pytest.raises(EmbedderMismatch):
        loaded.check_embedder("other")


def test_services_reuse_the_matcher_until_the_library_changes(hashing_services) -> None:
    services = hashing_services
    storage = services.storage
    storage.upsert_factchecks("default", [prepare_factcheck(LIBRARY[0], LANGS)])
    index_factchecks(storage, services.embedder, "default")
    first = services.matcher()
    assert services.matcher() is first and len(first) == 1
    storage.upsert_factchecks("default", [prepare_factcheck(LIBRARY[1], LANGS)])
    index_factchecks(storage, services.embedder, "default")
    second = services.matcher()
    assert second is not first and len(second) == 2
    assert services.matcher("another-org") is not second
    # a re-embedded text (same count) is a change too; asking reads no stored hash
    full_reads: list[str] = []
    read_shas = storage.vector_shas
    storage.vector_shas = lambda org, kind, emb, ids=None, shas=None: (ids is None and shas is None and full_reads.append(kind)) or read_shas(  # type: ignore[method-assign]
        org, kind, emb, ids=ids, shas=shas)
    assert services.matcher() is second and full_reads == []
    storage.put_vectors("default", "factcheck", services.embedder.id, [(LIBRARY[1].id, "another text", services.embedder.encode_documents(["x"])[0])])
    third = services.matcher()
    assert third is not second and services.matcher() is third
    # an edit that keeps the text (its language, read by the matcher) reloads it too; no timer does
    fixed = prepare_factcheck(LIBRARY[0], LANGS).model_copy(update={"language": "fr"})
    storage.upsert_factchecks("default", [fixed])
    fourth = services.matcher()
    assert fourth is not third and {i.id: i.language for i in fourth.items}[fixed.id] == "fr"


def test_duplicate_key_keeps_exactly_the_alphanumerics_of_every_code_point() -> None:
    """The regular expression that strips a claim to its letters and digits keeps what
    `str.isalnum` keeps, code point by code point (Khmer signs, Vietnamese tones, "_")."""
    import sys

    from factbridge.pipeline.matching import _duplicate_key

    chars = "".join(chr(cp) for cp in range(sys.maxunicode + 1) if not 0xD800 <= cp < 0xE000)
    key = _duplicate_key(FactCheck(id="x", claim=chars, publisher="Snopes"))
    assert key == ("snopes", "".join(ch for ch in chars.casefold() if ch.isalnum()))
    assert _duplicate_key(FactCheck(id="y", claim="Bộ Y tế: 5_000 ca! ស្លាប់ ១២៣", publisher="P"))[1] == "bộytế5000caសលប១២៣"  # Khmer signs are not alphanumeric


@pytest.mark.parametrize("part", [1, 97, 16_384])
def test_bm25_build_gives_what_counting_each_document_gave(part: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The NumPy count of (document, term) pairs, a part of the documents at a time, builds the
    same vocabulary and, bit for bit, the same weights and scores as a Counter per document."""
    import math
    import random
    from collections import Counter

    from scipy import sparse

    from factbridge.pipeline import lexical
    from factbridge.pipeline.lexical import BM25Index

    monkeypatch.setattr(lexical, "BUILD_PART", part)
    rng = random.Random(7)
    words = [f"w{n}" for n in range(300)] + ["ស្លាប់", "bộ", "y", "tế"]
    docs = [[rng.choice(words[: rng.randint(1, len(words))]) for _ in range(rng.randint(0, 40))] for _ in range(2000)] + [[]]
    built = BM25Index().build([str(n) for n in range(len(docs))], iter(docs))
    vocab: dict[str, int] = {}
    rows, cols, tfs, df = [], [], [], Counter()
    for row, doc in enumerate(docs):
        for term, tf in Counter(doc).items():
            col = vocab.setdefault(term, len(vocab))
            rows.append(row), cols.append(col), tfs.append(tf)
            df[col] += 1
    lengths = np.array([len(d) for d in docs], dtype=np.float32)
    idf = np.zeros(len(vocab), dtype=np.float32)
    for col, freq in df.items():
        idf[col] = math.log(1 + (len(docs) - freq + 0.5) / (freq + 0.5))
    tf_arr = np.asarray(tfs, dtype=np.float32)
    norm = 1.2 * (1 - 0.75 + 0.75 * lengths[np.asarray(rows)] / float(lengths.mean()))
    weights = sparse.csc_matrix((idf[np.asarray(cols)] * tf_arr * 2.2 / (tf_arr + norm), (rows, cols)), shape=(len(docs), len(vocab)), dtype=np.float32)
    assert built._vocab == vocab
    assert built._weights is not None and (built._weights != weights).nnz == 0 and np.array_equal(built._weights.data, weights.data)
    for query in docs[:50] + [["w1", "unknown"], []]:
        assert built.scores(query).tobytes() == np.asarray(weights[:, [vocab[t] for t in set(query) if t in vocab]].sum(axis=1)).ravel().tobytes() or not query
    empty = BM25Index().build([], [])
    assert empty.scores(["w1"]).shape == (0,)


def test_library_entries_read_what_the_models_hold(storage) -> None:  # type: ignore[no-untyped-def]
    """The library's load reads a few fields of each document (`factcheck_fields`), not models:
    the same texts, languages, times (offsets and naive ones kept) and withdrawals."""
    from datetime import UTC, datetime, timedelta, timezone

    from factbridge.pipeline.matching import library_entries

    seven = timezone(timedelta(hours=7))
    fcs = [
        prepare_factcheck(FactCheck(id="a", claim="Uống nước chanh chữa COVID", title="Chanh", publisher="AFP", language="vi",
                                    published_at=datetime(2021, 3, 6, 12, 30, 15, 250000, tzinfo=seven)), LANGS),
        prepare_factcheck(FactCheck(id="b", claim="ស្លាប់ ១២៣ នាក់", claim_date=datetime(2020, 1, 2, tzinfo=UTC)), LANGS),
        FactCheck(id="c", claim="naive time", published_at=datetime(2019, 5, 1, 8, 0), raw={"withdrawn": {"at": "2024-01-01"}}),
        FactCheck(id="d", claim="not a withdrawal", raw={"withdrawn": "no"}),
    ]
    storage.upsert_factchecks("org", fcs)
    entries = library_entries(storage, "org", ["a", "b", "c", "d", "missing"])
    models = storage.get_factchecks("org", ["a", "b", "c", "d"])
    assert sorted(entries) == ["a", "b", "c", "d"]
    for fc_id, fc in models.items():
        e = entries[fc_id]
        assert (e.publisher, e.claim, e.title, e.language, e.tokens, e.norm_text) == (fc.publisher, fc.claim, fc.title, fc.language, fc.tokens, fc.norm_text)
        assert (e.published_at, e.claim_date) == (fc.published_at, fc.claim_date) and e.withdrawn == (withdrawal_of(fc) is not None)
        for ours, theirs in ((e.published_at, fc.published_at), (e.claim_date, fc.claim_date)):
            assert (ours is None) == (theirs is None) and (ours is None or ours.utcoffset() == theirs.utcoffset())
    assert [entries[i].withdrawn for i in "abcd"] == [False, False, True, False]


def test_index_factchecks_reads_titles_and_claims_not_models(hashing_services) -> None:  # type: ignore[no-untyped-def]
    """Run by every import, web form and federation sync over the whole library: it reads each
    fact-check's title and claim (`factcheck_fields`), embeds only the ones whose passage changed,
    and never builds a model of each."""
    services = hashing_services
    storage = services.storage
    storage.upsert_factchecks("default", [prepare_factcheck(fc, LANGS) for fc in LIBRARY[:3]])
    assert index_factchecks(storage, services.embedder, "default") == 3
    storage.upsert_factchecks("default", [prepare_factcheck(LIBRARY[1].model_copy(update={"title": "A new headline"}), LANGS)])
    storage.upsert_factchecks("default", [prepare_factcheck(LIBRARY[2].model_copy(update={"rating": "Mostly false"}), LANGS)])

    def no_models(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a model built per fact-check")

    storage.iter_factchecks = no_models  # type: ignore[method-assign]
    storage.get_factchecks = no_models  # type: ignore[method-assign]
    assert index_factchecks(storage, services.embedder, "default") == 1, "only the new headline changed the passage"
    from factbridge.backends.embedders.cache import text_sha

    changed = LIBRARY[1].model_copy(update={"title": "A new headline"})
    assert storage.vector_shas("default", "factcheck", services.embedder.id)[changed.id] == text_sha(changed.passage)
    assert index_factchecks(storage, services.embedder, "default") == 0
