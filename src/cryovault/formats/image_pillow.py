"""PNG and JPEG images (Pillow)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from cryovault.formats.image_base import (
    _NAMES,
    ImageInfo,
    _cannot,
    _ends_past,
    _reason,
    _to_float32,
)

# --------------------------------------------------------------------------------------------
# PNG and JPEG
# --------------------------------------------------------------------------------------------


def _check_png_chunks(path: Path, size: int) -> None:
    """Walk the PNG chunk list (lengths only, no decoding) up to IEND."""
    with path.open("rb") as fh:
        if fh.read(8) != b"\x89PNG\r\n\x1a\n":
            raise _cannot(path, "it is not a PNG file (the PNG signature is missing)")
        position = 8
        while True:
            raw = fh.read(8)
            if len(raw) < 8:
                raise _cannot(path, f"the PNG data stop at byte {size:,} before the image end "
                                    "marker (IEND); the file looks truncated — transfer it again")
            length, kind = struct.unpack(">I4s", raw)
            end = position + 8 + length + 4
            if end > size:
                raise _ends_past(path, f"a PNG {kind.decode('latin-1')} chunk", end, size)
            if kind == b"IEND":
                return
            fh.seek(end)
            position = end


def _check_jpeg_end(path: Path, size: int, image: Any) -> None:
    with path.open("rb") as fh:
        fh.seek(max(0, size - 1024))
        tail = fh.read().rstrip(b"\x00\r\n\t ")
    if tail.endswith(b"\xff\xd9"):
        return
    # Some writers append data after the end marker: decoding tells a truncated file apart.
    try:
        image.load()
    except OSError as exc:
        raise _cannot(path, "the JPEG data end before the image end marker; the file looks "
                            "truncated — transfer it again") from exc


def _pillow_dtype(mode: str) -> str:
    return {"1": "bool", "I;16": "uint16", "I;16B": "uint16", "I;16L": "uint16", "I": "int32",
            "F": "float32"}.get(mode, "uint8")


def _open_pillow(path: Path, expected: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
    except UnidentifiedImageError as exc:
        raise _cannot(path, f"it is not a readable {_NAMES[expected]} image; the file may be "
                            "damaged") from exc
    except Image.DecompressionBombError as exc:
        raise _cannot(path, f"the image is too large for the viewer ({_reason(exc)})") from exc
    if image.format not in ({"JPEG", "MPO"} if expected == "jpeg" else {"PNG"}):
        image.close()
        raise _cannot(path, f"it should be {_NAMES[expected]} but is {image.format}")
    return image


def _probe_pillow(path: Path, size: int, fmt: str) -> ImageInfo:
    image = _open_pillow(path, fmt)
    with image:
        if fmt == "png":
            _check_png_chunks(path, size)
        else:
            _check_jpeg_end(path, size, image)
        width, height = image.size
        mode = image.mode
        details: list[tuple[str, str]] = [
            ("Format", _NAMES[fmt]),
            ("Size", f"{width} × {height}"),
            ("Colour mode", mode + ("" if mode in ("L", "I;16", "I", "F", "1")
                                    else " (shown as luminance)")),
        ]
        frames = getattr(image, "n_frames", 1)
        if frames > 1:
            details.append(("Animation", f"{frames} frames (the first is shown)"))
    return ImageInfo(format=fmt, width=int(width), height=int(height), n_slices=1,  # type: ignore[arg-type]
                     slice_kind="image", dtype=_pillow_dtype(mode), pixel_size_angstrom=None,
                     n_frames=None, details=tuple(details))


def _probe_png(path: Path, size: int, head: bytes) -> ImageInfo:
    return _probe_pillow(path, size, "png")


def _probe_jpeg(path: Path, size: int, head: bytes) -> ImageInfo:
    return _probe_pillow(path, size, "jpeg")


def _read_pillow(path: Path, info: ImageInfo, slice_index: int) -> np.ndarray:
    image = _open_pillow(path, info.format)
    with image:
        image.load()
        if image.mode in ("L", "I;16", "I;16B", "I;16L", "I", "F"):
            array = np.asarray(image)
        else:
            array = np.asarray(image.convert("L"))
        return _to_float32(array)
