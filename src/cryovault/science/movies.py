"""Movie input: MRC/MRCS stacks, TIFF fractions, EER; gain references; defect correction.

`open_movie` reads the frames (EER: decoded by tifffile/imagecodecs and summed into fractions
of `eer_grouping` detector frames, at 4K with `eer_upsampling=1` or 8K with 2), checks them,
and returns a `Movie` whose items are gain- and defect-corrected float32 frames, ready for
`motion.align_movie`. Every problem is raised as ScienceInputError naming the file.

Gain: the corrected frame is raw × gain (MotionCor2's -Gain convention, EPU's "non-gain
normalised" TIFF with its gain MRC). The reference must have the frames' size (a 4K reference is
repeated 2 × 2 for 8K EER); a transposed size, or a pattern that fits the data better flipped or
rotated, is refused with the orientation that would fit.

Defects: pixels listed in a defect map (non-zero = defect), plus hot pixels found in the sum of
all frames (more counts than the median + 10 σ of the Poisson statistics, σ = √median), plus
dead pixels (no count at all where the median is ≥ 20), are replaced in every frame by the mean
of their valid neighbours in a 5 × 5 box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cryovault.science.errors import ScienceInputError
from cryovault.science.fourier import fft_workers
from cryovault.science.threads import run_parallel

MRC_SUFFIXES = {".mrc", ".mrcs", ".st", ".map"}
TIFF_SUFFIXES = {".tif", ".tiff"}
EER_SUFFIXES = {".eer"}
#: MRC modes a movie may have: int8, int16, float32, uint16, float16
_MRC_MODES = {0, 1, 2, 6, 12}


@dataclass
class MovieInfo:
    """What the file says about itself."""

    path: str
    format: str  # "mrc" | "tiff" | "eer"
    n_frames: int  # after EER grouping
    shape: tuple[int, int]  # (rows, columns) of a frame
    header_pixel_size_angstrom: float | None = None
    eer_frames: int | None = None
    eer_grouping: int | None = None
    eer_upsampling: int = 1
    eer_frames_dropped: int = 0


@dataclass
class Movie:
    """Frames in memory (raw dtype) with the corrections applied on access."""

    info: MovieInfo
    raw: np.ndarray = field(repr=False)  # (n, ny, nx)
    gain: np.ndarray | None = field(default=None, repr=False)
    defect_mask: np.ndarray | None = field(default=None, repr=False)
    _defect_index: tuple[np.ndarray, ...] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.raw.shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        return self.read_frame(index, np.empty(self.info.shape, dtype=np.float32))

    def read_frame(self, index: int, out: np.ndarray) -> np.ndarray:
        """Frame `index`, gain- and defect-corrected, written into `out` (float32, the frame's
        shape; motion correction reuses one buffer for every frame)."""
        np.copyto(out, self.raw[index], casting="unsafe")
        if self.gain is not None:
            out *= self.gain
        if self._defect_index is not None:
            _fill_defects(out, self._defect_index)
        return out

    @property
    def n_defects(self) -> int:
        return 0 if self.defect_mask is None else int(self.defect_mask.sum())


def open_movie(path: Path | str, *, eer_grouping: int | None = None, eer_upsampling: int = 1,
               gain_path: Path | str | None = None, defect_map_path: Path | str | None = None,
               correct_hot_pixels: bool = True) -> Movie:
    """Read a movie and prepare its corrections. Raises ScienceInputError on bad input."""
    path = Path(path)
    if not path.is_file():
        raise ScienceInputError("file not found", path)
    suffix = path.suffix.lower()
    if suffix in MRC_SUFFIXES:
        info, raw = _read_mrc(path)
    elif suffix in TIFF_SUFFIXES:
        info, raw = _read_tiff(path)
    elif suffix in EER_SUFFIXES:
        info, raw = _read_eer(path, eer_grouping, eer_upsampling)
    else:
        raise ScienceInputError(f"unknown movie format {suffix!r} (expected .mrc/.mrcs, "
                                ".tif/.tiff or .eer)", path)
    if raw.shape[0] < 2:
        raise ScienceInputError(f"the movie has {raw.shape[0]} frame; motion correction needs "
                                "at least 2", path)
    if raw.dtype.kind == "f":
        for f in range(raw.shape[0]):  # a NaN or ±inf makes the frame's sum non-finite
            if not math.isfinite(float(np.sum(raw[f], dtype=np.float64))):
                raise ScienceInputError(f"frame {f} contains NaN or infinite values", path)
    movie = Movie(info, raw)
    total = None
    if gain_path is not None or (correct_hot_pixels and raw.dtype.kind in "iu"):
        total = stack_sum(raw)
    if gain_path is not None:
        gain = read_gain(Path(gain_path))
        movie.gain = check_gain(gain, raw, Path(gain_path), path, total=total)
    mask = np.zeros(info.shape, dtype=bool)
    if defect_map_path is not None:
        defects = read_gain(Path(defect_map_path)) != 0
        if defects.shape != info.shape:
            raise ScienceInputError(f"defect map is {defects.shape[1]}×{defects.shape[0]} but "
                                    f"the frames are {info.shape[1]}×{info.shape[0]}",
                                    defect_map_path)
        mask |= defects
    if correct_hot_pixels and raw.dtype.kind in "iu":
        mask |= detect_bad_pixels(raw, total=total)
    if movie.gain is not None:
        mask |= movie.gain == 0
    if mask.any():
        movie.defect_mask = mask
        movie._defect_index = _defect_neighbourhoods(mask)
    return movie


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------


def _read_mrc(path: Path) -> tuple[MovieInfo, np.ndarray]:
    import mrcfile

    try:
        with mrcfile.open(path, header_only=True, permissive=True) as mrc:
            header = mrc.header
            nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
            mode = int(header.mode)
            extended = int(header.nsymbt)
            voxel = float(mrc.voxel_size.x)
            dtype = mrcfile.utils.data_dtype_from_header(header) if mode in _MRC_MODES else None
    except Exception as exc:  # mrcfile raises ValueError and others for garbage
        raise ScienceInputError(f"not a readable MRC file ({exc})", path) from exc
    if dtype is None or min(nx, ny, nz) <= 0:
        raise ScienceInputError(f"unsupported MRC header (mode {mode}, size {nx}×{ny}×{nz})",
                                path)
    expected = nx * ny * nz * dtype.itemsize
    available = path.stat().st_size - 1024 - extended
    if available < expected:
        raise ScienceInputError(
            f"file is truncated: the header promises {nz} frames of {nx}×{ny} "
            f"({expected} bytes of data) but only {max(available, 0)} bytes follow the header",
            path)
    try:
        # memory-mapped: frames are read from the page cache when used, never copied whole
        data = np.memmap(path, dtype=dtype, mode="r", offset=1024 + extended,
                         shape=(nz, ny, nx))
    except Exception as exc:
        raise ScienceInputError(f"cannot read the MRC data ({exc})", path) from exc
    header_px = voxel if voxel > 0 else None
    return MovieInfo(str(path), "mrc", nz, (ny, nx), header_px), data


def _read_tiff(path: Path) -> tuple[MovieInfo, np.ndarray]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_eer:
                raise ScienceInputError("this TIFF is an EER movie: name it .eer", path)
            pages = tif.pages
            shapes = {tuple(p.shape) for p in pages}
            if len(shapes) != 1:
                raise ScienceInputError(f"TIFF pages have different sizes: {sorted(shapes)}",
                                        path)
            data = tif.asarray(key=range(len(pages)), maxworkers=fft_workers())
    except ScienceInputError:
        raise
    except Exception as exc:
        raise ScienceInputError(f"cannot read the TIFF (truncated or corrupt?): {exc}",
                                path) from exc
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ScienceInputError(f"expected grey-level frames, got an array of shape "
                                f"{data.shape}", path)
    return MovieInfo(str(path), "tiff", data.shape[0], data.shape[1:]), data


def _read_eer(path: Path, grouping: int | None,
              upsampling: int) -> tuple[MovieInfo, np.ndarray]:
    import tifffile

    from cryovault.science.eer_io import acquisition_metadata, count_ifds

    if upsampling not in (1, 2):
        raise ScienceInputError(f"--eer-upsampling must be 1 or 2, not {upsampling}", path)
    try:
        metadata = acquisition_metadata(path)
        n_ifds = count_ifds(path)
    except Exception as exc:
        raise ScienceInputError(f"not a readable EER file ({exc})", path) from exc
    if "numberOfFrames" not in metadata:
        raise ScienceInputError("EER file has no frame count (numberOfFrames is missing from "
                                "its acquisition metadata): cannot tell a complete file from a "
                                "truncated one", path)
    try:
        n_frames = int(metadata["numberOfFrames"])
    except ValueError as exc:
        raise ScienceInputError(f"EER numberOfFrames {metadata['numberOfFrames']!r} is not a "
                                "number", path) from exc
    try:
        with tifffile.TiffFile(path, superres=upsampling - 1) as tif:
            series = next((s for s in tif.series if s.kind == "eer"), tif.series[0])
            frame_pages = len(series.pages) if series.pages else series.shape[0]
            size = path.stat().st_size
            last = series.pages[-1] if frame_pages else None
            strip_end = (max(o + c for o, c in zip(last.dataoffsets, last.databytecounts,
                                                   strict=True)) if last is not None else 0)
            if frame_pages < n_frames or n_ifds < n_frames or strip_end > size:
                raise ScienceInputError(
                    f"file is truncated: numberOfFrames is {n_frames} but only "
                    f"{min(frame_pages, n_ifds) - (strip_end > size)} complete frames are present",
                    path)
            if grouping is None:
                raise ScienceInputError(f"EER movie of {n_frames} frames: give --eer-grouping "
                                        "N (detector frames summed into one fraction)", path)
            if grouping < 1 or grouping > n_frames:
                raise ScienceInputError(f"--eer-grouping {grouping} is outside 1..{n_frames}",
                                        path)
            n_out = n_frames // grouping
            shape = tuple(series.shape[-2:])
            dtype = np.uint8 if grouping < 256 else np.uint16
            out = np.empty((n_out,) + shape, dtype=dtype)
            for g in range(n_out):
                block = series.asarray(key=slice(g * grouping, (g + 1) * grouping),
                                       maxworkers=fft_workers())
                out[g] = block.reshape((-1,) + shape).sum(axis=0, dtype=np.uint16)
    except ScienceInputError:
        raise
    except Exception as exc:
        raise ScienceInputError(f"cannot decode the EER frames: {exc}", path) from exc
    info = MovieInfo(str(path), "eer", n_out, (int(shape[0]), int(shape[1])), None, n_frames,
                     grouping, upsampling, n_frames - n_out * grouping)
    return info, out


# --------------------------------------------------------------------------------------------
# Gain and defects
# --------------------------------------------------------------------------------------------


def read_gain(path: Path) -> np.ndarray:
    """A gain reference (or defect map) from an MRC (first section) or a TIFF (first page)."""
    if not path.is_file():
        raise ScienceInputError("gain reference not found", path)
    suffix = path.suffix.lower()
    try:
        if suffix in MRC_SUFFIXES:
            import mrcfile

            with mrcfile.open(path, permissive=True) as mrc:
                if mrc.data is None:
                    raise ValueError("no data (truncated?)")
                data = np.asarray(mrc.data)
        elif suffix in TIFF_SUFFIXES or suffix == ".gain":
            import tifffile

            data = tifffile.imread(path, key=0)
        else:
            raise ScienceInputError(f"unknown gain reference format {suffix!r} (MRC or TIFF)",
                                    path)
    except ScienceInputError:
        raise
    except Exception as exc:
        raise ScienceInputError(f"cannot read the gain reference: {exc}", path) from exc
    if data.ndim == 3:
        data = data[0]
    if data.ndim != 2:
        raise ScienceInputError(f"gain reference has shape {data.shape}, expected an image", path)
    data = data.astype(np.float32)
    if not np.isfinite(data).all():
        raise ScienceInputError("gain reference contains NaN or infinite values", path)
    return data


_ORIENTATIONS = {
    "as is": lambda g: g,
    "flipped upside down": lambda g: g[::-1],
    "flipped left-right": lambda g: g[:, ::-1],
    "rotated by 180°": lambda g: g[::-1, ::-1],
    "transposed": lambda g: g.T,
    "rotated by 90° (counter-clockwise)": lambda g: np.rot90(g, 1),
    "rotated by 90° (clockwise)": lambda g: np.rot90(g, -1),
    "anti-transposed": lambda g: np.rot90(g, 2).T,
}


def check_gain(gain: np.ndarray, raw: np.ndarray, gain_path: Path, movie_path: Path, *,
               total: np.ndarray | None = None) -> np.ndarray:
    """The gain reference in the frames' size, after checking its size and orientation."""
    ny, nx = raw.shape[1:]
    if gain.shape == (ny // 2, nx // 2) and ny % 2 == 0 and nx % 2 == 0:
        gain = np.repeat(np.repeat(gain, 2, axis=0), 2, axis=1)  # 4K reference, 8K EER
    if gain.shape != (ny, nx):
        hint = (": it looks rotated by 90° (transposed)" if gain.shape == (nx, ny) else "")
        raise ScienceInputError(f"gain reference is {gain.shape[1]}×{gain.shape[0]} but the "
                                f"movie frames of {movie_path.name} are {nx}×{ny}{hint}",
                                gain_path)
    if not (gain > 0).any():
        raise ScienceInputError("gain reference has no positive value", gain_path)
    total = (stack_sum(raw) if total is None else total).astype(np.float64)
    if total.mean() < 2.0:
        return gain  # too few counts to judge the orientation
    scores = {}
    for name, transform in _ORIENTATIONS.items():
        candidate = transform(gain)
        if candidate.shape != gain.shape:
            continue
        corrected = total * candidate
        valid = candidate > 0
        values = corrected[valid]
        scores[name] = float(values.var() / max(values.mean() ** 2, 1e-30))
    best = min(scores, key=scores.__getitem__)
    n_pixels = gain.size
    significant = scores["as is"] > scores[best] * (1 + 10 * math.sqrt(2.0 / n_pixels))
    if best != "as is" and significant:
        raise ScienceInputError(
            f"gain reference orientation does not match {movie_path.name}: it corrects the "
            f"frames much better {best} (relative variance {scores[best]:.4g} against "
            f"{scores['as is']:.4g} as given); give a reference in the movie's orientation",
            gain_path)
    return gain


def stack_sum(raw: np.ndarray, workers: int | None = None) -> np.ndarray:
    """Σ over frames of a stack (n, ny, nx): uint32 for unsigned counts of ≤ 16 bits (no
    overflow below 65,537 frames), int64 for other integers, float64 for floats; in bands of
    rows on all CPUs, so that each band's total stays in the cache."""
    if raw.dtype.kind == "u" and raw.dtype.itemsize <= 2 and raw.shape[0] <= 65_536:
        dtype: type = np.uint32
    elif raw.dtype.kind in "iu":
        dtype = np.int64
    else:
        dtype = np.float64
    total = np.zeros(raw.shape[1:], dtype=dtype)

    def band(start: int, stop: int) -> None:
        for r0 in range(start, stop, 64):
            r1 = min(stop, r0 + 64)
            rows = total[r0:r1]
            for frame in raw:
                np.add(rows, frame[r0:r1], out=rows, casting="unsafe")

    run_parallel(band, raw.shape[1], workers or fft_workers())
    return total


def detect_bad_pixels(raw: np.ndarray, sigma: float = 10.0, *,
                      total: np.ndarray | None = None) -> np.ndarray:
    """Hot pixels (sum > median + σ·√median + 5) and dead pixels (no count where the median
    of the sum is ≥ 20) of a stack of counts (`total`: its sum over frames, if known)."""
    total = stack_sum(raw) if total is None else total
    median = float(np.median(total))
    hot = total > median + sigma * math.sqrt(max(median, 1.0)) + 5
    dead = (total == 0) if median >= 20 else np.zeros_like(hot)
    return hot | dead


def _defect_neighbourhoods(mask: np.ndarray) -> tuple[np.ndarray, ...]:
    """For each defect, the indices of its valid neighbours in a 5 × 5 box (padded)."""
    ny, nx = mask.shape
    ys, xs = np.nonzero(mask)
    offsets = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if dy or dx]
    ny_idx = np.clip(ys[:, None] + np.array([o[0] for o in offsets])[None], 0, ny - 1)
    nx_idx = np.clip(xs[:, None] + np.array([o[1] for o in offsets])[None], 0, nx - 1)
    valid = ~mask[ny_idx, nx_idx]
    return ys, xs, ny_idx, nx_idx, valid


def _fill_defects(frame: np.ndarray, index: tuple[np.ndarray, ...]) -> None:
    ys, xs, ny_idx, nx_idx, valid = index
    values = frame[ny_idx, nx_idx]
    counts = valid.sum(axis=1)
    sums = np.where(valid, values, 0).sum(axis=1)
    fill = sums / np.maximum(counts, 1)
    if not counts.all():  # a defect with no valid neighbour (a dead cluster): the median
        fill[counts == 0] = float(np.median(frame))
    frame[ys, xs] = fill
