"""The embedding stage's MinHash signatures serve the narratives and coordination stages: where a
post's `embedding_text` is its `norm_text` without links (`prepare.signs_like_norm_text`), both
texts have the same `canonical` form, so the signature kept for the one is the other's."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from factbridge.backends.embedders.hashing import HashingEmbedder
from factbridge.backends.storage.sqlite import SQLiteStorage
from factbridge.bench.feed import generated_posts
from factbridge.models import Post
from factbridge.pipeline.ingest import embed_posts
from factbridge.pipeline.prepare import embedding_text, prepare_post, signs_like_norm_text
from factbridge.text import minhash
from factbridge.text.urls import strip_urls

LANGUAGES = ("vi", "km", "fr", "en")

# norm texts where links and white space meet other characters: quotes, "<", a link's own "//"
# and "www.", Unicode spaces (U+2000 decomposes), combining marks right after a link, "//" alone
TRICKY = [
    "see http://a.b<pic.twitter.com/x now", "HTTP://A.B/C'www.d.e end", "www.a.com\u2000\u2001 x  y",
    "foo // bar www. baz", "x\u00a0 http://t.co/a\u0301 é", "http://x.y/z\u0301\u0483 ok", "lines\n\nhttps://x.y/z.\nend",
    "a http://b.c\u3000pic.twitter.com/q1 d", "pic.twitter.com/abc http://x", "http://a.b\"quoted\" https://c.d/e,f",
    "Tin giả: Đức đã ĐÓNG cửa https://t.co/x1 biên giới!!!", "ΣΟΦΟΣ https://σ.gr/ά σοφός", "\u2028http://a.b\u2029 z",
    "ا http://a.b \u0653 c", "x https://a.b/\u0301 https://c.d", "tabs\thttp://a.b\tand",
]


def _posts() -> list[Post]:
    made = [prepare_post(p, LANGUAGES) for mix in ("tweet", "550", "mixed") for p in generated_posts(120, mix, duplicates=0.3, seed=5)]
    made += [Post(id=f"t{i}", text=t, norm_text=t, language=lang) for i, t in enumerate(TRICKY) for lang in ("en", "km")]
    return made


def test_posts_said_to_sign_alike_have_the_same_canonical_form() -> None:
    posts = _posts()
    alike = [p for p in posts if signs_like_norm_text(p)]
    assert len(alike) > len(posts) // 3 and any(embedding_text(p) != p.norm_text for p in alike)
    for post in alike:
        assert embedding_text(post) == strip_urls(post.norm_text)
        assert minhash.canonical(embedding_text(post)) == minhash.canonical(post.norm_text), post.norm_text
    # and where they are not said to, they may differ: restored tone marks, Khmer names appended, mentions
    assert not signs_like_norm_text(Post(id="m", text="@someone http://a.b hi", norm_text="@someone http://a.b hi", language="en"))
    assert not signs_like_norm_text(Post(id="e", text="hi http://a.b", norm_text="", language="en"))


def test_an_alias_keeps_a_cached_signature_for_the_other_text() -> None:
    cache = minhash.SignatureCache(3)
    texts = ["alpha beta gamma", "delta epsilon zeta"]
    sigs, valid = minhash._compute_signatures(texts)
    cache.put([minhash.SignatureCache.key(texts[0])], sigs[:1], valid[:1])
    assert cache.alias([(texts[0], "alpha beta gamma http://x.y"), (texts[1], "delta epsilon zeta http://x.y")]) == 1
    assert cache.get([minhash.SignatureCache.key("alpha beta gamma http://x.y")]) == [sigs[0].tobytes()]
    assert cache.get([minhash.SignatureCache.key("delta epsilon zeta http://x.y")]) == [None], "nothing cached for the second"
    assert minhash.SignatureCache(0).alias([(texts[0], "x")]) == 0


@pytest.mark.parametrize("mix", ["tweet", "550"])
def test_norm_texts_signed_after_the_embedding_stage_are_the_computed_signatures(storage: SQLiteStorage, mix: str,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # the process-wide cache starts empty here: what earlier tests signed would leave nothing to share
    monkeypatch.setattr(minhash.SIGNATURE_CACHE, "_rows", OrderedDict())
    posts = [prepare_post(p, LANGUAGES) for p in generated_posts(96, mix, duplicates=0.2, seed=9)]
    posts += [p.model_copy(update={"id": f"{p.id}-t"}) for p in _posts()[-len(TRICKY) * 2:]]
    norm = [p.norm_text for p in posts]
    fresh = [t for t in norm if minhash.SignatureCache.key(t) not in minhash.SIGNATURE_CACHE._rows]
    embed_posts(storage, HashingEmbedder(dim=64), "o", posts, near_duplicate=0.9)
    shared = [t for t in fresh if minhash.SignatureCache.key(t) in minhash.SIGNATURE_CACHE._rows]
    assert len(shared) >= len(posts) // 4, "the stage kept signatures for norm texts it did not sign itself"
    sigs, valid = minhash.signatures(norm)
    expected_sigs, expected_valid = minhash._compute_signatures(norm)
    assert np.array_equal(sigs, expected_sigs) and np.array_equal(valid, expected_valid)
