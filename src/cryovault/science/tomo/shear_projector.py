"""The parallel-beam projector A of `sirt` and its exact transpose, for blocks of slices.

After alignment the tilt axis is the image's y axis (geometry.py), so image row y of tilt θ is
the 1-D projection of the volume's slice y:  u = x cos θ + z sin θ, with x, z and the detector
coordinate u in pixels relative to the centres ((nx − 1) / 2, (nz − 1) / 2 − z_centre,
(n_det − 1) / 2). Every slice uses the same operator, so slices are processed as a batch (the
last, contiguous axis of every array: "rows").

A (line integrals in voxel units, 1 / cos θ per row of the volume crossed, as in Joseph's
method) is applied in two linear-interpolation steps:

1. shear: Q(x′) = Σ_z V_z(x′ − z tan θ), each volume row shifted along x by z tan θ with linear
   interpolation. A linear-interpolation shift by d = n + f is the circulant filter
   e^{−2πikn/L} ((1 − f) + f e^{−2πik/L}) on an x axis zero-padded to L (no wrap-around), so the
   sum over z is, for every spatial frequency k, one matrix product (tilts × nz) · (nz × rows):
   BLAS does the work, exactly the same numbers as shifting rows. The complex product is done
   as real ones, Re F · V and Im F · V. Two symmetries halve them, each up to float32
   rounding: tilts at exactly ±θ have conjugate filters (one product serves both), and when
   the z grid is symmetric about 0 (z_centre 0) so do the rows z and −z, so with the even and
   odd parts V_z ± V_−z the product is Re F · (V_z + V_−z) + i Im F · (V_z − V_−z) over half
   the depth;
2. detector: sample x′ of Q covers the interval cos θ wide around u = x′ cos θ, spread over the
   detector with the linear-interpolation (triangle) weights averaged over that interval (a
   sparse matrix, ≤ 4 entries per sample). Samples are cos θ apart, so P(u) = Q(u / cos θ) /
   cos θ for smooth Q and exactly so for a uniform one; a voxel's footprint (a triangle ±cos θ,
   a box cos θ and a triangle ±1 px convolved) has unit mass and its exact centre at every
   angle.

The transpose uses the conjugate filters and the transposed sparse matrix. The FFTs run along
x with the rows contiguous (blocks (nz, nx, rows)), the per-frequency products read the
spectra in place through strided views, and each thread reuses its work arrays. The sums
A 1 and Aᵀ 1 (SIRT's weights) are computed exactly in real space.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import scipy.fft as sfft
from scipy import sparse

#: sums of A or Aᵀ below this are treated as zero (rays missing the volume, voxels never seen)
_EPS = 1e-6


class ParallelProjector:
    """A and Aᵀ for slices (nz, nx) and a detector of `n_det` pixels at `angles_degrees`;
    z index i is at z = i − (nz − 1) / 2 + `z_centre_px`. Volume blocks are (nz, nx, rows),
    projection blocks (n_tilts, n_det, rows), float32."""

    def __init__(self, angles_degrees: np.ndarray, nz: int, nx: int, n_det: int,
                 z_centre_px: float = 0.0) -> None:
        theta = np.radians(np.asarray(angles_degrees, dtype=float))
        self.nz, self.nx, self.n_det, self.n_tilts = nz, nx, n_det, len(theta)
        tangent = np.tan(theta)
        z = np.arange(nz) - (nz - 1) / 2.0 + z_centre_px
        self._z, self._tangent = z, tangent
        max_shift = float(np.max(np.abs(tangent))) * float(np.max(np.abs(z)))
        self.length = sfft.next_fast_len(nx + 2 * math.ceil(max_shift) + 4, real=True)
        self.symmetric = z_centre_px == 0.0
        # tilts at exactly ±θ have conjugate filters: products for the leads only
        self.lead, partner = _tilt_pairs(np.asarray(angles_degrees, dtype=float))
        self.paired = np.flatnonzero(partner >= 0)  # positions in lead with a partner
        self.partner = partner[self.paired]
        tangent_lead = tangent[self.lead]
        # pairs (i, nz − 1 − i), i < half, hold z and −z; an odd nz leaves the middle row z = 0
        self.half = nz // 2 if self.symmetric else 0
        self.n_even = nz - self.half
        if self.symmetric:
            upper = z[nz - 1: nz - 1 - self.half: -1] if self.half else z[:0]
            real, imag = _shift_filters(upper[None, :] * tangent_lead[:, None], self.length)
            even = np.ones(real.shape[:2] + (self.n_even,), dtype=np.float32)  # z = 0: F = 1
            even[:, :, : self.half] = real
            self.even, self.odd = even, imag
            self.even_t = np.ascontiguousarray(even.transpose(0, 2, 1))
            self.odd_t = np.ascontiguousarray(imag.transpose(0, 2, 1))
            # (the forward products run transposed, rows × nz by nz × tilts: faster in BLAS)
        else:
            real, imag = _shift_filters(z[None, :] * tangent_lead[:, None], self.length)
            # [Re F; Im F] stacked over the tilts: real products (faster than complex ones)
            self.stacked = np.concatenate([real, imag], axis=1)  # (n_freq, 2 n_lead, nz)
            self.stacked_t = np.ascontiguousarray(self.stacked.transpose(0, 2, 1))
        self.sampling = self._sampling_matrix(theta, max_shift)
        self.sampling_t = self.sampling.T.tocsr()
        self._local = threading.local()  # per-thread work arrays, reused between calls

    def _sampling_matrix(self, theta: np.ndarray, max_shift: float) -> sparse.csr_matrix:
        """Detector step as a sparse matrix from the flattened (n_tilts, length) sheared rows
        to the flattened (n_tilts, n_det) detector: sample x′ of Q stands for the interval
        cos θ wide centred on u = x′ cos θ, spread over the detector by the linear-interpolation
        (triangle) weights averaged over that interval — weights that sum to 1, keep the
        sample's centre and add up to exactly 1 / cos θ per pixel for a uniform row."""
        cx, cd = (self.nx - 1) / 2.0, (self.n_det - 1) / 2.0
        reach = math.ceil(max_shift) + 1
        index = np.arange(-reach, self.nx + reach)  # padded-x indices that can hold signal
        cos = np.cos(theta)[None, :]
        pos = (index[:, None] - cx) * cos + cd  # (samples, n_tilts), detector index
        j0 = np.floor(pos)
        tilt = np.broadcast_to(np.arange(self.n_tilts)[None, :], pos.shape)
        cols = tilt * self.length + np.mod(index, self.length)[:, None]
        data, r_idx, c_idx = [], [], []
        for tap in (-1, 0, 1, 2):
            j = j0 + tap
            w = (_triangle_integral(j - pos + cos / 2) - _triangle_integral(j - pos - cos / 2))
            w = w / cos
            keep = (j >= 0) & (j < self.n_det) & (w > 1e-9)
            data.append(w[keep])
            r_idx.append(tilt[keep] * self.n_det + j[keep].astype(np.int64))
            c_idx.append(cols[keep])
        shape = (self.n_tilts * self.n_det, self.n_tilts * self.length)
        return sparse.csr_matrix((np.concatenate(data).astype(np.float32),
                                  (np.concatenate(r_idx), np.concatenate(c_idx))), shape=shape)

    def forward(self, volume: np.ndarray) -> np.ndarray:
        """A: volume block (nz, nx, rows) float32 → projections (n_tilts, n_det, rows)."""
        rows = volume.shape[2]
        n_freq = self.length // 2 + 1
        source = self._fold(volume) if self.symmetric else volume
        spectrum = sfft.rfft(source, n=self.length, axis=1, workers=1)  # (nz, n_freq, rows)
        spec = spectrum.view(np.float32).transpose(1, 0, 2)  # (n_freq, nz, 2 rows)
        n_lead = len(self.lead)
        both = self._buffer("fwd_products", (2 * n_lead, n_freq, rows), np.complex64)
        out = both.view(np.float32)
        if self.symmetric:  # Re F (V_z + V_−z), Im F (V_z − V_−z)
            np.matmul(spec[:, : self.n_even].transpose(0, 2, 1), self.even_t,
                      out=out[:n_lead].transpose(1, 2, 0))
            np.matmul(spec[:, self.n_even:].transpose(0, 2, 1), self.odd_t,
                      out=out[n_lead:].transpose(1, 2, 0))
        else:  # Re F V, Im F V
            np.matmul(self.stacked, spec, out=out.transpose(1, 0, 2))
        real, imag = both[:n_lead], both[n_lead:]
        sheared_ft = self._buffer("fwd_sheared", (self.n_tilts, n_freq, rows), np.complex64)
        sheared_ft[self.lead] = real + 1j * imag
        sheared_ft[self.partner] = real[self.paired] - 1j * imag[self.paired]
        sheared = sfft.irfft(sheared_ft, n=self.length, axis=1, workers=1)
        flat = sheared.reshape(self.n_tilts * self.length, rows)
        return np.asarray(self.sampling @ flat, dtype=np.float32).reshape(
            self.n_tilts, self.n_det, rows)

    def back(self, projections: np.ndarray) -> np.ndarray:
        """Aᵀ: projections (n_tilts, n_det, rows) → volume block (nz, nx, rows) float32."""
        volume = np.zeros((self.nz, self.nx, projections.shape[2]), dtype=np.float32)
        self.back_add(projections, volume)
        return volume

    def back_add(self, projections: np.ndarray, volume: np.ndarray,
                 weight: np.ndarray | None = None) -> None:
        """volume += weight · Aᵀ projections, in place (weight per voxel, (nz, nx, 1) or, faster,
        the volume's shape; None: 1)."""
        rows = projections.shape[2]
        n_freq = self.length // 2 + 1
        flat = projections.reshape(self.n_tilts * self.n_det, rows)
        sheared = np.asarray(self.sampling_t @ flat, dtype=np.float32).reshape(
            self.n_tilts, self.length, rows)
        spectrum = sfft.rfft(sheared, axis=1, workers=1)  # (n_tilts, n_freq, rows)
        # conj(F)ᵀ P = Re Fᵀ (P_θ + P_−θ) + Im Fᵀ (−i (P_θ − P_−θ)) over the leads
        n_lead = len(self.lead)
        both = self._buffer("back_products", (2 * n_lead, n_freq, rows), np.complex64)
        both[:n_lead] = spectrum[self.lead]
        both[n_lead:] = both[:n_lead]
        partner = spectrum[self.partner]
        both[self.paired] += partner
        both[n_lead + self.paired] -= partner
        both[n_lead:] *= np.complex64(-1j)
        spec = both.view(np.float32).transpose(1, 0, 2)  # (n_freq, 2 n_lead, 2 rows)
        volume_ft = self._buffer("back_volume", (self.nz, n_freq, rows), np.complex64)
        out = volume_ft.view(np.float32).transpose(1, 0, 2)  # (n_freq, nz, 2 rows)
        if self.symmetric:
            np.matmul(self.even_t, spec[:, :n_lead], out=out[:, : self.n_even])
            np.matmul(self.odd_t, spec[:, n_lead:], out=out[:, self.n_even:])
        else:
            np.matmul(self.stacked_t, spec, out=out)
        update = sfft.irfft(volume_ft, n=self.length, axis=1, workers=1)[:, : self.nx]
        if self.symmetric:
            self._unfold_add(update, volume, weight)
        elif weight is None:
            volume += update
        else:
            update *= weight
            volume += update

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        """This thread's work array `name` (reused while the shape stays: the same memory for
        every block and iteration instead of fresh pages from the OS)."""
        buffers = self._local.__dict__
        array = buffers.get(name)
        if array is None or array.shape != tuple(shape):
            array = buffers[name] = np.empty(shape, dtype=dtype)
        return array

    def _fold(self, volume: np.ndarray) -> np.ndarray:
        """[V_z + V_−z (and V_0); V_z − V_−z] for the pairs, upper z first."""
        h, nz = self.half, self.nz
        folded = self._buffer("folded", volume.shape, np.float32)
        if h:
            upper, lower = volume[nz - 1: nz - 1 - h: -1], volume[:h]
            np.add(upper, lower, out=folded[:h])
            np.subtract(upper, lower, out=folded[self.n_even:])
        if self.n_even > h:
            folded[h] = volume[h]
        return folded

    def _unfold_add(self, update: np.ndarray, volume: np.ndarray,
                    weight: np.ndarray | None) -> None:
        """volume += weight · (the rows of the even and odd parts in `update` recombined)."""
        h, nz = self.half, self.nz
        even, odd = update[: self.n_even], update[self.n_even:]
        if h:
            part = self._buffer("part", odd.shape, np.float32)
            for combine, target in ((np.add, slice(nz - 1, nz - 1 - h, -1)),
                                    (np.subtract, slice(0, h))):  # rows z > 0, then −z
                combine(even[:h], odd, out=part)
                if weight is not None:
                    part *= weight[target]
                rows = volume[target]
                rows += part
        if self.n_even > h:
            row = volume[h]
            row += even[h] if weight is None else even[h] * weight[h]

    def weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(R, C): 1 / (A 1) per ray (n_tilts, n_det, 1) and 1 / (Aᵀ 1) per voxel (nz, nx, 1),
        0 where the sum is (nearly) 0. The sums are computed exactly (float64, real-space
        shifts): through the FFTs a ray that misses the volume would get a sum of rounding
        noise (~1e-6 of nz) instead of 0, and a huge weight."""
        shift = self._z[None, :] * self._tangent[:, None]  # (n_tilts, nz)
        whole = np.floor(shift).astype(np.int64)
        frac = shift - whole
        taps = ((whole, 1.0 - frac), (whole + 1, frac))
        # A 1: each row of ones, shifted, is a box [n, n + nx) on the circular sheared axis
        edges = np.zeros((self.n_tilts, self.length + 1))
        tilt = np.broadcast_to(np.arange(self.n_tilts)[:, None], shift.shape)
        for start, w in taps:
            first = np.mod(start, self.length)
            last = first + self.nx  # a box past the axis' end wraps to its start
            np.add.at(edges, (tilt, first), w)
            np.add.at(edges, (tilt, np.minimum(last, self.length)), -w)
            wraps = last > self.length
            np.add.at(edges, (tilt[wraps], 0), w[wraps])
            np.add.at(edges, (tilt[wraps], last[wraps] - self.length), -w[wraps])
        sheared = np.cumsum(edges[:, : self.length], axis=1)
        sampling = self.sampling.astype(np.float64)
        row_sum = (sampling @ sheared.ravel()).reshape(self.n_tilts, self.n_det)
        # Aᵀ 1: the detector's column sums, shifted back and summed over the tilts
        seen = np.asarray(sampling.sum(axis=0)).reshape(self.n_tilts, self.length)
        col_sum = np.zeros((self.nz, self.nx))
        x = np.arange(self.nx)
        for t in range(self.n_tilts):
            for start, w in taps:
                col_sum += w[t][:, None] * seen[t][np.mod(x[None, :] + start[t][:, None],
                                                           self.length)]
        inv_row = np.where(row_sum > _EPS, 1.0 / np.maximum(row_sum, _EPS), 0.0)
        inv_col = np.where(col_sum > _EPS, 1.0 / np.maximum(col_sum, _EPS), 0.0)
        return (inv_row[:, :, None].astype(np.float32),
                inv_col[:, :, None].astype(np.float32))


def _tilt_pairs(angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lead, partner): the tilts whose filters are computed, and for each the index of the
    tilt at exactly −θ (whose filters are the conjugates), or −1."""
    first: dict[float, int] = {}
    for i, angle in enumerate(angles.tolist()):
        first.setdefault(angle, i)
    lead: list[int] = []
    partner: list[int] = []
    taken: set[int] = set()
    for i, angle in enumerate(angles.tolist()):
        if i in taken:
            continue
        j = first.get(-angle, -1) if angle != 0.0 else -1
        if j in taken or j == i:
            j = -1
        lead.append(i)
        partner.append(j)
        taken.update((i, j))
    return np.array(lead, dtype=np.int64), np.array(partner, dtype=np.int64)


def _shift_filters(shift: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary parts (n_freq, *shift.shape) float32 of the Fourier filters
    e^{−2πikn/L} ((1 − f) + f e^{−2πik/L}) of linear-interpolation shifts n + f = `shift` on
    a circular axis of `length` L; k n is taken modulo L to keep the phase exact."""
    whole = np.floor(shift)
    frac = (shift - whole).astype(np.float32)
    step = np.mod(whole.astype(np.int64), length)
    k = np.arange(length // 2 + 1, dtype=np.int64).reshape((-1,) + (1,) * shift.ndim)
    table = -2.0 * np.pi * np.arange(length) / length
    cos, sin = np.cos(table).astype(np.float32), np.sin(table).astype(np.float32)
    turns = np.mod(k * step, length)  # phase index of e^{−2πikn/L}
    real, imag = cos[turns], sin[turns]
    real *= 1.0 - frac
    imag *= 1.0 - frac
    np.add(turns, k, out=turns)  # e^{−2πik(n + 1)/L}
    np.mod(turns, length, out=turns)
    real += frac * cos[turns]
    imag += frac * sin[turns]
    return real, imag


def _triangle_integral(s: np.ndarray) -> np.ndarray:
    """∫_{−∞}^{s} max(0, 1 − |t|) dt."""
    s = np.clip(s, -1.0, 1.0)
    return np.where(s <= 0, (s + 1.0) ** 2 / 2.0, 1.0 - (1.0 - s) ** 2 / 2.0)
