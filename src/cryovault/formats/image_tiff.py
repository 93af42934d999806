"""TIFF images and EER movies (tifffile + imagecodecs)."""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from cryovault.formats.eer import EER_CODECS, EER_COMPRESSIONS, describe_compression
from cryovault.formats.image_base import (
    ImageInfo,
    SliceKind,
    UnreadableImage,
    _cannot,
    _ends_past,
    _fmt,
    _reason,
    _to_float32,
    _truncated,
)

# --------------------------------------------------------------------------------------------
# TIFF and EER
# --------------------------------------------------------------------------------------------


#: EER frames are summed in uint8 this many at a time (at most 255), then widened.
EER_FLUSH_FRAMES = 255


#: Pixel sizes derived from TIFF resolution tags above this are print resolutions (72 dpi is
#: 3.5e6 Å), not specimen pixels.
MAX_TIFF_PIXEL_ANGSTROM = 1e5


def _open_tiff(path: Path) -> Any:
    import tifffile

    try:
        return tifffile.TiffFile(path)
    except tifffile.TiffFileError as exc:
        raise _cannot(path, f"it is not a readable TIFF file ({_reason(exc)}); it may be "
                            "truncated or damaged") from exc


def _is_eer(tif: Any) -> bool:
    first = tif.pages.first
    if first.is_eer:
        return True
    return first.compression in EER_COMPRESSIONS


def _eer_frames(path: Path, tif: Any) -> Any:
    """The EER frames series (tifffile names it "frames"; IFD 0 may be the integrated image)."""
    for series in tif.series:
        if series.kind == "eer" and series.name == "frames":
            return series
    raise _cannot(path, "it has EER-compressed pages but is not a valid EER file (EER files "
                        "are BigTIFF with the acquisition metadata in tag 65001)")


def _check_segments(path: Path, pages: list[Any], size: int, what: str) -> None:
    """Every strip/tile of every page must lie inside the file."""
    for index, page in enumerate(pages):
        if page is None:
            raise _cannot(path, f"{what} {index + 1} is missing; the file looks damaged")
        offsets = page.dataoffsets
        counts = page.databytecounts
        if not offsets:
            continue
        end = max(o + c for o, c in zip(offsets, counts, strict=False))
        if end > size:
            raise _ends_past(path, f"the data of {what} {index + 1} of {len(pages)}", end, size)


def _walk_ifds(path: Path, size: int) -> int:
    """Follow the chain of TIFF directories (IFDs) and count them, checking that each lies
    inside the file: a file cut short loses its last directories, which tifffile only logs."""
    with path.open("rb") as fh:
        head = fh.read(16)
        if len(head) < 8:
            raise _truncated(path, "a TIFF header", 8, size)
        order = {b"II": "<", b"MM": ">"}.get(head[:2])
        version = struct.unpack(order + "H", head[2:4])[0] if order else 0
        if order is None or version not in (42, 43):
            raise _cannot(path, "it is not a TIFF file (the TIFF signature is missing)")
        if version == 42:
            count_fmt, count_size, tag_size, offset_fmt = "H", 2, 12, "I"
            offset = struct.unpack(order + "I", head[4:8])[0]
        else:
            if len(head) < 16:
                raise _truncated(path, "a BigTIFF header", 16, size)
            count_fmt, count_size, tag_size, offset_fmt = "Q", 8, 20, "Q"
            offset = struct.unpack(order + "Q", head[8:16])[0]
        offset_size = struct.calcsize(offset_fmt)
        seen: set[int] = set()
        pages = 0
        while offset:
            if offset >= size:
                where = "the first page" if pages == 0 else f"page {pages + 1}"
                raise _cannot(path, f"the TIFF says {where} starts at byte {offset:,}, past the "
                                    f"end of the file ({size:,} bytes); it looks truncated "
                                    "— transfer it again")
            if offset in seen:
                raise _cannot(path, "the TIFF directories form a loop; the file is damaged")
            seen.add(offset)
            fh.seek(offset)
            raw = fh.read(count_size)
            if len(raw) < count_size:
                raise _truncated(path, f"the directory of page {pages + 1}",
                                 offset + count_size, size)
            n_tags = struct.unpack(order + count_fmt, raw)[0]
            end = offset + count_size + n_tags * tag_size + offset_size
            if end > size:
                raise _ends_past(path, f"the directory of page {pages + 1}", end, size)
            fh.seek(end - offset_size)
            offset = struct.unpack(order + offset_fmt, fh.read(offset_size))[0]
            pages += 1
        if pages == 0:
            raise _cannot(path, "the TIFF file has no image pages")
        return pages


def _probe_tiff(path: Path, size: int, head: bytes) -> ImageInfo:
    n_pages = _walk_ifds(path, size)
    tif = _open_tiff(path)
    with tif:
        if len(tif.pages) != n_pages:
            raise _cannot(path, f"tifffile found {len(tif.pages)} of the {n_pages} pages; the "
                                "file is damaged")
        if _is_eer(tif):
            return _probe_eer(path, size, tif)
        return _probe_plain_tiff(path, size, tif)


def _tiff_plane_layout(series: Any) -> tuple[int, int, int, tuple[int, ...]]:
    """(height, width, number of planes, shape of one stored plane) of a TIFF series."""
    axes: str = series.axes
    shape: tuple[int, ...] = series.shape
    if "Y" not in axes or "X" not in axes:
        raise UnreadableImage(f"the TIFF series has no image axes (axes {axes!r})")
    height = shape[axes.index("Y")]
    width = shape[axes.index("X")]
    keyframe_shape = tuple(series.keyframe.shape)
    plane_size = math.prod(keyframe_shape)
    n_planes = max(1, math.prod(shape) // max(1, plane_size))
    return height, width, n_planes, keyframe_shape


def _tiff_pixel_size(tif: Any, page: Any) -> tuple[float | None, list[tuple[str, str]]]:
    """Specimen pixel size from ImageJ metadata, resolution tags or FEI metadata."""
    details: list[tuple[str, str]] = []
    xres_tag = page.tags.get("XResolution")
    unit_tag = page.tags.get("ResolutionUnit")
    xres = None
    if xres_tag is not None:
        value = xres_tag.value
        num, den = value if isinstance(value, tuple) else (value, 1)
        xres = num / den if den else None
    unit = int(unit_tag.value) if unit_tag is not None else 2
    ij = tif.imagej_metadata or {}
    ij_unit = str(ij.get("unit", "")).strip().lower().replace("\\u00b5", "µ")
    factors = {"micron": 1e4, "microns": 1e4, "um": 1e4, "µm": 1e4, "μm": 1e4, "nm": 10.0,
               "nanometer": 10.0, "nanometers": 10.0, "a": 1.0, "å": 1.0, "angstrom": 1.0,
               "angstroms": 1.0, "mm": 1e7, "cm": 1e8, "m": 1e10, "pm": 0.01}
    if xres and ij_unit in factors:
        pixel = float(f"{factors[ij_unit] / xres:.7g}")
        details.append(("Pixel size (ImageJ)", f"{_fmt(pixel)} Å"))
        return pixel, details
    fei = getattr(tif, "fei_metadata", None)
    if fei:
        scan = fei.get("Scan") or fei.get("EScan") or {}
        width_m = scan.get("PixelWidth")
        if isinstance(width_m, int | float) and 0 < width_m < 1e-3:
            pixel = float(f"{float(width_m) * 1e10:.7g}")
            details.append(("Pixel size (FEI metadata)", f"{_fmt(pixel)} Å"))
            return pixel, details
    if xres and unit in (2, 3):
        per = 2.54e8 if unit == 2 else 1e8
        pixel = float(f"{per / xres:.7g}")
        unit_name = "inch" if unit == 2 else "cm"
        if pixel <= MAX_TIFF_PIXEL_ANGSTROM:
            details.append(("Pixel size (resolution tags)", f"{_fmt(pixel)} Å"))
            return pixel, details
        details.append(("Resolution", f"{_fmt(xres)} pixels per {unit_name} "
                                      "(a print resolution, not a specimen pixel size)"))
    return None, details


def _probe_plain_tiff(path: Path, size: int, tif: Any) -> ImageInfo:
    series = tif.series[0]
    height, width, n_planes, plane_shape = _tiff_plane_layout(series)
    pages = list(series.pages)
    _check_segments(path, pages, size, "page")
    keyframe = series.keyframe
    dtype = np.dtype(series.dtype)
    if n_planes == 1:
        kind: SliceKind = "image"
    elif "Z" in series.axes:
        kind = "stack"
    else:
        kind = "frames"
    pixel, pixel_details = _tiff_pixel_size(tif, keyframe)
    compression = getattr(keyframe.compression, "name", str(keyframe.compression))
    details: list[tuple[str, str]] = [
        ("Format", "BigTIFF" if tif.is_bigtiff else "TIFF"),
        ("Size", f"{width} × {height}" + (f" × {n_planes} pages" if n_planes > 1 else "")),
        ("Sample type", str(dtype) + (f", {keyframe.samplesperpixel} samples per pixel"
                                      if keyframe.samplesperpixel > 1 else "")),
        ("Compression", compression.lower()),
    ]
    details.extend(pixel_details)
    software = keyframe.software
    if software:
        details.append(("Software", software[:80]))
    if keyframe.datetime:
        details.append(("Date", str(keyframe.datetime)))
    return ImageInfo(format="tiff", width=int(width), height=int(height), n_slices=n_planes,
                     slice_kind=kind, dtype=str(dtype), pixel_size_angstrom=pixel,
                     n_frames=n_planes, details=tuple(details))


def _eer_item(meta: dict[str, Any], key: str) -> Any:
    value = meta.get(key)
    return None if value is None or value == "" else value


def _probe_eer(path: Path, size: int, tif: Any) -> ImageInfo:
    frames = _eer_frames(path, tif)
    pages = list(frames.pages)
    n_frames = len(pages)
    keyframe = frames.keyframe
    height, width = int(keyframe.shape[0]), int(keyframe.shape[1])
    meta: dict[str, Any] = dict(tif.eer_metadata or {})
    declared = _eer_item(meta, "numberOfFrames")
    if isinstance(declared, int | float) and int(declared) > n_frames:
        raise _cannot(path, f"the EER metadata say {int(declared)} frames but the file holds "
                            f"only {n_frames}; it looks truncated — transfer it again")
    _check_segments(path, pages, size, "EER frame")
    compression = int(keyframe.compression)
    if compression == 65002:
        rle = int(keyframe.tags.valueof(65007, 7))
        horz = int(keyframe.tags.valueof(65008, 2))
        vert = int(keyframe.tags.valueof(65009, 2))
    else:
        rle, horz, vert = EER_CODECS.get(compression, (0, 0, 0))
    details: list[tuple[str, str]] = [
        ("Format", "EER (electron events, BigTIFF)"),
        ("Size", f"{width} × {height}"),
        ("Frames", f"{n_frames:,}"),
        ("Shown as", f"sum of all {n_frames:,} frames (electron counts per pixel)"),
        ("EER compression", describe_compression(compression, rle, horz, vert)),
    ]
    if len(tif.series) > 1:
        details.append(("Integrated image", "present (IFD 0, not shown)"))
    for key, label in (("commercialName", "Camera"), ("cameraName", "Camera name"),
                       ("serialNumber", "Serial number"), ("acquisitionID", "Acquisition ID"),
                       ("timestamp", "Acquired")):
        value = _eer_item(meta, key)
        if value is not None:
            details.append((label, str(value)))
    exposure = _eer_item(meta, "exposureTime")
    if isinstance(exposure, int | float):
        details.append(("Exposure time", f"{_fmt(float(exposure))} s"))
    total = _eer_item(meta, "totalDose")
    if isinstance(total, int | float):
        details.append(("Total dose", f"{_fmt(float(total))} e⁻ per detector pixel"))
        if n_frames:
            details.append(("Dose per frame", f"{_fmt(float(total) / n_frames)} e⁻ per "
                                              "detector pixel"))
    rate = _eer_item(meta, "meanDoseRate")
    if isinstance(rate, int | float):
        details.append(("Mean dose rate", f"{_fmt(float(rate))} e⁻ per detector pixel per s"))
    sensor = _eer_item(meta, "sensorPixelSize.width")
    if isinstance(sensor, int | float) and sensor > 0:
        unit = str(meta.get("sensorPixelSize.width.unit", "m"))
        microns = float(sensor) * {"m": 1e6, "um": 1.0, "µm": 1.0, "nm": 1e-3}.get(unit, 1e6)
        details.append(("Detector pixel", f"{_fmt(microns)} µm (the camera's pixel pitch, not "
                                          "the specimen pixel size)"))
    gain = _eer_item(meta, "eerGainReference")
    if gain is not None:
        details.append(("Gain reference", str(gain)))
    details.append(("Pixel size", "not recorded in EER files (see the session's metadata)"))
    return ImageInfo(format="eer", width=width, height=height, n_slices=1, slice_kind="image",
                     dtype="bool", pixel_size_angstrom=None, n_frames=n_frames,
                     details=tuple(details))


def _luminance(array: np.ndarray, samples_axis: int | None) -> np.ndarray:
    if samples_axis is None:
        return array
    moved = np.moveaxis(array, samples_axis, -1)
    n = moved.shape[-1]
    if n >= 3:
        rgb = moved[..., :3].astype(np.float32)
        return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return moved[..., 0]


def _read_tiff(path: Path, info: ImageInfo, slice_index: int) -> np.ndarray:
    tif = _open_tiff(path)
    with tif:
        series = tif.series[0]
        height, width, n_planes, plane_shape = _tiff_plane_layout(series)
        pages = series.pages
        if len(pages) == n_planes:
            page = pages[slice_index]
            if page is None:
                raise _cannot(path, f"page {slice_index + 1} is missing")
            plane = page.asarray()
        elif series.dataoffset is not None:
            data = np.memmap(path, dtype=np.dtype(series.dtype).newbyteorder(tif.byteorder),
                             mode="r", offset=series.dataoffset,
                             shape=(n_planes, *plane_shape))
            plane = np.array(data[slice_index])
            del data
        else:
            plane = tif.asarray(series=0).reshape(n_planes, *plane_shape)[slice_index]
        while plane.ndim > 3 and plane.shape[0] == 1:
            plane = plane[0]
        samples_axis = None
        if plane.ndim == 3:
            samples_axis = int(np.argmin(plane.shape))
        plane = _luminance(plane, samples_axis)
        if plane.dtype == np.bool_:
            plane = plane.view(np.uint8)
        return _to_float32(plane)


def _read_eer(path: Path, info: ImageInfo, slice_index: int) -> np.ndarray:
    tif = _open_tiff(path)
    with tif:
        if not _is_eer(tif):
            raise _cannot(path, "it is not an EER movie")
        frames = _eer_frames(path, tif)
        height, width = (int(x) for x in frames.keyframe.shape[:2])
        n_frames = len(frames.pages)
        total = np.zeros((height, width), dtype=np.uint16 if n_frames < 65536 else np.uint32)
        # Frames are decoded one at a time (memory: one frame) and summed as uint8, which
        # holds up to 255 frames of 0/1 events, then added to the total.
        partial = np.zeros((height, width), dtype=np.uint8)
        pending = 0
        flush_every = max(1, min(255, EER_FLUSH_FRAMES))
        for page in frames.pages:
            frame = page.asarray()
            if frame.shape != (height, width):
                raise _cannot(path, "the EER frames do not all have the same size")
            np.add(partial, frame.view(np.uint8), out=partial)
            pending += 1
            if pending == flush_every:
                np.add(total, partial, out=total)
                partial.fill(0)
                pending = 0
        if pending:
            np.add(total, partial, out=total)
        return total.astype(np.float32)
