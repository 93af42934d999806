"""The simulator's building blocks: .NET XML, pacing, growing files, tilt orders, geometry,
ground truth, and the CLI's answers to bad arguments."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from typer.testing import CliRunner

from cryovault.cli import app
from cryovault.ingest.simulator import output
from cryovault.ingest.simulator.cli import parse_tilts
from cryovault.ingest.simulator.datacontract import (
    ARRAYS,
    COMMON_TYPES,
    XSD,
    el,
    fmt,
    key_value_any,
    nil,
    to_xml,
)
from cryovault.ingest.simulator.epu_plan import (
    IdSource,
    SimulationRequestError,
    atlas_squares,
    choose_holes,
    choose_squares,
    square_holes,
)
from cryovault.ingest.simulator.phantom import TomoSpecimen, bead_positions_px
from cryovault.ingest.simulator.tomo_run import acquisition_order
from cryovault.ingest.simulator.truth import load_ground_truth
from cryovault.science.tomo.simulate import Blobs

runner = CliRunner()
ROOT_NS = "http://schemas.datacontract.org/2004/07/Applications.Epu.Persistence"


@pytest.mark.parametrize("value,text", [
    (1.0558814239614023e-10, "1.0558814239614023E-10"),
    (1.4410836806690226e21, "1.4410836806690226E+21"),
    (-2.7e-06, "-2.7E-06"),
    (300000.0, "300000"),
    (0.89, "0.89"),
    (np.float64(-4.5e-05), "-4.5E-05"),
    (np.int64(7), "7"),
    (True, "true"),
    (np.bool_(False), "false"),
])
def test_numbers_are_written_as_dotnet_writes_them(value, text):
    assert fmt(value) == text


def test_datacontract_xml_keeps_namespaces_nil_and_identities():
    root = el("EpuSessionXml", None, el("Id", 42, ns=COMMON_TYPES), nil("MicroscopeName"),
              el("CustomData", None, key_value_any("Dose", 1e21, "double"),
                 declare={"a": ARRAYS}),
              el("Name", "x & <y>", ref_id=True), ref_id=True)
    data = to_xml(root, root_ns=ROOT_NS)
    assert not data.startswith(b"<?xml") and b"\n" not in data
    parsed = ElementTree.fromstring(data)
    xsi = "{http://www.w3.org/2001/XMLSchema-instance}"
    ser = "{http://schemas.microsoft.com/2003/10/Serialization/}"
    assert parsed.tag == f"{{{ROOT_NS}}}EpuSessionXml" and parsed.get(f"{ser}Id") == "1"
    assert parsed.find(f"{{{COMMON_TYPES}}}Id").text == "42"
    assert parsed.find(f"{{{ROOT_NS}}}MicroscopeName").get(f"{xsi}nil") == "true"
    value = parsed.find(f"{{{ROOT_NS}}}CustomData/{{{ARRAYS}}}KeyValueOfstringanyType/"
                        f"{{{ARRAYS}}}Value")
    assert value.text == "1E+21" and value.get(f"{xsi}type") == "b:double"
    assert b'xmlns:b="' + XSD.encode() + b'"' in data
    name = parsed.find(f"{{{ROOT_NS}}}Name")
    assert name.text == "x & <y>" and name.get(f"{ser}Id") == "2"


def test_write_growing_writes_in_chunks_with_pauses(tmp_path, monkeypatch):
    source = tmp_path / "staged.bin"
    source.write_bytes(bytes(range(256)) * 40)
    target = tmp_path / "out" / "movie.tiff"
    sizes: list[int] = []
    monkeypatch.setattr(output.time, "sleep", lambda seconds: sizes.append(target.stat().st_size))
    written = output.write_growing(target, source, 4, 0.05)
    assert written == source.stat().st_size and target.read_bytes() == source.read_bytes()
    assert len(sizes) == 3 and sizes == sorted(sizes) and 0 < sizes[0] < sizes[-1] < written


def test_pacer_spaces_acquisitions_at_the_rate(monkeypatch):
    clock = [100.0]
    slept: list[float] = []
    monkeypatch.setattr(output.time, "monotonic", lambda: clock[0])

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(output.time, "sleep", sleep)
    pacer = output.Pacer(2.0)
    pacer.wait(0)
    clock[0] += 0.1  # the first acquisition took 0.1 s
    pacer.wait(1)
    assert slept == pytest.approx([0.4]) and clock[0] == pytest.approx(100.5)
    clock[0] += 3.0  # late: no sleep
    pacer.wait(2)
    assert len(slept) == 1
    assert output.Pacer(0).period_s == 0 and output.Pacer(0).chunk_pause_s(4) == 0
    assert 0 < pacer.chunk_pause_s(4) <= 0.2


def test_ground_truth_ignores_a_half_written_last_line(tmp_path):
    log = output.TruthLog(tmp_path / "ground_truth.jsonl")
    log.add("acquisition", {"name": "FoilHole_1_Data_2_3_20250101_120000", "value": 1})
    log.add("tilt_series", {"name": "Position_1"})
    with open(log.path, "a") as handle:
        handle.write('{"kind": "acquisition", "name": "half')
    truth = load_ground_truth(log.path)
    assert list(truth.acquisitions) == ["FoilHole_1_Data_2_3_20250101_120000"]
    assert list(truth.tilt_series) == ["Position_1"]
    assert all(json.loads(line) for line in log.path.read_text().splitlines()[:2])


def test_dose_symmetric_order_alternates_in_pairs():
    angles = [float(a) for a in range(-60, 61, 3)]
    order = acquisition_order(angles, "dose-symmetric")
    assert order[:9] == [0, 3, -3, -6, 6, 9, -9, -12, 12]
    assert sorted(order) == angles
    # an asymmetric range finishes on the side that is left
    assert acquisition_order([-10.0, 0.0, 10.0, 20.0, 30.0, 40.0], "dose-symmetric") == [
        0, 10, -10, 20, 30, 40]
    assert acquisition_order([20.0, -20.0, 0.0], "sequential") == [-20, 0, 20]


def test_projection_follows_the_design_convention():
    def positions(x: float, y: float, z: float, tilt: float, axis: float
                  ) -> tuple[float, float]:
        """Where a bead at (x, y, z) Å lands, relative to the image centre, in Å."""
        beads = Blobs(np.array([[x, y, z]]), np.array([20.0]), np.array([1.0]))
        specimen = TomoSpecimen(1500.0, beads, beads)
        ((px, py),) = bead_positions_px(specimen, tilt, axis, 101, 2.0, (0.0, 0.0))
        return (px - 50.0) * 2.0, (py - 50.0) * 2.0

    for tilt in (0.0, 30.0, -55.0):
        theta = math.radians(tilt)
        x, y, z = 120.0, -40.0, 300.0
        assert positions(x, y, z, tilt, 0.0) == pytest.approx(
            (x * math.cos(theta) + z * math.sin(theta), y))
        # φ = 90°: the axis points along −x; a point on it does not move with the tilt
        assert positions(0.0, 500.0, 0.0, tilt, 90.0) == pytest.approx((-500.0, 0.0))
        u, v = positions(x, y, z, tilt, 90.0)
        assert (u, v) == pytest.approx((-y, x * math.cos(theta) + z * math.sin(theta)))
    # the tilt's shift [x, y] px moves the content
    beads = Blobs(np.array([[0.0, 0.0, 0.0]]), np.array([20.0]), np.array([1.0]))
    specimen = TomoSpecimen(1500.0, beads, beads)
    ((x, y),) = bead_positions_px(specimen, 40.0, 85.0, 64, 3.0, (2.5, -1.0))
    assert (x, y) == pytest.approx((34.0, 30.5))


def test_grid_and_holes_geometry():
    rng = np.random.default_rng(1)
    ids = IdSource(rng)
    squares = atlas_squares(rng, ids)
    assert 100 < len(squares) < 250
    assert len({s.grid_square_id for s in squares}) == len(squares)
    assert {s.condition for s in squares} == {"good", "thick", "broken"}
    holes = square_holes(squares[0], rng, ids)
    assert 350 < len(holes) < 600
    spacing = sorted(math.dist((holes[0].x_px, holes[0].y_px), (h.x_px, h.y_px))
                     for h in holes[1:])[0]
    assert spacing == pytest.approx(16.0)  # 4 µm at 250 nm/px
    hole = holes[10]
    assert (hole.stage_x_m - squares[0].stage_x_m) == pytest.approx((hole.x_px - 256) * 250e-9)
    with pytest.raises(SimulationRequestError, match="good squares"):
        choose_squares(squares, 1000, rng)
    with pytest.raises(SimulationRequestError, match="usable holes"):
        choose_holes(holes, 10_000, rng)
    chosen = choose_holes(holes, 5, rng)
    assert len(chosen) == 5 and not any(h.near_grid_bar for h in chosen)


@pytest.mark.parametrize("text,words", [
    ("-60:60", "MIN:MAX:STEP"), ("a:b:c", "MIN:MAX:STEP"), ("60:-60:3", "MIN must be below"),
    ("-60:60:0", "step must be positive"), ("-90:60:3", "-80° to 80°"), ("-60:60:7", "multiple"),
    ("-80:80:0.5", "larger step"),
])
def test_bad_tilt_ranges(text, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        parse_tilts(text)


def test_good_tilt_range():
    assert parse_tilts("-60:60:3") == (-60.0, 60.0, 3.0)
    assert parse_tilts(" -10.5 : 10.5 : 1.5 ") == (-10.5, 10.5, 1.5)


@pytest.mark.parametrize("args,words", [
    (["epu", "{new}", "--squares", "0"], ["--squares"]),
    (["epu", "{new}", "--movie-format", "gif"], ["--movie-format", "gif"]),
    (["epu", "{new}", "--size", "10"], ["--size"]),
    (["epu", "{new}", "--frames", "1"], ["--frames"]),
    (["epu", "{new}", "--rate", "-1"], ["--rate"]),
    (["epu", "{full}"], ["is not empty"]),
    (["epu", "{file}"], ["is a file"]),
    (["epu", "{new}", "--name", "my_visit"], ["--name", "letters, digits"]),
    (["epu", "{new}", "--movies", "{new2}", "--no-movies"], ["contradict"]),
    (["tomo", "{new}", "--tilts", "60:-60:3"], ["MIN must be below MAX"]),
    (["tomo", "{new}", "--tilts", "-60:60"], ["MIN:MAX:STEP"]),
    (["tomo", "{new}", "--scheme", "random"], ["--scheme"]),
    (["tomo", "{new}", "--positions", "0"], ["--positions"]),
    (["tomo", "{full}"], ["is not empty"]),
])
def test_bad_arguments_exit_2_with_a_clear_message(tmp_path, args, words):
    full = tmp_path / "full"
    full.mkdir()
    (full / "something").write_text("x")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    values = {"{new}": str(tmp_path / "new"), "{new2}": str(tmp_path / "new2"),
              "{full}": str(full), "{file}": str(a_file)}
    result = runner.invoke(app, ["simulate", *[values.get(a, a) for a in args]])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    for word in words:
        assert word in text, text
    assert "Traceback" not in result.output
    assert not (tmp_path / "new").exists()


def test_help_lists_both_simulators():
    result = runner.invoke(app, ["simulate", "--help"])
    assert result.exit_code == 0
    assert "epu" in result.output and "tomo" in result.output


def test_truth_file_path_is_in_the_output_folder(tmp_path):
    result = runner.invoke(app, ["simulate", "tomo", str(tmp_path / "t"), "--tilts",
                                 "-10:10:10", "--rate", "0", "--size", "64", "--frames", "2"])
    assert result.exit_code == 0, result.output
    assert Path(tmp_path / "t" / "ground_truth.jsonl").is_file()
    assert "ground truth in" in result.output
