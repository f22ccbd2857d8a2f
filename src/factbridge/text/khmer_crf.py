"""khmercut's CRF model, read and run in Python: the tags its pycrfsuite tagger gives, faster.

khmercut segments Khmer with a first-order linear-chain CRF trained by CRFsuite (two labels:
"1" starts a word, "0" continues one). pycrfsuite tags a sequence from attribute strings:
each string is encoded, looked up in the model's attribute database and its label weights
added up, then Viterbi: with khmercut's ~25 attribute strings per character cluster, ~16 µs
per cluster, most of normalising a Khmer post. Here the model file is read once into a
dictionary from attribute to its weights, and `KccScorer` weighs khmercut's template without
making its strings: ~3 µs per cluster (docs/performance.md §5).

Same scores, same tags: a cluster's score for a label is the sum of the weights of its
attributes' features for that label, added in the order of its attributes as CRFsuite adds
them (`crf1dt_state_score`, IEEE doubles, so the sums are the same to the bit); attributes
the model does not know are skipped, as pycrfsuite skips them; Viterbi keeps the first
label on a tie, as `crf1dc_viterbi` does (tests/test_khmer_crf.py compares both taggers on
every Khmer text of the fixtures, generated posts and random character soups).

The file format (CRFsuite 0.12 `crf1d_model.c`, little-endian): a 48-byte header (magic
"lCRF", size, type "FOMC", version, counts and the offsets of five chunks); the features
("FEAT": type, source, destination, weight as a double; type 0 is attribute -> label, 1 is
label -> label); the label and attribute names (each a CQDB database, read here through its
backward array: id -> key); the labels' and attributes' feature lists ("LFRF", "AFRF": not
read, an attribute's features being the state features whose source it is).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from factbridge.errors import ModelError

_HEADER = struct.Struct("<4sI4sIIIIIIIII")
_CHUNK = struct.Struct("<4sII")
_FEATURES = np.dtype([("kind", "<u4"), ("src", "<u4"), ("dst", "<u4"), ("weight", "<f8")])  # 20 bytes, packed
_CQDB = struct.Struct("<4sIIIII")
_CQDB_BYTEORDER = 0x62445371
_STATE, _TRANSITION = 0, 1


@dataclass(frozen=True)
class CrfModel:
    """A two-label CRFsuite model: each attribute's weights as one complex number (the first
    label's weight the real part, the second's the imaginary part: one addition scores both
    labels, each part an ordinary double addition), the transition weights, the label names."""

    labels: tuple[str, str]
    weights: dict[str, complex]
    transitions: tuple[tuple[float, float], tuple[float, float]]  # [from][to]

    def scores(self, items: Sequence[Sequence[str]]) -> list[complex]:
        """Each item's label scores: its known attributes' weights added in order."""
        get = self.weights.get
        out: list[complex] = []
        for attributes in items:
            score = 0j
            for a in attributes:
                w = get(a)
                if w is not None:
                    score += w
            out.append(score)
        return out

    def viterbi(self, scores: Sequence[complex]) -> list[int]:
        """The best label sequence (label ids) for these item scores, CRFsuite's way: on a tie
        the lower label id wins (`if (max < score)`, labels tried in id order)."""
        if not scores:
            return []
        (t00, t01), (t10, t11) = self.transitions
        prev0, prev1 = scores[0].real, scores[0].imag
        back: list[tuple[int, int]] = []  # back[t - 1]: the best previous label of labels 0 and 1 at t
        for s in scores[1:]:
            a, b = prev0 + t00, prev1 + t10  # into label 0
            c, d = prev0 + t01, prev1 + t11  # into label 1
            from0 = 1 if a < b else 0
            from1 = 1 if c < d else 0
            prev0 = (b if from0 else a) + s.real
            prev1 = (d if from1 else c) + s.imag
            back.append((from0, from1))
        label = 1 if prev0 < prev1 else 0
        path = [label]
        for step in reversed(back):
            label = step[label]
            path.append(label)
        path.reverse()
        return path

    def tag(self, items: Sequence[Sequence[str]]) -> list[str]:
        """The label names pycrfsuite's `Tagger.tag(items)` gives."""
        return [self.labels[i] for i in self.viterbi(self.scores(items))]


def _cqdb_keys(buf: bytes, start: int, what: str) -> list[str]:
    """The keys of a CQDB database at `start`, by id (its backward array: id -> record of
    id, key size with its closing NUL, key)."""
    chunk, _size, _flag, byteorder, count, bwd_offset = _CQDB.unpack_from(buf, start)
    if chunk != b"CQDB" or byteorder != _CQDB_BYTEORDER:
        raise ModelError(f"{what}: not a CQDB database")
    records = start + np.frombuffer(buf, "<u4", count, start + bwd_offset).astype(np.int64)
    ids, sizes = (np.frombuffer(buf, np.uint8)[records[:, None] + np.arange(at, at + 4)].view("<u4").ravel() for at in (0, 4))
    if count and (sorted(ids.tolist()) != list(range(count)) or int((records + 8 + sizes).max()) > len(buf)):
        raise ModelError(f"{what}: damaged CQDB database")
    keys: list[str] = [""] * count
    for key_id, record, size in zip(ids.tolist(), records.tolist(), sizes.tolist(), strict=True):
        keys[key_id] = buf[record + 8 : record + 7 + size].decode("utf-8")
    return keys


def read_model(path: str | Path) -> CrfModel:
    """A CRFsuite first-order model file with two labels (~0.3 s for khmercut's 180,000
    attributes). ModelError names the file when it is not one (another format version, more
    labels, a damaged file): the caller then keeps pycrfsuite's tagger."""
    path = Path(path)
    buf = path.read_bytes()
    try:
        magic, size, kind, version, _, labels, attrs, off_features, off_labels, off_attrs, _, _ = _HEADER.unpack_from(buf, 0)
        if magic != b"lCRF" or kind != b"FOMC" or version != 100 or size != len(buf):
            raise ModelError(f"{path}: not a CRFsuite 0.12 first-order model (magic {magic!r}, type {kind!r}, version {version})")
        if labels != 2:
            raise ModelError(f"{path}: {labels} labels, two expected")
        chunk, _, features = _CHUNK.unpack_from(buf, off_features)
        if chunk != b"FEAT":
            raise ModelError(f"{path}: unexpected chunk {chunk!r}")
        names = _cqdb_keys(buf, off_labels, f"{path}: labels")
        attr_names = _cqdb_keys(buf, off_attrs, f"{path}: attributes")
        table = np.frombuffer(buf, _FEATURES, features, off_features + _CHUNK.size)
        state, transition = table[table["kind"] == _STATE], table[table["kind"] == _TRANSITION]
        if len(state) + len(transition) != features or max(state["dst"].max(initial=0), transition["dst"].max(initial=0), transition["src"].max(initial=0)) > 1:
            raise ModelError(f"{path}: features of an unknown kind or label")
        # One feature per (attribute, label), as CRFsuite makes them: an attribute's score for a
        # label is that one weight (the sums below add each once).
        if len(np.unique(state["src"].astype(np.int64) * 2 + state["dst"])) != len(state):
            raise ModelError(f"{path}: an attribute has two features for one label")
        weights = np.zeros((attrs, 2), dtype=np.float64)
        weights[state["src"], state["dst"]] = state["weight"]
        has = np.zeros(attrs, dtype=bool)
        has[state["src"]] = True
        rows = np.flatnonzero(has)
        values = (weights[rows, 0] + 1j * weights[rows, 1]).tolist()
        trans = np.zeros((2, 2), dtype=np.float64)
        trans[transition["src"], transition["dst"]] = transition["weight"]
    except (struct.error, ValueError, UnicodeDecodeError, IndexError) as exc:
        raise ModelError(f"{path}: unreadable CRFsuite model ({exc})") from exc
    return CrfModel(
        (names[0], names[1]), dict(zip((attr_names[i] for i in rows.tolist()), values, strict=True)),
        ((float(trans[0, 0]), float(trans[0, 1])), (float(trans[1, 0]), float(trans[1, 1]))),
    )


# khmercut's attribute template (`create_kcc_features`), as weights: a cluster's own attributes
# at each window offset, the flags, and the names of the joined clusters around it.
_ROLE_OFFSETS = ("[-1]", "[-2]", "[-3]", "[+1]", "[+2]", "[+3]")
_PAIRS = ("kcc[-1:0]:", "kcc[-2:-1]:", "kcc[-3:-2]:", "kcc[+1:0]:", "kcc[+1:+2]:", "kcc[+2:+3]:")
_TRIPLES = ("kcc[-2:0]:", "kcc[-3:-1]:", "kcc[0:+2]:", "kcc[+1:+3]:")
_QUADRUPLES = ("kcc[-3:0]:", "kcc[0:+3]:")
_CACHED = 262_144  # joined clusters remembered (their weights), per kind


class KccScorer:
    """The label scores of a run's character clusters under khmercut's attribute template,
    without making its ~25 attribute strings per cluster: each cluster's own attributes
    (14, and its no-space flags) are looked up once per cluster, each pair, triple and
    quadruple of clusters once per run (and remembered), and a cluster's score adds their
    weights in the template's order, a missing attribute adding 0 (x + 0.0 == x: the same
    sums as skipping it). Equal to `model.scores(attributes)` of the template's strings
    (tests/test_khmer_crf.py)."""

    def __init__(self, model: CrfModel) -> None:
        # khmercut's character classes, read here: a khmercut without them fails now (ImportError), not mid-batch
        from khmercut import NS, get_type, kcc_type

        self._kcc_type, self._get_type, self._no_space = kcc_type, get_type, NS
        self.model = model
        get = model.weights.get
        self._bos, self._eos = get("BOS", 0j), get("EOS", 0j)
        self._ns = (get("ns", 0j), get("ns-1", 0j), get("ns+1", 0j), get("ns+2", 0j))
        self._roles: dict[str, tuple[complex, ...]] = {}
        self._grams: tuple[dict[str, tuple[complex, ...]], ...] = ({}, {}, {})
        self._split = cluster_splitter().split

    def clusters(self, run: str) -> list[str]:
        """khmercut's character clusters of a run of Khmer (`cluster_splitter`)."""
        return self._split(run)

    def _role(self, kcc: str) -> tuple[complex, ...]:
        """A cluster's 14 attribute weights ("kcc:", "t:", "kcc[-1]:", "kcc[-1]t:", ...
        "kcc[+3]t:") and its flags' ("ns", "ns-1", "ns+1", "ns+2"; 0 when it has a space)."""
        get = self.model.weights.get
        t = self._kcc_type(kcc)
        weights = [get("kcc:" + kcc, 0j), get("t:" + t, 0j)]
        for offset in _ROLE_OFFSETS:
            weights += [get(f"kcc{offset}:{kcc}", 0j), get(f"kcc{offset}t:{t}", 0j)]
        weights += self._ns if self._get_type(kcc[0]) == self._no_space else (0j, 0j, 0j, 0j)
        role = tuple(weights)
        if len(self._roles) < _CACHED:
            self._roles[kcc] = role
        return role

    def _gram(self, kind: int, joined: str, names: tuple[str, ...]) -> tuple[complex, ...]:
        """The weights of the attributes naming these joined clusters (a pair, triple or
        quadruple), remembered."""
        get = self.model.weights.get
        found = tuple(get(name + joined, 0j) for name in names)
        cache = self._grams[kind]
        if len(cache) < _CACHED:
            cache[joined] = found
        return found

    def scores(self, kccs: Sequence[str]) -> list[complex]:
        n = len(kccs)
        role, gram = self._role, self._gram
        roles = [self._roles.get(k) or role(k) for k in kccs]
        pairs = [a + b for a, b in zip(kccs[:-1], kccs[1:], strict=True)]
        triples = [a + b for a, b in zip(pairs[:-1], kccs[2:], strict=True)]
        quadruples = [a + b for a, b in zip(triples[:-1], kccs[3:], strict=True)]
        known2, known3, known4 = (cache.get for cache in self._grams)
        two = [known2(g) or gram(0, g, _PAIRS) for g in pairs]
        three = [known3(g) or gram(1, g, _TRIPLES) for g in triples]
        four = [known4(g) or gram(2, g, _QUADRUPLES) for g in quadruples]
        out: list[complex] = []
        for i in range(n):
            own = roles[i]
            s = own[0] + own[1] + own[14]
            if i >= 1:
                r1 = roles[i - 1]
                s = s + r1[2] + r1[3] + two[i - 1][0] + r1[15]
            else:
                s = s + self._bos
            if i >= 2:
                r2 = roles[i - 2]
                s = s + r2[4] + r2[5] + two[i - 2][1] + three[i - 2][0]
            if i >= 3:
                r3 = roles[i - 3]
                s = s + r3[6] + r3[7] + four[i - 3][0] + three[i - 3][1] + two[i - 3][2]
            if i < n - 1:
                q1 = roles[i + 1]
                s = s + q1[8] + q1[9] + two[i][3] + q1[16]
            else:
                s = s + self._eos
            if i < n - 2:
                q2 = roles[i + 2]
                s = s + q2[10] + q2[11] + two[i + 1][4] + three[i][2] + q2[17]
            if i < n - 3:
                q3 = roles[i + 3]
                s = s + q3[12] + q3[13] + two[i + 2][5] + three[i + 1][3] + four[i][1]
            out.append(s)
        return out

    def tag(self, kccs: Sequence[str]) -> list[str]:
        """The labels pycrfsuite gives the template's attributes of these clusters."""
        labels = self.model.labels
        return [labels[i] for i in self.model.viterbi(self.scores(kccs))]


def cluster_splitter() -> re.Pattern[str]:
    """khmercut's character clusters (`seg_kcc`) of a run of Khmer letters, signs, digits and
    lunar-date symbols (no spaces, nothing else: the runs `tokenize` finds) as one regex split:
    a cluster starts at each consonant, independent vowel, sign, digit or lunar symbol that
    khmercut starts one at, except right after a subscript sign (coeng) and between two
    digits. `seg_kcc` walks the run a character at a time in Python; the split is ~10x faster
    and gives the same clusters (tests/test_khmer_crf.py)."""
    from khmercut import KHCONST, KHLUNAR, KHNUMBER, KHSUB, KHSYM

    def khmer(c: str) -> bool:
        return "\u1780" <= c <= "\u17ff" or "\u19e0" <= c <= "\u19ff"

    def chars(cs: set[str]) -> str:
        return "".join(re.escape(c) for c in sorted(cs))

    digits = {c for c in KHNUMBER if khmer(c)}
    starts = {c for c in KHCONST | KHSYM | KHNUMBER | KHLUNAR if khmer(c)} - digits
    sub = chars(KHSUB)
    return re.compile(f"(?<=[^{sub}])(?=[{chars(starts)}])|(?<=[^{sub}{chars(digits)}])(?=[{chars(digits)}])")
