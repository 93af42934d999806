"""The jobs monitor (SPEC JOB-2): jobs grouped by status, live; cancel and remove."""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from cryovault.jobs import records
from cryovault.web.api.schemas import parse_id
from cryovault.web.context import Caller, get_db
from cryovault.web.ui.common import page_caller, page_context, templates

router = APIRouter(include_in_schema=False)
GROUPS = ("running", "waiting", "failed", "cancelled", "completed")


def _context(request: Request, caller: Caller, db: Session) -> dict:
    jobs = records.list_jobs(db, caller.actor)
    grouped = {status: [v for v in jobs if v.job.status == status] for status in GROUPS}
    can_cancel_any = caller.actor.is_workflow_admin or caller.actor.is_customer_admin
    return page_context(request, caller, grouped=grouped, GROUPS=GROUPS,
                        can_cancel_any=can_cancel_any,
                        finished_own=sum(1 for v in jobs if v.job.status in records.FINISHED
                                         and v.job.user_id == caller.actor.user_id))


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, caller: Caller = Depends(page_caller),
              db: Session = Depends(get_db, scope="function")):
    return templates.TemplateResponse(request, "jobs.html", _context(request, caller, db))


@router.get("/ui/jobs", response_class=HTMLResponse)
def jobs_panel(request: Request, caller: Caller = Depends(page_caller),
               db: Session = Depends(get_db, scope="function")):
    """The list alone, polled by the page so that it updates without reloading."""
    return templates.TemplateResponse(request, "partials/jobs_list.html",
                                      _context(request, caller, db))


@router.get("/ui/jobs/summary", response_class=HTMLResponse)
def jobs_summary(request: Request, caller: Caller = Depends(page_caller),
                 db: Session = Depends(get_db, scope="function")):
    """The toolbar's badge: how many jobs are running or waiting."""
    counts = Counter(v.job.status for v in records.list_jobs(db, caller.actor))
    active = counts["running"] + counts["waiting"]
    title = f"{counts['running']} running, {counts['waiting']} waiting, {counts['failed']} failed"
    body = f'<span class="job-count" title="{title}">{active}</span>' if active else ""
    return HTMLResponse(body)


@router.post("/ui/jobs/{job_id}/cancel")
def cancel(job_id: str, caller: Caller = Depends(page_caller),
           db: Session = Depends(get_db, scope="function")):
    records.cancel_job(db, caller.actor, parse_id(job_id, "job"))
    return Response(status_code=204, headers={"HX-Trigger": "jobs-changed"})


@router.post("/ui/jobs/{job_id}/remove")
def remove(job_id: str, caller: Caller = Depends(page_caller),
           db: Session = Depends(get_db, scope="function")):
    records.dismiss_jobs(db, caller.actor, parse_id(job_id, "job"))
    return Response(status_code=204, headers={"HX-Trigger": "jobs-changed"})


@router.post("/ui/jobs/remove-finished")
def remove_finished(caller: Caller = Depends(page_caller),
                    db: Session = Depends(get_db, scope="function")):
    records.dismiss_jobs(db, caller.actor)
    return Response(status_code=204, headers={"HX-Trigger": "jobs-changed"})
