"""Words as the search index sees them, the same for both engines.

Text is case-folded, stripped of accents and split on anything that is not a letter or a digit,
then stored as space-separated words: SQLite's unicode61 tokenizer and PostgreSQL's `simple`
configuration then find exactly the same words. Queries go through the same function, so
characters that mean something to an engine (quotes, `*`, `-`, `:`, NEAR …) never reach it as
syntax: a search is always literal.
"""

from __future__ import annotations

import re
import unicodedata

_NOT_WORD = re.compile(r"[\W_]+")
MAX_WORD_LENGTH = 64  # longer "words" (hashes, base64) are cut; PostgreSQL caps lexemes anyway
PREFIX_MIN_LENGTH = 3  # words of at least this length also match longer words they start


def words(text: str) -> list[str]:
    folded = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return [w[:MAX_WORD_LENGTH] for w in _NOT_WORD.split(folded) if w]


def normalise(text: str) -> str:
    return " ".join(words(text))


def query_phrases(query: str, max_phrases: int = 16) -> list[list[str]]:
    """What the user typed as phrases of index words: `"1.5 µm" grid` -> [["1", "5"], ["µm"],
    ["grid"]]. Each whitespace-separated piece is one phrase (its words adjacent)."""
    phrases = []
    for piece in query.split():
        phrase = words(piece)
        if phrase:
            phrases.append(phrase)
    return phrases[:max_phrases]
