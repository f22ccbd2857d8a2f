"""Digits and transliterated names cross languages in the form the library uses."""

from __future__ import annotations

from factbridge.models import Post
from factbridge.pipeline.matching import _numbers
from factbridge.pipeline.prepare import embedding_text, prepare_post
from factbridge.text.crosslingual import ascii_digits, latin_names


def test_digits_of_every_script_are_ascii() -> None:
    assert ascii_digits("ឆ្នាំ ២០១៩ មាន ៥០០ នាក់") == "ឆ្នាំ 2019 មាន 500 នាក់"
    assert ascii_digits("plain 42") == "plain 42"
    assert _numbers("ស្លាប់ ១២៣ នាក់ ក្នុងឆ្នាំ ២០២០") == _numbers("123 dead in 2020")


def test_ascii_digits_is_the_per_character_rule_for_every_code_point() -> None:
    """The translation table gives what writing each non-ASCII decimal digit's value did, for
    every code point (and leaves every other character as it is)."""
    import sys
    import unicodedata

    chars = "".join(chr(cp) for cp in range(sys.maxunicode + 1) if not 0xD800 <= cp < 0xE000)
    expected = "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() and not ch.isascii() else ch for ch in chars)
    assert ascii_digits(chars) == expected
    assert ascii_digits("năm ២០១៩ và ٢٠٢٠ and １２") == "năm 2019 và 2020 and 12"


def test_khmer_transliterations_are_named_in_latin_script() -> None:
    assert latin_names("ត្រាំប្រកាសថា នឹងហាម") == ["Trump"]
    assert latin_names("ដូណាល់ ត្រាំ និង អូបាម៉ា នៅរដ្ឋកាលីហ្វ័រញ៉ា") == ["Donald Trump", "Obama", "California"]
    assert latin_names("ម៉ាស៊ីនបោកគក់") == [], "a word that merely contains a short name is not it"


def test_embedding_text_carries_them_for_khmer_posts_only() -> None:
    km = prepare_post(Post(id="k", text="ត្រាំ​បាន​និយាយ​ថា ២០១៩", language="km"))
    assert embedding_text(km).endswith("2019 (Trump)")
    en = prepare_post(Post(id="e", text="Trump said so in 2019", language="en"))
    assert embedding_text(en) == "Trump said so in 2019"
