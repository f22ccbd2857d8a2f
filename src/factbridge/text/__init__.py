"""Text handling: Unicode normalisation, language identification, script-aware tokens, URLs."""

from factbridge.text.langid import LanguageGuess, detect_language
from factbridge.text.normalize import fold_diacritics, normalize_text
from factbridge.text.tokenize import tokenize

__all__ = ["LanguageGuess", "detect_language", "fold_diacritics", "normalize_text", "tokenize"]
