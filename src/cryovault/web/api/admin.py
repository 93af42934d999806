"""User administration and licences (SPEC ADM-2 … ADM-4) under /api/v1/admin, user preferences
and plugins (ADM-5, ADM-6), the platform's health, reindex and stopping live exports (ADM-6).
Rights are checked by the services (access/roles.py: RIGHTS; jobs/health.py)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from cryovault import plugins
from cryovault import preferences as prefs
from cryovault.access import administration as admin
from cryovault.access import licences
from cryovault.access.actor import Actor
from cryovault.access.config import AccessConfig
from cryovault.errors import Invalid
from cryovault.jobs import health
from cryovault.search import jobs as search_jobs
from cryovault.web.api.admin_schemas import (
    AdminUserList,
    AdminUserOut,
    DirectoryResults,
    DirectoryUserOut,
    InstalledOut,
    LicenseFileOut,
    LicenseKeyIn,
    LicenseOut,
    LicenseSeatIn,
    LicenseStatusOut,
    NewUserIn,
    PluginOut,
    RoleIn,
    SummaryOut,
    UserPatch,
    UserPreferencesIO,
    UserPreferencesPatch,
)
from cryovault.web.api.schemas import DeletionOut, parse_id
from cryovault.web.background import run_job_and_tidy
from cryovault.web.context import access_config, current_actor, get_db

router = APIRouter(tags=["administration"])


# --- users ------------------------------------------------------------------------------------


@router.get("/admin/users", response_model=AdminUserList)
def list_users(q: str = Query(default="", max_length=150),
               actor: Actor = Depends(current_actor), config: AccessConfig = Depends(access_config),
               db: Session = Depends(get_db, scope="function")):
    items = admin.list_users(db, actor, q)
    return AdminUserList(summary=SummaryOut.of(admin.summary(db, actor, config)),
                         items=[AdminUserOut.of(u) for u in items])


@router.post("/admin/users", response_model=AdminUserOut, status_code=201)
def create_user(body: NewUserIn, actor: Actor = Depends(current_actor),
                config: AccessConfig = Depends(access_config),
                db: Session = Depends(get_db, scope="function")):
    if body.source == "directory":
        extra = [name for name in ("email", "password", "password_confirmation")
                 if getattr(body, name) is not None] + \
                [name for name in ("first_name", "last_name") if getattr(body, name)]
        if extra:
            raise Invalid(f"a directory user takes name, e-mail and password from the directory:"
                          f" leave out {', '.join(extra)}")
        return AdminUserOut.of(admin.add_directory_user(db, actor, config, body.username))
    if body.password is None or body.password_confirmation is None:
        raise Invalid("a local user needs a password and its confirmation")
    return AdminUserOut.of(admin.add_local_user(
        db, actor, config, username=body.username, password=body.password,
        password_confirmation=body.password_confirmation, email=body.email,
        first_name=body.first_name, last_name=body.last_name))


@router.get("/admin/users/{user_id}", response_model=AdminUserOut)
def get_user(user_id: str, actor: Actor = Depends(current_actor),
             db: Session = Depends(get_db, scope="function")):
    return AdminUserOut.of(admin.get_admin_user(db, actor, parse_id(user_id, "user")))


@router.patch("/admin/users/{user_id}", response_model=AdminUserOut)
def patch_user(user_id: str, body: UserPatch, actor: Actor = Depends(current_actor),
               config: AccessConfig = Depends(access_config),
               db: Session = Depends(get_db, scope="function")):
    return AdminUserOut.of(admin.update_user(
        db, actor, config, parse_id(user_id, "user"), email=body.email,
        first_name=body.first_name, last_name=body.last_name, password=body.password,
        password_confirmation=body.password_confirmation, is_active=body.is_active))


@router.post("/admin/users/{user_id}/roles", response_model=AdminUserOut)
def add_role(user_id: str, body: RoleIn, actor: Actor = Depends(current_actor),
             db: Session = Depends(get_db, scope="function")):
    return AdminUserOut.of(admin.assign_role(db, actor, parse_id(user_id, "user"), body.role))


@router.delete("/admin/users/{user_id}/roles/{role}", response_model=AdminUserOut)
def remove_role(user_id: str, role: str, actor: Actor = Depends(current_actor),
                db: Session = Depends(get_db, scope="function")):
    return AdminUserOut.of(admin.unassign_role(db, actor, parse_id(user_id, "user"), role))


@router.post("/admin/users/{user_id}/licenses", response_model=AdminUserOut)
def add_seat(user_id: str, body: LicenseSeatIn, actor: Actor = Depends(current_actor),
             config: AccessConfig = Depends(access_config),
             db: Session = Depends(get_db, scope="function")):
    return AdminUserOut.of(admin.assign_licence(db, actor, config, parse_id(user_id, "user"),
                                                body.feature))


@router.delete("/admin/users/{user_id}/licenses/{feature}", response_model=AdminUserOut)
def remove_seat(user_id: str, feature: str, actor: Actor = Depends(current_actor),
                db: Session = Depends(get_db, scope="function")):
    return AdminUserOut.of(admin.unassign_licence(db, actor, parse_id(user_id, "user"), feature))


@router.get("/admin/directory", response_model=DirectoryResults)
def search_directory(q: str = Query(default="", max_length=1000),
                     limit: int = Query(default=20, ge=1, le=100),
                     actor: Actor = Depends(current_actor),
                     config: AccessConfig = Depends(access_config),
                     db: Session = Depends(get_db, scope="function")):
    found = admin.search_directory(db, actor, config, q, limit)
    return DirectoryResults(items=[DirectoryUserOut.of(c) for c in found])


# --- licences ---------------------------------------------------------------------------------


@router.get("/admin/licenses", response_model=LicenseStatusOut)
def license_status(actor: Actor = Depends(current_actor),
                   config: AccessConfig = Depends(access_config),
                   db: Session = Depends(get_db, scope="function")):
    return LicenseStatusOut.of(licences.view_status(db, actor, config.licensing))


@router.post("/admin/licenses", response_model=InstalledOut, status_code=201)
def install_license(body: LicenseKeyIn, actor: Actor = Depends(current_actor),
                    config: AccessConfig = Depends(access_config),
                    db: Session = Depends(get_db, scope="function")):
    done = licences.install_license(db, actor, config.licensing, body.key)
    return InstalledOut(**LicenseOut.of(done.license).model_dump(), seats_given=done.seats_given,
                        users_without_seat=done.users_without_seat)


@router.get("/admin/licenses/{license_id}", response_model=LicenseFileOut)
def license_file(license_id: str, actor: Actor = Depends(current_actor),
                 config: AccessConfig = Depends(access_config),
                 db: Session = Depends(get_db, scope="function")):
    state = licences.get_license(db, actor, config.licensing, parse_id(license_id, "licence"))
    return LicenseFileOut(**LicenseOut.of(state).model_dump(), document=state.row.document_json,
                          key=state.row.key_text)


# --- user preferences and plugins -------------------------------------------------------------


@router.get("/preferences/user", response_model=UserPreferencesIO)
def get_user_preferences(actor: Actor = Depends(current_actor),
                         db: Session = Depends(get_db, scope="function")):
    p = prefs.user_preferences(db, actor.user_id)
    return UserPreferencesIO(language=p.language, date_format=p.date_format)


@router.patch("/preferences/user", response_model=UserPreferencesIO)
def patch_user_preferences(body: UserPreferencesPatch, actor: Actor = Depends(current_actor),
                           db: Session = Depends(get_db, scope="function")):
    p = prefs.update_user_preferences(db, actor, language=body.language,
                                      date_format=body.date_format)
    return UserPreferencesIO(language=p.language, date_format=p.date_format)


@router.get("/plugins", response_model=list[PluginOut])
def list_plugins(actor: Actor = Depends(current_actor)) -> list[PluginOut]:
    return [PluginOut(name=p.name, type=p.type, version=p.version, package=p.package,
                      description=p.description, state=p.state, message=p.message)
            for p in plugins.installed_plugins()]


# --- health (ADM-6) ---------------------------------------------------------------------------


class HealthPartOut(BaseModel):
    name: str
    kind: str
    state: str
    version: str
    detail: str


class HealthOut(BaseModel):
    parts: list[HealthPartOut]
    state: str
    checked_at: datetime


class StoppedOut(BaseModel):
    stopped: int


def health_report(request: Request, actor: Actor) -> health.HealthReport:
    state = request.app.state
    worker = getattr(state, "job_worker", None)
    return health.platform_health(actor, state.engine, state.settings, state.storages,
                                  local_worker_alive=worker.alive if worker else None)


@router.get("/admin/health", response_model=HealthOut,
            summary="Each part of the platform with its state (stable, waiting, down)")
def platform_health(request: Request, actor: Actor = Depends(current_actor)):
    report = health_report(request, actor)
    return HealthOut(parts=[HealthPartOut(name=p.name, kind=p.kind, state=p.state,
                                          version=p.version, detail=p.detail)
                            for p in report.parts],
                     state=report.state, checked_at=report.checked_at)


@router.post("/admin/reindex", status_code=202, response_model=DeletionOut,
             summary="Rebuild the search index from the database (a job)")
def reindex(request: Request, background: BackgroundTasks, actor: Actor = Depends(current_actor),
            db: Session = Depends(get_db, scope="function")):
    job = search_jobs.request_reindex(db, actor)
    db.commit()
    background.add_task(run_job_and_tidy, request.app, job.id)
    return JSONResponse({"job_id": str(job.id)}, status_code=202, background=background)


@router.post("/admin/live-exports/stop", response_model=StoppedOut,
             summary="Stop every live export job that has not ended")
def stop_live_exports(actor: Actor = Depends(current_actor),
                      db: Session = Depends(get_db, scope="function")):
    return StoppedOut(stopped=health.stop_live_exports(db, actor))
