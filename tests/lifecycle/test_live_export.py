"""Live export of a run in progress (SPEC JOB-5): new items are exported as they arrive while
the job runs in its own thread, "Update live export" changes the filter for items still to come,
one live export per run, cancel and "Stop all live export jobs" stop it, the run's completion
ends it, and a restart after a crash copies only what is missing."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
from sqlalchemy import update

from cryovault.db.jobs import Job
from cryovault.jobs.health import stop_live_exports
from cryovault.lifecycle import live_export
from tests.helpers import assert_error
from tests.lifecycle.test_run_archive_export import (
    FIXTURES,
    SQUARE,
    acquisition_name,
    add_acquisition,
    add_movie,
    crash_and_rerun,
    exported,
    filled_epu_run,
)

pytestmark = pytest.mark.skipif(not FIXTURES.exists(), reason="../shared/fixtures is missing")


@pytest.fixture
def live(app, monkeypatch):
    """Fast polling; at the end, every live export still going is stopped and its thread
    joined before the database goes away."""
    monkeypatch.setattr(live_export, "POLL_SECONDS", 0.05)
    yield
    with app.state.sessions() as db:
        db.execute(update(Job).where(Job.kind == live_export.LIVE_EXPORT_JOB)
                   .values(cancel_requested=True))
        db.commit()
    for thread in threading.enumerate():
        if thread.name.startswith("cryovault-live-export-"):
            thread.join(timeout=30)
            assert not thread.is_alive(), "a live export did not stop when cancelled"


def wait_for(condition, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def job_status(user, job_id: str) -> dict:
    return user.get(f"/api/v1/jobs/{job_id}").json()


def exported_names(app, target: str) -> set[str]:
    """The acquisitions with any file (or document) in the export."""
    found = set()
    for key in exported(app):
        if key.startswith(f"{target}/"):
            for n in range(10):
                if acquisition_name(n) in key:
                    found.add(acquisition_name(n))
    return found


def has_all(app, target: str, name: str, suffixes: tuple[str, ...]) -> bool:
    files = exported(app)
    return (all(f"{target}/{SQUARE}/Data/{name}{suffix}" in files for suffix in suffixes)
            and f"{target}/micrographs/{name}.json" in files)


def test_live_export_follows_the_run_with_a_filter_change(alice, app, live):
    run, data = filled_epu_run(alice, acquisitions=1)                   # A: completed
    b = add_acquisition(alice, run["id"], 1, data, movie=False)         # B: in progress
    url = f"/api/v1/elements/{run['id']}/live-export"
    response = alice.post(url, json={"folder": "live"})
    assert response.status_code == 202, response.text
    body = response.json()
    target, job_id = body["target"], body["job_id"]
    assert target.startswith("live/EPU run 1_") and body["public_path"] == target
    # what exists is exported first
    wait_for(lambda: all(f"{target}/{path}" in exported(app) for path in data.files),
             "the run's files")
    wait_for(lambda: has_all(app, target, b, (".xml", ".mrc")), "B's document")
    assert job_status(alice, job_id)["status"] == "running"
    state = alice.get(url).json()["live_export"]
    assert state["job_id"] == job_id and state["filter"] == {"status": "all"}
    assert_error(alice.post(url, json={}), 409, "already has a live export")

    c = add_acquisition(alice, run["id"], 2, data, movie=False)         # C: while running
    wait_for(lambda: has_all(app, target, c, (".xml", ".mrc")), "C, in progress")

    # Update live export: only completed items from now on
    patched = alice.patch(url, json={"filter": {"status": "completed"}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["filter"] == {"status": "completed"}
    assert alice.get(url).json()["live_export"]["filter"] == {"status": "completed"}
    d = add_acquisition(alice, run["id"], 3, data, movie=False)         # D: completes later
    e = add_acquisition(alice, run["id"], 4, data, movie=False)         # E: never completes
    time.sleep(0.5)  # several passes
    assert d not in exported_names(app, target)
    add_movie(alice, run["id"], 3, data)
    wait_for(lambda: has_all(app, target, d, (".xml", ".mrc", "_fractions.tiff")),
             "D once completed")
    # E was registered before D's movie, so the pass that took D saw E, and left it
    assert e not in exported_names(app, target)
    document = json.loads(exported(app)[f"{target}/micrographs/{d}.json"])
    assert document["status"] == "completed"

    # the run completes: a last pass, then the live export ends by itself
    assert alice.patch(f"/api/v1/elements/{run['id']}",
                       json={"status": "completed"}).status_code == 200
    wait_for(lambda: job_status(alice, job_id)["status"] == "completed", "the job's end")
    job = job_status(alice, job_id)
    assert job["progress"] == 1.0 and "run completed" in job["message"]
    assert alice.get(url).json()["live_export"] is None
    files = exported(app)
    assert exported_names(app, target) == {acquisition_name(n) for n in range(4)}
    for path, content in data.files.items():
        if e not in path:
            assert files[f"{target}/{path}"] == content
    final = json.loads(files[f"{target}/EPU run 1.json"])
    assert [m["name"] for m in final["run"]["micrographs"]] == [
        acquisition_name(n) for n in range(4)]
    assert final["run"]["filter"] == {"status": "completed"}
    # and a new live export may start (it ends at once: the run is completed)
    again = alice.post(url, json={"metadata": False})
    assert again.status_code == 202, again.text
    wait_for(lambda: job_status(alice, again.json()["job_id"])["status"] == "completed",
             "the second live export")


def test_cancel_and_stop_all(alice, make_user, app, live):
    admin = make_user("admin", roles=("workflow-admin",))
    run, data = filled_epu_run(alice, acquisitions=1)
    url = f"/api/v1/elements/{run['id']}/live-export"
    body = alice.post(url, json={"raw": False, "processed": True}).json()
    target = body["target"]
    wait_for(lambda: any(k.startswith(f"{target}/processed/") for k in exported(app)),
             "the first pass")
    assert not any(k.endswith(".xml") for k in exported(app))  # processed files only
    cancelled = alice.post(f"/api/v1/jobs/{body['job_id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    wait_for(lambda: job_status(alice, body["job_id"])["status"] == "cancelled", "the stop")
    add_acquisition(alice, run["id"], 5, data)
    time.sleep(0.3)
    assert acquisition_name(5) not in exported_names(app, target)
    assert alice.get(url).json()["live_export"] is None
    # the Health tab's "Stop all live export jobs" stops every one of them
    second = alice.post(url, json={}).json()
    wait_for(lambda: job_status(alice, second["job_id"])["status"] == "running", "a start")
    with app.state.sessions() as db:
        assert stop_live_exports(db, admin.actor) == 1
        db.commit()
    wait_for(lambda: job_status(alice, second["job_id"])["status"] == "cancelled",
             "stop all")


def test_deleting_the_run_ends_its_live_export(alice, app, live):
    run, _ = filled_epu_run(alice, acquisitions=1)
    body = alice.post(f"/api/v1/elements/{run['id']}/live-export", json={}).json()
    wait_for(lambda: job_status(alice, body["job_id"])["status"] == "running", "a start")
    assert alice.delete(f"/api/v1/elements/{run['id']}").status_code == 202
    wait_for(lambda: job_status(alice, body["job_id"])["status"] == "failed", "the end")
    assert "deleted" in job_status(alice, body["job_id"])["message"]


def test_live_export_rules(alice, bob, app):
    run, _ = filled_epu_run(alice, acquisitions=0)
    url = f"/api/v1/elements/{run['id']}/live-export"
    workflow = alice.create("workflow", "Notebook", workflow_type="free")
    step = alice.create("step", "Step", workflow["id"])
    free = alice.create("dataset", "Uploads", step["id"], dataset_type="free")
    assert_error(alice.post(f"/api/v1/elements/{free['id']}/live-export", json={}), 422,
                 "EPU or Tomo run", "Export instead")
    assert_error(alice.post(url, json={"filter": {"status": "good"}}), 422, "status")
    assert_error(alice.post(url, json={"filter": {"defocus_max": 3}}), 422, "defocus_max")
    assert_error(alice.post(url, json={"raw": False, "processed": False}), 422, "raw")
    assert_error(alice.post(url, json={"folder": "../up"}), 422, "..")
    assert_error(alice.patch(url, json={"filter": {"status": "completed"}}), 404,
                 "no live export is running")
    assert_error(bob.post(url, json={}), 404)
    alice.put(f"/api/v1/elements/{run['id']}/sharing", json={
        "privacy": "private", "everybody": None,
        "grants": [{"username": "alice", "level": "owner"}, {"username": "bob",
                                                               "level": "viewer"}]})
    assert_error(bob.post(url, json={}), 403, "collaborator")
    assert bob.get(url).json() == {"live_export": None}
    assert alice.get("/api/v1/jobs").json()["items"] == []


def test_a_restart_after_a_crash_copies_only_what_is_missing(alice, app, monkeypatch):
    run, data = filled_epu_run(alice, acquisitions=2)
    alice.patch(f"/api/v1/elements/{run['id']}", json={"status": "completed"})
    with app.state.sessions() as db:
        plan = live_export.request_live_export(db, alice.actor, app.state.storages,
                                               uuid.UUID(run["id"]), metadata=False)
        db.commit()
    copied = crash_and_rerun(app, monkeypatch, plan.job.id, die_at_copy=5, exported_then=4)
    total = len(data.files) + len(data.roles["integrated"])
    assert len(copied) == total - 4 and len(exported(app)) == total
