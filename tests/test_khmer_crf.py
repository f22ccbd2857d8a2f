"""khmercut's CRF model read and run in Python (text/khmer_crf.py) gives pycrfsuite's tags:
on khmercut's own model (every Khmer run of the fixtures, generated posts and random
character soups), on small models trained here with pycrfsuite, and CRFsuite's tie rule.
A file it cannot read is an error that names the file, and segmentation then falls back to
pycrfsuite with the same words."""

from __future__ import annotations

import importlib
import logging
import random
import re
from pathlib import Path

import khmercut
import pycrfsuite
import pytest

from factbridge.errors import ModelError
from factbridge.text.khmer_crf import CrfModel, KccScorer, read_model
from factbridge.text.normalize import normalize_text
from factbridge.text.tokenize import _kcc_attributes, _segment_khmer

RUN = re.compile(r"[\u1780-\u17ff\u19e0-\u19ff]+")
tokenize_module = importlib.import_module("factbridge.text.tokenize")  # the package exports a function of that name


@pytest.fixture(scope="module")
def model() -> CrfModel:
    return read_model(khmercut.model_path)


@pytest.fixture(scope="module")
def runs() -> list[str]:
    from test_tokenize_khmer import _texts

    return list(dict.fromkeys(run for text in _texts() for run in RUN.findall(normalize_text(text))))


def test_khmercuts_model_is_read(model: CrfModel) -> None:
    info = khmercut.load().info()  # pycrfsuite's text dump: weights rounded to 6 decimals
    assert set(model.labels) == set(info.labels.values()) == {"0", "1"}
    assert len(model.weights) == len({attr for attr, _ in info.state_features}) > 100_000
    label = {name: i for i, name in enumerate(model.labels)}
    for (src, dst), weight in info.transitions.items():
        assert model.transitions[label[src]][label[dst]] == pytest.approx(weight, abs=1e-6)
    some = sorted(info.state_features.items())[:: 997]
    for (attr, name), weight in some:
        w = model.weights[attr]
        assert (w.real if label[name] == 0 else w.imag) == pytest.approx(weight, abs=1e-6)


def test_tags_are_pycrfsuites(model: CrfModel, runs: list[str]) -> None:
    assert len(runs) > 1400
    tagger = khmercut.load()
    scorer = KccScorer(model)
    for run in runs:
        kccs = khmercut.seg_kcc(run)
        attributes = _kcc_attributes(kccs)
        expected = tagger.tag(attributes)
        assert model.tag(attributes) == expected, run
        # the template weighed without its strings: the same sums, to the bit
        assert scorer.scores(kccs) == model.scores(attributes), run
        assert scorer.tag(kccs) == expected, run


def test_unknown_attributes_add_nothing(model: CrfModel) -> None:
    kccs = khmercut.seg_kcc("ក្រសួងសុខាភិបាល")
    attributes = _kcc_attributes(kccs)
    noisy = [[*a, "no-such-attribute", "kcc:\u0000"] for a in attributes]
    assert model.scores(noisy) == model.scores(attributes)
    assert model.tag(noisy) == khmercut.load().tag(noisy)


def _train(path: Path, sequences: list[tuple[list[list[str]], list[str]]]) -> None:
    trainer = pycrfsuite.Trainer(verbose=False)
    for items, labels in sequences:
        trainer.append(items, labels)
    trainer.set_params({"c1": 0.0, "c2": 0.01, "max_iterations": 60})
    trainer.train(str(path))


def test_a_model_trained_here(tmp_path: Path) -> None:
    rng = random.Random(7)
    vocabulary = [f"w{i}" for i in range(40)]
    sequences = []
    for _ in range(200):
        words = [rng.choice(vocabulary) for _ in range(rng.randint(1, 12))]
        items = [[f"w:{w}", f"prev:{words[i - 1] if i else 'BOS'}", "bias"] for i, w in enumerate(words)]
        sequences.append((items, ["1" if int(w[1:]) % 3 == 0 or i == 0 else "0" for i, w in enumerate(words)]))
    path = tmp_path / "tiny.crfsuite"
    _train(path, sequences)
    model = read_model(path)
    tagger = pycrfsuite.Tagger()
    tagger.open(str(path))
    for items, _ in sequences:
        assert model.tag(items) == tagger.tag(items)
    assert model.tag([]) == tagger.tag([]) == []


def test_ties_keep_the_first_label() -> None:
    flat = CrfModel(("1", "0"), {}, ((0.0, 0.0), (0.0, 0.0)))
    assert flat.tag([["x"], ["y"], ["z"]]) == ["1", "1", "1"]  # every path ties: label id 0 throughout
    # label 1 ties label 0 at the end and is not taken; a strictly better label is
    model = CrfModel(("a", "b"), {"x": complex(0.0, 0.0), "y": complex(0.0, 1.0)}, ((0.0, 0.0), (0.0, 0.0)))
    assert model.tag([["x"]]) == ["a"]
    assert model.tag([["y"]]) == ["b"]
    assert model.tag([["y"], ["x"]]) == ["b", "a"]


def test_files_it_cannot_read(tmp_path: Path) -> None:
    text = tmp_path / "notes.crfsuite"
    text.write_text("not a model")
    with pytest.raises(ModelError, match="notes.crfsuite"):
        read_model(text)
    truncated = tmp_path / "truncated.crfsuite"
    truncated.write_bytes(Path(khmercut.model_path).read_bytes()[:100_000])
    with pytest.raises(ModelError, match="truncated.crfsuite"):
        read_model(truncated)
    three = tmp_path / "three.crfsuite"
    _train(three, [([["a"], ["b"], ["c"]], ["x", "y", "z"])])
    with pytest.raises(ModelError, match="3 labels"):
        read_model(three)


def test_segmentation_falls_back_to_pycrfsuite(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def unreadable(path: object) -> CrfModel:
        raise ModelError(f"{path}: unreadable")

    text = "ក្រសួងសុខាភិបាលព្រមានអំពីវ៉ាក់សាំងក្លែងក្លាយ"
    monkeypatch.setattr(tokenize_module, "read_model", unreadable)
    monkeypatch.setattr(tokenize_module, "_SCORER", [])
    _segment_khmer.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="factbridge.text.tokenize"):
            assert _segment_khmer(text) == tuple(khmercut.tokenize(text))
        assert tokenize_module._SCORER == [None]
        assert any("unreadable" in r.getMessage() and "pycrfsuite" in r.getMessage() for r in caplog.records)
    finally:
        _segment_khmer.cache_clear()


def test_a_khmercut_without_the_classes_read_falls_back_to_pycrfsuite(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scorer reads khmercut's character classes when it is built: a khmercut that renamed
    them fails there (not mid-batch), and segmentation tags with pycrfsuite."""
    text = "ក្រសួងសុខាភិបាលព្រមានអំពីវ៉ាក់សាំងក្លែងក្លាយ"
    monkeypatch.delattr(khmercut, "kcc_type")
    monkeypatch.setattr(tokenize_module, "_SCORER", [])
    _segment_khmer.cache_clear()
    try:
        assert tokenize_module._khmer_scorer() is None
        monkeypatch.undo()  # khmercut whole again for its own tokenize (the fallback's tagger)
        monkeypatch.setattr(tokenize_module, "_SCORER", [None])
        assert _segment_khmer(text) == tuple(khmercut.tokenize(text))
    finally:
        _segment_khmer.cache_clear()


def test_clusters_are_seg_kccs(model: CrfModel, runs: list[str]) -> None:
    """The regex split gives khmercut's clusters on every run of the fixtures and on random
    runs of any Khmer-block and lunar-date character (signs first, coeng chains, digit runs)."""
    scorer = KccScorer(model)
    rng = random.Random(20261203)
    alphabet = [chr(c) for c in range(0x1780, 0x1800)] + [chr(c) for c in range(0x19E0, 0x1A00)]
    soups = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(5000)]
    digits_and_coengs = ["១២៣", "ក្ក្ក", "្១២", "១្២", "ក១២ខ", "៛១០០", "᧠᧡១"]
    for run in [*runs, *soups, *digits_and_coengs]:
        assert scorer.clusters(run) == khmercut.seg_kcc(run), run
