"""Storages connected to the platform and their usage (SPEC PLT-3)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.db.base import utcnow
from cryovault.storage.usage import storage_reports
from cryovault.web.api.file_schemas import StorageList, StorageOut
from cryovault.web.context import current_actor, get_db

router = APIRouter(tags=["storages"])


@router.get("/storages", response_model=StorageList)
def list_storages(request: Request, actor: Actor = Depends(current_actor),
                  db: Session = Depends(get_db, scope="function")):
    reports = storage_reports(db, request.app.state.storages)
    return StorageList(refreshed_at=utcnow(), items=[
        StorageOut(name=r.storage.name, role=r.storage.role, kind=r.storage.kind,
                   # where the bytes live is for administrators only
                   location=r.storage.location if actor.is_customer_admin else "",
                   total_bytes=r.usage.total_bytes, used_bytes=r.usage.used_bytes,
                   free_bytes=r.usage.free_bytes, registered_files=r.registered_files,
                   registered_bytes=r.registered_bytes)
        for r in reports])
