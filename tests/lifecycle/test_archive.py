"""Archive and restore (SPEC JOB-3, OPS-3): files move to the archive storage and back, checked
against their checksums; a crash in the middle leaves no file lost and a rerun completes."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

import pytest

from cryovault.db.files import StoredFile
from cryovault.db.jobs import Job
from cryovault.jobs.runner import JobEnvironment, run_job
from cryovault.storage import transfer
from cryovault.storage.cleanup import run_cleanup
from tests.helpers import assert_error
from tests.storage.test_files_api import dataset, upload  # noqa: F401 (fixture)
from tests.web.test_pages import login  # noqa: F401 (fixture)


def storage_of(app, file_id: str) -> str:
    with app.state.sessions() as db:
        return db.get(StoredFile, uuid.UUID(file_id)).storage


def files_in(app, name: str) -> list[str]:
    return sorted(o.key for o in app.state.storages.get(name).walk("files"))


def test_archive_and_restore(alice, bob, dataset, app, login):  # noqa: F811
    files = [upload(alice, dataset["id"], f"movie_{n}.tiff", bytes([n]) * 50_000)
             for n in range(3)]
    workflow_id = alice.get(f"/api/v1/elements/{dataset['id']}/path").json()[0]["id"]
    assert_error(bob.post(f"/api/v1/elements/{dataset['id']}/archive"), 404)
    response = alice.post(f"/api/v1/elements/{dataset['id']}/archive")
    assert response.status_code == 202
    job = alice.get(f"/api/v1/jobs/{response.json()['job_id']}").json()
    assert (job["kind"], job["status"], job["progress"]) == ("archive", "completed", 1.0)
    assert {storage_of(app, f["id"]) for f in files} == {"archive"}
    assert files_in(app, "primary") == [] and len(files_in(app, "archive")) == 3
    # archived files are still listed, marked, and readable
    page = login(alice).get(f"/workspace/{workflow_id}")
    assert 'class="badge archived"' in page.text
    assert alice.get(f"/api/v1/files/{files[1]['id']}/content").content == bytes([1]) * 50_000
    assert_error(alice.post(f"/api/v1/elements/{dataset['id']}/archive"), 422, "no files")

    restored = alice.post(f"/api/v1/elements/{workflow_id}/restore")
    assert restored.status_code == 202
    assert {storage_of(app, f["id"]) for f in files} == {"primary"}
    assert files_in(app, "archive") == [] and len(files_in(app, "primary")) == 3
    assert_error(alice.post(f"/api/v1/elements/{dataset['id']}/restore"), 422, "nothing")
    for file in files:
        verified = alice.post(f"/api/v1/files/{file['id']}/verify").json()["file"]
        assert verified["integrity"] == "ok"


def test_only_owners_archive_and_one_job_at_a_time(alice, bob, dataset, app):  # noqa: F811
    upload(alice, dataset["id"], "a.mrc", b"a" * 100)
    workflow_id = alice.get(f"/api/v1/elements/{dataset['id']}/path").json()[0]["id"]
    alice.put(f"/api/v1/elements/{workflow_id}/sharing", json={
        "privacy": "private", "grants": [{"username": "alice", "level": "owner"},
                                         {"username": "bob", "level": "collaborator"}]})
    assert_error(bob.post(f"/api/v1/elements/{dataset['id']}/archive"), 403, "owner")
    from cryovault.lifecycle.archive import ARCHIVE_JOB, request_move

    with app.state.sessions() as db:
        request_move(db, alice.actor, app.state.storages, uuid.UUID(dataset["id"]), ARCHIVE_JOB)
        db.commit()
    assert_error(alice.post(f"/api/v1/elements/{dataset['id']}/archive"), 409, "already")


def test_a_crash_midway_loses_nothing_and_a_rerun_completes(alice, dataset, app,  # noqa: F811
                                                            monkeypatch):
    data = {f"m{n}.mrc": hashlib.sha256(bytes([n])).digest() * 4000 for n in range(4)}
    files = {name: upload(alice, dataset["id"], name, content) for name, content in data.items()}
    from cryovault.lifecycle.archive import ARCHIVE_JOB, request_move

    with app.state.sessions() as db:
        job = request_move(db, alice.actor, app.state.storages, uuid.UUID(dataset["id"]),
                           ARCHIVE_JOB)
        db.commit()
        job_id = job.id
    real_copy = transfer.copy_verified
    calls = {"n": 0}

    def crashing_copy(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # the process dies while copying the third file
            real_copy(*args, **kwargs)  # the copy lands …
            raise SystemExit("killed")  # … but nothing after it happens
        return real_copy(*args, **kwargs)

    monkeypatch.setattr("cryovault.lifecycle.archive.copy_verified", crashing_copy)
    env = JobEnvironment(app.state.sessions, app.state.settings, app.state.storages)
    with pytest.raises(SystemExit):
        run_job(env, job_id)
    # every file is readable, from wherever its record says it is
    for name, file in files.items():
        assert alice.get(f"/api/v1/files/{file['id']}/content").content == data[name]
    storages = {storage_of(app, f["id"]) for f in files.values()}
    assert storages == {"primary", "archive"}
    # the job was left running by the dead process; once its heartbeat is stale it is rerun
    monkeypatch.setattr("cryovault.lifecycle.archive.copy_verified", real_copy)
    monkeypatch.setattr("cryovault.jobs.runner.STALE_AFTER", timedelta(seconds=-1))
    assert run_job(env, job_id) is True
    with app.state.sessions() as db:
        assert db.get(Job, job_id).status == "completed"
    assert {storage_of(app, f["id"]) for f in files.values()} == {"archive"}
    for name, file in files.items():
        assert alice.get(f"/api/v1/files/{file['id']}/content").content == data[name]
    run_cleanup(app.state.sessions, app.state.settings, app.state.storages,
                grace=timedelta(seconds=-1))
    assert files_in(app, "primary") == [] and len(files_in(app, "archive")) == 4


def test_a_corrupted_source_is_never_archived(alice, dataset, app):  # noqa: F811
    file = upload(alice, dataset["id"], "a.mrc", b"x" * 1000)
    storage = app.state.storages.primary
    with app.state.sessions() as db:
        key = db.get(StoredFile, uuid.UUID(file["id"])).key
    storage.local_path(key).write_bytes(b"y" * 1000)
    response = alice.post(f"/api/v1/elements/{dataset['id']}/archive")
    job = alice.get(f"/api/v1/jobs/{response.json()['job_id']}").json()
    assert job["status"] == "failed" and "SHA-256" in job["message"]
    assert storage_of(app, file["id"]) == "primary"  # the source is kept …
    assert files_in(app, "archive") == []             # … and nothing half-made is left
