"""Crash and resume (SPEC OPS-3, JOB-3, JOB-4, WS-6): a real `cryovault worker` process runs an
archive, export or deletion job and is killed with SIGKILL at random points; after every kill
the data is in the old or the new state (every registered file readable with its recorded
SHA-256 from exactly the storage its record names; an export folder holds only complete,
checked files; a subtree is whole or gone), and a fresh worker takes the job over once the dead
one's heartbeat is stale (`CRYOVAULT_JOB_STALE_SECONDS`) and completes it.

Kill points are random (seeded: set CRYOVAULT_CRASH_SEED to replay one; the seed is in the
failure message): "after the job's progress reached a random fraction" (the kill lands inside a
later file's copy, checksum or commit) or "a random delay after the worker claimed the job".
No hook inside the code under test is needed: the jobs checkpoint after every file, which is
what the first kind of kill point watches for."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cryovault.access.actor import Actor
from cryovault.db.elements import Element, ElementAncestor
from cryovault.db.files import StorageTrash, StoredFile
from cryovault.db.jobs import Job
from cryovault.jobs.runner import MAX_ATTEMPTS
from cryovault.workspace.elements import create_element
from tests.storage.test_files_api import upload

STALE_SECONDS = 2
FILES = 12
FILE_BYTES = 3 * 1024 * 1024
CLI = Path(sys.executable).parent / "cryovault"


@dataclass
class Crash:
    """One test's instance: the portal app (for the API and the invariants), its settings, a
    seeded random source, and the worker processes it started."""

    app: object
    env: dict[str, str]
    rng: random.Random
    seed: int
    log: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen] = field(default_factory=list)

    def start_worker(self) -> subprocess.Popen:
        process = subprocess.Popen([CLI, "worker", "--poll-seconds", "0.2"], env=self.env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.processes.append(process)
        return process

    def job(self, job_id: uuid.UUID) -> Job:
        with self.app.state.sessions() as db:
            return db.get(Job, job_id)

    def wait(self, job_id: uuid.UUID, process: subprocess.Popen, done, what: str,
             timeout: float = 90) -> Job:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if done(job):
                return job
            if process.poll() is not None:
                raise AssertionError(f"the worker exited ({process.returncode}): "
                                     f"{process.stderr.read().decode()[-3000:]}")
            assert time.monotonic() < deadline, f"{what}: {self.context(job)}"
            time.sleep(0.005)

    def kill_at_random_point(self, job_id: uuid.UUID, by_progress: float = 0.6,
                             max_delay_seconds: float = 0.25) -> bool:
        """Start a worker, kill -9 it at a random point of the job: with probability
        `by_progress` once the job's progress passed a random fraction, otherwise a random delay
        (up to `max_delay_seconds`) after the worker claimed it. True when the job was still
        running when the worker died."""
        process = self.start_worker()
        mine = f":{process.pid}:"

        def claimed(job: Job) -> bool:
            return mine in (job.worker or "") or job.status not in ("waiting", "running")

        if self.rng.random() < by_progress:
            fraction = self.rng.uniform(0.05, 0.85)
            point = f"progress ≥ {fraction:.2f}"
            at_claim = self.wait(job_id, process, claimed,
                                 "the worker did not claim the job").progress
            # A rerun shows the progress of the run before until its first checkpoint.
            self.wait(job_id, process, lambda j: j.progress != at_claim and j.progress >= fraction
                      or j.status not in ("waiting", "running"), f"waiting for {point}")
        else:
            delay = self.rng.uniform(0.0, max_delay_seconds)
            point = f"{delay * 1000:.0f} ms after the claim"
            self.wait(job_id, process, claimed, "the worker did not claim the job")
            time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        job = self.job(job_id)
        self.log.append(f"killed {point}: job {job.status} at {job.progress:.2f} "
                        f"(attempt {job.attempts})")
        return job.status == "running"

    def finish(self, job_id: uuid.UUID) -> Job:
        """A fresh worker takes the job over (after the stale heartbeat) and completes it."""
        process = self.start_worker()
        job = self.wait(job_id, process, lambda j: j.status in ("completed", "failed",
                                                                 "cancelled"),
                        "the job was not completed after the crash")
        # The worker empties the storage trash after the job: give it that moment.
        deadline = time.monotonic() + 30
        while self.trash() and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert job.status == "completed", self.context(job)
        self.log.append(f"completed by a fresh worker in "
                        f"{(job.finished_at - job.started_at).total_seconds() * 1000:.0f} ms")
        print(self.context())  # shown with the failure of a later check
        return job

    def trash(self) -> int:
        with self.app.state.sessions() as db:
            return db.scalar(select(func.count()).select_from(StorageTrash)) or 0

    def context(self, job: Job | None = None) -> str:
        state = f"; job {job.status} {job.progress:.2f}: {job.message}" if job else ""
        return f"seed {self.seed}: " + " / ".join(self.log) + state


@pytest.fixture
def crash(app, database_url, tmp_path):
    seed = int(os.environ.get("CRYOVAULT_CRASH_SEED") or random.randrange(1 << 30))
    env = {**os.environ, "CRYOVAULT_DATA_DIR": str(tmp_path),
           "CRYOVAULT_DATABASE_URL": database_url, "CRYOVAULT_AUTO_UPGRADE": "false",
           "CRYOVAULT_JOB_STALE_SECONDS": str(STALE_SECONDS)}
    instance = Crash(app, env, random.Random(seed), seed)
    yield instance
    for process in instance.processes:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)


def make_files(user, parent: str, rng: random.Random) -> dict[str, bytes]:
    """FILES files of distinct content, uploaded through the API; {file id: bytes}."""
    contents = {}
    for n in range(FILES):
        data = rng.randbytes(FILE_BYTES)
        contents[upload(user, parent, f"FoilHole_{n:03d}_fractions.tiff", data)["id"]] = data
    return contents


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_files_where_recorded(app, contents: dict[str, bytes], crash: Crash) -> set[str]:
    """Every registered file reads back, with its recorded SHA-256, from the storage its record
    names; the storages in use."""
    used = set()
    with app.state.sessions() as db:
        for file_id, data in contents.items():
            stored = db.get(StoredFile, uuid.UUID(file_id))
            assert stored is not None, f"file {file_id} lost its record ({crash.context()})"
            assert stored.sha256 == sha256(data), crash.context()
            storage = app.state.storages.get(stored.storage)
            read = b"".join(storage.read(stored.key))
            assert sha256(read) == stored.sha256, (
                f"{stored.storage}:{stored.key} does not hold the registered bytes "
                f"({crash.context()})")
            used.add(stored.storage)
    return used


def keys_in(app, storage: str, prefix: str = "files") -> list[str]:
    return sorted(o.key for o in app.state.storages.get(storage).walk(prefix))


def crash_twice(crash: Crash, job_id: uuid.UUID, check, **kill) -> int:
    """Kill a worker at two random points (MAX_ATTEMPTS - 1: the job may still be completed)
    and check the invariant after each kill; the number of kills that hit the running job."""
    assert MAX_ATTEMPTS >= 3
    hits = 0
    for _ in range(MAX_ATTEMPTS - 1):
        if crash.job(job_id).status == "completed":
            break
        hits += crash.kill_at_random_point(job_id, **kill)
        check()
    return hits


def test_archive_killed_at_random_points_then_completed(crash, app, alice):
    workflow = alice.create("workflow", "Apoferritin", workflow_type="free")
    step = alice.create("step", "Data", workflow["id"])
    dataset = alice.create("dataset", "Grid 1", step["id"])
    contents = make_files(alice, dataset["id"], crash.rng)
    from cryovault.lifecycle.archive import ARCHIVE_JOB, request_move

    with app.state.sessions() as db:  # the job is queued; the workers below run it
        job_id = request_move(db, alice.actor, app.state.storages, uuid.UUID(workflow["id"]),
                              ARCHIVE_JOB).id
        db.commit()

    def check() -> None:
        used = assert_files_where_recorded(app, contents, crash)
        assert used <= {"primary", "archive"}

    hits = crash_twice(crash, job_id, check)
    crash.finish(job_id)
    assert assert_files_where_recorded(app, contents, crash) == {"archive"}
    assert keys_in(app, "primary") == [], crash.context()  # the old bytes were removed
    assert len(keys_in(app, "archive")) == FILES
    assert crash.trash() == 0
    crash.log.append(f"{hits} kills hit the running job")


def test_export_killed_at_random_points_then_completed(crash, app, alice):
    workflow = alice.create("workflow", "Apoferritin", workflow_type="free")
    step = alice.create("step", "Data", workflow["id"])
    dataset = alice.create("dataset", "Grid 3", step["id"])
    contents = make_files(alice, dataset["id"], crash.rng)
    from cryovault.lifecycle.export import request_export

    with app.state.sessions() as db:
        plan = request_export(db, alice.actor, app.state.storages, uuid.UUID(dataset["id"]),
                              folder="2026/crash")
        db.commit()
        job_id, target = plan.job.id, plan.target
    export = app.state.storages.get("export")
    expected = {f"{target}/FoilHole_{n:03d}_fractions.tiff": data
                for n, data in enumerate(contents.values())}

    def check() -> None:
        # the sources are untouched; in the export folder only complete, checked files
        assert assert_files_where_recorded(app, contents, crash) == {"primary"}
        for key in keys_in(app, "export", target):
            if key.endswith(".json"):
                continue
            assert key in expected, (key, crash.context())
            assert sha256(b"".join(export.read(key))) == sha256(expected[key]), (
                f"{key} is in the export folder but incomplete ({crash.context()})")

    crash_twice(crash, job_id, check)
    crash.finish(job_id)
    check()
    exported = [k for k in keys_in(app, "export", target) if not k.endswith(".json")]
    assert exported == sorted(expected), crash.context()
    assert any(k.endswith(".json") for k in keys_in(app, "export", target))


def test_deletion_killed_at_random_points_then_completed(crash, app, alice):
    workflow = alice.create("workflow", "Doomed", workflow_type="free")
    step = alice.create("step", "Data", workflow["id"])
    dataset = alice.create("dataset", "Grid 9", step["id"])
    contents = make_files(alice, dataset["id"], crash.rng)
    # A subtree large enough that its deletion takes a while
    actor = Actor(alice.id, alice.username, frozenset())
    with app.state.sessions() as db:
        for n in range(40):
            folder = create_element(db, actor, kind="dataset", name=f"Grid {n:03d}",
                                    parent_id=uuid.UUID(step["id"]))
            for m in range(25):
                create_element(db, actor, kind="file", name=f"note_{m:03d}.txt",
                               parent_id=folder.id)
        db.commit()
    workflow_id = uuid.UUID(workflow["id"])
    with app.state.sessions() as db:
        total = db.scalar(select(func.count()).select_from(ElementAncestor)
                          .where(ElementAncestor.ancestor_id == workflow_id))
        from cryovault.workspace.deletion import request_deletion

        job_id = request_deletion(db, alice.actor, workflow_id).id
        db.commit()

    def check() -> None:
        with app.state.sessions() as db:
            left = db.scalar(select(func.count()).select_from(ElementAncestor)
                             .where(ElementAncestor.ancestor_id == workflow_id))
            exists = db.get(Element, workflow_id) is not None
            trashed = db.scalar(select(func.count()).select_from(StorageTrash)) or 0
        assert left in (0, total), f"{left} of {total} elements left ({crash.context()})"
        if exists:  # the old state: whole, every file readable, nothing queued for removal
            assert left == total
            assert_files_where_recorded(app, contents, crash)
            assert trashed == 0
        else:  # the new state: every record gone, the bytes queued or already removed
            with app.state.sessions() as db:
                ids = [uuid.UUID(i) for i in contents]
                assert db.scalar(select(func.count()).select_from(StoredFile)
                                 .where(StoredFile.element_id.in_(ids))) == 0

    crash_twice(crash, job_id, check, by_progress=0.0, max_delay_seconds=0.08)
    crash.finish(job_id)
    check()
    with app.state.sessions() as db:
        assert db.get(Element, workflow_id) is None
    assert keys_in(app, "primary") == [], crash.context()  # the bytes went with the records
    assert crash.trash() == 0

