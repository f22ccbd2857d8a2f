"""Generated social posts for the ingest throughput bench: the length mix of a real feed.

Text is drawn from word lists of the four first languages (Vietnamese syllables with
tone marks, Khmer words without spaces between them, French, English), so the
encoder sees as many tokens per character as it does on real posts (550-character
Vietnamese Facebook posts of ReINTEL: ~160 tokens; tweets: 30-70). Some posts carry
a link, a hashtag or a number. A share of posts (`duplicates`) repeats an earlier post,
exactly or with a small edit, as shares and copy-paste campaigns do.

Length mixes:
  tweet   60-280 characters
  550     450-650 characters (the ReINTEL Facebook posts the issue measured)
  mixed   60 % tweet, 30 % 550, 10 % long (1,000-3,000 characters)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from factbridge.models import Engagement, Post

_WORDS = {
    "vi": (
        "người dân thành phố bộ y tế cảnh báo thông tin sai sự thật về vắc xin gây vô sinh trên mạng xã hội "
        "chính phủ công an điều tra vụ việc giá xăng dầu tăng mạnh từ ngày mai lũ lụt miền trung bão số "
        "học sinh trường đại học bệnh viện bác sĩ cho biết không có căn cứ khoa học đề nghị mọi người chia sẻ "
        "ngay lập tức kẻ gian lừa đảo chuyển tiền tài khoản ngân hàng điện thoại tin nhắn cấp bách"
    ).split(),
    "km": (
        "ក្រសួង សុខាភិបាល វ៉ាក់សាំង ព័ត៌មាន ក្លែងក្លាយ ទឹកជំនន់ ប្រជាជន រដ្ឋាភិបាល ភ្នំពេញ ខេត្ត "
        "មន្ទីរពេទ្យ គ្រូពេទ្យ សិស្ស សាលារៀន តម្លៃ ប្រេងសាំង ឡើងថ្លៃ ប៉ូលិស ស៊ើបអង្កេត បណ្តាញសង្គម"
    ).split(),
    "fr": (
        "le gouvernement annonce que la vidéo montre une fausse information sur le vaccin les habitants "
        "de la ville ont reçu un message urgent la police enquête sur cette affaire selon le ministère "
        "de la santé il ne faut pas partager ce contenu qui circule depuis hier sur les réseaux sociaux"
    ).split(),
    "en": (
        "the government says this video shows a false claim about the vaccine people in the city received "
        "an urgent message police are investigating the case according to the health ministry do not share "
        "this post which has been circulating since yesterday on social media breaking news prices flood"
    ).split(),
}
_LANGS = ("vi", "km", "fr", "en")
_LANG_SHARE = (0.5, 0.2, 0.1, 0.2)
LENGTHS = {"tweet": (60, 280), "550": (450, 650), "long": (1000, 3000)}
MIXES = ("tweet", "550", "mixed")


def _text(rng: np.random.Generator, lang: str, chars: int) -> str:
    words = _WORDS[lang]
    sep = "" if lang == "km" else " "
    parts: list[str] = []
    size = 0
    while size < chars:
        roll = rng.random()
        if roll < 0.03:
            word = f"https://example.{rng.choice(['com', 'vn', 'net'])}/{int(rng.integers(1_000_000))}"
        elif roll < 0.06:
            word = f"#{rng.choice(words)}"
        elif roll < 0.10:
            word = str(int(rng.integers(1, 100_000)))
        else:
            word = str(rng.choice(words))
        if lang == "km" and rng.random() < 0.15:
            word += " "  # Khmer puts spaces between phrases, not words
        parts.append(word)
        size += len(word) + len(sep)
        if rng.random() < 0.08:
            parts[-1] += "."
    return sep.join(parts)[:chars].strip()


def _length(rng: np.random.Generator, mix: str) -> int:
    if mix == "mixed":
        roll = rng.random()
        mix = "tweet" if roll < 0.6 else "550" if roll < 0.9 else "long"
    lo, hi = LENGTHS[mix]
    return int(rng.integers(lo, hi + 1))


def generated_posts(n: int, mix: str = "mixed", duplicates: float = 0.0, seed: int = 5) -> list[Post]:
    """`n` raw posts (not yet normalised) of the length mix; `duplicates` of them repeat an earlier one."""
    if mix not in MIXES:
        raise ValueError(f"length mix must be one of {', '.join(MIXES)}, got {mix!r}")
    rng = np.random.default_rng(seed)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    posts: list[Post] = []
    for i in range(n):
        if posts and rng.random() < duplicates:
            original = posts[int(rng.integers(len(posts)))]
            text = original.text
            if rng.random() < 0.5:  # an edited copy: a changed tail
                text = text[: max(20, len(text) - 12)] + f" {int(rng.integers(100))}!!"
            lang = original.language or "und"
        else:
            lang = str(rng.choice(_LANGS, p=_LANG_SHARE))
            text = _text(rng, lang, _length(rng, mix))
        posts.append(
            Post(
                id=f"gen-{i}", platform="bench", author=f"acct-{int(rng.integers(max(1, n // 4)))}",
                created_at=start + timedelta(seconds=i * 2), text=text, language=lang,
                engagement=Engagement(likes=int(rng.integers(0, 500)), shares=int(rng.integers(0, 100))),
            )
        )
    return posts
