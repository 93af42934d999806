"""What motion correction takes from each frame: float32 frames read into one reused buffer,
their (cropped) spectra, and the stacks of spectra that the alignment works on.

`motion.align_movie` reads every frame twice. Pass 1 gives `WholeFrames.add` the spectrum of
the frame with its mean removed and its edges tapered (the frame edges stay on the detector
while the content moves, and would pull the correlation peak), cropped to the alignment size
(only the columns that are kept are transformed along y): the global alignment's stack.
Pass 2 gives `FramePatches.add` the frame's spectrum again: cropped to the (coarser) patch
size and cut into overlapping tapered patches, it makes the patch stacks. Stacks are stored
rows first, (B, m, n, k), as alignment.py wants them, weighted as they arrive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.fft as sfft

from cryovault.science.alignment import StackLevel, root_weights
from cryovault.science.errors import ScienceInputError
from cryovault.science.fourier import crop_spectrum, next_even_fast_len, tukey
from cryovault.science.workspace import Workspace

#: rows transformed at a time along x (small blocks keep the allocations reusable)
ROW_BLOCK = 256
#: Tukey taper fractions of the whole frame and of a patch
FRAME_TAPER = 0.2
PATCH_TAPER = 0.4


class FrameSource(Protocol):
    """Frames that can be read one at a time (a numpy array qualifies)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...


class FrameReader:
    """Frame f of a movie as a float32 image of even size (an odd last row or column is
    dropped), in one buffer reused from frame to frame. Sources with `read_frame(index, out)`
    (science.movies.Movie) fill the buffer themselves."""

    def __init__(self, frames: FrameSource | Sequence[np.ndarray] | np.ndarray,
                 first: np.ndarray) -> None:
        self.frames = frames
        self.frame_shape = (int(first.shape[0]), int(first.shape[1]))
        self.shape = (self.frame_shape[0] - self.frame_shape[0] % 2,
                      self.frame_shape[1] - self.frame_shape[1] % 2)
        self.buffer = np.empty(self.shape, dtype=np.float32)
        self._first = first

    def read(self, index: int) -> np.ndarray:
        reader = getattr(self.frames, "read_frame", None)
        if reader is not None and self.shape == self.frame_shape:
            reader(index, self.buffer)
            return self.buffer
        frame = self._first if index == 0 else np.asarray(self.frames[index])
        if frame.shape != self.frame_shape:
            raise ScienceInputError(f"frame {index} has shape {frame.shape}, frame 0 "
                                    f"{self.frame_shape}")
        np.copyto(self.buffer, frame[: self.shape[0], : self.shape[1]], casting="unsafe")
        return self.buffer


class CroppedTransform:
    """rfft2 of images of `full_shape`, cropped to the spectrum of `shape` (Fourier binning):
    rows are transformed along x in blocks, and only the kept columns along y, in place in a
    reused buffer. With `shape` == `full_shape` it is the whole rfft2. With `taper`, a Tukey
    edge taper of that fraction is applied to the image (its mean removed first) on the way,
    block by block."""

    def __init__(self, full_shape: tuple[int, int], shape: tuple[int, int], workers: int, *,
                 taper: float | None = None) -> None:
        self.full_shape = full_shape
        self.shape = shape
        self.columns = shape[1] // 2 + 1
        self.workers = workers
        self.buffer = np.empty((full_shape[0], self.columns), dtype=np.complex64)
        self.taper = None if taper is None else (
            tukey(full_shape[0], taper).astype(np.float32)[:, None],
            tukey(full_shape[1], taper).astype(np.float32)[None, :])

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """The cropped spectrum (my, mx//2+1). With no cropping it is the reused buffer: use
        it before the next call."""
        ny = self.full_shape[0]
        mean = image.mean(dtype=np.float32) if self.taper is not None else None  # pairwise
        for r0 in range(0, ny, ROW_BLOCK):
            r1 = min(ny, r0 + ROW_BLOCK)
            block = image[r0:r1]
            if self.taper is not None:
                block = (block - mean) * self.taper[0][r0:r1]
                block *= self.taper[1]
            rows = sfft.rfft(block, axis=1, workers=self.workers)
            self.buffer[r0:r1] = rows[:, : self.columns]
        spectrum = sfft.fft(self.buffer, axis=0, overwrite_x=True, workers=self.workers)
        my = self.shape[0]
        if my == ny:
            return spectrum
        return np.concatenate((spectrum[: my // 2], spectrum[ny - my // 2:]))


@dataclass(frozen=True)
class PatchGrid:
    """Overlapping square-ish patches on the alignment image: `starts` (y0, x0) of each patch
    (row by row), their `size` (ph, pw) in alignment pixels."""

    rows: int
    cols: int
    size: tuple[int, int]
    starts: tuple[tuple[int, int], ...]

    @classmethod
    def plan(cls, shape: tuple[int, int], cols: int, rows: int,
             size_factor: float) -> PatchGrid:
        """`cols` × `rows` patches `size_factor` times the grid spacing, spread evenly from
        edge to edge of an image of `shape` (FFT-friendly even sizes)."""
        sizes = []
        for n, count in ((shape[0], rows), (shape[1], cols)):
            wanted = min(n - n % 2, int(n / count * size_factor))
            size = wanted - wanted % 2
            while size > 16 and next_even_fast_len(size) != size:
                size -= 2
            sizes.append(size)
        ph, pw = sizes
        if min(ph, pw) < 16:
            raise ScienceInputError(f"{cols}×{rows} patches are too small for frames of "
                                    f"{shape[1]}×{shape[0]} pixels at this alignment "
                                    "resolution")
        ys = [round(i * (shape[0] - ph) / max(rows - 1, 1)) for i in range(rows)]
        xs = [round(i * (shape[1] - pw) / max(cols - 1, 1)) for i in range(cols)]
        return cls(rows, cols, (ph, pw), tuple((y, x) for y in ys for x in xs))

    def centres(self) -> np.ndarray:
        """(P, 2) patch centres [x, y] in alignment pixels (origin at the first pixel's
        centre)."""
        ph, pw = self.size
        return np.array([(x + (pw - 1) / 2, y + (ph - 1) / 2) for y, x in self.starts])


def _taper(shape: tuple[int, int], fraction: float) -> np.ndarray:
    return np.outer(tukey(shape[0], fraction), tukey(shape[1], fraction)).astype(np.float32)


def stack_dims(n_frames: int, count: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(B, m, n, k) of a stack of `count` images of `shape` per frame."""
    return count, shape[0], n_frames, shape[1] // 2 + 1


class WeightedStacks:
    """B images per frame (the whole frame, or its patches) as weighted spectra, stored rows
    first for alignment.py: `put` frame after frame, from frame 0 (whose power gives the
    whitening weights of all, see alignment.root_weights)."""

    def __init__(self, n_frames: int, count: int, shape: tuple[int, int],
                 full_shape: tuple[int, int], pixel_size: float, b_factor: float,
                 workspace: Workspace | None = None) -> None:
        self.shape = shape
        self.full_shape = full_shape
        self.pixel_size = pixel_size
        self.b_factor = b_factor
        dims = stack_dims(n_frames, count, shape)
        self.values = (np.empty(dims, dtype=np.complex64) if workspace is None
                       else workspace.take(dims, np.complex64))
        self.root_weights: np.ndarray | None = None

    def put(self, index: int, spectra: np.ndarray) -> None:
        """Frame `index`: the rfft2 spectra (B, m, k) of its B images (modified in place)."""
        spectra[:, 0, 0] = 0
        if self.root_weights is None:
            if index != 0:
                raise RuntimeError("frames must be given in order from frame 0")
            self.root_weights = root_weights(spectra, self.shape, self.full_shape,
                                             self.pixel_size, self.b_factor)
        spectra *= self.root_weights
        self.values[:, :, index] = spectra

    def level(self) -> StackLevel:
        return StackLevel(self.values, self.shape, self.full_shape)


class WholeFrames:
    """The global alignment's stack: each frame's spectrum at the alignment size, from the
    frame with its mean removed and its edges tapered (`CroppedTransform(taper=FRAME_TAPER)`),
    weighted (pass 1 of motion.align_movie)."""

    def __init__(self, n_frames: int, full_shape: tuple[int, int], shape: tuple[int, int],
                 pixel_size: float, b_factor: float,
                 workspace: Workspace | None = None) -> None:
        self.shape = shape
        self.stacks = WeightedStacks(n_frames, 1, shape, full_shape, pixel_size, b_factor,
                                     workspace)

    def add(self, index: int, tapered_spectrum: np.ndarray) -> None:
        """Frame `index`: the cropped spectrum of the tapered frame."""
        self.stacks.put(index, tapered_spectrum[None])


class FramePatches:
    """The patch alignment's stacks: each frame at `shape` (a Fourier crop), cut into the
    overlapping patches of `grid`, each with its mean removed and tapered, weighted (pass 2 of
    motion.align_movie: the memory of the global stack has been given back by then)."""

    def __init__(self, n_frames: int, full_shape: tuple[int, int], shape: tuple[int, int],
                 grid: PatchGrid, pixel_size: float, b_factor: float, workers: int,
                 workspace: Workspace | None = None) -> None:
        self.shape = shape
        self.grid = grid
        self.workers = workers
        ph, pw = grid.size
        patch_full = (round(ph * full_shape[0] / shape[0]), round(pw * full_shape[1] / shape[1]))
        self.stacks = WeightedStacks(n_frames, len(grid.starts), grid.size, patch_full,
                                     pixel_size, b_factor, workspace)
        self.taper = _taper(grid.size, PATCH_TAPER)
        self._tiles = np.empty((len(grid.starts), ph, pw), dtype=np.float32)

    def add(self, index: int, spectrum: np.ndarray) -> None:
        """Frame `index`, given as its spectrum at `shape` or larger (cropped here)."""
        if spectrum.shape != (self.shape[0], self.shape[1] // 2 + 1):
            spectrum = crop_spectrum(spectrum, self.shape)
        image = sfft.irfft2(spectrum, s=self.shape, workers=self.workers)
        ph, pw = self.grid.size
        for p, (y0, x0) in enumerate(self.grid.starts):
            self._tiles[p] = image[y0:y0 + ph, x0:x0 + pw]
        self._tiles -= self._tiles.mean(axis=(1, 2), keepdims=True)
        self._tiles *= self.taper
        self.stacks.put(index, sfft.rfft2(self._tiles, workers=self.workers))
