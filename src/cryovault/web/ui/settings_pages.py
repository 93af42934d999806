"""Settings (SPEC ADM-5, ADM-6): platform and personal preferences, installed plugins, the
platform's health (with Reindex and "Stop all live export jobs"); the Storage tab is the storage
page (/storage)."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Depends, Form, Query, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from cryovault import plugins
from cryovault import preferences as prefs
from cryovault.access.roles import EDIT_PLATFORM_PREFERENCES, may
from cryovault.errors import Invalid
from cryovault.jobs import health
from cryovault.search import jobs as search_jobs
from cryovault.web.background import run_job_and_tidy
from cryovault.web.context import Caller, get_db
from cryovault.web.ui.common import page_caller, page_context, templates
from cryovault.web.ui.i18n import LANGUAGE_COOKIE

router = APIRouter(include_in_schema=False)
TABS = ("preferences", "plugins", "health")


@router.get("/settings", response_class=HTMLResponse)
def settings_page(request: Request, tab: str = Query("preferences"),
                  caller: Caller = Depends(page_caller),
                  db: Session = Depends(get_db, scope="function")):
    tab = tab if tab in TABS else "preferences"
    return templates.TemplateResponse(request, "settings.html", page_context(
        request, caller, tab=tab, platform=prefs.platform_preferences(db),
        can_edit_platform=may(caller.actor.roles, EDIT_PLATFORM_PREFERENCES),
        date_formats=prefs.DATE_FORMATS,
        plugins=plugins.installed_plugins() if tab == "plugins" else [],
        can_see_health=health.may_operate(caller.actor)))


@router.get("/ui/settings/health", response_class=HTMLResponse)
def health_parts(request: Request, caller: Caller = Depends(page_caller)):
    """The parts and their states, loaded after the page (each check waits at most 2 s) and
    polled by the Health tab."""
    state = request.app.state
    worker = getattr(state, "job_worker", None)
    report = health.platform_health(caller.actor, state.engine, state.settings, state.storages,
                                    local_worker_alive=worker.alive if worker else None)
    return templates.TemplateResponse(request, "partials/health.html", page_context(
        request, caller, report=report))


@router.post("/ui/settings/health/reindex", response_class=HTMLResponse)
def health_reindex(request: Request, background: BackgroundTasks,
                   caller: Caller = Depends(page_caller),
                   db: Session = Depends(get_db, scope="function")):
    job = search_jobs.request_reindex(db, caller.actor)
    db.commit()
    background.add_task(run_job_and_tidy, request.app, job.id)
    return templates.TemplateResponse(
        request, "partials/health_action.html",
        page_context(request, caller, action="reindex", job_id=job.id),
        headers={"HX-Trigger": "jobs-changed, health-changed"}, background=background)


@router.post("/ui/settings/health/live-exports/stop", response_class=HTMLResponse)
def health_stop_live_exports(request: Request, caller: Caller = Depends(page_caller),
                             db: Session = Depends(get_db, scope="function")):
    stopped = health.stop_live_exports(db, caller.actor)
    return templates.TemplateResponse(
        request, "partials/health_action.html",
        page_context(request, caller, action="stop-live-exports", stopped=stopped),
        headers={"HX-Trigger": "jobs-changed, health-changed"})


@router.post("/ui/preferences/platform")
def save_platform(max_folder_depth: str = Form(""), export_public_path: str = Form(""),
                  caller: Caller = Depends(page_caller),
                  db: Session = Depends(get_db, scope="function")):
    try:
        depth = int(max_folder_depth.strip())
    except ValueError:
        raise Invalid("the maximum folder depth must be a whole number (0 to 10)") from None
    prefs.update_platform_preferences(db, caller.actor, max_folder_depth=depth,
                                      export_public_path=export_public_path)
    return Response(status_code=204, headers={"HX-Refresh": "true"})


@router.post("/ui/preferences/user")
def save_user(request: Request, language: str = Form(""), date_format: str = Form(""),
              caller: Caller = Depends(page_caller),
              db: Session = Depends(get_db, scope="function")):
    saved = prefs.update_user_preferences(db, caller.actor, language=language or None,
                                          date_format=date_format or None)
    response = Response(status_code=204, headers={"HX-Refresh": "true"})
    # The sign-in page shows the last chosen language too.
    response.set_cookie(LANGUAGE_COOKIE, saved.language, max_age=365 * 24 * 3600,
                        samesite="lax", secure=request.app.state.settings.cookie_secure)
    return response
