"""Generated social posts for the ingest throughput bench: the length mix of a real feed.

What the bench needs from its posts is what the pipeline's cost depends on:
- as many encoder tokens per character as real posts (550-character Vietnamese
  Facebook posts of ReINTEL: ~160 tokens; tweets: 30-70);
- as few near-identical posts as a real feed has. Among 1,000 real posts, the
  neighbours at cosine >= 0.92 (triage's repeat threshold) per post are 0.25
  (ReINTEL Vietnamese posts) and 2.2 (PHEME tweets, nine breaking-news events);
  word salad from a few dozen words makes nearly every post a "repeat" of
  dozens of others (57 per post for tweets, 328 for 550-character posts with
  this module's first, 60-word vocabularies), and triage then does the work of
  a copy-paste campaign on every post;
- links, hashtags and numbers as posts carry them.

Text per language:
  vi  a walk on the syllable bigrams of the shipped tone model (data/vi_tones.json.gz,
      pruned counts of the ReINTEL posts): real Vietnamese word order and frequencies;
  km  sentences from slots (who, says what claim, where, when), without spaces
      between words, as Khmer is written;
  fr, en  function words by frequency, and content words from a per-post topic
      drawn from a few hundred words.
A share of posts (`duplicates`) repeats an earlier post, exactly or with a small
edit, as shares and copy-paste campaigns do: that, not the vocabulary, is the
knob for repeats. `bench ingest` prints the repeats triage found per post.

Length mixes:
  tweet   60-280 characters
  550     450-650 characters (the ReINTEL Facebook posts the issue measured)
  mixed   60 % tweet, 30 % 550, 10 % long (1,000-3,000 characters)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import numpy as np

from factbridge.models import Engagement, Post

_FUNCTION = {
    "fr": (
        "le la les de des du un une et est sont à au aux en dans pour que qui ne pas sur par avec ce cette ces il elle "
        "ils on nous vous a ont été plus mais ou comme tout tous son sa ses leur leurs se y très aussi depuis selon "
        "après avant entre sans sous encore déjà"
    ).split(),
    "en": (
        "the a an of to in and is are was were on for that this these with at by from it its not be been has have had "
        "will would can could they we you he she their our but or as all more after before about into over than also "
        "just now still only"
    ).split(),
}
_CONTENT = {
    "fr": (
        "gouvernement ministre ministère santé vaccin vaccins vidéo photo image message alerte police enquête affaire "
        "ville habitants village région province frontière pays voisin armée soldats hôpital médecin médecins malades "
        "épidémie virus grippe covid masque école élèves étudiants université examen professeur prix essence riz "
        "marché banque argent compte virement arnaque escroquerie téléphone réseau réseaux sociaux facebook rumeur "
        "fausse vraie information démenti officiel communiqué déclaration président élection vote candidat parti "
        "loi décret impôt taxe salaire retraite travailleurs usine entreprise chômage crise inflation dette inondation "
        "inondations pluie tempête typhon sécheresse séisme incendie forêt barrage fleuve mekong pêcheurs agriculteurs "
        "récolte engrais eau électricité coupure route pont accident camion bus train avion aéroport visa passeport "
        "migrants travailleurs immigration tourisme touristes hôtel temple pagode fête festival concert football match "
        "équipe joueur champion médaille chine thaïlande cambodge vietnam laos france europe amérique japon corée "
        "ambassade accord commerce exportation importation douane contrebande drogue trafic arrestation prison tribunal "
        "juge avocat procès corruption scandale millions milliards pourcent chiffres statistiques sondage étude "
        "chercheurs scientifiques découverte remède miracle plante herbe poison eau lait pain sucre cancer diabète "
        "cœur enfants bébé mères femmes hommes personnes âgées famille mariage mort décès victimes blessés secours "
        "pompiers sauveteurs aide dons collecte solidarité église mosquée religion moines roi reine prince palais"
    ).split(),
    "en": (
        "government minister ministry health vaccine vaccines video photo picture message warning police investigation "
        "case city residents village region province border country neighbour army soldiers hospital doctor doctors "
        "patients outbreak virus flu covid mask school pupils students university exam teacher price fuel petrol rice "
        "market bank money account transfer scam fraud phone network social media facebook rumour fake true "
        "information denial official statement announcement president election vote candidate party law decree tax "
        "taxes salary pension workers factory company unemployment crisis inflation debt flood floods rain storm "
        "typhoon drought earthquake fire forest dam river mekong fishermen farmers harvest fertiliser water "
        "electricity blackout road bridge crash truck bus train plane airport visa passport migrants immigration "
        "tourism tourists hotel temple pagoda festival concert football match team player champion medal china "
        "thailand cambodia vietnam laos france europe america japan korea embassy agreement trade export import "
        "customs smuggling drugs trafficking arrest prison court judge lawyer trial corruption scandal millions "
        "billions percent figures statistics poll study researchers scientists discovery cure miracle plant herb "
        "poison milk bread sugar cancer diabetes heart children baby mothers women men elderly family wedding death "
        "deaths victims injured rescue firefighters rescuers aid donations fundraiser solidarity church mosque "
        "religion monks king queen prince palace"
    ).split(),
}
# Khmer: sentences from these slots (see `_km_text`)
_KM_SUBJECTS = """ក្រសួងសុខាភិបាល រដ្ឋាភិបាល ប៉ូលិសខេត្ត អាជ្ញាធរភូមិ គ្រូពេទ្យម្នាក់ សិស្សជាច្រើននាក់ កសិករនៅភូមិ អ្នកនេសាទ ក្រុមហ៊ុនទូរស័ព្ទ
ធនាគារជាតិ ក្រសួងអប់រំ អ្នកលក់នៅផ្សារ ពលករចំណាកស្រុក ភ្ញៀវទេសចរបរទេស ស្ថានទូតចិន ក្រុមអ្នកស្រាវជ្រាវ តុលាការខេត្ត ព្រះសង្ឃនៅវត្ត
ម្តាយម្នាក់ អ្នកភូមិ មន្ទីរពេទ្យបង្អែក ក្រុមហ៊ុនអគ្គិសនី អ្នកបើកបរឡានក្រុង កីឡាករបាល់ទាត់ អ្នកសារព័ត៌មាន""".split()
_KM_VERBS = """បានប្រកាសថា បានបដិសេធព័ត៌មានថា បានព្រមានថា បានអះអាងថា បានចែករំលែកវីដេអូមួយដែលបង្ហាញថា បានប្រាប់អ្នកសារព័ត៌មានថា
កំពុងស៊ើបអង្កេតករណីដែល បានបញ្ជាក់ថា មិនជឿថា បានសរសេរនៅលើហ្វេសប៊ុកថា""".split()
_KM_CLAIMS = """វ៉ាក់សាំងធ្វើឱ្យស្ត្រីគ្មានកូន តម្លៃប្រេងសាំងនឹងឡើងថ្លៃខ្លាំងចាប់ពីថ្ងៃស្អែក ទឹកជំនន់បានលិចផ្ទះជាងមួយពាន់ខ្នង
មានគេលួចលុយពីគណនីធនាគារតាមសារទូរស័ព្ទ សាលារៀននឹងបិទទ្វាររយៈពេលពីរសប្តាហ៍ ទឹកក្តៅជាមួយក្រូចឆ្មាអាចព្យាបាលមហារីកបាន
រញ្ជួយដីខ្លាំងនឹងកើតឡើងនៅយប់នេះ អង្ករពីប្រទេសជិតខាងមានផ្ទុកថ្នាំពុល អ្នកជំងឺកូវីដថ្មីបីរយនាក់ត្រូវបានរកឃើញ
រដ្ឋាភិបាលនឹងផ្តល់លុយម្នាក់ប្រាំរយដុល្លារ ស្ពានធំមួយបានបាក់ស្រុតកាលពីយប់មិញ ទាហានបានចូលមកក្នុងទឹកដីតាមព្រំដែន
ការប្រឡងបាក់ឌុបត្រូវបានពន្យារពេល ទន្លេមេគង្គកំពុងរីងស្ងួតដោយសារទំនប់ទឹក អគ្គិភ័យបានឆេះផ្សារធំមួយ
ក្រុមហ៊ុនមួយកំពុងជ្រើសរើសកម្មករទៅធ្វើការនៅក្រៅប្រទេសដោយឥតគិតថ្លៃ ថ្នាំបុរាណអាចការពារមេរោគបាន
ព្រះមហាក្សត្របានយាងទៅបរទេស កីឡាករម្នាក់ត្រូវបានចាប់ខ្លួនពីបទជួញដូរគ្រឿងញៀន លុយក្រដាសថ្មីនឹងត្រូវដាក់ឱ្យប្រើ
អគ្គិសនីនឹងដាច់ពេញមួយសប្តាហ៍ ពន្ធលើម៉ូតូនឹងកើនឡើងទ្វេដង ភ្ញៀវទេសចរម្នាក់បានបាត់ខ្លួននៅប្រាសាទ""".split()
_KM_PLACES = "នៅភ្នំពេញ នៅខេត្តសៀមរាប នៅខេត្តបាត់ដំបង នៅខេត្តកំពត នៅខេត្តព្រះសីហនុ នៅខេត្តតាកែវ នៅខេត្តស្វាយរៀង នៅខេត្តកំពង់ចាម នៅព្រំដែន នៅក្រុងប៉ោយប៉ែត".split()
_KM_TIMES = "កាលពីម្សិលមិញ នៅថ្ងៃនេះ កាលពីសប្តាហ៍មុន នៅព្រឹកនេះ កាលពីយប់មិញ នៅខែនេះ".split()
_KM_TAILS = "សូមចែករំលែកបន្ត។ សូមប្រយ័ត្ន។ តើនេះជាការពិតឬទេ? កុំជឿព័ត៌មាននេះ។ សូមជួយផ្សព្វផ្សាយ។ អាណិតប្រជាជនណាស់។".split()
_LANGS = ("vi", "km", "fr", "en")
_LANG_SHARE = (0.5, 0.2, 0.1, 0.2)
LENGTHS = {"tweet": (60, 280), "550": (450, 650), "long": (1000, 3000)}
MIXES = ("tweet", "550", "mixed")
_TOPIC_WORDS = 24  # content words of one post's topic (fr, en)


@dataclass(frozen=True)
class _Bigrams:
    """Vietnamese syllables with their cumulative unigram probabilities, and each one's followers."""

    words: list[str]
    cdf: np.ndarray
    followers: dict[str, tuple[list[str], np.ndarray]]  # followers and their cumulative probabilities


@lru_cache(maxsize=1)
def _vi_bigrams() -> _Bigrams:
    from factbridge.text.vietnamese import default_tone_model

    model = default_tone_model()
    if model is None:  # the package ships it; a stripped install falls back to the fr/en scheme
        return _Bigrams([], np.zeros(0), {})
    words = list(model.unigrams)
    counts = np.asarray([model.unigrams[w] for w in words], dtype=np.float64)
    grouped: dict[str, tuple[list[str], list[float]]] = {}
    for pair, count in model.bigrams.items():
        first, _, second = pair.partition(" ")
        nxt, weights = grouped.setdefault(first, ([], []))
        nxt.append(second)
        weights.append(float(count))
    followers = {w: (nxt, _cdf(np.asarray(c))) for w, (nxt, c) in grouped.items()}
    return _Bigrams(words, _cdf(counts), followers)


def _cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights, dtype=np.float64)
    return cdf / cdf[-1]


def _draw(rng: np.random.Generator, cdf: np.ndarray) -> int:
    """An index drawn with the probabilities whose cumulative sums are `cdf`."""
    return min(int(np.searchsorted(cdf, rng.random(), side="right")), cdf.shape[0] - 1)


def _extra(rng: np.random.Generator, words: list[str]) -> str | None:
    """A link, a hashtag or a number now and then, as posts carry them."""
    roll = rng.random()
    if roll < 0.02:
        return f"https://example.{rng.choice(['com', 'vn', 'net'])}/{int(rng.integers(1_000_000))}"
    if roll < 0.04:
        return f"#{words[int(rng.integers(len(words)))]}"
    if roll < 0.07:
        return str(int(rng.integers(1, 100_000)))
    return None


def _fill(rng: np.random.Generator, chars: int, sep: str, next_word: Callable[[], str], words: list[str]) -> str:
    parts: list[str] = []
    size = 0
    while size < chars:
        word = _extra(rng, words) or next_word()
        parts.append(word)
        size += len(word) + len(sep)
        if rng.random() < 0.07:
            parts[-1] += "."
    return sep.join(parts)[:chars].strip()


def _vi_text(rng: np.random.Generator, chars: int) -> str:
    table = _vi_bigrams()
    state: list[str | None] = [None]

    def next_word() -> str:
        prev = state[0]
        follow = table.followers.get(prev) if prev is not None else None
        if follow is not None and rng.random() < 0.85:
            nxt, cdf = follow
            word = nxt[_draw(rng, cdf)]
        else:  # a new phrase
            word = table.words[_draw(rng, table.cdf)]
        state[0] = word
        return word

    return _fill(rng, chars, " ", next_word, table.words)


def _km_text(rng: np.random.Generator, chars: int) -> str:
    """Sentences: who says what claim, where and when (Khmer word salad, of any vocabulary,
    is near-identical for the encoder: cosine ~0.90 between any two posts)."""

    def pick(options: list[str]) -> str:
        return options[int(rng.integers(len(options)))]

    out = ""
    while len(out) < chars:
        sentence = pick(_KM_SUBJECTS) + pick(_KM_VERBS) + pick(_KM_CLAIMS)
        if rng.random() < 0.6:
            sentence += pick(_KM_PLACES)
        if rng.random() < 0.5:
            sentence += pick(_KM_TIMES)
        sentence += "។"  # no spaces between words: Khmer puts them between phrases
        if rng.random() < 0.3:
            sentence += " " + pick(_KM_TAILS)
        extra = _extra(rng, _KM_CLAIMS)
        if extra and not extra.startswith("#"):
            sentence += " " + extra
        out += sentence + " "
    return out[:chars].strip()


def _latin_text(rng: np.random.Generator, lang: str, chars: int) -> str:
    function, content = _FUNCTION[lang], _CONTENT[lang]
    topic = [content[int(i)] for i in rng.choice(len(content), size=_TOPIC_WORDS, replace=False)]
    zipf = _cdf(1.0 / np.arange(1, len(function) + 1, dtype=np.float64))

    def next_word() -> str:
        if rng.random() < 0.45:
            return function[_draw(rng, zipf)]
        return topic[int(rng.integers(len(topic)))]

    return _fill(rng, chars, " ", next_word, topic)


def _text(rng: np.random.Generator, lang: str, chars: int) -> str:
    if lang == "vi" and _vi_bigrams().words:
        return _vi_text(rng, chars)
    if lang == "km":
        return _km_text(rng, chars)
    return _latin_text(rng, lang if lang in _FUNCTION else "en", chars)


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
