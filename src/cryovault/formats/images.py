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

import math
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cryovault.formats.eer import EER_CODECS, EER_COMPRESSIONS, describe_compression
from cryovault.formats.filetypes import (
    EER_EXTENSIONS,
    JPEG_EXTENSIONS,
    MRC_EXTENSIONS,
    PNG_EXTENSIONS,
    TIFF_EXTENSIONS,
    sniff_image,
)

ImageFormat = Literal["mrc", "tiff", "eer", "png", "jpeg"]
SliceKind = Literal["image", "stack", "volume", "frames"]
FORMATS: tuple[str, ...] = ("mrc", "tiff", "eer", "png", "jpeg")
_NAMES = {"mrc": "MRC", "tiff": "TIFF", "eer": "EER", "png": "PNG", "jpeg": "JPEG"}

#: Planes above this many pixels are refused: one plane is held in memory as float32 (4 bytes a
#: pixel) while a preview is made. A K3 super-resolution frame is 94 Mpx, an EER frame 16.8 Mpx.
MAX_PLANE_PIXELS = 1 << 28
#: EER frames are summed in uint8 this many at a time (at most 255), then widened.
EER_FLUSH_FRAMES = 255
#: Pixel sizes derived from TIFF resolution tags above this are print resolutions (72 dpi is
#: 3.5e6 Å), not specimen pixels.
MAX_TIFF_PIXEL_ANGSTROM = 1e5

_MRC_MODE_NAMES = {0: "int8", 1: "int16", 2: "float32", 3: "complex int16", 4: "complex64",
                   6: "uint16", 12: "float16", 101: "4-bit packed"}
_MRC_VOLUME_EXTENSIONS = frozenset({".map", ".rec", ".vol"})


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


# --------------------------------------------------------------------------------------------
# MRC
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# TIFF and EER
# --------------------------------------------------------------------------------------------


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

