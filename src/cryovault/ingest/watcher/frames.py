"""Is a movie completely written? Frame counts read from the file's structure, not its pixels.

* TIFF fractions and EER: the IFD chain is walked with `struct` (8 or 20 bytes per frame, no
  pixel data), which also tells whether the chain ends properly (next offset 0) or runs past the
  end of a file still being written; only then does tifffile open the file to read the last
  frame's strip offsets and byte counts, which must lie inside the file. An EER whose first IFD
  is uncompressed holds an integrated image there, not a frame. EER files also state their own
  frame count (tag 65001 `numberOfFrames`), checked against the chain.
* MRC stacks: the header (mrcfile, header only) gives nx, ny, nz, mode and the extended header
  size; the file is complete when its size is exactly what they promise.

`check_movie(path, expected_frames)` answers with a `MovieCheck`: `complete` and, when not, the
reason in words ("6 of 8 frames written"). It never raises for a malformed or half-written file.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path

TIFF_SUFFIXES = (".tif", ".tiff")
EER_SUFFIXES = (".eer", ".ecc")
MRC_SUFFIXES = (".mrc", ".mrcs")
MOVIE_SUFFIXES = TIFF_SUFFIXES + EER_SUFFIXES + MRC_SUFFIXES
EER_COMPRESSIONS = frozenset({65000, 65001, 65002})
MAX_IFDS = 10_000_000

# bytes per pixel of the MRC modes; mode 101 packs two 4-bit pixels per byte
_MRC_MODE_BYTES: dict[int, float] = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2, 101: 0.5}


@dataclass(frozen=True)
class MovieCheck:
    """The verdict on one movie file: `frames` is what the file holds now (None when unknown)."""

    complete: bool
    frames: int | None
    reason: str = ""


@dataclass(frozen=True)
class IfdChain:
    """The IFD offsets of a TIFF/BigTIFF and whether the chain ends properly inside the file."""

    offsets: tuple[int, ...]
    terminated: bool
    byte_order: str
    big: bool


class _Quiet(logging.Filter):
    """tifffile logs an error for every truncated file; here that is an expected state."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003 (logging API)
        return False


def walk_ifd_chain(path: Path) -> IfdChain:
    """Follow the IFD chain of a (Big)TIFF reading only tag counts and next-IFD offsets.
    Raises ValueError when the file is not a TIFF at all."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        header = fh.read(16)
        if len(header) < 8:
            raise ValueError("shorter than a TIFF header")
        order = {b"II": "<", b"MM": ">"}.get(header[:2])
        if order is None:
            raise ValueError("not a TIFF file (no II/MM byte-order mark)")
        magic = struct.unpack(order + "H", header[2:4])[0]
        if magic == 42:
            big, count_fmt, count_size, tag_size, offset_fmt = False, "H", 2, 12, "I"
            first = struct.unpack(order + "I", header[4:8])[0]
        elif magic == 43:
            if len(header) < 16:
                raise ValueError("shorter than a BigTIFF header")
            big, count_fmt, count_size, tag_size, offset_fmt = True, "Q", 8, 20, "Q"
            first = struct.unpack(order + "Q", header[8:16])[0]
        else:
            raise ValueError(f"not a TIFF file (version {magic})")
        offset_size = 8 if big else 4
        offsets: list[int] = []
        seen: set[int] = set()
        offset = first
        while offset:
            if offset in seen or len(offsets) >= MAX_IFDS:
                raise ValueError("the IFD chain loops")
            if offset + count_size > size:
                return IfdChain(tuple(offsets), False, order, big)
            fh.seek(offset)
            n_tags = struct.unpack(order + count_fmt, fh.read(count_size))[0]
            end = offset + count_size + n_tags * tag_size + offset_size
            if end > size:
                return IfdChain(tuple(offsets), False, order, big)
            fh.seek(end - offset_size)
            offsets.append(offset)
            seen.add(offset)
            offset = struct.unpack(order + offset_fmt, fh.read(offset_size))[0]
    return IfdChain(tuple(offsets), True, order, big)


def _tiff_check(path: Path, expected_frames: int | None, eer: bool) -> MovieCheck:
    import tifffile

    try:
        chain = walk_ifd_chain(path)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, struct.error) as exc:
        return MovieCheck(False, None, f"not readable as {'EER' if eer else 'TIFF'} yet: {exc}")
    if not chain.offsets:
        return MovieCheck(False, 0, "no frame written yet")
    if not chain.terminated:
        return MovieCheck(False, len(chain.offsets),
                          f"{len(chain.offsets)} frames written, the file is still growing")
    size = path.stat().st_size
    quiet = _Quiet()
    tiff_log = logging.getLogger("tifffile")
    tiff_log.addFilter(quiet)
    try:
        with tifffile.TiffFile(path) as tif:
            pages = tif.pages
            n_pages = len(pages)
            last = pages[n_pages - 1]
            ends = [o + c for o, c in zip(last.dataoffsets, last.databytecounts, strict=False)]
            first_compression = int(pages[0].compression)
            eer_frames_declared = _eer_declared_frames(pages[0]) if eer else None
    except FileNotFoundError:
        raise
    except Exception as exc:  # tifffile raises many kinds on half-written files
        return MovieCheck(False, None, f"cannot open the {'EER' if eer else 'TIFF'} yet: {exc}")
    finally:
        tiff_log.removeFilter(quiet)
    if ends and max(ends) > size:
        return MovieCheck(False, n_pages - 1, "the last frame's data is not written yet")
    frames = n_pages
    if eer:
        if first_compression not in EER_COMPRESSIONS:
            frames -= 1  # an integrated image in the first IFD
        if eer_frames_declared is not None and frames != eer_frames_declared:
            return MovieCheck(False, frames, f"{frames} of {eer_frames_declared} EER frames "
                              "written (numberOfFrames)")
        # EPU's NumberOffractions for EER is the grouping into fractions, not the raw frames
        if expected_frames is not None and frames < expected_frames:
            return MovieCheck(False, frames, f"{frames} EER frames, fewer than the "
                              f"{expected_frames} fractions the acquisition states")
        return MovieCheck(True, frames)
    if expected_frames is not None and frames != expected_frames:
        if frames < expected_frames:
            return MovieCheck(False, frames, f"{frames} of {expected_frames} frames written")
        return MovieCheck(False, frames, f"{frames} frames, but the acquisition states "
                          f"{expected_frames}")
    return MovieCheck(True, frames)


def _eer_declared_frames(page) -> int | None:
    import re

    tag = page.tags.get(65001)
    if tag is None:
        return None
    value = tag.value if isinstance(tag.value, bytes) else str(tag.value).encode()
    found = re.search(rb'<item\s+name="numberOfFrames"[^>]*>\s*(\d+)\s*<', value)
    return int(found.group(1)) if found else None


def _mrc_check(path: Path, expected_frames: int | None) -> MovieCheck:
    import mrcfile

    size = path.stat().st_size
    if size < 1024:
        return MovieCheck(False, None, "the MRC header is not written yet")
    try:
        with mrcfile.open(path, header_only=True, permissive=True) as mrc:
            header = mrc.header
            nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
            mode, extended = int(header.mode), int(header.nsymbt)
    except FileNotFoundError:
        raise
    except Exception as exc:
        return MovieCheck(False, None, f"cannot read the MRC header: {exc}")
    if mode not in _MRC_MODE_BYTES or min(nx, ny, nz) <= 0 or extended < 0:
        return MovieCheck(False, None, f"MRC header not valid (mode {mode}, {nx}×{ny}×{nz})")
    row_bytes = (nx + 1) // 2 if mode == 101 else int(nx * _MRC_MODE_BYTES[mode])
    expected_size = 1024 + extended + row_bytes * ny * nz
    if size < expected_size:
        written = max(size - 1024 - extended, 0) // max(row_bytes * ny, 1)
        return MovieCheck(False, written, f"{written} of {nz} frames written (header nz)")
    if size > expected_size:
        return MovieCheck(False, nz, f"the file is {size - expected_size} bytes longer than its "
                          f"header promises ({nz} frames of {nx}×{ny})")
    if expected_frames is not None and nz != expected_frames:
        return MovieCheck(False, nz, f"{nz} frames, but the acquisition states {expected_frames}")
    return MovieCheck(True, nz)


def check_movie(path: Path, expected_frames: int | None = None) -> MovieCheck:
    """Whether the movie at `path` is completely written; `expected_frames` (from the
    acquisition's metadata) when known. Raises FileNotFoundError if the file vanished."""
    suffix = path.suffix.lower()
    if suffix in EER_SUFFIXES:
        return _tiff_check(path, expected_frames, eer=True)
    if suffix in TIFF_SUFFIXES:
        return _tiff_check(path, expected_frames, eer=False)
    if suffix in MRC_SUFFIXES:
        return _mrc_check(path, expected_frames)
    return MovieCheck(True, None)
