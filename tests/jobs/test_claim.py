"""Claiming jobs (SPEC JOB-1): `run_pending` claims the oldest runnable job one at a time
(PostgreSQL: FOR UPDATE SKIP LOCKED), so workers running side by side each take different jobs
and every job runs exactly once, oldest first; the end of a job and the claim of the next are
committed together."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import timedelta

from sqlalchemy import select, update

from cryovault.db.base import utcnow
from cryovault.db.jobs import Job
from cryovault.jobs.records import create_job
from cryovault.jobs.runner import (
    JobContext,
    JobEnvironment,
    claim_next,
    register_handler,
    run_pending,
)

RAN: list[uuid.UUID] = []
LOCK = threading.Lock()


def _record(context: JobContext) -> None:
    time.sleep(0.002)
    with LOCK:
        RAN.append(context.job.id)


register_handler("test-claim", _record)


def queue(sessions, actor, count: int) -> list[uuid.UUID]:
    with sessions() as db:
        ids = []
        for n in range(count):
            job = create_job(db, "test-claim", actor, None)
            job.created_at = utcnow() + timedelta(milliseconds=n)  # a strict order
            ids.append(job.id)
        db.commit()
    return ids


def test_workers_side_by_side_run_every_job_once(sessions, alice):
    RAN.clear()
    ids = queue(sessions, alice.actor, 60)
    env = JobEnvironment(sessions)
    counts: list[int] = []
    threads = [threading.Thread(target=lambda: counts.append(run_pending(env)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sum(counts) == 60
    assert Counter(RAN) == Counter(ids)  # each exactly once
    with sessions() as db:
        jobs = db.scalars(select(Job).where(Job.id.in_(ids))).all()
    assert {(j.status, j.attempts) for j in jobs} == {("completed", 1)}


def test_oldest_first_and_stale_jobs_are_taken_over(sessions, alice):
    RAN.clear()
    ids = queue(sessions, alice.actor, 3)
    with sessions() as db:  # the newest was being run by a worker that died
        db.execute(update(Job).where(Job.id == ids[2]).values(
            status="running", worker="dead:1:1", attempts=1,
            heartbeat_at=utcnow() - timedelta(minutes=5)))
        db.commit()
    with sessions() as db:  # a job running with a fresh heartbeat is not claimable
        busy = create_job(db, "test-claim", alice.actor, None)
        busy.status, busy.heartbeat_at, busy.worker = "running", utcnow(), "alive:1:1"
        db.commit()
        first = claim_next(db, "me:1:1")
        assert first is not None and first.id == ids[0] and first.worker == "me:1:1"
        assert first.status == "running" and first.attempts == 1
    assert run_pending(JobEnvironment(sessions)) == 2
    assert list(RAN) == [ids[1], ids[2]]
    with sessions() as db:
        taken_over = db.get(Job, ids[2])
        assert (taken_over.status, taken_over.attempts) == ("completed", 2)
        assert db.get(Job, busy.id).status == "running"
        assert claim_next(db, "me:1:1") is None
