"""The deletion window (SPEC WS-6, JOB-2, AC-5): from the moment deletion is requested until its
job has run, the subtree is greyed out in listings and refuses every use with 409."""

from __future__ import annotations

import uuid

import pytest

from cryovault.errors import Conflict, Forbidden, NotFound
from cryovault.jobs.runner import JobEnvironment, run_job
from cryovault.workspace.deletion import request_deletion
from tests.helpers import assert_error

ELEMENTS = "/api/v1/elements"
JOBS = "/api/v1/jobs"


def url(element: dict, suffix: str = "") -> str:
    return f"{ELEMENTS}/{element['id']}{suffix}"


def request(sessions, user, element: dict) -> uuid.UUID:
    """Request the deletion as the API does, without running its job."""
    with sessions() as db:
        job = request_deletion(db, user.actor, uuid.UUID(element["id"]))
        db.commit()
        return job.id


def job_of(user, job_id: uuid.UUID) -> dict | None:
    response = user.get(JOBS)
    assert response.status_code == 200, response.text
    return next((j for j in response.json()["items"] if j["id"] == str(job_id)), None)


def test_deletion_window_greys_out_and_refuses_use(sessions, alice):
    folder = alice.create("folder", "Project")
    workflow = alice.create("workflow", "Doomed", folder["id"], workflow_type="spa")
    sibling = alice.create("workflow", "Sibling", folder["id"], workflow_type="free")
    imaging = alice.children(workflow["id"])[1]
    dataset = alice.create("dataset", "Run", imaging["id"])
    file = alice.create("file", "a.mrc", dataset["id"])

    job_id = request(sessions, alice, workflow)

    # Still listed in its parent, greyed out.
    listed = {e["id"]: e for e in alice.children(folder["id"])}
    assert set(listed) == {workflow["id"], sibling["id"]}
    assert listed[workflow["id"]]["status"] == "deleting"
    assert listed[workflow["id"]]["name"] == "Doomed"
    assert listed[sibling["id"]]["status"] is None

    # It and everything below refuse to open.
    for element in (workflow, imaging, dataset, file):
        assert_error(alice.get(url(element)), 409, "deleted", case=element["kind"])
        assert_error(alice.get(url(element, "/path")), 409, case=element["kind"])
        assert_error(alice.get(url(element, "/sharing")), 409, case=element["kind"])
    for parent in (workflow, imaging, dataset):
        response = alice.get(ELEMENTS, params={"parent_id": parent["id"]})
        assert_error(response, 409, "deleted", case=parent["kind"])

    # Nothing can be created inside, edited, shared or deleted again.
    for kind, parent, extra in [("step", workflow, {}), ("dataset", imaging, {}),
                                ("file", imaging, {}), ("file", dataset, {})]:
        response = alice.post(ELEMENTS, json={"kind": kind, "name": "new",
                                              "parent_id": parent["id"], **extra})
        assert_error(response, 409, "deleted", case=(kind, parent["kind"]))
    assert_error(alice.patch(url(workflow), json={"name": "Saved"}), 409, "deleted")
    assert_error(alice.patch(url(workflow), json={"description": "x"}), 409)
    assert_error(alice.patch(url(imaging), json={"status": "completed"}), 409)
    assert_error(alice.patch(url(dataset), json={"name": "Renamed"}), 409)
    assert_error(alice.put(url(workflow, "/sharing"), json={
        "privacy": "private", "grants": [{"username": "alice", "level": "owner"}]}), 409)
    assert_error(alice.delete(url(workflow)), 409, "deleted")
    assert_error(alice.delete(url(dataset)), 409)

    # The rest of the folder is untouched and usable.
    assert alice.get(url(folder)).status_code == 200
    assert alice.get(url(sibling)).status_code == 200
    assert alice.create("step", "Still works", sibling["id"])["kind"] == "step"

    job = job_of(alice, job_id)
    assert job is not None and job["status"] in ("waiting", "running")
    assert job["element_id"] == workflow["id"]
    assert job["element_name"] == "Doomed"

    run_job(JobEnvironment(sessions), job_id)

    for element in (workflow, imaging, dataset, file):
        assert_error(alice.get(url(element)), 404, case=element["kind"])
    assert [e["id"] for e in alice.children(folder["id"])] == [sibling["id"]]
    job = job_of(alice, job_id)
    assert job is not None and job["status"] == "completed"
    assert alice.get(f"{JOBS}/{job_id}").json()["status"] == "completed"


def test_deleting_a_root_element_is_greyed_out_at_the_root(sessions, alice):
    folder = alice.create("folder", "Root doomed")
    keep = alice.create("folder", "Root kept")
    job_id = request(sessions, alice, folder)
    statuses = {e["name"]: e["status"] for e in alice.children()}
    assert statuses == {"Root doomed": "deleting", "Root kept": None}
    assert_error(alice.get(url(folder)), 409)
    run_job(JobEnvironment(sessions), job_id)
    assert [e["id"] for e in alice.children()] == [keep["id"]]


def test_a_second_request_during_the_window_is_409(sessions, alice):
    folder = alice.create("folder", "Once")
    request(sessions, alice, folder)
    with sessions() as db, pytest.raises(Conflict):
        request_deletion(db, alice.actor, uuid.UUID(folder["id"]))
    assert_error(alice.delete(url(folder)), 409)


def test_pending_deletion_job_is_a_private_entity_to_others(sessions, alice, bob, make_user):
    carol = make_user("carol")
    secret = alice.create("folder", "Secret project")
    shared = alice.create("folder", "Shared project")
    response = alice.put(url(shared, "/sharing"), json={
        "privacy": "private", "grants": [{"username": "alice", "level": "owner"},
                                         {"username": "carol", "level": "viewer"}]})
    assert response.status_code == 200, response.text

    secret_job = request(sessions, alice, secret)
    shared_job = request(sessions, alice, shared)

    # Pending jobs of everybody are listed; the element is named only to those who see it.
    seen_by_bob = job_of(bob, secret_job)
    assert seen_by_bob is not None
    assert seen_by_bob["status"] in ("waiting", "running")
    assert seen_by_bob["element_name"] == "Private entity"
    assert seen_by_bob["element_id"] is None
    assert "Secret project" not in bob.get(JOBS).text
    assert str(secret["id"]) not in bob.get(JOBS).text
    single = bob.get(f"{JOBS}/{secret_job}")
    assert single.status_code == 200
    assert single.json()["element_name"] == "Private entity"
    assert single.json()["element_id"] is None

    seen_by_carol = job_of(carol, shared_job)
    assert seen_by_carol["element_name"] == "Shared project"
    assert seen_by_carol["element_id"] == shared["id"]
    assert job_of(carol, secret_job)["element_name"] == "Private entity"

    own = job_of(alice, secret_job)
    assert own["element_name"] == "Secret project"
    assert own["element_id"] == secret["id"]

    # Once finished, a job is listed for its owner only.
    run_job(JobEnvironment(sessions), secret_job)
    run_job(JobEnvironment(sessions), shared_job)
    assert job_of(bob, secret_job) is None
    assert job_of(carol, shared_job) is None
    assert_error(bob.get(f"{JOBS}/{secret_job}"), 404)
    assert job_of(alice, secret_job)["status"] == "completed"
    assert job_of(alice, shared_job)["status"] == "completed"


def test_only_owners_may_request_deletion(sessions, alice, bob, make_user):
    stranger = make_user("stranger")
    folder = alice.create("folder", "F")
    alice.put(url(folder, "/sharing"), json={
        "privacy": "private", "grants": [{"username": "alice", "level": "owner"},
                                         {"username": "bob", "level": "collaborator"}]})
    with sessions() as db:
        with pytest.raises(Forbidden):
            request_deletion(db, bob.actor, uuid.UUID(folder["id"]))
        with pytest.raises(NotFound):
            request_deletion(db, stranger.actor, uuid.UUID(folder["id"]))
    assert alice.get(url(folder)).json()["status"] is None
