"""Cleanup of acquisition runs (SPEC JOB-6, SPA-3, ET-5): rules per dataset type, "Calculate
size" as a job with exact figures, a cleanup that removes exactly the selected bytes (never the
downscaled copies) while the items stay, permissions, and a crash between batches."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest

from cryovault.db.files import StorageTrash
from cryovault.db.jobs import Job
from cryovault.db.runs import Micrograph, RunFile, TiltSeries
from cryovault.jobs.runner import JobEnvironment, run_job
from cryovault.storage.cleanup import empty_trash
from tests.helpers import assert_error
from tests.ingest.test_registry_api import put
from tests.lifecycle.test_run_archive_export import (
    FIXTURES,
    add_acquisition,
    filled_epu_run,
    filled_tomo_run,
    job_of,
    run_files,
    stored_keys,
)

pytestmark = pytest.mark.skipif(not FIXTURES.exists(), reason="../shared/fixtures is missing")


def cleanup_of(user, run_id: str) -> dict:
    response = user.get(f"/api/v1/elements/{run_id}/cleanup")
    assert response.status_code == 200, response.text
    return response.json()


def share(owner, element_id: str, **levels: str) -> None:
    grants = [{"username": owner.username, "level": "owner"}]
    grants += [{"username": name, "level": level} for name, level in levels.items()]
    response = owner.put(f"/api/v1/elements/{element_id}/sharing",
                         json={"privacy": "private", "everybody": None, "grants": grants})
    assert response.status_code == 200, response.text


def test_rules_by_dataset_type(alice):
    run, _ = filled_epu_run(alice, acquisitions=0)
    rules = cleanup_of(alice, run["id"])["rules"]
    assert [r["name"] for r in rules] == ["movies", "integrated_images"]
    assert all(r["label"] and r["description"] for r in rules)
    # with the quality monitor, processed images too (SPA-3)
    for workflow_type in ("spa_qm", "spa_lp"):
        qm_run, _ = filled_epu_run(alice, workflow_type=workflow_type, acquisitions=0)
        assert [r["name"] for r in cleanup_of(alice, qm_run["id"])["rules"]] == [
            "movies", "integrated_images", "processed_images"]
    tomo, _ = filled_tomo_run(alice)
    assert [r["name"] for r in cleanup_of(alice, tomo["id"])["rules"]] == [
        "raw_movies", "raw_metadata", "processed"]
    assert cleanup_of(alice, run["id"])["sizes"] is None


def test_what_has_no_rules_or_other_rules_is_refused(alice):
    run, _ = filled_epu_run(alice, acquisitions=0)
    workflow = alice.create("workflow", "Notebook", workflow_type="free")
    step = alice.create("step", "Step", workflow["id"])
    free = alice.create("dataset", "Uploads", step["id"], dataset_type="free")
    for element in (free, workflow, step):
        assert_error(alice.get(f"/api/v1/elements/{element['id']}/cleanup"), 422,
                     "EPU runs and Tomo runs")
        assert_error(alice.post(f"/api/v1/elements/{element['id']}/cleanup/sizes"), 422,
                     "EPU runs and Tomo runs")
        assert_error(alice.post(f"/api/v1/elements/{element['id']}/cleanup",
                                json={"rules": ["movies"]}), 422, "EPU runs and Tomo runs")
    url = f"/api/v1/elements/{run['id']}/cleanup"
    assert_error(alice.post(url, json={"rules": ["raw_movies"]}), 422, "does not apply",
                 "EPU run", "movies, integrated_images")
    assert_error(alice.post(url, json={"rules": ["processed_images"]}), 422, "does not apply")
    assert_error(alice.post(url, json={"rules": []}), 422, "at least one")
    assert_error(alice.post(url, json={}), 422)
    assert alice.get("/api/v1/jobs").json()["items"] == []


def test_size_calculation_gives_exact_figures(alice, app):
    run, data = filled_epu_run(alice)
    response = alice.post(f"/api/v1/elements/{run['id']}/cleanup/sizes")
    job = job_of(alice, response)
    assert (job["kind"], job["status"]) == ("size_calculation", "completed"), job
    overview = cleanup_of(alice, run["id"])
    assert overview["sizes"] == {
        "movies": {"files": 3, "size_bytes": data.size_of("movie")},
        "integrated_images": {"files": 3, "size_bytes": data.size_of("integrated")},
    }
    assert overview["total_size_bytes"] == data.size_of("movie") + data.size_of("integrated")
    assert overview["sizes_computed_at"] and overview["sizes_job"] is None
    assert f"{3 + 3:,} files" in job["message"]
    # the figures are those of the moment: a new movie shows in the next calculation
    add_acquisition(alice, run["id"], 9, data)
    assert cleanup_of(alice, run["id"])["sizes"]["movies"]["files"] == 3
    job_of(alice, alice.post(f"/api/v1/elements/{run['id']}/cleanup/sizes"))
    assert cleanup_of(alice, run["id"])["sizes"]["movies"] == {
        "files": 4, "size_bytes": data.size_of("movie")}


def test_cleanup_removes_exactly_the_movies(alice, app):
    run, data = filled_epu_run(alice)
    before = run_files(app, run["id"])
    movies = {f.key for f in before if f.role == "movie"}
    job_of(alice, alice.post(f"/api/v1/elements/{run['id']}/cleanup/sizes"))
    response = alice.post(f"/api/v1/elements/{run['id']}/cleanup", json={"rules": ["movies"]})
    job = job_of(alice, response)
    assert (job["kind"], job["status"], job["progress"]) == ("cleanup", "completed", 1.0), job
    assert f"({data.size_of('movie'):,} bytes) removed" in job["message"]
    after = run_files(app, run["id"])
    assert {f.key for f in after} == {f.key for f in before} - movies
    # the bytes are gone from the storage, everything else is still there
    assert stored_keys(app, "primary") == sorted(f.key for f in after)
    with app.state.sessions() as db:
        assert db.query(StorageTrash).count() == 0
    for row in after:  # downscaled copies included
        assert alice.get(f"/api/v1/run-files/{row.id}/content").status_code == 200
    assert sum(1 for f in after if f.role == "downscaled") == 3
    # the micrographs stay completed and say their movie was cleaned up
    page = alice.get(f"/api/v1/datasets/{run['id']}/micrographs").json()
    assert page["counts"] == {"completed": 3, "in_progress": 0, "failed": 0}
    assert all(item["metadata"]["cleaned"] == ["movie"] for item in page["items"])
    assert all(item["metadata"]["pixel_size_angstrom"] > 0 for item in page["items"])
    # a watcher restarted without its state sends a cleaned movie again: nothing comes back
    path = data.roles["movie"][0]
    again = put(alice, run["id"], path, data.files[path])
    assert (again.status_code, again.json()["status"]) == (200, "already_registered")
    assert {f.key for f in run_files(app, run["id"])} == {f.key for f in after}
    # a new file under that path (another size or time) is registered
    newer = put(alice, run["id"], path, data.files[path], mtime=9999.0)
    assert newer.status_code == 201, newer.text
    with app.state.sessions() as db:
        fresh = db.get(RunFile, uuid.UUID(newer.json()["file_id"]))
        db.delete(fresh)
        db.add(StorageTrash(storage=fresh.storage, key=fresh.key, queued_at=fresh.created_at))
        db.commit()
    empty_trash(app.state.sessions, app.state.storages)
    # the sizes calculated before are out of date
    assert cleanup_of(alice, run["id"])["sizes"] is None
    job_of(alice, alice.post(f"/api/v1/elements/{run['id']}/cleanup/sizes"))
    sizes = cleanup_of(alice, run["id"])["sizes"]
    assert sizes["movies"] == {"files": 0, "size_bytes": 0}
    assert sizes["integrated_images"]["size_bytes"] == data.size_of("integrated")
    # integrated images next: the downscaled copies made from them stay
    job_of(alice, alice.post(f"/api/v1/elements/{run['id']}/cleanup",
                             json={"rules": ["integrated_images", "movies"]}))
    left = run_files(app, run["id"])
    assert sorted(f.role for f in left) == sorted(["session"] + ["acquisition_xml"] * 3
                                                  + ["downscaled"] * 3)
    page = alice.get(f"/api/v1/datasets/{run['id']}/micrographs").json()
    assert all(item["metadata"]["cleaned"] == ["integrated", "movie"] for item in page["items"])
    assert page["counts"]["completed"] == 3


def test_tomo_cleanup_keeps_the_tilt_series(alice, app):
    run, data = filled_tomo_run(alice)
    job_of(alice, alice.post(f"/api/v1/elements/{run['id']}/cleanup/sizes"))
    sizes = cleanup_of(alice, run["id"])["sizes"]
    assert sizes == {
        "raw_movies": {"files": len(data.roles["tilt_movie"]),
                       "size_bytes": data.size_of("tilt_movie")},
        "raw_metadata": {"files": 1, "size_bytes": data.size_of("mdoc")},
        "processed": {"files": 0, "size_bytes": 0}}
    job = job_of(alice, alice.post(f"/api/v1/elements/{run['id']}/cleanup",
                                   json={"rules": ["raw_movies"]}))
    assert job["status"] == "completed", job
    assert [f.role for f in run_files(app, run["id"])] == ["mdoc"]
    series = alice.get(f"/api/v1/datasets/{run['id']}/tilt-series").json()["items"][0]
    assert series["status"] == "completed" and series["metadata"]["cleaned"] == ["tilt_movie"]
    assert series["movie_count"] == series["tilt_count"] == len(data.roles["tilt_movie"])
    with app.state.sessions() as db:
        stored = db.get(TiltSeries, uuid.UUID(series["id"]))
        assert json.loads(stored.metadata_json)["cleaned"] == ["tilt_movie"]


def test_who_may_calculate_and_clean_up(alice, bob, make_user, app):
    carol = make_user("carol")
    run, _ = filled_epu_run(alice, acquisitions=1)
    url = f"/api/v1/elements/{run['id']}/cleanup"
    assert_error(bob.get(url), 404)
    share(alice, run["id"], bob="collaborator", carol="viewer")
    # viewers see the rules; collaborators also calculate; only owners delete data
    assert carol.get(url).status_code == 200
    assert_error(carol.post(f"{url}/sizes"), 403, "collaborator")
    assert job_of(bob, bob.post(f"{url}/sizes"))["status"] == "completed"
    assert cleanup_of(carol, run["id"])["sizes"]["movies"]["files"] == 1
    assert_error(bob.post(url, json={"rules": ["movies"]}), 403, "owner")
    assert {f.role for f in run_files(app, run["id"])} >= {"movie"}
    # one cleanup at a time
    from cryovault.lifecycle.cleanup_rules import request_cleanup

    with app.state.sessions() as db:
        request_cleanup(db, alice.actor, uuid.UUID(run["id"]), ["integrated_images"])
        db.commit()
    assert_error(alice.post(url, json={"rules": ["movies"]}), 409, "already")
    assert cleanup_of(alice, run["id"])["cleanup_job"]["status"] == "waiting"


def test_a_crash_between_batches_leaves_whole_batches(alice, app, monkeypatch):
    run, _ = filled_epu_run(alice, acquisitions=5)
    from cryovault.lifecycle import cleanup_rules

    with app.state.sessions() as db:
        job = cleanup_rules.request_cleanup(db, alice.actor, uuid.UUID(run["id"]), ["movies"])
        db.commit()
        job_id = job.id
    monkeypatch.setattr(cleanup_rules, "BATCH_FILES", 2)
    real_mark = cleanup_rules._mark_items_cleaned
    calls = {"n": 0}

    def dying_mark(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the process dies inside the second batch's transaction
            raise SystemExit("killed")
        return real_mark(*args, **kwargs)

    monkeypatch.setattr(cleanup_rules, "_mark_items_cleaned", dying_mark)
    env = JobEnvironment(app.state.sessions, app.state.settings, app.state.storages)
    with pytest.raises(SystemExit):
        run_job(env, job_id)
    left = [f for f in run_files(app, run["id"]) if f.role == "movie"]
    assert len(left) == 3  # the first batch went, the second did not
    for row in left:  # and what is registered still has its bytes
        assert alice.get(f"/api/v1/run-files/{row.id}/content").status_code == 200
    with app.state.sessions() as db:
        cleaned = [json.loads(m.metadata_json).get("cleaned") for m in db.query(Micrograph)]
    assert sorted(map(str, cleaned)) == sorted(["['movie']"] * 2 + ["None"] * 3)
    monkeypatch.setattr(cleanup_rules, "_mark_items_cleaned", real_mark)
    monkeypatch.setattr("cryovault.jobs.runner.STALE_AFTER", timedelta(seconds=-1))
    assert run_job(env, job_id)
    empty_trash(app.state.sessions, app.state.storages)
    with app.state.sessions() as db:
        assert db.get(Job, job_id).status == "completed"
    assert not [f for f in run_files(app, run["id"]) if f.role == "movie"]
    assert stored_keys(app, "primary") == sorted(f.key for f in run_files(app, run["id"]))
