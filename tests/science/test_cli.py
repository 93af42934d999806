"""`cryovault motion` and `cryovault ctf`: JSON contract and exit code 2 on bad input."""

import json

import mrcfile
import numpy as np
import pytest
from typer.testing import CliRunner

from cryovault.cli import app
from cryovault.science.ctf import CtfParameters
from cryovault.science.eer_io import EerEvents, write_eer
from cryovault.science.simulate import (
    simulate_micrograph,
    simulate_movie,
    write_eer_movie,
    write_mrc_movie,
)

runner = CliRunner()

MOTION_KEYS = {"pixel_size_angstrom", "shifts_px", "patch_shifts_px", "total_drift_angstrom",
               "early_drift_angstrom", "late_drift_angstrom", "output"}
CTF_KEYS = {"defocus_u_angstrom", "defocus_v_angstrom", "astigmatism_angle_degrees",
            "phase_shift_degrees", "resolution_angstrom", "score", "fit_ok"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    sim = simulate_movie((256, 256), 6, dose_per_frame=8.0, seed=2, gain_variation=0.05)
    write_mrc_movie(root / "movie.mrc", sim.frames, 1.0)
    write_eer_movie(root / "movie.eer", sim, eer_frames_per_fraction=4)
    with mrcfile.new(root / "gain.mrc") as mrc:
        mrc.set_data(sim.gain)
    with mrcfile.new(root / "small_gain.mrc") as mrc:
        mrc.set_data(sim.gain[:128])
    mic = simulate_micrograph((1024, 1024), 1.0, CtfParameters(12000, 11200, 40.0),
                              dose_e_per_angstrom2=400, seed=3)
    with mrcfile.new(root / "mic.mrc") as mrc:
        mrc.set_data(mic.image)
        mrc.voxel_size = 1.0
    return root


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def test_motion_json(data):
    out = data / "aligned.mrc"
    result = invoke("motion", data / "movie.mrc", "--pixel-size", "1", "--dose-per-frame", "8",
                    "--gain", data / "gain.mrc", "--patches", "3x3", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert set(summary) == MOTION_KEYS
    assert len(summary["shifts_px"]) == 6 and summary["shifts_px"][0] == [0.0, 0.0]
    assert len(summary["patch_shifts_px"]) == 9
    assert set(summary["patch_shifts_px"][0]) == {"centre", "shifts"}
    assert summary["output"]["aligned_sum"] == str(out)
    with mrcfile.open(summary["output"]["dose_weighted_sum"]) as mrc:
        assert mrc.data.shape == (256, 256)


def test_motion_eer(data):
    result = invoke("motion", data / "movie.eer", "--pixel-size", "1", "--dose-per-frame", "8",
                    "--eer-grouping", "4", "--patches", "1x1", "--out", data / "e.mrc",
                    "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["shifts_px"]) == 6


def test_ctf_json_and_diagnostic(data):
    png = data / "diag.png"
    result = invoke("ctf", data / "mic.mrc", "--pixel-size", "1", "--voltage", "300", "--cs",
                    "2.7", "--amplitude-contrast", "0.07", "--json", "--diagnostic", png)
    assert result.exit_code == 0, result.output
    fit = json.loads(result.stdout)
    assert set(fit) == CTF_KEYS
    assert fit["fit_ok"] is True
    assert abs((fit["defocus_u_angstrom"] + fit["defocus_v_angstrom"]) / 2 - 11600) < 200
    from PIL import Image

    with Image.open(png) as image:
        assert image.size[0] == 512 and image.size[1] > 512


def test_exit_code_2_with_a_clear_message(data, tmp_path):
    movie = data / "movie.mrc"
    common = ("--dose-per-frame", "8", "--out", tmp_path / "o.mrc")
    cases = [
        (("motion", movie, *common), "no pixel size"),
        (("motion", movie, "--pixel-size", "1.4", *common), "disagrees with the file header"),
        (("motion", movie, "--pixel-size", "-1", *common), "not plausible"),
        (("motion", movie, "--pixel-size", "1", "--gain", data / "small_gain.mrc", *common),
         "gain reference is 256×128"),
        (("motion", data / "movie.eer", "--pixel-size", "1", *common), "--eer-grouping"),
        (("ctf", data / "mic.mrc", "--pixel-size", "2.0"), "disagrees with the file header"),
        (("ctf", data / "mic.mrc"), "no pixel size"),
    ]
    one = tmp_path / "one.mrc"
    write_mrc_movie(one, np.ones((1, 64, 64), np.uint16), 1.0)
    cases.append((("motion", one, "--pixel-size", "1", *common), "1 frame"))
    nan = tmp_path / "nan.mrc"
    with mrcfile.new(nan) as mrc:
        image = np.ones((256, 256), np.float32)
        image[3, 4] = np.nan
        mrc.set_data(image)
    cases.append((("ctf", nan, "--pixel-size", "1"), "NaN"))
    cut = tmp_path / "cut.mrc"
    cut.write_bytes(movie.read_bytes()[:50000])
    cases.append((("motion", cut, "--pixel-size", "1", *common), "truncated"))
    no_count = tmp_path / "nocount.eer"
    write_eer(no_count, [EerEvents(np.array([3]))] * 2, width=32, height=32, n_frames=2,
              include_frame_count=False)
    cases.append((("motion", no_count, "--pixel-size", "1", "--eer-grouping", "1", *common),
                  "no frame count"))
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (message, result.output)
        assert str(args[1].name) in result.output
