"""Platform preferences (SPEC ADM-5): readable by all, editable by customer-admins."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from cryovault import preferences as service
from cryovault.access.actor import Actor
from cryovault.web.api.schemas import PlatformPreferencesIO, PlatformPreferencesPatch
from cryovault.web.context import current_actor, get_db

router = APIRouter(tags=["preferences"])


@router.get("/preferences/platform", response_model=PlatformPreferencesIO)
def get_platform(actor: Actor = Depends(current_actor),
                 db: Session = Depends(get_db, scope="function")):
    prefs = service.platform_preferences(db)
    return PlatformPreferencesIO(max_folder_depth=prefs.max_folder_depth,
                                 export_public_path=prefs.export_public_path)


@router.patch("/preferences/platform", response_model=PlatformPreferencesIO)
def patch_platform(body: PlatformPreferencesPatch, actor: Actor = Depends(current_actor),
                   db: Session = Depends(get_db, scope="function")):
    prefs = service.update_platform_preferences(
        db, actor, max_folder_depth=body.max_folder_depth,
        export_public_path=body.export_public_path,
    )
    return PlatformPreferencesIO(max_folder_depth=prefs.max_folder_depth,
                                 export_public_path=prefs.export_public_path)
