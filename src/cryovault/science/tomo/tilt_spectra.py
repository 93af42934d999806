"""Power spectra of one tilt, in strips parallel to the tilt axis (for CTF per tilt).

On a tilted specimen the defocus changes linearly across the tilt axis. Where an image point r
(pixels, relative to the image centre) lies d = r · n pixels from the axis (n = the axis normal,
geometry.axis_normal), a series of correct handedness has the defocus

    Δf(r) = Δf_axis − d · tan θ · pixel size            (Å; DESIGN.md, geometry.py)

so a tile at distance d is expected to be `−d tan θ · px` Å further from focus than the axis
("expected offset" below, for handedness +1; it is the opposite for an inverted series).

1. tiles of `tile` pixels on a regular grid (step tile/2, overlapping by half, when that grid
   has at most `max_tiles` tiles, step tile otherwise); where there are still more than
   `max_tiles`, an even subset spread over the distance to the axis (the CTF needs only so
   much of the image, and the time budget of the alignment is fixed whatever the detector
   size);
2. tiles grouped in strips of distance to the axis (at most `max_strips`);
3. each tile's periodogram (mean removed, Tukey taper, as power_spectrum.py) summed by strip;
   each strip's mean periodogram is normalised as power_spectrum.normalised_spectrum does
   (amplitude, box background subtracted, divided by the local RMS, clipped at ±3);
4. `combined_spectrum` stretches each strip's normalised spectrum radially so that its Thon
   rings fall where those of the axis defocus are, and averages them: one spectrum of the tilt
   with the gradient compensated, for the quality measures of ctf_quality.py.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from cryovault.science.ctf_model import electron_wavelength_angstrom
from cryovault.science.errors import ScienceInputError
from cryovault.science.fourier import tukey
from cryovault.science.power_spectrum import NormalisedSpectrum, SpectrumGrid, full_centred
from cryovault.science.tomo.geometry import axis_normal, image_centre


@dataclass
class StripSpectra:
    """The normalised spectra (k, tile, tile) of k strips of one tilt (centred, as
    power_spectrum.NormalisedSpectrum.normalised), each strip's expected defocus offset in Å
    for handedness +1 (`offsets_angstrom`, −d tan θ · px at the strip's mean distance d), its
    number of tiles, and the spectrum grid."""

    grid: SpectrumGrid
    normalised: np.ndarray
    offsets_angstrom: np.ndarray
    tile_counts: np.ndarray
    #: per strip, (2, m): defocus offsets (Å, handedness +1) of the strip's pixels from the
    #: strip's own and their weights (summing to 1); empty: no spread
    spreads: tuple[np.ndarray, ...] = ()
    _envelopes: dict[tuple[int, float], tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, repr=False, compare=False)
    #: (wavelength, spectra (k, end), envelopes (k, end)) over the first `end` pixels of
    #: half_plane(grid) (not copied by dataclasses.replace: it depends on `normalised`)
    _sorted: list[tuple[float, np.ndarray, np.ndarray]] = field(
        default_factory=list, init=False, repr=False, compare=False)

    def sorted_values(self, end: int, wavelength: float) -> tuple[np.ndarray, np.ndarray]:
        """The strips' spectra (k, end) (float32) and ring envelopes (k, end) at the first
        `end` pixels of `half_plane(grid)` (sorted by g²), computed once per tilt (and again
        only when a longer prefix is asked for)."""
        if (not self._sorted or self._sorted[0][0] != wavelength
                or self._sorted[0][1].shape[1] < end):
            plane = half_plane(self.grid)
            # at least out to Nyquist (every fit of tilt_ctf.py), so that it is done once
            end = max(end, plane.nyquist_end)
            index = plane.flat[:end]
            values = self.normalised.reshape(len(self.normalised), -1)[:, index]
            envelopes = np.stack([self.envelope(k, plane.g2[:end], wavelength)
                                  for k in range(len(self.normalised))]).astype(np.float32)
            self._sorted[:] = [(wavelength, values.astype(np.float32, copy=False), envelopes)]
        _, values, envelopes = self._sorted[0]
        return values[:, :end], envelopes[:, :end]

    def envelope(self, k: int, g2: np.ndarray, wavelength: float) -> np.ndarray:
        """The damping of strip k's Thon rings at squared frequencies `g2` (1/Å²) by the
        defocus spread inside it: a spectrum averaging defocus Δf + δ over the spread has the
        rings −cos 2χ(Δf) · Σ w cos(2πλg²δ) (the spread being centred, its sine term is
        dropped); negative beyond the first zero, where the rings are inverted."""
        if not self.spreads:
            return np.ones(np.shape(g2))
        key = (k, wavelength)
        if key not in self._envelopes:  # sampled once over the grid's g² range
            delta, weight = self.spreads[k]
            # ~70 samples a period for spreads up to ±1500 Å at 1 Å/px (300 kV): linear
            # interpolation is good to ~1e-3
            samples = np.linspace(0.0, float(self.grid.g2.max()), 1024)
            curve = np.cos(2.0 * math.pi * wavelength * samples[:, None] * delta[None, :])
            self._envelopes[key] = (samples, curve @ weight)
        samples, curve = self._envelopes[key]
        return np.interp(g2, samples, curve)

    @property
    def weights(self) -> np.ndarray:
        """Relative weight of each strip in a fit: √(tiles) (the contrast-to-noise of a
        normalised spectrum grows with the square root of the tiles averaged)."""
        return np.sqrt(self.tile_counts / max(float(self.tile_counts.max()), 1.0))


@dataclass(frozen=True)
class HalfPlane:
    """The pixels of a grid's half plane (`grid.half`) sorted by g²: the tile side, flat
    indices into the tile × tile grid, g² (1/Å²), cos 2α and sin 2α (float32), the radius
    and the position relative to the centre (spectrum pixels). An annulus g_low ≤ g ≤ g_high
    is then a contiguous range (`span`)."""

    tile: int
    flat: np.ndarray
    g2: np.ndarray
    cos2a: np.ndarray
    sin2a: np.ndarray
    radius_px: np.ndarray
    #: row and column relative to the centre [tile/2, tile/2] (spectrum pixels, float64)
    dy: np.ndarray
    dx: np.ndarray

    @property
    def nyquist_end(self) -> int:
        """The number of pixels within the Nyquist circle (radius tile / 2)."""
        return int(np.searchsorted(self.radius_px, 0.5 * self.tile, side="right"))

    def span(self, g_low: float, g_high: float) -> tuple[int, int]:
        """[start, end) of the pixels with g_low² ≤ g² ≤ g_high²."""
        start = int(np.searchsorted(self.g2, g_low * g_low, side="left"))
        end = int(np.searchsorted(self.g2, g_high * g_high, side="right"))
        return start, max(start, end)


_HALF_PLANES: dict[tuple[int, float], HalfPlane] = {}


def half_plane(grid: SpectrumGrid) -> HalfPlane:
    """The grid's half plane sorted by g² (HalfPlane), built once per tile size and pixel
    size (the last few kept)."""
    key = (int(grid.tile), float(grid.pixel_size))
    plane = _HALF_PLANES.get(key)
    if plane is None:
        flat = np.flatnonzero(grid.half)
        g2 = grid.g2.ravel()[flat]
        order = np.argsort(g2, kind="stable")
        flat = flat[order]
        plane = HalfPlane(key[0], flat, g2[order], grid.cos2a.ravel()[flat].astype(np.float32),
                          grid.sin2a.ravel()[flat].astype(np.float32),
                          grid.radius_px.ravel()[flat],
                          (flat // grid.tile - grid.tile // 2).astype(np.float64),
                          (flat % grid.tile - grid.tile // 2).astype(np.float64))
        if len(_HALF_PLANES) >= 4:
            _HALF_PLANES.pop(next(iter(_HALF_PLANES)))
        _HALF_PLANES[key] = plane
    return plane


def tile_origins(shape: tuple[int, int], tile: int, axis_degrees: float,
                 max_tiles: int) -> tuple[np.ndarray, np.ndarray]:
    """([y0, x0] corners (m, 2) of the tiles used, their centres' distance d to the axis in
    pixels). An even subset over d when the grid holds more than `max_tiles`."""
    ny, nx = shape

    def starts(n: int, step: int) -> np.ndarray:
        count = (n - tile) // step + 1
        first = (n - (tile + (count - 1) * step)) // 2  # the grid centred on the image
        return first + step * np.arange(count)

    step = tile // 2
    if len(starts(ny, step)) * len(starts(nx, step)) > max_tiles:
        step = tile
    ys, xs = starts(ny, step), starts(nx, step)
    corners = np.array([(y, x) for y in ys for x in xs], dtype=np.int64)
    centre = image_centre(shape)
    normal = axis_normal(axis_degrees)
    mid = corners[:, ::-1] + (tile - 1) / 2.0 - centre  # [x, y] relative to the image centre
    distance = mid @ normal
    if len(corners) > max_tiles:
        order = np.argsort(distance, kind="stable")
        pick = order[np.unique(np.rint(np.linspace(0, len(order) - 1, max_tiles)).astype(int))]
        corners, distance = corners[pick], distance[pick]
    return corners, distance


def strip_power(image: np.ndarray, corners: np.ndarray, labels: np.ndarray, n_strips: int,
                tile: int, workers: int = 1) -> np.ndarray:
    """Summed periodograms (n_strips, tile, tile // 2 + 1) of the tiles at `corners` by strip
    label (each tile's mean removed, Tukey taper as in power_spectrum.tiled_power_spectrum).
    Raises ScienceInputError when a tile holds NaN or infinite values."""
    taper = np.outer(tukey(tile, 0.2), tukey(tile, 0.2)).astype(np.float32)
    out = np.zeros((n_strips, tile, tile // 2 + 1), dtype=np.float64)
    batch = 8
    buffer = np.empty((batch, tile, tile), dtype=np.float32)
    for start in range(0, len(corners), batch):
        block = buffer[:len(corners[start:start + batch])]
        for j, (y, x) in enumerate(corners[start:start + batch]):
            block[j] = image[y:y + tile, x:x + tile]
        block -= block.mean(axis=(1, 2), keepdims=True)
        block *= taper
        spectra = sfft.rfft2(block, workers=workers)
        power = spectra.real**2
        power += spectra.imag**2
        batch_labels = labels[start:start + batch]
        for label in np.unique(batch_labels):  # one float64 sum per strip and batch
            out[label] += power[batch_labels == label].sum(axis=0)
    # a NaN or infinite pixel makes its tile's mean, hence its whole periodogram, NaN
    if not np.isfinite(out).all():
        raise ScienceInputError("the stack contains NaN or infinite values")
    return out


def normalise_power(power: np.ndarray, grid: SpectrumGrid) -> np.ndarray:
    """The normalised residual of an rfft2-layout power spectrum, as in
    power_spectrum.normalised_spectrum (centred, tile × tile, float32). For an even tile only
    the half plane kx ≥ −2 spectrum pixels is filtered (exactly: the boxes there stay inside
    the columns filtered) and the other half filled by Friedel symmetry (the spectrum's
    Nyquist column, kx = −tile/2, is 0): every reader looks at the half plane (`grid.half`)."""
    amplitude = full_centred(np.sqrt(power).astype(np.float32))
    tile = grid.tile
    centre = tile // 2
    box = max(9, tile // 16) | 1
    start = centre - 2 - 2 * (box // 2) if tile % 2 == 0 else 0
    start = max(start, 0)
    part = amplitude[:, start:]
    background = ndimage.uniform_filter(part, size=box, mode="reflect")
    residual = part - background
    rms = np.sqrt(ndimage.uniform_filter(residual**2, size=box, mode="reflect"))
    floor = max(float(np.mean(rms)) * 1e-6, 1e-30)
    normalised = np.zeros((tile, tile), dtype=np.float32)
    normalised[:, start:] = np.clip(residual / np.maximum(rms, floor), -3.0, 3.0)
    if start > 0:  # N(−g) = N(g) for the columns −tile/2 < kx < −2
        normalised[1:, 1:centre - 2] = normalised[1:, centre + 3:][::-1, ::-1]
        normalised[0, 1:centre - 2] = normalised[0, centre + 3:][::-1]
        normalised[:, 0] = 0.0
    normalised[grid.radius_px < 1.5] = 0.0
    return normalised


def strip_spectra(image: np.ndarray, pixel_size: float, tilt_degrees: float,
                  axis_degrees: float, tile: int, max_tiles: int, max_strips: int,
                  grid: SpectrumGrid | None = None, workers: int = 1) -> StripSpectra:
    """The strips of one tilt (module docstring)."""
    corners, distance = tile_origins(image.shape, tile, axis_degrees, max_tiles)
    grid = grid or SpectrumGrid.of(tile, pixel_size)
    span = float(distance.max() - distance.min())
    n_strips = max(1, min(max_strips, int(math.ceil(span / (tile / 2.0))) + 1))
    edges = np.linspace(distance.min(), distance.max() + 1e-6, n_strips + 1)
    label = np.clip(np.searchsorted(edges, distance, side="right") - 1, 0, n_strips - 1)
    by_strip = np.argsort(label, kind="stable")  # a batch of tiles then spans few strips
    power = strip_power(image, corners[by_strip], label[by_strip], n_strips, tile, workers)
    counts = np.bincount(label, minlength=n_strips)
    tan_t = math.tan(math.radians(tilt_degrees))
    used = np.nonzero(counts)[0]
    spectra = np.stack([normalise_power(power[k] / counts[k], grid) for k in used])
    offsets = np.array([-float(distance[label == k].mean()) * tan_t * pixel_size for k in used])
    inside, inside_w = tile_spread(tile, axis_degrees)
    spreads = []
    for k in used:
        centres = distance[label == k] - distance[label == k].mean()
        delta = -(centres[:, None] + inside[None, :]).ravel() * tan_t * pixel_size
        spreads.append(np.stack([delta, np.tile(inside_w, len(centres)) / len(centres)]))
    return StripSpectra(grid, spectra, offsets, counts[used].astype(float), tuple(spreads))


@functools.lru_cache(maxsize=8)
def tile_spread(tile: int, axis_degrees: float, bins: int = 33) -> tuple[np.ndarray, np.ndarray]:
    """The distribution of the distance to the axis (pixels, from the tile's centre) over a
    tile's pixels weighted by the squared taper (what each pixel contributes to the
    periodogram): `bins` bin centres and weights summing to 1 (cached: read-only arrays)."""
    taper = tukey(tile, 0.2)
    coords = np.arange(tile) - (tile - 1) / 2.0
    normal = axis_normal(axis_degrees)
    d = (coords[None, :] * normal[0] + coords[:, None] * normal[1]).ravel()
    w = np.outer(taper**2, taper**2).ravel()
    edges = np.linspace(d.min(), d.max() + 1e-9, bins + 1)
    hist, _ = np.histogram(d, bins=edges, weights=w)
    centres, weights = 0.5 * (edges[:-1] + edges[1:]), hist / max(float(hist.sum()), 1e-30)
    centres.flags.writeable = False
    weights.flags.writeable = False
    return centres, weights


def combined_spectrum(strips: StripSpectra, mean_defocus: float, slope: float,
                      voltage_kv: float, cs_mm: float,
                      g_max: float = math.inf) -> NormalisedSpectrum:
    """The strips' spectra stretched radially onto the Thon rings of `mean_defocus` (the
    axis) and averaged with the strip weights, strip k having the defocus
    mean + slope · offset_k: each output frequency g samples the strip at the g' where
    χ(g'; Δf_k) = χ(g; Δf_axis) (the Cs term included). Only the half-plane `grid.half` out to
    radius tile/2 − 1 and `g_max` (1/Å) is filled (what ctf_quality and ctf_search read), zero
    elsewhere; the result's amplitude and background are the normalised spectrum and zero
    (only the normalised spectrum is measured)."""
    grid = strips.grid
    centre = grid.tile // 2
    radius = min(centre - 1.0, g_max / grid.dk)
    plane = half_plane(grid)
    end = int(np.searchsorted(plane.radius_px, radius, side="right"))
    flat = plane.flat[:end]
    lam = electron_wavelength_angstrom(voltage_kv)
    a2 = 0.5 * math.pi * cs_mm * 1e7 * lam**3
    g2 = plane.g2[:end]
    chi = math.pi * lam * mean_defocus * g2 - a2 * g2 * g2
    dy, dx = plane.dy[:end], plane.dx[:end]
    values = np.zeros(end)
    weights = strips.weights
    g2_floor = np.maximum(g2, 1e-30)
    coords = np.empty((2, end))
    for spectrum, offset, weight in zip(strips.normalised, strips.offsets_angstrom, weights,
                                        strict=True):
        a1 = math.pi * lam * max(mean_defocus + slope * offset, 1.0)
        if a2 > 0:
            u = (a1 - np.sqrt(np.maximum(a1 * a1 - 4.0 * a2 * chi, 0.0))) / (2.0 * a2)
        else:
            u = chi / a1
        factor = np.sqrt(np.maximum(u, 0.0) / g2_floor)
        np.multiply(dy, factor, out=coords[0])
        np.multiply(dx, factor, out=coords[1])
        coords += centre
        values += weight * ndimage.map_coordinates(spectrum, coords, order=1, mode="constant",
                                                   cval=0.0)
    normalised = np.zeros((grid.tile, grid.tile))
    normalised.ravel()[flat] = values / max(float(weights.sum()), 1e-30)
    return NormalisedSpectrum(grid, normalised, np.zeros_like(normalised), normalised)
