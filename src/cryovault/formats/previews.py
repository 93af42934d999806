"""Cached previews of image planes for a zoom/pan viewer (OpenSeadragon, Deep Zoom layout).

`build_preview` reads one plane once and writes, into one directory per slice of `cache_dir`:

    slice_<i>/meta.json        sizes, contrast window (lo, hi), 256-bin histogram, pixel size,
                               tile size and number of Deep Zoom levels (written last)
    slice_<i>/preview.png      8-bit, longest side ≤ 1024, binned by mean
    slice_<i>/thumb.png        8-bit, longest side ≤ 256
    slice_<i>/plane_u8.npy     the full-resolution plane in 8 bits, the source of the tiles
    slice_<i>/tiles-<generation>/<level>/<col>_<row>.png    tiles, made on first request

The contrast window is the 0.5-99.5 percentile range of a strided sample of the plane (about
262,144 pixels); every 8-bit image maps lo → 0 and hi → 255. Files are written under a temporary
name and renamed into place, and meta.json last, so a reader never sees half a file and a slice
counts as built only once all its files are there. Two processes building the same slice at
once both do the work and write identical files. A built slice is reused as long as the
source's size and modification time are unchanged; tiles live under a directory named after
that state, so a rebuilt slice never serves stale tiles.

Tiles follow Deep Zoom: level `max_level` = ceil(log2(max(width, height))) is full resolution,
each level below halves it (down to 1×1 at level 0), tiles are `TILE_SIZE` square with no
overlap, and edge tiles are smaller. A level-L pixel is the mean of the 2**(max_level-L) square
block of full-resolution 8-bit pixels it covers.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from cryovault.formats.images import ImageInfo, UnreadableImage, read_plane

PREVIEW_MAX_SIDE = 1024
THUMB_MAX_SIDE = 256
TILE_SIZE = 512
TILE_OVERLAP = 0
HISTOGRAM_BINS = 256
LOW_PERCENTILE = 0.5
HIGH_PERCENTILE = 99.5
#: The contrast window is computed on a strided sample of about this many pixels.
CONTRAST_SAMPLE_PIXELS = 512 * 512
#: zlib level for the PNGs: 1 is several times faster than the default 6 for ~10 % more bytes.
PNG_COMPRESS_LEVEL = 1
CACHE_VERSION = 1

META_JSON = "meta.json"
PREVIEW_PNG = "preview.png"
THUMB_PNG = "thumb.png"
PLANE_U8 = "plane_u8.npy"


class TileOutOfRange(Exception):
    """The requested tile (level, column or row) is outside the pyramid of this slice."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PreviewNotBuilt(Exception):
    """No complete preview of this slice is in the cache: call `build_preview` first."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Contrast:
    """The automatic display window of a plane and the histogram the UI shows with it.

    `histogram` has `HISTOGRAM_BINS` counts of the sample over [lo, hi]; `below` and `above`
    count the sampled pixels outside it; `sample_min`/`sample_max` bound the sample.
    """

    lo: float
    hi: float
    histogram: tuple[int, ...]
    below: int
    above: int
    sample_min: float
    sample_max: float
    n_samples: int


@dataclass(frozen=True)
class PreviewMeta:
    """The content of meta.json."""

    version: int
    slice_index: int
    width: int
    height: int
    lo: float
    hi: float
    histogram: tuple[int, ...]
    histogram_below: int
    histogram_above: int
    sample_min: float
    sample_max: float
    pixel_size_angstrom: float | None
    tile_size: int
    tile_overlap: int
    tile_format: str
    max_level: int
    preview_width: int
    preview_height: int
    preview_bin: int
    thumb_width: int
    thumb_height: int
    thumb_bin: int
    source_format: str
    source_size: int
    source_mtime_ns: int
    generation: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PreviewMeta:
        data = json.loads(text)
        data["histogram"] = tuple(int(x) for x in data["histogram"])
        return cls(**data)

    def level_size(self, level: int) -> tuple[int, int]:
        """(width, height) of a Deep Zoom level."""
        scale = 1 << (self.max_level - level)
        return -(-self.width // scale), -(-self.height // scale)

    def tile_grid(self, level: int) -> tuple[int, int]:
        """(columns, rows) of tiles at a Deep Zoom level."""
        width, height = self.level_size(level)
        return -(-width // self.tile_size), -(-height // self.tile_size)


@dataclass(frozen=True)
class PreviewSet:
    """A built preview of one slice: its files and metadata. `from_cache` is True when
    `build_preview` found it complete and did not read the source."""

    directory: Path
    meta: PreviewMeta
    from_cache: bool

    @property
    def preview_png(self) -> Path:
        return self.directory / PREVIEW_PNG

    @property
    def thumb_png(self) -> Path:
        return self.directory / THUMB_PNG

    @property
    def plane_u8(self) -> Path:
        return self.directory / PLANE_U8

    @property
    def meta_json(self) -> Path:
        return self.directory / META_JSON


# --------------------------------------------------------------------------------------------
# Numerics
# --------------------------------------------------------------------------------------------


def auto_contrast(plane: np.ndarray, *, low: float = LOW_PERCENTILE,
                  high: float = HIGH_PERCENTILE,
                  sample_pixels: int = CONTRAST_SAMPLE_PIXELS) -> Contrast:
    """Display window [lo, hi] from percentiles of a strided sample, and its histogram.

    Non-finite values are ignored; a constant plane gets a window of width 1 around its value
    (shown mid-grey)."""
    height, width = plane.shape
    step = max(1, math.ceil(math.sqrt(height * width / max(1, sample_pixels))))
    sample = plane[::step, ::step]
    sample = sample[np.isfinite(sample)] if not np.isfinite(sample).all() else sample.ravel()
    if sample.size == 0:
        return Contrast(lo=0.0, hi=1.0, histogram=(0,) * HISTOGRAM_BINS, below=0, above=0,
                        sample_min=0.0, sample_max=0.0, n_samples=0)
    sample = sample.astype(np.float64, copy=False)
    lo, hi = (float(x) for x in np.percentile(sample, [low, high]))
    if not hi > lo:
        lo, hi = lo - 0.5, lo + 0.5
    counts, _ = np.histogram(sample, bins=HISTOGRAM_BINS, range=(lo, hi))
    below = int(np.count_nonzero(sample < lo))
    above = int(np.count_nonzero(sample > hi))
    return Contrast(lo=lo, hi=hi, histogram=tuple(int(c) for c in counts), below=below,
                    above=above, sample_min=float(sample.min()), sample_max=float(sample.max()),
                    n_samples=int(sample.size))


def _sum_dtype(array: np.ndarray, factor: int) -> type[np.floating[Any]]:
    if array.dtype == np.uint8 and factor * factor * 255 < 2**24:
        return np.float32
    if array.dtype.kind == "f" and array.dtype.itemsize <= 4:
        return np.float32
    return np.float64


def _block_sums(array: np.ndarray, factor: int, axis: int, dtype: Any) -> np.ndarray:
    """Sums of consecutive blocks of `factor` along axis 0 or 1 (the last block may be short)."""
    length = array.shape[axis]
    n_full, rest = divmod(length, factor)
    shape = list(array.shape)
    shape[axis] = n_full + (1 if rest else 0)
    out = np.empty(shape, dtype=dtype)

    def take(part: Any) -> tuple[Any, ...]:
        return (part, slice(None)) if axis == 0 else (slice(None), part)

    if n_full:
        head = array[take(slice(0, n_full * factor))]
        target = out[take(slice(0, n_full))]
        if factor <= 16:
            np.copyto(target, head[take(slice(0, None, factor))], casting="unsafe")
            for k in range(1, factor):
                np.add(target, head[take(slice(k, None, factor))], out=target, casting="unsafe")
        else:
            if axis == 0:
                blocks = head.reshape(n_full, factor, -1)
                np.sum(blocks, axis=1, dtype=dtype, out=target)
            else:
                blocks = np.ascontiguousarray(head).reshape(head.shape[0], n_full, factor)
                np.sum(blocks, axis=2, dtype=dtype, out=target)
    if rest:
        tail = array[take(slice(n_full * factor, None))]
        np.sum(tail, axis=axis, dtype=dtype, out=out[take(n_full)])
    return out


def bin_mean(array: np.ndarray, factor: int) -> np.ndarray:
    """Mean of `factor` × `factor` blocks of a 2-D array; edge blocks average what they cover.

    Returns float32 (float64 when the sums could lose precision in float32)."""
    if factor < 1:
        raise ValueError("factor must be ≥ 1")
    dtype = _sum_dtype(array, factor)
    if factor == 1:
        return np.array(array, dtype=dtype, copy=True)
    height, width = array.shape
    sums = _block_sums(_block_sums(array, factor, 0, dtype), factor, 1, dtype)
    row_counts = np.full(sums.shape[0], factor, dtype=dtype)
    col_counts = np.full(sums.shape[1], factor, dtype=dtype)
    if height % factor:
        row_counts[-1] = height % factor
    if width % factor:
        col_counts[-1] = width % factor
    sums /= row_counts[:, None]
    sums /= col_counts[None, :]
    return sums


def to_u8(array: np.ndarray, lo: float, hi: float, *, in_place: bool = False) -> np.ndarray:
    """Map [lo, hi] → [0, 255] with rounding and clipping. With `in_place`, `array` (float32,
    C-contiguous, owned by the caller) is used as scratch space to save memory and time."""
    scale = 255.0 / (hi - lo)
    offset = 0.5 - lo * scale
    if in_place and array.dtype == np.float32 and array.flags.c_contiguous:
        work = array
        np.multiply(work, np.float32(scale), out=work)
    else:
        work = np.multiply(array, scale, dtype=np.float32)
    np.add(work, np.float32(offset), out=work)
    np.clip(work, 0.0, 255.0, out=work)
    return work.astype(np.uint8)


def png_bytes(image_u8: np.ndarray) -> bytes:
    """A greyscale PNG of a 2-D uint8 array (zlib level `PNG_COMPRESS_LEVEL`)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image_u8), mode="L").save(
        buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _bin_factor(width: int, height: int, max_side: int) -> int:
    return max(1, -(-max(width, height) // max_side))


def _max_level(width: int, height: int) -> int:
    return (max(width, height) - 1).bit_length()


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write through a temporary file in the same directory, then rename over `path`."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda fh: fh.write(data))  # type: ignore[arg-type,return-value]


def _slice_dir(cache_dir: Path, slice_index: int) -> Path:
    return Path(cache_dir) / f"slice_{int(slice_index)}"


def _read_meta(directory: Path) -> PreviewMeta | None:
    try:
        meta = PreviewMeta.from_json((directory / META_JSON).read_text())
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return meta if meta.version == CACHE_VERSION else None


def load_preview(cache_dir: Path, slice_index: int) -> PreviewSet | None:
    """The cached preview of a slice if it is complete, else None (does not look at the
    source: use `build_preview` to check that it is current)."""
    directory = _slice_dir(cache_dir, slice_index)
    meta = _read_meta(directory)
    if meta is None:
        return None
    if not all((directory / name).is_file() for name in (PREVIEW_PNG, THUMB_PNG, PLANE_U8)):
        return None
    return PreviewSet(directory=directory, meta=meta, from_cache=True)


def _generation(source_size: int, source_mtime_ns: int, slice_index: int) -> str:
    text = f"{CACHE_VERSION}:{source_size}:{source_mtime_ns}:{slice_index}"
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:12]


def build_preview(source: Path, cache_dir: Path, slice_index: int,
                  info: ImageInfo) -> PreviewSet:
    """Build (or find in the cache) the preview files of one slice of `source`.

    `info` comes from `probe_image(source)`. A complete cached preview made from the same
    source state (size and modification time) is returned without reading the source
    (`from_cache=True`). Raises UnreadableImage when the source cannot be read and
    SliceOutOfRange (from images) for a slice the image lacks; OSError when the cache
    directory cannot be written.
    """
    source = Path(source)
    directory = _slice_dir(cache_dir, slice_index)
    try:
        stat = source.stat()
    except OSError as exc:
        raise UnreadableImage(f"cannot read {source.name}: the file could not be opened "
                              f"({exc.strerror or exc})") from exc
    cached = load_preview(cache_dir, slice_index)
    if (cached is not None and cached.meta.source_size == stat.st_size
            and cached.meta.source_mtime_ns == stat.st_mtime_ns):
        return cached

    plane = read_plane(source, info, slice_index)
    height, width = plane.shape
    contrast = auto_contrast(plane)
    lo, hi = contrast.lo, contrast.hi

    preview_bin = _bin_factor(width, height, PREVIEW_MAX_SIDE)
    preview = bin_mean(plane, preview_bin)
    if not np.isfinite(preview).all():
        # NaN or ±inf somewhere in the plane: show them as the window's ends.
        np.nan_to_num(plane, copy=False, nan=lo, posinf=hi, neginf=lo)
        preview = bin_mean(plane, preview_bin)
    thumb_extra = _bin_factor(preview.shape[1], preview.shape[0], THUMB_MAX_SIDE)
    thumb = bin_mean(preview, thumb_extra)
    preview_png = png_bytes(to_u8(preview, lo, hi, in_place=True))
    thumb_png = png_bytes(to_u8(thumb, lo, hi, in_place=True))
    plane_u8 = to_u8(plane, lo, hi, in_place=plane.dtype == np.float32)
    del plane

    directory.mkdir(parents=True, exist_ok=True)
    generation = _generation(stat.st_size, stat.st_mtime_ns, slice_index)
    meta = PreviewMeta(
        version=CACHE_VERSION, slice_index=int(slice_index), width=int(width),
        height=int(height), lo=lo, hi=hi, histogram=contrast.histogram,
        histogram_below=contrast.below, histogram_above=contrast.above,
        sample_min=contrast.sample_min, sample_max=contrast.sample_max,
        pixel_size_angstrom=info.pixel_size_angstrom, tile_size=TILE_SIZE,
        tile_overlap=TILE_OVERLAP, tile_format="png", max_level=_max_level(width, height),
        preview_width=int(preview.shape[1]), preview_height=int(preview.shape[0]),
        preview_bin=preview_bin, thumb_width=int(thumb.shape[1]),
        thumb_height=int(thumb.shape[0]), thumb_bin=preview_bin * thumb_extra,
        source_format=info.format, source_size=stat.st_size,
        source_mtime_ns=stat.st_mtime_ns, generation=generation,
    )
    _write_bytes(directory / PREVIEW_PNG, preview_png)
    _write_bytes(directory / THUMB_PNG, thumb_png)
    _atomic_write(directory / PLANE_U8, lambda fh: np.save(fh, plane_u8, allow_pickle=False))
    _write_bytes(directory / META_JSON, meta.to_json().encode())
    for old in directory.glob("tiles-*"):
        if old.name != f"tiles-{generation}":
            shutil.rmtree(old, ignore_errors=True)
    return PreviewSet(directory=directory, meta=meta, from_cache=False)


# --------------------------------------------------------------------------------------------
# Tiles
# --------------------------------------------------------------------------------------------


def _check_tile(meta: PreviewMeta, level: int, col: int, row: int) -> None:
    for name, value in (("level", level), ("column", col), ("row", row)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool):
            raise TileOutOfRange(f"tile {name} must be an integer, not {value!r}")
    if not 0 <= level <= meta.max_level:
        raise TileOutOfRange(f"level {level} does not exist: this image has levels 0 to "
                             f"{meta.max_level}")
    columns, rows = meta.tile_grid(level)
    if not (0 <= col < columns and 0 <= row < rows):
        raise TileOutOfRange(f"tile {col}_{row} does not exist at level {level}: it has "
                             f"{columns} × {rows} tiles (columns 0 to {columns - 1}, rows 0 to "
                             f"{rows - 1})")


def render_tile(plane_u8: np.ndarray, meta: PreviewMeta, level: int, col: int,
                row: int) -> np.ndarray:
    """The 8-bit pixels of one tile, from the full-resolution 8-bit plane."""
    scale = 1 << (meta.max_level - level)
    span = meta.tile_size * scale
    y0, x0 = row * span, col * span
    region = plane_u8[y0:min(meta.height, y0 + span), x0:min(meta.width, x0 + span)]
    if scale == 1:
        return np.ascontiguousarray(region)
    binned = bin_mean(region, scale)
    np.add(binned, 0.5, out=binned)
    return binned.astype(np.uint8)


def tile_png(cache_dir: Path, slice_index: int, level: int, col: int, row: int) -> bytes:
    """The PNG bytes of Deep Zoom tile (level, col, row) of a built slice, cached on disk.

    Raises TileOutOfRange for a level, column or row outside the pyramid, PreviewNotBuilt when
    the slice has no complete preview in `cache_dir` (call `build_preview` first). Safe to call
    from many threads or processes at once: two first requests of a tile both render it and
    write the same bytes."""
    directory = _slice_dir(cache_dir, slice_index)
    meta = _read_meta(directory)
    if meta is None:
        raise PreviewNotBuilt(f"slice {slice_index} has no preview in the cache yet; build it "
                              "first")
    _check_tile(meta, level, col, row)
    path = directory / f"tiles-{meta.generation}" / str(int(level)) / f"{int(col)}_{int(row)}.png"
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes()
    try:
        plane_u8 = np.load(directory / PLANE_U8, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise PreviewNotBuilt(f"the cached plane of slice {slice_index} is missing or damaged; "
                              "build the preview again") from exc
    if plane_u8.shape != (meta.height, meta.width) or plane_u8.dtype != np.uint8:
        raise PreviewNotBuilt(f"the cached plane of slice {slice_index} does not match its "
                              "metadata; build the preview again")
    data = png_bytes(render_tile(plane_u8, meta, int(level), int(col), int(row)))
    del plane_u8
    # The tile cache is best effort: a read-only cache, a full disk or a rebuild removing this
    # generation's directory meanwhile must not fail the request.
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_bytes(path, data)
    return data


def dzi_xml(meta: PreviewMeta) -> str:
    """The Deep Zoom descriptor (.dzi) OpenSeadragon reads; tiles are served from
    `<name>_files/<level>/<col>_<row>.png`, i.e. by `tile_png`."""
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
            f'Format="{meta.tile_format}" Overlap="{meta.tile_overlap}" '
            f'TileSize="{meta.tile_size}"><Size Width="{meta.width}" Height="{meta.height}"/>'
            "</Image>")
