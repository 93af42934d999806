"""The reindex job (SPEC PLT-2, ADM-6, JOB-1): rebuild the search index from the database."""

from __future__ import annotations

from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.roles import CUSTOMER_ADMIN, WORKFLOW_ADMIN
from cryovault.db.jobs import Job
from cryovault.errors import Forbidden
from cryovault.jobs.records import create_job
from cryovault.jobs.runner import JobContext, register_handler
from cryovault.search.index import reindex_all

REINDEX_JOB = "reindex"


def request_reindex(db: Session, actor: Actor) -> Job:
    if not (actor.roles & {WORKFLOW_ADMIN, CUSTOMER_ADMIN}):
        raise Forbidden("only customer admins and workflow admins can reindex the search")
    return create_job(db, REINDEX_JOB, actor, None)


def _run_reindex(context: JobContext) -> None:
    job = context.job

    def progress(done: int, total: int) -> None:
        job.progress = done / total if total else 1.0  # committed with each batch

    reindex_all(context.db, progress)


register_handler(REINDEX_JOB, _run_reindex)
