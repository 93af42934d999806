"""Export of a dataset (SPEC JOB-4, OPS-3): checked copies under the export folder, the path
rules, a crash and a rerun."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import timedelta

import pytest

from cryovault.db.jobs import Job
from cryovault.jobs.runner import JobEnvironment, run_job
from cryovault.storage import transfer
from tests.helpers import assert_error
from tests.storage.test_files_api import dataset, upload  # noqa: F401 (fixture)


def exported(app) -> dict[str, bytes]:
    """Every file in the export storage but its staging area, by key."""
    root = app.state.storages.get("export").root
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*")
            if path.is_file() and path.relative_to(root).parts[0] != "tmp"}


def test_export_files_and_metadata(alice, bob, dataset, app):  # noqa: F811
    first = upload(alice, dataset["id"], "FoilHole_1.mrc", b"1" * 3000)
    upload(alice, dataset["id"], "FoilHole_2.mrc", b"2" * 3000)
    alice.patch("/api/v1/preferences/platform", json={"export_public_path": "/mnt/export"})
    assert_error(bob.post(f"/api/v1/elements/{dataset['id']}/export", json={}), 404)
    response = alice.post(f"/api/v1/elements/{dataset['id']}/export",
                          json={"folder": "2026/ apoferritin /", "files": True,
                                "metadata": True})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["target"].startswith("2026/apoferritin/Grid 1_")
    job = alice.get(f"/api/v1/jobs/{body['job_id']}").json()
    assert (job["status"], job["progress"]) == ("completed", 1.0), job
    files = exported(app)
    target = body["target"]
    assert files[f"{target}/FoilHole_1.mrc"] == b"1" * 3000
    assert files[f"{target}/FoilHole_2.mrc"] == b"2" * 3000
    document = json.loads(files[f"{target}/Grid 1.json"])
    assert document["element"]["id"] == dataset["id"]
    # the source is untouched and still verified
    assert alice.post(f"/api/v1/files/{first['id']}/verify").json()["file"]["integrity"] == "ok"


def test_metadata_only(alice, dataset, app):  # noqa: F811
    upload(alice, dataset["id"], "a.mrc", b"a")
    body = alice.post(f"/api/v1/elements/{dataset['id']}/export",
                      json={"files": False}).json()
    assert sorted(k.rsplit("/", 1)[1] for k in exported(app)) == ["Grid 1.json"]
    assert alice.get(f"/api/v1/jobs/{body['job_id']}").json()["status"] == "completed"


@pytest.mark.parametrize("folder", ["a:b", "star*", "what?", "back\\slash", "<x>", "a|b",
                                    "../escape", "a/../../b", "/absolute/path", "nul\x00"])
def test_bad_export_folders_are_refused(alice, dataset, folder):  # noqa: F811
    response = alice.post(f"/api/v1/elements/{dataset['id']}/export", json={"folder": folder})
    assert_error(response, 422, case=folder)
    assert alice.get("/api/v1/jobs").json()["items"] == []


def test_export_rules(alice, bob, dataset):  # noqa: F811
    workflow_id = alice.get(f"/api/v1/elements/{dataset['id']}/path").json()[0]["id"]
    assert_error(alice.post(f"/api/v1/elements/{workflow_id}/export", json={}), 422,
                 "only datasets")
    assert_error(alice.post(f"/api/v1/elements/{dataset['id']}/export",
                            json={"files": False, "metadata": False}), 422, "choose")
    alice.put(f"/api/v1/elements/{workflow_id}/sharing", json={
        "privacy": "private", "grants": [{"username": "alice", "level": "owner"},
                                         {"username": "bob", "level": "viewer"}]})
    assert_error(bob.post(f"/api/v1/elements/{dataset['id']}/export", json={}), 403,
                 "collaborator")


def test_symlink_escape_is_refused(alice, dataset, app, tmp_path):  # noqa: F811
    upload(alice, dataset["id"], "a.mrc", b"a")
    root = app.state.storages.get("export").root
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    body = alice.post(f"/api/v1/elements/{dataset['id']}/export",
                      json={"folder": "escape"}).json()
    job = alice.get(f"/api/v1/jobs/{body['job_id']}").json()
    assert job["status"] == "failed" and "outside" in job["message"]
    assert list(outside.iterdir()) == []


def test_a_crash_midway_and_a_rerun(alice, dataset, app, monkeypatch):  # noqa: F811
    data = {f"m{n}.mrc": hashlib.sha256(bytes([n])).digest() * 1000 for n in range(4)}
    for name, content in data.items():
        upload(alice, dataset["id"], name, content)
    from cryovault.lifecycle.export import request_export

    with app.state.sessions() as db:
        plan = request_export(db, alice.actor, app.state.storages, uuid.UUID(dataset["id"]))
        db.commit()
    real_copy = transfer.copy_verified
    calls = {"n": 0}

    def dying_copy(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise SystemExit("killed")  # the process dies while copying the third file
        return real_copy(*args, **kwargs)

    monkeypatch.setattr("cryovault.lifecycle.export.copy_verified", dying_copy)
    env = JobEnvironment(app.state.sessions, app.state.settings, app.state.storages)
    with pytest.raises(SystemExit):
        run_job(env, plan.job.id)
    assert len([k for k in exported(app) if k.endswith(".mrc")]) == 2
    copied: list[str] = []

    def counting_copy(*args, **kwargs):
        copied.append(args[3])
        return real_copy(*args, **kwargs)

    monkeypatch.setattr("cryovault.lifecycle.export.copy_verified", counting_copy)
    monkeypatch.setattr("cryovault.jobs.runner.STALE_AFTER", timedelta(seconds=-1))
    assert run_job(env, plan.job.id)
    with app.state.sessions() as db:
        assert db.get(Job, plan.job.id).status == "completed"
    assert len(copied) == 2  # the rerun copies only what was missing
    files = exported(app)
    for name, content in data.items():
        assert files[f"{plan.target}/{name}"] == content
