"""The normalise stage: canonical text, language, tokens and URLs for posts and fact-checks."""

from __future__ import annotations

from functools import lru_cache

from factbridge.models import FactCheck, Post
from factbridge.text.crosslingual import ascii_digits, latin_names
from factbridge.text.langid import detect_language
from factbridge.text.normalize import normalize_text
from factbridge.text.tokenize import tokenize
from factbridge.text.urls import extract_urls, strip_urls
from factbridge.text.vietnamese import default_tone_model, looks_unaccented


def prepare_post(post: Post, languages: tuple[str, ...] = ("vi", "km", "fr", "en")) -> Post:
    # the text read from the post's images counts as the post's text for every later stage
    norm = normalize_text("\n\n".join(t for t in (post.text, post.image_text) if t.strip()))
    update: dict[str, object] = {"norm_text": norm, "tokens": " ".join(tokenize(norm))}
    if post.language:
        update.update(language=post.language.lower(), language_source="given", language_confidence=1.0)
    else:
        guess = detect_language(strip_urls(norm), languages)
        update.update(language=guess.language, language_source="detected", language_confidence=guess.confidence)
    urls = list(dict.fromkeys([*post.urls, *extract_urls(norm)]))
    update["urls"] = urls
    return post.model_copy(update=update)


def prepare_factcheck(fc: FactCheck, languages: tuple[str, ...] = ("vi", "km", "fr", "en")) -> FactCheck:
    title = normalize_text(fc.title)
    claim = normalize_text(fc.claim)
    norm = (title + " \n " + claim).strip() if title and title.lower() not in claim.lower() else claim or title
    language = fc.language.lower() if fc.language else detect_language(norm, languages).language
    return fc.model_copy(update={"title": title, "claim": claim, "norm_text": norm, "tokens": " ".join(tokenize(norm)), "language": language})


def embedding_text(post: Post) -> str:
    """What the dense encoder sees for a post: its text without links, and, for
    Vietnamese typed without tone marks, with the marks restored (the encoder
    reads unaccented Vietnamese poorly); for Khmer, with ASCII digits and the Latin
    form of transliterated names appended (the encoder links ត្រាំ to Trump poorly)."""
    return _embedding_text(post.norm_text, "" if post.norm_text else post.text, post.language)[0]


def signs_like_norm_text(post: Post) -> bool:
    """Whether `embedding_text(post)` has the same MinHash signature as `post.norm_text` (what
    the narratives and coordination stages sign): when it is `norm_text` without its links (no
    tone marks restored, nothing appended) and `norm_text` holds no "@". `minhash.canonical`
    then gives both the same form: without "@" it drops exactly `URL_PATTERN`'s matches, which
    `strip_urls` has dropped already (it leaves none: each removed match becomes white space),
    and white space runs collapse in both."""
    return bool(post.norm_text) and "@" not in post.norm_text and _embedding_text(post.norm_text, "", post.language)[1]


@lru_cache(maxsize=8192)
def _embedding_text(norm_text: str, raw_text: str, language: str | None) -> tuple[str, bool]:
    """`embedding_text` of a post with these fields, and whether it is the text with its links
    stripped and nothing else: the embedding, check-worthiness and narratives stages each ask
    for the same batch's texts, so each is worked out once."""
    text = strip_urls(norm_text or normalize_text(raw_text))
    if language == "vi" and looks_unaccented(text):
        model = default_tone_model()
        if model is not None:
            return model.restore(text), False
    if language == "km":
        # digits and transliterated names in the script the library uses (text/crosslingual.py)
        digits = ascii_digits(text)
        names = latin_names(digits)
        if names:
            return f"{digits} ({', '.join(names)})", False
        return digits, digits == text
    return text, True
