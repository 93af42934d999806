"""What `cryovault tomo reconstruct` does, apart from parsing the command line: bin (and align)
a tilt series, reconstruct it by SIRT, measure the sample's thickness, write the volume (MRC)
and a preview (PNG).

The stack is in counts as recorded (dense matter is dark); each tilt is turned into projected
density contrast 1 − I / mean(I) (for a tilt whose mean is not above its standard deviation,
e.g. already normalised: −(I − mean) / std). The volume is (nz, ny, nx) at the binned pixel
size, z along the beam at 0°, y along the tilt axis; larger = denser.

Automatic thickness: a first reconstruction `AUTO_FIRST_PASS_NM` thick (of at most
`AUTO_SAMPLE_ROWS` rows spread over y, in contiguous blocks) is measured with
`measure_thickness`; the final volume is the measured thickness plus a margin on each side,
centred on the slab. The reported thickness is that measurement. With an explicit thickness the
final volume is measured instead (None where no slab with two edges is inside it).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np

from cryovault.science.errors import ScienceInputError
from cryovault.science.tomo.sirt import check_stack_and_angles, sirt
from cryovault.science.tomo.stackops import bin_stack, warp_image
from cryovault.science.tomo.thickness import Thickness, measure_thickness

#: thickness of the first, generous reconstruction of the automatic mode (nm)
AUTO_FIRST_PASS_NM = 400.0
#: rows (along the tilt axis) of the first pass, in blocks of `_AUTO_BLOCK` contiguous rows
AUTO_SAMPLE_ROWS = 128
_AUTO_BLOCK = 32
#: slices averaged for the preview
PREVIEW_SLICES = 10


@dataclass(frozen=True)
class ReconstructResult:
    """Paths of the volume (MRC, voxel size set) and its preview (PNG), the measured sample
    thickness and uncertainty in nm (None when it could not be measured), the volume's
    thickness in voxels and its voxel size in Å."""

    volume_path: Path
    preview_path: Path
    thickness_nm: float | None
    thickness_uncertainty_nm: float | None
    volume_thickness_px: int
    voxel_size_angstrom: float


def projection_contrast(stack: np.ndarray) -> np.ndarray:
    """Per tilt, projected density contrast (dense = positive) from counts: 1 − I / mean(I);
    for a tilt whose mean is not above its standard deviation (normalised data),
    −(I − mean) / std."""
    out = np.empty(stack.shape, dtype=np.float32)
    for i, image in enumerate(stack):
        img = np.asarray(image, dtype=np.float32)
        mean, std = float(img.mean()), float(img.std())
        if mean > std:  # counts (Poisson: mean ≥ std)
            out[i] = 1.0 - img / mean
        else:  # normalised already, or too few counts for the ratio: the same sign, scaled
            out[i] = -(img - mean) / max(std, 1e-12)
    return out


def prepare_stack(stack: np.ndarray, binning: int, xf_rows: np.ndarray | None) -> np.ndarray:
    """The stack binned by `binning` and warped into the aligned frame (tilt axis along y)
    with the .xf rows (given at bin 1) when there are some; still in counts (float32)."""
    binned = bin_stack(stack, binning)
    if xf_rows is not None:
        binned = np.stack([warp_image(image, row, binning=binning, order=1)
                           for image, row in zip(binned, xf_rows, strict=True)])
    return binned


def _is_count(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check(stack: np.ndarray, angles: np.ndarray, pixel_size: float,
           xf_rows: np.ndarray | None, binning: int, iterations: int,
           thickness: str | int, name: str) -> None:
    check_stack_and_angles(stack, angles)
    if len(np.unique(angles)) != len(angles):
        raise ScienceInputError("duplicate tilt angles")
    if not (isinstance(pixel_size, numbers.Real) and math.isfinite(pixel_size)
            and pixel_size > 0):
        raise ScienceInputError(f"pixel size {pixel_size} Å: must be positive")
    if not _is_count(binning) or binning < 1:
        raise ScienceInputError(f"binning {binning}: must be a whole number ≥ 1")
    if min(stack.shape[1:]) // binning < 16:
        raise ScienceInputError(f"images of {stack.shape[2]}×{stack.shape[1]} px are too small "
                                f"to reconstruct at bin {binning}")
    if not _is_count(iterations) or iterations < 1:
        raise ScienceInputError(f"iterations {iterations}: must be a whole number ≥ 1")
    if not (isinstance(thickness, str) and thickness == "auto") and (
            not _is_count(thickness) or thickness <= 0):
        raise ScienceInputError(f"thickness {thickness!r}: 'auto' or a positive number of "
                                "pixels")
    if not name or any(c in name for c in "/\\\0") or name in {".", ".."}:
        raise ScienceInputError(f"output name {name!r}: must be a plain file name")
    if xf_rows is not None and xf_rows.shape != (stack.shape[0], 6):
        raise ScienceInputError(f".xf rows of shape {xf_rows.shape} for a stack of "
                                f"{stack.shape[0]} images (expected one row of 6 per image)")
    if xf_rows is not None and not np.all(np.isfinite(xf_rows)):
        raise ScienceInputError(".xf rows contain NaN or infinite values")


def sample_rows(ny: int, rows: int = AUTO_SAMPLE_ROWS, block: int = _AUTO_BLOCK) -> np.ndarray:
    """Indices of at most `rows` rows of `ny`, in contiguous blocks spread evenly over y."""
    if ny <= rows:
        return np.arange(ny)
    blocks = max(1, rows // block)
    starts = np.linspace(0, ny - block, blocks).round().astype(int)
    return np.unique(np.concatenate([np.arange(s, s + block) for s in starts]))


def auto_thickness(projections: np.ndarray, angles: np.ndarray, voxel_size: float,
                   iterations: int) -> Thickness | None:
    """The slab measured in a first reconstruction `AUTO_FIRST_PASS_NM` thick (twice that if
    the slab fills it) of sampled rows, z in voxels of the aligned frame (centre 0); None
    when no slab is found."""
    rows = sample_rows(projections.shape[1])
    part = projections[:, rows, :]
    for nm in (AUTO_FIRST_PASS_NM, 2 * AUTO_FIRST_PASS_NM):
        # never thicker than the field is wide
        nz = max(16, min(math.ceil(nm * 10.0 / voxel_size), max(projections.shape[1:])))
        volume = sirt(part, angles, nz, iterations)
        try:
            found = measure_thickness(volume, voxel_size)
        except ScienceInputError:
            continue
        offset = (nz - 1) / 2.0
        return Thickness(found.nm, found.uncertainty_nm, found.z_top - offset,
                         found.z_bottom - offset)
    return None


def write_preview(volume: np.ndarray, path: Path, slices: int = PREVIEW_SLICES) -> None:
    """PNG of the central `slices` z slices averaged, 8-bit, contrast stretched between the
    0.5 and 99.5 percentiles, dense = dark (as in the micrographs)."""
    from PIL import Image

    nz = volume.shape[0]
    lo_z = max(0, nz // 2 - slices // 2)
    hi_z = min(nz, lo_z + slices)
    image = np.asarray(volume[lo_z:hi_z], dtype=np.float64).mean(axis=0)
    lo, hi = np.percentile(image, [0.5, 99.5])
    scaled = np.clip((hi - image) / max(hi - lo, 1e-12), 0.0, 1.0)
    Image.fromarray((scaled * 255.0 + 0.5).astype(np.uint8), mode="L").save(path)


def reconstruct_series(stack: np.ndarray, angles: np.ndarray, pixel_size: float, *,
                       xf_rows: np.ndarray | None = None, binning: int = 4,
                       iterations: int = 20, thickness: str | int = "auto",
                       out_dir: Path, name: str) -> ReconstructResult:
    """SIRT reconstruction of a tilt series (n, ny, nx) in counts at `angles` (degrees) and
    `pixel_size` (Å/px of the stack). With `xf_rows` ((n, 6) IMOD .xf rows at bin 1) the raw
    stack is aligned first; without, the stack must already be aligned (tilt axis along y).
    `thickness` is "auto" or the volume's thickness in pixels of the given stack (bin 1; it is
    divided by `binning`). Writes `out_dir/name.mrc` (voxel size = pixel_size × binning) and
    `out_dir/name_preview.png`."""
    stack = np.asarray(stack)
    angles = np.asarray(angles, dtype=float)
    xf = None if xf_rows is None else np.asarray(xf_rows, dtype=float)
    _check(stack, angles, pixel_size, xf, binning, iterations, thickness, name)
    binning, iterations = int(binning), int(iterations)
    voxel_size = float(pixel_size) * binning
    projections = projection_contrast(prepare_stack(stack, binning, xf))
    if thickness == "auto":
        slab = auto_thickness(projections, angles, voxel_size, iterations)
        if slab is None:
            nz, centre = math.ceil(AUTO_FIRST_PASS_NM * 10.0 / voxel_size), 0.0
        else:
            margin = max(0.1 * (slab.z_bottom - slab.z_top), 2.0 * slab.uncertainty_nm * 10.0
                         / voxel_size, 3.0)
            nz = math.ceil(slab.z_bottom - slab.z_top + 2.0 * margin)
            centre = slab.centre
        volume = sirt(projections, angles, nz, iterations, z_centre_px=centre)
    else:
        nz = max(1, round(int(thickness) / binning))
        volume = sirt(projections, angles, nz, iterations)
        try:
            slab = measure_thickness(volume, voxel_size)
        except ScienceInputError:
            slab = None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    volume_path = out_dir / f"{name}.mrc"
    preview_path = out_dir / f"{name}_preview.png"
    with mrcfile.new(volume_path, overwrite=True) as mrc:
        mrc.set_data(volume)
        mrc.voxel_size = voxel_size
    write_preview(volume, preview_path)
    return ReconstructResult(
        volume_path=volume_path, preview_path=preview_path,
        thickness_nm=None if slab is None else float(slab.nm),
        thickness_uncertainty_nm=None if slab is None else float(slab.uncertainty_nm),
        volume_thickness_px=int(nz), voxel_size_angstrom=voxel_size)
