"""What `cryovault tomo align` and `cryovault tomo reconstruct` do, apart from parsing the
command line: read the stack and the angles, run, write the IMOD files and the JSON summary.

Bad input raises ScienceInputError naming the file and the problem; the CLI prints it and exits
with code 2.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np

from cryovault.science.commands import check_pixel_size
from cryovault.science.ctf_search import CtfSearch
from cryovault.science.errors import ScienceInputError
from cryovault.science.tomo.align import AlignmentResult, align_series, rotation_degrees
from cryovault.science.tomo.imod_files import (
    defocus_rows,
    read_xf,
    write_clean_stack,
    write_defocus,
    write_tlt,
    write_xf,
)
from cryovault.science.tomo.inputs import check_angles, read_mdoc, read_tlt
from cryovault.science.tomo.reconstruct import ReconstructResult, reconstruct_series

STACK_SUFFIXES = {".mrc", ".mrcs", ".st", ".ali", ".preali"}


@dataclass
class AlignCommand:
    stack: Path
    angles: Path | None
    mdoc: Path | None
    pixel_size_angstrom: float | None
    tilt_axis_degrees: float | None
    out_dir: Path | None = None
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07


def read_stack(path: Path) -> tuple[np.ndarray, float | None]:
    """The stack (n, ny, nx) as a read-only memory map, and the header's pixel size (Å) if set."""
    if not path.is_file():
        raise ScienceInputError("no such file", path)
    if path.suffix.lower() not in STACK_SUFFIXES:
        raise ScienceInputError(f"expected an MRC stack ({', '.join(sorted(STACK_SUFFIXES))})",
                                path)
    try:
        mrc = mrcfile.mmap(path, mode="r", permissive=False)
        data = mrc.data
        voxel = float(mrc.voxel_size.x)
    except (ValueError, OSError, TypeError) as exc:
        raise ScienceInputError(f"cannot read the MRC stack: {exc}", path) from exc
    if data is None or data.ndim != 3:
        raise ScienceInputError("expected a 3-D MRC stack of tilt images", path)
    if min(data.shape[1:]) < 64:
        raise ScienceInputError(f"images of {data.shape[2]}×{data.shape[1]} px are too small "
                                "(at least 64 px)", path)
    return data, (voxel if voxel > 0 else None)


def _angles_and_axis(cmd: AlignCommand, n_sections: int) -> tuple[np.ndarray, float, float | None]:
    """(angles, tilt axis, mdoc pixel size) from --angles / --mdoc / --tilt-axis."""
    if (cmd.angles is None) == (cmd.mdoc is None):
        raise ScienceInputError("give the tilt angles with exactly one of --angles FILE.tlt or "
                                "--mdoc FILE.mdoc")
    mdoc_pixel = None
    axis = cmd.tilt_axis_degrees
    if cmd.angles is not None:
        angles = read_tlt(cmd.angles)
    else:
        assert cmd.mdoc is not None
        tilts = read_mdoc(cmd.mdoc)
        angles = tilts.angles_degrees
        mdoc_pixel = tilts.pixel_size_angstrom
        if axis is None:
            axis = tilts.tilt_axis_degrees
    if axis is None:
        raise ScienceInputError("no tilt-axis angle: give --tilt-axis DEG (IMOD's rotation "
                                "angle, counter-clockwise from +y)")
    if not (math.isfinite(axis) and -360.0 <= axis <= 360.0):
        raise ScienceInputError(f"--tilt-axis {axis} is not an angle in degrees")
    return np.asarray(angles, dtype=float), float(axis), mdoc_pixel


def run_align(cmd: AlignCommand) -> tuple[AlignmentResult, dict[str, str]]:
    """Align, write the outputs beside the stack (or in --out-dir); the result and the paths."""
    stack, header_px = read_stack(cmd.stack)
    angles, axis, mdoc_px = _angles_and_axis(cmd, stack.shape[0])
    pixel_size = check_pixel_size(cmd.pixel_size_angstrom or mdoc_px, cmd.stack, header_px)
    out_dir = cmd.out_dir or cmd.stack.parent
    if not out_dir.is_dir():
        raise ScienceInputError("the output folder does not exist", out_dir)
    search = CtfSearch(voltage_kv=cmd.voltage_kv, cs_mm=cmd.cs_mm,
                       amplitude_contrast=cmd.amplitude_contrast)
    try:
        result = align_series(np.asarray(stack), angles, pixel_size, axis, search=search)
    except ScienceInputError as exc:
        raise ScienceInputError(exc.problem, cmd.stack) from exc
    return result, write_alignment(result, stack, out_dir, cmd.stack.stem)


def write_alignment(result: AlignmentResult, stack: np.ndarray, out_dir: Path,
                    name: str) -> dict[str, str]:
    """IMOD files and the JSON summary of an alignment; {kind: path}."""
    outputs = {
        "rawtilt": out_dir / f"{name}.rawtilt",
        "tlt": out_dir / f"{name}.tlt",
        "xf": out_dir / f"{name}.xf",
        "defocus": out_dir / f"{name}.defocus",
    }
    kept = result.kept_indices
    write_tlt(outputs["rawtilt"], result.tilt_angles_degrees[kept])
    write_tlt(outputs["tlt"], result.alignment.angles_degrees)
    write_xf(outputs["xf"], result.alignment.xf())
    u, v, angle = (np.array(column) for column in zip(*result.ctf.defocus_rows(), strict=True))
    write_defocus(outputs["defocus"], defocus_rows(result.alignment.angles_degrees, u, v,
                                                   angle))
    if result.dropped:
        outputs["clean_stack"] = out_dir / f"{name}_clean.mrc"
        write_clean_stack(outputs["clean_stack"], stack, kept, result.pixel_size_angstrom)
    outputs["json"] = out_dir / f"{name}_align.json"
    paths = {k: str(v) for k, v in outputs.items()}
    summary = alignment_json(result, paths)
    outputs["json"].write_text(json.dumps(summary, indent=1))
    return paths


def _num(value: float) -> float | None:
    return round(float(value), 4) if math.isfinite(float(value)) else None


def alignment_json(result: AlignmentResult, outputs: dict[str, str]) -> dict[str, object]:
    """The public `--json` object of `cryovault tomo align` (field names are a contract)."""
    al = result.alignment
    xf = al.xf()
    ctf = result.ctf
    return {
        "tilt_angles_degrees": [_num(a) for a in result.tilt_angles_degrees],
        "dropped_tilts": [{"index": d.index, "angle_degrees": _num(d.angle_degrees),
                           "reason": d.reason} for d in result.dropped],
        "tilt_axis_angle_degrees": _num(al.axis_degrees),
        "tilt_axis_correction_degrees": _num(result.axis_correction_degrees),
        "x_tilt_degrees": _num(result.x_tilt_degrees),
        "y_tilt_degrees": _num(result.y_tilt_degrees),
        "kept_indices": [int(i) for i in result.kept_indices],
        "corrected_tilt_angles_degrees": [_num(a) for a in al.angles_degrees],
        "shifts_px": [[_num(row[4]), _num(row[5])] for row in xf],
        "rotation_degrees": [_num(r) for r in rotation_degrees(al)],
        "magnification": [_num(m) for m in al.magnifications],
        "alignment_accuracy_px": [_num(a) for a in result.accuracy_px],
        "defocus_angstrom": [_num(d) for d in ctf.defocus_angstrom],
        "ctf_resolution_angstrom": [_num(r) for r in ctf.resolution_angstrom],
        "astigmatism_angstrom": _num(ctf.astigmatism_angstrom),
        "astigmatism_angle_degrees": _num(ctf.astigmatism_angle_degrees),
        "handedness": ctf.handedness,
        "pixel_size_angstrom": _num(result.pixel_size_angstrom),
        "timings_s": {k: _num(v) for k, v in result.timings_s.items()},
        "outputs": outputs,
    }


@dataclass
class ReconstructCommand:
    stack: Path
    angles: Path | None
    pixel_size_angstrom: float | None
    xf: Path | None = None
    binning: int = 4
    method: str = "sirt"
    iterations: int = 20
    thickness: str = "auto"
    out_dir: Path | None = None


def parse_thickness(text: str) -> str | int:
    """"auto" or a positive whole number of pixels (of the stack, bin 1)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError as exc:
        raise ScienceInputError(f"--thickness {text!r}: expected auto or a number of "
                                "pixels") from exc
    if value <= 0:
        raise ScienceInputError(f"--thickness must be > 0 pixels, not {value}")
    return value


def run_reconstruct(cmd: ReconstructCommand) -> ReconstructResult:
    """Reconstruct, write the volume and its preview beside the stack (or in --out-dir)."""
    if cmd.method.lower() != "sirt":
        raise ScienceInputError(f"--method {cmd.method!r}: only sirt is available")
    thickness = parse_thickness(cmd.thickness)
    if cmd.angles is None:
        raise ScienceInputError("give the tilt angles with --angles FILE.tlt (the corrected "
                                "angles that `cryovault tomo align` wrote)")
    stack, header_px = read_stack(cmd.stack)
    angles = check_angles(read_tlt(cmd.angles), stack.shape[0], source=str(cmd.angles))
    pixel_size = check_pixel_size(cmd.pixel_size_angstrom, cmd.stack, header_px)
    xf_rows = None if cmd.xf is None else read_xf(cmd.xf)
    out_dir = cmd.out_dir or cmd.stack.parent
    if not out_dir.is_dir():
        raise ScienceInputError("the output folder does not exist", out_dir)
    try:
        return reconstruct_series(np.asarray(stack), angles, pixel_size, xf_rows=xf_rows,
                                  binning=cmd.binning, iterations=cmd.iterations,
                                  thickness=thickness, out_dir=out_dir,
                                  name=f"{cmd.stack.stem}_rec")
    except ScienceInputError as exc:
        raise ScienceInputError(exc.problem, cmd.stack) from exc


def reconstruction_json(result: ReconstructResult) -> dict[str, object]:
    """The public `--json` object of `cryovault tomo reconstruct`."""
    return {
        "thickness_nm": None if result.thickness_nm is None else _num(result.thickness_nm),
        "thickness_uncertainty_nm": (None if result.thickness_uncertainty_nm is None
                                     else _num(result.thickness_uncertainty_nm)),
        "volume": str(result.volume_path),
        "preview": str(result.preview_path),
        "volume_thickness_px": result.volume_thickness_px,
        "voxel_size_angstrom": _num(result.voxel_size_angstrom),
    }
