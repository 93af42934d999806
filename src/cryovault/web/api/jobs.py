"""Jobs as JOB-2 shows them (the full monitor comes with the jobs issue)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
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
