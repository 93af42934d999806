"""Registering the files of EPU and Tomo runs through the API (SPEC SPA-1, SPA-2, ET-1):
items from real instrument files, idempotency, rewritten session files, any order, bad input."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest

from cryovault.db.files import StorageTrash
from cryovault.db.runs import RunFile
from tests.helpers import assert_error

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
EPU = FIXTURES / "epu" / "epu-dir-example"
SQUARE = "Images-Disc1/GridSquare_8999138"
ACQUISITION = "FoilHole_9015883_Data_9017347_6_20250108_154915"
MDOC = FIXTURES / "mdoc"

pytestmark = pytest.mark.skipif(not FIXTURES.exists(), reason="../shared/fixtures is missing")


def epu_run(user, name="EPU run 1") -> dict:
    workflow = user.create("workflow", "Apoferritin", workflow_type="spa")
    steps = user.children(workflow["id"])
    imaging = next(step for step in steps if step["name"] == "Imaging")
    return user.create("dataset", name, imaging["id"], dataset_type="epu_run")


def tomo_run(user, name="Tomo run 1") -> dict:
    workflow = user.create("workflow", "Lamella", workflow_type="et")
    imaging = next(step for step in user.children(workflow["id"]) if step["name"] == "Imaging")
    return user.create("dataset", name, imaging["id"], dataset_type="tomo_run")


def put(user, dataset_id: str, path: str, data: bytes, *, mtime: float = 1000.0,
        session: str = "Supervisor_20250108_101446_62_cm40593-1_EPU", size: int | None = None):
    return user.put(f"/api/v1/datasets/{dataset_id}/ingest/files/{path}", content=data,
                    headers={"X-Source-Size": str(len(data) if size is None else size),
                             "X-Source-Mtime": str(mtime), "X-Session": session})


def micrographs(user, dataset_id: str, **params) -> dict:
    response = user.get(f"/api/v1/datasets/{dataset_id}/micrographs", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_real_epu_session_fills_the_run(alice, client):
    run = epu_run(alice)
    xml = (EPU / SQUARE / "Data" / f"{ACQUISITION}.xml").read_bytes()
    response = put(alice, run["id"], f"{SQUARE}/Data/{ACQUISITION}.xml", xml)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "registered" and body["problem"] is None
    assert body["item"]["kind"] == "micrograph" and body["item"]["name"] == ACQUISITION
    # the session saves movies unless its file says otherwise: in progress until the movie
    assert body["item"]["status"] == "in_progress"
    page = micrographs(alice, run["id"])
    assert page["total"] == 1 and page["counts"] == {"completed": 0, "in_progress": 1,
                                                     "failed": 0}
    item = page["items"][0]
    assert item["metadata"]["grid_square_id"] == "8999138"
    assert item["metadata"]["foil_hole_id"] == "9015883"
    assert item["metadata"]["pixel_size_angstrom"] > 0 and item["acquired_at"]
    movie = b"II*\x00" + b"\x00" * 60
    response = put(alice, run["id"], f"{SQUARE}/Data/{ACQUISITION}_fractions.tiff", movie)
    assert response.json()["item"]["status"] == "completed"
    jpg = (EPU / SQUARE / "Data" / f"{ACQUISITION}.jpg").read_bytes()
    assert put(alice, run["id"], f"{SQUARE}/Data/{ACQUISITION}.jpg", jpg).status_code == 201
    assert micrographs(alice, run["id"], status="completed")["total"] == 1
    detail = alice.get(f"/api/v1/datasets/{run['id']}/micrographs/{item['id']}").json()
    assert {f["role"] for f in detail["files"]} == {"acquisition_xml", "movie", "acquisition_jpg"}
    content = alice.get(f"/api/v1/run-files/{detail['files'][0]['id']}/content")
    assert content.status_code == 200 and len(content.content) == detail["files"][0]["size_bytes"]
    ranged = alice.get(f"/api/v1/run-files/{detail['files'][0]['id']}/content",
                       headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206 and ranged.content == content.content[:10]
    # the run is in progress while data arrives (WS-3)
    assert alice.get(f"/api/v1/elements/{run['id']}").json()["status"] == "in_progress"


def test_session_grid_square_and_atlas_files(alice):
    run = epu_run(alice)
    session = (EPU / "EpuSession.dm").read_bytes()
    response = put(alice, run["id"], "EpuSession.dm", session)
    assert response.status_code == 201 and response.json()["problem"] is None, response.text
    square_xml = next((EPU / SQUARE).glob("GridSquare_*.xml"))
    response = put(alice, run["id"], f"{SQUARE}/{square_xml.name}", square_xml.read_bytes())
    assert response.json()["item"]["kind"] == "grid_square", response.text
    hole = next((EPU / SQUARE / "FoilHoles").glob("*.xml"))
    response = put(alice, run["id"], f"{SQUARE}/FoilHoles/{hole.name}", hole.read_bytes())
    assert response.json()["item"]["kind"] == "foil_hole", response.text
    atlas = (FIXTURES / "epu" / "atlas" / "Atlas.dm").read_bytes()
    response = put(alice, run["id"], "Atlas/Sample7/Atlas/Atlas.dm", atlas)
    assert response.json()["item"]["kind"] == "atlas" and response.json()["problem"] is None
    metadata = (FIXTURES / "epu" / "metadata" / "GridSquare_4590776.dm").read_bytes()
    response = put(alice, run["id"], "Metadata/GridSquare_4590776.dm", metadata)
    assert response.json()["problem"] is None, response.text
    listed = alice.get(f"/api/v1/datasets/{run['id']}/ingest/files").json()
    assert len(listed["items"]) == 5 and listed["next_cursor"] is None
    first = alice.get(f"/api/v1/datasets/{run['id']}/ingest/files", params={"limit": 2}).json()
    second = alice.get(f"/api/v1/datasets/{run['id']}/ingest/files",
                       params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert {f["path"] for f in first["items"]}.isdisjoint({f["path"] for f in second["items"]})


def test_idempotent_and_conflicting_registrations(alice, app):
    run = epu_run(alice)
    xml = (EPU / SQUARE / "Data" / f"{ACQUISITION}.xml").read_bytes()
    path = f"{SQUARE}/Data/{ACQUISITION}.xml"
    first = put(alice, run["id"], path, xml)
    again = put(alice, run["id"], path, xml)
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "already_registered"
    assert again.json()["file_id"] == first.json()["file_id"]
    assert_error(put(alice, run["id"], path, xml + b" ", mtime=2000.0), 409, "different file")
    assert micrographs(alice, run["id"])["total"] == 1
    # EPU rewrites its session file: the new version replaces the old, whose bytes go
    session = (EPU / "EpuSession.dm").read_bytes()
    put(alice, run["id"], "EpuSession.dm", session, mtime=1.0)
    with app.state.sessions() as db:
        old_key = db.query(RunFile).filter_by(relative_path="EpuSession.dm").one().key
    assert put(alice, run["id"], "EpuSession.dm", session, mtime=2.0).status_code == 201
    with app.state.sessions() as db:
        rows = db.query(RunFile).filter_by(relative_path="EpuSession.dm").all()
        assert len(rows) == 1 and rows[0].key != old_key
        assert db.query(StorageTrash).filter_by(key=old_key).count() == 1


def test_movie_before_its_xml_and_malformed_xml(alice):
    run = epu_run(alice)
    name = "FoilHole_1_Data_2_3_20250108_154915"
    response = put(alice, run["id"], f"{SQUARE}/Data/{name}_EER.eer", b"II*\x00" + b"\x01" * 99)
    assert response.json()["item"]["status"] == "in_progress"
    response = put(alice, run["id"], f"{SQUARE}/Data/{name}.xml", b"<MicroscopeImage><broken")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["item"]["status"] == "failed" and body["problem"]
    assert f"{name}.xml" in body["problem"]
    page = micrographs(alice, run["id"], status="failed")
    assert page["total"] == 1 and page["items"][0]["problem"]
    assert micrographs(alice, run["id"])["counts"]["failed"] == 1
    # the bytes are kept, and the run shows a warning
    assert alice.get(f"/api/v1/elements/{run['id']}").json()["status"] == "warning"
    evil = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b"<MicroscopeImage>&e;</MicroscopeImage>")
    response = put(alice, run["id"], f"{SQUARE}/Data/FoilHole_9_Data_2_3_20250108_154916.xml",
                   evil)
    assert response.status_code == 201 and response.json()["item"]["status"] == "failed"
    assert "root:" not in response.text


@pytest.mark.parametrize("path", ["../escape.xml", "a/../../b.xml", "a//b.xml", "%2E%2E/x.xml",
                                  "a/%2e%2e/%2e%2e/b.xml", ".cryovault/downscaled/x.png",
                                  "a\\b.xml"])
def test_path_tricks_are_refused(alice, path):
    run = epu_run(alice)
    response = alice.put(f"/api/v1/datasets/{run['id']}/ingest/files/{path}", content=b"x",
                         headers={"X-Source-Size": "1", "X-Source-Mtime": "1",
                                  "X-Session": "s"})
    assert response.status_code in (404, 422), (path, response.status_code, response.text)
    assert alice.get(f"/api/v1/datasets/{run['id']}/ingest/files").json()["items"] == []


def test_bad_headers_and_sizes(alice):
    run = epu_run(alice)
    url = f"/api/v1/datasets/{run['id']}/ingest/files/EpuSession.dm"
    assert_error(alice.put(url, content=b"x", headers={"X-Session": "s", "X-Source-Mtime": "1"}),
                 422, "X-Source-Size")
    assert_error(alice.put(url, content=b"x", headers={"X-Session": "s", "X-Source-Size": "1",
                                                       "X-Source-Mtime": "soon"}),
                 422, "X-Source-Mtime")
    assert_error(alice.put(url, content=b"x", headers={"X-Source-Size": "1",
                                                       "X-Source-Mtime": "1"}), 422, "session")
    assert_error(put(alice, run["id"], "EpuSession.dm", b"abc", size=10), 422, "X-Source-Size")
    assert_error(put(alice, run["id"], "EpuSession.dm", b"abcdef", size=3), 422, "X-Source-Size")
    assert alice.get(f"/api/v1/datasets/{run['id']}/ingest/files").json()["items"] == []


def test_permissions_and_dataset_types(alice, bob):
    run = epu_run(alice)
    xml = (EPU / SQUARE / "Data" / f"{ACQUISITION}.xml").read_bytes()
    assert_error(put(bob, run["id"], f"{SQUARE}/Data/{ACQUISITION}.xml", xml), 404)
    assert_error(bob.get(f"/api/v1/datasets/{run['id']}/micrographs"), 404)
    shared = alice.put(f"/api/v1/elements/{run['id']}/sharing",
                       json={"privacy": "private", "everybody": None, "grants": [
                           {"username": "alice", "level": "owner"},
                           {"username": "bob", "level": "viewer"}]})
    assert shared.status_code == 200, shared.text
    assert_error(put(bob, run["id"], f"{SQUARE}/Data/{ACQUISITION}.xml", xml), 403)
    assert bob.get(f"/api/v1/datasets/{run['id']}/micrographs").status_code == 200
    workflow = alice.create("workflow", "Notebook", workflow_type="free")
    step = alice.create("step", "Step", workflow["id"])
    dataset = alice.create("dataset", "Uploads", step["id"], dataset_type="free")
    assert_error(put(alice, dataset["id"], "EpuSession.dm", b"x"), 422, "epu_run")
    assert_error(alice.get(f"/api/v1/datasets/{dataset['id']}/micrographs"), 422, "EPU run")
    assert_error(alice.get(f"/api/v1/datasets/{run['id']}/micrographs",
                           params={"status": "done"}), 422, "status")
    assert_error(alice.get(f"/api/v1/datasets/{run['id']}/micrographs",
                           params={"cursor": "!!"}), 422, "cursor")


def test_paging_and_counts(alice):
    run = epu_run(alice)
    for index in range(7):
        put(alice, run["id"], f"{SQUARE}/Data/FoilHole_1_Data_2_3_20250108_1549{index:02d}"
                              "_fractions.tiff", b"II*\x00" + bytes([index]) * 10)
    names, cursor = [], None
    while True:
        page = micrographs(alice, run["id"], limit=3, **({"cursor": cursor} if cursor else {}))
        assert page["total"] == 7 and page["counts"]["in_progress"] == 7
        names += [item["name"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(names) == len(set(names)) == 7


def test_tomo_run_from_real_mdoc(alice):
    run = tomo_run(alice)
    mdoc = (MDOC / "tomo_test_1.mdoc").read_bytes()
    response = put(alice, run["id"], "Position_1.mdoc", mdoc, session="tomo")
    assert response.status_code == 201 and response.json()["problem"] is None, response.text
    series = alice.get(f"/api/v1/datasets/{run['id']}/tilt-series").json()
    assert series["total"] == 1
    item = series["items"][0]
    assert item["name"] == "Position_1" and item["tilt_count"] > 0
    detail = alice.get(f"/api/v1/datasets/{run['id']}/tilt-series/{item['id']}").json()
    assert len(detail["tilts"]) == item["tilt_count"]
    assert all(not tilt["has_movie"] for tilt in detail["tilts"])
    assert item["status"] == "in_progress"
    garbage = put(alice, run["id"], "Position_2.mdoc", b"\x00\xff not an mdoc", session="tomo")
    assert garbage.status_code == 201 and garbage.json()["item"]["status"] == "failed"
    assert alice.get(f"/api/v1/datasets/{run['id']}/tilt-series",
                     params={"status": "failed"}).json()["total"] == 1


def test_deleting_a_run_queues_its_bytes(alice, app):
    run = epu_run(alice)
    put(alice, run["id"], f"{SQUARE}/Data/{ACQUISITION}_fractions.tiff", b"II*\x00" * 4)
    with app.state.sessions() as db:
        key = db.query(RunFile).one().key
    assert alice.delete(f"/api/v1/elements/{run['id']}").status_code == 202
    with app.state.sessions() as db:
        assert db.query(RunFile).count() == 0
    assert app.state.storages.primary.size(key) is None  # trash emptied after the job


@pytest.mark.parametrize("path", ["", "/abs.xml", "./a.xml", "a/./b.xml", "../a", "a\x00b",
                                  "a\nb", "x" * 1100])
def test_relative_path_rules(path):
    from cryovault.errors import Invalid
    from cryovault.ingest.registry import validate_relative_path
    with pytest.raises(Invalid):
        validate_relative_path(path)


def test_tilt_movies_join_the_series_their_mdoc_names(alice):
    """Movies named with extra fields (chrom_07_ts_010_167_000_3.0.mrc for
    chrom_07_ts_010.mrc.mdoc) belong to the series whose .mdoc lists them, whether they arrive
    before or after it; the series completes when every listed movie is there."""
    run = tomo_run(alice)
    mdoc = (MDOC / "tomo_test_1.mdoc").read_bytes()
    names = [line.split("\\")[-1].strip() for line in mdoc.decode().splitlines()
             if line.startswith("SubFramePath")]
    early, late = names[:2], names[2:]
    for name in early:
        put(alice, run["id"], f"frames/{name}", b"movie " + name.encode(), session="tomo")
    assert alice.get(f"/api/v1/datasets/{run['id']}/tilt-series").json()["total"] == 1
    put(alice, run["id"], "chrom_07_ts_010.mrc.mdoc", mdoc, session="tomo")
    for name in late:
        response = put(alice, run["id"], f"frames/{name}", b"movie " + name.encode(),
                       session="tomo")
        assert response.status_code == 201, response.text
    page = alice.get(f"/api/v1/datasets/{run['id']}/tilt-series").json()
    assert page["total"] == 1, [item["name"] for item in page["items"]]
    series = page["items"][0]
    assert series["name"] == "chrom_07_ts_010"
    assert series["status"] == "completed"
    assert series["movie_count"] == series["tilt_count"] == len(names)
    detail = alice.get(f"/api/v1/datasets/{run['id']}/tilt-series/{series['id']}").json()
    assert len(detail["files"]) == len(names) + 1


def test_deleted_atlas_data_is_not_registered_again(alice):
    run = epu_run(alice)
    atlas = (FIXTURES / "epu" / "atlas" / "Atlas.dm").read_bytes()
    assert put(alice, run["id"], "Atlas/Sample7/Atlas/Atlas.dm", atlas).status_code == 201
    atlases = alice.get(f"/api/v1/datasets/{run['id']}/atlases").json()
    atlas_id = atlases["items"][0]["id"] if "items" in atlases else atlases[0]["id"]
    response = alice.delete(f"/api/v1/atlases/{atlas_id}/data")
    assert response.status_code in (200, 202), response.text
    assert_error(put(alice, run["id"], "Atlas/Sample7/Atlas/Atlas.dm", atlas, mtime=5.0), 409,
                 "deleted")
    assert_error(put(alice, run["id"], "Atlas/Sample7/Atlas/Atlas_1.jpg", b"\xff\xd8"), 409,
                 "deleted")


def test_a_failure_while_interpreting_registers_nothing(alice, app, monkeypatch):
    """Registration is one transaction: the file row, its item and its bytes, or none."""
    from cryovault.ingest import registry

    run = epu_run(alice)
    xml = (EPU / SQUARE / "Data" / f"{ACQUISITION}.xml").read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr(registry, "interpret", broken)
    storages = app.state.storages
    with app.state.sessions() as db:
        target = registry.check_ingest_target(db, alice.actor, uuid.UUID(run["id"]), "s",
                                              f"{SQUARE}/Data/{ACQUISITION}.xml", len(xml), 1.0)
        staged = storages.primary.stage()
        staged.write(xml)
        with pytest.raises(RuntimeError):
            registry.register_run_file(db, alice.actor, storages, target, staged, "0" * 64,
                                       len(xml))
        db.rollback()
    with app.state.sessions() as db:
        assert db.query(RunFile).count() == 0
    runs = storages.primary.root / "runs"
    assert not runs.exists() or not [path for path in runs.rglob("*") if path.is_file()]
    monkeypatch.undo()
    assert put(alice, run["id"], f"{SQUARE}/Data/{ACQUISITION}.xml", xml).status_code == 201


# -- many small files in one request (POST …/ingest/batch) -------------------------------------

SESSION_NAME = "Supervisor_20250108_101446_62_cm40593-1_EPU"


def power_cut_on_second_interpretation(monkeypatch) -> None:
    """The batch path crashes while interpreting its second file (a power cut mid-batch)."""
    from cryovault.ingest import batch_registry

    real = batch_registry.interpret
    calls = []

    def breaks_on_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("power cut")
        return real(*args, **kwargs)

    monkeypatch.setattr(batch_registry, "interpret", breaks_on_the_second)


def frame(*files: tuple) -> bytes:
    """The batch body: (path, bytes[, mtime[, sha256 or None]]) per file."""
    body = b""
    for path, data, *rest in files:
        mtime = rest[0] if rest else 1000.0
        sha = rest[1] if len(rest) > 1 else hashlib.sha256(data).hexdigest()
        header = {"path": path, "size": len(data), "mtime": mtime, "sha256": sha}
        body += json.dumps(header).encode() + b"\n" + data
    return body


def batch(user, dataset_id: str, body: bytes, session: str = SESSION_NAME):
    return user.post(f"/api/v1/datasets/{dataset_id}/ingest/batch", content=body,
                     headers={"X-Session": session,
                              "Content-Type": "application/octet-stream"})


def small_mrc(tmp_path: Path, edge: int = 16) -> bytes:
    """An integrated image as EPU writes it (float32 MRC), small."""
    import mrcfile
    import numpy as np

    path = tmp_path / f"integrated_{edge}.mrc"
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.arange(edge * edge, dtype=np.float32).reshape(edge, edge))
    return path.read_bytes()


def listed(user, dataset_id: str) -> dict[str, dict]:
    items = user.get(f"/api/v1/datasets/{dataset_id}/ingest/files").json()["items"]
    return {item["path"]: item for item in items}


def test_a_batch_registers_each_file_on_its_own(alice, app):
    run = epu_run(alice)
    xml = (EPU / SQUARE / "Data" / f"{ACQUISITION}.xml").read_bytes()
    jpg = (EPU / SQUARE / "Data" / f"{ACQUISITION}.jpg").read_bytes()
    known = f"{SQUARE}/Data/FoilHole_1_Data_2_3_20250108_154915_fractions.tiff"
    assert put(alice, run["id"], known, b"II*\x00first").status_code == 201
    conflicting = f"{SQUARE}/Data/FoilHole_1_Data_2_3_20250108_154916.xml"
    assert put(alice, run["id"], conflicting, b"<a/>").status_code == 201
    session = (EPU / "EpuSession.dm").read_bytes()
    response = batch(alice, run["id"], frame(
        ("EpuSession.dm", session),
        (f"{SQUARE}/Data/{ACQUISITION}.xml", xml),
        (known, b"II*\x00first"),  # the same file again: already registered
        (conflicting, b"<b/>", 2000.0),  # another file under a registered path
        ("../escape.xml", b"x"),  # a refused path
        (f"{SQUARE}/Data/{ACQUISITION}.jpg", jpg, 1000.0, "0" * 64),  # bytes do not match
        (f"{SQUARE}/Data/{ACQUISITION}_fractions.tiff", b"II*\x00" + b"\x00" * 60),
        ("broken.xml", b"", 1000.0, None),  # empty, no checksum announced
    ))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["path"] for r in results] == [
        "EpuSession.dm", f"{SQUARE}/Data/{ACQUISITION}.xml", known, conflicting,
        "../escape.xml", f"{SQUARE}/Data/{ACQUISITION}.jpg",
        f"{SQUARE}/Data/{ACQUISITION}_fractions.tiff", "broken.xml"]
    statuses = [r["status"] for r in results]
    assert statuses == ["registered", "registered", "already_registered", "conflict",
                        "refused", "refused", "registered", "registered"]
    assert results[1]["item"]["kind"] == "micrograph" and results[1]["problem"] is None
    assert results[6]["item"]["status"] == "completed"  # its XML came earlier in the batch
    assert results[3]["file_id"] is None and "different file" in results[3]["detail"]
    assert "'..'" in results[4]["detail"] and "sha256" in results[5]["detail"]
    assert all(r["detail"] is None for r in results if r["status"].endswith("registered"))
    files = listed(alice, run["id"])
    assert set(files) == {"EpuSession.dm", f"{SQUARE}/Data/{ACQUISITION}.xml", known,
                          conflicting, f"{SQUARE}/Data/{ACQUISITION}_fractions.tiff",
                          "broken.xml"}
    assert files[known]["id"] == results[2]["file_id"]
    assert files[conflicting]["sha256"] == hashlib.sha256(b"<a/>").hexdigest()
    content = alice.get(f"/api/v1/run-files/{results[1]['file_id']}/content")
    assert content.content == xml
    # the bytes of refused files were not kept: one file per registered one
    with app.state.sessions() as db:
        keys = {row.key for row in db.query(RunFile)}
    stored = {str(p.relative_to(app.state.storages.primary.root))
              for p in (app.state.storages.primary.root / "runs").rglob("*") if p.is_file()}
    assert stored == keys
    # the same batch again (e.g. its answer was lost): nothing new, nothing lost
    again = batch(alice, run["id"], frame(("EpuSession.dm", session),
                                          (f"{SQUARE}/Data/{ACQUISITION}.xml", xml)))
    assert [r["status"] for r in again.json()["results"]] == ["already_registered"] * 2
    assert [r["file_id"] for r in again.json()["results"]] == [r["file_id"]
                                                               for r in results[:2]]


def test_a_batch_replaces_rewritten_session_files_and_keeps_tombstones(alice, app):
    run = epu_run(alice)
    session = (EPU / "EpuSession.dm").read_bytes()
    first = batch(alice, run["id"], frame(("EpuSession.dm", session, 1.0)))
    assert first.json()["results"][0]["status"] == "registered"
    second = batch(alice, run["id"], frame(("EpuSession.dm", session, 2.0),
                                           ("EpuSession.dm", session, 3.0)))
    assert [r["status"] for r in second.json()["results"]] == ["registered", "registered"]
    with app.state.sessions() as db:
        rows = db.query(RunFile).filter_by(relative_path="EpuSession.dm").all()
        assert len(rows) == 1 and rows[0].source_mtime == 3.0
        assert db.query(StorageTrash).count() == 2


def test_a_batch_refuses_deleted_atlas_data(alice):
    run = epu_run(alice)
    atlas = (FIXTURES / "epu" / "atlas" / "Atlas.dm").read_bytes()
    assert put(alice, run["id"], "Atlas/Sample7/Atlas/Atlas.dm", atlas).status_code == 201
    atlases = alice.get(f"/api/v1/datasets/{run['id']}/atlases").json()
    atlas_id = atlases["items"][0]["id"] if "items" in atlases else atlases[0]["id"]
    assert alice.delete(f"/api/v1/atlases/{atlas_id}/data").status_code in (200, 202)
    response = batch(alice, run["id"], frame(("Atlas/Sample7/Atlas/Atlas_1.jpg", b"\xff\xd8"),
                                             ("EpuSession.dm", b"<x/>")))
    results = response.json()["results"]
    assert results[0]["status"] == "conflict" and "deleted" in results[0]["detail"]
    assert results[1]["status"] == "registered"


@pytest.mark.parametrize("body,words", [
    (b"", ["empty"]),
    (b"not json\nxx", ["file 2", "JSON"]),
    (b'{"path": "a.xml", "size": 3, "mtime": 1, "sha256": null}', ["newline"]),
    (b'{"path": "a.xml", "size": 10, "mtime": 1, "sha256": null}\nabc', ["10 bytes", "3"]),
    (b'{"path": "a.xml", "size": -1, "mtime": 1, "sha256": null}\n', ["size"]),
    (b'{"path": "a.xml", "size": 1, "mtime": "now", "sha256": null}\nx', ["mtime"]),
    (b'{"path": "a.xml", "size": 1, "mtime": 1, "sha256": "abc"}\nx', ["sha256"]),
    (b'[1, 2]\n', ["object"]),
    (b'{"size": 1, "mtime": 1, "sha256": null}\nx', ["path"]),
])
def test_malformed_framing_registers_nothing(alice, body, words):
    run = epu_run(alice)
    good = frame(("EpuSession.dm", b"<x/>"))
    assert_error(batch(alice, run["id"], good + body if body else body), 422, *words)
    assert listed(alice, run["id"]) == {}


def test_batch_limits(alice, monkeypatch):
    from cryovault.ingest import batch_framing

    run = epu_run(alice)
    many = frame(*[(f"{SQUARE}/Data/FoilHole_1_Data_2_3_20250108_15{i:04d}_fractions.tiff",
                    b"II*\x00") for i in range(batch_framing.MAX_BATCH_FILES + 1)])
    assert_error(batch(alice, run["id"], many), 413, str(batch_framing.MAX_BATCH_FILES))
    monkeypatch.setattr(batch_framing, "MAX_BATCH_BYTES", 100)
    assert_error(batch(alice, run["id"], frame(("a.tiff", b"x" * 60), ("b.tiff", b"y" * 60))),
                 413, "'b.tiff'")
    monkeypatch.setattr(batch_framing, "MAX_BATCH_BODY_BYTES", 1000)
    assert_error(batch(alice, run["id"], frame(("a.tiff", b"x" * 2000))), 413, "1,000")
    assert listed(alice, run["id"]) == {}


def test_batch_permissions_session_and_dataset_types(alice, bob):
    run = epu_run(alice)
    body = frame(("EpuSession.dm", b"<x/>"))
    assert_error(batch(bob, run["id"], body), 404)
    alice.put(f"/api/v1/elements/{run['id']}/sharing",
              json={"privacy": "private", "everybody": None, "grants": [
                  {"username": "alice", "level": "owner"},
                  {"username": "bob", "level": "viewer"}]}).raise_for_status()
    assert_error(batch(bob, run["id"], body), 403)
    anonymous = alice.client.post(f"/api/v1/datasets/{run['id']}/ingest/batch", content=body,
                                  headers={"X-Session": "s"})
    assert anonymous.status_code == 401
    assert_error(batch(alice, run["id"], body, session=" "), 422, "session")
    assert_error(batch(alice, "not-a-uuid", body), 404)
    workflow = alice.create("workflow", "Notebook", workflow_type="free")
    step = alice.create("step", "Step", workflow["id"])
    dataset = alice.create("dataset", "Uploads", step["id"], dataset_type="free")
    assert_error(batch(alice, dataset["id"], body), 422, "epu_run")
    assert listed(alice, run["id"]) == {}


def test_a_batch_into_a_tomo_run(alice):
    run = tomo_run(alice)
    mdoc = (MDOC / "tomo_test_1.mdoc").read_bytes()
    response = batch(alice, run["id"], frame(("Position_1.mdoc", mdoc),
                                             ("Position_2.mdoc", b"\x00\xff not an mdoc")),
                     session="tomo")
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["registered", "registered"], response.text
    assert results[0]["item"]["kind"] == "tilt_series" and results[0]["problem"] is None
    assert results[1]["item"]["status"] == "failed" and results[1]["problem"]


def test_a_failure_while_registering_a_batch_registers_none_of_it(alice, app, monkeypatch,
                                                                   tmp_path):
    """A batch is one transaction: a crash midway leaves none of its files registered and no
    bytes of them (nor of their downscaled copies)."""
    from cryovault.ingest import batch_framing, batch_registry

    run = epu_run(alice)
    power_cut_on_second_interpretation(monkeypatch)
    body = frame((f"{SQUARE}/Data/{ACQUISITION}.mrc", small_mrc(tmp_path)),  # a copy is made
                 *[(f"{SQUARE}/Data/FoilHole_1_Data_2_3_20250108_1549{i:02d}_fractions.tiff",
                    b"II*\x00" + bytes([i])) for i in range(3)])
    dataset_id = uuid.UUID(run["id"])
    with app.state.sessions() as db:
        target = batch_registry.open_batch(db, alice.actor, dataset_id, "s")
        with pytest.raises(RuntimeError):
            batch_registry.register_batch(db, app.state.storages, target,
                                          batch_framing.parse_batch(body))
    with app.state.sessions() as db:
        keys = [row.key for row in db.query(RunFile)]
    assert keys == []
    root = app.state.storages.primary.root
    assert [p for p in (root / "runs").rglob("*") if p.is_file()] == []
    assert [p for p in (root / "tmp").rglob("*") if p.is_file()] == []
