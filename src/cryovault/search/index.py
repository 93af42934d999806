"""Keeping the search index current (SPEC PLT-2).

Every write that changes what an element is found by calls one of these in the writer's
transaction, so the index never lags behind the data it describes:

- `add_element(db, element)` when an element is created (workspace/elements.py does it for
  every kind, files included);
- `reindex_element(db, element_id)` after its name, description, metadata or notes changed.
  Code that inserts elements without workspace/elements.py (bulk ingest, imports) calls it too.

- `refresh_acl(db, acl_id)` after the grants of a permission set changed (access/sharing.py):
  who may find its elements is part of their documents (db/search.py).

An element changing permission set or starting to be deleted needs no call: a trigger on
`elements` updates its document (migration 0004). `reindex_all` rebuilds everything from the
database (the reindex job).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select, text, tuple_, update
from sqlalchemy.orm import Session

from cryovault.db.elements import AclGrant, Element
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


ALIVE = "alive"  # in every document not being deleted
EVERYBODY = "everybody"


def principal_word(user_id: uuid.UUID | None) -> str:
    """The index word of a principal: "u<hex of the user id>", or "everybody"."""
    return EVERYBODY if user_id is None else "u" + user_id.hex


def kind_word(kind: str) -> str:
    return "k" + kind


def principals(db: Session, acl_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """`principal_terms` of live documents using each permission set: who may read them."""
    words: dict[uuid.UUID, list[str]] = {acl_id: [ALIVE] for acl_id in acl_ids}
    if words:
        for acl_id, user_id in db.execute(
            select(AclGrant.acl_id, AclGrant.user_id).where(AclGrant.acl_id.in_(list(words)))
            .order_by(AclGrant.acl_id, AclGrant.user_id)
        ):
            words[acl_id].append(principal_word(user_id))
    return {acl_id: " ".join(w) for acl_id, w in words.items()}


def _principal_terms(db: Session, acl_id: uuid.UUID, deleting: bool) -> str:
    return "" if deleting else principals(db, [acl_id])[acl_id]


def add_element(db: Session, element: Element) -> None:
    """Index a new element (it has no metadata or notes yet)."""
    db.flush()  # its permission set's grants, when it has just been given its own
    db.execute(insert(SearchDocument).values(
        element_id=element.id, acl_id=element.acl_id, kind=element.kind,
        deleting=bool(element.deleting), kind_terms=kind_word(element.kind),
        principal_terms=_principal_terms(db, element.acl_id, bool(element.deleting)),
        name_terms=normalise(element.name),
        metadata_terms=normalise(element.description or ""), notes_terms="",
    ))


def refresh_acl(db: Session, acl_id: uuid.UUID) -> None:
    """Who may find the elements of a permission set, after its grants changed."""
    db.flush()
    db.execute(
        update(SearchDocument)
        .where(SearchDocument.acl_id == acl_id, SearchDocument.deleting.is_(False))
        .values(principal_terms=principals(db, [acl_id])[acl_id])
        .execution_options(synchronize_session=False)
    )


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
              "kind_terms": kind_word(row.kind),
              "principal_terms": _principal_terms(db, row.acl_id, bool(row.deleting)),
              "name_terms": doc.name_terms, "metadata_terms": doc.metadata_terms,
              "notes_terms": doc.notes_terms}
    updated = db.execute(
        update(SearchDocument).where(SearchDocument.element_id == element_id).values(**values)
        .execution_options(synchronize_session=False)
    )
    if updated.rowcount == 0:
        db.execute(insert(SearchDocument).values(element_id=element_id, **values))


def _batches(db: Session, size: int) -> Iterable[list]:
    """All elements in creation order, so that document ids grow with creation (searches too
    broad to rank list the newest first by document id)."""
    last: tuple | None = None
    while True:
        stmt = (select(Element.id, Element.name, Element.description, Element.acl_id,
                       Element.kind, Element.deleting, Element.created_at)
                .order_by(Element.created_at, Element.id).limit(size))
        if last is not None:
            stmt = stmt.where(tuple_(Element.created_at, Element.id) > last)
        rows = db.execute(stmt).all()
        if not rows:
            return
        yield rows
        last = (rows[-1].created_at, rows[-1].id)


def _upsert(db: Session, rows: list[dict]) -> None:
    """Insert or update documents by element, keeping each document's id (the FTS rowid)."""
    if db.get_bind().dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as upsert
    else:
        from sqlalchemy.dialects.postgresql import insert as upsert
    stmt = upsert(SearchDocument)
    columns = [k for k in rows[0] if k != "element_id"]
    stmt = stmt.on_conflict_do_update(index_elements=[SearchDocument.element_id],
                                      set_={c: stmt.excluded[c] for c in columns})
    db.execute(stmt, rows)


def reindex_all(db: Session, progress: Callable[[int, int], None] | None = None,
                batch: int = BATCH) -> int:
    """Rebuild the whole index from the database. Returns the number of elements indexed.

    SQLite: one transaction; the FTS triggers are set aside while the documents are rewritten
    and FTS5 rebuilds its index from them in one pass (tens of times faster than row by row),
    then the triggers come back. Readers see the old index until the commit; writers wait.
    PostgreSQL: batches committed one by one (MVCC: searches and writes go on meanwhile; the
    generated tsvector and the GIN index follow each row). Document ids never change, so an
    index entry always describes the document it names."""
    sqlite = db.get_bind().dialect.name == "sqlite"
    total = db.scalar(select(func.count()).select_from(Element)) or 0
    if sqlite:
        from cryovault.search.fts5 import CREATE_TRIGGERS, DROP_TRIGGERS

        for statement in DROP_TRIGGERS:
            db.execute(text(statement))
    done = 0
    for rows in _batches(db, batch):
        texts = _texts(db, [(r.id, r.name, r.description or "") for r in rows])
        who = principals(db, {r.acl_id for r in rows})
        _upsert(db, [
            {"element_id": r.id, "acl_id": r.acl_id, "kind": r.kind,
             "deleting": bool(r.deleting), "kind_terms": kind_word(r.kind),
             "principal_terms": "" if r.deleting else who[r.acl_id],
             "name_terms": texts[r.id].name_terms,
             "metadata_terms": texts[r.id].metadata_terms,
             "notes_terms": texts[r.id].notes_terms}
            for r in rows
        ])
        done += len(rows)
        if progress is not None:
            progress(done, total)
        if not sqlite:
            db.commit()
    engine_rebuild(db)
    if sqlite:
        for statement in CREATE_TRIGGERS:
            db.execute(text(statement))
    db.commit()
    return done


def engine_rebuild(db: Session) -> None:
    """Let the engine rebuild its own structures from the documents."""
    dialect = db.get_bind().dialect.name
    if dialect == "sqlite":
        db.execute(text("INSERT INTO search_fts(search_fts) VALUES ('rebuild')"))
    elif dialect == "postgresql":
        db.execute(text("REINDEX INDEX ix_search_documents_tsv"))
