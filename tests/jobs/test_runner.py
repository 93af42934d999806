"""The job runtime (SPEC JOB-1, JOB-2, OPS-3): one claim per job, heartbeats, jobs of dead
workers claimed again or failed visibly, cancellation, workers in other processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from cryovault.db.base import utcnow
from cryovault.db.jobs import Job
from cryovault.jobs.records import create_job
from cryovault.jobs.runner import (
    MAX_ATTEMPTS,
    STALE_AFTER,
    JobContext,
    JobEnvironment,
    Worker,
    register_handler,
    run_job,
    run_pending,
)
from tests.helpers import assert_error

RAN: list[tuple[str, uuid.UUID]] = []


def _count(context: JobContext) -> None:
    time.sleep(0.05)
    RAN.append((context.worker, context.job.id))


def _slow(context: JobContext) -> None:
    for step in range(200):
        context.checkpoint(step / 200)
        time.sleep(0.02)


def _broken(context: JobContext) -> None:
    raise ValueError("the export folder is full")


register_handler("test-count", _count)
register_handler("test-slow", _slow)
register_handler("test-broken", _broken)


def new_job(sessions, actor, kind: str) -> uuid.UUID:
    with sessions() as db:
        job = create_job(db, kind, actor, None, {"note": "test"})
        db.commit()
        return job.id


def status_of(sessions, job_id) -> Job:
    with sessions() as db:
        return db.get(Job, job_id)


def test_a_job_runs_once_however_many_try(sessions, alice):
    RAN.clear()
    env = JobEnvironment(sessions)
    job_id = new_job(sessions, alice.actor, "test-count")
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(run_job(env, job_id)))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, False, True]
    assert [j for _, j in RAN] == [job_id]
    job = status_of(sessions, job_id)
    assert (job.status, job.attempts, job.progress) == ("completed", 1, 1.0)
    assert run_job(env, job_id) is False  # finished jobs are never run again


def test_failures_are_recorded(sessions, alice):
    job_id = new_job(sessions, alice.actor, "test-broken")
    run_job(JobEnvironment(sessions), job_id)
    job = status_of(sessions, job_id)
    assert job.status == "failed" and "the export folder is full" in job.message


def test_a_dead_workers_job_is_claimed_again_then_failed_visibly(sessions, alice):
    RAN.clear()
    env = JobEnvironment(sessions)
    job_id = new_job(sessions, alice.actor, "test-count")
    stale = utcnow() - STALE_AFTER - timedelta(seconds=1)
    with sessions() as db:  # as if a worker claimed it and died
        db.execute(update(Job).where(Job.id == job_id).values(
            status="running", worker="dead:1:1", heartbeat_at=stale, attempts=1))
        db.commit()
    assert run_pending(env) == 1
    job = status_of(sessions, job_id)
    assert (job.status, job.attempts) == ("completed", 2)
    # a job whose workers keep dying is failed after MAX_ATTEMPTS, not retried forever
    other = new_job(sessions, alice.actor, "test-count")
    with sessions() as db:
        db.execute(update(Job).where(Job.id == other).values(
            status="running", heartbeat_at=stale, attempts=MAX_ATTEMPTS))
        db.commit()
    run_pending(env)
    job = status_of(sessions, other)
    assert job.status == "failed" and "attempts" in job.message
    # a running job with a fresh heartbeat is left to its worker
    busy = new_job(sessions, alice.actor, "test-count")
    with sessions() as db:
        db.execute(update(Job).where(Job.id == busy).values(
            status="running", heartbeat_at=utcnow(), attempts=1))
        db.commit()
    assert run_job(env, busy) is False


def test_cancel_waiting_and_running_jobs(sessions, alice, bob, make_user):
    env = JobEnvironment(sessions)
    waiting = new_job(sessions, alice.actor, "test-count")
    assert_error(bob.post(f"/api/v1/jobs/{waiting}/cancel"), 403, "only the jobs you started")
    cancelled = alice.post(f"/api/v1/jobs/{waiting}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert run_job(env, waiting) is False
    assert_error(alice.post(f"/api/v1/jobs/{waiting}/cancel"), 409, "already ended")

    running = new_job(sessions, alice.actor, "test-slow")
    thread = threading.Thread(target=run_job, args=(env, running))
    thread.start()
    deadline = time.monotonic() + 10
    while status_of(sessions, running).progress == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    admin = make_user("root", roles=["workflow-admin"])
    assert admin.post(f"/api/v1/jobs/{running}/cancel").status_code == 200  # admins: any
    thread.join(timeout=10)
    job = status_of(sessions, running)
    assert job.status == "cancelled" and 0 < job.progress < 1


def test_remove_finished_jobs_from_ones_list(sessions, alice, bob):
    env = JobEnvironment(sessions)
    first, second = (new_job(sessions, alice.actor, "test-count") for _ in range(2))
    pending = new_job(sessions, alice.actor, "test-count")
    run_job(env, first)
    run_job(env, second)
    listed = {j["id"] for j in alice.get("/api/v1/jobs").json()["items"]}
    assert {str(first), str(second), str(pending)} <= listed
    assert_error(alice.delete(f"/api/v1/jobs/{pending}"), 409, "cancel it first")
    assert_error(bob.delete(f"/api/v1/jobs/{first}"), 404)  # not his to see
    assert alice.delete(f"/api/v1/jobs/{first}").status_code == 204
    listed = {j["id"] for j in alice.get("/api/v1/jobs").json()["items"]}
    assert str(first) not in listed and str(second) in listed
    assert_error(alice.get(f"/api/v1/jobs/{first}"), 404)
    assert alice.delete("/api/v1/jobs").status_code == 204
    listed = {j["id"] for j in alice.get("/api/v1/jobs").json()["items"]}
    assert listed == {str(pending)}


def test_worker_thread_runs_waiting_jobs(sessions, alice):
    RAN.clear()
    worker = Worker(JobEnvironment(sessions), poll_seconds=0.1).start()
    try:
        ids = [new_job(sessions, alice.actor, "test-count") for _ in range(3)]
        worker.wake()
        deadline = time.monotonic() + 20
        while any(status_of(sessions, i).status != "completed" for i in ids):
            assert time.monotonic() < deadline, "the worker did not run the jobs"
            time.sleep(0.05)
    finally:
        worker.stop()


def test_deletion_survives_a_killed_worker_process(database_url, tmp_path, app, alice):
    """What a kill -9 of a worker in the middle of the deletion job leaves behind — a running
    job whose heartbeat has gone stale — is taken over by a `cryovault worker` process, and
    the element is gone in the end."""
    workflow = alice.create("workflow", "Doomed", workflow_type="free")
    for n in range(3):
        alice.create("step", f"step {n}", workflow["id"])
    with app.state.sessions() as db:
        from cryovault.workspace.deletion import request_deletion

        job = request_deletion(db, alice.actor, uuid.UUID(workflow["id"]))
        db.commit()
        job_id = job.id
    env = {**os.environ, "CRYOVAULT_DATA_DIR": str(tmp_path),
           "CRYOVAULT_DATABASE_URL": database_url}
    cli = Path(sys.executable).parent / "cryovault"
    with app.state.sessions() as db:
        db.execute(update(Job).where(Job.id == job_id).values(
            status="running", worker="killed:1:1", attempts=1,
            heartbeat_at=utcnow() - STALE_AFTER - timedelta(seconds=1)))
        db.commit()
    process = subprocess.Popen([cli, "worker", "--poll-seconds", "0.2"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while status_of(app.state.sessions, job_id).status != "completed":
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the worker did not take over the job"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    assert_error(alice.get(f"/api/v1/elements/{workflow['id']}"), 404)


@pytest.fixture(autouse=True)
def _clear():
    RAN.clear()


FOLLOWING = threading.Event()


def _follow_until_released(context: JobContext) -> None:
    """Like a live export: runs until something outside it says stop."""
    while not FOLLOWING.wait(0.05):
        context.checkpoint()


register_handler("test-follow", _follow_until_released, long_running=True)


def test_long_running_jobs_do_not_hold_up_the_others(sessions, alice):
    FOLLOWING.clear()
    follow = new_job(sessions, alice.actor, "test-follow")
    after = new_job(sessions, alice.actor, "test-count")
    worker = Worker(JobEnvironment(sessions), poll_seconds=0.1).start()
    try:
        deadline = time.monotonic() + 20
        while status_of(sessions, after).status != "completed":
            assert time.monotonic() < deadline, "a job queued after a long-running one waited"
            time.sleep(0.05)
        assert status_of(sessions, follow).status == "running"
        FOLLOWING.set()
        while status_of(sessions, follow).status != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        FOLLOWING.set()
        worker.stop()
