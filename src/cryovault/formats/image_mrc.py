"""MRC images (mrcfile): headers, FEI extended headers, sections."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from cryovault.formats.image_base import (
    ImageInfo,
    SliceKind,
    _cannot,
    _fmt,
    _reason,
    _size_text,
    _to_float32,
    _truncated,
)

# --------------------------------------------------------------------------------------------
# MRC
# --------------------------------------------------------------------------------------------


_MRC_MODE_NAMES = {0: "int8", 1: "int16", 2: "float32", 3: "complex int16", 4: "complex64",
                   6: "uint16", 12: "float16", 101: "4-bit packed"}


_MRC_VOLUME_EXTENSIONS = frozenset({".map", ".rec", ".vol"})


def _probe_mrc(path: Path, size: int, head: bytes) -> ImageInfo:
    import mrcfile
    from mrcfile import utils as mrc_utils

    if size < 1024:
        raise _truncated(path, "an MRC file starts with a 1,024-byte header", 1024, size)
    try:
        with mrcfile.open(path, mode="r", header_only=True, permissive=False) as mrc:
            header = mrc.header.copy()
            extended = bytes(mrc.extended_header) if mrc.extended_header is not None else b""
            voxel = mrc.voxel_size.copy()
    except ValueError as exc:
        text = str(exc)
        if "extended header" in text:
            raise _cannot(path, "the MRC extended header is cut short; the file looks truncated "
                                "— transfer it again") from exc
        raise _cannot(path, f"it is not a valid MRC file ({_reason(exc)})") from exc
    nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
    mode = int(header.mode)
    mode_name = _MRC_MODE_NAMES.get(mode, f"unknown mode {mode}")
    if nx <= 0 or ny <= 0 or nz <= 0:
        raise _cannot(path, f"the MRC header gives an empty size {nx}×{ny}×{nz}")
    try:
        dtype = mrc_utils.data_dtype_from_header(header)
    except ValueError as exc:
        raise _cannot(path, f"MRC mode {mode} ({mode_name}) is not supported by the viewer") \
            from exc
    nsymbt = int(header.nsymbt)
    data_bytes = nx * ny * nz * dtype.itemsize
    needed = 1024 + nsymbt + data_bytes
    if size < needed:
        claim = (f"the MRC header says {nx}×{ny}×{nz} {mode_name} ({_size_text(data_bytes)} of "
                 f"data after {1024 + nsymbt:,} bytes of headers)")
        raise _truncated(path, claim, needed, size)

    ispg = int(header.ispg)
    if nz == 1:
        kind: SliceKind = "image"
    elif 1 <= ispg <= 230 or 401 <= ispg <= 630 or (
            ispg == 0 and path.suffix.lower() in _MRC_VOLUME_EXTENSIONS):
        kind = "volume"
    else:
        kind = "stack"
    vx, vy, vz = float(voxel.x), float(voxel.y), float(voxel.z)
    # float32 in the header: 1.06 is stored as 1.0600000619; 7 significant digits give it back.
    pixel: float | None = float(f"{vx:.7g}") if math.isfinite(vx) and vx > 0 else None

    details: list[tuple[str, str]] = [
        ("Format", f"MRC{' ' + str(int(header.nversion)) if int(header.nversion) else ''}"),
        ("Mode", f"{mode} ({mode_name})"),
        ("Size", f"{nx} × {ny} × {nz} ({'sections' if nz > 1 else 'single image'})"),
    ]
    if kind != "image":
        details.append(("Kind", {"volume": "volume (z sections)",
                                 "stack": "image stack"}[kind]))
    if pixel is not None:
        if abs(vy - vx) > 1e-4 * vx or (nz > 1 and kind == "volume" and abs(vz - vx) > 1e-4 * vx):
            details.append(("Voxel size", f"{_fmt(vx)} × {_fmt(vy)} × {_fmt(vz)} Å"))
        else:
            details.append(("Pixel size" if kind != "volume" else "Voxel size", f"{_fmt(vx)} Å"))
    else:
        details.append(("Pixel size", "not recorded (cell size 0)"))
    details.append(("Space group", str(ispg)))
    dmin, dmax, dmean, rms = (float(header.dmin), float(header.dmax), float(header.dmean),
                              float(header.rms))
    if dmax >= dmin and math.isfinite(dmin) and math.isfinite(dmax):
        details.append(("Header min / max / mean", f"{_fmt(dmin)} / {_fmt(dmax)} / {_fmt(dmean)}"))
    if rms > 0 and math.isfinite(rms):
        details.append(("Header RMS", _fmt(rms)))
    exttyp = bytes(header.exttyp).decode("ascii", "replace").strip("\x00 ")
    if nsymbt:
        details.append(("Extended header", f"{exttyp or 'untyped'}, {nsymbt:,} bytes"))
    fei = _fei_first_record(header, extended)
    if fei is not None:
        fei_pixel = fei.get("pixel_m")
        if pixel is None and fei_pixel:
            pixel = float(f"{fei_pixel * 1e10:.7g}")
            details.append(("Pixel size (FEI extended header)", f"{_fmt(pixel)} Å"))
        for label, value in fei.get("items", []):
            details.append((label, value))
    labels = [" ".join(bytes(label).decode("latin-1").replace("\x00", " ").split())
              for label in header.label[: max(0, min(int(header.nlabl), 10))]]
    for index, text in enumerate(t for t in labels if t):
        details.append((f"Label {index + 1}", text))
    byteorder = header.mode.dtype.byteorder
    if byteorder == ">" or (byteorder == "=" and np.little_endian is False):
        details.append(("Byte order", "big-endian"))
    return ImageInfo(format="mrc", width=nx, height=ny, n_slices=nz, slice_kind=kind,
                     dtype=str(np.dtype(dtype).newbyteorder("=")), pixel_size_angstrom=pixel,
                     n_frames=None, details=tuple(details))


def _fei_first_record(header: Any, extended: bytes) -> dict[str, Any] | None:
    """Pixel size and a few acquisition values from an FEI1/FEI2 extended header."""
    from mrcfile.dtypes import get_ext_header_dtype

    dtype = get_ext_header_dtype(bytes(header.exttyp), header.mode.dtype.byteorder)
    if dtype is None or len(extended) < dtype.itemsize:
        return None
    record = np.frombuffer(extended[: dtype.itemsize], dtype=dtype)[0]
    if int(record["Metadata size"]) != dtype.itemsize:
        return None
    items: list[tuple[str, str]] = []

    def text(field: str) -> str:
        return bytes(record[field]).decode("latin-1").strip("\x00 ")

    microscope = text("Microscope type")
    if microscope:
        items.append(("Microscope", microscope))
    camera = text("Camera name")
    if camera:
        items.append(("Camera", camera))
    ht = float(record["HT"])
    if ht > 0:
        items.append(("High tension", f"{ht / 1000:.0f} kV"))
    dose = float(record["Dose"])
    if dose > 0:
        items.append(("Dose", f"{_fmt(dose * 1e-20)} e⁻/Å²"))
    exposure = float(record["Integration time"])
    if exposure > 0:
        items.append(("Exposure time", f"{_fmt(exposure)} s"))
    pixel_m = float(record["Pixel size X"])
    return {"pixel_m": pixel_m if math.isfinite(pixel_m) and 0 < pixel_m < 1e-3 else None,
            "items": items}


def _read_mrc(path: Path, info: ImageInfo, slice_index: int) -> np.ndarray:
    import mrcfile

    try:
        mrc = mrcfile.mmap(path, mode="r", permissive=False)
    except ValueError as exc:
        if "could only read" in str(exc) or "mmap length" in str(exc):
            raise _cannot(path, "the MRC data block is shorter than its header says; the file "
                                "looks truncated — transfer it again") from exc
        raise
    with mrc:
        data = mrc.data
        if data is None:
            raise _cannot(path, "the MRC data block could not be read")
        sections = data.reshape(-1, data.shape[-2], data.shape[-1])
        return _to_float32(sections[slice_index])
