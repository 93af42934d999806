"""SQLite FTS5 engine: an external-content FTS5 table over search_documents (migration 0004).

A query is built only from index words (search/terms.py), each phrase quoted, so FTS5 syntax
typed by a user (quotes, `*`, NEAR, `-`, `:`, parentheses) is never interpreted. The permission
and kind filters are column filters of the same MATCH, so FTS5 intersects posting lists and
never reads a row the user may not see.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from cryovault.search.terms import PREFIX_MIN_LENGTH

COLUMNS = {"name": "name_terms", "metadata": "metadata_terms", "notes": "notes_terms"}
# bm25 weights of the columns (name, metadata, notes, kind, principals): a word in the name
# counts most, then metadata, then notes; the filter columns do not rank.
RANK = "bm25(search_fts, 10.0, 4.0, 1.0, 0.0, 0.0)"


# The triggers that keep search_fts in step with search_documents (as in migration 0004); a
# full reindex sets them aside and rebuilds the index in one pass (search/index.py).
_COLUMNS = "name_terms, metadata_terms, notes_terms, kind_terms, principal_terms"
_NEW = "new.name_terms, new.metadata_terms, new.notes_terms, new.kind_terms, new.principal_terms"
_OLD = "old.name_terms, old.metadata_terms, old.notes_terms, old.kind_terms, old.principal_terms"
DROP_TRIGGERS = [f"DROP TRIGGER IF EXISTS search_documents_{t}" for t in ("ai", "ad", "au")]
CREATE_TRIGGERS = [
    f"""CREATE TRIGGER search_documents_ai AFTER INSERT ON search_documents BEGIN
        INSERT INTO search_fts(rowid, {_COLUMNS}) VALUES (new.id, {_NEW});
    END""",
    f"""CREATE TRIGGER search_documents_ad AFTER DELETE ON search_documents BEGIN
        INSERT INTO search_fts(search_fts, rowid, {_COLUMNS}) VALUES ('delete', old.id, {_OLD});
    END""",
    f"""CREATE TRIGGER search_documents_au AFTER UPDATE OF {_COLUMNS} ON search_documents BEGIN
        INSERT INTO search_fts(search_fts, rowid, {_COLUMNS}) VALUES ('delete', old.id, {_OLD});
        INSERT INTO search_fts(rowid, {_COLUMNS}) VALUES (new.id, {_NEW});
    END""",
]


def _any(words: list[str]) -> str:
    return "(" + " OR ".join(f'"{w}"' for w in words) + ")"


MAX_EXPANSION = 20
_VOCABULARY = ("CREATE VIRTUAL TABLE IF NOT EXISTS temp.search_fts_vocab "
               "USING fts5vocab(main, search_fts, 'row')")


def expansions(db: Session, phrases: list[list[str]]) -> list[list[str] | None]:
    """The index's words that each phrase's last word starts with (at most MAX_EXPANSION;
    None: more, or a word too short to be a prefix).

    FTS5 answers a prefix query by first merging the posting lists of every word with that
    prefix in memory, a cost that grows with the whole index, not with the matches a user may
    see; an OR of the few words the prefix stands for is streamed like any word. The words come
    from FTS5's vocabulary (an fts5vocab table in the connection's temp schema: nothing is
    stored)."""
    db.execute(text(_VOCABULARY))
    result: list[list[str] | None] = []
    for phrase in phrases:
        word = phrase[-1]
        if len(word) < PREFIX_MIN_LENGTH:
            result.append(None)
            continue
        end = word[:-1] + chr(ord(word[-1]) + 1)
        terms = list(db.scalars(text(
            "SELECT term FROM temp.search_fts_vocab WHERE term >= :w AND term < :end "
            "LIMIT :n"), {"w": word, "end": end, "n": MAX_EXPANSION + 1}))
        result.append(terms if len(terms) <= MAX_EXPANSION else None)
    return result


def _phrase(words: list[str]) -> str:
    return '"' + " ".join(words) + '"'


def match_expression(phrases: list[list[str]], fields: tuple[str, ...],
                     principal_words: list[str], kind_words: list[str] | None,
                     expanded: list[list[str] | None] | None = None) -> str:
    parts = []
    for index, phrase in enumerate(phrases):
        terms = expanded[index] if expanded is not None else None
        if terms:  # the prefix stands for these words
            parts.append("(" + " OR ".join(_phrase(phrase[:-1] + [t]) for t in terms) + ")")
        elif terms is not None:  # no word starts with it: the word itself (matches nothing)
            parts.append(_phrase(phrase))
        elif len(phrase[-1]) >= PREFIX_MIN_LENGTH:
            parts.append(_phrase(phrase) + " *")
        else:
            parts.append(_phrase(phrase))
    columns = " ".join(COLUMNS[f] for f in fields)
    expression = "{" + columns + "} : (" + " AND ".join(parts) + ")"
    expression += " AND principal_terms : " + _any(principal_words)
    if kind_words:
        expression += " AND kind_terms : " + _any(kind_words)
    return expression


def count(db: Session, match: str, cap: int) -> int:
    """Matches, counted up to `cap` + 1 (FTS5 stops reading posting lists there)."""
    return db.execute(text("SELECT count(*) FROM (SELECT rowid FROM search_fts "
                           "WHERE search_fts MATCH :m LIMIT :cap)"),
                      {"m": match, "cap": cap + 1}).scalar_one()


def page(db: Session, match: str, limit: int, offset: int, ranked: bool) -> list[int]:
    """Document ids (FTS rowids): best first when `ranked`, else newest first."""
    order = f"{RANK}, rowid" if ranked else "rowid DESC"
    rows = db.execute(text(
        f"SELECT rowid FROM search_fts WHERE search_fts MATCH :m ORDER BY {order} "
        "LIMIT :limit OFFSET :offset"), {"m": match, "limit": limit, "offset": offset})
    return [row[0] for row in rows]
