"""Archive, restore and export of acquisition runs (SPEC JOB-3, JOB-4, SPA-6, ET-4, OPS-3): the
run files move or are copied checked; an export keeps the session's relative paths, separates
raw and processed files, filters items, and carries the items' metadata as JSON.

The helpers here (a run filled with real EPU/.mdoc fixture files and synthetic images) serve the
other run lifecycle tests too."""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from cryovault.db.jobs import Job
from cryovault.db.runs import RunFile
from cryovault.jobs.runner import JobEnvironment, run_job
from cryovault.storage import transfer
from cryovault.storage.keys import RUNS_PREFIX
from tests.helpers import assert_error
from tests.ingest.test_registry_api import (
    ACQUISITION,
    EPU,
    FIXTURES,
    MDOC,
    SQUARE,
    epu_run,
    put,
    tomo_run,
)
from tests.web.test_pages import login  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(not FIXTURES.exists(), reason="../shared/fixtures is missing")

ACQUISITION_XML = (EPU / SQUARE / "Data" / f"{ACQUISITION}.xml").read_bytes() \
    if FIXTURES.exists() else b""
TOMO_MDOC = MDOC / "tomo_test_1.mdoc"


def acquisition_name(n: int) -> str:
    return f"FoilHole_90158{n:02d}_Data_9017347_6_20250108_1549{n:02d}"


def integrated_mrc(seed: int, size: int = 64) -> bytes:
    """A small real MRC image (the integrated image), from which ingest makes a downscaled
    copy."""
    data = np.random.default_rng(seed).normal(100.0, 10.0, (size, size)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "image.mrc"
        with mrcfile.new(path) as mrc:
            mrc.set_data(data)
            mrc.voxel_size = 1.0
        return path.read_bytes()


def movie_bytes(n: int) -> bytes:
    return b"II*\x00" + hashlib.sha256(str(n).encode()).digest() * (40 + 7 * n)


@dataclass
class RunData:
    """What was registered into a run: bytes by relative path, and the paths by role."""

    files: dict[str, bytes] = field(default_factory=dict)
    roles: dict[str, list[str]] = field(default_factory=dict)

    def add(self, role: str, path: str, data: bytes) -> None:
        self.files[path] = data
        self.roles.setdefault(role, []).append(path)

    def size_of(self, role: str) -> int:
        return sum(len(self.files[path]) for path in self.roles.get(role, []))


def register(user, run_id: str, path: str, data: bytes, **kw) -> dict:
    response = put(user, run_id, path, data, **kw)
    assert response.status_code == 201, response.text
    return response.json()


def add_acquisition(user, run_id: str, n: int, data: RunData, *, movie: bool = True,
                    integrated: bool = True) -> str:
    """An EPU acquisition: metadata XML (real), integrated image and movie; returns its name.
    Without the movie the micrograph stays in progress."""
    name = acquisition_name(n)
    base = f"{SQUARE}/Data/{name}"
    register(user, run_id, f"{base}.xml", ACQUISITION_XML)
    data.add("acquisition_xml", f"{base}.xml", ACQUISITION_XML)
    if integrated:
        image = integrated_mrc(n)
        register(user, run_id, f"{base}.mrc", image)
        data.add("integrated", f"{base}.mrc", image)
    if movie:
        add_movie(user, run_id, n, data)
    return name


def add_movie(user, run_id: str, n: int, data: RunData) -> None:
    path = f"{SQUARE}/Data/{acquisition_name(n)}_fractions.tiff"
    register(user, run_id, path, movie_bytes(n))
    data.add("movie", path, movie_bytes(n))


def filled_epu_run(user, workflow_type: str = "spa", acquisitions: int = 3) -> tuple[dict,
                                                                                   RunData]:
    """An EPU run with its session file and `acquisitions` complete acquisitions."""
    if workflow_type == "spa":
        run = epu_run(user)
    else:
        workflow = user.create("workflow", f"Project {workflow_type}",
                               workflow_type=workflow_type)
        imaging = next(s for s in user.children(workflow["id"]) if s["name"] == "Imaging")
        run = user.create("dataset", "EPU run QM", imaging["id"], dataset_type="epu_run")
    data = RunData()
    session = (EPU / "EpuSession.dm").read_bytes()
    register(user, run["id"], "EpuSession.dm", session)
    data.add("session", "EpuSession.dm", session)
    for n in range(acquisitions):
        add_acquisition(user, run["id"], n, data)
    return run, data


def filled_tomo_run(user) -> tuple[dict, RunData]:
    """A Tomo run with one complete tilt series (real .mdoc, a movie per tilt)."""
    run = tomo_run(user)
    data = RunData()
    mdoc = TOMO_MDOC.read_bytes()
    register(user, run["id"], "chrom_07_ts_010.mrc.mdoc", mdoc, session="tomo")
    data.add("mdoc", "chrom_07_ts_010.mrc.mdoc", mdoc)
    names = [line.split("\\")[-1].strip() for line in mdoc.decode().splitlines()
             if line.startswith("SubFramePath")]
    for index, name in enumerate(names):
        movie = movie_bytes(100 + index)
        register(user, run["id"], f"frames/{name}", movie, session="tomo")
        data.add("tilt_movie", f"frames/{name}", movie)
    return run, data


def run_files(app, run_id: str) -> list[RunFile]:
    with app.state.sessions() as db:
        return list(db.query(RunFile).filter_by(dataset_id=uuid.UUID(run_id)))


def stored_keys(app, storage: str) -> list[str]:
    return sorted(o.key for o in app.state.storages.get(storage).walk(RUNS_PREFIX))


def exported(app) -> dict[str, bytes]:
    """Every file in the export storage but its staging area, by key."""
    root = app.state.storages.get("export").root
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*")
            if path.is_file() and path.relative_to(root).parts[0] != "tmp"}


def job_of(user, response) -> dict:
    assert response.status_code == 202, response.text
    return user.get(f"/api/v1/jobs/{response.json()['job_id']}").json()


# --- archive and restore ---------------------------------------------------------------------


def test_archive_and_restore_move_the_run_files(alice, app, login):  # noqa: F811
    run, data = filled_epu_run(alice)
    files = run_files(app, run["id"])
    downscaled = [f for f in files if f.role == "downscaled"]
    assert len(downscaled) == 3 and len(files) == len(data.files) + 3
    workflow_id = alice.get(f"/api/v1/elements/{run['id']}/path").json()[0]["id"]
    job = job_of(alice, alice.post(f"/api/v1/elements/{workflow_id}/archive"))
    assert (job["status"], job["progress"]) == ("completed", 1.0), job
    assert {f.storage for f in run_files(app, run["id"])} == {"archive"}
    assert stored_keys(app, "primary") == []
    assert stored_keys(app, "archive") == sorted(f.key for f in files)
    # still listed with the archived badge, and every file still reads back as registered
    assert 'class="badge archived"' in login(alice).get(f"/workspace/{workflow_id}").text
    for row in files:
        content = alice.get(f"/api/v1/run-files/{row.id}/content").content
        assert hashlib.sha256(content).hexdigest() == row.sha256
    assert alice.get(f"/api/v1/run-files/{downscaled[0].id}/content?inline=true"
                     ).headers["content-type"] == "image/png"
    assert_error(alice.post(f"/api/v1/elements/{run['id']}/archive"), 422, "no files")

    job = job_of(alice, alice.post(f"/api/v1/elements/{run['id']}/restore"))
    assert job["status"] == "completed", job
    assert {f.storage for f in run_files(app, run["id"])} == {"primary"}
    assert stored_keys(app, "archive") == [] and len(stored_keys(app, "primary")) == len(files)
    for path, content in data.files.items():
        row = next(f for f in files if f.relative_path == path)
        assert alice.get(f"/api/v1/run-files/{row.id}/content").content == content


def test_a_crash_while_archiving_a_run_loses_nothing(alice, app, monkeypatch):
    run, data = filled_epu_run(alice, acquisitions=2)
    from cryovault.lifecycle.archive import ARCHIVE_JOB, request_move

    with app.state.sessions() as db:
        job = request_move(db, alice.actor, app.state.storages, uuid.UUID(run["id"]),
                           ARCHIVE_JOB)
        db.commit()
        job_id = job.id
    real_copy = transfer.copy_verified
    calls = {"n": 0}

    def crashing_copy(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # the process dies right after the fourth copy lands
            real_copy(*args, **kwargs)
            raise SystemExit("killed")
        return real_copy(*args, **kwargs)

    monkeypatch.setattr("cryovault.lifecycle.archive.copy_verified", crashing_copy)
    env = JobEnvironment(app.state.sessions, app.state.settings, app.state.storages)
    with pytest.raises(SystemExit):
        run_job(env, job_id)
    rows = run_files(app, run["id"])
    assert {f.storage for f in rows} == {"primary", "archive"}
    for row in rows:  # every file reads from wherever its record says it is
        content = alice.get(f"/api/v1/run-files/{row.id}/content").content
        assert hashlib.sha256(content).hexdigest() == row.sha256
    monkeypatch.setattr("cryovault.lifecycle.archive.copy_verified", real_copy)
    monkeypatch.setattr("cryovault.jobs.runner.STALE_AFTER", timedelta(seconds=-1))
    assert run_job(env, job_id) is True
    with app.state.sessions() as db:
        assert db.get(Job, job_id).status == "completed"
    assert {f.storage for f in run_files(app, run["id"])} == {"archive"}
    for path, content in data.files.items():
        row = next(f for f in rows if f.relative_path == path)
        assert alice.get(f"/api/v1/run-files/{row.id}/content").content == content


# --- export ------------------------------------------------------------------------------------


def test_export_of_an_epu_run(alice, make_user, app):
    run, data = filled_epu_run(alice)
    in_progress = add_acquisition(alice, run["id"], 7, data, movie=False)
    admin = make_user("admin", roles=("customer-admin",))
    assert admin.patch("/api/v1/preferences/platform",
                       json={"export_public_path": "/mnt/export"}).status_code == 200
    response = alice.post(f"/api/v1/elements/{run['id']}/export",
                          json={"folder": "2026", "raw": True, "processed": True})
    job = job_of(alice, response)
    assert (job["status"], job["progress"]) == ("completed", 1.0), job
    target = response.json()["target"]
    assert response.json()["public_path"] == f"/mnt/export/{target}"
    files = exported(app)
    # raw files at their path relative to the session folder, byte for byte
    for path, content in data.files.items():
        assert files[f"{target}/{path}"] == content, path
    # processed files (the downscaled copies) under processed/
    processed = sorted(k for k in files if k.startswith(f"{target}/processed/"))
    assert processed == sorted(
        f"{target}/processed/downscaled/{path}.png" for path in data.roles["integrated"])
    for key in processed:
        assert files[key][:8] == b"\x89PNG\r\n\x1a\n"
    # the dataset's metadata JSON carries the run's micrographs with their metadata
    document = json.loads(files[f"{target}/EPU run 1.json"])
    assert document["element"]["id"] == run["id"]
    run_part = document["run"]
    assert run_part["dataset_type"] == "epu_run"
    assert run_part["counts"] == {"completed": 3, "in_progress": 1, "failed": 0}
    micrographs = {m["name"]: m for m in run_part["micrographs"]}
    assert set(micrographs) == {acquisition_name(n) for n in range(3)} | {in_progress}
    first = micrographs[acquisition_name(0)]
    assert first["status"] == "completed" and first["grid_square_id"] == "8999138"
    assert first["metadata"]["pixel_size_angstrom"] > 0
    assert {f["role"] for f in first["files"]} == {"acquisition_xml", "integrated", "movie",
                                                   "downscaled"}
    assert run_part["sessions"][0]["name"] == "Supervisor_20250108_101446_62_cm40593-1_EPU"
    # and each micrograph has its own document
    item = json.loads(files[f"{target}/micrographs/{acquisition_name(1)}.json"])
    assert item["name"] == acquisition_name(1) and item["metadata"] == \
        micrographs[acquisition_name(1)]["metadata"]


def test_export_choices_of_a_run(alice, app):
    run, data = filled_epu_run(alice, acquisitions=2)
    waiting = add_acquisition(alice, run["id"], 5, data, movie=False)

    def export(body: dict) -> tuple[str, dict[str, bytes]]:
        response = alice.post(f"/api/v1/elements/{run['id']}/export", json=body)
        assert job_of(alice, response)["status"] == "completed"
        target = response.json()["target"]
        return target, {k[len(target) + 1:]: v for k, v in exported(app).items()
                        if k.startswith(f"{target}/")}

    target, raw_only = export({"folder": "raw", "processed": False, "metadata": False})
    assert set(raw_only) == set(data.files)
    target, processed_only = export({"folder": "processed", "raw": False, "metadata": False})
    assert set(processed_only) == {f"processed/downscaled/{p}.png"
                                   for p in data.roles["integrated"]}
    # only completed micrographs: the one still waiting for its movie is left out
    target, completed = export({"folder": "completed", "filter": {"status": "completed"}})
    assert not any(waiting in path for path in completed)
    assert f"{SQUARE}/Data/{acquisition_name(1)}_fractions.tiff" in completed
    assert "EpuSession.dm" in completed  # files of no micrograph always go
    document = json.loads(completed["EPU run 1.json"])
    assert [m["name"] for m in document["run"]["micrographs"]] == [acquisition_name(0),
                                                                  acquisition_name(1)]
    assert document["run"]["filter"] == {"status": "completed"}
    assert f"micrographs/{waiting}.json" not in completed
    # bad choices are refused before anything starts
    url = f"/api/v1/elements/{run['id']}/export"
    assert_error(alice.post(url, json={"raw": False, "processed": False}), 422, "raw")
    assert_error(alice.post(url, json={"filter": {"status": "done"}}), 422, "status")
    assert_error(alice.post(url, json={"filter": {"defocus": 1}}), 422, "defocus")
    assert_error(alice.post(url, json={"filter": "completed"}), 422)


def test_export_of_a_tomo_run(alice, app):
    run, data = filled_tomo_run(alice)
    response = alice.post(f"/api/v1/elements/{run['id']}/export", json={})
    assert job_of(alice, response)["status"] == "completed"
    target = response.json()["target"]
    files = exported(app)
    for path, content in data.files.items():
        assert files[f"{target}/{path}"] == content
    series = json.loads(files[f"{target}/tilt_series/chrom_07_ts_010.json"])
    assert series["status"] == "completed"
    assert len(series["tilts"]) == len(data.roles["tilt_movie"])
    assert all(t["tilt_angle_deg"] is not None for t in series["tilts"])
    document = json.loads(files[f"{target}/Tomo run 1.json"])
    assert [s["name"] for s in document["run"]["tilt_series"]] == ["chrom_07_ts_010"]


def crash_and_rerun(app, monkeypatch, job_id: uuid.UUID, *, die_at_copy: int,
                    exported_then: int) -> list[str]:
    """Run an export job whose worker dies at its `die_at_copy`-th file copy (after
    `exported_then` complete files), then run it again after its heartbeat went stale; the job
    completes. Returns the export keys the rerun copied."""
    real_copy = transfer.copy_verified
    calls = {"n": 0}

    def dying_copy(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == die_at_copy:
            raise SystemExit("killed")
        return real_copy(*args, **kwargs)

    monkeypatch.setattr("cryovault.lifecycle.export.copy_verified", dying_copy)
    env = JobEnvironment(app.state.sessions, app.state.settings, app.state.storages)
    with pytest.raises(SystemExit):
        run_job(env, job_id)
    assert len(exported(app)) == exported_then
    copied: list[str] = []

    def counting_copy(*args, **kwargs):
        copied.append(args[3])
        return real_copy(*args, **kwargs)

    monkeypatch.setattr("cryovault.lifecycle.export.copy_verified", counting_copy)
    monkeypatch.setattr("cryovault.jobs.runner.STALE_AFTER", timedelta(seconds=-1))
    assert run_job(env, job_id)
    with app.state.sessions() as db:
        assert db.get(Job, job_id).status == "completed"
    return copied


def test_a_crash_while_exporting_a_run_and_the_rerun(alice, app, monkeypatch):
    run, data = filled_epu_run(alice, acquisitions=2)
    from cryovault.lifecycle.export import request_export

    with app.state.sessions() as db:
        plan = request_export(db, alice.actor, app.state.storages, uuid.UUID(run["id"]),
                              metadata=False)
        db.commit()
    copied = crash_and_rerun(app, monkeypatch, plan.job.id, die_at_copy=4, exported_then=3)
    total = len(data.files) + len(data.roles["integrated"])  # with the downscaled copies
    assert len(copied) == total - 3  # the rerun copies only what was missing
    assert len(exported(app)) == total


def test_a_corrupted_run_file_fails_the_export_visibly(alice, app):
    run, data = filled_epu_run(alice, acquisitions=1)
    movie = next(f for f in run_files(app, run["id"]) if f.role == "movie")
    app.state.storages.primary.local_path(movie.key).write_bytes(b"x" * movie.size_bytes)
    response = alice.post(f"/api/v1/elements/{run['id']}/export", json={"metadata": False})
    job = job_of(alice, response)
    assert job["status"] == "failed" and "SHA-256" in job["message"]
    target = response.json()["target"]
    assert not any(k.endswith("_fractions.tiff") for k in exported(app) if k.startswith(target))


def test_export_body_stays_compatible(alice, app):
    """A free dataset exports as before; run-only options are refused there."""
    workflow = alice.create("workflow", "Notebook", workflow_type="free")
    step = alice.create("step", "Step", workflow["id"])
    dataset = alice.create("dataset", "Uploads", step["id"], dataset_type="free")
    alice.post(f"/api/v1/elements/{dataset['id']}/files",
               files={"file": ("a.mrc", io.BytesIO(b"abc"), "application/octet-stream")})
    response = alice.post(f"/api/v1/elements/{dataset['id']}/export", json={"folder": "x"})
    assert job_of(alice, response)["status"] == "completed"
    assert exported(app)[f"{response.json()['target']}/a.mrc"] == b"abc"
    assert_error(alice.post(f"/api/v1/elements/{dataset['id']}/export",
                            json={"filter": {"status": "completed"}}), 422, "runs")


def test_files_flagged_by_the_integrity_check_are_left_out_and_named(alice, app):
    run, data = filled_epu_run(alice, acquisitions=2)
    with app.state.sessions() as db:
        movie = db.query(RunFile).filter_by(dataset_id=uuid.UUID(run["id"]), role="movie") \
            .order_by(RunFile.relative_path).first()
        movie.integrity = "mismatch"
        db.commit()
    response = alice.post(f"/api/v1/elements/{run['id']}/export", json={"metadata": False})
    job = job_of(alice, response)
    assert job["status"] == "completed", job
    assert "1 skipped" in job["message"] and movie.relative_path in job["message"]
    files = exported(app)
    target = response.json()["target"]
    assert f"{target}/{movie.relative_path}" not in files
    assert len([k for k in files if k.endswith("_fractions.tiff")]) == 1
