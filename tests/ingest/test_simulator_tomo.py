"""`cryovault simulate tomo`: Tomography 5 tilt series that read like real ones, with projection
geometry as DESIGN.md documents it."""

from __future__ import annotations

import math
import os
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cryovault.cli import app
from cryovault.ingest.simulator.truth import GroundTruth, load_ground_truth
from cryovault.ingest.tomo.layout import classify_tomo_path
from cryovault.ingest.tomo.parsers import parse_tilt_series_mdoc
from cryovault.science.movies import open_movie

MDOC_FIXTURES = Path("/work/shared/fixtures/mdoc")
runner = CliRunner()
SIZE, FRAMES, AXIS = 256, 3, 85.0
ORDER = [0.0, 10.0, -10.0, -20.0, 20.0, 30.0, -30.0]  # dose-symmetric, groups of two


@pytest.fixture(scope="module")
def tomo(tmp_path_factory) -> tuple[Path, GroundTruth, str]:
    folder = tmp_path_factory.mktemp("tomo") / "session"
    result = runner.invoke(app, ["simulate", "tomo", str(folder), "--positions", "2",
                                 "--tilts", "-30:30:10", "--rate", "0", "--size", str(SIZE),
                                 "--frames", str(FRAMES), "--seed", "4"])
    assert result.exit_code == 0, result.output
    return folder, load_ground_truth(folder / "ground_truth.jsonl"), result.output


def test_one_progress_line_per_position(tomo):
    _, truth, output = tomo
    lines = [line for line in output.splitlines() if line.startswith("Position_")]
    assert [line.split(":")[0] for line in lines] == ["Position_1", "Position_2"]
    assert set(truth.tilt_series) == {"Position_1", "Position_2"}
    assert truth.finished["tilts"] == 2 * len(ORDER) == len(truth.tilts)


def test_mdoc_parses_to_the_ground_truth(tomo):
    folder, truth, _ = tomo
    for name, series in truth.tilt_series.items():
        record = parse_tilt_series_mdoc((folder / series["mdoc"]).read_bytes(), name)
        assert record.name == name
        assert record.pixel_size_angstrom == pytest.approx(series["pixel_size_angstrom"],
                                                           abs=0.005)
        assert record.tilt_axis_angle_deg == pytest.approx(AXIS)
        assert record.voltage_kv == pytest.approx(series["voltage_kv"])
        assert record.image_size == (SIZE, SIZE)
        assert series["tilt_angles_deg"] == ORDER
        assert [t.tilt_angle_deg for t in record.tilts] == pytest.approx(ORDER)
        assert [t.z_value for t in record.tilts] == list(range(len(ORDER)))
        tilts = [t for t in truth.tilts if t["tilt_series"] == name]
        dose = series["dose_per_tilt_e_per_angstrom2"]
        for index, (tilt, want) in enumerate(zip(record.tilts, tilts, strict=True)):
            assert tilt.sub_frame_path == want["movie"]
            assert (folder / tilt.sub_frame_path).is_file()
            assert tilt.defocus_angstrom == pytest.approx(want["defocus_angstrom"], abs=51)
            assert tilt.target_defocus_angstrom == pytest.approx(
                series["target_defocus_angstrom"])
            assert tilt.exposure_dose_e_per_angstrom2 == pytest.approx(dose, abs=0.006)
            assert tilt.prior_dose_e_per_angstrom2 == pytest.approx(index * dose, abs=0.006)
            assert tilt.number_of_frames == FRAMES
            assert tilt.acquired_at == datetime.fromisoformat(want["acquired_at"]).replace(
                microsecond=0)
            assert (tilt.stage.x_um, tilt.stage.y_um) == pytest.approx(
                series["stage_um"][:2], abs=0.006)
        assert series["acquisition_order"] == sorted(range(len(ORDER)),
                                                     key=lambda i: ORDER[i])
        assert series["defocus_angstrom"] == [t["defocus_angstrom"] for t in tilts]
        assert 1000 < series["thickness_angstrom"] < 2500


def test_movie_names_are_tomography_5_names(tomo):
    folder, truth, _ = tomo
    pattern = re.compile(r"^(Position_\d+)_(\d{3})_(-?\d+\.\d{2})_(\d{8})_(\d{6})_fractions\.tiff$")
    for tilt in truth.tilts:
        match = pattern.match(tilt["movie"])
        assert match, tilt["movie"]
        assert match.group(1) == tilt["tilt_series"]
        assert int(match.group(2)) == tilt["acquisition_index"] + 1
        assert float(match.group(3)) == tilt["tilt_angle_deg"]
        acquired = datetime.fromisoformat(tilt["acquired_at"])
        assert f"{match.group(4)}_{match.group(5)}" == acquired.strftime("%Y%m%d_%H%M%S")


def test_every_file_classifies(tomo):
    folder, truth, _ = tomo
    expected = {folder / "ground_truth.jsonl": ("other", None)}
    for name, series in truth.tilt_series.items():
        expected[folder / series["mdoc"]] = ("mdoc", name)
        for movie in series["movies"]:
            expected[folder / movie] = ("tilt_movie", name)
    assert {p for p in folder.rglob("*") if p.is_file()} == set(expected)
    for path, (kind, position) in expected.items():
        found = classify_tomo_path(path.relative_to(folder).as_posix())
        assert found.kind == kind, path
        if position:
            assert found.position == position


def test_mdoc_is_written_when_the_series_is_finished(tomo):
    folder, truth, _ = tomo
    for series in truth.tilt_series.values():
        mdoc_time = os.stat(folder / series["mdoc"]).st_mtime_ns
        assert mdoc_time >= max(os.stat(folder / m).st_mtime_ns for m in series["movies"])
    first, second = truth.tilt_series.values()
    assert os.stat(folder / first["mdoc"]).st_mtime_ns <= min(
        os.stat(folder / m).st_mtime_ns for m in second["movies"])
    text = (folder / first["mdoc"]).read_bytes()
    assert text.count(b"\r\n") > 100 and b"\n" not in text.replace(b"\r\n", b"")
    assert text.startswith(b"DataMode = 6\r\nImageSize = 256 256 \r\n")
    assert re.search(rb"\[T = Tomography: \S+    \d\d-[A-Z][a-z]{2}-\d{4}  \d\d:\d\d:\d\d\]",
                     text)
    assert b"[T =   TiltAxisAngle = 85.00  Binning = 1" in text


def _keys(path: Path) -> tuple[set[str], list[set[str]]]:
    """Header keys and the keys of each [ZValue] section of an .mdoc."""
    header: set[str] = set()
    sections: list[set[str]] = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("[ZValue"):
            sections.append(set())
        elif "=" in line and not line.startswith("["):
            key = line.split("=", 1)[0].strip()
            (sections[-1] if sections else header).add(key)
    return header, sections


# The keys of a Tomography 5 section (FORMATS.md §2.3, from the real Position_1.mdoc).
TOMO5_SECTION_KEYS = {
    "TiltAngle", "StagePosition", "StageZ", "Magnification", "Intensity", "ExposureDose",
    "PixelSpacing", "SpotSize", "Defocus", "ImageShift", "RotationAngle", "ExposureTime",
    "Binning", "MagIndex", "CountsPerElectron", "MinMaxMean", "TargetDefocus",
    "PriorRecordDose", "SubFramePath", "NumSubFrames", "FrameDosesAndNumber", "DateTime",
    "FilterSlitAndLoss", "ChannelName", "CameraLength"}


def test_mdoc_has_the_keys_of_the_real_files(tomo):
    folder, truth, _ = tomo
    ours_header, ours_sections = _keys(folder / truth.tilt_series["Position_1"]["mdoc"])
    assert all(section == TOMO5_SECTION_KEYS for section in ours_sections)
    for fixture in ("tomo_test_1.mdoc", "serialem_tilt_series_TS_01.mdoc"):
        header, sections = _keys(MDOC_FIXTURES / fixture)
        # every key the real tilt-series files share with Tomography 5 is written, and the
        # global header keys of a stack are all there
        shared = set.intersection(*sections) & TOMO5_SECTION_KEYS
        assert shared and shared <= ours_sections[0], fixture
        assert (header & {"PixelSpacing", "ImageFile", "ImageSize", "DataMode", "Voltage"}
                ) <= ours_header


def test_movies_open_with_their_frames(tomo):
    folder, truth, _ = tomo
    for tilt in truth.tilts[:4]:
        movie = open_movie(folder / tilt["movie"], correct_hot_pixels=False)
        assert movie.info.n_frames == FRAMES and movie.info.shape == (SIZE, SIZE)
        assert len(tilt["drift_px"]) == FRAMES


def _design_projection(bead: list[float], tilt_deg: float, axis_deg: float, pixel: float,
                       shift: list[float]) -> tuple[float, float]:
    """DESIGN.md: (x cos θ + z sin θ, y) at φ = 0, rotated by φ counterclockwise about the
    centre, plus the tilt's shift."""
    x, y, z = bead
    theta, phi = math.radians(tilt_deg), math.radians(axis_deg)
    u, v = x * math.cos(theta) + z * math.sin(theta), y
    centre = (SIZE - 1) / 2
    return (centre + (u * math.cos(phi) - v * math.sin(phi)) / pixel + shift[0],
            centre + (u * math.sin(phi) + v * math.cos(phi)) / pixel + shift[1])


def test_beads_appear_where_the_documented_geometry_puts_them(tomo):
    folder, truth, _ = tomo
    for name, series in truth.tilt_series.items():
        pixel = series["pixel_size_angstrom"]
        tilts = [t for t in truth.tilts if t["tilt_series"] == name]
        dark, total = 0, 0
        for tilt, shift in zip(tilts, series["shifts_px"], strict=True):
            predicted = [_design_projection(bead, tilt["tilt_angle_deg"], AXIS, pixel, shift)
                         for bead in series["beads_angstrom"]]
            assert np.allclose(predicted, tilt["bead_positions_px"], atol=0.01)
            frames = open_movie(folder / tilt["movie"], correct_hot_pixels=False).raw
            average = frames.astype(np.float32).mean(axis=0)
            background = np.median(average)
            mean_drift = np.mean(tilt["drift_px"], axis=0)
            for x, y in predicted:
                x, y = x + mean_drift[0], y + mean_drift[1]
                if not (3 <= x < SIZE - 3 and 3 <= y < SIZE - 3):
                    continue
                total += 1
                ix, iy = int(round(x)), int(round(y))
                dark += average[iy - 1:iy + 2, ix - 1:ix + 2].mean() < 0.7 * background
        assert total >= 5 * len(tilts) and dark / total > 0.9


def test_tilt_shifts_start_at_zero_and_wander(tomo):
    _, truth, _ = tomo
    for series in truth.tilt_series.values():
        shifts = np.array(series["shifts_px"])
        assert shifts[0].tolist() == [0.0, 0.0]
        assert np.abs(shifts[1:]).max() > 0.5


def test_sequential_eer_series(tmp_path):
    folder = tmp_path / "eer"
    result = runner.invoke(app, ["simulate", "tomo", str(folder), "--tilts", "-20:20:20",
                                 "--rate", "0", "--size", "64", "--frames", "2",
                                 "--movie-format", "eer", "--scheme", "sequential",
                                 "--tilt-axis", "-95.5"])
    assert result.exit_code == 0, result.output
    truth = load_ground_truth(folder / "ground_truth.jsonl")
    series = truth.tilt_series["Position_1"]
    assert series["tilt_angles_deg"] == [-20.0, 0.0, 20.0]
    record = parse_tilt_series_mdoc((folder / "Position_1.mdoc").read_bytes(), "Position_1")
    assert record.tilt_axis_angle_deg == pytest.approx(-95.5)
    for tilt, movie in zip(record.tilts, series["movies"], strict=True):
        assert movie.endswith("_EER.eer") and tilt.sub_frame_path == movie
        assert tilt.extra["FrameDosesAndNumber"].split()[1] == "1"  # Tomography 5 and EER
        assert classify_tomo_path(movie).kind == "tilt_movie"
        grouping = truth.tilts[0]["eer_frames_per_fraction"]
        opened = open_movie(folder / movie, eer_grouping=grouping, correct_hot_pixels=False)
        assert opened.info.n_frames == 2
