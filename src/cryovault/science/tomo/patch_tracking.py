"""Marker-free alignment by patch tracking (issue #10, step 4).

Patches are laid on a grid in the aligned frame of the central tilt (the one nearest 0°) and
tracked tilt to tilt from there outward on each side: the patch of the previous tilt (centred
on the trajectory) is correlated with the patch of the next tilt, sampled around the position
that the trajectory's current 3-D estimate predicts, and stretched along x by cos θ_next /
cos θ_prev so that the specimen looks the same in both (as in pair alignment). Patches that
would leave the image or correlate poorly end their trajectory on that side. The raw positions
of all trajectories then go to the least-squares fit of patch_solve.py, which refines the tilt
axis, per-tilt rotations, magnifications and shifts; the fitted 3-D points are then tracked
again with predictions from the fitted model (`follow_passes`) and the model refitted. The
per-tilt RMS residual of the last fit is the alignment accuracy.

Thick specimens: a patch sees content from the whole depth of the slab, and between two tilts
content at depth z moves by z κ relative to the patch's point (κ = cos θ_prev (tan θ − tan θ_prev)
in the stretched patch), so each patch's correlation is a ridge along x of length T κ (T the
slab's thickness; 25 px at bin 2 for a 140-nm slab at 2.7 Å/px between 51° and 57°). Its highest
point lies at the depth of the patch's strongest feature, which changes from tilt to tilt where
features slide out of the window: the trajectory then jumps in depth, the jump accumulates along
the chain, and the fit, which gives each trajectory a single 3-D point, turns it into shift errors
of the high tilts (16 px at bin 1 at ±60° on that series, where two dropped tilts leave 6° steps).
The correlation maps are therefore convolved along x with a box of length T κ for each step
(PatchCorrelator.displacement): the peak moves to the ridge's middle, the slab's mid-depth under
the patch, the same point from tilt to tilt. T is the caller's `thickness_angstrom` or is
measured from the parallax between the central tilt and its neighbours about 6° and 9° away
(patch_correlate.depth_extent; it reads 10–25% low on simulated slabs, which is harmless).
On the simulated 2048² series at 2.7 Å/px (140-nm slab, 1024² working images) the shifts come out
within 0.7 px RMS at bin 1 (≈ 1.8 Å; the worst tilt 1.8 px), on the 4096² one at 1.35 Å/px
within 1.3 px RMS (≈ 1.8 Å; worst 3.9 px).

Coordinates: the alignment (geometry.TiltAlignment) is at bin 1; the stack may be binned by
`binning` (stackops.bin_stack), whose centre-relative coordinates are those of bin 1 divided by
the binning. Residuals are reported in bin-1 pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cryovault.science.errors import ScienceInputError
from cryovault.science.tomo.geometry import TiltAlignment
from cryovault.science.tomo.patch_correlate import (
    PatchCorrelator,
    footprint_inside,
    measure_offsets,
    slab_thickness,
)
from cryovault.science.tomo.patch_solve import PatchFit, PatchObservations, fit_patch_model

LOWPASS = 0.18  # default low-pass of the patch correlation, cycles per working pixel
SMEAR_LIMIT = 0.6  # the depth smear of a step is at most this fraction of the patch size


@dataclass
class PatchTrackingResult:
    """Outcome of `track_patches`.

    alignment: the refined alignment (bin 1; mean rotation error 0, origin kept as close as
    possible to the starting alignment's); axis_correction_degrees: refined − starting tilt-axis
    angle; residual_px: per tilt (input order) the RMS distance between tracked and model patch
    positions in bin-1 pixels (NaN for a tilt where no patch was tracked); n_trajectories:
    trajectories used in the fit; n_observations: patch positions used in the fit."""

    alignment: TiltAlignment
    axis_correction_degrees: float
    residual_px: np.ndarray
    n_trajectories: int
    n_observations: int


def _working_forward(alignment: TiltAlignment, index: int,
                     binning: int) -> tuple[np.ndarray, np.ndarray]:
    m, s = alignment.forward(index)
    return m, s / binning


def _grid(alignment: TiltAlignment, centre: int, shape: tuple[int, int], size: int,
          spacing: float, binning: int) -> np.ndarray:
    """Patch centres (K, 2) on a grid in the aligned frame of tilt `centre` whose footprint
    lies inside that tilt's raw image."""
    ny, nx = shape
    half = math.hypot(nx, ny) / 2.0
    count = int(half // spacing)
    ticks = np.arange(-count, count + 1) * spacing
    gx, gy = np.meshgrid(ticks, ticks)
    centres = np.stack([gx.ravel(), gy.ravel()], axis=1)
    m, s = _working_forward(alignment, centre, binning)
    inside = footprint_inside(centres, np.ones(len(centres)), size, m, s, shape)
    return centres[inside]


def _side_orders(angles: np.ndarray) -> tuple[int, list[list[int]]]:
    """The central tilt and the tilts on each side of it, from the centre outward."""
    centre = int(np.argmin(np.abs(angles)))
    order = np.argsort(angles, kind="stable")
    pos = int(np.nonzero(order == centre)[0][0])
    return centre, [list(order[pos + 1:]), list(order[:pos][::-1])]


def _predict_u(tracks: np.ndarray, theta: np.ndarray, target: float) -> np.ndarray:
    """Aligned x at tilt angle `target` (rad) of each trajectory from its (x, z) fitted to the
    tracked positions (ridge towards z = 0 while few tilts constrain it)."""
    seen = ~np.isnan(tracks[:, :, 0])
    u = np.where(seen, tracks[:, :, 0], 0.0)
    c = np.where(seen, np.cos(theta)[None, :], 0.0)
    s = np.where(seen, np.sin(theta)[None, :], 0.0)
    scc, scs, sss = (c * c).sum(1), (c * s).sum(1), (s * s).sum(1) + 0.02
    scu, ssu = (c * u).sum(1), (s * u).sum(1)
    det = scc * sss - scs**2
    x = (sss * scu - scs * ssu) / det
    z = (scc * ssu - scs * scu) / det
    return x * math.cos(target) + z * math.sin(target)


def _keep(cc: np.ndarray, usable: np.ndarray, min_correlation: float) -> np.ndarray:
    """Patches that correlate well: above `min_correlation` and 0.4 × the tilt's median."""
    if not usable.any():
        return usable
    return usable & (cc >= min_correlation) & (cc >= 0.4 * float(np.median(cc[usable])))


def _smear(thickness: float, previous: float, angle: float, size: int) -> float:
    """Length along x (samples of the stretched patch) over which content through a slab of
    `thickness` (working px) spreads between tilts at `previous` and `angle` (radians)."""
    kappa = math.cos(previous) * (math.tan(angle) - math.tan(previous))
    return min(thickness * abs(kappa), SMEAR_LIMIT * size)


def _chain(stack: np.ndarray, alignment: TiltAlignment, binning: int,
           correlator: PatchCorrelator, grid: np.ndarray, min_correlation: float,
           thickness: float, points: np.ndarray | None = None) -> np.ndarray:
    """Aligned positions (K, n, 2) of trajectories tracked tilt to tilt outward from the central
    tilt (NaN where untracked): each tilt's patch is found by correlation with the previous
    tilt's patch centred on the trajectory, searched around a predicted position.

    Without `points` the trajectories start on `grid` and the prediction comes from the (x, z)
    fitted to each trajectory so far (z shrunk towards 0 while few tilts constrain it). With
    fitted 3-D `points` (K, 3) at bin 1 the trajectories start at the points' positions and the
    prediction follows the points' model motion from the previous tracked position. The
    windowed correlation pulls each measurement slightly towards the prediction, which damps
    the wander of trajectories through a thick specimen; a good prediction (from `points`)
    keeps that pull from biasing the result. Each step's correlation maps are smeared along x
    over the parallax of a slab of `thickness` (working px; PatchCorrelator.displacement), so
    that trajectories follow the slab's mid-depth rather than jumping between features at
    different depths."""
    theta = np.radians(alignment.angles_degrees)
    centre, sides = _side_orders(alignment.angles_degrees)
    model = None
    if points is not None:
        model = np.stack([np.stack([points[:, 0] * math.cos(t) + points[:, 2] * math.sin(t),
                                    points[:, 1]], axis=1) for t in theta], axis=1) / binning
        grid = model[:, centre]
    aligned = np.full((len(grid), len(alignment), 2), np.nan)
    aligned[:, centre] = grid
    for side in sides:
        active = np.arange(len(grid))
        prev = centre
        for i in side:
            if model is None:
                pred = np.stack([_predict_u(aligned[active], theta, theta[i]),
                                 aligned[active, prev, 1]], axis=1)
            else:
                pred = model[active, i] + aligned[active, prev] - model[active, prev]
            offsets, cc, usable = measure_offsets(
                stack[prev], _working_forward(alignment, prev, binning), aligned[active, prev],
                stack[i], _working_forward(alignment, i, binning), pred,
                math.cos(theta[i]) / math.cos(theta[prev]), correlator,
                smear=_smear(thickness, theta[prev], theta[i], correlator.size))
            good = _keep(cc, usable, min_correlation)
            active = active[good]
            aligned[active, i] = pred[good] + offsets[good]
            prev = i
            if len(active) == 0:
                break
    return aligned


def _observations(aligned: np.ndarray, alignment: TiltAlignment, binning: int,
                  min_length: int) -> tuple[PatchObservations, int]:
    """Raw bin-1 positions of trajectories seen in at least `min_length` tilts."""
    seen = ~np.isnan(aligned[:, :, 0])
    keep = np.nonzero(seen.sum(axis=1) >= min_length)[0]
    tilt, traj, pos = [], [], []
    for new, k in enumerate(keep):
        for i in np.nonzero(seen[k])[0]:
            m, s = alignment.forward(int(i))
            tilt.append(i)
            traj.append(new)
            pos.append(m @ aligned[k, i] * binning + s)
    obs = PatchObservations(np.array(tilt, dtype=np.int64), np.array(traj, dtype=np.int64),
                            np.array(pos, dtype=float).reshape(-1, 2))
    return obs, len(keep)


def _check_inputs(stack: np.ndarray, alignment: TiltAlignment, binning: int,
                  size: int) -> None:
    if stack.ndim != 3:
        raise ScienceInputError(f"patch tracking needs a (tilts, y, x) stack, got {stack.ndim} "
                                "dimensions")
    if len(stack) != len(alignment):
        raise ScienceInputError(f"the stack has {len(stack)} tilts but the alignment "
                                f"{len(alignment)}")
    if len(stack) < 5:
        raise ScienceInputError(f"patch tracking needs at least 5 tilts, got {len(stack)}")
    if binning < 1:
        raise ScienceInputError(f"binning must be ≥ 1, got {binning}")
    if size < 16 or 2 * size > min(stack.shape[1:]):
        raise ScienceInputError(f"patch size {size} px must be ≥ 16 and at most half the "
                                f"image ({stack.shape[2]} × {stack.shape[1]} px)")
    if not np.all(np.isfinite(alignment.angles_degrees)) or np.any(
            np.abs(alignment.angles_degrees) >= 85.0):
        raise ScienceInputError("tilt angles must lie within ±85°")
    if not np.all(np.isfinite(stack)):
        raise ScienceInputError("the stack contains NaN or infinite values")


def track_patches(stack: np.ndarray, alignment: TiltAlignment, *, binning: int = 1,
                  patch_size_px: int | None = None, spacing_fraction: float = 0.75,
                  min_correlation: float = 0.05, min_length_fraction: float = 0.5,
                  fit_rotations: bool = True, fit_magnifications: bool = True,
                  follow_passes: int = 1, pixel_size_angstrom: float | None = None,
                  lowpass_angstrom: float = 60.0,
                  thickness_angstrom: float | None = None) -> PatchTrackingResult:
    """Refine `alignment` (bin 1) by tracking patches through `stack` (n, ny, nx), the kept
    tilts binned by `binning`, and fitting the projection model (module docstring).

    patch_size_px: patch side in pixels of `stack` (default: 3/32 of the smaller image side,
    at least 48, rounded to even); patches are `spacing_fraction` × their size apart.
    A trajectory is used when tracked in at least `min_length_fraction` of the tilts; a patch is
    dropped where its normalised correlation falls below `min_correlation` or 0.4 × the
    tilt's median. After the first tracking and fit, the fitted points are tracked again
    `follow_passes` times with predictions from the fitted model, and the model refitted.
    The correlation keeps spatial frequencies up to 0.18 cycles per pixel of `stack` (Gaussian
    σ), or, given the bin-1 `pixel_size_angstrom`, up to 1 / `lowpass_angstrom` where that is
    lower: at fine working pixels the CTF's first zero (~30 Å at 4 µm defocus) falls inside
    0.18 cycles/px, and neighbouring tilts' different defoci then degrade the correlation.
    thickness_angstrom: the specimen's thickness (needs `pixel_size_angstrom`), which sets the
    depth smear of the correlation (PatchCorrelator.displacement); by default it is measured
    from the parallax between the central tilt and its neighbours (patch_correlate.depth_extent).
    Raises ScienceInputError for unusable input or when fewer than 3 trajectories survive.
    """
    stack = np.asarray(stack, dtype=np.float32)
    if patch_size_px is None:
        patch_size_px = max(48, int(min(stack.shape[1:]) * 3 // 32) // 2 * 2)
    _check_inputs(stack, alignment, binning, patch_size_px)
    centre = int(np.argmin(np.abs(alignment.angles_degrees)))
    grid = _grid(alignment, centre, stack.shape[1:], patch_size_px,
                 max(8.0, spacing_fraction * patch_size_px), binning)
    if len(grid) < 3:
        raise ScienceInputError(
            f"patch tracking: patches of {patch_size_px} px do not fit in images of "
            f"{stack.shape[2]} × {stack.shape[1]} px (choose a smaller patch_size_px)")
    lowpass = LOWPASS
    if pixel_size_angstrom is not None:
        if not (math.isfinite(pixel_size_angstrom) and pixel_size_angstrom > 0):
            raise ScienceInputError(f"pixel size must be > 0 Å, got {pixel_size_angstrom}")
        lowpass = min(LOWPASS, pixel_size_angstrom * binning / lowpass_angstrom)
    if thickness_angstrom is None:
        thickness = slab_thickness(stack, alignment, binning, lowpass)
    elif pixel_size_angstrom is None:
        raise ScienceInputError("a specimen thickness needs the pixel size")
    elif not (math.isfinite(thickness_angstrom) and thickness_angstrom >= 0):
        raise ScienceInputError(f"thickness must be ≥ 0 Å, got {thickness_angstrom}")
    else:
        thickness = thickness_angstrom / (pixel_size_angstrom * binning)
    correlator = PatchCorrelator(patch_size_px, lowpass=lowpass, highpass=lowpass / 9.0)
    min_length = max(3, int(math.ceil(min_length_fraction * len(alignment))))

    def fit_tracks(aligned: np.ndarray, current: TiltAlignment) -> tuple[PatchObservations,
                                                                         PatchFit]:
        obs, n_traj = _observations(aligned, current, binning, min_length)
        if n_traj < 3:
            raise ScienceInputError(
                f"patch tracking kept only {n_traj} trajectories (need 3): the tilts do not "
                "correlate; check the coarse alignment and the dropped tilts")
        return obs, fit_patch_model(obs, current, centre, fit_rotations=fit_rotations,
                                    fit_magnifications=fit_magnifications,
                                    noise_px=0.5 * binning, gauge_reference=alignment)

    obs, fit = fit_tracks(_chain(stack, alignment, binning, correlator, grid, min_correlation,
                                 thickness), alignment)
    for _ in range(follow_passes):
        points = fit.points[np.unique(obs.trajectory[fit.kept])]
        tracks = _chain(stack, fit.alignment, binning, correlator, grid, min_correlation,
                        thickness, points)
        obs, fit = fit_tracks(tracks, fit.alignment)
    kept = fit.kept
    dist2 = (fit.residual_px[kept] ** 2).sum(axis=1)
    tilt = obs.tilt[kept]
    counts = np.bincount(tilt, minlength=len(alignment))
    sums = np.bincount(tilt, weights=dist2, minlength=len(alignment))
    residual = np.full(len(alignment), np.nan)
    residual[counts > 0] = np.sqrt(sums[counts > 0] / counts[counts > 0])
    return PatchTrackingResult(
        alignment=fit.alignment,
        axis_correction_degrees=fit.alignment.axis_degrees - alignment.axis_degrees,
        residual_px=residual,
        n_trajectories=int(len(np.unique(obs.trajectory[kept]))),
        n_observations=int(kept.sum()),
    )
