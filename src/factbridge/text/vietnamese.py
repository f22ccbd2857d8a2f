"""Restore Vietnamese tone marks on text typed without them.

Many Vietnamese posts arrive unaccented ("vac xin gay vo sinh"); the
multilingual encoder understands them poorly, so a post like that misses its
fact-check in another language. We put the marks back before encoding with a
syllable-bigram model and Viterbi decoding: for each unaccented syllable the
candidates are the accented forms seen in a Vietnamese corpus, scored by
bigram counts with back-off to unigram counts. Words not in the table (names,
English words) are left as they are. The stored post keeps its own text.

The table is built by `factbridge train vi-tones` from the VLSP 2020 ReINTEL
posts (research use; only pruned n-gram counts ship, see the file's card).
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from factbridge.text.normalize import fold_diacritics, normalize_text

TONES_VERSION = "vi-tones-1"
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def default_tones_path() -> Path:
    return Path(str(files("factbridge") / "data" / "vi_tones.json.gz"))


@dataclass
class ToneModel:
    unigrams: dict[str, int]
    bigrams: dict[str, int]
    card: dict[str, object]

    def __post_init__(self) -> None:
        self.candidates: dict[str, list[str]] = {}
        for form, _count in sorted(self.unigrams.items(), key=lambda kv: -kv[1]):
            self.candidates.setdefault(fold_diacritics(form), []).append(form)
        self.total = sum(self.unigrams.values()) or 1

    def _score(self, prev: str | None, word: str) -> float:
        uni = (self.unigrams.get(word, 0) + 0.1) / self.total
        if prev is None:
            return math.log(uni)
        pair = self.bigrams.get(f"{prev} {word}", 0)
        prev_count = self.unigrams.get(prev, 0)
        # Interpolated bigram: strong when seen, back-off to unigram otherwise.
        p = 0.8 * (pair / prev_count if prev_count else 0.0) + 0.2 * uni
        return math.log(p + 1e-12)

    def _decode(self, words: list[str]) -> list[str]:
        lattice = [self.candidates.get(w, [w])[:6] for w in words]
        best: list[dict[str, tuple[float, str | None]]] = []
        for i, options in enumerate(lattice):
            column: dict[str, tuple[float, str | None]] = {}
            for option in options:
                if i == 0:
                    column[option] = (self._score(None, option), None)
                else:
                    column[option] = max(
                        ((score + self._score(prev, option), prev) for prev, (score, _) in best[-1].items()),
                        key=lambda t: t[0],
                    )
            best.append(column)
        out = [max(best[-1].items(), key=lambda kv: kv[1][0])[0]]
        for i in range(len(best) - 1, 0, -1):
            prev = best[i][out[-1]][1]
            assert prev is not None
            out.append(prev)
        return out[::-1]

    def restore(self, text: str) -> str:
        """The text with tone marks restored on unaccented Vietnamese syllables."""
        pieces: list[str] = []
        last = 0
        cursor = 0
        run: list[re.Match[str]] = []

        def flush() -> None:
            nonlocal cursor
            if not run:
                return
            restored = self._decode([m.group(0).lower() for m in run])
            for m, word in zip(run, restored, strict=True):
                original = m.group(0)
                if original.isascii() and fold_diacritics(word) == original.lower():
                    word = word.capitalize() if original[:1].isupper() and original[1:].islower() else word
                    word = word.upper() if original.isupper() and len(original) > 1 else word
                else:
                    word = original
                pieces.append(text[cursor : m.start()])
                pieces.append(word)
                cursor = m.end()
            run.clear()

        for m in _WORD.finditer(text):
            gap = text[last : m.start()]
            if run and any(c in gap for c in ".,;:!?()\n\""):
                flush()
            if m.group(0).isascii() and m.group(0).lower() in self.candidates:
                run.append(m)
            else:
                flush()
            last = m.end()
        flush()
        pieces.append(text[cursor:])
        return "".join(pieces)

    def save(self, path: str | Path) -> None:
        data = {"version": TONES_VERSION, "unigrams": self.unigrams, "bigrams": self.bigrams, "card": self.card}
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            json.dump(data, handle, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def load(cls, path: str | Path) -> ToneModel:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            data = json.load(handle)
        return cls(unigrams=data["unigrams"], bigrams=data["bigrams"], card=data.get("card", {}))


def train_tone_model(texts: Iterable[str], min_bigram: int = 2, min_unigram: int = 2, source: str = "") -> ToneModel:
    unigrams: Counter[str] = Counter()
    bigrams: Counter[str] = Counter()
    for text in texts:
        for sentence in re.split(r"[.,;:!?()\n\"]+", normalize_text(text).lower()):
            words = [w for w in _WORD.findall(sentence) if w != fold_diacritics(w) or w.isascii()]
            unigrams.update(words)
            bigrams.update(f"{a} {b}" for a, b in zip(words, words[1:], strict=False))
    uni = {w: c for w, c in unigrams.items() if c >= min_unigram}
    bi = {k: c for k, c in bigrams.items() if c >= min_bigram and all(p in uni for p in k.split(" "))}
    card = {"source": source, "min_unigram": min_unigram, "min_bigram": min_bigram, "unigrams": len(uni), "bigrams": len(bi)}
    return ToneModel(uni, bi, card)


@lru_cache(maxsize=1)
def default_tone_model() -> ToneModel | None:
    """The shipped model, read once per process (reading it costs ~60 ms; restoring reads it only)."""
    path = default_tones_path()
    return ToneModel.load(path) if path.exists() else None


def looks_unaccented(text: str) -> bool:
    """True when Vietnamese text carries (almost) no diacritics."""
    words = _WORD.findall(text)
    if not words:
        return False
    marked = sum(1 for w in words if not w.isascii())
    return marked / len(words) < 0.1
