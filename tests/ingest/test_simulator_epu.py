"""`cryovault simulate epu`: the simulated visit reads like a real one.

The simulator is run through the CLI with small sizes; every file it wrote is parsed with the
EPU parsers and compared with the ground truth, every path is classified, the XML element
paths that carry the values a parser reads are compared with the real EPU files in
/work/shared/fixtures, the movies are opened and their drift measured, and the overview images
are checked against the positions their metadata declare.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cryovault.cli import app
from cryovault.ingest.epu.layout import classify_epu_path
from cryovault.ingest.epu.parsers import (
    parse_atlas,
    parse_epu_session,
    parse_grid_square_metadata,
    parse_image_xml,
)
from cryovault.ingest.simulator.truth import GroundTruth, load_ground_truth
from cryovault.science.movies import open_movie

FIXTURES = Path("/work/shared/fixtures/epu")
REAL_IMAGES = FIXTURES / "epu-dir-example" / "Images-Disc1" / "GridSquare_8999138"
runner = CliRunner()

SQUARES, HOLES, PER_HOLE, FRAMES, SIZE = 2, 5, 2, 4, 256


@pytest.fixture(scope="module")
def offload(tmp_path_factory) -> tuple[Path, Path, GroundTruth, str]:
    """A TIFF run with movies offloaded to another root and some written before their XML."""
    root = tmp_path_factory.mktemp("sim")
    visit, movies = root / "visit", root / "offload"
    result = runner.invoke(app, [
        "simulate", "epu", str(visit), "--squares", str(SQUARES), "--holes", str(HOLES),
        "--rate", "0", "--size", str(SIZE), "--frames", str(FRAMES), "--seed", "3",
        "--out-of-order", "--movies", str(movies)])
    assert result.exit_code == 0, result.output
    return visit, movies, load_ground_truth(visit / "ground_truth.jsonl"), result.output


@pytest.fixture(scope="module")
def eer_run(tmp_path_factory) -> tuple[Path, GroundTruth]:
    visit = tmp_path_factory.mktemp("eer") / "visit"
    result = runner.invoke(app, [
        "simulate", "epu", str(visit), "--squares", "1", "--holes", "1", "--rate", "0",
        "--size", "64", "--frames", "3", "--movie-format", "eer", "--seed", "8"])
    assert result.exit_code == 0, result.output
    return visit, load_ground_truth(visit / "ground_truth.jsonl")


def _session_folder(visit: Path, truth: GroundTruth) -> Path:
    return visit / truth.session["session_folder"]


# -- the run ---------------------------------------------------------------------------------


def test_one_progress_line_per_grid_square(offload):
    _, _, truth, output = offload
    lines = [line for line in output.splitlines() if line.startswith("grid square ")]
    assert len(lines) == SQUARES
    for line, grid_square_id in zip(lines, truth.session["chosen_grid_square_ids"],
                                    strict=True):
        assert f"GridSquare_{grid_square_id}" in line and f"{HOLES} holes" in line
    assert truth.finished == {"kind": "finished", "acquisitions": SQUARES * HOLES * PER_HOLE,
                              "finished_at": truth.finished["finished_at"]}
    assert len(truth.acquisitions) == SQUARES * HOLES * PER_HOLE


def test_ground_truth_lines_are_json_with_a_kind(offload):
    visit, _, _, _ = offload
    kinds = [json.loads(line)["kind"]
             for line in (visit / "ground_truth.jsonl").read_text().splitlines()]
    assert kinds[0] == "atlas" and kinds[1] == "session" and kinds[-1] == "finished"
    assert kinds.count("grid_square") == SQUARES and kinds.count("foil_hole") == SQUARES * HOLES


def test_folder_names_follow_epu(offload):
    visit, _, truth, _ = offload
    session = _session_folder(visit, truth)
    assert session.parent == visit
    parts = session.name.split("_")
    assert parts[0] == "Supervisor" and parts[-1] == "EPU" and parts[-2] == "sim-1"
    datetime.strptime(f"{parts[1]}_{parts[2]}", "%Y%m%d_%H%M%S")
    assert parts[3].isdigit()
    atlas = visit / truth.session["atlas_folder"]
    assert atlas.parent == visit / "atlas" and atlas.name.endswith("_sim-1_Atlas")
    assert (atlas / f"Sample{truth.atlas['cassette_slot']}" / "Atlas" / "Atlas.dm").is_file()


# -- parsing every file ----------------------------------------------------------------------


def test_epu_session_file(offload):
    visit, _, truth, _ = offload
    record = parse_epu_session((_session_folder(visit, truth) / "EpuSession.dm").read_bytes())
    assert record.name == truth.session["name"]
    assert record.epu_version == truth.session["epu_version"]
    assert record.image_file_format == "Mrc"
    assert record.dose_fractions_format == "Tiff Lzw Non-Gain normalized"
    assert record.cassette_slot == truth.atlas["cassette_slot"]
    assert record.storage_root == truth.session["storage_root_windows"]
    # the Windows atlas path points at the Atlas.dm the simulator wrote
    assert record.atlas_path == truth.session["atlas_path_windows"]
    relative_atlas = record.atlas_path.removeprefix(record.storage_root + "\\")
    assert (visit / relative_atlas.replace("\\", "/")) == visit / truth.atlas["path"]
    assert [int(i) for i in record.grid_square_ids] == truth.session["grid_square_ids"]
    assert [int(i) for i in record.data_acquisition_area_ids] == [
        area["area_id"] for area in truth.session["data_acquisition_areas"]]
    assert record.defocus_targets_angstrom == pytest.approx(
        truth.session["defocus_list_angstrom"])
    assert record.number_of_fractions == FRAMES
    assert record.exposure_time_s == pytest.approx(2.5)
    assert record.started_at.isoformat() == truth.session["started_at"]


def test_atlas_file(offload):
    visit, _, truth, _ = offload
    record = parse_atlas((visit / truth.atlas["path"]).read_bytes())
    assert record.cassette_slot == truth.atlas["cassette_slot"]
    assert record.image_name == Path(truth.atlas["image"]).stem
    expected = {s["grid_square_id"]: s for s in truth.atlas["grid_squares"]}
    assert {int(s.grid_square_id) for s in record.grid_squares} == set(expected)
    for square in record.grid_squares:
        want = expected[int(square.grid_square_id)]
        assert (square.x_px, square.y_px) == pytest.approx((want["x_px"], want["y_px"]))
        assert square.width_px == pytest.approx(want["size_px"])
        assert (square.stage.x_um, square.stage.y_um) == pytest.approx(
            (want["stage_x_um"], want["stage_y_um"]), abs=1e-3)
    assert [t.name for t in record.tiles] == [Path(p).stem for p in truth.atlas["tiles"]]
    assert record.pixel_size_angstrom == pytest.approx(truth.atlas["pixel_size_angstrom"],
                                                       rel=0.02)
    image = parse_image_xml((visit / truth.atlas["image_xml"]).read_bytes())
    assert image.pixel_size_angstrom == pytest.approx(truth.atlas["pixel_size_angstrom"])
    assert (image.width_px, image.height_px) == (truth.atlas["width_px"],
                                                 truth.atlas["height_px"])


def test_grid_square_metadata_files(offload):
    visit, _, truth, _ = offload
    folder = _session_folder(visit, truth) / "Metadata"
    files = sorted(folder.glob("GridSquare_*.dm"))
    assert [int(f.stem.split("_")[1]) for f in files] == sorted(truth.session["grid_square_ids"])
    acquired_by_hole: dict[int, set[str]] = {}
    for acquisition in truth.acquisitions.values():
        acquired_by_hole.setdefault(acquisition["foil_hole_id"], set()).add(acquisition["name"])
    for path in files:
        record = parse_grid_square_metadata(path.read_bytes())
        grid_square_id = int(record.grid_square_id)
        assert path.name == f"GridSquare_{grid_square_id}.dm"
        if grid_square_id not in truth.grid_squares:  # never visited: no targets yet
            assert record.foil_holes == () and record.state == "Defined"
            continue
        want = truth.grid_squares[grid_square_id]
        assert record.state == "Completed"
        assert record.image_name == Path(want["image"]).stem
        holes = {h["foil_hole_id"]: h for h in want["foil_holes"]}
        assert {int(h.foil_hole_id) for h in record.foil_holes} == set(holes)
        chosen = set(want["chosen_foil_hole_ids"])
        for hole in record.foil_holes:
            expected = holes[int(hole.foil_hole_id)]
            assert (hole.x_px, hole.y_px) == pytest.approx((expected["x_px"], expected["y_px"]))
            assert hole.diameter_px == pytest.approx(expected["diameter_px"])
            assert (hole.stage.x_um, hole.stage.y_um) == pytest.approx(
                (expected["stage_x_um"], expected["stage_y_um"]), abs=1e-3)
            assert hole.selected == (int(hole.foil_hole_id) in chosen)
            assert hole.is_near_grid_bar == expected["near_grid_bar"]
            assert set(hole.acquisition_names) == acquired_by_hole.get(int(hole.foil_hole_id),
                                                                       set())
            if int(hole.foil_hole_id) in chosen:
                assert hole.state == "Completed"
                assert hole.image_name == Path(
                    truth.foil_holes[int(hole.foil_hole_id)]["image"]).stem


def test_acquisition_xml_files(offload):
    visit, _, truth, _ = offload
    for name, want in truth.acquisitions.items():
        record = parse_image_xml((visit / want["xml"]).read_bytes())
        assert record.pixel_size_angstrom == pytest.approx(want["pixel_size_angstrom"])
        assert (record.width_px, record.height_px) == (SIZE, SIZE)
        assert record.dose_e_per_angstrom2 == pytest.approx(want["dose_e_per_angstrom2"])
        assert record.defocus_target_angstrom == pytest.approx(want["target_defocus_angstrom"])
        assert record.exposure_time_s == pytest.approx(want["exposure_time_s"])
        assert record.number_of_fractions == FRAMES
        assert (record.stage.x_um, record.stage.y_um, record.stage.z_um) == pytest.approx(
            (want["stage_x_um"], want["stage_y_um"], want["stage_z_um"]), abs=1e-3)
        assert [record.image_shift_x, record.image_shift_y] == pytest.approx(
            want["image_shift"])
        assert record.microscope == want["microscope"]
        assert record.detector == want["detector"] == "BioQuantum K3"
        assert record.voltage_kv == pytest.approx(want["voltage_kv"])
        assert record.acquired_at == datetime.fromisoformat(want["acquired_at"])
        # the defocus actually applied is near the target (a focusing error + astigmatism)
        mean_defocus = (want["defocus_u_angstrom"] + want["defocus_v_angstrom"]) / 2
        assert abs(mean_defocus - want["target_defocus_angstrom"]) < 1500
        assert want["defocus_u_angstrom"] >= want["defocus_v_angstrom"]
        assert name in want["xml"]


def test_defocus_cycles_through_the_template_per_hole(offload):
    _, _, truth, _ = offload
    targets = truth.session["defocus_list_angstrom"]
    by_hole: dict[int, list[float]] = {}  # in acquisition order
    for acquisition in truth.acquisitions.values():
        by_hole.setdefault(acquisition["foil_hole_id"], []).append(
            acquisition["target_defocus_angstrom"])
    assert all(len(values) == PER_HOLE and len(set(values)) == 1 for values in by_hole.values())
    per_hole = [values[0] for values in by_hole.values()]
    assert per_hole == pytest.approx([targets[i % len(targets)] for i in range(len(per_hole))])


def test_grid_square_and_foil_hole_xml(offload):
    visit, _, truth, _ = offload
    for grid_square in truth.grid_squares.values():
        record = parse_image_xml((visit / grid_square["image_xml"]).read_bytes())
        assert record.pixel_size_angstrom == pytest.approx(grid_square["pixel_size_angstrom"])
        assert (record.stage.x_um, record.stage.y_um) == pytest.approx(
            (grid_square["stage_x_um"], grid_square["stage_y_um"]), abs=1e-3)
    for hole in truth.foil_holes.values():
        record = parse_image_xml((visit / hole["image_xml"]).read_bytes())
        assert record.pixel_size_angstrom == pytest.approx(hole["pixel_size_angstrom"])
        assert (record.foil_hole_x_px, record.foil_hole_y_px) == pytest.approx(
            hole["center_px"])
        assert record.foil_hole_diameter_px == pytest.approx(hole["diameter_px"])


# -- every path classifies ---------------------------------------------------------------------


def _expected_kinds(visit: Path, truth: GroundTruth) -> dict[Path, tuple[str, dict]]:
    session = _session_folder(visit, truth)
    expected: dict[Path, tuple[str, dict]] = {session / "EpuSession.dm": ("session", {})}
    for grid_square_id in truth.session["grid_square_ids"]:
        expected[session / "Metadata" / f"GridSquare_{grid_square_id}.dm"] = (
            "grid_square_metadata", {"grid_square_id": str(grid_square_id)})
    for grid_square in truth.grid_squares.values():
        ids = {"grid_square_id": str(grid_square["grid_square_id"])}
        expected[visit / grid_square["image"]] = ("grid_square_image", ids)
        expected[visit / grid_square["image_xml"]] = ("grid_square_xml", ids)
    for hole in truth.foil_holes.values():
        ids = {"grid_square_id": str(hole["grid_square_id"]),
               "foil_hole_id": str(hole["foil_hole_id"])}
        expected[visit / hole["image"]] = ("foil_hole_image", ids)
        expected[visit / hole["image_xml"]] = ("foil_hole_xml", ids)
    for name, acquisition in truth.acquisitions.items():
        ids = {"grid_square_id": str(acquisition["grid_square_id"]),
               "foil_hole_id": str(acquisition["foil_hole_id"]), "acquisition": name}
        expected[visit / acquisition["xml"]] = ("acquisition_xml", ids)
        expected[visit / acquisition["jpg"]] = ("acquisition_jpg", ids)
        expected[visit / acquisition["integrated"]] = ("integrated", ids)
    return expected


def test_every_session_file_classifies(offload):
    visit, movies, truth, _ = offload
    session = _session_folder(visit, truth)
    expected = _expected_kinds(visit, truth)
    written = {p for p in session.rglob("*") if p.is_file()}
    assert written == set(expected)
    for path, (kind, ids) in expected.items():
        found = classify_epu_path(path.relative_to(session).as_posix())
        assert found.kind == kind, path
        for field_name, value in ids.items():
            assert getattr(found, field_name) == value, (path, field_name)
    # movies went to the offload root, in the same sub-tree, and classify as movies there
    movie_files = {p for p in movies.rglob("*") if p.is_file()}
    assert movie_files == {movies / a["movie"] for a in truth.acquisitions.values()}
    for name, acquisition in truth.acquisitions.items():
        path = Path(acquisition["movie"])
        assert path.parent == Path(acquisition["xml"]).parent
        assert path.name == f"{name}_fractions.tiff"
        found = classify_epu_path(path.relative_to(truth.session["session_folder"]).as_posix())
        assert (found.kind, found.acquisition) == ("movie", name)


def test_every_atlas_file_classifies(offload):
    visit, _, truth, _ = offload
    atlas_folder = visit / truth.session["atlas_folder"]
    expected = {visit / truth.atlas["path"]: "atlas", visit / truth.atlas["image"]: "atlas_image",
                visit / truth.atlas["image_xml"]: "atlas_image_xml"}
    for tile in truth.atlas["tiles"]:
        expected[visit / tile] = "atlas_tile"
        expected[(visit / tile).with_suffix(".xml")] = "atlas_tile"
    written = {p for p in atlas_folder.rglob("*") if p.is_file()}
    assert written == set(expected)
    for path, kind in expected.items():
        found = classify_epu_path("Atlas/" + path.relative_to(atlas_folder).as_posix())
        assert found.kind == kind, path
    atlas = classify_epu_path("Atlas/" + (visit / truth.atlas["path"])
                              .relative_to(atlas_folder).as_posix())
    assert atlas.cassette_slot == truth.atlas["cassette_slot"]
    assert {p.name for p in visit.iterdir()} == {"atlas", "ground_truth.jsonl",
                                                 Path(truth.session["session_folder"]).name}


# -- structure against the real EPU files -------------------------------------------------------


def _qualified_paths(data: bytes) -> dict[tuple[str, ...], tuple[str, ...]]:
    """{qualified path ({uri}local, …): local-name path} of every element."""
    out: dict[tuple[str, ...], tuple[str, ...]] = {}

    def walk(element, prefix: tuple[str, ...]) -> None:
        path = prefix + (element.tag,)
        out[path] = tuple(tag.rsplit("}", 1)[-1] for tag in path)
        for child in element:
            walk(child, path)

    walk(ElementTree.fromstring(data), ())
    return out


def _custom_data_keys(data: bytes) -> set[str]:
    arrays = "{http://schemas.microsoft.com/2003/10/Serialization/Arrays}"
    root = ElementTree.fromstring(data)
    return {pair.findtext(f"{arrays}Key") for pair in root.iter(f"{arrays}KeyValueOfstringanyType")}


@pytest.mark.parametrize("real,kind", [
    (REAL_IMAGES / "Data" / "FoilHole_9015883_Data_9017347_6_20250108_154915.xml", "xml"),
    (REAL_IMAGES / "FoilHoles" / "FoilHole_9015889_20250108_154715.xml", "image_xml"),
    (REAL_IMAGES / "GridSquare_20250108_151151.xml", "grid"),
])
def test_image_xml_has_every_element_path_of_the_real_file(offload, real, kind):
    """Same namespaces, same nesting, same members: all element paths of the real file, and
    the CustomData/CameraSpecificInput keys, are in the simulated one."""
    visit, _, truth, _ = offload
    ours = {"xml": lambda: visit / next(iter(truth.acquisitions.values()))["xml"],
            "image_xml": lambda: visit / next(iter(truth.foil_holes.values()))["image_xml"],
            "grid": lambda: visit / next(iter(truth.grid_squares.values()))["image_xml"]}[kind]()
    real_paths = _qualified_paths(real.read_bytes())
    our_paths = _qualified_paths(ours.read_bytes())
    missing = set(real_paths) - set(our_paths)
    assert not missing, sorted("/".join(real_paths[p]) for p in missing)[:5]
    assert _custom_data_keys(real.read_bytes()) <= _custom_data_keys(ours.read_bytes())


# Local-name paths of the values a parser reads from the .dm files (FORMATS.md §1.4–1.6).
SESSION_VALUES = [
    "EpuSessionXml/Id", "EpuSessionXml/Name", "EpuSessionXml/StartDateTime",
    "EpuSessionXml/ImageFileFormat", "EpuSessionXml/DoseFractionsOutputFormat",
    "EpuSessionXml/AutoloaderSlot", "EpuSessionXml/ClusteringMode",
    "EpuSessionXml/StorageFolders/_items/StorageFolderXml/Path",
    "EpuSessionXml/StorageFolders/_items/StorageFolderXml/DiscId",
    "EpuSessionXml/Samples/_items/SampleXml/AtlasId",
    "EpuSessionXml/Samples/_items/SampleXml/GridType",
    "EpuSessionXml/Samples/_items/SampleXml/FilterHolesSettings/HoleSize",
    "EpuSessionXml/Samples/_items/SampleXml/FilterHolesSettings/HoleSpacing",
    "EpuSessionXml/Samples/_items/SampleXml/GridSquares/m_serializationArray/"
    "KeyValuePairOfintSerializedReferenceOfGridSquareXml_PsqDC3X0m6koiAE_P/key",
    "EpuSessionXml/Samples/_items/SampleXml/GridSquares/m_serializationArray/"
    "KeyValuePairOfintSerializedReferenceOfGridSquareXml_PsqDC3X0m6koiAE_P/value/FileName",
    "EpuSessionXml/Samples/_items/SampleXml/TargetAreaTemplate/DataAcquisitionAreas/"
    "m_serializationArray/KeyValuePairOfintDataAcquisitionAreaXmlBpEWF4JT/key",
    "EpuSessionXml/Samples/_items/SampleXml/TargetAreaTemplate/DataAcquisitionAreas/"
    "m_serializationArray/KeyValuePairOfintDataAcquisitionAreaXmlBpEWF4JT/value/"
    "ImageAcquisitionSettingXml/Defocus/double",
    "EpuSessionXml/Samples/_items/SampleXml/TargetAreaTemplate/DataAcquisitionAreas/"
    "m_serializationArray/KeyValuePairOfintDataAcquisitionAreaXmlBpEWF4JT/value/"
    "ImageAcquisitionSettingXml/ExposureTime",
    "EpuSessionXml/Samples/_items/SampleXml/TargetAreaTemplate/DataAcquisitionAreas/"
    "m_serializationArray/KeyValuePairOfintDataAcquisitionAreaXmlBpEWF4JT/value/"
    "ShiftInPixels/width",
    "EpuSessionXml/Samples/_items/SampleXml/MicroscopeSettings/KeyValuePairs/"
    "KeyValuePairOfExperimentSettingsIdMicroscopeSettingsCG2rZ1D8/key",
    "EpuSessionXml/Samples/_items/SampleXml/MicroscopeSettings/KeyValuePairs/"
    "KeyValuePairOfExperimentSettingsIdMicroscopeSettingsCG2rZ1D8/value/Acquisition/camera/"
    "ExposureTime",
    "EpuSessionXml/Samples/_items/SampleXml/MicroscopeSettings/KeyValuePairs/"
    "KeyValuePairOfExperimentSettingsIdMicroscopeSettingsCG2rZ1D8/value/Acquisition/camera/"
    "CameraSpecificInput/KeyValuePairs/KeyValuePairOfstringanyType/value/NumberOffractions",
    "EpuSessionXml/Samples/_items/SampleXml/MicroscopeSettings/KeyValuePairs/"
    "KeyValuePairOfExperimentSettingsIdMicroscopeSettingsCG2rZ1D8/value/Optics/SpotIndex",
]
NODE = ("AtlasSessionXml/Atlas/TilesEfficient/_items/TileXml/Nodes/KeyValuePairs/"
        "KeyValuePairOfintNodeXml30oatNZW")
ATLAS_VALUES = [
    "AtlasSessionXml/Id", "AtlasSessionXml/Description", "AtlasSessionXml/StorageFolder",
    "AtlasSessionXml/StartDateTime", "AtlasSessionXml/Atlas/AcquisitionDateTime",
    "AtlasSessionXml/Atlas/AtlasImageReference/BaseFileName",
    "AtlasSessionXml/Atlas/TilesEfficient/_items/TileXml/Id",
    "AtlasSessionXml/Atlas/TilesEfficient/_items/TileXml/AtlasPixelPosition/x",
    "AtlasSessionXml/Atlas/TilesEfficient/_items/TileXml/AtlasPixelPosition/width",
    "AtlasSessionXml/Atlas/TilesEfficient/_items/TileXml/StagePosition/X",
    "AtlasSessionXml/Atlas/TilesEfficient/_items/TileXml/TileImageReference/BaseFileName",
    f"{NODE}/key", f"{NODE}/value/Id", f"{NODE}/value/Category",
    f"{NODE}/value/PositionOnTheAtlas/Center/x", f"{NODE}/value/PositionOnTheAtlas/Center/y",
    f"{NODE}/value/PositionOnTheAtlas/Size/width", f"{NODE}/value/PositionOnTheAtlas/Physical/x",
    f"{NODE}/value/StagePosition/X", f"{NODE}/value/StagePosition/Y",
    f"{NODE}/value/AlignedStagePosition/X",
]
TARGET = ("GridSquareXml/TargetLocations/TargetLocationsEfficient/m_serializationArray/"
          "KeyValuePairOfintTargetLocationXmlBpEWF4JT")
GRID_SQUARE_VALUES = [
    "GridSquareXml/Id", "GridSquareXml/AtlasNodeId", "GridSquareXml/State",
    "GridSquareXml/Selected", "GridSquareXml/Position/X", "GridSquareXml/HoleSpacing",
    "GridSquareXml/Image/BaseFileName", "GridSquareXml/GridSquareShape/center/x",
    "GridSquareXml/GridSquareImagePath",
    f"{TARGET}/key", f"{TARGET}/value/Id", f"{TARGET}/value/PixelCenter/x",
    f"{TARGET}/value/PixelCenter/y", f"{TARGET}/value/PixelWidthHeight/width",
    f"{TARGET}/value/StagePosition/X", f"{TARGET}/value/Selected", f"{TARGET}/value/State",
    f"{TARGET}/value/IsNearGridBar", f"{TARGET}/value/Image/BaseFileName",
    f"{TARGET}/value/FoilHoleImagePath",
    f"{TARGET}/value/ParticleAcquisitions/KeyValuePairs/"
    "KeyValuePairOfintParticleAcquisitionDataXmlBpEWF4JT/value/Image/BaseFileName",
    f"{TARGET}/value/ParticleAcquisitions/KeyValuePairs/"
    "KeyValuePairOfintParticleAcquisitionDataXmlBpEWF4JT/value/DataAcquisitionAreaId",
]


@pytest.mark.parametrize("real,values,which", [
    (FIXTURES / "epu-dir-example" / "EpuSession.dm", SESSION_VALUES, "session"),
    (FIXTURES / "atlas" / "Atlas.dm", ATLAS_VALUES, "atlas"),
    (FIXTURES / "metadata" / "GridSquare_4590776.dm", GRID_SQUARE_VALUES, "grid_square"),
])
def test_dm_files_have_the_real_element_paths_for_the_values(offload, real, values, which):
    """For each value a reader takes from a .dm, the namespace-qualified element path of the
    real file (same URIs at every level) exists in the simulated file."""
    visit, _, truth, _ = offload
    ours = {"session": _session_folder(visit, truth) / "EpuSession.dm",
            "atlas": visit / truth.atlas["path"],
            "grid_square": _session_folder(visit, truth) / "Metadata"
            / f"GridSquare_{truth.session['chosen_grid_square_ids'][0]}.dm"}[which]
    real_paths = _qualified_paths(real.read_bytes())
    our_paths = set(_qualified_paths(ours.read_bytes()))
    wanted = {tuple(v.split("/")) for v in values}
    selected = {q for q, local in real_paths.items() if local in wanted}
    assert {real_paths[q] for q in selected} == wanted  # the list matches the real file
    missing = selected - our_paths
    assert not missing, sorted("/".join(real_paths[q]) for q in missing)


def test_raw_epu_style_single_line_without_declaration(offload):
    visit, _, truth, _ = offload
    for path in (_session_folder(visit, truth) / "EpuSession.dm", visit / truth.atlas["path"],
                 visit / next(iter(truth.acquisitions.values()))["xml"]):
        data = path.read_bytes()
        assert not data.startswith(b"<?xml") and b"\n" not in data


# -- movies, images and their consistency -----------------------------------------------------


def test_movies_open_with_their_frames_and_the_integrated_image_is_their_sum(offload):
    import mrcfile

    visit, movies, truth, _ = offload
    for acquisition in truth.acquisitions.values():
        movie = open_movie(movies / acquisition["movie"], correct_hot_pixels=False)
        assert movie.info.n_frames == FRAMES and movie.info.shape == (SIZE, SIZE)
        assert len(acquisition["drift_px"]) == FRAMES
        with mrcfile.open(visit / acquisition["integrated"]) as mrc:
            assert float(mrc.voxel_size.x) == pytest.approx(acquisition["pixel_size_angstrom"])
            np.testing.assert_allclose(mrc.data, movie.raw.sum(axis=0, dtype=np.float32))


def test_recorded_drift_is_what_motion_correction_measures(tmp_path):
    """At the default movie size the global drift is measurable: cryovault's own motion
    correction finds the recorded trajectory (its shifts undo the content's drift)."""
    from cryovault.science.motion import MotionSettings, align_movie

    visit = tmp_path / "visit"
    result = runner.invoke(app, ["simulate", "epu", str(visit), "--squares", "1", "--holes",
                                 "1", "--rate", "0", "--seed", "5"])
    assert result.exit_code == 0, result.output
    truth = load_ground_truth(visit / "ground_truth.jsonl")
    assert len(truth.acquisitions) == PER_HOLE
    for acquisition in truth.acquisitions.values():
        movie = open_movie(visit / acquisition["movie"], correct_hot_pixels=False)
        assert movie.info.n_frames == 8 and movie.info.shape == (512, 512)
        frames = movie.raw.astype(np.float32)
        dose_per_frame = acquisition["dose_e_per_angstrom2"] / acquisition["frames"]
        measured = align_movie(frames, acquisition["pixel_size_angstrom"], dose_per_frame,
                               MotionSettings(patches=(1, 1))).shifts_px
        drift = np.array(acquisition["drift_px"])
        np.testing.assert_allclose(measured - measured[0], -(drift - drift[0]), atol=1.0)
        assert np.abs(drift[-1] - drift[0]).max() > 2  # a drift worth measuring


def test_some_movies_were_written_before_their_xml(offload):
    visit, movies, truth, _ = offload
    early = [a for a in truth.acquisitions.values() if a["movie_written_before_xml"]]
    assert 0 < len(early) < len(truth.acquisitions)
    for acquisition in truth.acquisitions.values():
        movie_time = os.stat(movies / acquisition["movie"]).st_mtime_ns
        xml_time = os.stat(visit / acquisition["xml"]).st_mtime_ns
        if acquisition["movie_written_before_xml"]:
            assert movie_time <= xml_time
        else:
            assert movie_time >= xml_time
    # EPU rewrites its session file as it goes: the last version is newer than every exposure
    session_time = os.stat(_session_folder(visit, truth) / "EpuSession.dm").st_mtime_ns
    assert session_time >= max(os.stat(visit / a["xml"]).st_mtime_ns
                               for a in truth.acquisitions.values())


def _grey(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.float32)


def test_atlas_image_shows_the_declared_squares(offload):
    visit, _, truth, _ = offload
    image = _grey(visit / truth.atlas["image"])
    assert image.shape == (truth.atlas["height_px"], truth.atlas["width_px"])
    record = parse_atlas((visit / truth.atlas["path"]).read_bytes())
    conditions = {s["grid_square_id"]: s["condition"] for s in truth.atlas["grid_squares"]}
    inside, bars = [], []
    for square in record.grid_squares:
        if conditions[int(square.grid_square_id)] != "good":
            continue
        x, y, half = int(square.x_px), int(square.y_px), int(square.width_px / 4)
        inside.append(image[y - half:y + half, x - half:x + half].mean())
        bar_x = int(square.x_px + square.width_px * 0.5 + 5)  # on the copper bar beside it
        if bar_x < image.shape[1]:
            bars.append(image[y - half:y + half, bar_x - 1:bar_x + 2].mean())
    assert min(inside) > max(bars) + 20


def test_grid_square_image_shows_the_declared_holes(offload):
    visit, _, truth, _ = offload
    grid_square = next(iter(truth.grid_squares.values()))
    image = _grey(visit / grid_square["image"])
    record = parse_grid_square_metadata(
        (visit / grid_square["metadata"]).read_bytes())
    hole_values, carbon_values = [], []
    pitch = 16  # 4 µm at 250 nm/px
    for hole in record.foil_holes:
        x, y = int(round(hole.x_px)), int(round(hole.y_px))
        hole_values.append(image[y - 1:y + 2, x - 1:x + 2].mean())
        cx, cy = int(round(hole.x_px + pitch / 2)), int(round(hole.y_px + pitch / 2))
        if cx < image.shape[1] - 1 and cy < image.shape[0] - 1:
            carbon_values.append(image[cy - 1:cy + 2, cx - 1:cx + 2].mean())
    assert np.mean(hole_values) > np.mean(carbon_values) + 40
    assert np.mean(np.array(hole_values) > np.median(carbon_values)) > 0.95


def test_foil_hole_image_is_centred_on_the_found_hole(offload):
    visit, _, truth, _ = offload
    for hole in list(truth.foil_holes.values())[:3]:
        image = _grey(visit / hole["image"])
        yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]]
        distance = np.hypot(xx - hole["center_px"][0], yy - hole["center_px"][1])
        radius = hole["diameter_px"] / 2
        assert image[distance < radius * 0.7].mean() > image[
            (distance > radius * 1.2) & (distance < radius * 1.6)].mean() + 40


# -- other formats --------------------------------------------------------------------------------


def test_eer_movies_and_falcon_metadata(eer_run):
    visit, truth = eer_run
    session = parse_epu_session((visit / truth.session["session_folder"] / "EpuSession.dm")
                                .read_bytes())
    assert session.dose_fractions_format == "EER"
    for name, acquisition in truth.acquisitions.items():
        path = visit / acquisition["movie"]
        assert path.name == f"{name}_EER.eer"
        found = classify_epu_path(path.relative_to(visit / truth.session["session_folder"])
                                  .as_posix())
        assert (found.kind, found.acquisition) == ("movie", name)
        grouping = acquisition["eer_frames_per_fraction"]
        movie = open_movie(path, eer_grouping=grouping, correct_hot_pixels=False)
        assert movie.info.n_frames == 3 and movie.info.eer_frames == 3 * grouping
        record = parse_image_xml((visit / acquisition["xml"]).read_bytes())
        assert record.detector == "Falcon 4i" and record.camera == "BM-Falcon"


def test_no_movies(tmp_path):
    visit = tmp_path / "visit"
    result = runner.invoke(app, ["simulate", "epu", str(visit), "--squares", "1", "--holes",
                                 "1", "--acquisitions-per-hole", "1", "--rate", "0", "--size",
                                 "64", "--frames", "2", "--no-movies"])
    assert result.exit_code == 0, result.output
    truth = load_ground_truth(visit / "ground_truth.jsonl")
    session = parse_epu_session((visit / truth.session["session_folder"] / "EpuSession.dm")
                                .read_bytes())
    assert session.dose_fractions_format is None
    (acquisition,) = truth.acquisitions.values()
    assert acquisition["movie"] is None
    assert not [p for p in visit.rglob("*") if p.name.endswith(("_fractions.tiff", ".eer"))]
    assert parse_image_xml((visit / acquisition["xml"]).read_bytes()).number_of_fractions is None


def test_same_seed_same_grid(tmp_path):
    args = ["--squares", "1", "--holes", "1", "--acquisitions-per-hole", "1", "--rate", "0",
            "--size", "64", "--frames", "2", "--no-movies", "--seed", "11"]
    truths = []
    for name in ("a", "b"):
        result = runner.invoke(app, ["simulate", "epu", str(tmp_path / name), *args])
        assert result.exit_code == 0, result.output
        truths.append(load_ground_truth(tmp_path / name / "ground_truth.jsonl"))
    assert truths[0].atlas["grid_squares"] == truths[1].atlas["grid_squares"]
    (first,), (second,) = (list(t.acquisitions.values()) for t in truths)
    assert first["defocus_u_angstrom"] == second["defocus_u_angstrom"]
    assert first["drift_px"] == second["drift_px"]
