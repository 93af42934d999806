"""Tilt angles from IMOD .tlt/.rawtlt and SerialEM .mdoc files (real fixtures), and the checks
of angles against a stack: clear errors, never a traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cryovault.science.errors import ScienceInputError
from cryovault.science.tomo.inputs import (
    check_angles,
    check_usable,
    read_mdoc,
    read_tlt,
)

FIXTURES = Path("/work/shared/fixtures")
IMOD = FIXTURES / "imod"
MDOC = FIXTURES / "mdoc"


def test_reads_imod_tlt_and_rawtlt() -> None:
    tlt = read_tlt(IMOD / "TS_001.tlt")
    raw = read_tlt(IMOD / "TS_001.rawtlt")
    assert tlt.shape == raw.shape == (40,)
    assert tlt[0] == pytest.approx(-57.12) and tlt[-1] == pytest.approx(59.84)
    assert raw[0] == pytest.approx(-60.0) and raw[-1] == pytest.approx(56.99)
    assert np.all(np.diff(raw) > 0)


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty"),
    (b"  \n\n", "empty"),
    (b"\x00\x01\x02\xff\xfe" * 20, "binary"),
    (b"-60.00\n-57.00\nhello\n", "line 3 is not a number"),
    (b"-60.00 -57.00\n", "line 1 has 2 values"),
])
def test_malformed_tlt_is_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.tlt"
    path.write_bytes(content)
    with pytest.raises(ScienceInputError, match=message) as err:
        read_tlt(path)
    assert str(path) in str(err.value)


def test_missing_tlt_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ScienceInputError, match="not found"):
        read_tlt(tmp_path / "nothing.tlt")


def test_reads_serialem_tilt_series_mdoc() -> None:
    tilts = read_mdoc(MDOC / "serialem_tilt_series_TS_01.mdoc")
    assert tilts.angles_degrees.shape == (41,)
    # section order (ZValue), which is the dose-symmetric acquisition order, not sorted
    assert tilts.angles_degrees[:3] == pytest.approx([0.000999877, 3.00113, -2.99863])
    assert tilts.pixel_size_angstrom == pytest.approx(5.4)
    assert tilts.tilt_axis_degrees == pytest.approx(85.3)  # "Tilt axis angle = 85.3" title
    assert tilts.exposure_dose is None  # ExposureDose = 0: not calibrated
    assert tilts.prior_dose is None


def test_reads_serialem_frames_mdoc() -> None:
    tilts = read_mdoc(MDOC / "tomo_test_1.mdoc")
    assert len(tilts.angles_degrees) == 11
    assert tilts.angles_degrees[0] == pytest.approx(-0.00949884)
    assert tilts.pixel_size_angstrom == pytest.approx(1.94)
    assert tilts.tilt_axis_degrees == pytest.approx(83.8)


def _edited_mdoc(tmp_path: Path, edit: object) -> Path:
    text = (MDOC / "serialem_tilt_series_TS_01.mdoc").read_text()
    path = tmp_path / "edited.mdoc"
    path.write_text(edit(text))  # type: ignore[operator]
    return path


def test_tomography5_title_dose_and_rotation_angle_fallback(tmp_path: Path) -> None:
    def tomo5(text: str) -> str:
        text = text.replace("[T =     Tilt axis angle = 85.3, binning = 4  spot = 8  camera = 2]",
                            "[T =   TiltAxisAngle = -90.18  Binning = 1  SpotSize = 7]")
        return text.replace("ExposureDose = 0", "ExposureDose = 2.5")

    tilts = read_mdoc(_edited_mdoc(tmp_path, tomo5))
    assert tilts.tilt_axis_degrees == pytest.approx(-90.18)
    assert tilts.exposure_dose is not None
    assert np.allclose(tilts.exposure_dose, 2.5) and len(tilts.exposure_dose) == 41

    def no_title(text: str) -> str:
        return text.replace("[T =     Tilt axis angle = 85.3, binning = 4  spot = 8  camera = 2]",
                            "")

    # SerialEM: RotationAngle (175.3) = tilt axis + 90
    assert read_mdoc(_edited_mdoc(tmp_path, no_title)).tilt_axis_degrees == pytest.approx(85.3)


def test_mdoc_missing_tilt_angle_names_the_key_the_section_and_the_file(tmp_path: Path) -> None:
    def drop_one(text: str) -> str:
        return text.replace("TiltAngle = 3.00113\n", "", 1)

    path = _edited_mdoc(tmp_path, drop_one)
    with pytest.raises(ScienceInputError, match=r"TiltAngle missing in section\(s\) ZValue = 1"
                       ) as err:
        read_mdoc(path)
    assert str(path) in str(err.value)

    def drop_all(text: str) -> str:
        return "\n".join(line for line in text.splitlines() if not line.startswith("TiltAngle"))

    with pytest.raises(ScienceInputError, match="TiltAngle"):
        read_mdoc(_edited_mdoc(tmp_path, drop_all))


def test_mdoc_without_zvalue_sections_or_a_montage_is_refused() -> None:
    with pytest.raises(ScienceInputError, match="ZValue") as err:
        read_mdoc(MDOC / "serialem_frame_set_single.mdoc")
    assert "serialem_frame_set_single.mdoc" in str(err.value)
    with pytest.raises(ScienceInputError, match="montage"):
        read_mdoc(MDOC / "serialem_montage_section.mdoc")


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10, "binary"),
    (b"just some words\nand more words\n", "ZValue"),
    (b"PixelSpacing = 5.4\n[ZValue = 0]\nTiltAngle = abc\n", "TiltAngle"),
])
def test_malformed_mdoc_is_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.mdoc"
    path.write_bytes(content)
    with pytest.raises(ScienceInputError, match=message) as err:
        read_mdoc(path)
    assert str(path) in str(err.value)


def test_check_angles_accepts_sorted_angles_either_way() -> None:
    up = check_angles([-6.0, -3.0, 0.0, 3.0, 6.0], 5, source="a.tlt")
    assert up.dtype == np.float64 and list(up) == [-6.0, -3.0, 0.0, 3.0, 6.0]
    assert list(check_angles(np.array([6, 3, 0, -3, -6]), 5, source="a.tlt"))[0] == 6.0


def test_check_angles_names_each_problem() -> None:
    angles = list(np.arange(-60.0, 63.0, 3.0))  # 41
    with pytest.raises(ScienceInputError, match="a.tlt: 42 angles for 41 sections"):
        check_angles([*angles, 63.0], 41, source="a.tlt")
    with pytest.raises(ScienceInputError, match=r"duplicate tilt angles: 0° \(positions 21 and 22"):
        check_angles([*angles[:21], 0.0, *angles[22:]], 41, source="a.tlt")
    with pytest.raises(ScienceInputError, match=r"not sorted.*position 4 \(-6°\) after 3°"):
        check_angles([-3.0, 0.0, 3.0, -6.0, 6.0], 5, source="A.mdoc")
    with pytest.raises(ScienceInputError, match="non-finite tilt angle.*position.* 3"):
        check_angles([-3.0, 0.0, float("nan"), 6.0], 4, source="--angles")
    with pytest.raises(ScienceInputError, match="numbers"):
        check_angles(["a", "b"], 2, source="x")  # type: ignore[list-item]


def test_check_usable_needs_five_tilts() -> None:
    check_usable(5)
    with pytest.raises(ScienceInputError, match="only 4 of 41 tilts are usable; at least 5"):
        check_usable(4, n_total=41)
