"""IMOD output files: real etomo / ctfplotter-layout fixtures parsed and written back byte for
byte, round trips of our own values, and the clean MRC stack."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from cryovault.science.errors import ScienceInputError
from cryovault.science.tomo.geometry import TiltAlignment
from cryovault.science.tomo.imod_files import (
    DefocusRow,
    defocus_rows,
    read_defocus,
    read_xf,
    write_clean_stack,
    write_defocus,
    write_tlt,
    write_xf,
)
from cryovault.science.tomo.inputs import read_tlt

IMOD = Path("/work/shared/fixtures/imod")


@pytest.mark.parametrize(("name", "padded"), [("TS_001.tlt", True), ("TS_001.rawtlt", False)])
def test_tlt_fixture_written_back_byte_for_byte(tmp_path: Path, name: str, padded: bool) -> None:
    out = tmp_path / name
    write_tlt(out, read_tlt(IMOD / name), padded=padded)
    assert out.read_bytes() == (IMOD / name).read_bytes()


def test_xf_fixture_parsed_and_written_back_byte_for_byte(tmp_path: Path) -> None:
    rows = read_xf(IMOD / "TS_001.xf")
    assert rows.shape == (40, 6)
    assert rows[0] == pytest.approx([0.1020875, 0.9947760, -0.9947760, 0.1020875, 2.395, -3.871])
    out = tmp_path / "out.xf"
    write_xf(out, rows)
    assert out.read_bytes() == (IMOD / "TS_001.xf").read_bytes()


def test_defocus_fixture_parsed_and_written_back_byte_for_byte(tmp_path: Path) -> None:
    rows = read_defocus(IMOD / "ctfplotter_v3.defocus")
    assert rows[0] == DefocusRow(1, 1, -52.02, -52.02, 3345.0, 3328.0, 60.0)
    assert [r.start_view for r in rows] == [1, 2, 3, 4]
    out = tmp_path / "out.defocus"
    write_defocus(out, rows)
    assert out.read_bytes() == (IMOD / "ctfplotter_v3.defocus").read_bytes()
    assert out.read_text().splitlines()[0] == "1  0 0. 0. 0  3"


def test_alignment_xf_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    alignment = TiltAlignment(np.arange(-60.0, 61.0, 3.0), 85.3, rng.normal(0, 20, (41, 2)),
                              rng.normal(0, 0.5, 41), 1 + rng.normal(0, 0.01, 41))
    xf = alignment.xf()
    path = tmp_path / "a.xf"
    write_xf(path, xf)
    back = read_xf(path)
    assert np.allclose(back[:, :4], xf[:, :4], atol=5e-8)
    assert np.allclose(back[:, 4:], xf[:, 4:], atol=5e-4)
    assert all(len(line) == 72 for line in path.read_text().splitlines())


def test_tlt_round_trip_keeps_two_decimals(tmp_path: Path) -> None:
    angles = np.array([-60.004, -2.5, -0.001, 0.0, 3.14159, 59.996])
    path = tmp_path / "a.tlt"
    write_tlt(path, angles)
    assert path.read_text().splitlines()[1] == "  -2.50"
    assert np.allclose(read_tlt(path), np.round(angles, 2), atol=1e-9)


def test_defocus_rows_from_angstrom_and_round_trip(tmp_path: Path) -> None:
    angles = [-3.0, 0.0, 3.0]
    rows = defocus_rows(angles, [40210.0, 39870.0, 41234.0], [39810.0, 39470.0, 40834.0], 30.0)
    assert rows[1] == DefocusRow(2, 2, 0.0, 0.0, 3987.0, 3947.0, 30.0)
    path = tmp_path / "a.defocus"
    write_defocus(path, rows)
    back = read_defocus(path)
    assert [r.start_view for r in back] == [1, 2, 3]
    for r, b in zip(rows, back, strict=True):
        assert b.defocus_u_nm == pytest.approx(r.defocus_u_nm, abs=0.5)
        assert b.defocus_v_nm == pytest.approx(r.defocus_v_nm, abs=0.5)
        assert b.astigmatism_angle_degrees == pytest.approx(30.0)
        assert b.start_angle_degrees == pytest.approx(r.start_angle_degrees)
    with pytest.raises(ScienceInputError, match="views"):
        defocus_rows(angles, [1.0, 2.0], [1.0, 2.0, 3.0], 0.0)


def test_reads_version_2_and_flagged_version_3_defocus_files(tmp_path: Path) -> None:
    v2 = tmp_path / "v2.defocus"
    v2.write_text("1\t1\t-60.00\t-60.00\t4123\t2\n2\t3\t-57.00\t-54.00\t4100.5\n")
    rows = read_defocus(v2)
    assert rows == [DefocusRow(1, 1, -60.0, -60.0, 4123.0, 4123.0, 0.0),
                    DefocusRow(2, 3, -57.0, -54.0, 4100.5, 4100.5, 0.0)]
    # flags 1 + 2 + 4: astigmatism, angle in radians, phase shift column
    v3 = tmp_path / "v3.defocus"
    v3.write_text("7  0 0. 0. 0  3\n1 1 -52.02 -52.02 3345 3328 0.5235988 12.0\n")
    (row,) = read_defocus(v3)
    assert row.astigmatism_angle_degrees == pytest.approx(30.0)
    assert (row.defocus_u_nm, row.defocus_v_nm) == (3345.0, 3328.0)


@pytest.mark.parametrize(("reader", "content", "message"), [
    (read_xf, b"", "empty"),
    (read_xf, b"1 0 0 1 2.5\n", "line 1 has 5 values"),
    (read_xf, b"1 0 0 1 2.5 x\n", "line 1 is not numbers"),
    (read_xf, b"\x00\xff\x13binary" * 30, "binary"),
    (read_defocus, b"", "empty"),
    (read_defocus, b"1  0 0. 0. 0  3\n", "no defocus rows"),
    (read_defocus, b"1  0 0. 0. 0  3\n1 1 -52.0 -52.0 3345\n", "expected at least 7"),
    (read_defocus, b"1  0 0. 0. 0  3\n0 1 -52 -52 3345 3328 60\n", "views"),
    (read_defocus, b"hello world\n", "not numbers"),
])
def test_malformed_files_are_clear_errors(tmp_path: Path, reader: object, content: bytes,
                                          message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(ScienceInputError, match=message) as err:
        reader(path)  # type: ignore[operator]
    assert str(path) in str(err.value)


def test_writers_refuse_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ScienceInputError, match=r"\(n, 6\)"):
        write_xf(tmp_path / "a.xf", np.zeros((3, 5)))
    with pytest.raises(ScienceInputError, match="NaN"):
        write_tlt(tmp_path / "a.tlt", [0.0, float("nan")])
    with pytest.raises(ScienceInputError, match="no defocus rows"):
        write_defocus(tmp_path / "a.defocus", [])


def test_clean_stack_keeps_the_chosen_sections_as_float32_with_the_pixel_size(
        tmp_path: Path) -> None:
    stack = np.random.default_rng(2).poisson(20.0, (7, 24, 32)).astype(np.uint16)
    path = tmp_path / "clean.mrc"
    write_clean_stack(path, stack, [0, 2, 3, 6], 2.7)
    with mrcfile.open(path, permissive=False) as mrc:
        assert mrc.data.dtype == np.float32
        assert mrc.data.shape == (4, 24, 32)
        assert np.array_equal(mrc.data, stack[[0, 2, 3, 6]].astype(np.float32))
        assert float(mrc.voxel_size.x) == pytest.approx(2.7)
        assert float(mrc.voxel_size.y) == pytest.approx(2.7)
        assert mrc.header.ispg == 0  # an image stack, not a volume
    write_clean_stack(path, stack, [1], 2.7)  # replaces the file
    with mrcfile.open(path) as mrc:
        assert mrc.data.shape[0] == 1 or mrc.data.ndim == 2
    with pytest.raises(ScienceInputError, match="outside"):
        write_clean_stack(path, stack, [0, 7], 2.7)
    with pytest.raises(ScienceInputError, match="nothing to write"):
        write_clean_stack(path, stack, [], 2.7)
    with pytest.raises(ScienceInputError, match="pixel size"):
        write_clean_stack(path, stack, [0], -1.0)
