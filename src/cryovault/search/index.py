"""Keeping the search index current (SPEC PLT-2).

Every write that changes what an element is found by calls one of these in the writer's
transaction, so the index never lags behind the data it describes:

- `add_element(db, element)` when an element is created (workspace/elements.py does it for
  every kind, files included);
- `reindex_element(db, element_id)` after its name, description, metadata or notes changed.
  Code that inserts elements without workspace/elements.py (bulk ingest, imports) calls it too.

Permission changes need no call: triggers on `elements` copy `acl_id` and `deleting` into the
index row (migration 0004). `reindex_all` rebuilds everything from the database (the reindex job).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.orm import Session

from cryovault.db.elements import Element
from cryovault.db.metadata import MetadataEntry
from cryovault.db.notes import Note
from cryovault.db.search import SearchDocument
from cryovault.metadata.quantities import unit_symbol
from cryovault.search.terms import normalise

BATCH = 5000


@dataclass(frozen=True)
class DocumentText:
    name_terms: str
    metadata_terms: str
    notes_terms: str


def metadata_line(name: str, text_value: str, unit: str | None, quantity: str | None) -> str:
    """How one entry reads in the index: its name, value, unit (symbol and name), quantity."""
    parts = [name, text_value]
    if unit:
        parts += [unit_symbol(unit), unit]
    if quantity:
        parts.append(quantity)
    return " ".join(parts)


def _texts(db: Session, elements: list[tuple[uuid.UUID, str, str]]) -> dict[uuid.UUID,
                                                                           DocumentText]:
    ids = [element_id for element_id, _, _ in elements]
    metadata: dict[uuid.UUID, list[str]] = defaultdict(list)
    notes: dict[uuid.UUID, list[str]] = defaultdict(list)
    if ids:
        for element_id, name, value, unit, quantity in db.execute(
            select(MetadataEntry.element_id, MetadataEntry.name, MetadataEntry.text_value,
                   MetadataEntry.unit, MetadataEntry.quantity)
            .where(MetadataEntry.element_id.in_(ids))
        ):
            metadata[element_id].append(metadata_line(name, value, unit, quantity))
        for element_id, body in db.execute(
            select(Note.element_id, Note.body).where(Note.element_id.in_(ids))
        ):
            notes[element_id].append(body)
    return {
        element_id: DocumentText(
            normalise(name),
            normalise(" ".join([description, *metadata[element_id]])),
            normalise(" ".join(notes[element_id])),
        )
        for element_id, name, description in elements
    }


def add_element(db: Session, element: Element) -> None:
    """Index a new element (it has no metadata or notes yet)."""
    db.execute(insert(SearchDocument).values(
        element_id=element.id, acl_id=element.acl_id, kind=element.kind,
        deleting=bool(element.deleting), name_terms=normalise(element.name),
        metadata_terms=normalise(element.description or ""), notes_terms="",
    ))


def reindex_element(db: Session, element_id: uuid.UUID) -> None:
    """Bring one element's index row up to date with the database."""
    row = db.execute(
        select(Element.id, Element.name, Element.description, Element.acl_id, Element.kind,
               Element.deleting).where(Element.id == element_id)
    ).first()
    if row is None:
        db.execute(delete(SearchDocument).where(SearchDocument.element_id == element_id))
        return
    doc = _texts(db, [(row.id, row.name, row.description or "")])[row.id]
    values = {"acl_id": row.acl_id, "kind": row.kind, "deleting": bool(row.deleting),
              "name_terms": doc.name_terms, "metadata_terms": doc.metadata_terms,
              "notes_terms": doc.notes_terms}
    updated = db.execute(
        update(SearchDocument).where(SearchDocument.element_id == element_id).values(**values)
        .execution_options(synchronize_session=False)
    )
    if updated.rowcount == 0:
        db.execute(insert(SearchDocument).values(element_id=element_id, **values))


def _batches(db: Session, size: int) -> Iterable[list]:
    last: uuid.UUID | None = None
    while True:
        stmt = select(Element.id, Element.name, Element.description, Element.acl_id,
                      Element.kind, Element.deleting).order_by(Element.id).limit(size)
        if last is not None:
            stmt = stmt.where(Element.id > last)
        rows = db.execute(stmt).all()
        if not rows:
            return
        yield rows
        last = rows[-1].id


def reindex_all(db: Session, progress: Callable[[int, int], None] | None = None,
                batch: int = BATCH) -> int:
    """Rebuild the whole index from the database, in batches committed one by one so that
    writers are never held up for long; writes made meanwhile index themselves as usual.
    Returns the number of elements indexed."""
    total = db.scalar(select(func.count()).select_from(Element)) or 0
    done = 0
    for rows in _batches(db, batch):
        texts = _texts(db, [(r.id, r.name, r.description or "") for r in rows])
        ids = [r.id for r in rows]
        db.execute(delete(SearchDocument).where(SearchDocument.element_id.in_(ids)))
        db.execute(insert(SearchDocument), [
            {"element_id": r.id, "acl_id": r.acl_id, "kind": r.kind,
             "deleting": bool(r.deleting), "name_terms": texts[r.id].name_terms,
             "metadata_terms": texts[r.id].metadata_terms,
             "notes_terms": texts[r.id].notes_terms}
            for r in rows
        ])
        db.commit()
        done += len(rows)
        if progress is not None:
            progress(done, total)
    engine_rebuild(db)
    db.commit()
    return done


def engine_rebuild(db: Session) -> None:
    """Let the engine rebuild its own structures from the documents."""
    dialect = db.get_bind().dialect.name
    if dialect == "sqlite":
        db.execute(text("INSERT INTO search_fts(search_fts) VALUES ('rebuild')"))
    elif dialect == "postgresql":
        db.execute(text("REINDEX INDEX ix_search_documents_tsv"))
