"""What `cryovault motion` and `cryovault ctf` do, apart from parsing the command line.

Both raise ScienceInputError (message naming the file and the problem) for bad input; the CLI
prints it and exits with code 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryovault.science.ctf import CtfResult, CtfSearch, estimate_ctf, write_diagnostic_png
from cryovault.science.errors import ScienceInputError
from cryovault.science.motion import MotionResult, MotionSettings, align_movie, write_sums
from cryovault.science.movies import MRC_SUFFIXES, TIFF_SUFFIXES, open_movie

#: a pixel size in a file's header further than this from --pixel-size is refused
PIXEL_SIZE_TOLERANCE = 0.02


def parse_patches(text: str) -> tuple[int, int]:
    """"5x5" → (5, 5) (columns × rows); "1x1" or "0" turns patch alignment off."""
    if text.strip() in {"0", "1", "none", "off"}:
        return (1, 1)
    parts = text.lower().replace("×", "x").split("x")
    try:
        cols, rows = (int(p) for p in parts)
    except ValueError as exc:
        raise ScienceInputError(f"--patches {text!r}: expected COLUMNSxROWS such as 5x5") from exc
    if not (1 <= cols <= 20 and 1 <= rows <= 20):
        raise ScienceInputError(f"--patches {text!r}: 1 to 20 patches per axis")
    return cols, rows


def parse_range(text: str, option: str) -> tuple[float, float]:
    """"A:B" → (A, B) as floats."""
    try:
        a, b = (float(p) for p in text.split(":"))
    except ValueError as exc:
        raise ScienceInputError(f"{option} {text!r}: expected two numbers as A:B") from exc
    if not (math.isfinite(a) and math.isfinite(b)):
        raise ScienceInputError(f"{option} {text!r}: values must be finite")
    return a, b


def check_pixel_size(pixel_size: float | None, path: Path,
                     header_pixel_size: float | None) -> float:
    if pixel_size is None:
        raise ScienceInputError("no pixel size: give --pixel-size in Å", path)
    if not (math.isfinite(pixel_size) and 0.05 <= pixel_size <= 50):
        raise ScienceInputError(f"--pixel-size {pixel_size} Å is not plausible (0.05-50 Å)",
                                path)
    if header_pixel_size and abs(header_pixel_size - pixel_size) > (
            PIXEL_SIZE_TOLERANCE * pixel_size):
        raise ScienceInputError(f"--pixel-size {pixel_size} Å disagrees with the file header "
                                f"({header_pixel_size:.4g} Å)", path)
    return float(pixel_size)


@dataclass
class MotionCommand:
    movie: Path
    pixel_size_angstrom: float | None
    dose_per_frame: float | None
    out: Path
    gain: Path | None = None
    defect_map: Path | None = None
    eer_grouping: int | None = None
    eer_upsampling: int = 1
    patches: str = "5x5"
    binning: int = 1
    voltage_kv: float = 300.0


def run_motion(cmd: MotionCommand) -> MotionResult:
    """Read, align, write the sums; return the result (its `output` holds the paths)."""
    patches = parse_patches(cmd.patches)
    if cmd.dose_per_frame is None or not (math.isfinite(cmd.dose_per_frame)
                                          and cmd.dose_per_frame > 0):
        raise ScienceInputError(f"--dose-per-frame must be > 0 e⁻/Å², not {cmd.dose_per_frame}",
                                cmd.movie)
    if cmd.binning < 1:
        raise ScienceInputError(f"--bin must be ≥ 1, not {cmd.binning}", cmd.movie)
    if cmd.out.suffix.lower() not in MRC_SUFFIXES:
        raise ScienceInputError("--out must be an .mrc file", cmd.out)
    if not cmd.out.parent.is_dir():
        raise ScienceInputError("the output folder does not exist", cmd.out.parent)
    movie = open_movie(cmd.movie, eer_grouping=cmd.eer_grouping,
                       eer_upsampling=cmd.eer_upsampling, gain_path=cmd.gain,
                       defect_map_path=cmd.defect_map)
    pixel_size = check_pixel_size(cmd.pixel_size_angstrom, cmd.movie,
                                  movie.info.header_pixel_size_angstrom)
    settings = MotionSettings(patches=patches, binning=cmd.binning, voltage_kv=cmd.voltage_kv)
    try:
        result = align_movie(movie, pixel_size, cmd.dose_per_frame, settings)
    except ScienceInputError as exc:
        raise ScienceInputError(exc.problem, cmd.movie) from exc
    write_sums(result, cmd.out)
    return result


@dataclass
class CtfCommand:
    micrograph: Path
    pixel_size_angstrom: float | None
    voltage_kv: float
    cs_mm: float
    amplitude_contrast: float
    phase_plate: bool = False
    defocus_range: str | None = None
    resolution_range: str | None = None
    diagnostic: Path | None = None


def read_micrograph(path: Path) -> tuple[np.ndarray, float | None]:
    """A 2-D image from MRC (a stack is summed) or TIFF, and the header pixel size if any."""
    if not path.is_file():
        raise ScienceInputError("file not found", path)
    suffix = path.suffix.lower()
    header_px = None
    try:
        if suffix in MRC_SUFFIXES:
            movie = open_movie(path, correct_hot_pixels=False) if _is_stack(path) else None
            if movie is not None:
                image = np.asarray(movie.raw, dtype=np.float64).sum(axis=0)
                header_px = movie.info.header_pixel_size_angstrom
            else:
                from cryovault.science.movies import _read_mrc

                info, data = _read_mrc(path)
                image = data[0].astype(np.float32)
                header_px = info.header_pixel_size_angstrom
        elif suffix in TIFF_SUFFIXES:
            import tifffile

            data = tifffile.imread(path)
            image = data if data.ndim == 2 else data.reshape((-1,) + data.shape[-2:]).sum(0)
        else:
            raise ScienceInputError(f"unknown micrograph format {suffix!r} (MRC or TIFF)", path)
    except ScienceInputError:
        raise
    except Exception as exc:
        raise ScienceInputError(f"cannot read the micrograph (truncated or corrupt?): {exc}",
                                path) from exc
    image = np.asarray(image, dtype=np.float32)
    if not np.isfinite(image).all():
        raise ScienceInputError("micrograph contains NaN or infinite values", path)
    return image, header_px


def _is_stack(path: Path) -> bool:
    import mrcfile

    try:
        with mrcfile.open(path, header_only=True, permissive=True) as mrc:
            return int(mrc.header.nz) > 1
    except Exception as exc:
        raise ScienceInputError(f"not a readable MRC file ({exc})", path) from exc


def run_ctf(cmd: CtfCommand) -> CtfResult:
    image, header_px = read_micrograph(cmd.micrograph)
    pixel_size = check_pixel_size(cmd.pixel_size_angstrom, cmd.micrograph, header_px)
    search = CtfSearch(voltage_kv=cmd.voltage_kv, cs_mm=cmd.cs_mm,
                       amplitude_contrast=cmd.amplitude_contrast, phase_plate=cmd.phase_plate)
    changes: dict[str, float] = {}
    if cmd.defocus_range:
        lo, hi = parse_range(cmd.defocus_range, "--defocus-range")
        changes.update(min_defocus_angstrom=lo, max_defocus_angstrom=hi)
    if cmd.resolution_range:
        low, high = parse_range(cmd.resolution_range, "--resolution-range")
        changes.update(low_resolution_angstrom=low, high_resolution_angstrom=high)
    else:
        changes.update(high_resolution_angstrom=max(search.high_resolution_angstrom,
                                                    2.5 * pixel_size))
    search = CtfSearch(**{**search.__dict__, **changes})
    try:
        result = estimate_ctf(image, pixel_size, search)
    except ScienceInputError as exc:
        raise ScienceInputError(exc.problem, cmd.micrograph) from exc
    if cmd.diagnostic is not None:
        if not cmd.diagnostic.parent.is_dir():
            raise ScienceInputError("the output folder does not exist", cmd.diagnostic.parent)
        write_diagnostic_png(result, cmd.diagnostic)
    return result
