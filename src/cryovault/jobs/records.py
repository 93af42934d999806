"""Job records: create, move through their states, and list them as JOB-2 says."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.levels import VIEWER
from cryovault.access.visibility import access_level
from cryovault.db.base import utcnow
from cryovault.db.elements import Element
from cryovault.db.jobs import Job
from cryovault.db.users import User
from cryovault.errors import NotFound

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


def create_job(db: Session, kind: str, actor: Actor, element: Element | None) -> Job:
    job = Job(
        kind=kind,
        user_id=actor.user_id,
        element_id=element.id if element else None,
        element_name=element.name if element else "",
    )
    db.add(job)
    db.flush()
    return job


def mark_running(db: Session, job: Job) -> None:
    job.status = "running"
    job.started_at = job.started_at or utcnow()
    db.flush()


def mark_finished(db: Session, job: Job, status: str, message: str = "") -> None:
    job.status = status
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
        .where(or_(Job.status.in_(PENDING), Job.user_id == actor.user_id))
        .order_by(Job.created_at.desc())
        .limit(limit)
    )
    return [_view(db, actor, job, username) for job, username in db.execute(stmt)]


def get_job(db: Session, actor: Actor, job_id: uuid.UUID) -> JobView:
    row = db.execute(
        select(Job, User.username).outerjoin(User, User.id == Job.user_id).where(Job.id == job_id)
    ).first()
    if row is None or (row[0].status in FINISHED and row[0].user_id != actor.user_id):
        raise NotFound(f"no job with id {job_id}")
    return _view(db, actor, *row)


def pending_job_ids(db: Session) -> list[uuid.UUID]:
    return list(db.scalars(select(Job.id).where(Job.status.in_(PENDING))
                           .order_by(Job.created_at)))


