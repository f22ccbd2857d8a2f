"""Script-aware tokens for lexical search.

Khmer is written without spaces between words: we segment it with khmercut's
CRF model. Latin-script words (Vietnamese syllables included) are lower-cased and
folded (tones and accents removed) so a post typed without tone marks still
meets its fact-check. Scripts without word spaces that we have no segmenter for
(Thai, Lao, Myanmar, CJK) fall back to character bigrams. URLs, mentions and
emoji are not words; hashtags give their word.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from functools import lru_cache

from factbridge.errors import ModelError
from factbridge.text.khmer_crf import KccScorer, read_model
from factbridge.text.normalize import fold_diacritics
from factbridge.text.urls import blank_urls

TOKENIZER_VERSION = "script-aware-1"

log = logging.getLogger(__name__)

_MENTION = re.compile(r"(?<!\w)@\w+")
_RUN = re.compile(r"[\u1780-\u17ff\u19e0-\u19ff]+|[^\W_]+", re.UNICODE)
_BIGRAM_SCRIPTS = ("THAI", "LAO", "MYANMAR", "CJK", "HIRAGANA", "KATAKANA", "HANGUL")


# khmercut keeps one CRF tagger in a module global, created and opened lazily without a lock:
# two threads segmenting at once could see it created but not yet opened ("The tagger is not
# opened"), and the tagger is not documented as safe to share. Opening our reading of its model,
# and tagging with pycrfsuite (only where that reading failed), hold this lock.
_KHMER_LOCK = threading.Lock()
_SCORER: list[KccScorer | None] = []  # khmercut's model as read by khmer_crf (None: unreadable), once read


def _khmer_scorer() -> KccScorer | None:
    """khmercut's CRF model read into Python (`khmer_crf`: the same tags, ~5x faster than
    pycrfsuite on the attribute strings), or None when this khmercut ships a model file it
    cannot read or lacks the character classes the scorer reads: pycrfsuite then tags, as before."""
    if not _SCORER:
        with _KHMER_LOCK:
            if not _SCORER:
                import khmercut

                try:
                    _SCORER.append(KccScorer(read_model(khmercut.model_path)))
                except (ModelError, OSError, ImportError) as exc:  # ImportError: a khmercut without the classes read
                    log.warning("khmer segmentation: %s; tagging with pycrfsuite", exc)
                    _SCORER.append(None)
    return _SCORER[0]


@lru_cache(maxsize=65_536)
def _segment_khmer(run: str) -> tuple[str, ...]:
    """khmercut's words of one Khmer run (the CRF sees only the run: the same run always
    gives the same words, so repeated phrases are segmented once per process).

    The words of `khmercut.tokenize(run)`: its character clusters (`seg_kcc`), its CRF model
    and attribute template (`create_kcc_features`), run by `khmer_crf.KccScorer` (the model
    read once, the clusters split by one regex, each cluster's attributes weighed without
    making their strings), or, where that model could not be read, by khmercut's `seg_kcc`
    and pycrfsuite tagger on the attribute strings (`_kcc_attributes`: each cluster's
    attributes worked out once)."""
    import khmercut

    scorer = _khmer_scorer()
    if scorer is not None:
        kccs = scorer.clusters(run)
        tags = scorer.tag(kccs)
    else:
        kccs = khmercut.seg_kcc(run)
        attributes = _kcc_attributes(kccs)
        with _KHMER_LOCK:
            tags = khmercut.load().tag(attributes)
    words: list[str] = []
    for i, tag in enumerate(tags):
        if tag == "1" or i == 0:
            words.append(kccs[i])
        else:
            words[-1] += kccs[i]
    return tuple(words)


def load_segmenter() -> None:
    """Read khmercut's CRF model now (~0.5 s, ~30 MB), so that no post waits for it later."""
    _segment_khmer.__wrapped__("ក")


@lru_cache(maxsize=16_384)
def _kcc_roles(kcc: str) -> tuple[tuple[str, ...], bool]:
    """The attributes a cluster gives at each window offset ("kcc:", "t:", "kcc[-1]:",
    "kcc[-1]t:", ... "kcc[+3]t:"), built once per cluster, and its `is_no_space`
    (khmercut's `kcc_type` and `is_no_space`)."""
    from khmercut import NS, get_type, kcc_type

    t, ns = kcc_type(kcc), get_type(kcc[0]) == NS
    roles: tuple[str, ...] = ("kcc:" + kcc, "t:" + t)
    for offset in ("[-1]", "[-2]", "[-3]", "[+1]", "[+2]", "[+3]"):
        roles += (f"kcc{offset}:{kcc}", f"kcc{offset}t:{t}")
    return roles, ns


def _kcc_attributes(kccs: list[str]) -> list[list[str]]:
    """khmercut's `create_kcc_features(kccs)` as the attributes pycrfsuite makes of them: a
    string feature is "name:value", a true flag its name; a false flag (weight 0) is left
    out, which changes no score. Same attributes in the same order (tests/test_tokenize_khmer.py).
    A cluster's own attributes at each offset come from `_kcc_roles`; the run's cluster pairs,
    triples and quadruples are joined once, each used by the clusters whose window holds it."""
    n = len(kccs)
    roles = [_kcc_roles(k) for k in kccs]
    two = [a + b for a, b in zip(kccs[:-1], kccs[1:], strict=True)]  # two[i]: clusters i and i + 1
    three = [a + b for a, b in zip(two[:-1], kccs[2:], strict=True)]  # three[i]: clusters i to i + 2
    four = [a + b for a, b in zip(three[:-1], kccs[3:], strict=True)]  # four[i]: clusters i to i + 3
    out: list[list[str]] = []
    for i in range(n):
        own, ns = roles[i]
        a = [own[0], own[1]]
        if ns:
            a.append("ns")
        if i >= 1:
            r1, ns1 = roles[i - 1]
            a += [r1[2], r1[3], "kcc[-1:0]:" + two[i - 1]]
            if ns1:
                a.append("ns-1")
        else:
            a.append("BOS")
        if i >= 2:
            r2 = roles[i - 2][0]
            a += [r2[4], r2[5], "kcc[-2:-1]:" + two[i - 2], "kcc[-2:0]:" + three[i - 2]]
        if i >= 3:
            r3 = roles[i - 3][0]
            a += [r3[6], r3[7], "kcc[-3:0]:" + four[i - 3], "kcc[-3:-1]:" + three[i - 3], "kcc[-3:-2]:" + two[i - 3]]
        if i < n - 1:
            q1, nsn1 = roles[i + 1]
            a += [q1[8], q1[9], "kcc[+1:0]:" + two[i]]
            if nsn1:
                a.append("ns+1")
        else:
            a.append("EOS")
        if i < n - 2:
            q2, nsn2 = roles[i + 2]
            a += [q2[10], q2[11], "kcc[+1:+2]:" + two[i + 1], "kcc[0:+2]:" + three[i]]
            if nsn2:
                a.append("ns+2")
        if i < n - 3:
            q3 = roles[i + 3][0]
            a += [q3[12], q3[13], "kcc[+2:+3]:" + two[i + 2], "kcc[+1:+3]:" + three[i + 1], "kcc[0:+3]:" + four[i]]
        out.append(a)
    return out


def _is_khmer(run: str) -> bool:
    return "\u1780" <= run[0] <= "\u17ff" or "\u19e0" <= run[0] <= "\u19ff"


def _needs_bigrams(run: str) -> bool:
    if ord(run[0]) < 0x0E00:  # Latin, Greek, Cyrillic, Arabic, Indic...: spaced scripts
        return False
    name = unicodedata.name(run[0], "")
    return any(s in name for s in _BIGRAM_SCRIPTS)


def _tokens_of_run(run: str) -> tuple[str, ...]:
    """The tokens of one run of letters and digits: a Khmer run's words (not its lone signs),
    a bigram script's character pairs, or a spaced-script word lower-cased and folded."""
    if _is_khmer(run):
        return tuple(t for t in _segment_khmer(run) if t.strip() and any(c.isalpha() for c in t))
    if _needs_bigrams(run):
        return tuple(run[i : i + 2] for i in range(max(1, len(run) - 1)))
    return (fold_diacritics(run.lower()),)


# Runs repeat (a vocabulary, repeated Khmer phrases): each run's tokens are worked out once.
# Khmer runs are cached whatever their length (their CRF segmentation is cached anyway); other
# runs up to 40 characters (longer ones are hashes, base64, keyboard mashing: rarely seen twice).
_cached_tokens_of_run = lru_cache(maxsize=262_144)(_tokens_of_run)


def tokenize(text: str) -> list[str]:
    # Decomposed input would split words at every combining tone mark ("va", "c");
    # NFC leaves already-normalised text, and so stored tokens, unchanged.
    text = blank_urls(unicodedata.normalize("NFC", text))
    if "@" in text:
        text = _MENTION.sub(" ", text)
    tokens: list[str] = []
    for run in _RUN.findall(text):
        tokens += _cached_tokens_of_run(run) if len(run) <= 40 or _is_khmer(run) else _tokens_of_run(run)
    return tokens
