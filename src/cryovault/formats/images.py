"""Image files of the field for the viewer: MRC, TIFF, EER, PNG and JPEG.

`probe_image` reads headers only and checks that the file is long enough for what they promise,
so a truncated upload is reported before anything is decoded. `read_plane` returns one plane as a
2-D float32 array: an MRC section, a TIFF page, the sum of all frames of an EER movie, or the
luminance of a PNG/JPEG. Whatever goes wrong with the file's bytes raises `UnreadableImage`, whose
message names the file (never its directory) and says what is wrong in a person's words.

Thread safety: the functions keep no state between calls; each opens its own file handle, so
they may run in parallel threads (the decoders release the GIL) or processes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryovault.formats.filetypes import sniff_image
from cryovault.formats.image_base import (
    _NAMES,
    FORMATS,
    MAX_PLANE_PIXELS,
    ImageFormat,
    ImageInfo,
    SliceKind,
    SliceOutOfRange,
    UnreadableImage,
    _cannot,
    _check_slice,
    _file_size,
    _format_from_extension,
    _read_head,
    _wrapped,
)
from cryovault.formats.image_mrc import _probe_mrc, _read_mrc
from cryovault.formats.image_pillow import _probe_jpeg, _probe_png, _read_pillow
from cryovault.formats.image_tiff import _probe_tiff, _read_eer, _read_tiff

__all__ = ["FORMATS", "ImageFormat", "ImageInfo", "SliceKind", "SliceOutOfRange",
           "UnreadableImage", "probe_image", "read_plane"]

# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def probe_image(path: Path, fmt: str | None = None) -> ImageInfo:
    """Read the headers of an image file and check it holds the data they describe.

    `fmt` ("mrc", "tiff", "eer", "png", "jpeg") forces a reader; by default the format comes
    from the first bytes, then from the extension. Raises UnreadableImage for a missing, empty,
    truncated, damaged or unsupported file, or one whose bytes are not the format `fmt` names.
    """
    path = Path(path)
    size = _file_size(path)
    if size == 0:
        raise _cannot(path, "the file is empty (0 bytes)")
    head = _read_head(path)
    sniffed = sniff_image(head)
    if fmt is None:
        fmt = sniffed or _format_from_extension(path)
        if fmt is None:
            raise _cannot(path, "it is not an image format the viewer knows "
                                "(MRC, TIFF, EER, PNG or JPEG)")
    elif fmt not in FORMATS:
        raise ValueError(f"unknown image format {fmt!r}; expected one of {', '.join(FORMATS)}")
    elif sniffed is not None and sniffed != fmt and not (fmt == "eer" and sniffed == "tiff"):
        raise _cannot(path, f"it should be {_NAMES[fmt]} but its first bytes are those of a "
                            f"{_NAMES[sniffed]} file; check the file or its name")
    probe = {"mrc": _probe_mrc, "tiff": _probe_tiff, "eer": _probe_tiff, "png": _probe_png,
             "jpeg": _probe_jpeg}[fmt]
    with _wrapped(path, fmt):
        info = probe(path, size, head)
    if fmt == "eer" and info.format != "eer":
        raise _cannot(path, "it is a TIFF file but not an EER movie (no EER frames and no EER "
                            "metadata in tag 65001)")
    if info.width * info.height > MAX_PLANE_PIXELS:
        raise _cannot(path, f"its planes are {info.width} × {info.height} pixels "
                            f"({info.width * info.height / 1e6:,.0f} megapixels), more than the "
                            f"viewer's limit of {MAX_PLANE_PIXELS / 1e6:,.0f}; download it "
                            "instead")
    return info


def read_plane(path: Path, info: ImageInfo, slice_index: int) -> np.ndarray:
    """One plane of the image as a C-contiguous 2-D float32 array (height × width).

    MRC: section `slice_index` (z for a volume) through a read-only memory map. TIFF: page
    `slice_index` of the first series (RGB → luminance). EER: the sum of all frames (counts per
    pixel), decoded by tifffile one frame at a time, so memory stays at a few frames.
    PNG/JPEG: luminance (ITU-R 601-2 for colour). Raises SliceOutOfRange for a slice the image
    lacks, UnreadableImage for any failure of the file's bytes.
    """
    path = Path(path)
    _check_slice(info, slice_index)
    reader = {"mrc": _read_mrc, "tiff": _read_tiff, "eer": _read_eer, "png": _read_pillow,
              "jpeg": _read_pillow}.get(info.format)
    if reader is None:
        raise ValueError(f"unknown image format {info.format!r}")
    with _wrapped(path, info.format):
        plane = reader(path, info, slice_index)
    if plane.shape != (info.height, info.width):
        raise _cannot(path, f"the plane read is {plane.shape[1]}×{plane.shape[0]} pixels but the "
                            f"header said {info.width}×{info.height}; the file changed or is "
                            "inconsistent")
    return plane
