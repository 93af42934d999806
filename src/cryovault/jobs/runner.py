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
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import ColumnElement, bindparam, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from cryovault.db.base import utcnow
from cryovault.db.jobs import Job
from cryovault.jobs.records import mark_finished

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = timedelta(seconds=10)
STALE_AFTER = timedelta(seconds=60)
MAX_ATTEMPTS = 3


def stale_after(settings: object | None = None) -> timedelta:
    """How long a running job may go without a heartbeat before another worker takes it
    over: `CRYOVAULT_JOB_STALE_SECONDS` when set, else STALE_AFTER."""
    seconds = getattr(settings, "job_stale_seconds", None)
    return timedelta(seconds=seconds) if seconds else STALE_AFTER


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
        # Beat well within the stale limit, so that a live worker is never taken over.
        self._beat_every = min(HEARTBEAT_EVERY, stale_after(env.settings) / 3)

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
        """A cheap heartbeat for long loops: writes at most every HEARTBEAT_EVERY (or a third
        of the stale limit, when that is shorter)."""
        if utcnow() - self._last_beat >= self._beat_every:
            self.checkpoint()


Handler = Callable[[JobContext], None]
_HANDLERS: dict[str, Handler] = {}
_LONG_RUNNING: set[str] = set()


def register_handler(kind: str, handler: Handler, *, long_running: bool = False) -> None:
    """`long_running`: jobs that last as long as something outside them (a live export follows
    its run until the run completes); a worker runs each in a thread of its own so that the
    other jobs do not wait behind it."""
    _HANDLERS[kind] = handler
    if long_running:
        _LONG_RUNNING.add(kind)
    else:
        _LONG_RUNNING.discard(kind)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def _runnable(now: datetime, stale: timedelta) -> ColumnElement[bool]:
    """Waiting jobs, and running ones whose worker stopped beating."""
    return or_(Job.status == "waiting",
               (Job.status == "running") & (Job.heartbeat_at < now - stale))


def _claiming(now: datetime, worker: str) -> dict[str, object]:
    return dict(status="running", worker=worker, heartbeat_at=now, started_at=now,
                attempts=Job.attempts + 1)


def _claim(db: Session, job_id: uuid.UUID, worker: str,
           stale: timedelta | None = None) -> Job | None:
    """waiting → running, or a stale running job taken over; the job if this worker got it.
    One guarded UPDATE … RETURNING, committed before the job runs."""
    now = utcnow()
    stale = STALE_AFTER if stale is None else stale
    job = db.scalars(
        update(Job).where(Job.id == job_id, _runnable(now, stale))
        .values(**_claiming(now, worker)).returning(Job)
        .execution_options(synchronize_session=False, populate_existing=True)
    ).one_or_none()
    db.commit()
    return job


def claim_next(db: Session, worker: str, stale: timedelta | None = None) -> Job | None:
    """Claim the oldest runnable job, if any. PostgreSQL: the candidate row is locked with
    `FOR UPDATE SKIP LOCKED`, so concurrent workers each get a different job without waiting on
    one another; SQLite: the statement is one write transaction, so claims are serialised.
    One round trip and one commit per claim."""
    job = _claim_next_uncommitted(db, worker, stale)
    db.commit()
    return job


def _claim_next_uncommitted(db: Session, worker: str, stale: timedelta | None) -> Job | None:
    now = utcnow()
    stale = STALE_AFTER if stale is None else stale
    return db.scalars(_claim_next_statement(), {
        "now": now, "stale_before": now - stale, "worker": worker}).one_or_none()


@cache
def _claim_next_statement():
    """Built once (the workers' hot path); the time and the worker are parameters."""
    now = bindparam("now", type_=Job.heartbeat_at.type)
    runnable = or_(Job.status == "waiting",
                   (Job.status == "running")
                   & (Job.heartbeat_at < bindparam("stale_before", type_=Job.heartbeat_at.type)))
    candidate = (select(Job.id).where(runnable).order_by(Job.created_at)
                 .limit(1).with_for_update(skip_locked=True).scalar_subquery())
    return (update(Job).where(Job.id == candidate, runnable)
            .values(status="running", worker=bindparam("worker", type_=Job.worker.type),
                    heartbeat_at=now, started_at=now, attempts=Job.attempts + 1)
            .returning(Job)
            .execution_options(synchronize_session=False, populate_existing=True))


def run_job(env: JobEnvironment, job_id: uuid.UUID, worker: str | None = None) -> bool:
    """Claim and run one job to its end; False when someone else has it (or it is over)."""
    worker = worker or worker_name()
    with env.sessions() as db:
        job = _claim(db, job_id, worker, stale_after(env.settings))
        if job is None:
            return False
        _execute(env, db, job, worker)
        db.commit()
    return True


def _execute(env: JobEnvironment, db: Session, job: Job, worker: str) -> None:
    """Run a job this worker has claimed and record how it ended. The record of its end (with
    the handler's last changes) is flushed, not committed: the caller commits it."""
    job_id = job.id
    handler = _HANDLERS.get(job.kind)
    if handler is None:
        mark_finished(db, job, "failed", f"no handler for jobs of kind {job.kind!r}")
        return
    if job.attempts > MAX_ATTEMPTS:
        mark_finished(db, job, "failed", f"gave up after {MAX_ATTEMPTS} attempts (the "
                      "process running it stopped each time)")
        return
    if job.cancel_requested:
        mark_finished(db, job, "cancelled", "cancelled before it started")
        return
    try:
        handler(JobContext(env, db, job, worker))
        mark_finished(db, job, "completed")
    except JobCancelled:
        db.rollback()
        job = db.get(Job, job_id)
        assert job is not None
        mark_finished(db, job, "cancelled", "cancelled while running")
    except Exception as exc:  # a job must end visibly, whatever broke
        log.exception("job %s (%s) failed", job_id, job.kind)
        db.rollback()
        job = db.get(Job, job_id)
        assert job is not None
        message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        mark_finished(db, job, "failed", message)


def runnable_job_ids(db: Session, limit: int = 20,
                     stale: timedelta | None = None) -> list[uuid.UUID]:
    """Waiting jobs, and running ones whose worker stopped beating, oldest first."""
    now = utcnow()
    stale = STALE_AFTER if stale is None else stale
    return list(db.scalars(select(Job.id).where(_runnable(now, stale))
                           .order_by(Job.created_at).limit(limit)))


def run_pending(env: JobEnvironment) -> int:
    """Run every job that is waiting or was left behind, one claim at a time, until none is
    left; the number this call ran.

    The end of one job and the claim of the next are committed together: one commit per job
    (on PostgreSQL, one WAL flush), and the claim is still durable before the job runs."""
    ran = 0
    worker = worker_name()
    stale = stale_after(env.settings)
    with env.sessions() as db:
        job = claim_next(db, worker, stale)
        while job is not None:
            if job.kind in _LONG_RUNNING:
                _run_in_own_thread(env, job.id, worker)
            else:
                _execute(env, db, job, worker)
            ran += 1
            # The next handler starts from an empty session (its end is flushed already).
            db.expunge_all()
            job = _claim_next_uncommitted(db, worker, stale)
            db.commit()
    return ran


def _run_in_own_thread(env: JobEnvironment, job_id: uuid.UUID, worker: str) -> None:
    """Run a claimed (committed) long-running job in a thread with its own session; it beats
    its heart there, so it is taken over only if this process stops."""
    def run() -> None:
        with env.sessions() as db:
            job = db.get(Job, job_id)
            if job is not None:
                _execute(env, db, job, worker)
                db.commit()

    threading.Thread(target=run, name=f"cryovault-job-{job_id}", daemon=True).start()


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

    @property
    def alive(self) -> bool:
        """Whether the thread runs (the Health tab shows a portal whose worker stopped)."""
        return self._thread.is_alive()

    def _empty_trash(self) -> None:
        """Remove from the storages the bytes the jobs released (deletions, the old copies of
        moved files), as a request's own run of a job does (web/background.py); otherwise a
        `cryovault worker` would leave them until the next cleanup pass."""
        if self.env.storages is None:
            return
        from cryovault.storage.cleanup import empty_trash

        empty_trash(self.env.sessions, self.env.storages)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        tidy = True  # at start: what a worker killed after its job but before tidying left
        while not self._stop.is_set():
            try:
                if run_pending(self.env) or tidy:
                    self._empty_trash()
                    tidy = False
            except Exception:  # the database may be briefly unreachable: keep going
                log.exception("the job worker hit an error; retrying")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
