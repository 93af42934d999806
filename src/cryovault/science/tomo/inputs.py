"""Tilt angles and acquisition metadata of a tilt series: IMOD .tlt/.rawtlt files and SerialEM /
Tomography 5 .mdoc files, and the checks that they fit the stack.

Angles are stage tilt angles in degrees, in stack (section) order. The tilt axis is IMOD's
rotation angle (counter-clockwise from +y, geometry.py): SerialEM and Tomography 5 write it in a
title line ("Tilt axis angle = 85.3", "TiltAxisAngle = -90.18"); when no title has it, it is
taken as RotationAngle − 90° (SerialEM's relation between the two; Tomography 5's RotationAngle
follows another sign convention, but Tomography 5 always writes the title).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryovault.science.errors import ScienceInputError

MIN_USABLE_TILTS = 5
DUPLICATE_TOLERANCE_DEGREES = 0.005  # angles written with 2 decimals that print the same

_AXIS_TITLE = re.compile(r"tilt\s*axis\s*angle\s*=\s*([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)",
                         re.IGNORECASE)

_ZVALUE = re.compile(r"^\s*\[\s*ZValue\s*=", re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True)
class MdocTilts:
    """What an .mdoc says about its tilt series, per section in ZValue (stack) order:
    stage angles (degrees), the pixel size (Å, None if absent), the tilt axis (degrees,
    IMOD convention, None if absent), the dose of each exposure (e⁻/Å², None if absent or all
    zero, i.e. not calibrated) and the dose received before each exposure (PriorRecordDose,
    e⁻/Å², None if absent)."""

    angles_degrees: np.ndarray
    pixel_size_angstrom: float | None
    tilt_axis_degrees: float | None
    exposure_dose: np.ndarray | None
    prior_dose: np.ndarray | None


def read_tlt(path: str | Path) -> np.ndarray:
    """The angles (degrees, float64) of an IMOD .tlt or .rawtlt file: one number per line,
    blank lines ignored."""
    text = read_text_file(path, "tilt-angle file")
    angles = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 1:
            raise ScienceInputError(f"line {number} has {len(fields)} values; a tilt-angle file "
                                    "has one angle per line", path)
        try:
            angles.append(float(fields[0]))
        except ValueError:
            raise ScienceInputError(f"line {number} is not a number: {_short(line)!r}",
                                    path) from None
    if not angles:
        raise ScienceInputError("no tilt angles in the file (it is empty)", path)
    return np.array(angles, dtype=np.float64)


def read_mdoc(path: str | Path) -> MdocTilts:
    """The tilt angles and acquisition metadata of a SerialEM or Tomography 5 tilt-series
    .mdoc (parsed with the `mdocfile` package). Raises ScienceInputError naming the file and the
    problem for a file that is not a tilt-series .mdoc or lacks TiltAngle or ZValue sections."""
    text = read_text_file(path, ".mdoc file")  # readable text, else a clear error
    if not _ZVALUE.search(text):
        raise ScienceInputError("no [ZValue = n] sections: not a tilt-series .mdoc", path)
    import mdocfile  # heavy (pydantic, pandas): imported only when an .mdoc is read

    logger = logging.getLogger("mdocfile")
    level = logger.level
    logger.setLevel(logging.ERROR)  # it warns about every key it does not model
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            df = mdocfile.read(path)
    except Exception as exc:  # any parse failure is the file's fault
        raise ScienceInputError(f"not a readable .mdoc file ({type(exc).__name__}: "
                                f"{_short(str(exc))})", path) from None
    finally:
        logger.setLevel(level)
    if len(df) == 0 or "ZValue" not in df.columns or df["ZValue"].isna().all():
        raise ScienceInputError("no [ZValue = n] sections: not a tilt-series .mdoc", path)
    if "Montage" in df.columns and _truthy(df["Montage"].iloc[0]):
        raise ScienceInputError("a montage .mdoc, not a tilt series", path)
    if df["ZValue"].isna().any():
        raise ScienceInputError("a section has an empty ZValue", path)
    df = df.sort_values("ZValue", kind="stable").reset_index(drop=True)
    z = df["ZValue"].to_numpy(dtype=float)
    if len(np.unique(z)) != len(z):
        raise ScienceInputError("ZValue sections repeat: not a single tilt series", path)
    if "TiltAngle" not in df.columns:
        raise ScienceInputError("no TiltAngle in any section", path)
    angles = _floats(df["TiltAngle"])
    missing = [int(v) for v, a in zip(z, angles, strict=True) if not math.isfinite(a)]
    if missing:
        raise ScienceInputError(f"TiltAngle missing in section(s) ZValue = "
                                f"{_list(missing)}", path)
    titles = df["titles"].iloc[0] if "titles" in df.columns else []
    return MdocTilts(angles_degrees=angles,
                     pixel_size_angstrom=_pixel_size(df),
                     tilt_axis_degrees=_tilt_axis(titles, df),
                     exposure_dose=_dose(df, "ExposureDose", allow_all_zero=False),
                     prior_dose=_dose(df, "PriorRecordDose", allow_all_zero=True))


def check_angles(angles: np.ndarray, n_sections: int, *, source: str | Path) -> np.ndarray:
    """`angles` (degrees) as float64 once they fit a stack of `n_sections` sections: as many
    as sections, finite, no two the same, sorted increasing or decreasing. Raises
    ScienceInputError naming `source` (a file or an option) and the problem."""
    try:
        a = np.asarray(angles, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ScienceInputError("tilt angles must be numbers", source) from None
    if len(a) != n_sections:
        raise ScienceInputError(f"{len(a)} angles for {n_sections} sections", source)
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise ScienceInputError(f"non-finite tilt angle(s) at position(s) "
                                f"{_list([int(i) + 1 for i in bad])}", source)
    order = np.argsort(a, kind="stable")
    close = np.flatnonzero(np.diff(a[order]) < DUPLICATE_TOLERANCE_DEGREES)
    if close.size:
        pairs = [f"{a[order[j]]:g}° (positions {order[j] + 1} and {order[j + 1] + 1})"
                 for j in close[:5]]
        raise ScienceInputError(f"duplicate tilt angles: {', '.join(pairs)}", source)
    step = np.diff(a)
    if len(a) > 2 and not (np.all(step > 0) or np.all(step < 0)):
        direction = 1.0 if step[0] > 0 else -1.0
        j = int(np.flatnonzero(step * direction < 0)[0])
        raise ScienceInputError(
            f"tilt angles are not sorted (neither increasing nor decreasing): position "
            f"{j + 2} ({a[j + 1]:g}°) after {a[j]:g}°", source)
    return a


def check_usable(n_usable: int, *, n_total: int | None = None) -> None:
    """Raise ScienceInputError when fewer than 5 tilts are left to align."""
    if n_usable < MIN_USABLE_TILTS:
        of = f" of {n_total}" if n_total is not None else ""
        raise ScienceInputError(f"only {n_usable}{of} tilts are usable; at least "
                                f"{MIN_USABLE_TILTS} are needed")


def read_text_file(path: str | Path, what: str) -> str:
    """The text of a small instrument or IMOD file; ScienceInputError naming `what` and the
    path when it is missing, unreadable, binary or empty."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ScienceInputError(f"{what} not found", path) from None
    except OSError as exc:
        raise ScienceInputError(f"cannot read the {what}: {exc.strerror or exc}", path) from None
    if b"\x00" in data:
        raise ScienceInputError(f"not a text file (binary data): expected the {what}", path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            text = data.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            raise ScienceInputError(f"not a text file: expected the {what}", path) from None
    if not text.strip():
        raise ScienceInputError(f"the {what} is empty", path)
    return text


def _floats(column: object) -> np.ndarray:
    out = []
    for v in column:  # type: ignore[attr-defined]
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(math.nan)
    return np.array(out, dtype=np.float64)


def _pixel_size(df: object) -> float | None:
    if "PixelSpacing" not in df.columns:  # type: ignore[attr-defined]
        return None
    values = _floats(df["PixelSpacing"])  # type: ignore[index]
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.median(values)) if values.size else None


def _tilt_axis(titles: object, df: object) -> float | None:
    for title in titles or []:  # type: ignore[attr-defined]
        match = _AXIS_TITLE.search(str(title))
        if match:
            return float(match.group(1))
    if "RotationAngle" in df.columns:  # type: ignore[attr-defined]
        rot = _floats(df["RotationAngle"])  # type: ignore[index]
        rot = rot[np.isfinite(rot)]
        if rot.size:
            axis = float(np.median(rot)) - 90.0
            return (axis + 180.0) % 360.0 - 180.0
    return None


def _dose(df: object, key: str, *, allow_all_zero: bool) -> np.ndarray | None:
    if key not in df.columns:  # type: ignore[attr-defined]
        return None
    values = _floats(df[key])  # type: ignore[index]
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        return None
    if not allow_all_zero and not np.any(values > 0):
        return None
    return values


def _truthy(value: object) -> bool:
    try:
        return float(value) != 0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return bool(value)


def _list(items: list[int]) -> str:
    shown = ", ".join(str(i) for i in items[:8])
    return shown + (f" … ({len(items)} in all)" if len(items) > 8 else "")


def _short(text: str, limit: int = 80) -> str:
    text = text.strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 1] + "…"
