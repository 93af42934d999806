"""Who sees which job, under which name, and who may cancel or remove it (SPEC JOB-2), for every
combination of viewer (owner, collaborator, viewer, outsider, admin), job status (waiting,
running, completed, failed, cancelled), starter and element (private or shared):

- pending jobs (waiting, running) are listed to everybody; the element's name (and id) only to
  those who may see the element (or started the job, or are workflow-admins), "Private entity"
  to the others;
- finished jobs (completed, failed, cancelled) are listed only to the user who started them;
- a job that has not ended is cancelled by its starter or an admin, 403 for anybody else; an
  ended one: 409 for its starter, 404 for anybody else (they do not see it);
- a finished job is removed from the list by its starter only; a pending one cannot be (409 for
  the starter, 403 for others who see it)."""

from __future__ import annotations

import itertools
import re
import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import update

from cryovault.db.base import utcnow
from cryovault.db.elements import Element
from cryovault.db.jobs import Job
from cryovault.jobs.records import PRIVATE_ENTITY, create_job
from tests.web.test_pages import HX, login, share  # noqa: F401 (fixture)

STATUSES = ("waiting", "running", "completed", "failed", "cancelled")
PENDING = ("waiting", "running")
VIEWERS = ("owner", "collaborator", "viewer", "outsider", "admin")


@dataclass(frozen=True)
class Case:
    job_id: uuid.UUID
    starter: str       # a VIEWERS key
    element: str       # "private" | "shared"
    status: str


@pytest.fixture
def world(make_user):
    users = {
        "owner": make_user("alice"),
        "collaborator": make_user("carol"),
        "viewer": make_user("dave"),
        "outsider": make_user("erin"),
        "admin": make_user("root", roles=["workflow-admin"]),
    }
    owner = users["owner"]
    private = owner.create("folder", "Secret project")
    shared = owner.create("folder", "Shared project")
    share(owner, shared, carol="collaborator", dave="viewer")
    return users, {"private": private, "shared": shared}


def make_job(sessions, user, element: dict, status: str) -> uuid.UUID:
    with sessions() as db:
        job = create_job(db, "archive", user.actor, db.get(Element, uuid.UUID(element["id"])))
        db.flush()
        values: dict[str, object] = {"status": status}
        if status != "waiting":
            values.update(worker="node1:1:1", heartbeat_at=utcnow(), started_at=utcnow(),
                          attempts=1)
        if status not in PENDING:
            values["finished_at"] = utcnow()
        db.execute(update(Job).where(Job.id == job.id).values(**values))
        db.commit()
        return job.id


def sees_element(viewer: str, starter: str, element: str) -> bool:
    if viewer in ("admin", starter):
        return True
    return element == "shared" and viewer in ("owner", "collaborator", "viewer") or \
        element == "private" and viewer == "owner"


def test_the_jobs_list_across_users(world, sessions, login):  # noqa: F811
    users, elements = world
    # Jobs started by the owner (who may start any job on both elements) and by the
    # collaborator (on the shared element only: the private one is not theirs to act on).
    cases = [Case(make_job(sessions, users[starter], elements[element], status), starter,
                  element, status)
             for starter, element, status in itertools.product(
                 ("owner", "collaborator"), ("private", "shared"), STATUSES)
             if not (starter == "collaborator" and element == "private")]
    for viewer, user in users.items():
        response = user.get("/api/v1/jobs")
        assert response.status_code == 200
        listed = {uuid.UUID(j["id"]): j for j in response.json()["items"]}
        expected = {c.job_id for c in cases
                    if c.status in PENDING or c.starter == viewer}
        assert set(listed) == expected, viewer
        for case in cases:
            if case.job_id not in listed:
                assert user.get(f"/api/v1/jobs/{case.job_id}").status_code == 404, (viewer,
                                                                                     case)
                continue
            job = listed[case.job_id]
            element = elements[case.element]
            assert job["status"] == case.status
            assert job["user"] == users[case.starter].username
            if sees_element(viewer, case.starter, case.element):
                assert (job["element_name"], job["element_id"]) == (element["name"],
                                                                    element["id"]), (viewer,
                                                                                     case)
            else:
                assert (job["element_name"], job["element_id"]) == (PRIVATE_ENTITY, None), (
                    viewer, case)
            assert user.get(f"/api/v1/jobs/{case.job_id}").json() == job
        # The portal's panel says the same, and never names what the viewer may not see.
        panel = login(user).get("/ui/jobs", headers=HX).text
        shown = {uuid.UUID(i) for i in
                 re.findall(r'data-job="([0-9a-f-]{36})"', panel)}
        assert shown == expected, viewer
        if viewer in ("collaborator", "viewer", "outsider"):
            assert "Secret project" not in panel and elements["private"]["id"] not in panel
            assert PRIVATE_ENTITY in panel
        else:
            assert PRIVATE_ENTITY not in panel


@pytest.mark.parametrize("status", STATUSES)
def test_cancel_across_users(world, sessions, status):
    users, elements = world
    for viewer, starter in itertools.product(VIEWERS, ("owner", "collaborator")):
        job_id = make_job(sessions, users[starter], elements["shared"], status)
        response = users[viewer].post(f"/api/v1/jobs/{job_id}/cancel")
        own = viewer == starter
        if status in PENDING:
            expected = 200 if own or viewer == "admin" else 403
        else:
            expected = 409 if own else 404
        assert response.status_code == expected, (viewer, starter, status, response.text)
        with sessions() as db:
            job = db.get(Job, job_id)
        if expected == 200:
            assert job.cancel_requested
            # a waiting job ends at once; a running one at its next checkpoint
            assert job.status == ("cancelled" if status == "waiting" else "running")
        else:
            assert not job.cancel_requested and job.status == status
            assert set(response.json()) == {"detail"}


@pytest.mark.parametrize("status", STATUSES)
def test_remove_across_users(world, sessions, status):
    users, elements = world
    for viewer, starter in itertools.product(VIEWERS, ("owner", "collaborator")):
        job_id = make_job(sessions, users[starter], elements["shared"], status)
        response = users[viewer].delete(f"/api/v1/jobs/{job_id}")
        own = viewer == starter
        # (pending, own job) → answer
        expected = {(True, True): 409, (True, False): 403,
                    (False, True): 204, (False, False): 404}[(status in PENDING, own)]
        assert response.status_code == expected, (viewer, starter, status, response.text)
        with sessions() as db:
            assert db.get(Job, job_id).dismissed is (expected == 204)


def test_remove_all_finished_removes_only_ones_own(world, sessions):
    users, elements = world
    mine = {s: make_job(sessions, users["owner"], elements["shared"], s) for s in STATUSES}
    theirs = {s: make_job(sessions, users["collaborator"], elements["shared"], s)
              for s in STATUSES}
    assert users["owner"].delete("/api/v1/jobs").status_code == 204
    with sessions() as db:
        for status, job_id in mine.items():
            assert db.get(Job, job_id).dismissed is (status not in PENDING)
        assert not any(db.get(Job, job_id).dismissed for job_id in theirs.values())
    listed = {uuid.UUID(j["id"]) for j in users["owner"].get("/api/v1/jobs").json()["items"]}
    assert listed == {mine["waiting"], mine["running"], theirs["waiting"], theirs["running"]}
    listed = {uuid.UUID(j["id"])
              for j in users["collaborator"].get("/api/v1/jobs").json()["items"]}
    assert listed == {mine["waiting"], mine["running"], *theirs.values()}
