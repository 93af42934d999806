"""The alignment of a tilt series, in the order of SPEC ET-2: clean stack, pair alignment,
tomogram positioning, patch tracking, CTF per tilt. Operates on arrays; reading the files and
writing the IMOD outputs is commands.py's.

Working sizes (a 4096² series): pair alignment on ≤ 512 px images (bin 8), positioning on
≤ 256 px (bin 16), patch tracking on ≤ 1024 px (bin 4), bad-tilt detection on its own binned copy
and the CTF on tiles of the bin-1 images.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from cryovault.science.ctf_search import CtfSearch
from cryovault.science.threads import run_parallel
from cryovault.science.tomo.clean import DroppedTilt, find_bad_tilts
from cryovault.science.tomo.geometry import TiltAlignment
from cryovault.science.tomo.inputs import check_angles, check_usable
from cryovault.science.tomo.pair_alignment import pair_align
from cryovault.science.tomo.patch_tracking import track_patches
from cryovault.science.tomo.positioning import POSITIONING_SIZE, position_tomogram
from cryovault.science.tomo.stackops import bin_image
from cryovault.science.tomo.tilt_ctf import TiltCtfResult, estimate_tilt_ctf

PAIR_SIZE = 512
PATCH_SIZE = 1024


def binning_for(shape: tuple[int, int], target: int) -> int:
    """The smallest power-of-two binning that brings the larger side to ≤ `target` px."""
    b = 1
    while max(shape) / b > target:
        b *= 2
    return b


@dataclass
class AlignmentResult:
    """Everything `cryovault tomo align --json` reports (arrays per kept tilt, input order)."""

    tilt_angles_degrees: np.ndarray  # as given, all tilts
    dropped: list[DroppedTilt]
    kept_indices: np.ndarray
    alignment: TiltAlignment  # angles corrected by the Y tilt, axis refined
    input_axis_degrees: float
    x_tilt_degrees: float
    y_tilt_degrees: float
    accuracy_px: np.ndarray
    ctf: TiltCtfResult
    pixel_size_angstrom: float
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def axis_correction_degrees(self) -> float:
        return self.alignment.axis_degrees - self.input_axis_degrees


def _binned(stack: np.ndarray, indices: np.ndarray, factor: int, workers: int) -> np.ndarray:
    chunks = run_parallel(lambda a, b: [bin_image(stack[int(indices[i])], factor)
                                        for i in range(a, b)], len(indices), workers)
    return np.stack([image for chunk in chunks for image in chunk])


def align_series(stack: np.ndarray, angles_degrees: np.ndarray, pixel_size_angstrom: float,
                 axis_degrees: float, *, search: CtfSearch | None = None,
                 workers: int = 2) -> AlignmentResult:
    """Align a raw tilt series (n, ny, nx) recorded at `angles_degrees` (stage angles, the
    stack's section order, sorted) around a tilt axis of about `axis_degrees`."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t0
        now = time.perf_counter()
        timings[name] = now - t0
        t0 = now

    angles = check_angles(angles_degrees, stack.shape[0], source="the tilt angles")
    dropped = find_bad_tilts(stack, angles, pixel_size_angstrom, axis_degrees=axis_degrees)
    dropped_set = {d.index for d in dropped}
    kept = np.array([i for i in range(len(angles)) if i not in dropped_set], dtype=int)
    check_usable(len(kept))
    lap("clean")

    shape = stack.shape[-2:]
    b_pair = binning_for(shape, PAIR_SIZE)
    pair_stack = _binned(stack, kept, b_pair, workers)
    alignment, _scores = pair_align(pair_stack, angles[kept], axis_degrees, b_pair,
                                    workers=workers)
    lap("pair alignment")

    b_pos = binning_for(shape, POSITIONING_SIZE)
    pos_stack = np.stack([bin_image(image, b_pos // b_pair) for image in pair_stack])
    positioning = position_tomogram(pos_stack, alignment, b_pos, pixel_size_angstrom)
    alignment.angles_degrees = angles[kept] + positioning.y_tilt_degrees
    lap("positioning")

    b_patch = binning_for(shape, PATCH_SIZE)
    patch_stack = (pair_stack if b_patch == b_pair
                   else _binned(stack, kept, b_patch, workers))
    tracked = track_patches(patch_stack, alignment, binning=b_patch,
                            pixel_size_angstrom=pixel_size_angstrom)
    alignment = tracked.alignment
    lap("patch tracking")

    kept_stack = stack if len(kept) == len(stack) else stack[kept]  # (a copy)
    ctf = estimate_tilt_ctf(kept_stack, alignment.angles_degrees, pixel_size_angstrom,
                            alignment.axis_degrees, search=search)
    lap("ctf")
    return AlignmentResult(
        tilt_angles_degrees=np.asarray(angles_degrees, dtype=float), dropped=dropped,
        kept_indices=kept, alignment=alignment, input_axis_degrees=float(axis_degrees),
        x_tilt_degrees=positioning.x_tilt_degrees, y_tilt_degrees=positioning.y_tilt_degrees,
        accuracy_px=np.asarray(tracked.residual_px, dtype=float), ctf=ctf,
        pixel_size_angstrom=float(pixel_size_angstrom), timings_s=timings)


def rotation_degrees(alignment: TiltAlignment) -> np.ndarray:
    """Per tilt, the in-plane rotation the .xf undoes: the refined axis plus the tilt's own
    rotation error (degrees, counter-clockwise from +y)."""
    return alignment.axis_degrees + alignment.rotations_degrees
