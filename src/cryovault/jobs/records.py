"""Job records: create, move through their states, and list them as JOB-2 says."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.levels import VIEWER
from cryovault.access.visibility import access_level
from cryovault.db.base import utcnow
from cryovault.db.elements import Element
from cryovault.db.jobs import Job
from cryovault.db.users import User
from cryovault.errors import Conflict, Forbidden, NotFound

PENDING = ("waiting", "running")
FINISHED = ("completed", "failed", "cancelled")
PRIVATE_ENTITY = "Private entity"


@dataclass(frozen=True)
class JobView:
    job: Job
    element_visible: bool
    username: str | None

    @property
    def element_name(self) -> str:
        return self.job.element_name if self.element_visible else PRIVATE_ENTITY

    @property
    def element_id(self) -> uuid.UUID | None:
        return self.job.element_id if self.element_visible else None


def create_job(db: Session, kind: str, actor: Actor, element: Element | None,
               parameters: dict | None = None) -> Job:
    job = Job(
        kind=kind,
        user_id=actor.user_id,
        element_id=element.id if element else None,
        element_name=element.name if element else "",
        parameters=json.dumps(parameters or {}, sort_keys=True),
    )
    db.add(job)
    db.flush()
    return job


def mark_finished(db: Session, job: Job, status: str, message: str = "") -> None:
    job.status = status
    if message or status != "completed":  # a completed job keeps its last progress message
        job.message = message
    job.finished_at = utcnow()
    if status == "completed":
        job.progress = 1.0
    db.flush()


def _view(db: Session, actor: Actor, job: Job, username: str | None) -> JobView:
    own = job.user_id == actor.user_id
    visible = own or actor.is_workflow_admin
    if not visible and job.element_id is not None:
        level = access_level(db, actor, job.element_id)
        visible = level is not None and level >= VIEWER
    return JobView(job, visible, username)


def list_jobs(db: Session, actor: Actor, limit: int = 200) -> list[JobView]:
    """Pending jobs of everybody; finished jobs only of the actor (SPEC JOB-2)."""
    stmt = (
        select(Job, User.username)
        .outerjoin(User, User.id == Job.user_id)
        .where(or_(Job.status.in_(PENDING),
                   (Job.user_id == actor.user_id) & Job.dismissed.is_(False)))
        .order_by(Job.created_at.desc())
        .limit(limit)
    )
    return [_view(db, actor, job, username) for job, username in db.execute(stmt)]


def get_job(db: Session, actor: Actor, job_id: uuid.UUID) -> JobView:
    row = db.execute(
        select(Job, User.username).outerjoin(User, User.id == Job.user_id).where(Job.id == job_id)
    ).first()
    if row is None or (row[0].status in FINISHED and (row[0].user_id != actor.user_id
                                                      or row[0].dismissed)):
        raise NotFound(f"no job with id {job_id}")
    return _view(db, actor, *row)




def job_parameters(job: Job) -> dict:
    return json.loads(job.parameters or "{}")


def cancel_job(db: Session, actor: Actor, job_id: uuid.UUID) -> JobView:
    """Ask a job that has not finished to stop (own jobs; admins any). A waiting job is
    cancelled at once; a running one stops at its next checkpoint."""
    view = get_job(db, actor, job_id)
    job = view.job
    if job.user_id != actor.user_id and not (actor.is_workflow_admin or actor.is_customer_admin):
        raise Forbidden("you can cancel only the jobs you started")
    if job.status in FINISHED:
        raise Conflict(f"the job has already ended ({job.status})")
    db.execute(update(Job).where(Job.id == job.id).values(cancel_requested=True)
               .execution_options(synchronize_session=False))
    cancelled_now = db.execute(
        update(Job).where(Job.id == job.id, Job.status == "waiting")
        .values(status="cancelled", finished_at=utcnow(), message="cancelled before it started")
        .execution_options(synchronize_session=False))
    db.flush()
    db.refresh(job)
    if cancelled_now.rowcount == 0 and job.status == "running":
        job.message = "cancelling…"
    return view


def dismiss_jobs(db: Session, actor: Actor, job_id: uuid.UUID | None = None) -> int:
    """Remove one finished job of the actor's, or all of them, from their list (JOB-2)."""
    if job_id is not None:
        view = get_job(db, actor, job_id)
        if view.job.user_id != actor.user_id:
            raise Forbidden("you can remove only your own jobs from your list")
        if view.job.status not in FINISHED:
            raise Conflict("a job that has not ended cannot be removed; cancel it first")
    query = update(Job).where(Job.user_id == actor.user_id, Job.status.in_(FINISHED),
                              Job.dismissed.is_(False))
    if job_id is not None:
        query = query.where(Job.id == job_id)
    done = db.execute(query.values(dismissed=True).execution_options(synchronize_session=False))
    return done.rowcount
