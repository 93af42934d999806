"""Runs jobs by kind. Handlers register here; a crash mid-job leaves the job pending, and
`resume_pending` runs it again when the platform starts (SPEC OPS-3)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from cryovault.db.jobs import Job
from cryovault.jobs.records import PENDING, mark_finished, mark_running, pending_job_ids

log = logging.getLogger(__name__)

Handler = Callable[[Session, Job], None]
_HANDLERS: dict[str, Handler] = {}


def register_handler(kind: str, handler: Handler) -> None:
    _HANDLERS[kind] = handler


def run_job(sessions: sessionmaker[Session], job_id: uuid.UUID) -> None:
    """Run one job to completion; its record says how it ended."""
    with sessions() as db:
        job = db.get(Job, job_id)
        if job is None or job.status not in PENDING:
            return
        handler = _HANDLERS.get(job.kind)
        if handler is None:
            mark_finished(db, job, "failed", f"no handler for jobs of kind {job.kind!r}")
            db.commit()
            return
        mark_running(db, job)
        db.commit()
        try:
            handler(db, job)
            mark_finished(db, job, "completed")
            db.commit()
        except Exception as exc:  # a job must end visibly, whatever broke
            log.exception("job %s (%s) failed", job.id, job.kind)
            db.rollback()
            job = db.get(Job, job_id)
            assert job is not None
            mark_finished(db, job, "failed", f"{type(exc).__name__}: {exc}")
            db.commit()


def resume_pending(sessions: sessionmaker[Session]) -> int:
    """Run again the jobs a previous process left waiting or running."""
    with sessions() as db:
        ids = pending_job_ids(db)
    for job_id in ids:
        run_job(sessions, job_id)
    return len(ids)
