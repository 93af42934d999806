"""Shared pieces of the image readers: the errors, `ImageInfo`, limits and helpers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from cryovault.formats.filetypes import (
    EER_EXTENSIONS,
    JPEG_EXTENSIONS,
    MRC_EXTENSIONS,
    PNG_EXTENSIONS,
    TIFF_EXTENSIONS,
)

ImageFormat = Literal["mrc", "tiff", "eer", "png", "jpeg"]
SliceKind = Literal["image", "stack", "volume", "frames"]
FORMATS: tuple[str, ...] = ("mrc", "tiff", "eer", "png", "jpeg")
_NAMES = {"mrc": "MRC", "tiff": "TIFF", "eer": "EER", "png": "PNG", "jpeg": "JPEG"}

#: Planes above this many pixels are refused: one plane is held in memory as float32 (4 bytes a
#: pixel) while a preview is made. A K3 super-resolution frame is 94 Mpx, an EER frame 16.8 Mpx.
MAX_PLANE_PIXELS = 1 << 28


class UnreadableImage(Exception):
    """The file cannot be shown as an image; the message says why, in a person's words."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SliceOutOfRange(Exception):
    """`read_plane` was asked for a slice the image does not have (a request error, not a
    damaged file)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ImageInfo:
    """What the viewer needs to know about an image file, from its headers.

    `n_slices` is what the viewer pages through: MRC sections, TIFF pages, 1 for a single image
    and for an EER movie (shown as the sum of its frames). `pixel_size_angstrom` is the specimen
    pixel size when the file records one (MRC voxel size; TIFF resolution tags with a physical
    unit; never for EER, whose metadata hold only the detector's pixel pitch). `details` are
    label/value pairs for an info panel.
    """

    format: ImageFormat
    width: int
    height: int
    n_slices: int
    slice_kind: SliceKind
    dtype: str
    pixel_size_angstrom: float | None
    n_frames: int | None
    details: tuple[tuple[str, str], ...] = ()


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _size_text(n_bytes: int) -> str:
    """1,536 → "1.5 KB"; decimal units, as file managers show them."""
    if n_bytes < 1000:
        return f"{n_bytes:,} bytes"
    value = float(n_bytes)
    for unit in ("KB", "MB", "GB"):
        value /= 1000.0
        if value < 1000:
            return f"{value:.1f} {unit}"
    return f"{value / 1000.0:.1f} TB"


def _fmt(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}g}"


def _cannot(path: Path, what: str) -> UnreadableImage:
    return UnreadableImage(f"cannot read {path.name}: {what}")


def _truncated(path: Path, claim: str, needed: int, size: int) -> UnreadableImage:
    needed_text, size_text = _size_text(needed), _size_text(size)
    if needed_text == size_text:
        needed_text, size_text = f"{needed:,} bytes", f"{size:,} bytes"
    return _cannot(path, f"{claim}, which needs {needed_text}, but the file holds only "
                         f"{size_text}; it looks truncated (an interrupted copy or upload?) — "
                         "transfer it again")


def _ends_past(path: Path, what: str, end: int, size: int) -> UnreadableImage:
    return _cannot(path, f"{what} ends at byte {end:,} but the file has only {size:,} bytes; it "
                         "looks truncated (an interrupted copy or upload?) — transfer it again")


def _oserror(path: Path, exc: OSError) -> UnreadableImage:
    reason = exc.strerror or str(exc) or type(exc).__name__
    return _cannot(path, f"the file could not be opened ({reason})")


@contextmanager
def _wrapped(path: Path, fmt: str) -> Iterator[None]:
    """Turn any library failure into UnreadableImage with the library's reason appended."""
    try:
        yield
    except (UnreadableImage, SliceOutOfRange):
        raise
    except MemoryError as exc:
        raise _cannot(path, "the image is too large to decode in the memory available") from exc
    except OSError as exc:
        if exc.errno is not None:
            raise _oserror(path, exc) from exc
        raise _cannot(path, f"the {_NAMES[fmt]} data are damaged ({_reason(exc)})") from exc
    except Exception as exc:  # noqa: BLE001 - the readers raise ValueError, struct.error, ...
        raise _cannot(path, f"the {_NAMES[fmt]} data are damaged or not in a form the viewer "
                            f"reads ({_reason(exc)})") from exc


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise _oserror(path, exc) from exc


def _read_head(path: Path, n: int = 1024) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise _oserror(path, exc) from exc


def _format_from_extension(path: Path) -> str | None:
    ext = path.suffix.lower()
    for fmt, extensions in (("mrc", MRC_EXTENSIONS), ("tiff", TIFF_EXTENSIONS),
                            ("eer", EER_EXTENSIONS), ("png", PNG_EXTENSIONS),
                            ("jpeg", JPEG_EXTENSIONS)):
        if ext in extensions:
            return fmt
    return None


def _to_float32(array: np.ndarray) -> np.ndarray:
    """A native float32 copy; complex data → magnitude."""
    if np.iscomplexobj(array):
        return np.abs(array).astype(np.float32)
    return np.array(array, dtype=np.float32, copy=True, order="C")


def _check_slice(info: ImageInfo, slice_index: int) -> None:
    if not isinstance(slice_index, int | np.integer) or isinstance(slice_index, bool):
        raise SliceOutOfRange(f"slice index must be an integer, not {slice_index!r}")
    if not 0 <= slice_index < info.n_slices:
        raise SliceOutOfRange(f"slice {slice_index} does not exist: the image has "
                              f"{info.n_slices} slice{'s' if info.n_slices != 1 else ''} "
                              f"(0 to {info.n_slices - 1})")
