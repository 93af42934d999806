"""IMOD's text files for an aligned tilt series, written as IMOD writes them, read back for
checks, and the clean stack (the tilts kept) as MRC.

- .tlt / .rawtlt: one tilt angle (degrees) per line, 2 decimals; tiltalign writes "%7.2f"
  (right-aligned in 7 characters, as in "  -9.18"), hand-made .rawtlt files often have no padding.
- .xf: one line per view in stack order, "A11 A12 A21 A22 DX DY" written "%12.7f" × 4 and
  "%12.3f" × 2 (geometry.py: a = A r + d maps raw to aligned coordinates about the image centre,
  shifts in pixels of the stack that was aligned).
- .defocus, ctfplotter version 3 with astigmatism: a first line "1  0 0. 0. 0  3" (flags = 1:
  astigmatism present; 0 0. 0. 0; version 3), then per view range
  "startView endView startAngle endAngle defocus1 defocus2 astigmatismAngle": views 1-based,
  angles in degrees, defocus in nm (underfocus positive), angle in degrees, laid out
  "%2d%6d%10.2f%10.2f%8.0f%8.0f%8.1f" like the ctfplotter files we have seen. The reader also
  takes version 1/2 files (no astigmatism; the version number as a 6th field of the first line)
  and version 3 files with the phase-shift / cut-on columns (flags 4, 32: extra columns ignored)
  or the astigmatism angle in radians (flag 2: converted to degrees).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np

from cryovault.science.errors import ScienceInputError
from cryovault.science.tomo.inputs import read_text_file

DEFOCUS_HEADER = "1  0 0. 0. 0  3"
_ASTIGMATISM = 1
_RADIANS = 2


@dataclass(frozen=True)
class DefocusRow:
    """One line of a ctfplotter defocus file: views start..end (1-based, inclusive), their
    tilt angles (degrees), defocus 1 and 2 (nm, underfocus positive) and the angle of the
    astigmatism (degrees)."""

    start_view: int
    end_view: int
    start_angle_degrees: float
    end_angle_degrees: float
    defocus_u_nm: float
    defocus_v_nm: float
    astigmatism_angle_degrees: float


def defocus_rows(angles_degrees: Sequence[float], defocus_u_angstrom: Sequence[float],
                 defocus_v_angstrom: Sequence[float],
                 astigmatism_angle_degrees: float | Sequence[float]) -> list[DefocusRow]:
    """One DefocusRow per view (view i + 1 for the i-th entry) from per-view defocus values in
    Å; the astigmatism angle (degrees) may be one value for all views."""
    n = len(angles_degrees)
    if len(defocus_u_angstrom) != n or len(defocus_v_angstrom) != n:
        raise ScienceInputError(f"defocus values for {len(defocus_u_angstrom)} / "
                                f"{len(defocus_v_angstrom)} views, angles for {n}")
    astig = (np.full(n, float(astigmatism_angle_degrees))
             if np.isscalar(astigmatism_angle_degrees)
             else np.asarray(astigmatism_angle_degrees, dtype=float))
    if astig.shape != (n,):
        raise ScienceInputError(f"{astig.size} astigmatism angles for {n} views")
    return [DefocusRow(i + 1, i + 1, float(angles_degrees[i]), float(angles_degrees[i]),
                       float(defocus_u_angstrom[i]) / 10.0, float(defocus_v_angstrom[i]) / 10.0,
                       float(astig[i])) for i in range(n)]


def write_tlt(path: str | Path, angles: Iterable[float], *, padded: bool = True) -> None:
    """Write tilt angles (degrees) one per line with 2 decimals, "%7.2f" like tiltalign's
    .tlt (`padded`), or without padding ("%.2f") like many .rawtlt files."""
    values = _finite(np.asarray(list(angles), dtype=float).reshape(-1), "tilt angles")
    fmt = "{:7.2f}" if padded else "{:.2f}"
    _write_lines(path, [fmt.format(v) for v in values])


def write_xf(path: str | Path, xf_rows: np.ndarray) -> None:
    """Write IMOD .xf rows (n, 6) [A11, A12, A21, A22, DX, DY] in IMOD's fixed-width layout."""
    rows = _finite(np.asarray(xf_rows, dtype=float), ".xf rows")
    if rows.ndim != 2 or rows.shape[1] != 6:
        raise ScienceInputError(f".xf rows must be (n, 6), not {rows.shape}")
    _write_lines(path, ["".join(f"{v:12.7f}" for v in r[:4]) + f"{r[4]:12.3f}{r[5]:12.3f}"
                        for r in rows])


def read_xf(path: str | Path) -> np.ndarray:
    """The (n, 6) rows of an IMOD .xf file (whitespace-separated, so hand-made files read too)."""
    rows = []
    for number, fields in _data_lines(path, ".xf file"):
        if len(fields) != 6:
            raise ScienceInputError(f"line {number} has {len(fields)} values; an .xf line has "
                                    "6 (A11 A12 A21 A22 DX DY)", path)
        rows.append(_numbers(fields, number, path))
    if not rows:
        raise ScienceInputError("no transforms in the .xf file (it is empty)", path)
    return np.array(rows, dtype=float)


def write_defocus(path: str | Path, rows: Iterable[DefocusRow]) -> None:
    """Write a ctfplotter version-3 defocus file with astigmatism (layout in the module
    docstring)."""
    lines = [DEFOCUS_HEADER]
    for r in rows:
        values = _finite(np.array([r.start_angle_degrees, r.end_angle_degrees, r.defocus_u_nm,
                                   r.defocus_v_nm, r.astigmatism_angle_degrees]), "defocus rows")
        if not 1 <= r.start_view <= r.end_view:
            raise ScienceInputError(f"view range {r.start_view}–{r.end_view} (views are "
                                    "1-based, start ≤ end)")
        lines.append(f"{r.start_view:2d}{r.end_view:6d}{values[0]:10.2f}{values[1]:10.2f}"
                     f"{values[2]:8.0f}{values[3]:8.0f}{values[4]:8.1f}")
    if len(lines) == 1:
        raise ScienceInputError("no defocus rows to write")
    _write_lines(path, lines)


def read_defocus(path: str | Path) -> list[DefocusRow]:
    """The rows of a ctfplotter defocus file, version 1/2 (no astigmatism: defocus 1 = 2,
    angle 0) or version 3 (with the header line; astigmatism per its flags)."""
    lines = list(_data_lines(path, "defocus file"))
    if not lines:
        raise ScienceInputError("no defocus values in the file (it is empty)", path)
    number, first = lines[0]
    header = _numbers(first, number, path)
    rows: list[DefocusRow] = []
    if len(header) == 6 and header[5] >= 3 and header[1] == 0 and header[4] == 0:
        flags = int(header[0])
        astigmatic = bool(flags & _ASTIGMATISM)
        for number, fields in lines[1:]:
            need = 7 if astigmatic else 5
            if len(fields) < need:
                raise ScienceInputError(f"line {number} has {len(fields)} values, expected at "
                                        f"least {need}", path)
            v = _numbers(fields[:need], number, path)
            angle = v[6] if astigmatic else 0.0
            if flags & _RADIANS:
                angle = math.degrees(angle)
            rows.append(_row(v, v[4], v[5] if astigmatic else v[4], angle, number, path))
    else:
        for i, (number, fields) in enumerate(lines):
            if len(fields) not in (5, 6) or (len(fields) == 6 and i > 0):
                raise ScienceInputError(f"line {number} has {len(fields)} values; a version 1/2 "
                                        "defocus line has 5 (the first may add the version)",
                                        path)
            v = _numbers(fields, number, path)
            rows.append(_row(v, v[4], v[4], 0.0, number, path))
    if not rows:
        raise ScienceInputError("no defocus rows after the header line", path)
    return rows


def write_clean_stack(path: str | Path, stack: np.ndarray, kept_indices: Sequence[int],
                      pixel_size: float) -> None:
    """Write the sections `kept_indices` (in that order) of `stack` (n, ny, nx) as a float32
    MRC stack with a voxel size of `pixel_size` Å, replacing any file at `path`."""
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise ScienceInputError(f"a stack must be (n, ny, nx), not {stack.shape}")
    kept = [int(i) for i in kept_indices]
    if not kept:
        raise ScienceInputError("no tilts kept: nothing to write")
    outside = [i for i in kept if not 0 <= i < stack.shape[0]]
    if outside:
        raise ScienceInputError(f"kept indices {outside[:5]} outside 0..{stack.shape[0] - 1}")
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise ScienceInputError(f"pixel size must be a positive number of Å, not {pixel_size}")
    data = np.ascontiguousarray(stack[kept], dtype=np.float32)
    with mrcfile.new(str(path), overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.set_image_stack()
        mrc.voxel_size = float(pixel_size)


def _row(v: list[float], u_nm: float, v_nm: float, angle: float, number: int,
         path: str | Path) -> DefocusRow:
    start, end = v[0], v[1]
    if start != int(start) or end != int(end) or not 1 <= start <= end:
        raise ScienceInputError(f"line {number}: views {start:g}–{end:g} must be whole numbers "
                                "from 1, start ≤ end", path)
    return DefocusRow(int(start), int(end), v[2], v[3], u_nm, v_nm, angle)


def _data_lines(path: str | Path, what: str) -> Iterable[tuple[int, list[str]]]:
    text = read_text_file(path, f"IMOD {what}")
    return [(n, line.split()) for n, line in enumerate(text.splitlines(), start=1)
            if line.strip()]


def _numbers(fields: list[str], number: int, path: str | Path) -> list[float]:
    try:
        values = [float(f) for f in fields]
    except ValueError:
        raise ScienceInputError(f"line {number} is not numbers: {' '.join(fields)[:80]!r}",
                                path) from None
    if not all(math.isfinite(v) for v in values):
        raise ScienceInputError(f"line {number} has a non-finite value", path)
    return values


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        raise ScienceInputError(f"{what} contain NaN or infinite values")
    return values


def _write_lines(path: str | Path, lines: list[str]) -> None:
    Path(path).write_text("\n".join(lines) + "\n", encoding="ascii")
