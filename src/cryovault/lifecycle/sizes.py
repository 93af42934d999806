""""Calculate size" of the cleanup dialog (SPEC JOB-6, JOB-1): a job counting, per cleanup rule,
the files and bytes it would remove. The figures are kept with the job (its parameters'
`result`), so the dialog shows the latest ones until a cleanup makes them out of date."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.levels import COLLABORATOR, VIEWER
from cryovault.db.base import utcnow
from cryovault.db.elements import Element
from cryovault.db.jobs import Job
from cryovault.errors import Invalid
from cryovault.jobs.records import create_job, job_parameters
from cryovault.jobs.runner import JobContext, register_handler
from cryovault.lifecycle.cleanup_rules import (
    CLEANUP_JOB,
    CleanupRule,
    cleanup_target,
    finished_cleanups_after,
    pending_job,
    roles_of,
    rules_for,
)
from cryovault.lifecycle.run_files import FileTotals, totals_by_role

SIZES_JOB = "size_calculation"


@dataclass(frozen=True)
class RuleSize:
    files: int
    size_bytes: int


@dataclass(frozen=True)
class CleanupSizes:
    sizes: dict[str, RuleSize]  # by rule name
    computed_at: datetime
    job_id: uuid.UUID

    @property
    def total_bytes(self) -> int:
        return sum(size.size_bytes for size in self.sizes.values())


@dataclass(frozen=True)
class PendingJob:
    id: uuid.UUID
    status: str
    progress: float


@dataclass(frozen=True)
class CleanupOverview:
    """What the cleanup dialog shows: the rules, the latest sizes (None when never calculated
    or out of date) and the jobs under way."""

    dataset: Element
    rules: list[CleanupRule]
    sizes: CleanupSizes | None
    sizes_job: PendingJob | None
    cleanup_job: PendingJob | None


def rule_sizes(db: Session, dataset: Element, rules: list[CleanupRule]) -> dict[str, RuleSize]:
    """Exactly what each rule would remove now: files and bytes of its roles."""
    by_role = totals_by_role(db, dataset.id)
    sizes: dict[str, RuleSize] = {}
    for rule in rules:
        totals = [by_role.get(role, FileTotals(0, 0)) for role in roles_of([rule])]
        sizes[rule.name] = RuleSize(sum(t.files for t in totals),
                                    sum(t.size_bytes for t in totals))
    return sizes


def request_size_calculation(db: Session, actor: Actor, dataset_id: uuid.UUID) -> Job:
    """Register a size calculation (collaborators); one already under way is reused."""
    dataset, _ = cleanup_target(db, actor, dataset_id, COLLABORATOR,
                                "calculate the cleanup sizes of")
    running = pending_job(db, dataset.id, SIZES_JOB)
    if running is not None:
        return running
    return create_job(db, SIZES_JOB, actor, dataset)


def _run_sizes(context: JobContext) -> None:
    db, job = context.db, context.job
    dataset = db.get(Element, job.element_id) if job.element_id else None
    if dataset is None or dataset.deleting:
        raise Invalid("the run no longer exists or is being deleted")
    rules = rules_for(db, dataset)
    sizes = rule_sizes(db, dataset, rules)
    result = {"computed_at": utcnow().isoformat(),
              "sizes": {name: {"files": s.files, "size_bytes": s.size_bytes}
                        for name, s in sizes.items()}}
    parameters = {**job_parameters(job), "result": result}
    db.execute(update(Job).where(Job.id == job.id)
               .values(parameters=json.dumps(parameters, sort_keys=True))
               .execution_options(synchronize_session=False))
    total = sum(s.size_bytes for s in sizes.values())
    files = sum(s.files for s in sizes.values())
    context.checkpoint(1.0, f"{files:,} files, {total:,} bytes under the cleanup rules")


def sizes_of_job(job: Job) -> CleanupSizes | None:
    result = job_parameters(job).get("result")
    if not result:
        return None
    return CleanupSizes(
        {name: RuleSize(int(v["files"]), int(v["size_bytes"]))
         for name, v in result["sizes"].items()},
        datetime.fromisoformat(result["computed_at"]), job.id)


def latest_sizes(db: Session, dataset_id: uuid.UUID) -> CleanupSizes | None:
    """The latest completed size calculation, unless a cleanup ended after it."""
    job = db.scalar(select(Job).where(Job.element_id == dataset_id, Job.kind == SIZES_JOB,
                                      Job.status == "completed")
                    .order_by(Job.finished_at.desc()).limit(1))
    sizes = sizes_of_job(job) if job is not None else None
    if sizes is None or finished_cleanups_after(db, dataset_id, sizes.computed_at):
        return None
    return sizes


def _pending(db: Session, dataset_id: uuid.UUID, kind: str) -> PendingJob | None:
    job = pending_job(db, dataset_id, kind)
    return PendingJob(job.id, job.status, job.progress) if job is not None else None


def cleanup_overview(db: Session, actor: Actor, dataset_id: uuid.UUID) -> CleanupOverview:
    """The rules of a run (viewers may look) with the latest sizes and pending jobs."""
    dataset, rules = cleanup_target(db, actor, dataset_id, VIEWER, "see the cleanup rules of")
    return CleanupOverview(dataset, rules, latest_sizes(db, dataset.id),
                           _pending(db, dataset.id, SIZES_JOB),
                           _pending(db, dataset.id, CLEANUP_JOB))


register_handler(SIZES_JOB, _run_sizes)
