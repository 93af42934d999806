"""Jobs as JOB-2 shows them: list, one job, cancel, remove finished ones from one's list."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.jobs import records
from cryovault.web.api.schemas import JobList, JobOut, parse_id
from cryovault.web.context import current_actor, get_db

router = APIRouter(tags=["jobs"])


@router.get("/jobs", response_model=JobList)
def list_jobs(actor: Actor = Depends(current_actor),
              db: Session = Depends(get_db, scope="function")):
    return JobList(items=[JobOut.of(v) for v in records.list_jobs(db, actor)])


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: str, actor: Actor = Depends(current_actor),
            db: Session = Depends(get_db, scope="function")):
    return JobOut.of(records.get_job(db, actor, parse_id(job_id, "job")))


@router.post("/jobs/{job_id}/cancel", response_model=JobOut,
             summary="Cancel a job that has not ended (own jobs; admins any)")
def cancel_job(job_id: str, actor: Actor = Depends(current_actor),
               db: Session = Depends(get_db, scope="function")):
    return JobOut.of(records.cancel_job(db, actor, parse_id(job_id, "job")))


@router.delete("/jobs/{job_id}", status_code=204,
               summary="Remove one of your finished jobs from your list")
def dismiss_job(job_id: str, actor: Actor = Depends(current_actor),
                db: Session = Depends(get_db, scope="function")):
    records.dismiss_jobs(db, actor, parse_id(job_id, "job"))
    return Response(status_code=204)


@router.delete("/jobs", status_code=204, summary="Remove all your finished jobs from your list")
def dismiss_finished_jobs(actor: Actor = Depends(current_actor),
                          db: Session = Depends(get_db, scope="function")):
    records.dismiss_jobs(db, actor)
    return Response(status_code=204)
