"""Metadata of elements (SPEC MD-1 … MD-4): grouped listing, add, edit, remove, export."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.metadata import export as exports
from cryovault.metadata import quantities, service
from cryovault.web.api.content_schemas import (
    MetadataEntryIn,
    MetadataEntryOut,
    MetadataEntryPatch,
    MetadataNameOut,
    MetadataNames,
    MetadataOut,
    QuantityList,
    QuantityOut,
)
from cryovault.web.api.schemas import parse_id
from cryovault.web.context import current_actor, get_db

router = APIRouter(tags=["metadata"])


def attachment(filename: str) -> str:
    """Content-Disposition for a download: an ASCII fallback and the UTF-8 name (RFC 6266)."""
    fallback = filename.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@router.get("/elements/{element_id}/metadata", response_model=MetadataOut)
def list_metadata(element_id: str, filter: str | None = Query(default=None, max_length=200),
                  actor: Actor = Depends(current_actor),
                  db: Session = Depends(get_db, scope="function")):
    return MetadataOut.of(service.list_metadata(db, actor, parse_id(element_id), filter))


@router.post("/elements/{element_id}/metadata", response_model=MetadataEntryOut,
             status_code=201)
def add_metadata(element_id: str, body: MetadataEntryIn, actor: Actor = Depends(current_actor),
                 db: Session = Depends(get_db, scope="function")):
    view = service.add_entry(db, actor, parse_id(element_id), name=body.name,
                             value_type=body.type, value=body.value, quantity=body.quantity,
                             unit=body.unit, group=body.group)
    return MetadataEntryOut.of(view)


@router.patch("/elements/{element_id}/metadata/{entry_id}", response_model=MetadataEntryOut)
def edit_metadata(element_id: str, entry_id: str, body: MetadataEntryPatch,
                  actor: Actor = Depends(current_actor),
                  db: Session = Depends(get_db, scope="function")):
    given = {name: getattr(body, name) for name in body.model_fields_set}
    if "type" in given:
        given["value_type"] = given.pop("type")
    view = service.update_entry(db, actor, parse_id(element_id),
                                parse_id(entry_id, "metadata entry"), **given)
    return MetadataEntryOut.of(view)


@router.delete("/elements/{element_id}/metadata/{entry_id}", status_code=204)
def delete_metadata(element_id: str, entry_id: str, actor: Actor = Depends(current_actor),
                    db: Session = Depends(get_db, scope="function")):
    service.delete_entry(db, actor, parse_id(element_id), parse_id(entry_id, "metadata entry"))
    return Response(status_code=204)


@router.get("/elements/{element_id}/metadata/export")
def export_metadata(element_id: str,
                    format: str = Query(default="json", description="csv | json | xml"),
                    filename: str | None = Query(default=None, max_length=255),
                    actor: Actor = Depends(current_actor),
                    db: Session = Depends(get_db, scope="function")):
    exported = exports.export_metadata(db, actor, parse_id(element_id), format, filename)
    return Response(exported.content, media_type=exported.media_type,
                    headers={"Content-Disposition": attachment(exported.filename)})


@router.get("/metadata/names", response_model=MetadataNames)
def metadata_names(prefix: str = Query(default="", max_length=255),
                   actor: Actor = Depends(current_actor),
                   db: Session = Depends(get_db, scope="function")):
    names = service.known_names(db, actor, prefix)
    return MetadataNames(items=[MetadataNameOut(name=n, type=t) for n, t in names])


@router.get("/metadata/quantities", response_model=QuantityList)
def list_quantities(actor: Actor = Depends(current_actor)):
    return QuantityList(items=[QuantityOut.of(q) for q in quantities.quantities()])
