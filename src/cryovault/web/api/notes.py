"""Notes and references of elements (SPEC WS-8)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.web.api.content_schemas import (
    NoteIn,
    NoteList,
    NoteOut,
    ReferenceIn,
    ReferenceList,
    ReferenceOut,
)
from cryovault.web.api.schemas import parse_id
from cryovault.web.context import current_actor, get_db
from cryovault.workspace import notes, references

router = APIRouter(tags=["notes and references"])


@router.get("/elements/{element_id}/notes", response_model=NoteList)
def list_notes(element_id: str, actor: Actor = Depends(current_actor),
               db: Session = Depends(get_db, scope="function")):
    return NoteList(items=[NoteOut.of(v) for v in notes.list_notes(db, actor,
                                                                   parse_id(element_id))])


@router.post("/elements/{element_id}/notes", response_model=NoteOut, status_code=201)
def add_note(element_id: str, body: NoteIn, actor: Actor = Depends(current_actor),
             db: Session = Depends(get_db, scope="function")):
    return NoteOut.of(notes.add_note(db, actor, parse_id(element_id), body.body))


@router.patch("/elements/{element_id}/notes/{note_id}", response_model=NoteOut)
def edit_note(element_id: str, note_id: str, body: NoteIn, actor: Actor = Depends(current_actor),
              db: Session = Depends(get_db, scope="function")):
    return NoteOut.of(notes.update_note(db, actor, parse_id(element_id),
                                        parse_id(note_id, "note"), body.body))


@router.delete("/elements/{element_id}/notes/{note_id}", status_code=204)
def delete_note(element_id: str, note_id: str, actor: Actor = Depends(current_actor),
                db: Session = Depends(get_db, scope="function")):
    notes.delete_note(db, actor, parse_id(element_id), parse_id(note_id, "note"))
    return Response(status_code=204)


@router.get("/elements/{element_id}/references", response_model=ReferenceList)
def list_references(element_id: str, actor: Actor = Depends(current_actor),
                    db: Session = Depends(get_db, scope="function")):
    views = references.list_references(db, actor, parse_id(element_id))
    return ReferenceList(items=[ReferenceOut.of(v) for v in views])


@router.post("/elements/{element_id}/references", response_model=ReferenceOut, status_code=201)
def add_reference(element_id: str, body: ReferenceIn, actor: Actor = Depends(current_actor),
                  db: Session = Depends(get_db, scope="function")):
    view = references.add_reference(db, actor, parse_id(element_id), target_id=body.target_id,
                                    url=body.url, label=body.label)
    return ReferenceOut.of(view)


@router.delete("/elements/{element_id}/references/{reference_id}", status_code=204)
def delete_reference(element_id: str, reference_id: str, actor: Actor = Depends(current_actor),
                     db: Session = Depends(get_db, scope="function")):
    references.delete_reference(db, actor, parse_id(element_id),
                                parse_id(reference_id, "reference"))
    return Response(status_code=204)
