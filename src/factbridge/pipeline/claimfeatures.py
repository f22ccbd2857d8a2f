"""Cheap, explainable text features of a claim: numbers, dates, quantities,
named-entity-like capitalised words, claim verbs; and the markers of what is
clearly not a claim (greetings, opinions, jokes).

Lexicons exist for en, vi, km, fr, ar, bg, nl, es, tr. A post in another
language (or with no language) is read with all of them: a missed verb costs
less than a post that cannot be scored at all. Matching is on the
diacritic-preserving lower-cased text, with word boundaries where the script
has spaces; Khmer has none, so its entries match as substrings.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

FEATURES_VERSION = "claimfeatures-1"

CLAIM_VERBS: dict[str, tuple[str, ...]] = {
    "en": ("said", "says", "claim", "claims", "claimed", "report", "reports", "reported", "announced", "announces",
           "confirmed", "confirms", "revealed", "reveals", "shows", "showed", "proves", "proved", "found", "causes",
           "caused", "kills", "killed", "died", "increased", "decreased", "rose", "fell", "doubled", "tripled",
           "according to", "cures", "banned", "bans", "voted", "passed", "cut", "spent", "lost", "created"),
    "vi": ("nói", "cho biết", "tuyên bố", "khẳng định", "công bố", "xác nhận", "báo cáo", "tiết lộ", "cho thấy",
           "chứng minh", "gây ra", "gây", "làm", "tăng", "giảm", "chết", "tử vong", "chữa khỏi", "chữa", "cấm", "theo",
           "phát hiện", "bị"),
    "km": ("និយាយ", "ប្រកាស", "បញ្ជាក់", "រាយការណ៍", "បង្ហាញ", "បង្ក", "ស្លាប់", "កើនឡើង", "ថយចុះ", "យោងតាម",
           "ព្យាបាល", "ហាមឃាត់", "រកឃើញ", "បណ្តាល"),
    "fr": ("a dit", "dit", "affirme", "déclare", "annonce", "confirme", "révèle", "montre", "prouve", "selon",
           "cause", "provoque", "tue", "augmenté", "baissé", "guérit", "interdit", "propagent", "propage", "rend"),
    "ar": ("قال", "قالت", "أعلن", "أعلنت", "أكد", "أكدت", "كشف", "ذكر", "أفاد", "وفقا", "حسب", "تسبب", "وفاة",
           "ارتفاع", "انخفاض", "يعالج", "حظر"),
    "bg": ("каза", "заяви", "обяви", "потвърди", "съобщи", "според", "показва", "доказа", "причинява", "починали",
           "увеличи", "намали", "забрани"),
    "nl": ("zei", "zegt", "beweert", "meldt", "kondigt", "bevestigt", "onthult", "toont", "volgens", "veroorzaakt",
           "gestorven", "overleden", "stijgt", "daalt", "verbiedt"),
    "es": ("dijo", "dice", "afirma", "declaró", "anunció", "confirmó", "reveló", "muestra", "demuestra", "según",
           "causa", "provoca", "murieron", "fallecidos", "aumentó", "disminuyó", "cura", "prohíbe"),
    "tr": ("dedi", "açıkladı", "duyurdu", "doğruladı", "iddia", "gösteriyor", "kanıtladı", "göre", "neden", "öldü",
           "hayatını kaybetti", "arttı", "azaldı", "yasakladı"),
}

GREETINGS: dict[str, tuple[str, ...]] = {
    "en": ("hello", "hi", "hey", "good morning", "good night", "good evening", "happy birthday", "thanks", "thank you",
           "congrats", "congratulations", "merry christmas", "happy new year", "welcome", "have a nice"),
    "vi": ("xin chào", "chào", "chào buổi sáng", "chúc mừng", "cảm ơn", "chúc ngủ ngon", "chúc mọi người", "năm mới"),
    # Khmer writes "hello" with subscript ta or subscript da (សួស្តី / សួស្ដី): both are common.
    "km": ("សួស្តី", "សួស្ដី", "អរគុណ", "រីករាយថ្ងៃកំណើត", "អបអរសាទរ", "សូមស្វាគមន៍", "រាត្រីសួស្តី", "រាត្រីសួស្ដី",
           "អរុណសួស្តី", "អរុណសួស្ដី", "សូមឱ្យមានសំណាងល្អ"),
    "fr": ("bonjour", "bonsoir", "salut", "merci", "joyeux anniversaire", "félicitations", "bonne journée",
           "bonne nuit", "bonne année", "bienvenue", "coucou"),
    "ar": ("مرحبا", "صباح الخير", "مساء الخير", "شكرا", "مبروك", "عيد مبارك", "أهلا"),
    "bg": ("здравейте", "здрасти", "благодаря", "честит", "добро утро", "лека нощ"),
    "nl": ("hallo", "goedemorgen", "goedenavond", "bedankt", "gefeliciteerd", "welkom", "fijne dag"),
    "es": ("hola", "buenos días", "buenas noches", "gracias", "feliz cumpleaños", "felicidades", "bienvenidos"),
    "tr": ("merhaba", "günaydın", "iyi geceler", "teşekkürler", "teşekkür ederim", "tebrikler", "iyi bayramlar"),
}

OPINIONS: dict[str, tuple[str, ...]] = {
    "en": ("i think", "i believe", "in my opinion", "i feel", "i love", "i hate", "imo", "imho", "i wish",
           "i hope", "i like", "so beautiful", "so cute", "amazing", "awesome", "can't wait", "my favourite",
           "my favorite", "best day"),
    "vi": ("tôi nghĩ", "theo tôi", "mình thấy", "tôi thích", "tôi ghét", "mình thích", "đẹp quá", "tuyệt vời",
           "dễ thương", "yêu quá", "mong là", "hy vọng"),
    "km": ("ខ្ញុំគិតថា", "ខ្ញុំចូលចិត្ត", "តាមយោបល់ខ្ញុំ", "ស្អាតណាស់", "ល្អណាស់", "ខ្ញុំស្រលាញ់", "សង្ឃឹមថា"),
    "fr": ("je pense", "à mon avis", "j'adore", "je crois", "je trouve", "j'aime", "je déteste", "trop beau",
           "magnifique", "génial", "j'espère", "vivement"),
    "ar": ("أعتقد", "في رأيي", "أحب", "أكره", "أتمنى", "رائع", "جميل جدا"),
    "bg": ("мисля", "според мен", "обичам", "мразя", "надявам се", "страхотно"),
    "nl": ("ik denk", "ik vind", "volgens mij", "ik hou van", "ik haat", "ik hoop", "prachtig", "geweldig"),
    "es": ("creo que", "en mi opinión", "me encanta", "odio", "espero", "pienso que", "qué bonito", "increíble"),
    "tr": ("bence", "düşünüyorum", "seviyorum", "nefret ediyorum", "umarım", "harika", "çok güzel"),
}

JOKES: dict[str, tuple[str, ...]] = {
    "en": ("lol", "lmao", "rofl", "haha", "hahaha", "jk", "just kidding"),
    "vi": ("hihi", "haha", "kkk", "=))", ":))", "vãi", "hài"),
    "km": ("ហាហា", "ហិហិ", "លេងសើច"),
    "fr": ("mdr", "ptdr", "haha", "lol", "je rigole"),
    "ar": ("ههه", "هههه", "نكتة"),
    "bg": ("хаха", "хахаха", "шега"),
    "nl": ("haha", "lol", "grapje"),
    "es": ("jaja", "jajaja", "jeje", "broma"),
    "tr": ("haha", "ahahah", "şaka"),
}

MONTHS = (
    "january february march april june july august september october november december "
    "jan feb mar apr jun jul aug sep sept oct nov dec "
    "janvier février mars avril mai juin juillet août septembre octobre novembre décembre "
    "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre "
    "januari februari maart mei juni juli augustus oktober "
    "ocak şubat mart nisan mayıs haziran temmuz ağustos eylül ekim kasım aralık "
    "януари февруари март април май юни юли август септември октомври ноември декември "
    "monday tuesday wednesday thursday friday saturday sunday yesterday today tomorrow "
    "hier aujourd'hui demain ayer hoy mañana gisteren vandaag dün bugün вчера днес"
).split()
# Vietnamese, Khmer and Arabic date words: month/day words and the Khmer months.
DATE_WORDS = ("tháng", "hôm qua", "hôm nay", "năm 19", "năm 20", "ngày", "ខែ", "ម្សិលមិញ", "ថ្ងៃនេះ", "មករា",
              "កុម្ភៈ", "មីនា", "មេសា", "ឧសភា", "មិថុនា", "កក្កដា", "សីហា", "កញ្ញា", "តុលា", "វិច្ឆិកា", "ធ្នូ",
              "يناير", "فبراير", "مارس", "أبريل", "مايو", "يونيو", "يوليو", "أغسطس", "سبتمبر", "أكتوبر", "نوفمبر",
              "ديسمبر", "أمس", "اليوم")
QUANTITY_WORDS = ("percent", "per cent", "million", "millions", "billion", "billions", "trillion", "thousand",
                  "hundred", "dozen", "times", "kg", "km", "tons", "dollars", "euros", "pour cent", "milliard",
                  "milliards", "mille", "triệu", "tỷ", "nghìn", "ngàn", "phần trăm", "lần", "đồng", "លាន", "ពាន់",
                  "ភាគរយ", "ដុល្លារ", "រៀល", "مليون", "مليار", "ألف", "بالمئة", "милиона", "милиарда", "хиляди",
                  "процента", "miljoen", "miljard", "procent", "millones", "mil", "por ciento", "milyon", "milyar",
                  "bin", "yüzde")

_DIGITS = re.compile(r"[0-9\u0660-\u0669\u06f0-\u06f9\u17e0-\u17e9]")
_NUMBER = re.compile(r"[0-9\u0660-\u0669\u06f0-\u06f9\u17e0-\u17e9]+(?:[.,][0-9\u17e0-\u17e9]+)*")
_PERCENT = re.compile(r"[%\u066a\u2030]")
_CURRENCY = re.compile(r"[$€£¥₫៛₺]")
_YEAR = re.compile(r"(?<![0-9])(1[89][0-9]{2}|20[0-9]{2})(?![0-9])")
_NUMERIC_DATE = re.compile(r"(?<![0-9])[0-3]?[0-9][/.-][01]?[0-9](?:[/.-][0-9]{2,4})?(?![0-9])")
_WORD = re.compile(r"[^\W\d_][\w'’-]*", re.UNICODE)
_EMOJI_LAUGH = re.compile("[\U0001f602\U0001f923\U0001f606\U0001f605\U0001f61c\U0001f61d\U0001f92a]")
_EMOJI_ANY = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")
_HASHTAG = re.compile(r"(?<!\w)#\w+")
_MENTION = re.compile(r"(?<!\w)@\w+")

FEATURE_NAMES: tuple[str, ...] = (
    "numbers", "percent", "currency", "quantity_words", "years", "dates", "capitalised", "claim_verbs",
    "greeting", "opinion", "joke", "question", "exclamation", "first_person", "hashtags", "mentions",
    "emoji", "length",
)
NOT_CLAIM_MARKERS = ("greeting", "opinion", "joke")
# Evidence that a post may state a checkable fact; day words ("today", "Sunday") are too
# common in chatter to count.
CLAIM_EVIDENCE = ("numbers", "percent", "currency", "quantity_words", "years", "claim_verbs")

_FIRST_PERSON = ("i", "i'm", "my", "me", "tôi", "mình", "je", "j'", "moi", "ខ្ញុំ", "yo", "ik", "ben", "аз", "أنا")
_FIRST_PERSON_SET = frozenset(_FIRST_PERSON)


def _has_spaces_script(term: str) -> bool:
    return not any("\u1780" <= ch <= "\u17ff" for ch in term)


# A lexicon whose terms start with at most this many characters has its word-start test
# after each group's first character (see `_alternation`).
_FEW_FIRST_CHARACTERS = 16


def _alternation(terms: list[str], word_start: bool = False) -> str:
    r"""`(?:t1|t2|...)` (terms longest first) with the terms grouped by their first character:
    `(?:a(?:bc|b)|d(?:ef))`. Only the group of the text's character can match, and inside a
    group the terms keep their order, so the first term that matches (and whose boundary
    holds) is the same as in the flat alternation; the regex engine tries a handful of
    groups at each word start instead of every term.

    `word_start`: each group tests, right after its first character, that no word character
    precedes that one (`a(?<!\w.)(?:bc|b)`: `(?<!\w)` moved past the `a`). The pattern then
    starts with a character, and the engine skips at C speed to where one of the first
    characters is; with few groups that is much faster than testing the word start at
    every position, with many it is slower (`_FEW_FIRST_CHARACTERS`)."""
    groups: dict[str, list[str]] = {}
    for term in terms:
        groups.setdefault(term[0], []).append(term[1:])
    start = r"(?<!\w.)" if word_start else ""
    return "(?:" + "|".join(re.escape(first) + start + "(?:" + "|".join(re.escape(rest) for rest in rests) + ")"
                            for first, rests in groups.items()) + ")"


def _pattern(terms: tuple[str, ...]) -> re.Pattern[str]:
    spaced = sorted({t for t in terms if _has_spaces_script(t)}, key=len, reverse=True)
    khmer = sorted({t for t in terms if not _has_spaces_script(t)}, key=len, reverse=True)
    parts = []
    if spaced and len({t[0] for t in spaced}) <= _FEW_FIRST_CHARACTERS:
        parts.append(_alternation(spaced, word_start=True) + r"(?![\w])")
    elif spaced:
        parts.append(r"(?<![\w])" + _alternation(spaced) + r"(?![\w])")
    if khmer:
        parts.append(_alternation(khmer))
    return re.compile("|".join(parts) or r"(?!x)x", re.UNICODE)


@lru_cache(maxsize=64)
def _lexicon(kind: str, language: str) -> re.Pattern[str]:
    table = {"verbs": CLAIM_VERBS, "greeting": GREETINGS, "opinion": OPINIONS, "joke": JOKES}[kind]
    if language in table:
        terms = table[language] + (table["en"] if language != "en" else ())  # English leaks into every language online
    else:
        terms = tuple(t for words in table.values() for t in words)
    return re.compile(_pattern(terms).pattern, re.UNICODE)


MONTHS_AND_DATE_WORDS = tuple(MONTHS) + DATE_WORDS


@lru_cache(maxsize=1)
def _dates_pattern() -> re.Pattern[str]:
    return _pattern(MONTHS_AND_DATE_WORDS)


@lru_cache(maxsize=1)
def _quantity_pattern() -> re.Pattern[str]:
    return _pattern(QUANTITY_WORDS)


# A word that starts a sentence: at the start of the text or after sentence-ending
# punctuation, with only spaces, quotes and opening brackets between. None of these
# characters can be inside a `_WORD`, so the group is the `_WORD` that starts there.
_SENTENCE_START_WORD = re.compile(r"(?:^|[.!?:…\n])[ \t\"'“‘«(]*([^\W\d_][\w'’-]*)", re.UNICODE)


def _is_acronym(word: str) -> bool:
    return len(word) > 1 and word.isupper()


def _capitalised(text: str, words: list[str] | None = None) -> int:
    """Capitalised words that do not start a sentence, and acronyms: a cheap stand-in for
    named entities. `words`: `_WORD.findall(text)` when the caller has it. Counted as all
    capitalised words less the (non-acronym) ones that start a sentence, so that only the
    few capitalised words take a Python step."""
    capitals = [w for w in (_WORD.findall(text) if words is None else words) if w[0].isupper()]
    if not capitals:
        return 0
    starts = [w for w in _SENTENCE_START_WORD.findall(text) if w[0].isupper() and not _is_acronym(w)]
    return len(capitals) - len(starts)


def _squash(count: float) -> float:
    """Counts to [0, 1): the first occurrence matters most."""
    return 1.0 - math.exp(-count)


def claim_features(text: str, language: str | None = None) -> dict[str, float]:
    """Named features in [0, 1] (counts squashed), in FEATURE_NAMES order."""
    lang = (language or "").lower()
    lower = text.lower()
    words = _WORD.findall(text)
    n_words = max(1, len(words))
    # Guards that skip a pattern's pass where it cannot match (the pass would find nothing).
    digits = _DIGITS.search(text) is not None
    ascii_only = text.isascii()
    numbers = [n for n in _NUMBER.findall(text) if not _YEAR.fullmatch(n)] if digits else []
    stripped = lower.strip()
    values = {
        "numbers": _squash(len(numbers)),
        "percent": _squash(len(_PERCENT.findall(text))),
        "currency": _squash(len(_CURRENCY.findall(text))),
        "quantity_words": _squash(len(_quantity_pattern().findall(lower))),
        "years": _squash(len(_YEAR.findall(text)) if digits else 0),
        "dates": _squash(len(_dates_pattern().findall(lower)) + (len(_NUMERIC_DATE.findall(text)) if digits else 0)),
        "capitalised": min(1.0, _capitalised(text, words) / n_words * 3.0),
        "claim_verbs": _squash(len(_lexicon("verbs", lang).findall(lower))),
        "greeting": _squash(len(_lexicon("greeting", lang).findall(lower))),
        "opinion": _squash(len(_lexicon("opinion", lang).findall(lower))),
        "joke": _squash(len(_lexicon("joke", lang).findall(lower)) + (0 if ascii_only else len(_EMOJI_LAUGH.findall(text)))),
        "question": 1.0 if stripped.endswith("?") or stripped.endswith("؟") else _squash(stripped.count("?") * 0.5),
        "exclamation": _squash(text.count("!") * 0.5),
        "first_person": 1.0 if not _FIRST_PERSON_SET.isdisjoint(map(str.lower, words)) or "ខ្ញុំ" in text else 0.0,
        "hashtags": _squash(len(_HASHTAG.findall(text)) if "#" in text else 0),
        "mentions": _squash(len(_MENTION.findall(text)) if "@" in text else 0),
        "emoji": _squash(0 if ascii_only else len(_EMOJI_ANY.findall(text))),
        "length": min(1.0, math.log1p(len(text)) / math.log1p(600)),
    }
    return values


def feature_vector(text: str, language: str | None = None) -> list[float]:
    values = claim_features(text, language)
    return [values[name] for name in FEATURE_NAMES]


def has_digits(text: str) -> bool:
    return bool(_DIGITS.search(text))
