"""PostgreSQL engine: the generated tsvector column `search_documents.tsv` (names weight A,
metadata B, notes C, kind and principals D) with a GIN index (migration 0004).

The tsquery is assembled from index words only (search/terms.py), each quoted as a lexeme, so
tsquery operators typed by a user (`&`, `|`, `!`, `<->`, `:*`, quotes) are never interpreted.
The permission and kind filters are D-weighted lexemes of the same tsquery, answered by the GIN
index together with the words.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from cryovault.search.terms import PREFIX_MIN_LENGTH

WEIGHTS = {"name": "A", "metadata": "B", "notes": "C"}


def _any(words: list[str]) -> str:
    return "(" + " | ".join(f"'{w}':D" for w in words) + ")"


def tsquery_text(phrases: list[list[str]], fields: tuple[str, ...],
                 principal_words: list[str], kind_words: list[str] | None) -> str:
    weights = "".join(sorted(WEIGHTS[f] for f in fields))
    parts = []
    for phrase in phrases:
        lexemes = []
        for index, word in enumerate(phrase):
            prefix = "*" if index == len(phrase) - 1 and len(word) >= PREFIX_MIN_LENGTH else ""
            lexemes.append(f"'{word}':{prefix}{weights}")
        parts.append("(" + " <-> ".join(lexemes) + ")")
    parts.append(_any(principal_words))
    if kind_words:
        parts.append(_any(kind_words))
    return " & ".join(parts)


_QUERY = "to_tsquery('simple'::regconfig, :q)"


def count(db: Session, query: str, cap: int) -> int:
    """Matches, counted up to `cap` + 1."""
    return db.execute(text(f"SELECT count(*) FROM (SELECT 1 FROM search_documents "
                           f"WHERE tsv @@ {_QUERY} LIMIT :cap) AS m"),
                      {"q": query, "cap": cap + 1}).scalar_one()


def page(db: Session, query: str, limit: int, offset: int, ranked: bool) -> list[int]:
    """Document ids: best first when `ranked`, else newest first."""
    order = f"ts_rank(tsv, {_QUERY}) DESC, id" if ranked else "id DESC"
    rows = db.execute(text(
        f"SELECT id FROM search_documents WHERE tsv @@ {_QUERY} "
        f"ORDER BY {order} LIMIT :limit OFFSET :offset"),
        {"q": query, "limit": limit, "offset": offset})
    return [row[0] for row in rows]
