"""Verdict names in each language a desk publishes in.

Cases store the rating under its scale name (the `rating_scale` setting, in
English: what ClaimReview consumers and `rating_value` key on). Pages show it,
and a published ClaimReview names it (`reviewRating.alternateName`), in the
language of the fact-check: "Sai" for a Vietnamese verdict, "មិនពិត" for a
Khmer one, "Faux" for a French one. A name without a translation is shown as
it is on the scale.
"""

from __future__ import annotations

RATING_LABELS: dict[str, dict[str, str]] = {
    "true": {"en": "True", "vi": "Đúng", "km": "ពិត", "fr": "Vrai"},
    "mostly true": {"en": "Mostly true", "vi": "Phần lớn đúng", "km": "ភាគច្រើនពិត", "fr": "Plutôt vrai"},
    "mixture": {"en": "Mixture", "vi": "Đúng một phần", "km": "ពិតខ្លះមិនពិតខ្លះ", "fr": "Mitigé"},
    "mostly false": {"en": "Mostly false", "vi": "Phần lớn sai", "km": "ភាគច្រើនមិនពិត", "fr": "Plutôt faux"},
    "false": {"en": "False", "vi": "Sai", "km": "មិនពិត", "fr": "Faux"},
    "misleading": {"en": "Misleading", "vi": "Gây hiểu lầm", "km": "បំភាន់", "fr": "Trompeur"},
    "unproven": {"en": "Unproven", "vi": "Chưa được chứng minh", "km": "មិនទាន់មានភស្តុតាង", "fr": "Non prouvé"},
    "satire": {"en": "Satire", "vi": "Châm biếm", "km": "ការសើចចំអក", "fr": "Satire"},
    "scam": {"en": "Scam", "vi": "Lừa đảo", "km": "ការបោកប្រាស់", "fr": "Arnaque"},
}


def rating_label(rating: str, language: str | None) -> str:
    """The rating's name in `language` (its scale name when there is no translation)."""
    names = RATING_LABELS.get(rating.strip().lower())
    if not names or not language:
        return rating
    return names.get(language.split("-")[0].lower(), rating)
