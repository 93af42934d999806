"""Beam-induced motion correction: global and patch alignment, aligned and dose-weighted sums.

Conventions (docs/architecture.md, "science/"):

- `shifts_px[f] = [x, y]` is the shift APPLIED to frame f (in the movie's pixels, x = column,
  y = row) to align it onto frame 0: aligned_f(x) = frame_f(x − shift_f). So `shifts_px[0]` is
  [0, 0], and content that drifted by +d in frame f gets the shift −d (as MotionCor2's table).
- Patch trajectories are the same shifts for the neighbourhood of each patch centre: the global
  shift plus the smoothed local residual.
- Drift (Å): total = the path length Σ |shift_f − shift_{f−1}| over all frames; a step f−1 → f
  counts as early when the cumulative exposure at the end of frame f is at most 4 e⁻/Å²
  (RELION's rlnAccumMotionEarly; frames 1-4 at 1 e⁻/Å²/frame), otherwise as late.

Method (two passes over the frames, so that the movie's spectra are never all in memory):
1. pass 1: the spectrum of every frame, mean removed and edges tapered (the edges stay on the
   detector while the content moves), cropped to the alignment frequency limit (where a
   B-factor of `b_factor_angstrom2` has fallen to 10 %; only the kept columns are transformed
   along y): the global stack (frame_spectra.py);
2. global alignment (alignment.py): each frame is cross-correlated with the sum of the other
   frames as currently aligned, filtered by exp(−B g²/4) and divided by the rotationally
   averaged power (so that the strong low-resolution contrast does not make the peak broad);
   coarse search on a Fourier-cropped copy, then refinement on finer levels in a small window
   around the current shifts, with a parabolic sub-pixel peak, until the largest update is below
   `tolerance_px`;
3. pass 2: every frame's spectrum again, shifted by its global shift and added to the aligned
   and dose-weighted sums (dose_weighting.py; cropped to the output size with `binning`), and
   cropped to the patch size (where `patch_b_factor_angstrom2` has fallen to 1/4) and cut into
   `patches` overlapping patches (`patch_size_factor` × the grid spacing, each tapered);
4. patches: each patch stack is aligned the same way, starting from the global shifts (the
   patches are cut from the unaligned frames; the Fourier shift moves the content and the
   patch's taper together), then smoothed in time and space (motion_patches.py).
Large arrays share one block of memory (workspace.py), and BLAS runs single-threaded while
Python threads split the work (threads.py): both matter as much as the arithmetic on a small
machine. `MotionResult.timings_s` says where the time went.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cryovault.science.alignment import align_pyramid, alignment_crop
from cryovault.science.dose_weighting import (
    SumAccumulator,
    critical_exposure,
    exposure_filter,
)
from cryovault.science.errors import ScienceInputError
from cryovault.science.fourier import fft_workers
from cryovault.science.frame_spectra import (
    FRAME_TAPER,
    CroppedTransform,
    FramePatches,
    FrameReader,
    FrameSource,
    PatchGrid,
    WeightedStacks,
    WholeFrames,
    stack_dims,
)
from cryovault.science.motion_patches import PatchTrajectory, patch_trajectories
from cryovault.science.workspace import Workspace, without_huge_page_advice

__all__ = ["EARLY_EXPOSURE_E_PER_A2", "FrameSource", "MotionResult", "MotionSettings",
           "PatchTrajectory", "align_movie", "critical_exposure", "drift_angstrom",
           "exposure_filter", "write_sums"]

EARLY_EXPOSURE_E_PER_A2 = 4.0
#: alignment uses frequencies up to where exp(−B g²/4) has fallen to 1/CROP_ATTENUATION
CROP_ATTENUATION = 10.0
#: the same for the patches (measured on the benchmark movie: 1/4 gives patch errors of
#: 0.19 px against 0.15 px at 1/10, for 0.6 × the work and memory)
PATCH_CROP_ATTENUATION = 4.0


@dataclass(frozen=True)
class MotionSettings:
    """Alignment settings. `patches` is (columns, rows); (1, 1) turns patch alignment off.
    Patches are `patch_size_factor` times the grid spacing wide, so neighbours overlap."""

    patches: tuple[int, int] = (5, 5)
    b_factor_angstrom2: float = 150.0
    patch_b_factor_angstrom2: float = 150.0
    max_iterations: int = 12
    tolerance_px: float = 0.01
    patch_tolerance_px: float = 0.1
    patch_size_factor: float = 1.5
    patch_smoothing: float = 50.0
    max_shift_angstrom: float = 200.0
    binning: int = 1
    voltage_kv: float = 300.0
    pre_exposure_e_per_angstrom2: float = 0.0


@dataclass
class MotionResult:
    """Outcome of `align_movie`; `to_json` gives the public keys of `cryovault motion --json`."""

    pixel_size_angstrom: float
    dose_per_frame_e_per_angstrom2: float
    shifts_px: np.ndarray  # (n, 2) [x, y]
    patches: list[PatchTrajectory]
    total_drift_angstrom: float
    early_drift_angstrom: float
    late_drift_angstrom: float
    aligned_sum: np.ndarray = field(repr=False)
    dose_weighted_sum: np.ndarray = field(repr=False)
    output_pixel_size_angstrom: float = 0.0
    iterations: int = 0
    output: dict[str, str] = field(default_factory=dict)
    #: wall time of each step of `align_movie` (pass 1, global alignment, pass 2, patch
    #: alignment), for benchmarks
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        def r(v: float) -> float:
            return round(float(v), 4)

        return {
            "pixel_size_angstrom": r(self.pixel_size_angstrom),
            "shifts_px": [[r(x), r(y)] for x, y in self.shifts_px],
            "patch_shifts_px": [
                {"centre": [r(p.centre_px[0]), r(p.centre_px[1])],
                 "shifts": [[r(x), r(y)] for x, y in p.shifts_px]}
                for p in self.patches
            ],
            "total_drift_angstrom": r(self.total_drift_angstrom),
            "early_drift_angstrom": r(self.early_drift_angstrom),
            "late_drift_angstrom": r(self.late_drift_angstrom),
            "output": dict(self.output),
        }


def drift_angstrom(shifts_px: np.ndarray, pixel_size_angstrom: float, dose_per_frame: float,
                   pre_exposure: float = 0.0) -> tuple[float, float, float]:
    """(total, early, late) path lengths in Å (definition in the module docstring)."""
    steps = np.linalg.norm(np.diff(shifts_px, axis=0), axis=1) * pixel_size_angstrom
    exposure_end = pre_exposure + dose_per_frame * np.arange(2, len(shifts_px) + 1)
    early = float(steps[exposure_end <= EARLY_EXPOSURE_E_PER_A2 + 1e-9].sum())
    total = float(steps.sum())
    return total, early, total - early


def _check(frames: FrameSource | Sequence[np.ndarray] | np.ndarray, pixel_size: float,
           dose: float, settings: MotionSettings) -> np.ndarray:
    """Validate the inputs; return frame 0."""
    n = len(frames)
    if n < 2:
        raise ScienceInputError(f"the movie has {n} frame(s); motion correction needs at least 2")
    if not (math.isfinite(pixel_size) and 0.05 <= pixel_size <= 50):
        raise ScienceInputError(f"pixel size {pixel_size!r} Å is not plausible (0.05-50 Å)")
    if not (math.isfinite(dose) and dose > 0):
        raise ScienceInputError(f"dose per frame {dose!r} e⁻/Å² must be > 0")
    if settings.binning < 1:
        raise ScienceInputError("binning must be a positive integer")
    first = np.asarray(frames[0])
    if first.ndim != 2:
        raise ScienceInputError(f"frames must be 2-D images, got shape {first.shape}")
    if min(first.shape) < 64:
        raise ScienceInputError(f"frames of {first.shape[1]}×{first.shape[0]} pixels are too "
                                "small to align (at least 64×64)")
    return first


def align_movie(frames: FrameSource | Sequence[np.ndarray] | np.ndarray,
                pixel_size_angstrom: float, dose_per_frame_e_per_angstrom2: float,
                settings: MotionSettings | None = None, *,
                workers: int | None = None) -> MotionResult:
    """Align `frames` (n ≥ 2 frames of equal shape, gain- and defect-corrected) and return the
    shifts, the patch trajectories, the drift and the two sums (see the module docstring)."""
    with without_huge_page_advice():
        return _align_movie(frames, pixel_size_angstrom, dose_per_frame_e_per_angstrom2,
                            settings or MotionSettings(), workers or fft_workers())


def _align_movie(frames: FrameSource | Sequence[np.ndarray] | np.ndarray,
                 pixel_size_angstrom: float, dose_per_frame_e_per_angstrom2: float,
                 settings: MotionSettings, workers: int) -> MotionResult:
    px = float(pixel_size_angstrom)
    dose = float(dose_per_frame_e_per_angstrom2)
    reader = FrameReader(frames, _check(frames, px, dose, settings))
    n = len(frames)
    full = reader.shape
    align_shape = alignment_crop(full, px, settings.b_factor_angstrom2, CROP_ATTENUATION)
    cols, rows = settings.patches
    patch_plan: tuple[PatchGrid, tuple[int, int]] | None = None
    grid_error: ScienceInputError | None = None
    if cols * rows > 1:
        try:
            patch_plan = _patch_plan(full, align_shape, px, settings)
        except ScienceInputError as exc:  # reported after the frames have been checked
            grid_error = exc

    clock = _Clock()
    global_bytes = 8 * math.prod(stack_dims(n, 1, align_shape))
    patch_bytes = 0 if patch_plan is None else 8 * math.prod(
        stack_dims(n, len(patch_plan[0].starts), patch_plan[0].size))
    # the global stack and its pyramid's crops (≤ 1/4 of it), then the patch stacks
    workspace = Workspace(max(global_bytes * 5 // 4, patch_bytes))
    # -- pass 1: the global stack, and the global alignment ----------------------------------
    whole = WholeFrames(n, full, align_shape, px, settings.b_factor_angstrom2, workspace)
    transform = CroppedTransform(full, align_shape, workers, taper=FRAME_TAPER)
    for f in range(n):
        frame = reader.read(f)
        spectrum = transform(frame)
        if not np.isfinite(spectrum[0, 0]):  # a NaN or ±inf anywhere reaches every frequency
            raise ScienceInputError(f"frame {f} contains NaN or infinite values")
        whole.add(f, spectrum)
    del transform
    if grid_error is not None:
        raise grid_error
    clock.lap("pass 1: read, transform, crop")
    shifts, iterations = align_pyramid(
        whole.stacks.level(), np.zeros((1, n, 2)), tolerance_px=settings.tolerance_px,
        max_iterations=settings.max_iterations, max_shift_px=settings.max_shift_angstrom / px,
        search_first=True, workers=workers, scratch=workspace.tail(global_bytes, np.complex64))
    shifts = shifts[0]
    del whole
    clock.lap("global alignment")

    # -- pass 2: the sums and the patch stacks, and the patch alignment ----------------------
    sums = SumAccumulator(n, full, px, dose, binning=settings.binning,
                          voltage_kv=settings.voltage_kv,
                          pre_exposure=settings.pre_exposure_e_per_angstrom2, workers=workers)
    patches_in = None
    needed = sums.shape
    if patch_plan is not None:
        grid, patch_shape = patch_plan
        patches_in = FramePatches(n, full, patch_shape, grid, px,
                                  settings.patch_b_factor_angstrom2, workers, workspace)
        needed = (max(needed[0], patch_shape[0]), max(needed[1], patch_shape[1]))
    transform = CroppedTransform(full, needed, workers)
    for f in range(n):
        spectrum = transform(reader.read(f))
        if patches_in is not None:
            patches_in.add(f, spectrum)
        sums.add(spectrum, shifts[f])
    del transform
    aligned_sum, dw_sum = sums.sums()
    del sums
    clock.lap("pass 2: read, transform, sums, patches")
    patches: list[PatchTrajectory] = []
    if patches_in is not None:
        patches = _align_patches(patches_in.stacks, patches_in.grid, shifts, full, px,
                                 settings, workers)
        clock.lap("patch alignment")
    total, early, late = drift_angstrom(shifts, px, dose, settings.pre_exposure_e_per_angstrom2)
    return MotionResult(px, dose, shifts, patches, total, early, late, aligned_sum, dw_sum,
                        px * settings.binning, iterations, timings_s=clock.laps)


class _Clock:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now


def _patch_plan(full: tuple[int, int], align_shape: tuple[int, int], px: float,
                settings: MotionSettings) -> tuple[PatchGrid, tuple[int, int]]:
    """The patch grid and the size the patches are cut at: the patch crop, or the global
    one when the patches would be too small there."""
    cols, rows = settings.patches
    patch_shape = alignment_crop(full, px, settings.patch_b_factor_angstrom2,
                                 PATCH_CROP_ATTENUATION)
    patch_shape = (min(patch_shape[0], align_shape[0]), min(patch_shape[1], align_shape[1]))
    try:
        return PatchGrid.plan(patch_shape, cols, rows, settings.patch_size_factor), patch_shape
    except ScienceInputError:
        return PatchGrid.plan(align_shape, cols, rows, settings.patch_size_factor), align_shape


def _align_patches(stacks: WeightedStacks, grid: PatchGrid, shifts: np.ndarray,
                   full: tuple[int, int], px: float, settings: MotionSettings,
                   workers: int) -> list[PatchTrajectory]:
    level = stacks.level()
    ratio_x, ratio_y = (float(v) for v in level.pixel_ratio)
    initial = np.repeat(shifts[None], len(grid.starts), axis=0)
    measured, _ = align_pyramid(level, initial, tolerance_px=settings.patch_tolerance_px,
                                max_iterations=settings.max_iterations,
                                max_shift_px=settings.max_shift_angstrom / px,
                                search_first=False, workers=workers)
    ph, pw = grid.size
    centres = grid.centres() * np.array([ratio_x, ratio_y])
    return patch_trajectories(shifts, measured, centres, (pw * ratio_x, ph * ratio_y), full,
                              grid.cols, grid.rows, settings.patch_smoothing)


def write_sums(result: MotionResult, out: Path) -> dict[str, str]:
    """Write the aligned sum to `out` and the dose-weighted sum beside it (`<stem>_DW.mrc`),
    MRC float32 with the output pixel size; record and return the paths."""
    import mrcfile

    dw = out.with_name(f"{out.stem}_DW{out.suffix or '.mrc'}")
    for path, image in ((out, result.aligned_sum), (dw, result.dose_weighted_sum)):
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(image, dtype=np.float32))
            mrc.voxel_size = result.output_pixel_size_angstrom
    result.output = {"aligned_sum": str(out), "dose_weighted_sum": str(dw)}
    return result.output
