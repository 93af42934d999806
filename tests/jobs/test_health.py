"""Settings > Health (SPEC ADM-6): every part of the platform with its state and version, checks
bounded in time (a part that does not answer is "down", the page still renders), Reindex, and
"Stop all live export jobs" (JOB-5)."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import delete, select, text, update

from cryovault.db.base import utcnow
from cryovault.db.jobs import Job
from cryovault.db.search import SearchDocument
from cryovault.jobs import health
from cryovault.jobs.records import create_job
from cryovault.jobs.runner import JobCancelled, JobContext, JobEnvironment
from cryovault.settings import Settings
from tests.helpers import assert_error
from tests.live_server import free_port
from tests.web.test_pages import HX, login  # noqa: F401 (fixture)

HEALTH = "/api/v1/admin/health"


def parts_by_name(response) -> dict[str, dict]:
    assert response.status_code == 200, response.text
    parts = response.json()["parts"]
    for part in parts:
        assert set(part) == {"name", "kind", "state", "version", "detail"}
        assert part["state"] in ("stable", "waiting", "down"), part
    return {p["name"]: p for p in parts}


@pytest.fixture
def admin(make_user):
    return make_user("root", roles=["customer-admin"])


def test_every_part_is_reported_stable_on_a_fresh_instance(admin, alice, database_url):
    alice.create("folder", "Indexed")
    parts = parts_by_name(admin.get(HEALTH))
    assert list(parts) == ["Database", "Search index", "Job runner", "Processing executor",
                           "Storage “primary” (primary)", "Storage “archive” (archive)",
                           "Storage “export” (export)"]
    assert {p["state"] for p in parts.values()} == {"stable"}, parts
    database = parts["Database"]
    if database_url.startswith("sqlite"):
        assert database["version"].startswith("SQLite 3.")
        assert parts["Search index"]["version"].startswith("SQLite FTS5")
    else:
        assert database["version"].startswith("PostgreSQL ")
        assert parts["Search index"]["version"].startswith("PostgreSQL full-text")
    assert "schema up to date" in database["detail"]
    assert "1 of 1 elements indexed" in parts["Search index"]["detail"]
    assert "0 jobs waiting" in parts["Job runner"]["detail"]
    assert parts["Processing executor"]["version"].startswith("local processes (Python 3.")
    for name in ("primary", "archive", "export"):
        part = parts[f"Storage “{name}” ({name})"]
        assert part["kind"] == "storage" and part["version"].startswith("local directory (")
        assert "readable and writable" in part["detail"] and "free of" in part["detail"]
    assert admin.get(HEALTH).json()["state"] == "stable"


def test_only_operators_see_the_health(alice, make_user, login):  # noqa: F811
    assert_error(alice.get(HEALTH), 403, "workflow-admin or customer-admin")
    assert_error(alice.post("/api/v1/admin/reindex"), 403)
    assert_error(alice.post("/api/v1/admin/live-exports/stop"), 403,
                 "workflow-admin or customer-admin")
    workflow_admin = make_user("wfadmin", roles=["workflow-admin"])
    assert workflow_admin.get(HEALTH).status_code == 200
    # the portal: the tab is not offered, and its parts are refused
    page = login(alice)
    settings = page.get("/settings?tab=health")
    assert settings.status_code == 200
    assert 'id="tab-health"' not in settings.text and 'id="health-forbidden"' in settings.text
    assert page.get("/ui/settings/health", headers=HX).status_code == 403
    assert page.post("/ui/settings/health/reindex", headers=HX).status_code == 403


def test_an_unreachable_dask_scheduler_is_down_and_the_page_renders(database_url, tmp_path,
                                                                   make_user, login, app):  # noqa: F811
    admin = make_user("root", roles=["customer-admin"])
    closed = f"tcp://127.0.0.1:{free_port()}"
    app.state.settings = Settings(data_dir=tmp_path, database_url=database_url,
                                  auto_upgrade=False, dask_scheduler=closed)
    started = time.monotonic()
    parts = parts_by_name(admin.get(HEALTH))
    assert time.monotonic() - started < 20  # bounded: the check gives up after 2 s
    executor = parts["Processing executor"]
    assert executor["state"] == "down", executor
    assert closed in executor["detail"] and "does not answer" in executor["detail"]
    assert parts["Database"]["state"] == "stable"
    page = login(admin).get("/ui/settings/health", headers=HX)
    assert page.status_code == 200
    assert 'data-part="executor" data-state="down"' in page.text
    assert 'data-part="database" data-state="stable"' in page.text


def test_a_dask_cluster_is_reported_with_its_workers_and_version(database_url, tmp_path,
                                                                 make_user, app):
    import distributed
    from distributed import LocalCluster

    admin = make_user("root", roles=["customer-admin"])
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        app.state.settings = Settings(data_dir=tmp_path, database_url=database_url,
                                      auto_upgrade=False, dask_scheduler=cluster.scheduler_address)
        executor = parts_by_name(admin.get(HEALTH))["Processing executor"]
    assert executor["state"] == "stable", executor
    assert executor["version"] == (f"Dask {distributed.__version__} "
                                   f"(distributed {distributed.__version__})")
    assert "1 worker," in executor["detail"] and cluster.scheduler_address in executor["detail"]


def _break(path) -> None:
    """Make a storage directory unusable, as root too (root reads through chmod 000): it
    becomes a plain file."""
    if os.geteuid() != 0:
        path.chmod(0)
        return
    shutil.rmtree(path)
    path.write_text("not a directory")


def test_an_unusable_storage_is_down_and_the_page_renders(admin, app, login):  # noqa: F811
    archive = app.state.storages.get("archive")
    root = archive.root
    _break(root)
    try:
        parts = parts_by_name(admin.get(HEALTH))
        part = parts["Storage “archive” (archive)"]
        assert part["state"] == "down", part
        assert str(root) in part["detail"]
        assert parts["Storage “primary” (primary)"]["state"] == "stable"
        assert admin.get(HEALTH).json()["state"] == "down"
        page = login(admin).get("/ui/settings/health", headers=HX)
        assert page.status_code == 200 and 'data-part="storage" data-state="down"' in page.text
        assert not root.is_dir()  # the check did not create the directory again
    finally:
        if root.is_file():
            root.unlink()
        root.mkdir(exist_ok=True)
        root.chmod(0o755)


def test_a_check_that_hangs_is_reported_down_in_time(admin, app, monkeypatch):
    def hang(storage):
        time.sleep(10)

    monkeypatch.setattr(health, "check_storage", hang)
    state = app.state
    report = health.platform_health(admin.actor, state.engine, state.settings, state.storages,
                                    timeout_seconds=0.5)
    storages = [p for p in report.parts if p.kind == "storage"]
    assert len(storages) == 3
    assert all(p.state == "down" and p.detail == "no answer within 0.5 s" for p in storages)
    assert report.elapsed_seconds < 5
    assert next(p for p in report.parts if p.kind == "database").state == "stable"


def test_search_index_out_of_date_then_reindexed(admin, alice, app, sessions):
    folders = [alice.create("folder", f"Grid {n}") for n in range(3)]
    with sessions() as db:
        db.execute(delete(SearchDocument).where(
            SearchDocument.element_id == uuid.UUID(folders[0]["id"])))
        db.commit()
    search = parts_by_name(admin.get(HEALTH))["Search index"]
    assert search["state"] == "down" and "2 of 3 elements indexed" in search["detail"]
    assert "run Reindex" in search["detail"]
    # a reindex waiting: the index is being rebuilt
    with sessions() as db:
        pending = create_job(db, "reindex", admin.actor, None)
        db.commit()
    search = parts_by_name(admin.get(HEALTH))["Search index"]
    assert search["state"] == "waiting" and "reindex waiting (0%)" in search["detail"]
    with sessions() as db:
        db.execute(update(Job).where(Job.id == pending.id).values(status="cancelled"))
        db.commit()
    # the API's Reindex starts a job through the job table; it runs and the index is whole
    response = admin.post("/api/v1/admin/reindex")
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    job = admin.get(f"/api/v1/jobs/{job_id}").json()
    assert (job["kind"], job["status"]) == ("reindex", "completed")
    search = parts_by_name(admin.get(HEALTH))["Search index"]
    assert search["state"] == "stable" and "3 of 3 elements indexed" in search["detail"]


def test_reindex_from_the_health_tab(admin, login):  # noqa: F811
    page = login(admin)
    tab = page.get("/settings?tab=health")
    assert tab.status_code == 200
    for marker in ('id="tab-health"', 'id="health-panel"', 'id="health-reindex"',
                   'id="stop-live-exports"'):
        assert marker in tab.text
    started = page.post("/ui/settings/health/reindex", headers=HX)
    assert started.status_code == 200
    assert "jobs-changed" in started.headers["HX-Trigger"]
    assert "reindex job has started" in started.text
    job_id = started.text.split('data-job="')[1].split('"')[0]
    job = admin.get(f"/api/v1/jobs/{job_id}").json()
    assert job["kind"] == "reindex" and job["status"] == "completed"


def test_job_runner_states(admin, alice, sessions, app):
    def runner() -> dict:
        return parts_by_name(admin.get(HEALTH))["Job runner"]

    with sessions() as db:
        fresh = create_job(db, "test-health", alice.actor, None)
        db.commit()
    part = runner()
    assert part["state"] == "stable" and "1 job waiting" in part["detail"]
    # waiting longer than expected: nobody has picked it up yet
    with sessions() as db:
        db.execute(update(Job).where(Job.id == fresh.id).values(
            created_at=utcnow() - health.EXPECTED_WAIT - timedelta(seconds=5)))
        db.commit()
    assert runner()["state"] == "waiting"
    # waiting for longer than STALLED_AFTER and no worker beating: down
    with sessions() as db:
        db.execute(update(Job).where(Job.id == fresh.id).values(
            created_at=utcnow() - health.STALLED_AFTER - timedelta(minutes=1)))
        db.commit()
    part = runner()
    assert part["state"] == "down" and "cryovault worker" in part["detail"]
    # a worker beating on another job: it will come to the queue
    with sessions() as db:
        busy = create_job(db, "test-health", alice.actor, None)
        db.flush()
        db.execute(update(Job).where(Job.id == busy.id).values(
            status="running", worker="node7:4242:1", heartbeat_at=utcnow(), attempts=1))
        db.commit()
    part = runner()
    assert part["state"] == "waiting" and "1 worker thread busy (node7:4242)" in part["detail"]
    # a running job whose worker died, not yet taken over
    with sessions() as db:
        db.execute(update(Job).where(Job.id == fresh.id).values(status="cancelled"))
        db.execute(update(Job).where(Job.id == busy.id).values(
            heartbeat_at=utcnow() - timedelta(minutes=5)))
        db.commit()
    part = runner()
    assert part["state"] == "waiting" and "1 running job without heartbeat" in part["detail"]
    with sessions() as db:
        db.execute(update(Job).where(Job.id == busy.id).values(status="failed"))
        db.commit()
    assert runner()["state"] == "stable"
    # the portal's own worker thread: reported, down when it stopped
    state = app.state
    for alive, expected in ((True, "stable"), (False, "down")):
        report = health.platform_health(admin.actor, state.engine, state.settings,
                                        state.storages, local_worker_alive=alive)
        part = next(p for p in report.parts if p.kind == "jobs")
        assert part.state == expected, part


def test_a_schema_behind_the_newest_migration_is_waiting(admin, engine):
    with engine.begin() as conn:
        current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    try:
        database = parts_by_name(admin.get(HEALTH))["Database"]
        assert database["state"] == "waiting" and "upgrade is pending" in database["detail"]
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": current})


def test_stop_all_live_export_jobs(admin, alice, bob, sessions, login):  # noqa: F811
    def job(user, kind: str, status: str) -> uuid.UUID:
        with sessions() as db:
            created = create_job(db, kind, user.actor, None, {"run": "test"})
            db.flush()
            if status != "waiting":
                db.execute(update(Job).where(Job.id == created.id).values(
                    status=status, worker="w:1:1", heartbeat_at=utcnow(), attempts=1,
                    started_at=utcnow()))
            db.commit()
            return created.id

    waiting = job(alice, health.LIVE_EXPORT_JOB, "waiting")
    running = job(bob, health.LIVE_EXPORT_JOB, "running")
    done = job(alice, health.LIVE_EXPORT_JOB, "completed")
    other = job(alice, "export", "waiting")
    assert_error(alice.post("/api/v1/admin/live-exports/stop"), 403)
    response = admin.post("/api/v1/admin/live-exports/stop")
    assert response.status_code == 200 and response.json() == {"stopped": 2}
    with sessions() as db:
        rows = {j.id: j for j in db.scalars(select(Job))}
    assert rows[waiting].status == "cancelled"  # at once
    assert rows[running].status == "running" and rows[running].cancel_requested
    assert rows[done].status == "completed" and not rows[done].cancel_requested
    assert rows[other].status == "waiting" and not rows[other].cancel_requested
    # the running handler stops at its next checkpoint
    with sessions() as db:
        row = db.get(Job, running)
        context = JobContext(JobEnvironment(sessions), db, row, "w:1:1")
        with pytest.raises(JobCancelled):
            context.checkpoint(0.5)
    # nothing left to stop; the portal's button says so
    assert admin.post("/api/v1/admin/live-exports/stop").json() == {"stopped": 0}
    again = job(bob, health.LIVE_EXPORT_JOB, "waiting")
    answer = login(admin).post("/ui/settings/health/live-exports/stop", headers=HX)
    assert answer.status_code == 200
    assert "1 live export job was asked to stop" in answer.text
    assert "jobs-changed" in answer.headers["HX-Trigger"]
    with sessions() as db:
        assert db.get(Job, again).status == "cancelled"
    answer = login(admin).post("/ui/settings/health/live-exports/stop", headers=HX)
    assert "No live export job was running" in answer.text


def test_a_database_that_does_not_answer_is_down_and_the_rest_is_reported(admin, app):
    """A PostgreSQL server that accepts connections and never answers (a silent listener):
    the parts that need it are down within the time limit, the storages are still checked."""
    import socket

    from sqlalchemy import create_engine

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    engine = create_engine(f"postgresql+psycopg://nobody@127.0.0.1:{port}/cryovault")
    try:
        state = app.state
        report = health.platform_health(admin.actor, engine, state.settings, state.storages)
    finally:
        silent.close()
        engine.dispose()
    states = {p.kind: p.state for p in report.parts if p.kind != "storage"}
    assert states == {"database": "down", "search": "down", "jobs": "down",
                      "executor": "stable"}, report.parts
    assert all(p.state == "stable" for p in report.parts if p.kind == "storage")
    assert report.elapsed_seconds < 10


def test_the_stopped_kind_is_the_live_exports_kind():
    """The Health tab stops the jobs the live export registers (lifecycle/live_export.py)."""
    from cryovault.jobs.runner import _HANDLERS
    from cryovault.lifecycle import live_export

    assert health.LIVE_EXPORT_JOB == live_export.LIVE_EXPORT_JOB
    assert health.LIVE_EXPORT_JOB in _HANDLERS
