"""The Discovery viewer's data (SPEC SPA-8) through the API: atlases gathered across a
workflow's EPU runs, grid-square markers and their states, foil holes and acquisitions on a
grid square, images of run files (Deep Zoom previews, tiles, thumbnails), deleting atlas data;
on the real EPU files of ../shared/fixtures and on a simulated session.

`simulated_visit()` and `register_visit()` are shared with the page and browser tests."""

from __future__ import annotations

import atexit
import functools
import io
import json
import math
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select

from cryovault.db.files import StorageTrash
from cryovault.db.runs import Atlas, GridSquare, Micrograph, RunFile
from cryovault.ingest.discovery import (
    MARKER_COMPLETED,
    MARKER_IN_PROGRESS,
    MARKER_NOT_IMAGED,
    square_marker_state,
)
from tests.helpers import assert_error

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "epu"
ATLAS_DM = FIXTURES / "atlas" / "Atlas.dm"
SQUARE_DM = FIXTURES / "metadata" / "GridSquare_4590776.dm"
SESSION_2025 = FIXTURES / "epu-dir-example"
ACQUISITION_XML = (SESSION_2025 / "Images-Disc1" / "GridSquare_8999138" / "Data"
                   / "FoilHole_9015883_Data_9017347_6_20250108_154915.xml")
SESSION = "Supervisor_20240406_101010_62_test_EPU"

# --- shared helpers ---------------------------------------------------------------------------


@functools.cache
def simulated_visit(squares: int = 2, holes: int = 2, per_hole: int = 2) -> Path:
    """A simulated EPU visit (atlas + session), written once per test process."""
    from cryovault.ingest.simulator.epu_plan import EpuOptions
    from cryovault.ingest.simulator.epu_run import simulate_epu

    folder = Path(tempfile.mkdtemp(prefix="cv-visit-"))
    atexit.register(shutil.rmtree, folder, True)
    simulate_epu(folder, EpuOptions(squares=squares, holes=holes, acquisitions_per_hole=per_hole,
                                    rate_per_s=0, size_px=256, frames=4))
    return folder


def visit_files(visit: Path, *, all_metadata: bool = False) -> list[tuple[Path, str]]:
    """The files of a visit as a watcher sends them: (file, path relative to the session,
    atlas files under the virtual prefix Atlas/), the atlas first, then the session, then the
    grid squares' metadata and images in the order they were written. Without `all_metadata`,
    only the Metadata/GridSquare_*.dm of imaged squares (the others only list their targets)."""
    session = next(visit.glob("*_EPU"))
    atlas_root = next((visit / "atlas").iterdir())
    files = [(p, "Atlas/" + p.relative_to(atlas_root).as_posix())
             for p in sorted(atlas_root.rglob("*")) if p.is_file()]
    files.append((session / "EpuSession.dm", "EpuSession.dm"))
    imaged = {p.name for p in session.glob("Images-Disc*/GridSquare_*")}
    files += [(p, p.relative_to(session).as_posix())
              for p in sorted((session / "Metadata").glob("*.dm"))
              if all_metadata or p.stem in imaged]
    images = [p for p in session.glob("Images-Disc*/**/*") if p.is_file()]
    images.sort(key=lambda p: (p.stat().st_mtime, p.name))
    files += [(p, p.relative_to(session).as_posix()) for p in images]
    return files


def session_name(visit: Path) -> str:
    return next(visit.glob("*_EPU")).name


def acquisition_names(files: list[tuple[Path, str]]) -> list[str]:
    """The acquisitions of a visit in the order their XML comes."""
    return [rel.rsplit("/", 1)[-1][:-4] for _, rel in files
            if "/Data/" in rel and rel.endswith(".xml")]


def register_visit(put: Callable[..., object], dataset_id: str, files: list[tuple[Path, str]],
                   session: str) -> list[dict]:
    """PUT each file to the ingest endpoint; `put(url, content=, headers=)` returns a response
    with `status_code` and `json()` (the test client, or an adapter of a browser context)."""
    answers = []
    for path, relative in files:
        stat = path.stat()
        response = put(f"/api/v1/datasets/{dataset_id}/ingest/files/{relative}",
                       content=path.read_bytes(),
                       headers={"X-Source-Size": str(stat.st_size),
                                "X-Source-Mtime": str(stat.st_mtime), "X-Session": session})
        assert response.status_code in (200, 201), (relative, response.text)
        answers.append(response.json())
    return answers


def epu_run(user, name: str = "EPU run 1", workflow: dict | None = None) -> dict:
    workflow = workflow or user.create("workflow", "Apoferritin", workflow_type="spa")
    imaging = next(s for s in user.children(workflow["id"]) if s["name"] == "Imaging")
    return user.create("dataset", name, imaging["id"], dataset_type="epu_run")


def put_bytes(user, dataset_id: str, relative: str, data: bytes, *, session: str = SESSION,
              mtime: float = 1000.0):
    response = user.put(f"/api/v1/datasets/{dataset_id}/ingest/files/{relative}", content=data,
                        headers={"X-Source-Size": str(len(data)), "X-Source-Mtime": str(mtime),
                                 "X-Session": session})
    assert response.status_code in (200, 201), (relative, response.text)
    return response.json()


def share(owner, element: dict, **levels: str) -> None:
    grants = [{"username": owner.username, "level": "owner"}]
    grants += [{"username": name, "level": level} for name, level in levels.items()]
    response = owner.put(f"/api/v1/elements/{element['id']}/sharing",
                         json={"privacy": "private", "grants": grants})
    assert response.status_code == 200, response.text


def ok(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def visit() -> Path:
    return simulated_visit()


# --- marker states ----------------------------------------------------------------------------


@pytest.mark.parametrize(("epu_state", "visited", "latest", "active", "expected"), [
    ("Completed", False, False, True, MARKER_COMPLETED),  # EPU's word first
    ("completed", True, True, True, MARKER_COMPLETED),
    ("InProgress", False, False, False, MARKER_IN_PROGRESS),
    ("Acquiring", True, False, True, MARKER_IN_PROGRESS),
    (None, False, False, True, MARKER_NOT_IMAGED),
    ("Defined", False, True, True, MARKER_NOT_IMAGED),
    ("Queued", False, False, True, MARKER_NOT_IMAGED),
    (None, True, True, True, MARKER_IN_PROGRESS),  # the square EPU works on now
    (None, True, False, True, MARKER_COMPLETED),  # EPU moved on
    (None, True, True, False, MARKER_COMPLETED),  # the run is over
    ("Defined", True, True, True, MARKER_IN_PROGRESS),
])
def test_square_marker_state(epu_state, visited, latest, active, expected):
    assert square_marker_state(epu_state, visited, latest, active) == expected


# --- real EPU files ---------------------------------------------------------------------------


@pytest.mark.skipif(not FIXTURES.exists(), reason="../shared/fixtures is missing")
def test_real_atlas_and_grid_square(alice):
    run = epu_run(alice)
    put_bytes(alice, run["id"], "Atlas/Sample4/Atlas/Atlas.dm", ATLAS_DM.read_bytes())
    table = ok(alice.get(f"/api/v1/datasets/{run['id']}/atlases"))
    assert table["element"]["id"] == run["id"] and table["workflow"]["name"] == "Apoferritin"
    [entry] = table["items"]
    # Atlas.dm: AcquisitionDateTime 2024-04-05T10:17:53.98788+01:00, autoloader slot 4,
    # 222 grid-square nodes
    assert entry["name"] == "Sample4" and entry["cassette_slot"] == 4
    assert entry["acquired_at"] == "2024-04-05T09:17:53.987880Z"
    assert entry["grid_square_count"] == 222 and entry["deleted"] is False
    assert entry["runs"] == [{"id": run["id"], "name": "EPU run 1"}]

    atlas = ok(alice.get(f"/api/v1/atlases/{entry['id']}"))
    assert atlas["image"] is None  # no atlas image registered
    assert len(atlas["grid_squares"]) == 222
    assert atlas["counts"] == {"completed": 0, "in_progress": 0, "not_imaged": 222}
    square = next(s for s in atlas["grid_squares"] if s["epu_id"] == "4590776")
    assert (square["x_px"], square["y_px"]) == pytest.approx((1894.62585, 852.104736))

    # Metadata/GridSquare_4590776.dm: State InProgress, 570 targets; hole 5665438 at
    # PixelCenter (1396, 972), PixelWidthHeight 51.28809
    put_bytes(alice, run["id"], "Metadata/GridSquare_4590776.dm", SQUARE_DM.read_bytes())
    atlas = ok(alice.get(f"/api/v1/atlases/{entry['id']}"))
    square = next(s for s in atlas["grid_squares"] if s["epu_id"] == "4590776")
    assert square["epu_state"] == "InProgress" and square["state"] == MARKER_IN_PROGRESS
    assert atlas["counts"] == {"completed": 0, "in_progress": 1, "not_imaged": 221}

    # four exposures of hole 5665438 (the file names the .dm lists for it)
    xml = ACQUISITION_XML.read_bytes()
    names = ["FoilHole_5665438_Data_4601896_4601898_20240406_102527",
             "FoilHole_5665438_Data_4601928_4601930_20240406_102532",
             "FoilHole_5665438_Data_4601905_4601907_20240406_102536",
             "FoilHole_5665438_Data_4601913_4601915_20240406_102539"]
    for name in names:
        put_bytes(alice, run["id"], f"Images-Disc1/GridSquare_4590776/Data/{name}.xml", xml)
    detail = ok(alice.get(f"/api/v1/grid-squares/{square['id']}"))
    assert detail["epu_id"] == "4590776" and detail["dataset_id"] == run["id"]
    assert detail["atlas_id"] == entry["id"] and detail["image"] is None
    assert len(detail["foil_holes"]) == 570
    hole = next(h for h in detail["foil_holes"] if h["epu_id"] == "5665438")
    assert (hole["x_px"], hole["y_px"], hole["diameter_px"]) == pytest.approx(
        (1396.0, 972.0, 51.28809))
    assert hole["micrograph_count"] == 4
    assert sorted(a["name"] for a in detail["acquisitions"]) == sorted(names)
    # placed around the hole's centre, on a circle of 0.3 × its diameter, all apart
    radius = 0.3 * 51.28809
    spots = {(round(a["x_px"], 6), round(a["y_px"], 6)) for a in detail["acquisitions"]}
    assert len(spots) == 4
    for a in detail["acquisitions"]:
        assert math.hypot(a["x_px"] - 1396.0, a["y_px"] - 972.0) == pytest.approx(radius)
        assert a["status"] == "in_progress"  # their movies have not arrived
    assert detail["counts"] == {"in_progress": 4}


@pytest.mark.skipif(not FIXTURES.exists(), reason="../shared/fixtures is missing")
def test_real_grid_square_and_acquisition_images(alice):
    run = epu_run(alice)
    session = "Supervisor_20250108_101446_62_cm40593-1_EPU"
    square_xml = SESSION_2025 / "Images-Disc1/GridSquare_8999138/GridSquare_20250108_151151.xml"
    put_bytes(alice, run["id"], "Images-Disc1/GridSquare_8999138/GridSquare_20250108_151151.xml",
              square_xml.read_bytes(), session=session)
    data = "Images-Disc1/GridSquare_8999138/Data/FoilHole_9015883_Data_9017347_6_20250108_154915"
    jpeg_path = ACQUISITION_XML.with_suffix(".jpg")
    put_bytes(alice, run["id"], f"{data}.xml", ACQUISITION_XML.read_bytes(), session=session)
    put_bytes(alice, run["id"], f"{data}.jpg", jpeg_path.read_bytes(), session=session)
    with alice.client.app.state.sessions() as db:
        square_id = db.scalar(select(GridSquare.id).where(
            GridSquare.dataset_id == uuid.UUID(run["id"])))
    detail = ok(alice.get(f"/api/v1/grid-squares/{square_id}"))
    # the XML: SpatialScale pixelSize 4.156276e-8 m = 415.63 Å; its image has not arrived
    assert detail["epu_id"] == "8999138" and detail["image"] is None
    assert detail["pixel_size_angstrom"] == pytest.approx(415.6276, rel=1e-5)
    # visited (an acquisition arrived), no EPU state, the run's latest square: in progress
    assert detail["state"] == MARKER_IN_PROGRESS and detail["atlas_id"] is None
    [acquisition] = detail["acquisitions"]
    assert acquisition["foil_hole_id"] == "9015883" and acquisition["x_px"] is None
    # EPU's JPEG of the acquisition is viewable: preview at its own size, small thumbnail
    micrograph = ok(alice.get(f"/api/v1/datasets/{run['id']}/micrographs/{acquisition['id']}"))
    jpeg = next(f for f in micrograph["files"] if f["role"] == "acquisition_jpg")
    with Image.open(jpeg_path) as image:
        width, height = image.size
    preview = ok(alice.get(f"/api/v1/run-files/{jpeg['id']}/preview"))
    assert (preview["width"], preview["height"]) == (width, height)
    tile = alice.get(preview["tile_url"].format(level=preview["max_level"], col=0, row=0))
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(tile.content)) as png:
        assert png.size == (min(512, width), min(512, height))
    thumbnail = alice.get(f"/api/v1/run-files/{jpeg['id']}/thumbnail")
    with Image.open(io.BytesIO(thumbnail.content)) as png:
        assert max(png.size) <= 256 and png.size[0] / png.size[1] == pytest.approx(
            width / height, rel=0.05)


# --- a simulated session ----------------------------------------------------------------------


def test_simulated_session_markers_states_and_positions(alice, visit):
    run = epu_run(alice)
    files = visit_files(visit)
    register_visit(alice.put, run["id"], files, session_name(visit))
    truth = [json.loads(line) for line in (visit / "ground_truth.jsonl").read_text().splitlines()]
    truth_atlas = next(t for t in truth if t["kind"] == "atlas")
    exposures = [t for t in truth if t["kind"] == "acquisition"]
    [entry] = ok(alice.get(f"/api/v1/datasets/{run['id']}/atlases"))["items"]
    assert entry["cassette_slot"] == truth_atlas["cassette_slot"]
    atlas = ok(alice.get(f"/api/v1/atlases/{entry['id']}"))
    # a marker per grid square of the atlas, where the simulator put it
    expected = {str(s["grid_square_id"]): (s["x_px"], s["y_px"])
                for s in truth_atlas["grid_squares"]}
    markers = {s["epu_id"]: (s["x_px"], s["y_px"]) for s in atlas["grid_squares"]}
    assert markers.keys() == expected.keys()
    for epu_id, position in expected.items():
        assert markers[epu_id] == pytest.approx(position), epu_id
    imaged = {str(t["grid_square_id"]) for t in exposures}
    assert {s["epu_id"] for s in atlas["grid_squares"] if s["micrograph_count"]} == imaged
    # EPU's GridSquare_<id>.dm of the imaged squares say Completed; the others: not imaged
    for square in atlas["grid_squares"]:
        state = MARKER_COMPLETED if square["epu_id"] in imaged else MARKER_NOT_IMAGED
        assert square["state"] == state, square
    assert atlas["counts"] == {"completed": len(imaged), "in_progress": 0,
                               "not_imaged": len(expected) - len(imaged)}
    # the atlas image: its bin-1 copy, with the atlas's pixel size
    image = atlas["image"]
    assert image["bin"] == 1
    assert (image["width_px"], image["height_px"]) == (truth_atlas["width_px"],
                                                       truth_atlas["height_px"])
    assert image["pixel_size_angstrom"] == pytest.approx(truth_atlas["pixel_size_angstrom"])
    assert atlas["can_delete"] is True and atlas["deleted"] is False

    square = next(s for s in atlas["grid_squares"] if s["micrograph_count"])
    detail = ok(alice.get(f"/api/v1/grid-squares/{square['id']}"))
    mine = [t for t in exposures if str(t["grid_square_id"]) == square["epu_id"]]
    assert sorted(a["name"] for a in detail["acquisitions"]) == sorted(t["name"] for t in mine)
    assert square["micrograph_count"] == len(mine)
    holes = {h["epu_id"]: h for h in detail["foil_holes"]}
    for acquisition in detail["acquisitions"]:
        hole = holes[acquisition["foil_hole_id"]]
        assert hole["micrograph_count"] == 2
        distance = math.hypot(acquisition["x_px"] - hole["x_px"],
                              acquisition["y_px"] - hole["y_px"])
        assert distance == pytest.approx(0.3 * hole["diameter_px"])  # 2 exposures per hole
        assert acquisition["status"] == "completed"
    square_truth = next(t for t in truth if t["kind"] == "grid_square"
                        and str(t["grid_square_id"]) == square["epu_id"])
    assert detail["pixel_size_angstrom"] == pytest.approx(square_truth["pixel_size_angstrom"])
    assert detail["image"]["bin"] == 2
    assert detail["image"]["pixel_size_angstrom"] == pytest.approx(
        2 * square_truth["pixel_size_angstrom"])


def test_states_from_what_arrived_when_epu_says_nothing(alice, visit):
    """Without the GridSquare_<id>.dm files, a square is in progress while it holds the run's
    latest acquisition, terminated once EPU moved on or the run is over."""
    run = epu_run(alice)
    files = [f for f in visit_files(visit) if not f[1].startswith("Metadata/")]
    register_visit(alice.put, run["id"], files, session_name(visit))
    entry = ok(alice.get(f"/api/v1/datasets/{run['id']}/atlases"))["items"][0]
    squares = [s for s in ok(alice.get(f"/api/v1/atlases/{entry['id']}"))["grid_squares"]
               if s["micrograph_count"]]
    assert len(squares) == 2 and all(s["epu_state"] is None for s in squares)
    order = [rel.split("/")[1].split("_")[1] for _, rel in files if "/Data/" in rel]
    last_square = order[-1]
    states = {s["epu_id"]: s["state"] for s in squares}
    assert states[last_square] == MARKER_IN_PROGRESS
    assert [v for k, v in states.items() if k != last_square] == [MARKER_COMPLETED]
    response = alice.patch(f"/api/v1/elements/{run['id']}", json={"status": "completed"})
    assert response.status_code == 200, response.text
    squares = ok(alice.get(f"/api/v1/atlases/{entry['id']}"))["grid_squares"]
    assert {s["state"] for s in squares if s["micrograph_count"]} == {MARKER_COMPLETED}


def test_atlases_gathered_across_the_workflow(alice, bob, visit):
    """Two sessions on one grid use the same atlas: one entry naming both runs. Runs of other
    workflows, and runs the user cannot see, are left out."""
    first = epu_run(alice, "Session A")
    workflow = alice.get(f"/api/v1/elements/{first['id']}/path").json()[0]
    second = epu_run(alice, "Session B", workflow={"id": workflow["id"]})
    files = visit_files(visit)
    atlas_files = [f for f in files if f[1].startswith("Atlas/")]
    register_visit(alice.put, first["id"], files, session_name(visit))
    register_visit(alice.put, second["id"], atlas_files, session_name(visit))
    elsewhere = epu_run(alice, "Other project")
    register_visit(alice.put, elsewhere["id"], atlas_files[:1], session_name(visit))

    table = ok(alice.get(f"/api/v1/datasets/{second['id']}/atlases"))
    [entry] = table["items"]
    assert {r["name"] for r in entry["runs"]} == {"Session A", "Session B"}
    assert len(entry["atlas_ids"]) == 2
    with alice.client.app.state.sessions() as db:
        atlas_b = db.scalar(select(Atlas.id).where(Atlas.dataset_id == uuid.UUID(second["id"])))
    assert entry["id"] == str(atlas_b)  # the run asked about opens its own record
    from_workflow = ok(alice.get(f"/api/v1/workflows/{workflow['id']}/atlases"))
    assert from_workflow["workflow"]["id"] == workflow["id"]
    assert [a["atlas_ids"] for a in from_workflow["items"]] == [entry["atlas_ids"]]
    # session B registered only the atlas: its record shows the squares of session A's run
    atlas = ok(alice.get(f"/api/v1/atlases/{entry['id']}"))
    assert sum(s["micrograph_count"] for s in atlas["grid_squares"]) == 8
    assert {s["dataset_id"] for s in atlas["grid_squares"] if s["micrograph_count"]} == {
        first["id"]}

    # bob sees session B only: the atlas is his run's alone
    share(alice, second, bob="viewer")
    table = ok(bob.get(f"/api/v1/datasets/{second['id']}/atlases"))
    assert [r["name"] for r in table["items"][0]["runs"]] == ["Session B"]
    atlas = ok(bob.get(f"/api/v1/atlases/{entry['id']}"))
    assert atlas["can_delete"] is False
    assert sum(s["micrograph_count"] for s in atlas["grid_squares"]) == 0
    assert_error(bob.get(f"/api/v1/datasets/{first['id']}/atlases"), 404)


def test_atlas_table_sorting(alice, visit):
    run = epu_run(alice)
    atlas_dm = next((visit / "atlas").rglob("Atlas.dm")).read_bytes()
    put_bytes(alice, run["id"], "Atlas/Sample2/Atlas/Atlas.dm", atlas_dm)
    if FIXTURES.exists():
        put_bytes(alice, run["id"], "Atlas/Sample4/Atlas/Atlas.dm", ATLAS_DM.read_bytes())
    names = [a["name"] for a in ok(alice.get(f"/api/v1/datasets/{run['id']}/atlases"))["items"]]
    by_date = [a["acquired_at"] for a in ok(alice.get(
        f"/api/v1/datasets/{run['id']}/atlases", params={"sort": "date", "order": "asc"}))["items"]]
    assert by_date == sorted(by_date)
    assert [a["acquired_at"] for a in ok(alice.get(
        f"/api/v1/datasets/{run['id']}/atlases"))["items"]] == sorted(by_date, reverse=True)
    by_name = [a["name"] for a in ok(alice.get(
        f"/api/v1/datasets/{run['id']}/atlases", params={"sort": "name", "order": "asc"}))["items"]]
    assert by_name == sorted(names)
    by_slot = [a["cassette_slot"] for a in ok(alice.get(
        f"/api/v1/datasets/{run['id']}/atlases",
        params={"sort": "slot", "order": "desc"}))["items"]]
    assert by_slot == sorted(by_slot, reverse=True)
    assert_error(alice.get(f"/api/v1/datasets/{run['id']}/atlases", params={"sort": "size"}),
                 422, "sort")
    assert_error(alice.get(f"/api/v1/datasets/{run['id']}/atlases", params={"order": "up"}),
                 422, "order")


def test_delete_atlas_data(alice, bob, make_user, visit):
    run = epu_run(alice)
    files = visit_files(visit)
    register_visit(alice.put, run["id"], files, session_name(visit))
    entry = ok(alice.get(f"/api/v1/datasets/{run['id']}/atlases"))["items"][0]
    atlas = ok(alice.get(f"/api/v1/atlases/{entry['id']}"))
    square = next(s for s in atlas["grid_squares"] if s["micrograph_count"])
    square_image = ok(alice.get(f"/api/v1/grid-squares/{square['id']}"))["image"]
    atlas_files = [rel for _, rel in files if rel.startswith("Atlas/")]
    app = alice.client.app
    with app.state.sessions() as db:
        dataset_id = uuid.UUID(run["id"])
        stored = db.scalars(select(RunFile).where(RunFile.dataset_id == dataset_id)).all()
        atlas_rows = [f for f in stored if f.relative_path.startswith("Atlas/")
                      or f.relative_path.startswith(".cryovault/downscaled/Atlas/")]
        micrographs_before = db.scalar(select(func.count()).select_from(Micrograph)
                                       .where(Micrograph.dataset_id == dataset_id))
    assert len([f for f in atlas_rows if f.role != "downscaled"]) == len(atlas_files)
    storage = app.state.storages.primary
    keys = [f.key for f in atlas_rows]
    assert all(storage.size(key) is not None for key in keys)

    # who may: collaborators and owners; viewers are refused, strangers see nothing
    carol = make_user("carol")
    share(alice, run, bob="viewer", carol="collaborator")
    assert_error(bob.delete(f"/api/v1/atlases/{entry['id']}/data"), 403, "collaborator")
    dave = make_user("dave")
    assert_error(dave.delete(f"/api/v1/atlases/{entry['id']}/data"), 404, "atlas")
    assert_error(alice.delete(f"/api/v1/atlases/{uuid.uuid4()}/data"), 404, "atlas")
    assert_error(alice.delete("/api/v1/atlases/not-an-id/data"), 404)

    result = ok(carol.delete(f"/api/v1/atlases/{entry['id']}/data"))
    assert result["atlas_ids"] == [entry["id"]]
    assert result["files_removed"] == len(atlas_rows)
    assert result["bytes_freed"] == sum(f.size_bytes for f in atlas_rows)
    # the bytes are gone (the trash is emptied after the answer), their records too
    assert all(storage.size(key) is None for key in keys)
    with app.state.sessions() as db:
        assert db.scalar(select(func.count()).select_from(StorageTrash)) == 0
        left = db.scalars(select(RunFile.relative_path).where(
            RunFile.dataset_id == dataset_id)).all()
        assert not [p for p in left if "Atlas/" in p and not p.startswith("Images")]
        assert db.scalar(select(func.count()).select_from(Micrograph).where(
            Micrograph.dataset_id == dataset_id)) == micrographs_before
        assert db.get(Atlas, uuid.UUID(entry["id"])).deleted is True
    # the atlas is still listed, marked; its squares and their images stay
    after = ok(alice.get(f"/api/v1/atlases/{entry['id']}"))
    assert after["deleted"] is True and after["image"] is None
    assert len(after["grid_squares"]) == len(atlas["grid_squares"])
    assert ok(alice.get(f"/api/v1/datasets/{run['id']}/atlases"))["items"][0]["deleted"] is True
    assert ok(alice.get(f"/api/v1/grid-squares/{square['id']}"))["image"] == square_image
    assert alice.get(f"/api/v1/run-files/{square_image['file_id']}/content").status_code == 200
    assert_error(alice.get(f"/api/v1/run-files/{atlas['image']['file_id']}/preview"), 404)
    # again: nothing left to remove
    assert ok(alice.delete(f"/api/v1/atlases/{entry['id']}/data"))["files_removed"] == 0


def test_run_file_images(alice, bob, visit):
    run = epu_run(alice)
    files = visit_files(visit)
    register_visit(alice.put, run["id"], files, session_name(visit))
    page = ok(alice.get(f"/api/v1/datasets/{run['id']}/micrographs"))
    detail = ok(alice.get(f"/api/v1/datasets/{run['id']}/micrographs/{page['items'][0]['id']}"))
    copy = next(f for f in detail["files"] if f["role"] == "downscaled")
    integrated = next(f for f in detail["files"] if f["role"] == "integrated")
    preview = ok(alice.get(f"/api/v1/run-files/{copy['id']}/preview"))
    size = detail["metadata"]["width_px"]
    assert preview["width"] == size // 4  # the micrograph's bin-4 copy
    full = ok(alice.get(f"/api/v1/run-files/{integrated['id']}/preview"))
    assert full["width"] == size and full["pixel_size_angstrom"] == pytest.approx(
        detail["metadata"]["pixel_size_angstrom"], rel=1e-3)
    thumb = alice.get(f"/api/v1/run-files/{integrated['id']}/thumbnail")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(thumb.content)) as png:
        assert max(png.size) <= 256
    level = full["max_level"]
    tile = alice.get(f"/api/v1/run-files/{integrated['id']}/tiles/{level}/0_0.png")
    assert tile.status_code == 200
    assert_error(alice.get(f"/api/v1/run-files/{integrated['id']}/tiles/{level}/9_9.png"), 404,
                 "tile")
    assert_error(alice.get(f"/api/v1/run-files/{integrated['id']}/tiles/{level + 1}/0_0.png"), 404,
                 "level")
    assert_error(alice.get(f"/api/v1/run-files/{integrated['id']}/tiles/0/x.png"), 404)
    assert_error(bob.get(f"/api/v1/run-files/{integrated['id']}/preview"), 404, "file")
    xml = next(f for f in detail["files"] if f["role"] == "acquisition_xml")
    assert_error(alice.get(f"/api/v1/run-files/{xml['id']}/preview"), 422)
    # bytes that changed in the storage are flagged, never shown
    with alice.client.app.state.sessions() as db:
        jpeg = db.get(RunFile, uuid.UUID(next(f for f in detail["files"]
                                              if f["role"] == "acquisition_jpg")["id"]))
        path = alice.client.app.state.storages.primary.local_path(jpeg.key)
        jpeg_id = jpeg.id
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    assert_error(alice.get(f"/api/v1/run-files/{jpeg_id}/preview"), 409, "checksum")
    with alice.client.app.state.sessions() as db:
        assert db.get(RunFile, jpeg_id).integrity == "mismatch"


def test_bad_input(alice, bob):
    run = epu_run(alice)
    free = alice.create("dataset", "Notes", next(
        s for s in alice.children(alice.get(f"/api/v1/elements/{run['id']}/path").json()[0]["id"])
        if s["name"] == "Processing")["id"])
    assert_error(alice.get(f"/api/v1/datasets/{free['id']}/atlases"), 422, "EPU run")
    assert_error(alice.get(f"/api/v1/datasets/{uuid.uuid4()}/atlases"), 404)
    assert_error(alice.get("/api/v1/datasets/x/atlases"), 404)
    assert_error(bob.get(f"/api/v1/datasets/{run['id']}/atlases"), 404)
    assert_error(alice.get(f"/api/v1/atlases/{uuid.uuid4()}"), 404, "atlas")
    assert_error(alice.get("/api/v1/atlases/nope"), 404)
    assert_error(alice.get(f"/api/v1/grid-squares/{uuid.uuid4()}"), 404, "grid square")
    assert_error(alice.get(f"/api/v1/run-files/{uuid.uuid4()}/preview"), 404)
    assert_error(alice.get(f"/api/v1/run-files/{uuid.uuid4()}/thumbnail"), 404)
    assert ok(alice.get(f"/api/v1/datasets/{run['id']}/atlases"))["items"] == []
    # a grid square of a run bob cannot see does not exist for him
    put_bytes(alice, run["id"], "Metadata/GridSquare_77.dm", b"<not xml")
    with alice.client.app.state.sessions() as db:
        square = db.scalar(select(GridSquare).where(GridSquare.dataset_id == uuid.UUID(run["id"])))
    detail = ok(alice.get(f"/api/v1/grid-squares/{square.id}"))
    assert detail["foil_holes"] == [] and detail["state"] == MARKER_NOT_IMAGED
    assert_error(bob.get(f"/api/v1/grid-squares/{square.id}"), 404, "grid square")
