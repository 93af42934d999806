"""Search over everything the user may see (SPEC PLT-2, AC-5): one interface, two engines.

The permission filter is part of the one SQL query that finds and counts matches: a document
matches only when it carries the word of one of the user's principals (the user, Everybody),
which the index writes from the grants of the element's permission set (db/search.py,
search/index.py): the same rule as access/visibility.py's level check. No result and no count
ever includes an element the user cannot read. Bare cards (AC-4) are not searched: their
content is not the user's to see.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.visibility import level_expr
from cryovault.db.elements import Element, ElementAncestor
from cryovault.db.metadata import MetadataEntry
from cryovault.db.notes import Note
from cryovault.db.search import SearchDocument
from cryovault.db.users import User
from cryovault.errors import Invalid
from cryovault.metadata.quantities import unit_symbol
from cryovault.search import fts5, index, postgres
from cryovault.search.terms import PREFIX_MIN_LENGTH, query_phrases, words
from cryovault.workspace.rules import KINDS
from cryovault.workspace.views import ElementView, PathEntry

FIELDS = ("name", "metadata", "notes")
MAX_QUERY = 500
MAX_LIMIT = 100
MAX_OFFSET = 10_000
SNIPPET_CONTEXT = 60
# Up to this many matches the user may see, results come best first (bm25 / ts_rank, names
# above metadata above notes); beyond, newest first, which the engines answer without
# ranking every match (the user narrows a search that broad anyway).
RANKED_MAX = 2000
# Matches are counted exactly up to this many; beyond, `total` is this number and
# `total_exact` is false ("10,000+ results"), as search engines do: counting 90,000 matches
# costs ten times more than finding the page, and no one pages that far (MAX_OFFSET).
COUNT_MAX = 10_000


@dataclass(frozen=True)
class SearchHit:
    view: ElementView
    path: list[PathEntry]
    matched_in: str | None  # "name" | "metadata" | "notes"
    snippet: str


@dataclass(frozen=True)
class SearchPage:
    items: list[SearchHit]
    total: int  # exact up to COUNT_MAX, then COUNT_MAX
    words: list[str]  # the index words looked for (for highlighting)
    total_exact: bool = True


def parse_fields(value: str | None) -> tuple[str, ...]:
    if value is None or not value.strip():
        return FIELDS
    fields = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    unknown = [f for f in fields if f not in FIELDS]
    if unknown or not fields:
        raise Invalid(f"'in' takes a comma-separated list of {', '.join(FIELDS)}; "
                      f"not {', '.join(unknown) or 'nothing'}")
    return tuple(f for f in FIELDS if f in fields)


def parse_kinds(value: str | None) -> tuple[str, ...] | None:
    if value is None or not value.strip():
        return None
    kinds = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise Invalid(f"'kinds' takes a comma-separated list of {', '.join(KINDS)}; "
                      f"not {', '.join(unknown)}")
    return kinds


def search(db: Session, actor: Actor, query: str, *, fields: tuple[str, ...] = FIELDS,
           kinds: tuple[str, ...] | None = None, limit: int = 20,
           offset: int = 0) -> SearchPage:
    if len(query) > MAX_QUERY:
        raise Invalid(f"a search must not be longer than {MAX_QUERY} characters")
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be between 1 and {MAX_LIMIT}")
    if not 0 <= offset <= MAX_OFFSET:
        raise Invalid(f"offset must be between 0 and {MAX_OFFSET}; narrow the search instead")
    if not fields or any(f not in FIELDS for f in fields):
        raise Invalid(f"search in one or more of {', '.join(FIELDS)}")
    phrases = query_phrases(query)
    if not phrases:
        raise Invalid("type at least one letter or digit to search for")

    if actor.is_workflow_admin:
        who = [index.ALIVE]  # everything not being deleted
    else:
        who = [index.principal_word(actor.user_id), index.EVERYBODY]
    kind_words = [index.kind_word(k) for k in kinds] if kinds else None
    dialect = db.get_bind().dialect.name
    if dialect == "sqlite":
        engine = fts5
        query_text = fts5.match_expression(phrases, fields, who, kind_words,
                                           fts5.expansions(db, phrases))
    elif dialect == "postgresql":
        engine = postgres
        query_text = postgres.tsquery_text(phrases, fields, who, kind_words)
    else:  # pragma: no cover - the two supported databases
        raise Invalid(f"search is not available on {dialect}")
    # The permission filter is part of the full-text condition itself (db/search.py).
    counted = engine.count(db, query_text, COUNT_MAX)
    total, exact = min(counted, COUNT_MAX), counted <= COUNT_MAX
    ids: list[uuid.UUID] = []
    if total > offset:
        # Relevance ranking reads every match; beyond RANKED_MAX matches, newest first.
        doc_ids = engine.page(db, query_text, limit, offset, ranked=total <= RANKED_MAX)
        by_doc = dict(db.execute(select(SearchDocument.id, SearchDocument.element_id)
                                 .where(SearchDocument.id.in_(doc_ids))).all())
        ids = [by_doc[d] for d in doc_ids if d in by_doc]
    flat = [word for phrase in phrases for word in phrase]
    return SearchPage(_hits(db, actor, ids, phrases, fields), total, flat, exact)


def _hits(db: Session, actor: Actor, ids: list[uuid.UUID], phrases: list[list[str]],
          fields: tuple[str, ...]) -> list[SearchHit]:
    if not ids:
        return []
    rows = db.execute(
        select(Element, level_expr(actor).label("level"), User.username)
        .outerjoin(User, User.id == Element.creator_id)
        .where(Element.id.in_(ids))
    ).all()
    views = {el.id: ElementView(el, level, creator) for el, level, creator in rows
             if level is not None}
    paths: dict[uuid.UUID, list[PathEntry]] = {i: [] for i in ids}
    for element_id, ancestor_id, kind, name in db.execute(
        select(ElementAncestor.element_id, Element.id, Element.kind, Element.name)
        .join(Element, Element.id == ElementAncestor.ancestor_id)
        .where(ElementAncestor.element_id.in_(ids))
        .order_by(ElementAncestor.element_id, ElementAncestor.depth.desc())
    ):
        paths[element_id].append(PathEntry(ancestor_id, kind, name))
    sources = _sources(db, ids, fields)
    hits = []
    for element_id in ids:  # in rank order
        view = views.get(element_id)
        if view is None:  # deleted between the two statements
            continue
        matched_in, snippet = _snippet(view.element, sources.get(element_id, {}), phrases,
                                       fields)
        hits.append(SearchHit(view, paths[element_id], matched_in, snippet))
    return hits


def _sources(db: Session, ids: list[uuid.UUID],
             fields: tuple[str, ...]) -> dict[uuid.UUID, dict[str, list[str]]]:
    result: dict[uuid.UUID, dict[str, list[str]]] = {}
    if "metadata" in fields:
        for element_id, name, value, unit in db.execute(
            select(MetadataEntry.element_id, MetadataEntry.name, MetadataEntry.text_value,
                   MetadataEntry.unit).where(MetadataEntry.element_id.in_(ids))
            .order_by(MetadataEntry.name_key)
        ):
            line = f"{name}: {value}" + (f" {unit_symbol(unit)}" if unit else "")
            result.setdefault(element_id, {}).setdefault("metadata", []).append(line)
    if "notes" in fields:
        for element_id, body in db.execute(
            select(Note.element_id, Note.body).where(Note.element_id.in_(ids))
            .order_by(Note.created_at)
        ):
            result.setdefault(element_id, {}).setdefault("notes", []).append(body)
    return result


_WORD = re.compile(r"[^\W_]+")


def _word_matches(word: str, wanted: str, prefix: bool) -> bool:
    return word.startswith(wanted) if prefix else word == wanted


def _find(text: str, phrases: list[list[str]]) -> tuple[int, int] | None:
    """Where in `text` the first word of a query phrase occurs (character span)."""
    for match in _WORD.finditer(text):
        normal = words(match.group())
        if not normal:
            continue
        for phrase in phrases:
            first = phrase[0]
            prefix = len(phrase) == 1 and len(first) >= PREFIX_MIN_LENGTH
            if _word_matches(normal[0], first, prefix):
                return match.start(), match.end()
    return None


def _excerpt(text: str, span: tuple[int, int]) -> str:
    start = max(0, span[0] - SNIPPET_CONTEXT)
    end = min(len(text), span[1] + SNIPPET_CONTEXT)
    excerpt = " ".join(text[start:end].split())
    return ("…" if start > 0 else "") + excerpt + ("…" if end < len(text) else "")


def _snippet(element: Element, sources: dict[str, list[str]], phrases: list[list[str]],
             fields: tuple[str, ...]) -> tuple[str | None, str]:
    candidates: list[tuple[str, str]] = []
    for f in fields:
        if f == "name":
            candidates.append(("name", element.name))
        elif f == "metadata":
            if element.description:
                candidates.append(("metadata", f"Description: {element.description}"))
            candidates += [("metadata", line) for line in sources.get("metadata", [])]
        else:
            candidates += [("notes", body) for body in sources.get("notes", [])]
    for field, text_value in candidates:
        span = _find(text_value, phrases)
        if span is not None:
            return field, _excerpt(text_value, span)
    return None, ""
