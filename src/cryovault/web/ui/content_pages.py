"""Portal partials and forms of the data panel: metadata (MD-2 … MD-4), notes and references
(WS-8). Each form answers with the re-rendered section, or a 4xx message for its error slot."""

from __future__ import annotations

import json
import re
import uuid

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from cryovault.access.levels import COLLABORATOR
from cryovault.metadata import quantities
from cryovault.metadata import service as metadata
from cryovault.metadata.values import TYPES
from cryovault.web.api.schemas import parse_id
from cryovault.web.context import Caller, get_db
from cryovault.web.ui.common import page_caller, templates
from cryovault.workspace import notes, references, samples

router = APIRouter(include_in_schema=False)

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_PORTAL_LINK = re.compile(r"^(https?://[^/]+)?/(workspace|samples)/(" + _UUID.pattern + r")/?$")


def quantities_json() -> str:
    """The quantities and their units for the add/edit dialog's unit list (from pint)."""
    data = json.dumps({q.name: [{"name": u.name, "symbol": u.symbol} for u in q.units]
                       for q in quantities.quantities()})
    return data.replace("<", "\\u003c")  # safe inside <script type="application/json">


def _metadata_section(request: Request, db: Session, caller: Caller, element_id: uuid.UUID,
                      status_code: int = 200) -> HTMLResponse:
    listing = metadata.list_metadata(db, caller.actor, element_id)
    return templates.TemplateResponse(request, "partials/metadata.html", {
        "listing": listing, "element_id": element_id,
        "can_edit": listing.level >= COLLABORATOR, "types": TYPES,
        "quantity_names": quantities.quantity_names(), "quantities_json": quantities_json(),
    }, status_code=status_code)


@router.get("/ui/elements/{element_id}/metadata", response_class=HTMLResponse)
def metadata_section(request: Request, element_id: str, caller: Caller = Depends(page_caller),
                     db: Session = Depends(get_db, scope="function")):
    return _metadata_section(request, db, caller, parse_id(element_id))


@router.get("/ui/metadata/names", response_class=HTMLResponse)
def metadata_names(request: Request, name: str = Query("", max_length=255),
                   caller: Caller = Depends(page_caller),
                   db: Session = Depends(get_db, scope="function")):
    """Options of the name picker: names already in use on elements the user can read."""
    names = metadata.known_names(db, caller.actor, name)
    return templates.TemplateResponse(request, "partials/metadata_names.html", {"names": names})


@router.post("/ui/elements/{element_id}/metadata", response_class=HTMLResponse)
def add_metadata(request: Request, element_id: str, name: str = Form(""),
                 value_type: str = Form("string"), value: str = Form(""),
                 quantity: str = Form(""), unit: str = Form(""),
                 caller: Caller = Depends(page_caller),
                 db: Session = Depends(get_db, scope="function")):
    target = parse_id(element_id)
    metadata.add_entry(db, caller.actor, target, name=name, value_type=value_type, value=value,
                       quantity=quantity or None, unit=unit or None)
    return _metadata_section(request, db, caller, target)


@router.post("/ui/elements/{element_id}/metadata/{entry_id}", response_class=HTMLResponse)
def edit_metadata(request: Request, element_id: str, entry_id: str, name: str = Form(""),
                  value_type: str = Form("string"), value: str = Form(""),
                  quantity: str = Form(""), unit: str = Form(""),
                  convert: str = Form(""),
                  caller: Caller = Depends(page_caller),
                  db: Session = Depends(get_db, scope="function")):
    """Save the dialog. With `convert` (the unit was changed, the value left as it was), the
    value is converted to the new unit so the physical value stays the same."""
    target = parse_id(element_id)
    entry_uuid = parse_id(entry_id, "metadata entry")
    if convert:
        metadata.update_entry(db, caller.actor, target, entry_uuid, name=name, unit=unit or None)
    else:
        metadata.update_entry(db, caller.actor, target, entry_uuid, name=name,
                              value_type=value_type, value=value, quantity=quantity or None,
                              unit=unit or None)
    return _metadata_section(request, db, caller, target)


@router.post("/ui/elements/{element_id}/metadata/{entry_id}/delete",
             response_class=HTMLResponse)
def delete_metadata(request: Request, element_id: str, entry_id: str,
                    caller: Caller = Depends(page_caller),
                    db: Session = Depends(get_db, scope="function")):
    target = parse_id(element_id)
    metadata.delete_entry(db, caller.actor, target, parse_id(entry_id, "metadata entry"))
    return _metadata_section(request, db, caller, target)


def _notes_section(request: Request, db: Session, caller: Caller,
                   element_id: uuid.UUID) -> HTMLResponse:
    note_views = notes.list_notes(db, caller.actor, element_id)
    refs = references.list_references(db, caller.actor, element_id)
    can_edit = bool(note_views[0].can_edit) if note_views else _can_edit(db, caller, element_id)
    sample_choices = [] if not can_edit else samples.list_samples(db, caller.actor, limit=200)
    return templates.TemplateResponse(request, "partials/notes.html", {
        "notes": note_views, "references": refs, "element_id": element_id,
        "can_edit": can_edit, "samples": [s for s in sample_choices if s.id != element_id],
    })


def _can_edit(db: Session, caller: Caller, element_id: uuid.UUID) -> bool:
    from cryovault.access.visibility import access_level

    return (access_level(db, caller.actor, element_id) or 0) >= COLLABORATOR


@router.get("/ui/elements/{element_id}/notes", response_class=HTMLResponse)
def notes_section(request: Request, element_id: str, caller: Caller = Depends(page_caller),
                  db: Session = Depends(get_db, scope="function")):
    return _notes_section(request, db, caller, parse_id(element_id))


@router.post("/ui/elements/{element_id}/notes", response_class=HTMLResponse)
def add_note(request: Request, element_id: str, body: str = Form(""),
             caller: Caller = Depends(page_caller),
             db: Session = Depends(get_db, scope="function")):
    target = parse_id(element_id)
    notes.add_note(db, caller.actor, target, body)
    return _notes_section(request, db, caller, target)


@router.post("/ui/elements/{element_id}/notes/{note_id}", response_class=HTMLResponse)
def edit_note(request: Request, element_id: str, note_id: str, body: str = Form(""),
              caller: Caller = Depends(page_caller),
              db: Session = Depends(get_db, scope="function")):
    target = parse_id(element_id)
    notes.update_note(db, caller.actor, target, parse_id(note_id, "note"), body)
    return _notes_section(request, db, caller, target)


@router.post("/ui/elements/{element_id}/notes/{note_id}/delete", response_class=HTMLResponse)
def delete_note(request: Request, element_id: str, note_id: str,
                caller: Caller = Depends(page_caller),
                db: Session = Depends(get_db, scope="function")):
    target = parse_id(element_id)
    notes.delete_note(db, caller.actor, target, parse_id(note_id, "note"))
    return _notes_section(request, db, caller, target)


@router.post("/ui/elements/{element_id}/references", response_class=HTMLResponse)
def add_reference(request: Request, element_id: str, sample_id: str = Form(""),
                  target: str = Form(""), label: str = Form(""),
                  caller: Caller = Depends(page_caller),
                  db: Session = Depends(get_db, scope="function")):
    """A reference to a sample (chosen from the list), to an element (its id or its link in
    this portal) or to an external URL or path."""
    source = parse_id(element_id)
    target = target.strip()
    link = _PORTAL_LINK.match(target)
    if sample_id:
        samples.link_sample(db, caller.actor, source, parse_id(sample_id, "sample"))
    elif link or _UUID.fullmatch(target):
        target_id = uuid.UUID(link.group(3) if link else target)
        references.add_reference(db, caller.actor, source, target_id=target_id, label=label)
    else:
        references.add_reference(db, caller.actor, source, url=target, label=label)
    return _notes_section(request, db, caller, source)


@router.post("/ui/elements/{element_id}/references/{reference_id}/delete",
             response_class=HTMLResponse)
def delete_reference(request: Request, element_id: str, reference_id: str,
                     caller: Caller = Depends(page_caller),
                     db: Session = Depends(get_db, scope="function")):
    source = parse_id(element_id)
    references.delete_reference(db, caller.actor, source, parse_id(reference_id, "reference"))
    return _notes_section(request, db, caller, source)
