"""`cryovault tomo align` / `cryovault tomo reconstruct`: the JSON contract, the IMOD outputs and
exit code 2 with a clear message on bad input."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest
from typer.testing import CliRunner

from cryovault.cli import app
from cryovault.science.tomo.imod_files import read_defocus, read_xf
from cryovault.science.tomo.inputs import read_tlt
from cryovault.science.tomo.simulate import simulate_tilt_series

runner = CliRunner()

ALIGN_KEYS = {"tilt_angles_degrees", "dropped_tilts", "tilt_axis_angle_degrees",
              "tilt_axis_correction_degrees", "x_tilt_degrees", "y_tilt_degrees",
              "kept_indices", "shifts_px", "rotation_degrees", "magnification",
              "alignment_accuracy_px", "defocus_angstrom", "ctf_resolution_angstrom",
              "handedness", "outputs"}
PIXEL = 6.0
ANGLES = tuple(float(a) for a in np.arange(-60.0, 60.1, 4.0))


def _write_stack(path, stack, pixel):
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(stack.astype(np.float32))
        mrc.voxel_size = pixel


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    root = tmp_path_factory.mktemp("tomo_cli")
    sim = simulate_tilt_series(shape=(512, 512), pixel_size_angstrom=PIXEL,
                               tilt_angles_degrees=ANGLES, tilt_axis_degrees=84.0,
                               thickness_nm=100.0,
                               shift_sigma_px=8.0, bad_tilts=((3, "dark"),), seed=21)
    _write_stack(root / "TS_01.mrc", sim.stack, PIXEL)
    (root / "TS_01.tlt").write_text("".join(f"{a:.2f}\n" for a in ANGLES))
    return root, sim


@pytest.fixture(scope="module")
def aligned(series, tmp_path_factory):
    """One `tomo align --json` run shared by the tests below (the run is the slow part)."""
    root, _ = series
    out = tmp_path_factory.mktemp("aligned")
    result = runner.invoke(app, ["tomo", "align", str(root / "TS_01.mrc"), "--angles",
                                 str(root / "TS_01.tlt"), "--pixel-size", str(PIXEL),
                                 "--tilt-axis", "84", "--out-dir", str(out), "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_align_json_contract_and_imod_outputs(series, aligned):
    _, sim = series
    out, summary = aligned
    assert set(summary) >= ALIGN_KEYS
    n = len(ANGLES)
    assert summary["tilt_angles_degrees"] == pytest.approx(list(ANGLES))
    assert [d["index"] for d in summary["dropped_tilts"]] == [3]
    assert summary["dropped_tilts"][0]["reason"].startswith("dark")
    kept = summary["kept_indices"]
    assert kept == [i for i in range(n) if i != 3]
    for key in ("shifts_px", "rotation_degrees", "magnification", "alignment_accuracy_px",
                "defocus_angstrom", "ctf_resolution_angstrom"):
        assert len(summary[key]) == n - 1, key
    assert summary["handedness"] in {"correct", "incorrect", "undetermined"}
    assert abs(summary["tilt_axis_angle_degrees"] - 84.0) < 1.0
    # the IMOD files agree with the JSON
    outputs = summary["outputs"]
    xf = read_xf(outputs["xf"])
    assert xf.shape == (n - 1, 6)
    assert xf[:, 4:] == pytest.approx(np.array(summary["shifts_px"]), abs=1e-3)
    assert read_tlt(outputs["rawtilt"]) == pytest.approx(np.array(ANGLES)[kept], abs=0.01)
    assert read_tlt(outputs["tlt"]) == pytest.approx(
        np.array(ANGLES)[kept] + summary["y_tilt_degrees"], abs=0.01)
    assert len(read_defocus(outputs["defocus"])) == n - 1
    with mrcfile.open(outputs["clean_stack"]) as mrc:
        assert mrc.data.shape == (n - 1, 512, 512)
        assert np.array_equal(mrc.data[3], sim.stack[4])
    assert json.loads((out / "TS_01_align.json").read_text())["kept_indices"] == kept


def test_align_human_summary(tmp_path):
    angles = tuple(float(a) for a in np.arange(-48.0, 48.1, 8.0))
    sim = simulate_tilt_series(shape=(256, 256), pixel_size_angstrom=PIXEL,
                               tilt_angles_degrees=angles, thickness_nm=60.0,
                               bad_tilts=((0, "dark"),), seed=5)
    _write_stack(tmp_path / "small.mrc", sim.stack, PIXEL)
    (tmp_path / "small.tlt").write_text("".join(f"{a:.2f}\n" for a in angles))
    human = runner.invoke(app, ["tomo", "align", str(tmp_path / "small.mrc"), "--angles",
                                str(tmp_path / "small.tlt"), "--pixel-size", str(PIXEL),
                                "--tilt-axis", "85"])
    assert human.exit_code == 0, human.output
    assert "12 of 13 tilts kept" in human.output and "dropped #0" in human.output
    assert "handedness" in human.output and "small.xf" in human.output


def _mdoc(angles, pixel, axis, *, drop_key=None):
    lines = [f"PixelSpacing = {pixel}", "ImageFile = TS_01.mrc", "ImageSize = 512 512", "",
             f"[T = Tilt axis angle = {axis}, binning = 1  spot = 10  camera = 1]", ""]
    for z, angle in enumerate(angles):
        lines += [f"[ZValue = {z}]"]
        if drop_key != "TiltAngle" or z != 2:
            lines += [f"TiltAngle = {angle}"]
        lines += [f"PixelSpacing = {pixel}", "ExposureDose = 3.0", ""]
    return "\n".join(lines)


@pytest.mark.parametrize("case,expected", [
    ("count", "angles for"),
    ("unsorted", "not sorted"),
    ("duplicate", "duplicate"),
    ("few", "at least 5"),
    ("mdoc_missing", "TiltAngle"),
    ("not_mrc", "MRC"),
    ("no_axis", "--tilt-axis"),
    ("both", "exactly one"),
])
def test_bad_input_exits_2_with_a_clear_message(series, tmp_path, case, expected):
    root, sim = series
    stack = root / "TS_01.mrc"
    angles = list(ANGLES)
    args = ["--pixel-size", str(PIXEL), "--tilt-axis", "84", "--out-dir", str(tmp_path)]
    tlt = tmp_path / "a.tlt"
    if case == "count":
        angles = angles + [64.0]
    elif case == "unsorted":
        angles[4], angles[5] = angles[5], angles[4]
    elif case == "duplicate":
        angles[6] = angles[5]
    tlt.write_text("".join(f"{a}\n" for a in angles))
    source = ["--angles", str(tlt)]
    if case == "few":
        few = sim.stack[:4]
        stack = tmp_path / "few.mrc"
        _write_stack(stack, few, PIXEL)
        tlt.write_text("".join(f"{a}\n" for a in ANGLES[:4]))
    elif case == "mdoc_missing":
        mdoc = tmp_path / "TS_01.mdoc"
        mdoc.write_text(_mdoc(ANGLES, PIXEL, 84.0, drop_key="TiltAngle"))
        source = ["--mdoc", str(mdoc)]
    elif case == "not_mrc":
        stack = tmp_path / "junk.mrc"
        stack.write_bytes(b"this is not an MRC file" * 100)
    elif case == "no_axis":
        args = ["--pixel-size", str(PIXEL), "--out-dir", str(tmp_path)]
    elif case == "both":
        mdoc = tmp_path / "TS_01.mdoc"
        mdoc.write_text(_mdoc(ANGLES, PIXEL, 84.0))
        source = ["--angles", str(tlt), "--mdoc", str(mdoc)]
    result = runner.invoke(app, ["tomo", "align", str(stack), *source, *args])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "Traceback" not in result.output


def test_reconstruct_after_align_json_contract(aligned, tmp_path):
    out, summary = aligned
    outputs = summary["outputs"]
    result = runner.invoke(app, ["tomo", "reconstruct", outputs["clean_stack"], "--angles",
                                 outputs["tlt"], "--xf", outputs["xf"], "--pixel-size",
                                 str(PIXEL), "--bin", "4", "--method", "sirt", "--iterations",
                                 "10", "--out-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {"thickness_nm", "thickness_uncertainty_nm", "volume", "preview"} <= set(summary)
    assert abs(summary["thickness_nm"] - 100.0) <= 10.0
    assert summary["thickness_uncertainty_nm"] > 0
    with mrcfile.open(summary["volume"]) as mrc:
        assert mrc.data.shape[1:] == (128, 128)
        assert float(mrc.voxel_size.x) == pytest.approx(4 * PIXEL, rel=1e-4)
    from PIL import Image

    with Image.open(summary["preview"]) as png:
        assert png.size == (128, 128) and png.mode == "L"


@pytest.mark.parametrize("extra,expected", [
    (["--method", "wbp"], "only sirt"),
    (["--thickness", "0"], "> 0"),
    (["--thickness", "thick"], "auto or a number"),
    (["--iterations", "0"], "iterations"),
])
def test_reconstruct_bad_input(series, tmp_path, extra, expected):
    root, _ = series
    result = runner.invoke(app, ["tomo", "reconstruct", str(root / "TS_01.mrc"), "--angles",
                                 str(root / "TS_01.tlt"), "--pixel-size", str(PIXEL),
                                 "--out-dir", str(tmp_path), *extra])
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output


def test_mdoc_gives_angles_pixel_size_and_axis(tmp_path):
    from cryovault.science.tomo.commands import AlignCommand, _angles_and_axis

    mdoc = tmp_path / "TS_01.mdoc"
    mdoc.write_text(_mdoc(ANGLES, PIXEL, 84.5))
    cmd = AlignCommand(tmp_path / "TS_01.mrc", None, mdoc, None, None)
    angles, axis, pixel = _angles_and_axis(cmd, len(ANGLES))
    assert angles == pytest.approx(ANGLES) and axis == 84.5 and pixel == pytest.approx(PIXEL)
    # --tilt-axis overrides the .mdoc's
    cmd = AlignCommand(tmp_path / "TS_01.mrc", None, mdoc, None, 80.0)
    assert _angles_and_axis(cmd, len(ANGLES))[1] == 80.0
