"""Runs jobs (SPEC JOB-1, OPS-3). Job state lives in the `jobs` table; whoever runs a job first
claims it with one guarded UPDATE (waiting → running), so two workers never run the same job,
and keeps a heartbeat while it runs. A job whose worker died (no heartbeat for
`STALE_AFTER`) is claimed again — handlers are idempotent — up to `MAX_ATTEMPTS`, then failed
visibly: never stuck "running".

A request that creates a job runs it at once in the background (`run_job`); `Worker` threads
(started by `cryovault serve`, or `cryovault worker` on any host that reaches the database)
pick up what is left: jobs of crashed processes, of other portal processes, and retries.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from cryovault.db.base import utcnow
from cryovault.db.jobs import Job
from cryovault.jobs.records import mark_finished

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = timedelta(seconds=10)
STALE_AFTER = timedelta(seconds=60)
MAX_ATTEMPTS = 3


class JobCancelled(Exception):
    """Raised inside a handler (by `JobContext.checkpoint`) when its job was cancelled."""


@dataclass(frozen=True)
class JobEnvironment:
    """What handlers may use besides the database: the settings and the storages."""

    sessions: sessionmaker[Session]
    settings: object | None = None  # cryovault.settings.Settings
    storages: object | None = None  # cryovault.storage.registry.StorageSet


class JobContext:
    """Handed to a handler: its job, a session, the environment, and progress reporting that
    doubles as the heartbeat and the cancellation check."""

    def __init__(self, env: JobEnvironment, db: Session, job: Job, worker: str) -> None:
        self.env, self.db, self.job, self.worker = env, db, job, worker
        self._last_beat = utcnow()

    @property
    def settings(self):
        return self.env.settings

    @property
    def storages(self):
        return self.env.storages

    def checkpoint(self, progress: float | None = None, message: str | None = None) -> None:
        """Record progress (0..1) and a heartbeat; raise JobCancelled if cancellation was
        asked. Commits: call it between idempotent steps, not inside one."""
        values: dict[str, object] = {"heartbeat_at": utcnow()}
        if progress is not None:
            values["progress"] = max(0.0, min(1.0, progress))
        if message is not None:
            values["message"] = message
        self.db.execute(update(Job).where(Job.id == self.job.id).values(**values)
                        .execution_options(synchronize_session=False))
        self.db.commit()
        self.db.refresh(self.job)
        self._last_beat = utcnow()
        if self.job.cancel_requested:
            raise JobCancelled()

    def heartbeat(self) -> None:
        """A cheap heartbeat for long loops: writes at most every HEARTBEAT_EVERY."""
        if utcnow() - self._last_beat >= HEARTBEAT_EVERY:
            self.checkpoint()


Handler = Callable[[JobContext], None]
_HANDLERS: dict[str, Handler] = {}


def register_handler(kind: str, handler: Handler) -> None:
    _HANDLERS[kind] = handler


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def _claim(db: Session, job_id: uuid.UUID, worker: str) -> bool:
    """waiting → running, or a stale running job taken over; True if this worker got it."""
    now = utcnow()
    claimed = db.execute(
        update(Job)
        .where(Job.id == job_id, or_(
            Job.status == "waiting",
            (Job.status == "running") & (Job.heartbeat_at < now - STALE_AFTER)))
        .values(status="running", worker=worker, heartbeat_at=now,
                started_at=now, attempts=Job.attempts + 1)
        .execution_options(synchronize_session=False)
    )
    db.commit()
    return claimed.rowcount == 1


def run_job(env: JobEnvironment, job_id: uuid.UUID, worker: str | None = None) -> bool:
    """Claim and run one job to its end; False when someone else has it (or it is over)."""
    worker = worker or worker_name()
    with env.sessions() as db:
        if not _claim(db, job_id, worker):
            return False
        job = db.get(Job, job_id)
        assert job is not None
        db.refresh(job)
        handler = _HANDLERS.get(job.kind)
        if handler is None:
            mark_finished(db, job, "failed", f"no handler for jobs of kind {job.kind!r}")
            db.commit()
            return True
        if job.attempts > MAX_ATTEMPTS:
            mark_finished(db, job, "failed", f"gave up after {MAX_ATTEMPTS} attempts (the "
                          "process running it stopped each time)")
            db.commit()
            return True
        if job.cancel_requested:
            mark_finished(db, job, "cancelled", "cancelled before it started")
            db.commit()
            return True
        try:
            handler(JobContext(env, db, job, worker))
            db.refresh(job)
            mark_finished(db, job, "completed")
            db.commit()
        except JobCancelled:
            db.rollback()
            job = db.get(Job, job_id)
            assert job is not None
            mark_finished(db, job, "cancelled", "cancelled while running")
            db.commit()
        except Exception as exc:  # a job must end visibly, whatever broke
            log.exception("job %s (%s) failed", job_id, job.kind)
            db.rollback()
            job = db.get(Job, job_id)
            assert job is not None
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            mark_finished(db, job, "failed", message)
            db.commit()
    return True


def runnable_job_ids(db: Session, limit: int = 20) -> list[uuid.UUID]:
    """Waiting jobs, and running ones whose worker stopped beating, oldest first."""
    now = utcnow()
    return list(db.scalars(
        select(Job.id)
        .where(or_(Job.status == "waiting",
                   (Job.status == "running") & (Job.heartbeat_at < now - STALE_AFTER)))
        .order_by(Job.created_at).limit(limit)))


def run_pending(env: JobEnvironment) -> int:
    """Run every job that is waiting or was left behind; the number this call ran."""
    ran = 0
    while True:
        with env.sessions() as db:
            ids = runnable_job_ids(db)
        progressed = [run_job(env, job_id) for job_id in ids]
        ran += sum(progressed)
        if not ids or not any(progressed):
            return ran


class Worker:
    """A thread that runs jobs as they come (polling; `wake()` shortens the wait)."""

    def __init__(self, env: JobEnvironment, poll_seconds: float = 2.0) -> None:
        self.env, self.poll_seconds = env, poll_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cryovault-jobs", daemon=True)

    def start(self) -> Worker:
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                run_pending(self.env)
            except Exception:  # the database may be briefly unreachable: keep going
                log.exception("the job worker hit an error; retrying")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
