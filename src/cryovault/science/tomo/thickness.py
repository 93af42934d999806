"""Sample thickness from a reconstruction: the extent along z of the slab's structure.

Inside the slab the reconstruction holds the specimen's detail; outside it only noise and
missing-wedge streaks. The measure is the local variance of the volume band-passed in x and y
(fine detail: structure, not the slab's slowly varying background), averaged over lateral tiles:
a profile along z per tile. Each profile is smoothed along z, its floor (the quiet region
outside the slab) and its plateau (inside) are found, and the slab's edges are where the profile
crosses half-way between them (the outermost crossings, linear interpolation between voxels).
The thickness is measured on the profile averaged over all tiles (its edges `z_top`,
`z_bottom`: the slab's envelope in the volume, what a volume must contain). Its uncertainty
combines the standard error from the robust spread of the tiles' own thicknesses, the difference
between that envelope and the tiles' median (the local thickness: they differ for a slab tilted
in the volume, or uneven) and half a voxel (the discretisation).

z positions (`z_top`, `z_bottom`) are volume z indices (voxels, z_top < z_bottom).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cryovault.science.errors import ScienceInputError

#: lateral tiles per axis for the uncertainty (at most; fewer so that tiles are at least
#: MIN_TILE_PX wide, and at least 2)
TILES = 4
MIN_TILE_PX = 24
#: band-pass in x and y (voxels): Gaussian sigmas of the detail kept
_FINE_SIGMA, _COARSE_SIGMA = 0.7, 4.0
#: smoothing of the z profiles (voxels)
_PROFILE_SIGMA = 1.5


@dataclass(frozen=True)
class Thickness:
    """Slab thickness (nm) with its uncertainty (nm), and the edges of its envelope as z
    indices (voxels)."""

    nm: float
    uncertainty_nm: float
    z_top: float
    z_bottom: float

    @property
    def centre(self) -> float:
        """z index of the slab's centre (voxels)."""
        return (self.z_top + self.z_bottom) / 2.0


def variance_profiles(volume: np.ndarray, tiles: int = TILES) -> np.ndarray:
    """(tiles², nz): local variance of the x-y band-passed volume, averaged over each lateral
    tile (the central 90% of the field, away from edge artefacts)."""
    vol = np.asarray(volume, dtype=np.float32)
    nz, ny, nx = vol.shape
    detail = (ndimage.gaussian_filter(vol, (0, _FINE_SIGMA, _FINE_SIGMA))
              - ndimage.gaussian_filter(vol, (0, _COARSE_SIGMA, _COARSE_SIGMA)))
    power = detail * detail
    y_edges = np.linspace(0.05 * ny, 0.95 * ny, tiles + 1).round().astype(int)
    x_edges = np.linspace(0.05 * nx, 0.95 * nx, tiles + 1).round().astype(int)
    profiles = [power[:, y_edges[i]:y_edges[i + 1], x_edges[j]:x_edges[j + 1]].mean(axis=(1, 2))
                for i in range(tiles) for j in range(tiles)
                if y_edges[i + 1] > y_edges[i] and x_edges[j + 1] > x_edges[j]]
    return np.array(profiles, dtype=float)


def slab_edges(profile: np.ndarray, near: tuple[float, float] | None = None
               ) -> tuple[float, float] | None:
    """(z_top, z_bottom): where a variance profile crosses half-way between its floor and its
    plateau on either side of the slab, or None when the profile shows no slab. With `near`
    (the whole field's edges, for a tile's noisier profile) the slab is every run above half
    that overlaps that span."""
    p = ndimage.gaussian_filter1d(np.asarray(profile, dtype=float), _PROFILE_SIGMA,
                                  mode="nearest")
    n = len(p)
    ordered = np.sort(p)
    floor = float(ordered[: max(1, n // 10)].mean())
    plateau = float(np.percentile(p, 90))
    if not plateau > floor * 1.5:
        return None
    half = floor + 0.5 * (plateau - floor)
    lo, hi = _slab_run(p >= half, p - floor, max(2, n // 10), near)
    if lo == 0 or hi == n - 1:
        return None  # the slab reaches the volume's end: no edge to measure

    def crossing(inside: int, outside: int) -> float:
        a, b = p[outside], p[inside]
        return outside + (inside - outside) * (half - a) / (b - a)

    return crossing(lo, lo - 1), crossing(hi, hi + 1)


def _slab_run(above: np.ndarray, weight: np.ndarray, bridge: int,
              near: tuple[float, float] | None = None) -> tuple[int, int]:
    """[first, last] index of the slab among the runs of `above`: the run holding the most
    weight, joined with neighbouring runs less than `bridge` voxels away (dips inside the slab
    do not split it; the noise that a reconstruction's ends can show, far from the slab, is not
    taken for it) — or, with `near`, every run overlapping that span."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], above.astype(np.int8), [0]))))
    runs = [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]
    if near is not None:
        overlapping = [r for r in runs if r[1] >= near[0] and r[0] <= near[1]]
        if overlapping:
            return overlapping[0][0], overlapping[-1][1]
    best = max(range(len(runs)), key=lambda k: float(weight[runs[k][0]:runs[k][1] + 1].sum()))
    lo, hi = runs[best]
    for a, b in runs[best + 1:]:
        if a - hi > bridge:
            break
        hi = b
    for a, b in reversed(runs[:best]):
        if lo - b > bridge:
            break
        lo = a
    return lo, hi


def measure_thickness(volume: np.ndarray, pixel_size_angstrom: float,
                      tiles: int = TILES) -> Thickness:
    """The slab's thickness in a reconstruction (nz, ny, nx) of voxels `pixel_size_angstrom`
    wide. Raises ScienceInputError when no slab with two edges inside the volume is found
    (the volume too thin for the specimen, or no specimen)."""
    vol = np.asarray(volume)
    if vol.ndim != 3 or min(vol.shape) < 8:
        raise ScienceInputError(f"a volume (nz, ny, nx) of at least 8 voxels per axis is needed "
                                f"to measure thickness, got shape {vol.shape}")
    if not (math.isfinite(pixel_size_angstrom) and pixel_size_angstrom > 0):
        raise ScienceInputError(f"pixel size {pixel_size_angstrom} Å: must be positive")
    if not np.all(np.isfinite(vol)):
        raise ScienceInputError("the volume contains NaN or infinite values")
    tiles = max(2, min(tiles, int(0.9 * min(vol.shape[1:]) // MIN_TILE_PX)))
    profiles = variance_profiles(vol, tiles)
    edges = slab_edges(profiles.mean(axis=0))
    if edges is None:
        raise ScienceInputError("no slab found in the reconstruction: its z profile has no "
                                "two edges inside the volume (reconstruct thicker?)")
    nm_per_voxel = pixel_size_angstrom / 10.0
    per_tile = np.array([e[1] - e[0] for e in (slab_edges(p, edges) for p in profiles)
                         if e is not None])
    voxels = float(edges[1] - edges[0])
    if len(per_tile) >= max(2, len(profiles) // 2):
        # robust spread (1.4826 × median absolute deviation) of the tiles' thicknesses, and
        # how far their median (the local thickness) is from the whole field's (a slab tilted
        # in the volume, or uneven, is thinner locally than its envelope)
        median = float(np.median(per_tile))
        spread = 1.4826 * float(np.median(np.abs(per_tile - median)))
        error = math.hypot(spread / math.sqrt(len(per_tile)), voxels - median)
    else:  # too few tiles show two edges: a coarse bound
        error = voxels / 4.0
    uncertainty = math.hypot(error, 0.5) * nm_per_voxel
    return Thickness(nm=voxels * nm_per_voxel, uncertainty_nm=uncertainty,
                     z_top=float(edges[0]), z_bottom=float(edges[1]))
